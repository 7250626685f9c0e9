//! The baseline forward: a private OpenSSH server on 127.0.0.1 (its own host key, one
//! authorized key, both generated in a temporary directory) and `ssh -N -L` clients
//! through it, as root. Debian's `openssh-server` and `openssh-client`.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::host::free_tcp_port;

const SSHD: &str = "/usr/sbin/sshd";

/// Why the ssh baseline cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    let client = Command::new("ssh").arg("-V").output().is_ok();
    match (Path::new(SSHD).exists(), client) {
        (true, true) => None,
        _ => Some(format!(
            "no {SSHD} or ssh: apt-get install openssh-server openssh-client"
        )),
    }
}

/// A running `sshd -D` on 127.0.0.1, killed on drop.
pub struct Sshd {
    child: Child,
    port: u16,
    key: PathBuf,
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ssh-keygen -f {}", path.display());
}

impl Sshd {
    /// Generates the keys and configuration in `dir` and starts the server.
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let (host_key, key) = (dir.join("host_key"), dir.join("client_key"));
        keygen(&host_key);
        keygen(&key);
        let authorized = dir.join("authorized_keys");
        std::fs::copy(key.with_extension("pub"), &authorized).unwrap();
        let port = free_tcp_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nAllowTcpForwarding yes\n",
                host_key.display(),
                authorized.display(),
                dir.join("sshd.pid").display(),
            ),
        )
        .unwrap();
        // Privilege separation wants its empty directory; the package's service makes it at
        // start, and no service runs here.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < end,
                "sshd never listened; its log: {}",
                std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, key }
    }

    /// The server's process id (its per-connection children do the forwarding).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `ssh -N -L 127.0.0.1:L:127.0.0.1:R` for each of `remotes` (`-c cipher` if given),
    /// once every forward accepts: the client and the local addresses, in order.
    pub fn forward(&self, cipher: Option<&str>, remotes: &[SocketAddr]) -> (Ssh, Vec<SocketAddr>) {
        let locals: Vec<SocketAddr> = remotes
            .iter()
            .map(|_| SocketAddr::from(([127, 0, 0, 1], free_tcp_port())))
            .collect();
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-N", "-T", "-i"])
            .arg(&self.key)
            .args(["-p", &self.port.to_string()])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "LogLevel=ERROR",
            ]);
        if let Some(c) = cipher {
            cmd.args(["-c", c]);
        }
        for (local, remote) in locals.iter().zip(remotes) {
            cmd.arg("-L").arg(format!("{local}:{remote}"));
        }
        let mut child = cmd
            .arg("root@127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        while !locals.iter().all(|l| TcpStream::connect(l).is_ok()) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("ssh -L exited: {status}");
            }
            assert!(Instant::now() < end, "ssh -L never forwarded");
            std::thread::sleep(Duration::from_millis(20));
        }
        (Ssh(child), locals)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `ssh -N -L` client, killed on drop.
pub struct Ssh(Child);

impl Ssh {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

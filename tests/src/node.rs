//! Real `agora node` processes on loopback, and a minimal HTTP client to ask them things.
//!
//! Each [`NodeProc`] runs `agora --json node start` with its own data dir, ports picked by
//! the OS (port 0), and its stderr logged to `<dir>/node.log` (printed if a test fails).
//! The first stdout line is the node's `started` event: id, HTTP address, listen addresses.

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::agora_bin;

/// A running node process; killed (SIGKILL) on drop unless stopped first.
#[derive(Debug)]
pub struct NodeProc {
    child: Option<Child>,
    /// Its data dir (and log).
    pub dir: PathBuf,
    /// Agora id.
    pub id: String,
    /// HTTP API address.
    pub http: SocketAddr,
    /// libp2p listen addresses with `/p2p/<peer id>`.
    pub listen: Vec<String>,
    args: Vec<String>,
    launch: Launch,
}

/// Where a node process runs: a network namespace (entered with `nsenter --net`, so mounts
/// such as the cgroup hierarchy stay the host's) and the address its HTTP API and libp2p
/// listen on.
#[derive(Debug, Clone)]
pub struct Launch {
    /// `/var/run/netns/<name>` to enter, if any.
    pub netns: Option<String>,
    /// The listen address (HTTP, TCP and QUIC; ports chosen by the system).
    pub host: String,
    /// A descriptor the node inherits open (on the file `inherited` in its directory,
    /// without close-on-exec), as a careless parent shell or supervisor would leave it.
    pub inherit_fd: Option<u8>,
}

impl Default for Launch {
    fn default() -> Self {
        Self {
            netns: None,
            host: "127.0.0.1".to_owned(),
            inherit_fd: None,
        }
    }
}

impl NodeProc {
    /// Starts a node in `dir` with extra `args` (after `node start`), waiting up to 60 s for
    /// its `started` line.
    ///
    /// # Panics
    /// When the process cannot start or does not report in time (with its log).
    #[allow(clippy::panic, clippy::expect_used)]
    pub fn start(dir: &Path, args: &[String]) -> Self {
        Self::start_in(dir, &Launch::default(), args)
    }

    /// Starts a node in `dir` from the configuration `toml` (written to `dir/node.toml`),
    /// bootstrapping from `bootstrap` when given.
    ///
    /// # Panics
    /// As [`NodeProc::start`], and when the file cannot be written.
    #[allow(clippy::expect_used)]
    pub fn start_configured(dir: &Path, toml: &str, bootstrap: Option<&str>) -> Self {
        std::fs::create_dir_all(dir).expect("node dir");
        let config = dir.join("node.toml");
        std::fs::write(&config, toml).expect("node.toml");
        let mut args = vec!["--config".to_owned(), config.display().to_string()];
        if let Some(b) = bootstrap {
            args.extend(["--bootstrap".to_owned(), b.to_owned()]);
        }
        Self::start(dir, &args)
    }

    /// [`NodeProc::start`] where `launch` says (a namespace, another address).
    ///
    /// # Panics
    /// As [`NodeProc::start`].
    #[allow(clippy::panic, clippy::expect_used)]
    pub fn start_in(dir: &Path, launch: &Launch, args: &[String]) -> Self {
        std::fs::create_dir_all(dir).expect("node dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("node.log"))
            .expect("node log");
        let mut argv: Vec<std::ffi::OsString> = match &launch.netns {
            Some(ns) => vec![
                "nsenter".into(),
                format!("--net={ns}").into(),
                "--".into(),
                agora_bin().into(),
            ],
            None => vec![agora_bin().into()],
        };
        if let Some(fd) = launch.inherit_fd {
            let file = dir.join("inherited");
            std::fs::write(&file, "").expect("inherited file");
            let script = format!("exec \"$@\" {fd}<'{}'", file.display());
            argv.splice(0..0, ["sh".into(), "-c".into(), script.into(), "sh".into()]);
        }
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        let host = &launch.host;
        cmd.args(["--json", "--log", "info,agora_node=debug", "node", "start"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--http", &format!("{host}:0")])
            .args(["--listen", &format!("/ip4/{host}/tcp/0")])
            .args(["--listen", &format!("/ip4/{host}/udp/0/quic-v1")])
            .args(args)
            .env("HOME", dir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = cmd.spawn().expect("spawning agora node");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the node never blocks on a full pipe.
            for _ in lines {}
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!(
                "node in {} did not start; log:\n{}",
                dir.display(),
                read_log(dir)
            );
        };
        let v: Value = serde_json::from_str(&line).expect("started line is JSON");
        let http = v["http"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("http address");
        let listen = v["listen_addrs"]
            .as_array()
            .expect("listen_addrs")
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        Self {
            child: Some(child),
            dir: dir.to_owned(),
            id: v["id"].as_str().unwrap_or_default().to_owned(),
            http,
            listen,
            args: args.to_vec(),
            launch: launch.clone(),
        }
    }

    /// Starts the same node again (same dir and flags) after a stop.
    pub fn restart(&self) -> Self {
        Self::start_in(&self.dir, &self.launch, &self.args)
    }

    /// The TCP listen address, for other nodes' `--bootstrap`.
    ///
    /// # Panics
    /// When the node has no TCP listener.
    #[allow(clippy::expect_used)]
    pub fn tcp_addr(&self) -> String {
        self.listen
            .iter()
            .find(|a| a.contains("/tcp/"))
            .cloned()
            .expect("a TCP listen address")
    }

    /// The OS process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal (`TERM`, `HUP`, `INT`) with `kill`.
    pub fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([format!("-{sig}"), pid.to_string()])
                .status();
        }
    }

    /// SIGTERM, then waits up to 30 s for a clean exit; returns whether it exited with 0.
    pub fn stop(mut self) -> bool {
        self.signal("TERM");
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }

    /// GET `path` on this node's API.
    ///
    /// # Panics
    /// When the node does not answer.
    pub fn get(&self, path: &str) -> (u16, Value) {
        http_get(self.http, path)
    }

    /// The providers in this node's offer book (ids), optionally filtered by `query`.
    pub fn offer_providers(&self, query: &str) -> Vec<String> {
        let (_, v) = self.get(&format!("/v1/offers?limit=1000&{query}"));
        v["offers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| o["provider"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// This node's log so far.
    pub fn log(&self) -> String {
        read_log(&self.dir)
    }

    /// The node's whole log so far ([`NodeProc::log`] is its last 8,000 bytes).
    pub fn full_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        release_warm_sandboxes(&self.dir);
    }
}

/// Unmounts the scratch of every warm sandbox a SIGKILLed node under `dir` left (a node
/// that stops normally clears them, and a restarted one clears what a crash left, but these
/// temporary nodes never restart): left mounted, each would be copied by every sandbox
/// start for the rest of the test run. Workloads' own scratch mounts stay, for tests that
/// start another node over the same directory.
fn release_warm_sandboxes(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for point in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
        let path = Path::new(point);
        if path.starts_with(dir) && point.contains("/sandbox/pool/pool.") {
            let _ = rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

fn read_log(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("node.log")).unwrap_or_default();
    let start = text.len().saturating_sub(8000);
    text.get(start..).unwrap_or(&text).to_owned()
}

/// One HTTP/1.1 GET against `addr` (no keep-alive), returning the status and JSON body
/// (`Null` if the body is not JSON).
///
/// # Panics
/// When the connection fails or the answer is not HTTP.
#[allow(clippy::expect_used)]
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = http_get_text(addr, path);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// As [`http_get`], with the body as text (e.g. `/metrics`).
///
/// # Panics
/// When the connection fails or the answer is not HTTP.
pub fn http_get_text(addr: SocketAddr, path: &str) -> (u16, String) {
    http_raw(addr, "GET", path, &[], None)
}

/// One HTTP/1.1 request with `headers` and a JSON body (if any), waiting up to 90 s for the
/// answer: its status and JSON body (`Null` if it is not JSON).
///
/// # Panics
/// When the connection fails or the answer is not HTTP.
pub fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, Value) {
    let body = body.map(Value::to_string);
    let mut all = headers.to_vec();
    if body.is_some() {
        all.push(("Content-Type", "application/json"));
    }
    let (status, text) = http_raw(addr, method, path, &all, body.as_deref().map(str::as_bytes));
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// One HTTP/1.1 request with exactly `headers` (plus `Host`, `Connection: close` and, with a
/// body, `Content-Length`), waiting up to 90 s: the status and the body as text.
///
/// # Panics
/// When the connection fails or the answer is not HTTP.
#[allow(clippy::expect_used)]
pub fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(90)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body.unwrap_or_default());
    s.write_all(&request).expect("request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(rest.get(..n).unwrap_or_default());
        body = rest.get(n..).unwrap_or_default().trim_start_matches("\r\n");
    }
    out
}

/// Polls `check` every 100 ms until it returns `Some`, or `deadline` passes.
pub fn wait_for<T>(deadline: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

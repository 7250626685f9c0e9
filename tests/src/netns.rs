//! Network namespaces a test owns: a stand-in "host on the Internet" with listeners that
//! count who arrives, and helpers to probe reachability from inside a workload.
//!
//! Tests that check the workload network policy talk only to these: a namespace on a veth
//! from the host holding a public-range address (198.51.100.2, TEST-NET-2, outside the
//! deny list) and a private one (10.99.0.2). Needs root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A "host on the Internet" the test owns: a network namespace on a veth from the host,
/// holding a public-range address (198.51.100.2, TEST-NET-2, outside the deny list) and a
/// private one (10.99.0.2), with TCP listeners that count who arrives.
pub struct OutsideHost {
    /// Held for its drop, which removes the namespace.
    _link: Veth,
    arrivals: Arc<std::sync::Mutex<Vec<std::net::SocketAddr>>>,
}

/// A network namespace the test owns, joined to the host by a veth (`eth0` inside); the
/// link and the namespace are removed on drop.
struct Veth {
    ns: String,
    host_if: String,
}

impl Veth {
    /// A namespace `PREFIX-TAG` and host interface `PREFIXTAG` (a random tag), the host's
    /// end holding `host_addrs` and the namespace's `ns_addrs` (`ip/len` each), both up.
    /// Made after the value exists, so a failing `ip` still cleans up.
    fn create(prefix: &str, host_addrs: &[&str], ns_addrs: &[&str]) -> Self {
        let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let link = Self {
            ns: format!("{prefix}-{tag}"),
            host_if: format!("{prefix}{tag}"),
        };
        let (ns, host_if) = (&link.ns, &link.host_if);
        let mut cmd = format!(
            "ip netns add {ns} && ip link add {host_if} type veth peer name eth0 netns {ns}"
        );
        for a in host_addrs {
            cmd.push_str(&format!(" && ip addr add {a} dev {host_if}"));
        }
        cmd.push_str(&format!(" && ip link set {host_if} up"));
        for a in ns_addrs {
            cmd.push_str(&format!(" && ip -n {ns} addr add {a} dev eth0"));
        }
        cmd.push_str(&format!(
            " && ip -n {ns} link set eth0 up && ip -n {ns} link set lo up"
        ));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        link
    }

    /// `/var/run/netns/<name>`.
    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.ns)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.ns])
            .status();
    }
}

impl OutsideHost {
    /// Creates the namespace with listeners on `ports`.
    pub fn create(ports: &[u16]) -> Self {
        let link = Veth::create(
            "agt",
            &["198.51.100.1/24", "10.99.0.1/24"],
            &["198.51.100.2/24", "10.99.0.2/24"],
        );
        let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (ns_path, ports, sink) = (link.path(), ports.to_vec(), arrivals.clone());
        std::thread::spawn(move || {
            // This thread alone moves into the namespace; its sockets live there.
            let file = std::fs::File::open(&ns_path).unwrap();
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&file),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap();
            let listeners: Vec<std::net::TcpListener> = ports
                .iter()
                .map(|p| {
                    let l = std::net::TcpListener::bind(("0.0.0.0", *p)).unwrap();
                    l.set_nonblocking(true).unwrap();
                    l
                })
                .collect();
            ready_tx.send(()).unwrap();
            loop {
                for l in &listeners {
                    if let Ok((_, from)) = l.accept() {
                        sink.lock().unwrap().push(l.local_addr().unwrap());
                        let _ = from;
                    }
                }
                if Arc::strong_count(&sink) == 1 {
                    return; // The test is over.
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Self {
            _link: link,
            arrivals,
        }
    }

    /// Connections that arrived on `port`.
    pub fn arrived(&self, port: u16) -> usize {
        self.arrivals
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.port() == port)
            .count()
    }
}

/// iptables filter rules, nat rules and `ag*` interfaces on the host now.
pub fn count_rules() -> (usize, usize, usize) {
    let lines = |args: &[&str]| {
        let out = std::process::Command::new("iptables")
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let links = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name().into_string().unwrap();
            name.starts_with("ag") && !name.starts_with("agt")
        })
        .count();
    (lines(&["-S"]), lines(&["-t", "nat", "-S"]), links)
}

/// iptables rules (filter and nat) that mention any of `words` (an interface, a chain):
/// unlike [`count_rules`], not disturbed by other tests running at the same time.
pub fn rules_mentioning(words: &[String]) -> usize {
    [&["-S"][..], &["-t", "nat", "-S"][..]]
        .iter()
        .map(|args| {
            let out = std::process::Command::new("iptables")
                .args(*args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| words.iter().any(|w| l.contains(w.as_str())))
                .count()
        })
        .sum()
}

/// A shell script printing `ip:port=open|closed` for each target (busybox `nc`).
pub fn probe_script(targets: &[(&str, u16)]) -> String {
    targets
        .iter()
        .map(|(ip, port)| {
            format!("if nc -w 2 {ip} {port} </dev/null; then echo {ip}:{port}=open; else echo {ip}:{port}=closed; fi")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Parses [`probe_script`] output.
pub fn verdicts(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.trim().split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The policy scenario both runtimes are tested with: an [`OutsideHost`] listening on 8080
/// (allowed), 25 (SMTP) and 2525 (a provider-blocked port) at a public-range and a private
/// address, and a listener on the host itself.
pub struct PolicyProbe {
    /// The namespace standing in for the Internet.
    pub outside: OutsideHost,
    host_listener: std::net::TcpListener,
}

impl Default for PolicyProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl PolicyProbe {
    /// Creates the outside host and the host listener.
    pub fn new() -> Self {
        let outside = OutsideHost::create(&[8080, 25, 2525]);
        // On every host address, the workload's gateway included.
        let host_listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        host_listener.set_nonblocking(true).unwrap();
        Self {
            outside,
            host_listener,
        }
    }

    /// The workload's script: probes every destination, then its gateway (the host) on the
    /// host listener's port, then prints its own address (`addr=a.b.c.d/n`).
    pub fn script(&self) -> String {
        let host_port = self.host_listener.local_addr().unwrap().port();
        format!(
            "{}; gw=$(ip route | awk '/default/ {{print $3}}'); \
             if nc -w 2 $gw {host_port} </dev/null; then echo host=open; else echo host=closed; fi; \
             ip -4 addr show eth0 | awk '/inet / {{print \"addr=\" $2}}'",
            probe_script(&[
                ("198.51.100.2", 8080),
                ("198.51.100.2", 25),
                ("198.51.100.2", 2525),
                ("10.99.0.2", 8080),
                ("169.254.169.254", 80),
            ])
        )
    }

    /// Checks what [`PolicyProbe::script`] printed: only the public port was open, and only
    /// that probe reached a listener. Returns the verdicts (with `addr`).
    pub fn check_denials(&self, out: &str, err: &str) -> BTreeMap<String, String> {
        let v = verdicts(out);
        assert_eq!(
            v.get("198.51.100.2:8080").map(String::as_str),
            Some("open"),
            "{out}{err}"
        );
        for denied in [
            "198.51.100.2:25",
            "198.51.100.2:2525",
            "10.99.0.2:8080",
            "169.254.169.254:80",
            "host",
        ] {
            assert_eq!(
                v.get(denied).map(String::as_str),
                Some("closed"),
                "{denied}: {out}{err}"
            );
        }
        // Denied probes never reached a listener.
        assert_eq!(self.outside.arrived(8080), 1);
        assert_eq!(self.outside.arrived(25) + self.outside.arrived(2525), 0);
        assert!(
            self.host_listener.accept().is_err(),
            "the workload reached the host"
        );
        v
    }

    /// Positive controls: the same listeners answer the host itself.
    pub fn check_positive_controls(&self) {
        for addr in ["10.99.0.2:8080", "198.51.100.2:25", "198.51.100.2:2525"] {
            std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
                .unwrap_or_else(|e| panic!("positive control {addr}: {e}"));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(self.outside.arrived(25), 1);
        assert_eq!(self.outside.arrived(2525), 1);
        assert_eq!(self.outside.arrived(8080), 2);
    }
}

/// A network namespace reachable from the host only: a veth with a /24 of its own
/// (`10.<net>.0.1` on the host, `10.<net>.0.2` inside), no default route. Two islands
/// cannot reach each other (neither has a route to the other's /24), while the host
/// reaches both: the shape of an agent and a provider that only a gateway joins.
pub struct Island {
    link: Veth,
    /// The host's address on the island's link.
    pub host_ip: std::net::Ipv4Addr,
    /// The namespace's address.
    pub ip: std::net::Ipv4Addr,
}

impl Island {
    /// Creates it on `10.<net>.0.0/24`.
    ///
    /// # Panics
    /// When `ip` fails (needs root).
    pub fn create(net: u8) -> Self {
        let host_ip = std::net::Ipv4Addr::new(10, net, 0, 1);
        let ip = std::net::Ipv4Addr::new(10, net, 0, 2);
        let link = Veth::create("agi", &[&format!("{host_ip}/24")], &[&format!("{ip}/24")]);
        Self { link, host_ip, ip }
    }

    /// `/var/run/netns/<name>`, for `nsenter --net=`.
    pub fn path(&self) -> String {
        self.link.path()
    }

    /// `program` run inside the namespace (network only; mounts stay the host's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut c = std::process::Command::new("nsenter");
        c.arg(format!("--net={}", self.path()))
            .arg("--")
            .arg(program);
        c
    }
}

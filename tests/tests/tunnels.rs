//! QUIC tunnels on the sandbox runtime, with real `agora` processes on 127.0.0.1: an agent
//! runs busybox `httpd` with port 8080 in its lease, `agora tunnel -L 127.0.0.1:0:8080`
//! forwards a local port to it, and a plain HTTP GET through that port gets the page. The
//! provider refuses someone else's token (`not_your_lease`), a forged one (`bad_token`) and
//! a port outside the token (`port_not_allowed`); stopping the lease cuts a live stream (and
//! the TCP connection through `agora tunnel`) within seconds, and new streams are refused
//! `lease_ended`.
//!
//! The sandbox needs root and bubblewrap; `AGORA_SKIP_SANDBOX=1` skips.

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use agora_attest::{Identity, keyfile};
use agora_node::tunnel::wire::Header;
use agora_node::tunnel::{Code, Dialer, OpenError};
use agora_protocol::lease::Capability;
use agora_protocol::{AgoraId, Signed, Timestamp};
use agora_tests::leftovers::Leftovers;
use agora_tests::node::{NodeProc, wait_for};
use agora_tests::{agora, stderr, stdout};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// The cgroup parent of provider `node`'s sandboxes (for [`Leftovers::add`]).
fn cgroup_parent(node: &NodeProc) -> String {
    agora_node::daemon::workloads::default_cgroup_parent(&node.id.parse().unwrap())
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn gateway(dir: &Path) -> NodeProc {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        "roles = [\"gateway\"]\nregion = \"eu\"\n\n[network]\nkad_server = true\n",
    )
    .unwrap();
    NodeProc::start(dir, &["--config".to_owned(), config.display().to_string()])
}

fn provider(dir: &Path, bootstrap: &str, tunnel_port: u16) -> NodeProc {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!("roles = [\"provider\", \"gateway\"]\nregion = \"eu\"\n\n[provider]\nruntimes = [\"sandbox\"]\nvcpu = 2\nmemory_mib = 2048\ndisk_mib = 2048\ntunnel_port = {tunnel_port}\nprices = {{ vcpu = 100, memory_gib = 10 }}\n"),
    )
    .unwrap();
    NodeProc::start(
        dir,
        &[
            "--config".to_owned(),
            config.display().to_string(),
            "--bootstrap".to_owned(),
            bootstrap.to_owned(),
        ],
    )
}

/// `agora --json agent SUB ARGS… --node N --key K [-- COMMAND…]`: (success, JSON, stderr).
fn agent_cli(home: &Path, node: &NodeProc, args: &[&str]) -> (bool, Value, String) {
    let (sub, rest) = args.split_first().unwrap();
    let (before, after) = match rest.iter().position(|a| *a == "--") {
        Some(i) => rest.split_at(i),
        None => (rest, &[][..]),
    };
    let out = agora(home)
        .args(["--json", "agent", sub])
        .args(before)
        .arg("--node")
        .arg(format!("http://{}", node.http))
        .arg("--key")
        .arg(home.join("agent.key"))
        .args(after)
        .output()
        .unwrap();
    let v = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
    (out.status.success(), v, stderr(&out))
}

/// `agora --json tunnel LEASE -L 127.0.0.1:0:REMOTE`, killed on drop; its local address.
struct TunnelProc(Child);

impl TunnelProc {
    fn start(home: &Path, node: &NodeProc, lease: &str, remote: u16) -> (Self, SocketAddr) {
        let mut child = agora(home)
            .args(["--json", "tunnel", lease, "-L"])
            .arg(format!("127.0.0.1:0:{remote}"))
            .arg("--node")
            .arg(format!("http://{}", node.http))
            .arg("--key")
            .arg(home.join("agent.key"))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(home.join("tunnel.log")).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!(
                "agora tunnel printed {line:?}; log: {}",
                std::fs::read_to_string(home.join("tunnel.log")).unwrap_or_default()
            )
        });
        assert_eq!(v["forwards"][0]["remote"], remote, "{v}");
        let local = v["forwards"][0]["local"].as_str().unwrap().parse().unwrap();
        (Self(child), local)
    }
}

impl Drop for TunnelProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.0 GET through `addr`: the whole answer, or `None` if the connection closed
/// early (the workload not listening yet).
fn http_get(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    (!answer.is_empty()).then_some(answer)
}

fn refused(r: Result<impl Sized, OpenError>) -> Code {
    match r {
        Err(OpenError::Refused { code, .. }) => code,
        Err(e) => panic!("not a refusal: {e}"),
        Ok(_) => panic!("the stream was accepted"),
    }
}

#[test]
fn a_workload_port_is_reached_through_a_tunnel_and_only_by_its_agent() {
    if std::env::var_os("AGORA_SKIP_SANDBOX").is_some() {
        eprintln!("skipped: AGORA_SKIP_SANDBOX is set");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut leftovers = Leftovers::new(tmp.path());
    let a = gateway(&tmp.path().join("a"));
    let tunnel_port = free_udp_port();
    let c = provider(&tmp.path().join("c"), &a.tcp_addr(), tunnel_port);
    leftovers.add(cgroup_parent(&c));
    let home = tmp.path().join("agent");
    std::fs::create_dir_all(&home).unwrap();
    let out = agora(&home)
        .args(["--json", "agent", "signup", "--node"])
        .arg(format!("http://{}", a.http))
        .arg("--key")
        .arg(home.join("agent.key"))
        .output()
        .unwrap();
    assert!(out.status.success(), "signup: {}", stderr(&out));
    let agent = keyfile::load(&home.join("agent.key")).unwrap();

    // Wait until A sees C's offer, then run httpd with port 8080 in the lease.
    wait_for(WAIT, || a.offer_providers("").contains(&c.id).then_some(()))
        .expect("C's offer reaches A");
    let (ok, run, err) = agent_cli(
        &home,
        &a,
        &[
            "run",
            "--lifetime",
            "5m",
            "--port",
            "8080",
            "--",
            "sh",
            "-c",
            "mkdir -p /tmp/www && echo hello-through-the-tunnel > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
        ],
    );
    assert!(ok, "agent run: {err}");
    let lease = run["lease"]["lease"].as_str().unwrap().to_owned();
    let endpoint = format!("127.0.0.1:{tunnel_port}");
    assert_eq!(
        run["lease"]["tunnel_endpoints"][0], endpoint,
        "the grant lists C's tunnel endpoint: {run}"
    );
    assert_eq!(run["lease"]["ports"][0], 8080, "{run}");

    // 1. `agora tunnel` and a plain HTTP GET through the local port.
    let (tunnel, local) = TunnelProc::start(&home, &a, &lease, 8080);
    let page =
        wait_for(WAIT, || http_get(local).filter(|p| p.contains("200"))).unwrap_or_else(|| {
            panic!(
                "no page through the tunnel; tunnel log: {}\nprovider log: {}",
                std::fs::read_to_string(home.join("tunnel.log")).unwrap_or_default(),
                c.log()
            )
        });
    assert!(page.contains("hello-through-the-tunnel"), "{page}");

    // 2. Refusals, straight from a dialer.
    let provider_id: AgoraId = c.id.parse().unwrap();
    let token = URL_SAFE_NO_PAD
        .decode(run["lease"]["capability"].as_str().unwrap())
        .unwrap();
    let addrs = vec![endpoint.parse().unwrap()];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _in_rt = rt.enter(); // quinn endpoints bind inside a runtime
    let stranger = Identity::generate(&mut rand::rng());
    let forged = Signed::sign(
        Capability {
            lease: lease.parse().unwrap(),
            agent: agent.agora_id(),
            provider: stranger.agora_id(),
            ports: vec![8080, 22],
            expires_at: Timestamp::from_unix_millis(u64::MAX / 2),
        },
        &stranger,
    )
    .unwrap();
    let mine = Dialer::new(&agent, provider_id, addrs.clone(), token.clone()).unwrap();
    let theirs = Dialer::new(&stranger, provider_id, addrs.clone(), token.clone()).unwrap();
    rt.block_on(async {
        assert_eq!(refused(theirs.open(8080).await), Code::NotYourLease);
        assert_eq!(
            refused(
                mine.open_with(&Header {
                    port: 8080,
                    token: forged.as_bytes().to_vec(),
                })
                .await
            ),
            Code::BadToken
        );
        assert_eq!(refused(mine.open(22).await), Code::PortNotAllowed);
        // A dialer pinned to another provider key does not even connect.
        let wrong = Dialer::new(&agent, stranger.agora_id(), addrs.clone(), token.clone()).unwrap();
        assert!(matches!(wrong.open(8080).await, Err(OpenError::Dial(_))));
    });

    // 3. Live streams (one direct, one through `agora tunnel`) are cut when the lease stops.
    let (mut send, mut recv) = rt.block_on(mine.open(8080)).unwrap();
    rt.block_on(send.write_all(b"GET /index.html HTTP/1.1\r\n"))
        .unwrap();
    let mut through = TcpStream::connect(local).unwrap();
    through.write_all(b"GET /index.html HTTP/1.1\r\n").unwrap();
    through
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, _, err) = agent_cli(&home, &a, &["stop", &lease]);
    assert!(ok, "agent stop: {err}");
    let stopped = Instant::now();
    let direct = rt.block_on(async {
        let mut buf = [0u8; 1024];
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match recv.read(&mut buf).await {
                    Ok(None) | Err(_) => return,
                    Ok(Some(_)) => {}
                }
            }
        })
        .await
    });
    assert!(
        direct.is_ok(),
        "the direct stream outlived the lease by 10 s"
    );
    let mut buf = [0u8; 1024];
    loop {
        match through.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert!(
                    !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                    "the TCP connection through the tunnel outlived the lease"
                );
                break;
            }
        }
    }
    assert!(stopped.elapsed() < Duration::from_secs(10));
    eprintln!("streams cut {:?} after the stop", stopped.elapsed());
    rt.block_on(async {
        assert_eq!(refused(mine.open(8080).await), Code::LeaseEnded);
    });
    drop(tunnel);
}

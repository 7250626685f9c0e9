//! QUIC tunnels with real `agora` processes on 127.0.0.1: gateway A, provider C with its
//! tunnel endpoint on a UDP port, an agent signed up at A (its free tier claimed at the
//! network's quota committee: A, C and two validator-only nodes, n = 4; each lease starts
//! against a lock certificate).
//!
//! On the sandbox runtime, one network for every check (in this order): the agent runs a
//! busybox workload serving `httpd` on 8080, an echo (`nc -ll -e cat`) on 7000 and a flood
//! (`nc -ll -e yes`) on 7001, and `agora tunnel -L 127.0.0.1:0:PORT` forwards each.
//! - `curl` through the forward gets the page.
//! - Integrity: 128 MiB out and back through the echo, the same SHA-256 both ways.
//! - 100 concurrent connections through the one forward, each gets its own data back.
//! - A reader that never reads the flood does not stall the echo's other connections.
//! - Refusals, straight from a `tunnel::Dialer`: someone else's key (`not_your_lease`), a
//!   forged token (`bad_token`), a port outside the token (`port_not_allowed`), a dialer
//!   pinned to another provider key (no connection), a token past its own expiry while its
//!   lease, extended, runs on (`lease_ended`; the extension's new token works), and a lease
//!   port where the workload does not listen but the provider's host does on its loopback
//!   (`unreachable`, and the host listener sees no connection).
//! - C is killed and started again (the workload runs on): the `agora tunnel` started before
//!   and a dialer connected before both work again at once (C's stateless reset closes the
//!   stale QUIC connection; the stream is opened again on a new one).
//! - Stopping the lease cuts a live stream (and the TCP connection through `agora tunnel`)
//!   within the 10 s deadline, and new streams are refused `lease_ended`; the time from the
//!   stop to the cut is printed (a figure, not an assertion).
//!
//! On the Docker runtime (a locally built busybox image), `curl` through `agora tunnel`
//! once more: `connect(port)` reaches the container's port.
//!
//! `tunnels/traffic.rs` holds the traffic checks; `tunnels/relay.rs` the relay test (a
//! provider the agent cannot route to). The network's pieces are `agora_tests::cluster`.
//!
//! The sandbox needs root and bubblewrap; `AGORA_SKIP_SANDBOX=1` skips that test. The Docker
//! test needs an engine: without one it skips, unless `AGORA_REQUIRE_DOCKER` is set.

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
use std::time::{Duration, Instant};

use agora_attest::{Identity, keyfile};
use agora_node::tunnel::wire::Header;
use agora_node::tunnel::{Code, Dialer, OpenError};
use agora_protocol::lease::Capability;
use agora_protocol::{AgoraId, Ed25519, Signed, Timestamp};
use agora_tests::cluster::{
    Cluster, TunnelProc, agent_cli, capability, cgroup_parent, gateway_and_provider, http_get,
    run_lease, signup, validator_provider, wait_for_offer,
};
use agora_tests::docker_engine::DockerLeftovers;
use agora_tests::leftovers::Leftovers;
use agora_tests::node::{NodeProc, wait_for};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

#[path = "tunnels/traffic.rs"]
mod traffic;

#[path = "tunnels/relay.rs"]
mod relay;

const WAIT: Duration = Duration::from_secs(60);

fn refused(r: Result<impl Sized, OpenError>) -> Code {
    match r {
        Err(OpenError::Refused { code, .. }) => code,
        Err(e) => panic!("not a refusal: {e}"),
        Ok(_) => panic!("the stream was accepted"),
    }
}

/// The ports the sandbox workload serves: busybox `httpd`, an echo, a flood.
const HTTP: u16 = 8080;
const ECHO: u16 = 7000;
const FLOOD: u16 = 7001;

/// The shell command serving [`HTTP`] (a page saying `hello-through-the-tunnel`).
const SERVE_PAGE: &str = "mkdir -p /tmp/www && echo hello-through-the-tunnel > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www";

/// Signs up an agent with its key in `home` at `node`; the key.
fn sign_up(home: &Path, node: &NodeProc) -> Identity {
    signup(home, node);
    keyfile::load(&home.join("agent.key")).unwrap()
}

/// The page through `addr` once the workload serves it (with both logs if it never does).
fn page_through(addr: SocketAddr, home: &Path, provider: &NodeProc) -> String {
    wait_for(WAIT, || http_get(addr).filter(|p| p.contains("200"))).unwrap_or_else(|| {
        panic!(
            "no page through the tunnel; tunnel log: {}\nprovider log: {}",
            std::fs::read_to_string(home.join("tunnel.log")).unwrap_or_default(),
            provider.log()
        )
    })
}

/// Sends `text` on a stream to the echo and reads the answer to its end.
async fn echoed(dialer: &Dialer, text: &[u8]) -> Result<Vec<u8>, OpenError> {
    let (mut send, mut recv) = dialer.open(ECHO).await?;
    send.write_all(text).await.unwrap();
    send.finish().unwrap();
    Ok(recv.read_to_end(1 << 20).await.unwrap())
}

#[test]
fn a_workload_port_is_reached_through_a_tunnel_and_only_by_its_agent() {
    if std::env::var_os("AGORA_SKIP_SANDBOX").is_some() {
        eprintln!("skipped: AGORA_SKIP_SANDBOX is set");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut leftovers = Leftovers::new(tmp.path());
    let Cluster {
        a,
        c,
        tunnel_port,
        committee,
    } = gateway_and_provider(tmp.path(), "sandbox", "");
    leftovers.add(cgroup_parent(&c));
    let home = tmp.path().join("agent");
    let agent = sign_up(&home, &a);
    wait_for_offer(&a, &c);

    // The provider's host listens on its loopback at a port the lease names but the
    // workload does not serve.
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    host.set_nonblocking(true).unwrap();
    let host_port = host.local_addr().unwrap().port();
    let run = run_lease(
        &home,
        &a,
        &c,
        &format!(
            "--lifetime 5m --pids 512 --port {HTTP} --port {ECHO} --port {FLOOD} --port {host_port}"
        ),
        &format!("{SERVE_PAGE} & nc -ll -p {FLOOD} -e yes & exec nc -ll -p {ECHO} -e cat"),
    );
    let lease = run["lease"].as_str().unwrap().to_owned();
    let endpoint = format!("127.0.0.1:{tunnel_port}");
    assert_eq!(
        run["tunnel_endpoints"][0], endpoint,
        "the grant lists C's tunnel endpoint: {run}"
    );
    assert_eq!(run["ports"][0], HTTP, "{run}");

    // A second lease, granted for 20 s and extended at once: its first token expires while
    // the lease runs on (checked after the traffic, by when it has).
    let short = run_lease(
        &home,
        &a,
        &c,
        &format!("--lifetime 20s --port {ECHO}"),
        &format!("exec nc -ll -p {ECHO} -e cat"),
    );
    let short_lease = short["lease"].as_str().unwrap().to_owned();
    let first_token = capability(&short);
    // An `agora tunnel` to it from before the extension must fetch the new token itself
    // (its own home: each `agora tunnel` logs to HOME/tunnel.log).
    let short_home = tmp.path().join("agent-short");
    std::fs::create_dir_all(&short_home).unwrap();
    std::fs::copy(home.join("agent.key"), short_home.join("agent.key")).unwrap();
    let (short_tunnel, short_locals) = TunnelProc::start(&short_home, &a, &short_lease, &[ECHO]);
    let (ok, extended, err) = agent_cli(&home, &a, &["extend", &short_lease, "5m"]);
    assert!(ok, "agent extend: {err}");
    let renewed_token = capability(&extended["lease"]);
    assert_ne!(
        first_token, renewed_token,
        "the extension re-signs the token"
    );
    let first_expiry = Signed::<Capability>::decode(&first_token, &Ed25519)
        .unwrap()
        .body()
        .expires_at;

    // 1. `agora tunnel` and `curl` through the local port.
    let (tunnel, locals) = TunnelProc::start(&home, &a, &lease, &[HTTP, ECHO, FLOOD]);
    let [page_addr, echo_addr, flood_addr] = locals[..] else {
        unreachable!()
    };
    let page = page_through(page_addr, &home, &c);
    assert!(page.contains("hello-through-the-tunnel"), "{page}");

    // 2. Integrity, many connections at once, a reader that never reads.
    wait_for(WAIT, || echo_once(echo_addr, "up").filter(|b| b == "up"))
        .expect("the echo answers through the tunnel");
    with_logs(&home, &c, || {
        traffic::integrity(echo_addr, 128);
        let took = traffic::concurrent(echo_addr, 100, 256);
        eprintln!(
            "100 concurrent connections x 256 KiB echoed in {} ms (median connection {} ms)",
            took.all.as_millis(),
            took.median.as_millis()
        );
        traffic::slow_reader(flood_addr, echo_addr);
    });

    // 3. Refusals, straight from a dialer.
    let provider_id: AgoraId = c.id.parse().unwrap();
    let token = capability(&run);
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
                mine.open_with(&Header::new(8080, forged.as_bytes().to_vec()))
                    .await
            ),
            Code::BadToken
        );
        assert_eq!(refused(mine.open(22).await), Code::PortNotAllowed);
        // A dialer pinned to another provider key does not even connect.
        let wrong = Dialer::new(&agent, stranger.agora_id(), addrs.clone(), token.clone()).unwrap();
        assert!(matches!(wrong.open(8080).await, Err(OpenError::Dial(_))));
        // The lease's port where only the provider's host listens: the stream goes to the
        // workload's own loopback, where nothing does.
        assert_eq!(refused(mine.open(host_port).await), Code::Unreachable);
    });
    match host.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the host's loopback listener was reached through the tunnel: {other:?}"),
    }

    // 4. The short lease's first token, past its expiry, is refused though the lease runs;
    // the token of its extension works.
    std::thread::sleep(
        first_expiry.saturating_duration_since(agora_node::clock::now())
            + Duration::from_millis(100),
    );
    let old = Dialer::new(&agent, provider_id, addrs.clone(), first_token).unwrap();
    let new = Dialer::new(&agent, provider_id, addrs.clone(), renewed_token).unwrap();
    rt.block_on(async {
        match old.open(ECHO).await {
            Err(OpenError::Refused {
                code: Code::LeaseEnded,
                detail,
            }) => assert!(detail.contains("expired"), "{detail}"),
            other => panic!("an expired token: {:?}", other.map(|_| ())),
        }
        let back = wait_for_async(|| echoed(&new, b"renewed")).await;
        assert_eq!(back, b"renewed");
    });
    assert_eq!(
        echo_once(short_locals[0], "renewed").as_deref(),
        Some("renewed"),
        "the agora tunnel started before the extension, past the first token's expiry; its log: {}",
        std::fs::read_to_string(short_home.join("tunnel.log")).unwrap_or_default()
    );
    drop(short_tunnel);

    // 5. C is killed and started again; its workload runs on.
    let c_dir = c.dir.clone();
    drop(c);
    let killed = Instant::now();
    let c = validator_provider(
        &c_dir,
        &a.tcp_addr(),
        "sandbox",
        tunnel_port,
        "",
        &committee,
    );
    rt.block_on(async {
        // Ready once a fresh dialer gets through.
        wait_for_async(|| async {
            let fresh = Dialer::new(&agent, provider_id, addrs.clone(), token.clone()).unwrap();
            echoed(&fresh, b"fresh").await
        })
        .await;
    });
    let ready = killed.elapsed();
    // The dialer connected before the kill holds a dead connection: C's stateless reset
    // closes it, and the stream is opened again on a new one, at once.
    let back = rt
        .block_on(echoed(&mine, b"after the restart"))
        .unwrap_or_else(|e| {
            panic!(
                "the dialer connected before the restart: {e}\nC's log: {}",
                c.log()
            )
        });
    assert_eq!(back, b"after the restart");
    // So does the `agora tunnel` started before the kill, on its next TCP connection.
    let page = http_get(page_addr).unwrap_or_else(|| {
        panic!(
            "agora tunnel after the restart; its log: {}",
            std::fs::read_to_string(home.join("tunnel.log")).unwrap_or_default()
        )
    });
    assert!(page.contains("hello-through-the-tunnel"), "{page}");
    eprintln!(
        "restart: C served again {} ms after the kill; the old dialer and agora tunnel went through at once",
        ready.as_millis()
    );

    // 6. Live streams (one direct, one through `agora tunnel`) are cut when the lease stops;
    // each is watched from before the stop, so the time of its cut is known.
    let (mut send, mut recv) = rt.block_on(mine.open(8080)).unwrap();
    rt.block_on(send.write_all(b"GET /index.html HTTP/1.1\r\n"))
        .unwrap();
    let direct = rt.spawn(async move {
        let mut buf = [0u8; 1024];
        while let Ok(Some(_)) = recv.read(&mut buf).await {}
        Instant::now()
    });
    let mut through = TcpStream::connect(page_addr).unwrap();
    through.write_all(b"GET /index.html HTTP/1.1\r\n").unwrap();
    through
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let through = std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        loop {
            match through.read(&mut buf) {
                Ok(0) => return Ok(Instant::now()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(e);
                }
                Err(_) => return Ok(Instant::now()),
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    let (ok, _, err) = agent_cli(&home, &a, &["stop", &lease]);
    assert!(ok, "agent stop: {err}");
    let answered = sent.elapsed();
    // The deadline: 10 s once the stop has been answered.
    let deadline = answered + Duration::from_secs(10);
    let direct_cut = rt
        .block_on(tokio::time::timeout(deadline, direct))
        .expect("the direct stream outlived the lease by 10 s")
        .unwrap()
        - sent;
    let through_cut = through
        .join()
        .unwrap()
        .expect("the TCP connection through the tunnel outlived the lease")
        - sent;
    assert!(direct_cut < deadline && through_cut < deadline);
    drop(send);
    eprintln!(
        "stop to cut: the stop answered in {} ms; the direct stream was cut {} ms and the TCP connection through agora tunnel {} ms after it was sent",
        answered.as_millis(),
        direct_cut.as_millis(),
        through_cut.as_millis()
    );
    rt.block_on(async {
        assert_eq!(refused(mine.open(8080).await), Code::LeaseEnded);
    });
    drop(tunnel);
    // 7. Metering and the agent surface.
    final_receipt_counts_tunnels(&a, &lease);
    tunnel_operation(&a, &c, &short_lease, ECHO, &endpoint, &lease);
}

/// `text` through the echo at `addr` (sent, half-closed, read to the end), or `None` if
/// the connection fails.
fn echo_once(addr: SocketAddr, text: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(text.as_bytes()).ok()?;
    s.shutdown(std::net::Shutdown::Write).ok()?;
    let mut back = String::new();
    s.read_to_string(&mut back).ok()?;
    Some(back)
}

/// Runs `check`; if it fails, prints the `agora tunnel` log in `home` and what went wrong
/// in `provider`'s log before failing the same way.
fn with_logs(home: &Path, provider: &NodeProc, check: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
        let log = std::fs::read_to_string(provider.dir.join("node.log")).unwrap_or_default();
        let trouble: Vec<&str> = log
            .lines()
            .filter(|l| {
                ["WARN", "ERROR", "refused", "failed"]
                    .iter()
                    .any(|w| l.contains(w))
            })
            .collect();
        eprintln!(
            "agora tunnel's log:\n{}\nthe provider's warnings and failures:\n{}",
            std::fs::read_to_string(home.join("tunnel.log")).unwrap_or_default(),
            trouble.join("\n")
        );
        std::panic::resume_unwind(panic);
    }
}

/// Retries `attempt` every 100 ms until it succeeds, for up to [`WAIT`].
async fn wait_for_async<T, F>(mut attempt: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Result<T, OpenError>>,
{
    let end = Instant::now() + WAIT;
    loop {
        match attempt().await {
            Ok(v) => return v,
            Err(e) if Instant::now() >= end => panic!("still failing after {WAIT:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[test]
fn the_tunnel_reaches_a_docker_workload_too() {
    if !agora_tests::require_docker("the_tunnel_reaches_a_docker_workload_too") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut engine = DockerLeftovers::new();
    engine.busybox(tmp.path());
    let Cluster {
        a,
        c,
        committee: _committee,
        ..
    } = gateway_and_provider(tmp.path(), "docker", &engine.config());
    let home = tmp.path().join("agent");
    sign_up(&home, &a);
    wait_for_offer(&a, &c);
    let run = run_lease(
        &home,
        &a,
        &c,
        &format!("--runtime docker --lifetime 5m --port {HTTP}"),
        SERVE_PAGE,
    );
    assert_eq!(
        engine.containers(true).len(),
        1,
        "a running container of C's"
    );
    let lease = run["lease"].as_str().unwrap().to_owned();
    let (tunnel, locals) = TunnelProc::start(&home, &a, &lease, &[HTTP]);
    let page = page_through(locals[0], &home, &c);
    assert!(page.contains("hello-through-the-tunnel"), "{page}");
    drop(tunnel);
    let (ok, _, err) = agent_cli(&home, &a, &["stop", &lease]);
    assert!(ok, "agent stop: {err}");
    final_receipt_counts_tunnels(&a, &lease);
}

/// `lease`'s final receipt at `node` counts its tunnel bytes, the same in the provider-signed
/// receipt as in the view, and egress includes the outgoing ones. (Only "more than none": a
/// provider killed mid-test loses up to one sampling period of counts, by design.)
fn final_receipt_counts_tunnels(node: &NodeProc, lease: &str) {
    let (status, view) = node.get(&format!("/v1/leases/{lease}"));
    assert_eq!(status, 200, "{view}");
    let r = &view["receipt"];
    assert!(r["ended"].is_string(), "a final receipt: {view}");
    let bytes = URL_SAFE_NO_PAD
        .decode(r["signed"].as_str().unwrap())
        .unwrap();
    let signed = Signed::<agora_protocol::lease::UsageReceipt>::decode(&bytes, &Ed25519).unwrap();
    let b = signed.body();
    assert_eq!(r["tunnel_in_bytes"], b.tunnel_in_bytes, "{view}");
    assert_eq!(r["tunnel_out_bytes"], b.tunnel_out_bytes, "{view}");
    assert!(b.tunnel_in_bytes > 0 && b.tunnel_out_bytes > 0, "{view}");
    assert!(b.egress_bytes >= b.tunnel_out_bytes, "{view}");
    eprintln!(
        "final receipt of {}: tunnels {} B in, {} B out; egress {} B",
        &lease[..8],
        b.tunnel_in_bytes,
        b.tunnel_out_bytes,
        b.egress_bytes
    );
}

/// `GET /v1/leases/{id}/tunnel` at `node`: running `lease` (at `provider`, tunnel endpoint
/// `endpoint`, workload port `port`) answers what a tunnel needs; `ended` has none; other
/// ports, bad queries and unknown leases get their documented codes.
fn tunnel_operation(
    node: &NodeProc,
    provider: &NodeProc,
    lease: &str,
    port: u16,
    endpoint: &str,
    ended: &str,
) {
    let (status, t) = node.get(&format!("/v1/leases/{lease}/tunnel"));
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["provider"], provider.id.as_str(), "{t}");
    assert_eq!(t["endpoints"][0], endpoint, "{t}");
    assert_eq!(t["alpn"], "agora-tunnel/1", "{t}");
    assert_eq!(t["ports"], serde_json::json!([port]), "{t}");
    assert!(t["remaining_secs"].as_u64().unwrap() > 0, "{t}");
    assert_eq!(
        t["command"],
        format!("agora tunnel {lease} -L 127.0.0.1:0:{port}"),
        "{t}"
    );
    let grant = t["grant"].as_str().unwrap();
    assert!(!grant.is_empty() && t["capability"].is_string(), "{t}");
    for (path, want, code) in [
        (
            format!("/v1/leases/{lease}/tunnel?port=22"),
            400,
            "port_not_allowed",
        ),
        (
            format!("/v1/leases/{lease}/tunnel?port=x"),
            400,
            "bad_query",
        ),
        (format!("/v1/leases/{ended}/tunnel"), 409, "ended"),
        (
            format!("/v1/leases/{}/tunnel", "0".repeat(64)),
            404,
            "unknown_lease",
        ),
        ("/v1/leases/nope/tunnel".to_owned(), 400, "bad_lease_id"),
    ] {
        let (status, err) = node.get(&path);
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (want, Some(code)),
            "{path}: {err}"
        );
    }
}

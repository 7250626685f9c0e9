//! Published services, end to end with real `agora` processes on 127.0.0.1: gateway A and
//! sandbox provider C (its tunnel endpoint on a UDP port), an owner agent signed up at A and
//! another agent, the grantee, signed up at C. The network runs under a quota committee of
//! n = 4 (A, C and two validator-only nodes; `agora_tests::cluster`): signups claim the free
//! tier there, leases start against lock certificates.
//!
//! 1. The owner runs busybox `httpd` on port 8080 of a lease with a CGI script that is a
//!    real MCP server (streamable HTTP, plain JSON answers: `initialize`, notifications
//!    answered 202, `tools/list`, `tools/call` of `greet`), and publishes it with
//!    `agora agent publish LEASE --port 8080 --name greeter --kind mcp` at A.
//! 2. The record travels by gossip: the grantee finds it at C with `agora services --kind
//!    mcp` (and the owner's signed record verifies).
//! 3. The owner signs a grant for the grantee's key (`agora agent grant --out FILE`); the
//!    grantee runs `agora tunnel --grant FILE -L 127.0.0.1:0:8080` against C. The official
//!    Python MCP SDK finds the service with the node's MCP tool `list_services`, then
//!    completes a session through the tunnel: initialize, list tools, call `greet`.
//! 4. Refusals from a dialer: the same grant presented by a third key (`not_your_lease`),
//!    the capability without the grant from the grantee's key (`not_your_lease`), a port the
//!    grant does not name (`port_not_allowed`).
//! 5. `agora agent revoke LEASE GRANT_ID` through A: a live TCP connection through the
//!    grantee's tunnel is cut (deadline 10 s; the time is printed), new streams under the
//!    grant are refused `grant_revoked`, and the owner's own streams still work.
//!
//! A second test: a node started after a service was published lists it (sync on connect,
//! not gossip: its `agora_sync_services_total` counts it), and a grantee's `agora tunnel
//! --grant` at that late node outlives the owner's first expiry: `agora agent extend`
//! republishes the record with the re-signed capability, the tunnel picks it up from the
//! directory, and a new connection after the old expiry gets the page (the old capability
//! alone is refused `lease_ended` by then).
//!
//! The sandbox needs root and bubblewrap; `AGORA_SKIP_SANDBOX=1` skips. Without the Python
//! test tools the first test skips outside CI (see `agora_tests::python`).

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use agora_attest::{Identity, keyfile};
use agora_node::tunnel::wire::Header;
use agora_node::tunnel::{Code, Dialer, OpenError};
use agora_protocol::service::{ServiceGrant, ServiceRecord};
use agora_protocol::{AgoraId, Ed25519, Signed};
use agora_tests::cluster::{
    Cluster, TunnelProc, agent_cli, cgroup_parent, gateway_and_provider, grant, signup,
};
use agora_tests::committee::Committee;
use agora_tests::leftovers::Leftovers;
use agora_tests::node::{NodeProc, wait_for};
use agora_tests::python::{python_venv, scripts_dir};
use agora_tests::{agora, stderr, stdout};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const PORT: u16 = 8080;
/// The MCP server: busybox httpd runs it as `/cgi-bin/mcp`.
const MCP_CGI: &str = include_str!("services/mcp.cgi");

fn refused(r: Result<impl Sized, OpenError>) -> Code {
    match r {
        Err(OpenError::Refused { code, .. }) => code,
        Err(e) => panic!("not a refusal: {e}"),
        Ok(_) => panic!("the stream was accepted"),
    }
}

/// `agora --json services ARGS… --node N`.
fn services(home: &std::path::Path, node: &NodeProc, args: &[&str]) -> Value {
    let out = agora(home)
        .args(["--json", "services"])
        .args(args)
        .arg("--node")
        .arg(format!("http://{}", node.http))
        .output()
        .unwrap();
    assert!(out.status.success(), "agora services: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// One MCP `initialize` POST through `addr`: the answer, or `None` when the connection
/// closed without one.
fn mcp_initialize(addr: std::net::SocketAddr) -> Option<String> {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"probe","version":"1"}}}"#;
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "POST /cgi-bin/mcp HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    (!answer.is_empty()).then_some(answer)
}

#[test]
fn a_published_mcp_service_is_found_used_through_a_granted_tunnel_and_revoked() {
    if std::env::var_os("AGORA_SKIP_SANDBOX").is_some() {
        eprintln!("skipped: AGORA_SKIP_SANDBOX is set");
        return;
    }
    let Some(venv) = python_venv("services") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut leftovers = Leftovers::new(tmp.path());
    let Cluster {
        a,
        c,
        tunnel_port,
        committee: _committee,
    } = gateway_and_provider(tmp.path(), "sandbox", "");
    leftovers.add(cgroup_parent(&c));
    let owner_home = tmp.path().join("owner");
    let owner_id = signup(&owner_home, &a);
    let owner = keyfile::load(&owner_home.join("agent.key")).unwrap();
    let grantee_home = tmp.path().join("grantee");
    let grantee_id = signup(&grantee_home, &c);
    let grantee = keyfile::load(&grantee_home.join("agent.key")).unwrap();

    // 1. The owner's MCP server in a lease, published at A.
    wait_for(WAIT, || a.offer_providers("").contains(&c.id).then_some(()))
        .expect("C's offer reaches A");
    let script = format!(
        "mkdir -p /tmp/www/cgi-bin && cat > /tmp/www/cgi-bin/mcp <<'AGORA_EOF'\n{MCP_CGI}AGORA_EOF\nchmod +x /tmp/www/cgi-bin/mcp && exec httpd -f -p {PORT} -h /tmp/www"
    );
    let (ok, run, err) = agent_cli(
        &owner_home,
        &a,
        &[
            "run",
            "--lifetime",
            "10m",
            "--port",
            "8080",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    assert!(ok, "agent run: {err}");
    let lease = run["lease"]["lease"].as_str().unwrap().to_owned();
    let (ok, published, err) = agent_cli(
        &owner_home,
        &a,
        &[
            "publish",
            &lease,
            "--port",
            "8080",
            "--name",
            "greeter",
            "--kind",
            "mcp",
            "--description",
            "greets whoever asks, from inside a lease",
            "--ttl",
            "30m",
        ],
    );
    assert!(ok, "agent publish: {err}");
    assert_eq!(published["published"], true, "{published}");
    assert_eq!(published["service"]["owner"], owner_id, "{published}");

    // 2. The grantee finds it at C, carried there by gossip, and verifies the record.
    let found = wait_for(WAIT, || {
        let v = services(&grantee_home, &c, &["--kind", "mcp"]);
        v["services"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "greeter").cloned())
    })
    .unwrap_or_else(|| panic!("the record never reached C; C's log: {}", c.log()));
    assert_eq!(found["lease"], lease.as_str());
    assert_eq!(found["port"], PORT);
    assert_eq!(found["provider"], c.id.as_str());
    let record: Signed<ServiceRecord> = Signed::decode(
        &URL_SAFE_NO_PAD
            .decode(found["signed"].as_str().unwrap())
            .unwrap(),
        &Ed25519,
    )
    .unwrap();
    assert_eq!(record.signer().to_string(), owner_id);
    assert_eq!(record.body().capability.signer().to_string(), c.id);
    let http = services(&grantee_home, &c, &["--kind", "http"]);
    assert_eq!(http["count"], 0, "{http}");

    // 3. A grant for the grantee's key, a tunnel with it, an MCP session through it.
    let grant_file = tmp.path().join("grant.b64");
    let granted = grant(
        &owner_home,
        &a,
        &lease,
        &grantee_id,
        "8080",
        &["--ttl", "20m"],
        &grant_file,
    );
    let grant_id = granted["id"].as_str().unwrap().to_owned();
    let grant_bytes = URL_SAFE_NO_PAD
        .decode(std::fs::read_to_string(&grant_file).unwrap().trim())
        .unwrap();
    let grant: Signed<ServiceGrant> = Signed::decode(&grant_bytes, &Ed25519).unwrap();
    assert_eq!(grant.body().grantee.to_string(), grantee_id);
    assert_eq!(grant.body().id.to_string(), grant_id);

    let (tunnel, locals) = TunnelProc::start_with(
        &grantee_home,
        &c,
        &["--grant", grant_file.to_str().unwrap()],
        &[PORT],
    );
    let local = locals[0];
    let first = wait_for(WAIT, || {
        mcp_initialize(local).filter(|a| a.contains("200 OK"))
    })
    .unwrap_or_else(|| {
        panic!(
            "no MCP answer through the granted tunnel; tunnel log: {}\nprovider log: {}",
            std::fs::read_to_string(grantee_home.join("tunnel.log")).unwrap_or_default(),
            c.log()
        )
    });
    assert!(first.contains("greeter"), "{first}");
    let out = Command::new(venv.join("bin").join("python"))
        .arg(scripts_dir().join("mcp_service.py"))
        .arg(format!("http://{}/mcp", c.http))
        .arg(format!("http://{local}/cgi-bin/mcp"))
        .arg("greeter")
        .env("HOME", tmp.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "MCP client failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let seen: Value = serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap();
    assert!(
        seen["listed"]
            .as_array()
            .unwrap()
            .contains(&Value::from("greeter")),
        "{seen}"
    );
    assert_eq!(seen["lease"], lease.as_str(), "{seen}");
    assert_eq!(seen["server_name"], "greeter", "{seen}");
    assert_eq!(seen["tools"], serde_json::json!(["greet"]), "{seen}");
    assert_eq!(
        seen["greeting"], "hello, agent-b, from inside the lease",
        "{seen}"
    );

    // 4. Refusals, straight from dialers.
    let provider_id: AgoraId = c.id.parse().unwrap();
    let addrs = vec![format!("127.0.0.1:{tunnel_port}").parse().unwrap()];
    let token = record.body().capability.as_bytes().to_vec();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _in_rt = rt.enter(); // quinn endpoints bind inside a runtime
    let stranger = Identity::generate(&mut rand::rng());
    let theirs = Dialer::new(&stranger, provider_id, addrs.clone(), token.clone())
        .unwrap()
        .with_grant(grant_bytes.clone());
    let no_grant = Dialer::new(&grantee, provider_id, addrs.clone(), token.clone()).unwrap();
    let granted_dialer = Dialer::new(&grantee, provider_id, addrs.clone(), token.clone())
        .unwrap()
        .with_grant(grant_bytes.clone());
    let own = Dialer::new(&owner, provider_id, addrs.clone(), token.clone()).unwrap();
    rt.block_on(async {
        assert_eq!(refused(theirs.open(PORT).await), Code::NotYourLease);
        assert_eq!(refused(no_grant.open(PORT).await), Code::NotYourLease);
        let other_port = Header {
            grant: Some(grant_bytes.clone()),
            ..Header::new(22, token.clone())
        };
        assert_eq!(
            refused(granted_dialer.open_with(&other_port).await),
            Code::PortNotAllowed
        );
        assert!(granted_dialer.open(PORT).await.is_ok());
    });

    // 5. Revocation cuts a live connection through the grantee's tunnel at once.
    let mut live = TcpStream::connect(local).unwrap();
    live.write_all(b"POST /cgi-bin/mcp HTTP/1.0\r\n").unwrap();
    live.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let (mut send, mut recv) = rt.block_on(granted_dialer.open(PORT)).unwrap();
    rt.block_on(send.write_all(b"POST /cgi-bin/mcp HTTP/1.0\r\n"))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, revoked, err) = agent_cli(&owner_home, &a, &["revoke", &lease, &grant_id]);
    assert!(ok, "agent revoke: {err}");
    assert_eq!(revoked["revoked"], grant_id.as_str(), "{revoked}");
    let at = Instant::now();
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
        "the granted stream outlived the revocation by 10 s"
    );
    let mut buf = [0u8; 1024];
    loop {
        match live.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert!(
                    !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                    "the connection through the grantee's tunnel outlived the revocation"
                );
                break;
            }
        }
    }
    let cut = at.elapsed();
    assert!(cut < Duration::from_secs(10), "cut after {cut:?}");
    eprintln!("streams under the grant cut {cut:?} after `agora agent revoke` returned");
    rt.block_on(async {
        assert_eq!(refused(granted_dialer.open(PORT).await), Code::GrantRevoked);
        // The owner's own streams are untouched.
        assert!(own.open(PORT).await.is_ok());
    });
    assert!(
        mcp_initialize(local).is_none_or(|a| !a.contains("200 OK")),
        "the grantee's tunnel still reaches the service"
    );
    drop(tunnel);
}

/// The page the sandbox workload serves on [`PORT`].
const SERVE_PAGE: &str = "mkdir -p /tmp/www && echo hello-from-the-service > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www";

/// How many service records `node` accepted through sync (its `/metrics`).
fn synced_records(node: &NodeProc) -> u64 {
    let (status, text) = agora_tests::node::http_get_text(node.http, "/metrics");
    assert_eq!(status, 200);
    text.lines()
        .find(|l| {
            l.starts_with("agora_sync_services_total")
                && l.contains("kind=\"service\"")
                && l.contains("result=\"accepted\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// The capability's expiry in `node`'s listing of `lease` (RFC 3339 of the record's
/// capability), if listed.
fn listed_capability_expiry(node: &NodeProc, home: &std::path::Path, lease: &str) -> Option<u64> {
    let v = services(home, node, &["--lease", lease]);
    let s = v["services"].as_array()?.first()?.clone();
    let cap: Signed<agora_protocol::lease::Capability> = Signed::decode(
        &URL_SAFE_NO_PAD.decode(s["capability"].as_str()?).ok()?,
        &Ed25519,
    )
    .ok()?;
    Some(cap.body().expires_at.as_unix_millis())
}

#[test]
fn a_late_node_lists_services_by_sync_and_a_grantee_tunnel_outlives_the_owners_extension() {
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
    let owner_home = tmp.path().join("owner");
    signup(&owner_home, &a);
    wait_for(WAIT, || a.offer_providers("").contains(&c.id).then_some(()))
        .expect("C's offer reaches A");

    // A lease whose first capability expires in a minute, its page published at A.
    let (ok, run, err) = agent_cli(
        &owner_home,
        &a,
        &[
            "run",
            "--lifetime",
            "60s",
            "--port",
            "8080",
            "--",
            "sh",
            "-c",
            SERVE_PAGE,
        ],
    );
    assert!(ok, "agent run: {err}");
    let lease = run["lease"]["lease"].as_str().unwrap().to_owned();
    let first_capability = agora_tests::cluster::capability(&run["lease"]);
    let first_expiry =
        Signed::<agora_protocol::lease::Capability>::decode(&first_capability, &Ed25519)
            .unwrap()
            .body()
            .expires_at;
    let (ok, _, err) = agent_cli(
        &owner_home,
        &a,
        &[
            "publish", &lease, "--port", "8080", "--name", "late", "--kind", "http",
        ],
    );
    assert!(ok, "agent publish: {err}");
    // Long enough that gossipsub's message cache no longer offers it to newcomers.
    std::thread::sleep(Duration::from_secs(6));

    // 1. D starts now, bootstrapping from A, and lists the service: sync brought it.
    let d = gateway_joining(&tmp.path().join("d"), &a, &committee);
    let grantee_home = tmp.path().join("grantee");
    std::fs::create_dir_all(&grantee_home).unwrap();
    let (grantee, _) =
        keyfile::load_or_create(&grantee_home.join("agent.key"), &mut rand::rng()).unwrap();
    let listed = wait_for(WAIT, || {
        services(&grantee_home, &d, &["--name", "late"])["services"]
            .as_array()
            .and_then(|s| s.first().cloned())
    })
    .unwrap_or_else(|| {
        panic!(
            "the late node never listed the service; D's log: {}",
            d.log()
        )
    });
    assert_eq!(listed["lease"], lease.as_str());
    assert!(synced_records(&d) >= 1, "D got the record by sync");

    // 2. A grant, and the grantee's tunnel at D.
    let grant_file = tmp.path().join("grant.b64");
    grant(
        &owner_home,
        &a,
        &lease,
        &grantee.agora_id().to_string(),
        "8080",
        &[],
        &grant_file,
    );
    let (tunnel, locals) = TunnelProc::start_with(
        &grantee_home,
        &d,
        &["--grant", grant_file.to_str().unwrap()],
        &[PORT],
    );
    let page = |what: &str| {
        wait_for(WAIT, || {
            agora_tests::cluster::http_get(locals[0]).filter(|p| p.contains("200"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no page through the grantee's tunnel {what}; tunnel log: {}\nprovider log: {}",
                std::fs::read_to_string(grantee_home.join("tunnel.log")).unwrap_or_default(),
                c.log()
            )
        })
    };
    assert!(page("at first").contains("hello-from-the-service"));

    // 3. The owner extends: `agora agent extend` republishes the record, D lists the new
    // capability.
    let (ok, extended, err) = agent_cli(&owner_home, &a, &["extend", &lease, "10m"]);
    assert!(ok, "agent extend: {err}");
    assert_eq!(
        extended["republished"].as_array().map(Vec::len),
        Some(1),
        "{extended}"
    );
    wait_for(WAIT, || {
        listed_capability_expiry(&d, &grantee_home, &lease)
            .filter(|e| *e > first_expiry.as_unix_millis())
    })
    .expect("D lists the republished record");

    // 4. Past the first expiry, the first capability alone is refused, and a new connection
    // through the grantee's tunnel still gets the page.
    let wait = first_expiry.saturating_duration_since(agora_node::clock::now());
    std::thread::sleep(wait + Duration::from_secs(3));
    let provider_id: AgoraId = c.id.parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _in_rt = rt.enter();
    let grant_bytes = URL_SAFE_NO_PAD
        .decode(std::fs::read_to_string(&grant_file).unwrap().trim())
        .unwrap();
    let stale = Dialer::new(
        &grantee,
        provider_id,
        vec![format!("127.0.0.1:{tunnel_port}").parse().unwrap()],
        first_capability,
    )
    .unwrap()
    .with_grant(grant_bytes);
    assert_eq!(
        rt.block_on(async { refused(stale.open(PORT).await) }),
        Code::LeaseEnded
    );
    assert!(page("after the first expiry").contains("hello-from-the-service"));
    drop(tunnel);
}

/// A gateway in region `eu` bootstrapping from `peer` (it joins an existing network).
fn gateway_joining(dir: &std::path::Path, peer: &NodeProc, committee: &Committee) -> NodeProc {
    NodeProc::start_configured(
        dir,
        &format!(
            "roles = [\"gateway\"]\nregion = \"eu\"\n{}",
            committee.config_line()
        ),
        Some(&peer.tcp_addr()),
    )
}

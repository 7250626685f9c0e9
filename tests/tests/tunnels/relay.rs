//! The relay: provider C sits in a network namespace the agent's namespace cannot route to;
//! gateway A (on the host) reaches both. `agora tunnel --relay never` from the agent's
//! namespace cannot reach C; `--relay auto` falls back to A's relay and the page comes
//! through. Relay requests are refused end to end with their codes: signed by another key
//! (`unauthorized`), replayed (`replay`), signed too long ago (`stale`), naming an endpoint
//! the grant does not list (`not_an_endpoint`), for a grant listing none (`no_tunnel_endpoint`),
//! and past A's `[relay] per_agent = 2` (`relay_busy`). Bytes altered on the relayed path (a
//! proxy flipping one bit of every packet towards the agent once the handshake is done)
//! break the connection instead of reaching the agent. A grantee (another agent the owner
//! granted port 8080 of its published service) in the agents' namespace gets the page
//! through A's relay too (`agora tunnel --grant --relay auto`), while a stranger with its
//! grant (`unauthorized`), a port it was not granted (`port_not_allowed`) and a lease whose
//! provider signed no endpoint A knows (`no_tunnel_endpoint`) are refused. Last, from the
//! host (which does route to C), `agora agent exec|logs --direct` run over a QUIC
//! connection straight to C's tunnel endpoint.

use std::net::{SocketAddr, UdpSocket};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use agora_node::agent::request::sign_op;
use agora_node::tunnel::forward::grantee_relay_body;
use agora_protocol::Digest;
use agora_protocol::lease::{LeaseGrant, Op};
use agora_protocol::service::{GrantId, ServiceGrant};
use agora_tests::committee::Committee;
use agora_tests::netns::Island;
use agora_tests::node::{Launch, http_json};
use serde_json::json;

use super::*;

/// A UDP proxy in front of `upstream` that, once `flip` is set, alters one byte of every
/// datagram on its way back to the client.
struct Tamperer {
    addr: SocketAddr,
    flip: Arc<AtomicBool>,
    altered: Arc<AtomicUsize>,
    done: Arc<AtomicBool>,
}

impl Tamperer {
    fn start(upstream: SocketAddr) -> Self {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("0.0.0.0:0").unwrap();
        back.connect(upstream).unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
        }
        let t = Self {
            addr: front.local_addr().unwrap(),
            flip: Arc::default(),
            altered: Arc::default(),
            done: Arc::default(),
        };
        let client = Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
        let (front2, back2) = (front.try_clone().unwrap(), back.try_clone().unwrap());
        let (done, client2) = (t.done.clone(), client.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_535];
            while !done.load(Ordering::Relaxed) {
                if let Ok((n, src)) = front2.recv_from(&mut buf) {
                    *client2.lock().unwrap() = Some(src);
                    let _ = back2.send(&buf[..n]);
                }
            }
        });
        let (done, flip, altered) = (t.done.clone(), t.flip.clone(), t.altered.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_535];
            while !done.load(Ordering::Relaxed) {
                let Ok(n) = back.recv(&mut buf) else { continue };
                if flip.load(Ordering::Relaxed) && n > 0 {
                    buf[n - 1] ^= 0x01; // inside the AEAD tag or the ciphertext
                    altered.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(to) = *client.lock().unwrap() {
                    let _ = front.send_to(&buf[..n], to);
                }
            }
        });
        t
    }
}

impl Drop for Tamperer {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// `agora --json tunnel TARGET… -L 0.0.0.0:0:PORT --relay MODE` inside `island` (TARGET: a
/// lease, or `--grant FILE`); the child and its first stdout line.
fn tunnel_in(
    island: &Island,
    home: &Path,
    node: &str,
    target: &[&str],
    mode: &str,
) -> (std::process::Child, String) {
    let mut child = island
        .command(agora_tests::agora_bin())
        .env("HOME", home)
        .env_remove("RUST_LOG")
        .args(["--json", "tunnel"])
        .args(target)
        .args(["-L", &format!("0.0.0.0:0:{HTTP}")])
        .args(["--relay", mode, "--node", node, "--key"])
        .arg(home.join("agent.key"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(home.join(format!("tunnel-{mode}.log"))).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

fn relay_body(agent: &Identity, grant: &Signed<LeaseGrant>) -> Value {
    relay_body_at(agent, grant, agora_node::clock::now())
}

/// [`relay_body`] with the operation signed at `at`.
fn relay_body_at(agent: &Identity, grant: &Signed<LeaseGrant>, at: Timestamp) -> Value {
    let g = grant.body();
    let op = sign_op(agent, g.provider, g.lease, Op::Relay, at).unwrap();
    json!({
        "op": URL_SAFE_NO_PAD.encode(op.as_bytes()),
        "grant": URL_SAFE_NO_PAD.encode(grant.as_bytes()),
    })
}

/// `(status, error code)` of `POST /v1/leases/LEASE/relay` at `node` with `body`.
fn relay_refusal(node: &NodeProc, lease: &str, body: &Value) -> (u16, String) {
    let (status, answer) = http_json(
        node.http,
        "POST",
        &format!("/v1/leases/{lease}/relay"),
        &[],
        Some(body),
    );
    let code = answer["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, code)
}

/// A lease of `agent` granted by a key of no real provider, listing no tunnel endpoint:
/// the provider's word as the relay sees it, and nothing to relay to.
fn endpointless_grant(agent: &Identity) -> Signed<LeaseGrant> {
    let provider = Identity::generate(&mut rand::rng());
    let now = agora_node::clock::now();
    let until = now.saturating_add(Duration::from_secs(600));
    let lease = Digest::of(b"a lease no node relayed");
    let token = Signed::sign(
        Capability {
            lease,
            agent: agent.agora_id(),
            provider: provider.agora_id(),
            ports: vec![HTTP],
            expires_at: until,
        },
        &provider,
    )
    .unwrap();
    Signed::sign(
        LeaseGrant {
            owner: None,
            lease,
            agent: agent.agora_id(),
            provider: provider.agora_id(),
            price_per_sec: 1,
            reserved_micro: 600,
            starts_at: now,
            expires_at: until,
            tunnel_endpoints: Vec::new(),
            token,
        },
        &provider,
    )
    .unwrap()
}

#[test]
fn a_gateway_relays_the_tunnel_of_an_agent_that_cannot_reach_the_provider() {
    if std::env::var_os("AGORA_SKIP_SANDBOX").is_some() {
        eprintln!("skipped: AGORA_SKIP_SANDBOX is set");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut leftovers = Leftovers::new(tmp.path());
    let net = 200 + (rand::random::<u8>() % 50);
    let agents = Island::create(net);
    let providers = Island::create(net + 1);

    // A: HTTP and libp2p on the agents' link, libp2p on the providers' link too.
    // A and C are two of the quota committee's four validators; the other two listen on
    // the host's side of the providers' link, where A and C both reach them.
    let a_dir = tmp.path().join("a");
    let c_dir = tmp.path().join("c");
    let mut committee = Committee::new(tmp.path(), &[a_dir.as_path(), c_dir.as_path()]);
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::write(
        a_dir.join("node.toml"),
        format!(
            "roles = [\"gateway\", \"validator\"]\nregion = \"eu\"\n{}\n[network]\nkad_server = true\n\n[relay]\nsessions = 8\nper_agent = 2\n",
            committee.config_line()
        ),
    )
    .unwrap();
    let a = NodeProc::start_in(
        &a_dir,
        &Launch {
            netns: None,
            host: agents.host_ip.to_string(),
            ..Launch::default()
        },
        &[
            "--config".to_owned(),
            a_dir.join("node.toml").display().to_string(),
            "--listen".to_owned(),
            format!("/ip4/{}/tcp/0", providers.host_ip),
        ],
    );
    let bootstrap = a
        .listen
        .iter()
        .find(|l| l.contains(&format!("/ip4/{}/tcp/", providers.host_ip)))
        .unwrap_or_else(|| panic!("A listens on the providers' link: {:?}", a.listen))
        .clone();

    // C: inside the providers' namespace, its tunnel endpoint on its own address there.
    std::fs::create_dir_all(&c_dir).unwrap();
    std::fs::write(
        c_dir.join("node.toml"),
        format!(
            "roles = [\"provider\", \"gateway\", \"validator\"]\nregion = \"eu\"\n{}\n[provider]\nruntimes = [\"sandbox\"]\nvcpu = 2\nmemory_mib = 2048\ndisk_mib = 2048\ntunnel_port = 7443\nprices = {{ vcpu = 100, memory_gib = 10 }}\n",
            committee.config_line()
        ),
    )
    .unwrap();
    let c = NodeProc::start_in(
        &c_dir,
        &Launch {
            netns: Some(providers.path()),
            host: providers.ip.to_string(),
            ..Launch::default()
        },
        &[
            "--config".to_owned(),
            c_dir.join("node.toml").display().to_string(),
            "--bootstrap".to_owned(),
            bootstrap.clone(),
        ],
    );
    leftovers.add(cgroup_parent(&c));
    committee.start_extra_in(
        &Launch {
            netns: None,
            host: providers.host_ip.to_string(),
            ..Launch::default()
        },
        &bootstrap,
    );
    committee.wait_connected(&[&a, &c]);

    let home = tmp.path().join("agent");
    let agent = sign_up(&home, &a);
    wait_for_offer(&a, &c);
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
            SERVE_PAGE,
        ],
    );
    assert!(ok, "agent run: {err}");
    let lease = run["lease"]["lease"].as_str().unwrap().to_owned();
    let endpoint = format!("{}:7443", providers.ip);
    assert_eq!(run["lease"]["tunnel_endpoints"][0], endpoint, "{run}");
    let grant: Signed<LeaseGrant> = Signed::decode(
        &URL_SAFE_NO_PAD
            .decode(run["lease"]["grant"].as_str().unwrap())
            .unwrap(),
        &Ed25519,
    )
    .unwrap();
    let node_url = format!("http://{}", a.http);

    // 1. From the agents' namespace the provider is out of reach.
    let (mut never, line) = tunnel_in(&agents, &home, &node_url, &[&lease], "never");
    let status = never.wait().unwrap();
    assert!(
        !status.success() && line.is_empty(),
        "`--relay never` should fail: {line}"
    );

    // 2. `--relay auto` falls back to A's relay; the page comes through.
    let (mut auto, line) = tunnel_in(&agents, &home, &node_url, &[&lease], "auto");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
        panic!(
            "agora tunnel printed {line:?}; log: {}",
            std::fs::read_to_string(home.join("tunnel-auto.log")).unwrap_or_default()
        )
    });
    let relay: SocketAddr = v["relay"].as_str().expect("relayed").parse().unwrap();
    assert_eq!(relay.ip().to_string(), agents.host_ip.to_string(), "{v}");
    let local: SocketAddr = v["forwards"][0]["local"].as_str().unwrap().parse().unwrap();
    let local = SocketAddr::new(agents.ip.into(), local.port());
    let page = page_through(local, &home, &c);
    assert!(page.contains("hello-through-the-tunnel"), "{page}");
    let _ = auto.kill();
    let _ = auto.wait();

    // 3. Only the agent's own fresh signature opens a session.
    let path = format!("/v1/leases/{lease}/relay");
    let stranger = Identity::generate(&mut rand::rng());
    let (status, answer) = http_json(
        a.http,
        "POST",
        &path,
        &[],
        Some(&relay_body(&stranger, &grant)),
    );
    assert_eq!(status, 403, "{answer}");
    let body = relay_body(&agent, &grant);
    let (status, answer) = http_json(a.http, "POST", &path, &[], Some(&body));
    assert_eq!(status, 201, "{answer}");
    let (status, replayed) = http_json(a.http, "POST", &path, &[], Some(&body));
    assert_eq!(
        (status, replayed["error"]["code"].as_str()),
        (409, Some("replay"))
    );
    // Signed ten minutes ago; an endpoint the grant does not list; a grant listing none.
    let old = agora_node::clock::now().saturating_sub(Duration::from_secs(600));
    assert_eq!(
        relay_refusal(&a, &lease, &relay_body_at(&agent, &grant, old)),
        (409, "stale".to_owned())
    );
    let mut elsewhere = relay_body(&agent, &grant);
    elsewhere["endpoint"] = json!(format!("{}:9", providers.ip));
    assert_eq!(
        relay_refusal(&a, &lease, &elsewhere),
        (400, "not_an_endpoint".to_owned())
    );
    let nowhere = endpointless_grant(&agent);
    assert_eq!(
        relay_refusal(
            &a,
            &nowhere.body().lease.to_string(),
            &relay_body(&agent, &nowhere)
        ),
        (409, "no_tunnel_endpoint".to_owned())
    );
    // `[relay] per_agent = 2`: with `--relay auto`'s session (until it idles) and the one
    // just opened, the agent's next request is refused `relay_busy` (at most one more opens
    // if the first idled out meanwhile).
    let mut opened = 0;
    let busy = loop {
        let (status, answer) = http_json(
            a.http,
            "POST",
            &path,
            &[],
            Some(&relay_body(&agent, &grant)),
        );
        match status {
            201 if opened == 0 => opened += 1,
            _ => break (status, answer),
        }
    };
    assert_eq!(
        (busy.0, busy.1["error"]["code"].as_str()),
        (503, Some("relay_busy")),
        "{}",
        busy.1
    );

    // 4. Bytes altered on the relayed path break the connection; nothing altered arrives.
    let relay: SocketAddr = answer["relay"].as_str().unwrap().parse().unwrap();
    let tamperer = Tamperer::start(relay);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _in_rt = rt.enter();
    let dialer = Dialer::new(
        &agent,
        c.id.parse().unwrap(),
        vec![tamperer.addr],
        grant.body().token.as_bytes().to_vec(),
    )
    .unwrap();
    let page = rt.block_on(async {
        // Untouched, the relayed path works …
        let (mut send, mut recv) = dialer.open(HTTP).await.unwrap();
        send.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        send.finish().unwrap();
        String::from_utf8(recv.read_to_end(1 << 20).await.unwrap()).unwrap()
    });
    assert!(page.contains("hello-through-the-tunnel"), "{page}");
    tamperer.flip.store(true, Ordering::Relaxed);
    let broken = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(8), async {
            let (mut send, mut recv) = dialer.open(HTTP).await?;
            send.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
                .await
                .map_err(|e| OpenError::Stream(e.to_string()))?;
            let _ = send.finish();
            recv.read_to_end(1 << 20)
                .await
                .map_err(|e| OpenError::Stream(e.to_string()))
        })
        .await
    });
    assert!(
        !matches!(broken, Ok(Ok(_))),
        "a stream completed over a path that altered every packet"
    );
    assert!(tamperer.altered.load(Ordering::Relaxed) > 0);

    // 5. A grantee in the agents' namespace: the agent publishes port 8080 and grants it to
    // the grantee's key; `agora tunnel --grant` cannot reach C and falls back to A's relay.
    let (ok, _, err) = agent_cli(
        &home,
        &a,
        &[
            "publish", &lease, "--port", "8080", "--name", "page", "--kind", "http",
        ],
    );
    assert!(ok, "agent publish: {err}");
    let grantee_home = tmp.path().join("grantee");
    std::fs::create_dir_all(&grantee_home).unwrap();
    let (grantee, _) =
        keyfile::load_or_create(&grantee_home.join("agent.key"), &mut rand::rng()).unwrap();
    let grant_file = tmp.path().join("grant.b64");
    agora_tests::cluster::grant(
        &home,
        &a,
        &lease,
        &grantee.agora_id().to_string(),
        "8080",
        &[],
        &grant_file,
    );
    let grant_arg = ["--grant", grant_file.to_str().unwrap()];
    let (mut granted, line) = tunnel_in(&agents, &grantee_home, &node_url, &grant_arg, "auto");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
        panic!(
            "the grantee's agora tunnel printed {line:?}; log: {}",
            std::fs::read_to_string(grantee_home.join("tunnel-auto.log")).unwrap_or_default()
        )
    });
    assert!(v["relay"].is_string(), "relayed: {v}");
    let local: SocketAddr = v["forwards"][0]["local"].as_str().unwrap().parse().unwrap();
    let page = page_through(
        SocketAddr::new(agents.ip.into(), local.port()),
        &grantee_home,
        &c,
    );
    assert!(page.contains("hello-through-the-tunnel"), "{page}");
    let _ = granted.kill();
    let _ = granted.wait();

    // The grantee's relay is its grant's: not a stranger's, not another port, not a lease
    // whose provider signed no endpoint A knows.
    let service_grant: Signed<ServiceGrant> = Signed::decode(
        &URL_SAFE_NO_PAD
            .decode(std::fs::read_to_string(&grant_file).unwrap().trim())
            .unwrap(),
        &Ed25519,
    )
    .unwrap();
    let cap = &grant.body().token;
    let now = agora_node::clock::now();
    let as_grantee = |who: &Identity, port: u16| {
        grantee_relay_body(who, &service_grant, cap, port, agora_node::clock::now()).unwrap()
    };
    assert_eq!(
        relay_refusal(&a, &lease, &as_grantee(&grantee, 22)),
        (400, "port_not_allowed".to_owned())
    );
    assert_eq!(
        relay_refusal(&a, &lease, &as_grantee(&stranger, HTTP)),
        (403, "unauthorized".to_owned())
    );
    let nowhere = endpointless_grant(&agent);
    let other_grant = Signed::sign(
        ServiceGrant {
            owner: agent.agora_id(),
            lease: nowhere.body().lease,
            provider: nowhere.body().provider,
            grantee: grantee.agora_id(),
            ports: vec![HTTP],
            id: GrantId([9; 16]),
            issued_at: now,
            expires_at: now.saturating_add(Duration::from_secs(600)),
        },
        &agent,
    )
    .unwrap();
    let body =
        grantee_relay_body(&grantee, &other_grant, &nowhere.body().token, HTTP, now).unwrap();
    assert_eq!(
        relay_refusal(&a, &nowhere.body().lease.to_string(), &body),
        (409, "no_tunnel_endpoint".to_owned())
    );

    // 6. From the host (which routes to C), operations ride a direct QUIC connection to C's
    // tunnel endpoint (`--direct`), skipping A: exec with input and its exit code, logs.
    let (ok, out, err) = agent_cli(
        &home,
        &a,
        &[
            "exec",
            &lease,
            "--direct",
            "-i",
            "--",
            "sh",
            "-c",
            "read x; echo direct-$x; exit 3",
        ],
    );
    assert!(!ok, "exit code 3 is a failure: {out} {err}");
    assert_eq!(out["exit_code"], 3, "{out} {err}");
    assert_eq!(out["stdout"], "direct-\n", "{out}");
    let (ok, _, err) = agent_cli(&home, &a, &["logs", &lease, "--direct"]);
    assert!(ok, "logs --direct: {err}");
}

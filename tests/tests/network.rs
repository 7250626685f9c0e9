//! The provider network with real `agora node` processes on 127.0.0.1 (the four gateways of
//! the first test are the quota committee, n = 4, as in every multi-node test): offers
//! propagate to every node, re-advertise on a capacity change, are withdrawn on stop and expire when a
//! provider dies; a restarted node keeps its identity and data; bad gossip from a real
//! libp2p peer is dropped, counted, and costs the sender its score.
//!
//! Waits have generous deadlines (30-60 s); how fast offers spread is a benchmark figure
//! (`BENCHMARKS.md`), not an assertion here.

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use agora_attest::Identity;
use agora_node::config::{NodeConfig, PriceConfig, ProviderConfig};
use agora_protocol::gossip::{GossipMessage, offers_topic};
use agora_protocol::{Offer, Signed};
use agora_tests::committee::Committee;
use agora_tests::node::{Launch, NodeProc, http_get_text, wait_for};
use futures::StreamExt as _;
use libp2p::Multiaddr;
use libp2p::gossipsub::IdentTopic;
use libp2p::swarm::SwarmEvent;

const WAIT: Duration = Duration::from_secs(60);

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

fn provider_config(memory_mib: u64, ttl: &str) -> String {
    format!(
        "roles = [\"provider\", \"gateway\"]\nregion = \"eu\"\n\n[provider]\nvcpu = 2\nmemory_mib = {memory_mib}\ndisk_mib = 4096\noffer_ttl = \"{ttl}\"\nprices = {{ vcpu = 100, memory_gib = 10 }}\n"
    )
}

/// Waits until `check` holds at every node, printing the failing node's log otherwise.
fn wait_all(nodes: &[&NodeProc], what: &str, check: impl Fn(&NodeProc) -> bool) {
    for n in nodes {
        if wait_for(WAIT, || check(n).then_some(())).is_none() {
            panic!(
                "{what}: not at node {} in time; its log:\n{}",
                n.id,
                n.log()
            );
        }
    }
}

fn offer_memory(n: &NodeProc, provider: &str) -> Option<u64> {
    let (status, v) = n.get(&format!("/v1/offers/{provider}"));
    (status == 200).then(|| v["capacity"]["memory_mib"].as_u64())?
}

#[test]
fn offers_propagate_update_withdraw_and_survive_restart() {
    let tmp = tempfile::tempdir().unwrap();
    // The quota committee (n = 4): the four gateways, their keys made before they start;
    // the provider is its client.
    let dirs: Vec<_> = (0..4).map(|i| tmp.path().join(format!("n{i}"))).collect();
    let members: Vec<&std::path::Path> = dirs.iter().map(std::path::PathBuf::as_path).collect();
    let committee = Committee::new(tmp.path(), &members);
    let genesis = committee.genesis.display().to_string();
    let validator = |extra: &[String]| {
        let mut args = s(&["--role", "gateway", "--role", "validator", "--genesis"]);
        args.push(genesis.clone());
        args.extend_from_slice(extra);
        args
    };
    let boot = NodeProc::start(&dirs[0], &validator(&s(&["--kad-server", "true"])));
    let b = ["--bootstrap".to_owned(), boot.tcp_addr()];
    let n1 = NodeProc::start(&dirs[1], &validator(&b));
    let n2 = NodeProc::start(&dirs[2], &validator(&b));
    let n3 = NodeProc::start(&dirs[3], &validator(&b));
    let pdir = tmp.path().join("p");
    std::fs::create_dir_all(&pdir).unwrap();
    let config = pdir.join("node.toml");
    let with_genesis = |memory_mib, ttl| {
        format!(
            "{}{}",
            committee.config_line(),
            provider_config(memory_mib, ttl)
        )
    };
    std::fs::write(&config, with_genesis(2048, "10m")).unwrap();
    let mut pargs = b.to_vec();
    pargs.extend(["--config".to_owned(), config.display().to_string()]);
    let provider = NodeProc::start(&pdir, &pargs);
    let pid = provider.id.clone();
    committee.wait_connected(&[&boot, &n1, &n2, &n3, &provider]);

    // 1. The offer reaches every node (the provider's own book included).
    wait_all(&[&boot, &n1, &n2, &n3, &provider], "offer", |n| {
        offer_memory(n, &pid) == Some(2048)
    });
    // Filters apply to what gossip delivered.
    assert_eq!(n1.offer_providers("region=eu&min_cpu=2"), vec![pid.clone()]);
    assert!(n1.offer_providers("min_cpu=3").is_empty());
    assert!(n1.offer_providers("runtime=docker").is_empty());
    let (status, err) = n1.get("/v1/offers?min_cpu=lots");
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "bad_query");

    // 2. A capacity change (config edit + SIGHUP) is re-advertised with a higher seq.
    std::fs::write(&config, with_genesis(1024, "10m")).unwrap();
    provider.signal("HUP");
    wait_all(&[&boot, &n1, &n2, &n3], "re-advertised offer", |n| {
        offer_memory(n, &pid) == Some(1024)
    });

    // 3. A restarted node keeps its identity, its offers and its known peers: started
    //    again with no bootstrap flag, it still shows the offer and finds its peers.
    let n3_dir = n3.dir.clone();
    let n3_id = n3.id.clone();
    assert!(n3.stop(), "n3 exits cleanly on SIGTERM");
    let n3 = NodeProc::start(&n3_dir, &validator(&[]));
    assert_eq!(n3.id, n3_id, "same identity after restart");
    assert_eq!(
        offer_memory(&n3, &pid),
        Some(1024),
        "offer loaded from the store"
    );
    wait_all(&[&n3], "reconnect to known peers", |n| {
        n.get("/v1/peers").1["peers"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    });

    // 4. Stopping the provider withdraws its offer everywhere, long before its 10 min TTL.
    assert!(provider.stop(), "provider exits cleanly on SIGTERM");
    wait_all(&[&boot, &n1, &n2, &n3], "withdrawal", |n| {
        n.offer_providers("").is_empty()
    });
    let (_, metrics) = http_get_text(n1.http, "/metrics");
    assert!(
        metrics.contains(r#"agora_gossip_messages_total{kind="withdrawal",result="accepted"}"#),
        "{metrics}"
    );
}

#[test]
fn expired_offers_disappear_and_bad_gossip_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    // The quota committee (n = 4): the two nodes and two validator-only ones.
    let (n0, p) = (tmp.path().join("n0"), tmp.path().join("p"));
    let mut committee = Committee::new(tmp.path(), &[&n0, &p]);
    let validator = s(&[
        "--role",
        "validator",
        "--genesis",
        &committee.genesis.display().to_string(),
    ]);
    let mut boot_args = s(&["--kad-server", "true", "--role", "gateway"]);
    boot_args.extend_from_slice(&validator);
    let boot = NodeProc::start(&n0, &boot_args);
    let b = ["--bootstrap".to_owned(), boot.tcp_addr()];
    committee.start_extra(&boot.tcp_addr());
    let mut pargs = b.to_vec();
    pargs.extend_from_slice(&validator);
    pargs.extend(s(&[
        "--role",
        "provider",
        "--region",
        "eu",
        "--vcpu",
        "1",
        "--offer-ttl",
        "10s",
    ]));
    let provider = NodeProc::start(&p, &pargs);
    let pid = provider.id.clone();
    committee.wait_connected(&[&boot, &provider]);
    wait_all(&[&boot], "offer", |n| {
        n.offer_providers("") == vec![pid.clone()]
    });

    // A provider that dies without a word (SIGKILL): its offer expires within its TTL.
    drop(provider);
    wait_all(&[&boot], "expiry", |n| n.offer_providers("").is_empty());

    // Bad input from real libp2p peers, one fresh peer per kind of garbage.
    let target: Multiaddr = boot.tcp_addr().parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let signer = Identity::from_secret_bytes(&[9; 32]);
    let good = |seq| GossipMessage::Offer(rogue_offer(&signer, seq)).encode();
    let mut bad_signature = good(10);
    let last = bad_signature.len() - 1;
    bad_signature[last] ^= 1;
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("bad_signature", vec![bad_signature]),
        ("malformed", vec![vec![1, 2, 3, 4]]),
        ("too_large", vec![vec![1; 5000]]),
        // A valid offer, then an older one of the same provider: a stale replay.
        ("stale", vec![good(20), good(19)]),
    ];
    for (reason, payloads) in cases {
        let rogue = rt.block_on(rogue_publish(target.clone(), payloads));
        let counted = wait_for(WAIT, || {
            let (_, m) = http_get_text(boot.http, "/metrics");
            m.lines()
                .any(|l| {
                    l.starts_with("agora_gossip_messages_total")
                        && l.contains(&format!("result=\"{reason}\""))
                })
                .then_some(())
        });
        assert!(
            counted.is_some(),
            "{reason} not counted; log:\n{}",
            boot.log()
        );
        let fell = wait_for(WAIT, || {
            let (_, v) = boot.get("/v1/peers");
            v["peers"]
                .as_array()?
                .iter()
                .find(|p| p["peer_id"] == rogue.as_str())
                .filter(|p| p["app_score"].as_f64().is_some_and(|s| s < 0.0))
                .map(|_| ())
        });
        assert!(fell.is_some(), "{reason}: rogue's score did not fall");
    }
    // Nothing crashed, and only the one valid rogue offer made it into the book.
    assert_eq!(boot.get("/healthz").0, 200);
    assert_eq!(boot.offer_providers("").len(), 1);
}

/// A validly signed offer in region `eu`, built the way providers build theirs.
fn rogue_offer(signer: &Identity, seq: u64) -> Signed<Offer> {
    let node = NodeConfig {
        region: "eu".into(),
        ..NodeConfig::default()
    };
    let provider = ProviderConfig::new(
        1.0,
        512,
        0,
        PriceConfig {
            vcpu: 1,
            memory_gib: 1,
            disk_gib: 0,
            gpu: 0,
        },
    );
    let now = agora_node::clock::now();
    provider
        .offer(signer, seq, now, &node, &Default::default(), Vec::new())
        .unwrap()
}

/// A real libp2p peer with a fresh key: connects to `target`, waits until it subscribes
/// to the eu offers topic, publishes `payloads` in order and lingers a moment so they
/// leave. Returns its peer id.
async fn rogue_publish(target: Multiaddr, payloads: Vec<Vec<u8>>) -> String {
    let identity = Identity::generate(&mut rand::rng());
    let mut registry = prometheus_client::registry::Registry::default();
    let mut swarm =
        agora_node::net::build_swarm(&identity, &Default::default(), &mut registry).unwrap();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let topic = IdentTopic::new(offers_topic("eu"));
    swarm.behaviour_mut().gossipsub.subscribe(&topic).unwrap();
    swarm.dial(target).unwrap();
    let ready = tokio::time::timeout(WAIT, async {
        loop {
            if let SwarmEvent::Behaviour(agora_node::net::BehaviourEvent::Gossipsub(
                libp2p::gossipsub::Event::Subscribed { topic: t, .. },
            )) = swarm.select_next_some().await
                && t == topic.hash()
            {
                return;
            }
        }
    })
    .await;
    assert!(ready.is_ok(), "target never subscribed to the eu topic");
    for p in payloads {
        swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic.clone(), p)
            .unwrap();
        // Let each message go out before the next (order matters for the stale case).
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                swarm.select_next_some().await;
            }
        })
        .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            swarm.select_next_some().await;
        }
    })
    .await;
    let id = swarm.local_peer_id().to_string();
    // Keep the connection open while the test reads scores: park the swarm on a thread.
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    id
}

#[test]
fn bad_config_is_one_error_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("node.toml");
    std::fs::write(
        &config,
        "roles = [\"provider\"]\n[provider]\nvcpu = -1\nmemory_mib = 1\ndisk_mib = 1\nprices = { vcpu = 1, memory_gib = 1 }\n",
    )
    .unwrap();
    let out = agora_tests::agora(tmp.path())
        .args(["node", "start", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = agora_tests::stderr(&out);
    assert!(err.contains("provider.vcpu"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let out = agora_tests::agora(tmp.path())
        .args(["node", "start", "--bootstrap", "/ip4/127.0.0.1/tcp/1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = agora_tests::stderr(&out);
    assert!(err.contains("bootstrap") && err.contains("/p2p/"), "{err}");
}

/// A descriptor the node's parent left open (no close-on-exec) would pass on to every child
/// the daemon starts, sandboxes included: the node closes it at start.
#[test]
fn a_node_drops_descriptors_its_parent_left_open() {
    let tmp = tempfile::tempdir().unwrap();
    let launch = Launch {
        inherit_fd: Some(9),
        ..Launch::default()
    };
    let node = NodeProc::start_in(tmp.path(), &launch, &[]);
    let pid = node.pid().unwrap();
    let inherited = tmp.path().join("inherited");
    let holding: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .filter(|target| *target == inherited)
        .collect();
    assert!(holding.is_empty(), "the node still holds {holding:?}");
    assert!(
        node.log()
            .contains("closed a descriptor inherited from the parent")
    );
    assert!(node.stop());
}

#[test]
fn api_clients_fail_clearly_on_a_bad_or_absent_node() {
    let tmp = tempfile::tempdir().unwrap();
    let out = agora_tests::agora(tmp.path())
        .args(["offers", "--node", "ftp://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(agora_tests::stderr(&out).contains("is not an http:// URL"));

    // Port 1 on loopback: nothing listens there.
    let out = agora_tests::agora(tmp.path())
        .args(["node", "status", "--node", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = agora_tests::stderr(&out);
    assert!(err.contains("cannot reach the node"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let out = agora_tests::agora(tmp.path())
        .args(["offers", "--runtime", "vm"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "usage error from the parser");
}

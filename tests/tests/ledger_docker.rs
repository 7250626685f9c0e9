//! Multi-host evidence log and quota committee: five gateway nodes as containers on a
//! private Docker network, four of them the quota committee (n = 4, f = 1, from a genesis
//! written before they start), agree on one ledger state, are partitioned 2|3, take
//! different facts (agent signups) on each side while cut, and after healing reach one state
//! hash again holding every fact.
//!
//! The committee's quorum (3 of 4) sits on the majority side: there, signups are credited
//! their free-tier grant; on the minority side (one validator) a signup is taken into the
//! evidence log but no credit can be certified, so no quota is minted where a third of the
//! committee could double-spend it. After healing, such an agent signs up again and is
//! credited.
//!
//! The partition: nodes D and E are attached to a side network of their own from the start,
//! and cut off the main network with `docker network disconnect`; they still reach each
//! other over the side network, and A, B, C each other over the main one. Healing
//! re-attaches D and E to the main network.
//!
//! Three partitions in a row: one healed as soon as each side agrees internally (the
//! majority still holds its connections to D and E, which D and E dropped when their
//! interface went), one healed only after every node noticed the cut (pings failed and
//! connections closed, so healing needs redials), and one healed at once with D and E back
//! at new addresses (the majority's old connections stay silently dead until pings fail;
//! the node resets a peer that dials in past such a connection). The time from healing to
//! agreement is a benchmark figure (printed as
//! `ledger_docker: converged in …`, see BENCHMARKS.md); the assertion only uses the issue's
//! deadline of 60 s.

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agora_node::agent::record_file::path_for;
use agora_tests::docker_net::{CONFIG_DIR, Container, DockerNet, HTTP_PORT};
use agora_tests::node::http_get;
use agora_tests::{agora, require_docker, stderr};
use serde_json::Value;

/// Deadline for a healthy (or cut but internally connected) group to agree: announcements
/// go out at most 1 s after a change, and a new connection syncs at once.
const SPREAD: Duration = Duration::from_secs(60);
/// The deadline for agreement after healing.
const HEAL: Duration = Duration::from_secs(60);
/// Signups taken on each side while cut.
const PER_SIDE: u64 = 3;

/// A node and the address the test host reaches its HTTP API at throughout the test (the
/// minority's on the side network, which is never cut).
struct Node {
    c: Container,
    http: SocketAddr,
}

impl Node {
    fn short(&self) -> &str {
        self.c.name.rsplit('-').next().unwrap_or(&self.c.name)
    }

    /// `GET /v1/ledger/state`; `None` while the API does not answer.
    fn state(&self) -> Option<Value> {
        // Probe first: `http_get` panics on a refused connection.
        TcpStream::connect_timeout(&self.http, Duration::from_secs(1)).ok()?;
        let (status, v) = http_get(self.http, "/v1/ledger/state");
        (status == 200).then_some(v)
    }
}

/// Nodes of the quota committee (its genesis names their keys); the fifth node, E, is a
/// gateway only.
const VALIDATORS: [&str; 4] = ["a", "b", "c", "d"];

/// `node start` arguments for a gateway bootstrapping from `bootstrap` when given (else a
/// Kademlia server the rest bootstrap from); the network adds the committee's.
fn node_args(bootstrap: Option<&str>) -> Vec<&str> {
    match bootstrap {
        Some(b) => vec!["--role", "gateway", "--bootstrap", b],
        None => vec!["--role", "gateway", "--kad-server", "true"],
    }
}

/// Waits until every node lists every other as connected (the committee's quorum is
/// reachable from each).
fn wait_meshed(nodes: &[&Node]) {
    let start = Instant::now();
    while !nodes.iter().all(|n| {
        peers(n).is_some_and(|ps| {
            nodes
                .iter()
                .all(|o| o.c.peer_id == n.c.peer_id || ps.contains(&o.c.peer_id))
        })
    }) {
        assert!(
            start.elapsed() <= SPREAD,
            "the five nodes did not connect within {SPREAD:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Signs up a fresh agent (key created under `home`) at `node`, whose side of the network
/// holds a quorum of the quota committee: the free-tier grant is certified too.
fn signup(home: &Path, node: &Node) {
    let out = run_signup(home, node);
    assert!(
        out.status.success(),
        "signup at {}: {}",
        node.short(),
        stderr(&out)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["quota"]["available_micro"]
            .as_u64()
            .is_some_and(|b| b > 0),
        "signup at {}: no credit in {v}",
        node.short()
    );
}

/// Signs up fresh agents (keys under each of `homes`, all at once) at `node`, whose side of
/// the network holds one validator of four: each signup is taken (the evidence log records
/// it, the record file is saved) but no free-tier credit can be certified there.
fn signup_uncredited(homes: &[PathBuf], node: &Node) {
    std::thread::scope(|s| {
        let runs: Vec<_> = homes
            .iter()
            .map(|home| s.spawn(move || (home, run_signup(home, node))))
            .collect();
        for run in runs {
            let (home, out) = run.join().unwrap();
            let err = stderr(&out);
            assert!(
                !out.status.success()
                    && err.contains("signed up, but the quota committee did not take the credit"),
                "signup at {} on the minority side: {err}",
                node.short()
            );
            let record = path_for(&home.join("agent.key"));
            assert!(record.exists(), "no signup record at {}", record.display());
        }
    });
}

fn run_signup(home: &Path, node: &Node) -> std::process::Output {
    std::fs::create_dir_all(home).unwrap();
    agora(home)
        .args(["--json", "agent", "signup", "--node"])
        .arg(format!("http://{}", node.http))
        .arg("--key")
        .arg(home.join("agent.key"))
        .output()
        .unwrap()
}

/// `(hash, entries, pending)` of a state, shortened for the progress lines.
fn summary(state: Option<&Value>) -> String {
    match state {
        Some(s) => {
            let hash = s["state_hash"].as_str().unwrap_or("?");
            format!(
                "{}… {} entries, {} pending",
                hash.get(..10).unwrap_or(hash),
                s["entries"],
                s["pending"]
            )
        }
        None => "unreachable".to_owned(),
    }
}

/// Waits until every node in `nodes` reports one state hash over `entries` accepted
/// entries (none pending); returns the hash and how long it took. Prints each change it
/// observes on the way; panics with the last states seen (the network guard then prints
/// the logs).
fn agree(nodes: &[&Node], entries: u64, deadline: Duration, what: &str) -> (String, Duration) {
    agree_on(nodes, entries..=entries, deadline, what)
}

/// [`agree`] on any number of entries in `entries` (all the nodes the same).
fn agree_on(
    nodes: &[&Node],
    entries: std::ops::RangeInclusive<u64>,
    deadline: Duration,
    what: &str,
) -> (String, Duration) {
    let start = Instant::now();
    let mut last = Vec::new();
    loop {
        let states: Vec<Option<Value>> = nodes.iter().map(|n| n.state()).collect();
        let line: Vec<String> = nodes
            .iter()
            .zip(&states)
            .map(|(n, s)| format!("{}: {}", n.short(), summary(s.as_ref())))
            .collect();
        if line != last {
            eprintln!("  {what} +{:.1?}: {}", start.elapsed(), line.join("; "));
            last = line;
        }
        let hash = states[0]
            .as_ref()
            .and_then(|s| s["state_hash"].as_str())
            .map(str::to_owned);
        let done = hash.as_ref().filter(|h| {
            states.iter().all(|s| {
                s.as_ref().is_some_and(|s| {
                    let held = s["entries"].as_u64().unwrap_or(0);
                    s["state_hash"] == h.as_str()
                        && entries.contains(&held)
                        && s["pending"] == 0
                        && s["facts"]["signup"] == held
                })
            })
        });
        if let Some(hash) = done {
            return (hash.clone(), start.elapsed());
        }
        assert!(
            start.elapsed() <= deadline,
            "{what}: no agreement on {entries:?} entries within {deadline:?}; last seen: {}",
            last.join("; ")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How the nodes stand when the partition is healed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heal {
    /// As soon as each side agrees internally (a second or two): the majority still holds
    /// its connections to D and E (which D and E dropped when their interface went; back at
    /// the same addresses, they answer those with resets).
    AtOnce,
    /// Once every node has noticed the cut (pings failed, connections closed): healing
    /// needs redials.
    Noticed,
    /// At once, with D and E back at new addresses: the majority's connections to their old
    /// ones stay silently dead (nothing answers there) until pings fail, while D and E dial
    /// in afresh.
    Moved,
}

/// One partition: cut {D, E} off, take [`PER_SIDE`] signups at `major` and at `minor`,
/// wait for each side to agree internally (and, for [`Heal::Noticed`], for the cut to be
/// noticed), heal, and wait for all five to agree on `entries` entries within [`HEAL`].
fn partition_round(
    net: &DockerNet,
    tmp: &Path,
    heal: Heal,
    (abc, de): (&[&Node], &[&Node]),
    (major, minor): (&Node, &Node),
    cut: &mut [Container],
    entries: u64,
) {
    let all: Vec<&Node> = abc.iter().chain(de).copied().collect();
    let before: Vec<_> = cut.iter().map(|c| c.ip).collect();
    for c in cut.iter_mut() {
        net.disconnect(c);
    }
    let cut_at = Instant::now();
    // The minority's signups wait out the committee's deadline together, beside the
    // majority's.
    let homes: Vec<PathBuf> = (0..PER_SIDE)
        .map(|i| tmp.join(format!("agent-{heal:?}-{}-{i}", minor.short())))
        .collect();
    std::thread::scope(|s| {
        s.spawn(|| signup_uncredited(&homes, minor));
        for i in 0..PER_SIDE {
            signup(
                &tmp.join(format!("agent-{heal:?}-{}-{i}", major.short())),
                major,
            );
        }
    });
    let taken = entries - 2 * PER_SIDE;
    let (left, took) = agree(abc, taken + PER_SIDE, SPREAD, "A B C, cut");
    eprintln!("A, B, C agree on {left} {took:.1?} after the last signup");
    let (right, took) = agree(de, taken + PER_SIDE, SPREAD, "D E, cut");
    eprintln!("D, E agree on {right} {took:.1?} after the last signup");
    assert_ne!(left, right, "each side took different facts");
    if heal == Heal::Noticed {
        let took = noticed(abc, de);
        eprintln!("the cut was noticed on both sides {took:.1?} after it began");
    }

    let cut_for = cut_at.elapsed();
    for ((c, last), host) in cut.iter_mut().zip(&before).zip(200u8..) {
        match (heal, last) {
            (Heal::Moved, Some(last)) => net.connect_at(c, *last, host),
            _ => net.connect(c),
        }
    }
    let after: Vec<_> = cut.iter().map(|c| c.ip).collect();
    eprintln!("D, E on the main network at {before:?} before the cut, {after:?} after healing");
    let what = format!("all five, healed ({heal:?})");
    let (hash, took) = agree(&all, entries, HEAL, &what);
    assert_ne!(hash, left);
    assert_ne!(hash, right);
    eprintln!(
        "ledger_docker: converged in {took:.1?} after healing a 2|3 partition of {cut_for:.1?} \
         ({heal:?}: {}; 5 nodes, {entries} entries, state hash {hash})",
        match heal {
            Heal::AtOnce => "healed before the cut was noticed",
            Heal::Noticed => "healed after every node dropped its connections across the cut",
            Heal::Moved => "healed before the cut was noticed, D and E at new addresses",
        }
    );
}

/// The peer ids `node` lists as connected; `None` while its API does not answer.
fn peers(node: &Node) -> Option<Vec<String>> {
    TcpStream::connect_timeout(&node.http, Duration::from_secs(1)).ok()?;
    let (status, v) = http_get(node.http, "/v1/peers");
    (status == 200).then(|| {
        v["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["peer_id"].as_str().map(str::to_owned))
            .collect()
    })
}

/// Waits until no node of either side lists a node of the other as connected; returns how
/// long it took.
fn noticed(left: &[&Node], right: &[&Node]) -> Duration {
    let start = Instant::now();
    loop {
        let across = |from: &[&Node], to: &[&Node]| {
            from.iter()
                .any(|n| peers(n).is_none_or(|ps| to.iter().any(|t| ps.contains(&t.c.peer_id))))
        };
        if !across(left, right) && !across(right, left) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() <= SPREAD,
            "the cut was not noticed within {SPREAD:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn partitioned_nodes_agree_on_the_evidence_after_healing() {
    if !require_docker("partitioned_nodes_agree_on_the_evidence_after_healing") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("conf");
    let net = DockerNet::create_addressed().with_committee(&conf, &VALIDATORS);
    // E takes signups as fast as the test makes them (step 5).
    std::fs::write(
        conf.join("e.toml"),
        "[signup]\nper_address = \"1000/min\"\n",
    )
    .unwrap();
    let side = net.add_network("side");

    // 1. Five gateways, A to D the quota committee: A bootstraps the rest; D and E also sit
    //    on the side network.
    let a = net.start("a", &node_args(None));
    let boot = a.bootstrap_addr();
    let b = net.start("b", &node_args(Some(&boot)));
    let c = net.start("c", &node_args(Some(&boot)));
    let d = net.start_on("d", &[&side], &node_args(Some(&boot)));
    // E keeps its store on the host, to be killed mid-write and restarted (step 5).
    let e = {
        let e_config = format!("{CONFIG_DIR}/e.toml");
        let mut args = node_args(Some(&boot));
        args.extend(["--config", &e_config]);
        net.start_persistent("e", &[&side], &tmp.path().join("e-data"), &args)
    };
    let on_main = |c: Container| Node {
        http: SocketAddr::new(c.ip.unwrap(), HTTP_PORT),
        c,
    };
    let on_side = |c: &Container| Node {
        http: SocketAddr::new(net.address_on(&side, c).unwrap(), HTTP_PORT),
        c: c.clone(),
    };
    let (na, nb, nc) = (on_main(a), on_main(b), on_main(c));
    let (nd, ne) = (on_side(&d), on_side(&e));
    let all = [&na, &nb, &nc, &nd, &ne];
    let sides: (&[&Node], &[&Node]) = (&[&na, &nb, &nc], &[&nd, &ne]);
    let mut cut = [d, e];

    // 2. One fact everyone holds before the cut.
    wait_meshed(&all);
    signup(&tmp.path().join("agent-0"), &na);
    let (hash0, took) = agree(&all, 1, SPREAD, "all five, before the cut");
    eprintln!("all five agree on {hash0} {took:.1?} after the first signup");

    // 3. A short partition, healed while the majority still holds connections to the
    //    minority; a long one, healed after everyone noticed it; a short one healed with the
    //    minority at new addresses. Signups move between nodes from round to round (each
    //    node rate-limits signups per source address).
    let per_round = 2 * PER_SIDE;
    let t = tmp.path();
    partition_round(
        &net,
        t,
        Heal::AtOnce,
        sides,
        (&nb, &nd),
        &mut cut,
        1 + per_round,
    );
    partition_round(
        &net,
        t,
        Heal::Noticed,
        sides,
        (&nc, &ne),
        &mut cut,
        1 + 2 * per_round,
    );
    // The connections the last heal made must be older than a crossing dial's: a node takes
    // a peer dialling in past a connection opened within 3 s for both sides dialling at once.
    std::thread::sleep(Duration::from_secs(5));
    partition_round(
        &net,
        t,
        Heal::Moved,
        sides,
        (&na, &nd),
        &mut cut,
        1 + 3 * per_round,
    );

    // 4. Healed, the committee has its quorum again for everyone: an agent the minority
    //    took without credit signs up again (at B) and is credited now, whatever D voted
    //    for its account while cut off.
    signup(
        &t.join(format!("agent-{:?}-{}-0", Heal::Moved, nd.short())),
        &nb,
    );
    let (hash, took) = agree(&all, 2 + 3 * per_round, SPREAD, "all five, a late credit");
    eprintln!("all five agree on {hash} {took:.1?} after the minority's agent was credited");

    // 5. kill -9 mid-write: agents sign up at E, three at a time, and E is killed once it
    //    acknowledged a few (answered with the entry's digest) while more are in flight. After
    //    the restart every acknowledged entry is in E's log, and all five agree again.
    let before = 2 + 3 * per_round;
    let (acked, attempted) = kill_mid_signups(&net, &ne, t);
    let mut e_back = ne.c.clone();
    net.restart(&mut e_back);
    let ne = on_side(&e_back);
    for digest in &acked {
        let (status, v) = http_get(ne.http, &format!("/v1/ledger/entries/{digest}"));
        assert_eq!(
            status, 200,
            "acknowledged entry {digest} lost by the kill: {v}"
        );
        assert_eq!(v["author"], ne.c.id.as_str(), "{v}");
        assert_eq!(v["fact"], "signup", "{v}");
    }
    let all = [&na, &nb, &nc, &nd, &ne];
    let (hash, took) = agree_on(
        &all,
        before + acked.len() as u64..=before + attempted,
        SPREAD,
        "all five, E killed and restarted",
    );
    eprintln!(
        "all five agree on {hash} {took:.1?} after E's restart ({} signups acknowledged before \
         the kill, {attempted} attempted)",
        acked.len()
    );
}

/// Signs up agents at `node`, three at a time, and kills its container once it acknowledged
/// three signups; returns the acknowledged entries' digests and how many signups were sent.
fn kill_mid_signups(net: &DockerNet, node: &Node, tmp: &Path) -> (Vec<String>, u64) {
    let acked = std::sync::Mutex::new(Vec::new());
    let attempted = std::sync::atomic::AtomicU64::new(0);
    let killed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for worker in 0..3 {
            let (acked, attempted, killed) = (&acked, &attempted, &killed);
            s.spawn(move || {
                for i in 0.. {
                    if killed.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    attempted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let out = run_signup(&tmp.join(format!("agent-kill-{worker}-{i}")), node);
                    let entry = serde_json::from_slice::<Value>(&out.stdout)
                        .ok()
                        .and_then(|v| v["ledger_entry"].as_str().map(str::to_owned));
                    if let Some(entry) = entry.filter(|_| out.status.success()) {
                        acked.lock().unwrap().push(entry);
                    }
                }
            });
        }
        let start = Instant::now();
        while acked.lock().unwrap().len() < 3 {
            assert!(start.elapsed() <= SPREAD, "no signups acknowledged at E");
            std::thread::sleep(Duration::from_millis(20));
        }
        net.kill(&node.c);
        killed.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let acked = acked.into_inner().unwrap();
    (acked, attempted.into_inner())
}

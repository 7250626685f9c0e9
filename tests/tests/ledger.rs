//! The replicated evidence log across real `agora node` processes on 127.0.0.1:
//!
//! - three nodes (gateway A, sandbox provider B, gateway C; with a validator-only node, the
//!   quota committee of n = 4): an agent signs up at A (claiming the free tier) and runs a
//!   lease on B to its end against a lock certificate; all three reach one state hash
//!   holding the signup, the grant, the final receipt and its acknowledgement (deadline
//!   30 s; the time taken is printed);
//! - a node killed with `kill -9` right after it acknowledged an entry restarts with that
//!   entry (its own chain's latest) and the same state hash as before;
//! - `agora ledger verify` passes on a stopped node's data dir with the same state hash,
//!   and fails (exit 3, naming the entry) once one stored entry is altered.

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agora_node::store::{Column, RocksStore, Store as _};
use agora_protocol::ledger::Entry;
use agora_protocol::{Digest, Ed25519, Signed};
use agora_tests::cluster::{
    agent_cli, cgroup_parent, free_udp_port, run_lease, signup, validator_gateway,
    validator_provider, wait_for_offer,
};
use agora_tests::committee::Committee;
use agora_tests::leftovers::Leftovers;
use agora_tests::node::{NodeProc, wait_for};
use agora_tests::{agora, stderr, stdout};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// How long the three nodes may take to agree.
const CONVERGE: Duration = Duration::from_secs(30);

fn state(node: &NodeProc) -> Value {
    let (status, v) = node.get("/v1/ledger/state");
    assert_eq!(status, 200, "{v}");
    v
}

fn count(state: &Value, kind: &str) -> u64 {
    state["facts"][kind].as_u64().unwrap_or(0)
}

/// Waits until every node has the same state hash with at least one fact of each kind in
/// `kinds`; returns the hash and how long it took.
fn converge(nodes: &[&NodeProc], kinds: &[&str]) -> (String, Duration) {
    let start = Instant::now();
    let hash = wait_for(CONVERGE, || {
        let states: Vec<Value> = nodes.iter().map(|n| state(n)).collect();
        let first = states[0]["state_hash"].as_str()?.to_owned();
        let agree = states.iter().all(|s| s["state_hash"] == first.as_str());
        let complete = kinds.iter().all(|k| count(&states[0], k) > 0);
        (agree && complete).then_some(first)
    })
    .unwrap_or_else(|| {
        let states: Vec<String> = nodes.iter().map(|n| state(n).to_string()).collect();
        panic!(
            "no agreement within {CONVERGE:?}:\n{}\nlogs:\n{}",
            states.join("\n"),
            nodes
                .iter()
                .map(|n| n.log())
                .collect::<Vec<_>>()
                .join("\n-----\n")
        )
    });
    (hash, start.elapsed())
}

/// `agora --json ledger verify --data-dir DIR`: (exit code, JSON, stderr).
fn verify(home: &Path, data_dir: &Path) -> (i32, Value, String) {
    let out = agora(home)
        .args(["--json", "ledger", "verify", "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    let v = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v, stderr(&out))
}

#[test]
fn three_nodes_agree_on_the_evidence_and_keep_it_through_kill_9() {
    if std::env::var_os("AGORA_SKIP_SANDBOX").is_some() {
        eprintln!("skipped: AGORA_SKIP_SANDBOX is set");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut leftovers = Leftovers::new(tmp.path());
    // A, B and C are three of the quota committee's four validators (n = 4, f = 1).
    let dirs = ["a", "b", "c"].map(|n| tmp.path().join(n));
    let mut committee = Committee::new(tmp.path(), &dirs.each_ref().map(PathBuf::as_path));
    let a = validator_gateway(&dirs[0], &committee);
    let b = validator_provider(
        &dirs[1],
        &a.tcp_addr(),
        "sandbox",
        free_udp_port(),
        "",
        &committee,
    );
    leftovers.add(cgroup_parent(&b));
    let c = NodeProc::start_configured(
        &dirs[2],
        &format!(
            "roles = [\"gateway\", \"validator\"]\nregion = \"eu\"\n{}\n",
            committee.config_line()
        ),
        Some(&a.tcp_addr()),
    );
    committee.start_extra(&a.tcp_addr());
    committee.wait_connected(&[&a, &b, &c]);

    // The agent's journey: signup at A, a lease on B run to its end.
    let home = tmp.path().join("agent");
    signup(&home, &a);
    wait_for_offer(&a, &b);
    let run = run_lease(&home, &a, &b, "--lifetime 5m", "sleep 300");
    let lease = run["lease"].as_str().unwrap().to_owned();
    let (ok, _, err) = agent_cli(&home, &a, &["stop", &lease]);
    assert!(ok, "agent stop: {err}");
    let stopped = Instant::now();
    let (hash, took) = converge(&[&a, &b, &c], &["signup", "lease", "usage"]);
    let since_stop = stopped.elapsed();
    eprintln!(
        "ledger: three nodes agree on {hash} {took:?} after polling began ({since_stop:?} after the stop was answered)"
    );
    let before = state(&b);
    assert_eq!(count(&before, "signup"), 1, "{before}");
    assert_eq!(count(&before, "lease"), 1, "{before}");
    // The final receipt, then the same receipt with the agent's acknowledgement (`agent
    // stop` countersigns it).
    assert_eq!(count(&before, "usage"), 2, "{before}");
    assert_eq!(before["acknowledged_receipts"], 1, "{before}");
    assert_eq!(before["pending"], 0, "{before}");
    assert!(before["equivocators"].as_array().unwrap().is_empty());
    // B appended the grant, the receipt and the acknowledged receipt: its own chain has all.
    assert_eq!(before["own"]["seq"], 2, "{before}");

    // kill -9 the provider: it comes back with everything and the same hash.
    b.signal("KILL");
    let b = b.restart();
    let after = state(&b);
    assert_eq!(after["state_hash"], hash.as_str(), "{after}");
    assert_eq!(after["own"], before["own"], "{after}");
    assert_eq!(after["appending"], true, "{after}");

    // kill -9 the gateway right after it acknowledged a signup: the entry it named is
    // there after the restart, as its own chain's latest.
    let home2 = tmp.path().join("agent2");
    std::fs::create_dir_all(&home2).unwrap();
    let (ok, out, err) = agent_cli(&home2, &a, &["signup"]);
    assert!(ok, "signup: {err}");
    let entry = out["ledger_entry"]
        .as_str()
        .unwrap_or_else(|| panic!("the signup names its ledger entry: {out}"))
        .to_owned();
    a.signal("KILL");
    let a = a.restart();
    let a_state = state(&a);
    assert_eq!(a_state["own"]["digest"], entry.as_str(), "{a_state}");
    assert_eq!(count(&a_state, "signup"), 2, "{a_state}");
    // The entry itself, signed by A, verifies; a digest nobody appended and a malformed
    // one get their codes.
    let (status, v) = a.get(&format!("/v1/ledger/entries/{entry}"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["fact"].as_str(), v["digest"].as_str()),
        (Some("signup"), Some(entry.as_str()))
    );
    assert_eq!(v["author"], a_state["node"], "{v}");
    let bytes = URL_SAFE_NO_PAD
        .decode(v["entry"].as_str().unwrap())
        .unwrap();
    let signed = Signed::<Entry>::decode(&bytes, &Ed25519).unwrap();
    assert_eq!(Digest::of(&bytes).to_string(), entry);
    assert_eq!(signed.body().seq, v["seq"].as_u64().unwrap());
    let (status, v) = a.get(&format!("/v1/ledger/entries/{}", "0".repeat(64)));
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("no_entry")),
        "{v}"
    );
    let (status, v) = a.get("/v1/ledger/entries/nothex");
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad_digest")),
        "{v}"
    );
    // And the others learn it.
    let (hash, took) = converge(&[&a, &b, &c], &["signup", "lease", "usage"]);
    eprintln!("ledger: agreement again after the restarts in {took:?}");
    assert_eq!(count(&state(&c), "signup"), 2);

    // Offline verification of a stopped node's data dir.
    let c_dir = c.dir.join("data");
    assert!(c.stop(), "node C stops cleanly");
    let (code, report, err) = verify(&home, &c_dir);
    assert_eq!(code, 0, "verify: {report} {err}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["state_hash"], hash.as_str(), "{report}");
    assert_eq!(report["entries"], state(&a)["entries"], "{report}");

    // One altered entry (a byte of its signature, stored under its new digest as a
    // careful forger would): verification names it and fails.
    let forged = {
        let store = RocksStore::open(&c_dir).unwrap();
        let rows = store.scan_prefix(Column::LedgerEntries, b"", 1).unwrap();
        let (key, mut bytes) = rows.into_iter().next().unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        let forged = Digest::of(&bytes);
        store.delete(Column::LedgerEntries, &key).unwrap();
        store.put(Column::LedgerEntries, &forged.0, &bytes).unwrap();
        store.flush().unwrap();
        forged
    };
    let (code, report, err) = verify(&home, &c_dir);
    assert_eq!(code, 3, "verify of a tampered store: {report} {err}");
    assert_eq!(report["ok"], false, "{report}");
    let failures = report["failures"].to_string();
    assert!(failures.contains(&forged.to_string()), "{failures}");
    assert!(failures.contains("signature"), "{failures}");
    // People get the same, on stderr.
    let out = agora(&home)
        .args(["ledger", "verify", "--data-dir"])
        .arg(&c_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains(&format!("FAILED: entry {forged}")),
        "{}",
        stderr(&out)
    );
    drop((a, b));
}

//! `agora --json demo --once`: the demo's local network is a quota committee of n = 4 (its
//! bootstrap node, two sandbox providers and gateway, f = 1), the agent's attested spending
//! limit is credited there, its lease starts against a lock certificate and the provider
//! settles the lock with the final receipt; the JSON summary says so.
//!
//! The sandbox needs root and bubblewrap; `AGORA_SKIP_SANDBOX=1` skips the test.

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agora_tests::leftovers::Leftovers;
use serde_json::Value;

/// Far above what `demo --once` takes (it is meant to finish within 30 s), so a slow shared
/// host does not fail the test; a hang still does.
const LIMIT: Duration = Duration::from_secs(180);

#[test]
fn demo_once_runs_the_journey_through_a_committee_of_four() {
    if std::env::var_os("AGORA_SKIP_SANDBOX").is_some() {
        eprintln!("skipped: AGORA_SKIP_SANDBOX is set");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("demo");
    let mut leftovers = Leftovers::new(tmp.path());
    // Built (or found fresh) before the clock starts.
    let bin = agora_tests::agora_bin();
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(["--json", "demo", "--once", "--dir"])
        .arg(&work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A hung demo is killed rather than waited for (its output fits in the pipes).
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = std::process::Output {
        status,
        stdout: read_all(child.stdout.take()),
        stderr: read_all(child.stderr.take()),
    };
    let elapsed = started.elapsed();
    let stdout = agora_tests::stdout(&out);
    let stderr = agora_tests::stderr(&out);
    assert!(
        out.status.success(),
        "demo --once failed ({}) after {elapsed:?}:\n{stderr}\n{stdout}",
        out.status
    );
    println!("demo --once took {elapsed:?}");
    let summary: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("the summary is not JSON ({e}): {stdout}\n{stderr}"));
    assert_eq!(summary["ok"], true, "{summary}");

    // The four nodes, gateway first, are the committee's validators (f = 1).
    let nodes = summary["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["gateway", "bootstrap", "provider-1", "provider-2"],
        "{summary}"
    );
    for node in nodes
        .iter()
        .filter(|n| n["name"].as_str().unwrap().starts_with("provider"))
    {
        leftovers.add(agora_node::daemon::workloads::default_cgroup_parent(
            &node["id"].as_str().unwrap().parse().unwrap(),
        ));
    }
    let ids: BTreeSet<&str> = nodes.iter().map(|n| n["id"].as_str().unwrap()).collect();
    let committee = &summary["committee"];
    let validators: BTreeSet<&str> = committee["validators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(validators, ids, "every node is a validator: {summary}");
    assert_eq!(committee["f"], 1, "{summary}");
    assert_eq!(
        committee["issuers"].as_array().unwrap().len(),
        1,
        "the run's issuer only: {summary}"
    );
    let genesis =
        std::fs::read_to_string(work.join("genesis.toml")).expect("the genesis is kept in --dir");
    assert_eq!(
        agora_protocol::committee::Genesis::from_toml(&genesis)
            .unwrap()
            .digest()
            .to_string(),
        committee["digest"].as_str().unwrap()
    );

    // Signup credited the attested spending limit (100 credits) at the committee.
    let quota = &summary["quota"];
    let signed_up = &quota["after_signup"];
    assert_eq!(signed_up["agent"], summary["agent"], "{summary}");
    assert_eq!(signed_up["genesis"], committee["digest"], "{summary}");
    assert_eq!(signed_up["credited_micro"], 100_000_000, "{summary}");
    assert_eq!(
        signed_up["next_seq"], 1,
        "the credit is certified: {summary}"
    );

    // The lease started against a certified lock naming it.
    let lock = &quota["lock"];
    assert_eq!(lock["lease"], summary["lease"], "{summary}");
    assert_eq!(lock["seq"], 1, "the lock follows the credit: {summary}");
    assert!(lock["amount_micro"].as_u64().unwrap() > 0, "{summary}");
    assert!(
        ids.contains(lock["provider"].as_str().unwrap()),
        "{summary}"
    );

    // The final receipt, and the lock settled with it.
    assert!(!summary["receipt"].is_null(), "{summary}");
    let settled = &quota["after_settle"];
    assert!(settled["locks"].as_array().unwrap().is_empty(), "{summary}");
    assert_eq!(settled["next_seq"], 2, "{summary}");
    assert_eq!(
        settled["spent_micro"].as_u64().unwrap() + settled["available_micro"].as_u64().unwrap(),
        100_000_000,
        "what the receipt charged is spent, the rest available again: {summary}"
    );
}

fn read_all(pipe: Option<impl std::io::Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut p) = pipe {
        p.read_to_end(&mut buf).unwrap();
    }
    buf
}

//! Determinism: one seed gives one trace hash, other seeds and other scenarios other
//! hashes, and a written trace verifies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::process::Command;

use agora_sim::Scenario;
use agora_sim::run::{RunOptions, run};

/// A small but complete scenario: two regions, loss, churn and a partition, so that every
/// random draw of the model is exercised. `{link_ms}` sets one link's base latency.
fn scenario(link_ms: u32) -> Scenario {
    let src = format!(
        r#"
duration = "90s"
[nodes]
count = 40
outbound = 5
regions = [{{ name = "eu", share = 1 }}, {{ name = "us", share = 1 }}]
[network]
default = {{ latency = {{ dist = "lognormal", median_ms = 60, sigma = 0.3 }}, loss = 0.01 }}
[[network.links]]
regions = ["eu", "eu"]
latency = {{ base_ms = {link_ms}, jitter_ms = 3 }}
[[partitions]]
at = "40s"
heal = "60s"
sides = [{{ regions = ["us"] }}]
[churn]
crash_per_node_hour = 20
mean_downtime = "10s"
joins = 4
[workload]
providers = 6
readvertise = "20s"
"#
    );
    Scenario::from_toml(&src, "determinism.toml").unwrap()
}

fn hash(scenario: Scenario, seed: u64) -> String {
    let options = RunOptions {
        seed: Some(seed),
        ..RunOptions::default()
    };
    run(scenario, &options, |_, _| {})
        .unwrap()
        .summary
        .trace_hash
}

#[test]
fn the_same_seed_twice_gives_the_same_trace_hash() {
    let seed = std::env::var("AGORA_SIM_SEED").map_or(7, |s| s.parse().unwrap());
    let first = hash(scenario(5), seed);
    assert_eq!(
        first,
        hash(scenario(5), seed),
        "nondeterminism with seed {seed}"
    );
}

#[test]
fn different_seeds_give_different_trace_hashes() {
    assert_ne!(hash(scenario(5), 1), hash(scenario(5), 2));
}

#[test]
fn changing_one_link_delay_changes_the_hash() {
    assert_ne!(hash(scenario(5), 3), hash(scenario(6), 3));
}

#[test]
fn a_written_trace_verifies_with_verify_trace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.trace");
    let options = RunOptions {
        seed: Some(11),
        trace: Some(path.clone()),
        ..RunOptions::default()
    };
    let result = run(scenario(5), &options, |_, _| {}).unwrap();
    let hash = result.summary.trace_hash;
    assert_eq!(agora_sim::verify_trace(&path).unwrap(), hash);
    let lines = std::fs::read_to_string(&path).unwrap().lines().count() as u64;
    assert_eq!(
        lines,
        result.summary.events + 1,
        "a header and one line per event"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_agora-sim"))
        .args(["verify-trace", path.to_str().unwrap(), "--expect", &hash])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("trace_hash: {hash}\n")
    );
}

//! End-to-end checks of the `agora-sim` binary: exit codes and the `verify-trace` output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::BufWriter;
use std::process::{Command, Output};

use agora_sim::{Engine, NodeId, SimDuration, SimTime, Traced};

fn agora_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agora-sim"))
        .args(args)
        .output()
        .unwrap()
}

struct Beat(u32);

impl Traced for Beat {
    fn kind(&self) -> &'static str {
        "beat"
    }
    fn write_payload(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes());
    }
}

#[test]
fn without_a_subcommand_it_says_no_scenarios_exist_yet() {
    let output = agora_sim(&[]);
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("no scenarios can run yet"), "{stdout}");
}

#[test]
fn verify_trace_prints_the_engine_hash_and_checks_expectations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("beats.trace");
    let file = BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut engine = Engine::new(9).with_trace_sink(Box::new(file)).unwrap();
    engine
        .schedule(SimTime::ZERO, NodeId::new(0), Beat(0))
        .unwrap();
    engine
        .run_until(SimTime::from_micros(50_000), |ctx, node, Beat(n)| {
            ctx.schedule_in(SimDuration::from_millis(7), node, Beat(n + 1));
        })
        .unwrap();
    engine.flush_trace().unwrap();
    let hash = engine.trace_hash();
    let path_arg = path.to_str().unwrap();

    let output = agora_sim(&["verify-trace", path_arg]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("trace_hash: {hash}\n")
    );

    assert!(
        agora_sim(&["verify-trace", path_arg, "--expect", &hash])
            .status
            .success()
    );
    let mismatch = agora_sim(&["verify-trace", path_arg, "--expect", &"0".repeat(64)]);
    assert_eq!(mismatch.status.code(), Some(1));
    assert!(
        String::from_utf8(mismatch.stderr)
            .unwrap()
            .contains("mismatch")
    );
}

#[test]
fn verify_trace_fails_cleanly_on_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.trace");
    let output = agora_sim(&["verify-trace", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("cannot read trace file"), "{stderr}");
}

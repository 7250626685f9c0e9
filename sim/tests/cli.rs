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

const TINY: &str =
    "duration = \"20s\"\n[nodes]\ncount = 20\n[workload]\nproviders = 2\nreadvertise = \"5s\"\n";

#[test]
fn run_prints_the_trace_hash_and_writes_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("tiny.toml");
    std::fs::write(&scenario, TINY).unwrap();
    let out = dir.path().join("out");
    let output = agora_sim(&[
        "run",
        scenario.to_str().unwrap(),
        "--seed",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let hash = stdout
        .lines()
        .find_map(|l| l.strip_prefix("trace_hash: "))
        .expect("a trace_hash line");
    assert_eq!(hash.len(), 64);
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["trace_hash"], hash);
    assert_eq!(metrics["seed"], 5);
    for csv in [
        "propagation_cdf.csv",
        "per_node.csv",
        "timeseries.csv",
        "mesh_degree.csv",
        "messages.csv",
        "hops.csv",
    ] {
        let text = std::fs::read_to_string(out.join(csv)).unwrap();
        assert!(text.lines().count() > 1, "{csv} is empty");
    }
    // The same seed again prints the same hash.
    let again = agora_sim(&["run", scenario.to_str().unwrap(), "--seed", "5"]);
    assert!(String::from_utf8(again.stdout).unwrap().contains(hash));
}

#[test]
fn a_bad_scenario_field_fails_with_its_file_line_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("bad.toml");
    std::fs::write(&scenario, format!("{TINY}[gossip]\nd = 6\nd_lazzy = 3\n")).unwrap();
    for command in ["run", "check"] {
        let output = agora_sim(&[command, scenario.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(
            stderr.contains("bad.toml:9:1: gossip.d_lazzy: unknown field `d_lazzy`"),
            "{stderr}"
        );
    }
}

#[test]
fn check_describes_a_shipped_scenario() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/small.toml");
    let output = agora_sim(&["check", path]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("small: 100 nodes"), "{stdout}");
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

#[test]
fn plot_draws_png_and_svg_and_compare_sets_runs_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("tiny.toml");
    std::fs::write(&scenario, TINY).unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for (out, seed) in [(&a, "1"), (&b, "2")] {
        let run = agora_sim(&[
            "run",
            scenario.to_str().unwrap(),
            "--seed",
            seed,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{run:?}");
    }
    let plot = agora_sim(&["plot", a.to_str().unwrap()]);
    assert!(plot.status.success(), "{plot:?}");
    for chart in ["propagation_cdf", "hops", "mesh", "completeness", "traffic"] {
        let png = std::fs::read(a.join(format!("{chart}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{chart}.png");
        let svg = std::fs::read_to_string(a.join(format!("{chart}.svg"))).unwrap();
        assert!(svg.contains("<svg"), "{chart}.svg");
    }
    let compare = agora_sim(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(compare.status.success(), "{compare:?}");
    let table = String::from_utf8(compare.stdout).unwrap();
    assert!(table.contains("latency p50 ms"), "{table}");
    assert!(
        table.contains("trace hash             different"),
        "{table}"
    );
    let missing = agora_sim(&["plot", dir.path().join("nothing").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(1));
}

/// A failed run says `rerun with AGORA_SIM_SEED=<seed>`: `run` takes its seed from there
/// (`--seed` still wins), and refuses a value that is not a seed.
#[test]
fn run_takes_its_seed_from_agora_sim_seed() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("tiny.toml");
    std::fs::write(&scenario, TINY).unwrap();
    let path = scenario.to_str().unwrap();
    let run = |env: &str, extra: &[&str]| {
        let mut args = vec!["run", path];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_agora-sim"))
            .args(&args)
            .env("AGORA_SIM_SEED", env)
            .output()
            .unwrap()
    };
    let from_env = run("7", &[]);
    assert!(from_env.status.success(), "{from_env:?}");
    assert!(String::from_utf8_lossy(&from_env.stdout).contains("(seed 7)"));
    let flag = run("7", &["--seed", "9"]);
    assert!(String::from_utf8_lossy(&flag.stdout).contains("(seed 9)"));
    let bad = run("seven", &[]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("AGORA_SIM_SEED"));
}

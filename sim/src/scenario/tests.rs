#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;

const MINIMAL: &str = "duration = \"30s\"\n[nodes]\ncount = 10\n";

fn error_of(source: &str) -> (usize, String, String) {
    match Scenario::from_toml(source, "test.toml") {
        Err(ScenarioError::Invalid {
            line,
            field,
            message,
            ..
        }) => (line, field, message),
        other => panic!("expected an invalid scenario, got {other:?}"),
    }
}

#[test]
fn a_minimal_scenario_takes_the_defaults() {
    let s = Scenario::from_toml(MINIMAL, "dir/minimal.toml").unwrap();
    assert_eq!(s.name, "minimal");
    assert_eq!(s.seed, DEFAULT_SEED);
    assert_eq!(s.duration, Span::secs(30));
    assert_eq!(s.nodes.outbound, 8);
    assert_eq!(s.nodes.regions.len(), 1);
    assert_eq!(s.gossip.d, 6);
    assert_eq!(s.gossip.heartbeat, Span::millis(700));
    assert!(s.gossip.flood_publish);
    assert_eq!(s.network.default.loss.0, 0.0);
    assert_eq!(s.node_slots(), 10);
    assert!(s.workload.withdraw_on_leave);
    assert_eq!(s.churn.leave_share.0, 0.0);
    assert_eq!(s.churn.leave_grace, Span::secs(2));
}

#[test]
fn at_most_64_regions() {
    let regions: Vec<String> = (0..65)
        .map(|i| format!("{{ name = \"r{i}\", share = 1 }}"))
        .collect();
    let src = format!(
        "duration = \"30s\"\n[nodes]\ncount = 100\nregions = [{}]\n",
        regions.join(", ")
    );
    let (_, field, message) = error_of(&src);
    assert_eq!(field, "nodes");
    assert!(message.contains("65 regions"), "{message}");
}

#[test]
fn leaves_and_withdrawals_are_configurable() {
    let src = format!(
        "{MINIMAL}[churn]\nleave_share = 0.5\nleave_grace = \"500ms\"\n\
         schedule = [{{ at = \"5s\", action = \"leave\", nodes = [0, 3] }}]\n\
         [workload]\nproviders = 2\nwithdraw_on_leave = false\n"
    );
    let s = Scenario::from_toml(&src, "leave.toml").unwrap();
    assert_eq!(s.churn.leave_share.0, 0.5);
    assert_eq!(s.churn.leave_grace, Span::millis(500));
    assert_eq!(s.churn.schedule[0].action, ChurnAction::Leave);
    assert!(!s.workload.withdraw_on_leave);
    let (_, field, _) = error_of(&format!("{MINIMAL}[churn]\nleave_share = 2\n"));
    assert_eq!(field, "churn.leave_share");
}

#[test]
fn an_unknown_field_is_named_with_its_line() {
    let src = format!("{MINIMAL}[gossip]\nd = 6\nfanuot = 3\n");
    let (line, field, message) = error_of(&src);
    assert_eq!(line, 6);
    assert_eq!(field, "gossip.fanuot");
    assert!(message.contains("unknown field `fanuot`"), "{message}");
}

#[test]
fn a_bad_value_is_named_with_its_line() {
    let src = format!("{MINIMAL}\n[network.default]\nloss = 1.5\n");
    let (line, field, message) = error_of(&src);
    assert_eq!((line, field.as_str()), (6, "network.default.loss"));
    assert!(message.contains("not a probability"), "{message}");

    let src = format!(
        "{MINIMAL}[network.default]\nlatency = {{ dist = \"lognormal\", median_ms = 5, jitter_ms = 1 }}\n"
    );
    let (line, field, message) = error_of(&src);
    assert_eq!((line, field.as_str()), (5, "network.default.latency"));
    assert!(
        message.contains("belong to dist = \"uniform\""),
        "{message}"
    );

    let (line, field, message) = error_of("duration = \"30 parsecs\"\n[nodes]\ncount = 1\n");
    assert_eq!((line, field.as_str()), (1, "duration"));
    assert!(message.contains("unknown unit"), "{message}");
}

#[test]
fn constraints_between_fields_point_at_their_section() {
    let src = format!("{MINIMAL}[gossip]\nd = 6\nd_lo = 7\n");
    let (line, field, message) = error_of(&src);
    assert_eq!(field, "gossip");
    assert!((4..=6).contains(&line), "{line}");
    assert!(message.contains("d_lo <= d <= d_hi"), "{message}");

    let src = format!("{MINIMAL}[[partitions]]\nat = \"20s\"\nheal = \"10s\"\nsides = []\n");
    let (_, _, message) = error_of(&src);
    assert!(message.contains("at least one side"), "{message}");
    let src = format!(
        "{MINIMAL}[[partitions]]\nat = \"20s\"\nheal = \"10s\"\nsides = [{{ nodes = [[0, 5]] }}]\n"
    );
    let (_, _, message) = error_of(&src);
    assert!(message.contains("must come after"), "{message}");
}

#[test]
fn references_to_regions_and_nodes_are_checked() {
    let src = "duration = \"30s\"\n[nodes]\ncount = 10\nregions = [\n  { name = \"eu\", share = 1 },\n]\n\
               [[network.links]]\nregions = [\"eu\", \"mars\"]\n";
    let (line, _, message) = error_of(src);
    assert_eq!(line, 8);
    assert!(message.contains("unknown region \"mars\""), "{message}");

    let src = format!("{MINIMAL}[[partitions]]\nat = \"5s\"\nsides = [{{ nodes = [[0, 11]] }}]\n");
    let (line, _, message) = error_of(&src);
    assert_eq!(line, 6);
    assert!(message.contains("scenario has 10 nodes"), "{message}");

    let src = format!("{MINIMAL}[workload]\nproviders = 11\n");
    let (line, field, _) = error_of(&src);
    assert_eq!((line, field.as_str()), (5, "workload.providers"));

    let src = "duration = \"30s\"\n[nodes]\ncount = 3\nregions = [{ name = \"EU\", share = 1 }]\n";
    let (line, _, message) = error_of(src);
    assert_eq!(line, 4);
    assert!(message.contains("a-z"), "{message}");
}

#[test]
fn missing_required_fields_are_reported() {
    let (_, _, message) = error_of("[nodes]\ncount = 3\n");
    assert!(message.contains("duration"), "{message}");
    let (_, _, message) = error_of("duration = \"1s\"\n[nodes]\ncount = 0\n");
    assert!(message.contains("at least 1"), "{message}");
}

#[test]
fn the_shipped_scenarios_parse() {
    for (name, source) in [
        ("small.toml", include_str!("../../scenarios/small.toml")),
        (
            "gossip-1k.toml",
            include_str!("../../scenarios/gossip-1k.toml"),
        ),
        (
            "partition.toml",
            include_str!("../../scenarios/partition.toml"),
        ),
        (
            "scale-10k.toml",
            include_str!("../../scenarios/scale-10k.toml"),
        ),
        (
            "scale-100k.toml",
            include_str!("../../scenarios/scale-100k.toml"),
        ),
    ] {
        let s = Scenario::from_toml(source, name).unwrap_or_else(|e| panic!("{e}"));
        assert!(!s.description.is_empty(), "{name} has no description");
    }
}

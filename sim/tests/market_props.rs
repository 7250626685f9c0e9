//! Property test of the market layer: over small random markets (committee size and
//! Byzantine validators up to `f`, every kind of adversary, lying providers, seeds), the
//! auditor's invariants hold for the whole run (no double-spend, no lease on an expired
//! offer or without a covering lock, quota conserved at every certificate and epoch) and
//! nothing is spent twice.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use agora_sim::Scenario;
use agora_sim::run::{RunOptions, run};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Market {
    nodes: u32,
    providers: u32,
    agents: u32,
    f: u32,
    byzantine: u32,
    behaviour: &'static str,
    attack: &'static str,
    fraction: f64,
    lying_share: f64,
    lie: &'static str,
    seed: u64,
}

fn markets() -> impl Strategy<Value = Market> {
    (
        (12u32..24, 2u32..6, 4u32..14, 1u32..3),
        (
            prop::sample::select(vec!["withhold", "double-sign"]),
            prop::sample::select(vec![
                "none",
                "double-spend",
                "free-riders",
                "colluding-raters",
                "sybil",
            ]),
            0.0f64..0.5,
            prop::sample::select(vec![0.0, 0.25, 0.5]),
            prop::sample::select(vec!["never-run", "overstate", "offline"]),
        ),
        any::<u64>(),
    )
        .prop_flat_map(
            |((nodes, providers, agents, f), (behaviour, attack, fraction, lying, lie), seed)| {
                (0..=f).prop_map(move |byzantine| Market {
                    nodes,
                    providers,
                    agents,
                    f,
                    byzantine,
                    behaviour,
                    attack,
                    fraction,
                    lying_share: lying,
                    lie,
                    seed,
                })
            },
        )
}

fn scenario(m: &Market) -> Scenario {
    let src = format!(
        r#"
duration = "4m"
[nodes]
count = {nodes}
outbound = 4
[network]
default = {{ latency = {{ base_ms = 20, jitter_ms = 20 }}, loss = 0.01 }}
[workload]
providers = {providers}
readvertise = "40s"
[market]
agents = {agents}
start = "20s"
mean_interarrival = "40s"
lease_lifetime = "40s"
attested_share = 0.7
[market.providers]
lying_share = {lying}
lie = "{lie}"
[committee]
f = {f}
byzantine = {byzantine}
behaviour = "{behaviour}"
free_tier_cap = 6
[adversary]
kind = "{attack}"
fraction = {fraction}
at = "30s"
[reputation]
epoch = "1m"
"#,
        nodes = m.nodes,
        providers = m.providers,
        agents = m.agents,
        lying = m.lying_share,
        lie = m.lie,
        f = m.f,
        byzantine = m.byzantine,
        behaviour = m.behaviour,
        attack = m.attack,
        fraction = m.fraction,
    );
    Scenario::from_toml(&src, "market-prop.toml").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// With at most `f` Byzantine validators, whatever the agents and providers do, no
    /// run trips the auditor, nothing is certified twice, quota is conserved and free
    /// riders and Sybils get nothing they did not pay for.
    #[test]
    fn invariants_hold_with_at_most_f_byzantine_validators(m in markets()) {
        let options = RunOptions { seed: Some(m.seed), ..RunOptions::default() };
        let result = run(scenario(&m), &options, |_, _| {});
        let result = match result {
            Ok(r) => r,
            Err(e) => return Err(TestCaseError::fail(format!("{m:?}: {e}"))),
        };
        let s = result.summary.market.expect("a market");
        prop_assert_eq!(s.double_spends_certified, 0, "{:?}", m);
        prop_assert_eq!(s.quota_overspend_micro, 0, "{:?}", m);
        prop_assert!(s.quota_conserved, "{:?}", m);
        prop_assert_eq!(s.counts.free_rider_grants, 0, "{:?}", m);
        prop_assert!(
            s.counts.free_tier_grants <= u64::from(s.free_tier_cap),
            "{} free-tier grants over a cap of {} ({:?})", s.counts.free_tier_grants, s.free_tier_cap, m
        );
        prop_assert!(s.counts.granted <= s.counts.arrivals, "{:?}", m);
    }
}

//! The market on the simulator: EigenTrust against lying providers, the committee against
//! Byzantine validators (safe with `f`, caught at `f + 1`), free riders, determinism with
//! every actor on, and the scenario sections' errors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use agora_sim::Scenario;
use agora_sim::market::MarketSummary;
use agora_sim::run::{RunError, RunOptions, run};

/// A small market: `nodes` nodes in two regions, `providers` providers, `agents` agents,
/// plus `extra` TOML (sections or keys appended).
fn scenario(duration: &str, providers: u32, agents: u32, extra: &str) -> Scenario {
    let src = format!(
        r#"
duration = "{duration}"
[nodes]
count = 40
outbound = 5
regions = [{{ name = "eu", share = 1 }}, {{ name = "us", share = 1 }}]
[network]
default = {{ latency = {{ base_ms = 40, jitter_ms = 10 }} }}
[gossip]
subscribe = "all"
[workload]
providers = {providers}
readvertise = "60s"
{extra}
[market]
agents = {agents}
start = "30s"
mean_interarrival = "2m"
lease_lifetime = "2m"
"#
    );
    Scenario::from_toml(&src, "market-test.toml").unwrap()
}

fn market(scenario: Scenario, seed: u64) -> (MarketSummary, String) {
    let options = RunOptions {
        seed: Some(seed),
        ..RunOptions::default()
    };
    let result = run(scenario, &options, |_, _| {}).unwrap();
    let hash = result.summary.trace_hash.clone();
    (result.summary.market.expect("a market section"), hash)
}

/// The paper's setting: validators are the pre-trusted peers, the liars form a collective
/// with agents that praise them. Honest agents' complaints and the collective's small paid
/// voice leave the liars below every honest provider, and the share of honest agents'
/// leases the liars win falls once trust is known.
#[test]
fn lying_providers_end_with_less_trust_and_a_falling_share_of_leases() {
    let extra = r#"
[adversary]
kind = "colluding-raters"
fraction = 0.1
[reputation]
epoch = "5m"
window = "10m"
trust_weight = 0.8
"#;
    let mut s = scenario("40m", 10, 40, extra);
    if let Some(m) = s.market.as_mut() {
        let m = toml::Spanned::get_mut(m);
        m.providers.lying_share.0 = 0.2;
        m.providers.liar_discount.0 = 0.5;
    }
    let (m, _) = market(s, 3);
    assert_eq!(m.lying_providers, 2);
    assert!(m.counts.granted > 50, "too few leases to judge: {m:?}");
    let last = m.epochs.last().unwrap();
    assert!(
        last.liar_trust_ppb < last.honest_trust_ppb,
        "liars keep more trust: {last:?}"
    );
    let auc = m.final_auc.unwrap();
    // Honest providers without leases in the last window tie with the liars at zero.
    assert!(
        auc >= 0.7,
        "trust does not separate honest and lying providers: {auc}"
    );
    // The first epoch with leases (cheap liars, no trust known yet) against the last ones.
    let with_leases: Vec<_> = m.epochs.iter().filter(|e| e.honest_leases > 0).collect();
    let first = with_leases.first().unwrap().liar_share;
    let late = with_leases[with_leases.len() - 2..]
        .iter()
        .map(|e| e.liar_share)
        .sum::<f64>()
        / 2.0;
    assert!(
        late < first,
        "the liars' share of leases did not fall: first {first}, late {late} ({:?})",
        m.epochs
    );
}

fn byzantine(count: u32) -> Scenario {
    let extra = format!(
        r#"
[committee]
f = 1
byzantine = {count}
behaviour = "double-sign"
[adversary]
kind = "double-spend"
fraction = 0.25
"#
    );
    scenario("10m", 6, 24, &extra)
}

/// With `f` double-signing validators, the double-spenders' conflicting locks never both
/// certify: no slot is certified twice and nothing is spent twice.
#[test]
fn f_double_signing_validators_allow_no_double_spend() {
    let (m, _) = market(byzantine(1), 5);
    assert_eq!(m.byzantine_validators, 1);
    assert!(
        m.counts.double_spend_attempts > 0,
        "no double-spend was tried: {m:?}"
    );
    assert!(m.counts.double_spends_rejected > 0, "{m:?}");
    assert_eq!(m.double_spends_certified, 0);
    assert_eq!(m.quota_overspend_micro, 0);
    assert!(m.quota_conserved);
    assert!(m.counts.granted > 0);
}

/// With `f + 1`, both halves certify and the auditor stops the run, naming the seed.
#[test]
fn f_plus_one_double_signers_are_caught_by_the_invariant_check() {
    let options = RunOptions {
        seed: Some(5),
        ..RunOptions::default()
    };
    match run(byzantine(2), &options, |_, _| {}) {
        Err(e @ RunError::Invariant { .. }) => {
            let text = e.to_string();
            assert!(text.contains("double-spend"), "{text}");
            assert!(text.contains("AGORA_SIM_SEED=5"), "{text}");
        }
        Err(e) => panic!("another error: {e}"),
        Ok(r) => panic!("the double-spend went unnoticed: {:?}", r.summary.market),
    }
}

/// A committee of four, one of which withholds its votes.
const ONE_WITHHOLDING_VALIDATOR: &str =
    "[committee]\nf = 1\nbyzantine = 1\nbehaviour = \"withhold\"\n";

/// Withholding validators (`f` of them) cost nothing; free riders never get a lease.
#[test]
fn withholding_validators_and_free_riders_get_nowhere() {
    let extra = format!(
        "{ONE_WITHHOLDING_VALIDATOR}[adversary]\nkind = \"free-riders\"\nfraction = 0.25\n"
    );
    let (m, _) = market(scenario("10m", 6, 24, &extra), 9);
    assert!(m.counts.free_rider_attempts > 0);
    assert_eq!(m.counts.free_rider_grants, 0);
    assert!(m.counts.granted > 0);
    assert!(
        m.counts.attempt_failures.contains_key("refused-quota"),
        "{m:?}"
    );
}

/// Every actor at once (lying providers going offline mid-lease, a withholding
/// validator, colluding raters, reputation epochs): one seed, one trace hash.
#[test]
fn the_same_seed_gives_the_same_trace_hash_with_every_actor_on() {
    let extra = format!(
        "{ONE_WITHHOLDING_VALIDATOR}[adversary]\nkind = \"colluding-raters\"\nfraction = 0.2\n\
         [reputation]\nepoch = \"3m\"\n"
    );
    let mut s = scenario("8m", 6, 20, &extra);
    if let Some(m) = s.market.as_mut() {
        let m = toml::Spanned::get_mut(m);
        m.providers.lying_share.0 = 0.34;
        m.providers.lie = agora_sim::scenario::Lie::Offline;
    }
    let (a, hash_a) = market(s.clone(), 11);
    let (_, hash_b) = market(s.clone(), 11);
    let (_, hash_c) = market(s, 12);
    assert_eq!(hash_a, hash_b);
    assert_ne!(hash_a, hash_c);
    assert!(a.counts.granted > 0 && a.counts.certificates > 0);
}

#[test]
fn market_sections_are_checked_with_their_line() {
    let base = "duration = \"1m\"\n[nodes]\ncount = 5\n[workload]\nproviders = 1\n";
    let err = Scenario::from_toml(&format!("{base}[committee]\nf = 1\n"), "x.toml").unwrap_err();
    assert_eq!(err.line(), Some(6), "{err}");
    assert!(
        err.to_string().contains("needs a [market] section"),
        "{err}"
    );
    let err = Scenario::from_toml(
        &format!("{base}[market]\nagents = 3\nlease_lifetime = \"0s\"\n"),
        "x.toml",
    )
    .unwrap_err();
    assert!(err.to_string().contains("lease_lifetime"), "{err}");
    let err = Scenario::from_toml(
        &format!("{base}[market]\nagents = 3\nbogus = 1\n"),
        "x.toml",
    )
    .unwrap_err();
    assert_eq!(err.line(), Some(8), "{err}");
    let err = Scenario::from_toml(
        &format!("{base}[market]\nagents = 3\n[committee]\nf = 1\nbyzantine = 5\n"),
        "x.toml",
    )
    .unwrap_err();
    assert!(err.to_string().contains("only 4 validators"), "{err}");
    let err = Scenario::from_toml(
        &format!(
            "{base}[market]\nagents = 3\n[adversary]\nkind = \"double-spend\"\nfraction = 2\n"
        ),
        "x.toml",
    )
    .unwrap_err();
    assert!(err.to_string().contains("above 1"), "{err}");
    let err = Scenario::from_toml(
        &format!("{base}[market]\nagents = 3\n[adversary]\nkind = \"eclipse\"\n"),
        "x.toml",
    )
    .unwrap_err();
    assert!(err.to_string().contains("needs lying providers"), "{err}");
    // Every shipped market scenario checks.
    for name in [
        "market-1k",
        "market-10k",
        "sybil-attack",
        "lying-providers",
        "byzantine-validators",
        "eclipse",
    ] {
        let path = format!("{}/scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"));
        Scenario::load(path.as_ref()).unwrap();
    }
}

fn eclipse(honest_peers: u32) -> Scenario {
    let extra = format!(
        r#"
[adversary]
kind = "eclipse"
fraction = 0.25
victims = 2
attackers = 6
honest_peers = {honest_peers}
[reputation]
epoch = "4m"
[market.providers]
lying_share = 0.25
liar_discount = 0.5
"#
    );
    scenario("20m", 8, 24, &extra)
}

/// Attackers that hold every connection of their victims pass them only their own offers:
/// every lease of an agent on a victim goes to the attackers' providers, while the other
/// agents learn to avoid them. One honest connection is enough to break the eclipse.
#[test]
fn an_eclipse_hands_the_victims_leases_to_the_attackers_unless_one_honest_peer_remains() {
    let (surrounded, _) = market(eclipse(0), 4);
    assert!(surrounded.counts.victim_leases >= 10, "{surrounded:?}");
    assert_eq!(surrounded.eclipse_attacker_share, Some(1.0));
    let others = surrounded.final_liar_share.unwrap();
    assert!(
        others < 0.5,
        "the liars also win the others' leases: {others}"
    );
    let (open, _) = market(eclipse(1), 4);
    assert!(open.counts.victim_leases >= 10, "{open:?}");
    let share = open.eclipse_attacker_share.unwrap();
    assert!(
        share < 0.6,
        "one honest peer should bring the victims the honest offers: {share}"
    );
}

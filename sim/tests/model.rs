//! Model checks: gossip covers every connected node in ~log N rounds; a partition stops
//! propagation across it and healing resumes it; crashed nodes re-sync on restart.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use agora_protocol::gossip::GossipMessage;
use agora_sim::run::{RunOptions, RunResult, run};
use agora_sim::{Scenario, SimTime};

fn run_toml(src: &str) -> RunResult {
    let scenario = Scenario::from_toml(src, "model.toml").unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions {
        record_deliveries: true,
        ..RunOptions::default()
    };
    run(scenario, &options, |_, _| {}).unwrap()
}

/// `nodes` nodes in one region, no loss, no churn, four offers each from 4 providers.
fn epidemic(nodes: u32) -> RunResult {
    run_toml(&format!(
        r#"
duration = "75s"
[nodes]
count = {nodes}
outbound = 4
[network]
default = {{ latency = {{ base_ms = 20, jitter_ms = 10 }} }}
[workload]
providers = 4
readvertise = "15s"
[metrics]
settle = "10s"
"#
    ))
}

#[test]
fn gossip_reaches_every_node_and_rounds_grow_like_log_n() {
    let small = epidemic(100);
    let large = epidemic(1000);
    for (n, result) in [(100, &small), (1000, &large)] {
        let p = &result.summary.propagation;
        assert!(p.settled_messages >= 12, "{n}: {p:?}");
        assert_eq!(
            p.coverage_min, 1.0,
            "{n} nodes: every connected node gets every offer"
        );
        assert_eq!(p.sync_deliveries, 0, "{n}: gossip alone suffices");
    }
    let (h_small, h_large) = (
        small.summary.propagation.mean_hops,
        large.summary.propagation.mean_hops,
    );
    // 10x the nodes: an epidemic needs log(1000)/log(100) = 1.5x the rounds, not 10x.
    let ratio = h_large / h_small;
    assert!(
        (1.1..2.0).contains(&ratio),
        "mean hops {h_small:.2} (100 nodes) vs {h_large:.2} (1000 nodes): ratio {ratio:.2}"
    );
    let (max_small, max_large) = (
        small.summary.propagation.max_hops,
        large.summary.propagation.max_hops,
    );
    assert!(
        max_large <= 2 * max_small,
        "max hops {max_small} vs {max_large}"
    );
}

#[test]
fn a_partition_stops_propagation_and_the_heal_resumes_it() {
    // Each provider publishes once, at a uniform time in [1 s, 301 s): offers published
    // during the partition are never superseded within the run, so each must cross after
    // the heal.
    let result = run_toml(
        r#"
duration = "150s"
[nodes]
count = 100
outbound = 6
regions = [{ name = "eu", share = 1 }, { name = "us", share = 1 }]
[network]
default = { latency = { base_ms = 40, jitter_ms = 10 } }
link_timeout = "10s"
reconnect_delay = "5s"
[[partitions]]
at = "20s"
heal = "80s"
sides = [{ regions = ["eu"] }]
[workload]
providers = 40
readvertise = "300s"
[metrics]
settle = "15s"
"#,
    );
    let world = &result.world;
    let region = |n: u32| world.net().region_of(n);
    let (start, heal) = (
        SimTime::from_micros(20_000_000),
        SimTime::from_micros(80_000_000),
    );
    let during: Vec<_> = world
        .metrics()
        .messages
        .iter()
        .filter(|m| m.published_at > start && m.published_at < heal)
        .collect();
    assert!(
        during.len() >= 5,
        "only {} offers during the partition",
        during.len()
    );
    let mut crossed_after_heal = 0;
    for m in &during {
        let origin_region = region(m.origin);
        for d in &m.deliveries {
            if region(d.node) != origin_region {
                assert!(d.at >= heal, "an offer crossed the partition at {}", d.at);
                crossed_after_heal += 1;
            }
        }
        assert_eq!(m.coverage(), 1.0, "after the heal every node has the offer");
    }
    assert!(crossed_after_heal >= during.len() * 40);
    assert!(result.summary.traffic.blocked > 0);
    assert!(
        result.summary.propagation.sync_deliveries > 0,
        "sync after reconnect"
    );
    // Offers published after the heal travel by gossip across the old divide again.
    let after: Vec<_> = world
        .metrics()
        .messages
        .iter()
        .filter(|m| m.published_at > heal.saturating_add(agora_sim::SimDuration::from_secs(10)))
        .filter(|m| m.published_at < SimTime::from_micros(135_000_000))
        .collect();
    assert!(!after.is_empty());
    for m in after {
        assert_eq!(m.coverage(), 1.0);
        assert!(
            m.deliveries
                .iter()
                .any(|d| region(d.node) != region(m.origin) && d.hops.is_some())
        );
    }
}

#[test]
fn crashed_nodes_lose_their_book_and_resync_on_restart() {
    let result = run_toml(
        r#"
duration = "100s"
[nodes]
count = 60
outbound = 5
[[churn.schedule]]
at = "40s"
action = "crash"
nodes = [0, 10]
[[churn.schedule]]
at = "70s"
action = "restart"
nodes = [0, 10]
[workload]
providers = 20
readvertise = "300s"
start = "1s"
"#,
    );
    let world = &result.world;
    assert_eq!(result.summary.churn.get("crash"), Some(&10));
    assert_eq!(result.summary.churn.get("restart"), Some(&10));
    // Every offer published so far is in every book, restarted nodes included.
    let published = world.metrics().messages.len();
    assert!(published > 3);
    for (n, node) in world.nodes().iter().enumerate() {
        assert!(node.is_up());
        assert_eq!(node.market.book().len(), published, "node {n}");
    }
    // Gossip and sync alike give every book the one decoded copy of an offer; only its
    // provider keeps the copy it signed.
    for message in world.messages() {
        let Some(Ok(GossipMessage::Offer(decoded))) = &message.decoded else {
            panic!("every offer was decoded once");
        };
        let sharing = world
            .nodes()
            .iter()
            .flat_map(|node| node.market.book().iter())
            .filter(|held| held.shares_with(decoded))
            .count();
        assert_eq!(sharing, world.nodes().len() - 1);
    }
    // The books were emptied by the crash (first deliveries are counted once, so the
    // re-delivery shows in the sync verdicts): each restarted node re-synced every offer
    // published before its crash.
    let before_crash = world
        .metrics()
        .messages
        .iter()
        .filter(|m| m.published_at < SimTime::from_micros(40_000_000))
        .count();
    assert!(before_crash > 0);
    let synced = result
        .summary
        .sync_verdicts
        .get("accepted")
        .copied()
        .unwrap_or(0);
    assert!(
        synced >= 10 * before_crash as u64,
        "{synced} synced, {before_crash} offers"
    );
}

#[test]
fn region_affinity_keeps_dials_local_so_own_region_meshes_form() {
    let result = run_toml(
        r#"
duration = "40s"
[nodes]
count = 200
outbound = 5
region_affinity = 1.0
regions = [{ name = "a", share = 1 }, { name = "b", share = 1 }, { name = "c", share = 1 }, { name = "d", share = 1 }]
[gossip]
subscribe = "own"
[workload]
providers = 8
readvertise = "10s"
[metrics]
settle = "5s"
"#,
    );
    let world = &result.world;
    for (n, node) in world.nodes().iter().enumerate() {
        let region = world.net().region_of(n as u32);
        assert!(
            node.peer_ids()
                .iter()
                .all(|&p| world.net().region_of(p) == region)
        );
    }
    assert_eq!(result.summary.mesh.below_d_lo, 0.0);
    assert_eq!(result.summary.propagation.coverage_min, 1.0);
    assert_eq!(result.summary.book_completeness, 1.0);
}

/// 60 nodes, 20 providers; nodes 0..12 leave at 30 s, while nodes 50..60 are cut off (20 s
/// to 50 s) and so miss the withdrawals' gossip.
fn leaving(withdraw: bool) -> RunResult {
    run_toml(&format!(
        r#"
duration = "100s"
[nodes]
count = 60
outbound = 5
[network]
default = {{ latency = {{ base_ms = 30, jitter_ms = 10 }} }}
link_timeout = "5s"
reconnect_delay = "3s"
[[partitions]]
at = "20s"
heal = "50s"
sides = [{{ nodes = [[50, 60]] }}]
[[churn.schedule]]
at = "30s"
action = "leave"
nodes = [0, 12]
[gossip]
sync_interval = "10s"
[workload]
providers = 20
readvertise = "10s"
offer_ttl = "10m"
withdraw_on_leave = {withdraw}
"#
    ))
}

/// The providers whose nodes left, by id.
fn departed(result: &RunResult) -> Vec<agora_protocol::AgoraId> {
    result
        .world
        .providers()
        .iter()
        .filter(|slot| slot.node < 12)
        .map(|slot| slot.provider.id())
        .collect()
}

#[test]
fn withdrawn_offers_disappear_from_books_and_sync_pages_carry_withdrawals() {
    let result = leaving(true);
    let world = &result.world;
    let end = agora_sim::workload::timestamp(SimTime::from_micros(100_000_000));
    assert_eq!(result.summary.churn.get("leave"), Some(&12));
    assert_eq!(
        result.summary.churn.get("crash"),
        None,
        "leaves are not crashes"
    );
    let departed = departed(&result);
    assert!(!departed.is_empty(), "some providers left");
    assert_eq!(result.summary.propagation.withdrawals, departed.len());
    for (n, node) in world.nodes().iter().enumerate() {
        assert_eq!(node.is_up(), n >= 12, "node {n}");
        if !node.is_up() {
            continue;
        }
        for id in &departed {
            assert!(
                node.market.book().get(id, end).is_none(),
                "node {n} still holds a withdrawn offer"
            );
        }
    }
    // The cut-off nodes learnt of the withdrawals from sync pages after the heal.
    let heal = SimTime::from_micros(50_000_000);
    let withdrawals: Vec<_> = world
        .metrics()
        .messages
        .iter()
        .filter(|m| m.withdrawal)
        .collect();
    for m in &withdrawals {
        assert_eq!(m.coverage(), 1.0);
        let synced_late = m
            .deliveries
            .iter()
            .filter(|d| d.node >= 50 && d.hops.is_none() && d.at >= heal)
            .count();
        assert_eq!(synced_late, 10, "every cut-off node, by sync");
    }
}

#[test]
fn without_withdrawals_books_keep_a_departed_providers_offer() {
    let result = leaving(false);
    let world = &result.world;
    let end = agora_sim::workload::timestamp(SimTime::from_micros(100_000_000));
    assert_eq!(result.summary.churn.get("leave"), Some(&12));
    assert_eq!(result.summary.propagation.withdrawals, 0);
    let departed = departed(&result);
    assert!(!departed.is_empty());
    for (n, node) in world.nodes().iter().enumerate().filter(|(_, n)| n.is_up()) {
        for id in &departed {
            assert!(
                node.market.book().get(id, end).is_some(),
                "node {n} lost an offer that was never withdrawn"
            );
        }
    }
}

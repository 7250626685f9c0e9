//! The figures of `metrics.json`, condensed from [`Metrics`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::Metrics;
use crate::gossip::FRAME_KINDS;
use crate::time::{SimDuration, SimTime};
use crate::verifier::MemoStats;

/// A distribution's headline figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spread {
    /// The mean.
    pub mean: f64,
    /// The smallest value.
    pub min: f64,
    /// The median.
    pub p50: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (all zero when empty).
    pub fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Spread::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            values.get(i).copied().unwrap_or(0.0)
        };
        Spread {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            min: values.first().copied().unwrap_or(0.0),
            p50: at(0.5),
            p99: at(0.99),
            max: values.last().copied().unwrap_or(0.0),
        }
    }
}

/// Offer propagation (offers and withdrawals alike: each is a message that must reach
/// every book).
#[derive(Debug, Clone, Serialize)]
pub struct Propagation {
    /// Messages published: offers and withdrawals.
    pub messages: usize,
    /// Of those, withdrawals (providers leaving).
    pub withdrawals: usize,
    /// Offers published early enough to count for coverage (before the end minus the
    /// settle time).
    pub settled_messages: usize,
    /// Deliveries into books of eligible nodes (all offers).
    pub deliveries: u64,
    /// Delivery latency percentiles, publish to book, in ms (all offers).
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// The slowest delivery.
    pub max_ms: Option<f64>,
    /// Mean fraction of eligible nodes reached, over settled offers.
    pub coverage_mean: f64,
    /// The worst settled offer's coverage.
    pub coverage_min: f64,
    /// Fraction of settled offers that reached every eligible node.
    pub full_coverage_fraction: f64,
    /// Mean relays from the origin over gossip deliveries.
    pub mean_hops: f64,
    /// Most relays any gossip delivery took.
    pub max_hops: usize,
    /// Deliveries that came by offer sync rather than gossip.
    pub sync_deliveries: u64,
}

/// Frames of one kind.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FrameCount {
    /// Frames sent.
    pub count: u64,
    /// Bytes sent.
    pub bytes: u64,
}

/// Traffic.
#[derive(Debug, Clone, Serialize)]
pub struct Traffic {
    /// Per frame kind.
    pub frames: BTreeMap<&'static str, FrameCount>,
    /// Frames sent per node.
    pub frames_sent_per_node: Spread,
    /// Bytes sent per node.
    pub bytes_sent_per_node: Spread,
    /// Bytes received per node.
    pub bytes_received_per_node: Spread,
    /// Frames lost on links.
    pub lost: u64,
    /// Frames blocked by partitions.
    pub blocked: u64,
    /// Frames to down nodes or over closed connections.
    pub undeliverable: u64,
    /// Full messages that arrived again (seen cache hits).
    pub duplicates: u64,
    /// Duplicates per book delivery.
    pub duplicates_per_delivery: f64,
}

/// Mesh health at the last sample.
#[derive(Debug, Clone, Serialize)]
pub struct Mesh {
    /// Mesh degree over (up node, subscribed topic).
    pub degree: Spread,
    /// Fraction of (node, topic) meshes below `D_lo`.
    pub below_d_lo: f64,
    /// Fraction of (node, topic) meshes that are empty.
    pub empty: f64,
}

/// The whole `metrics.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The scenario's name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// Initial nodes.
    pub nodes: u32,
    /// Initial nodes plus joins.
    pub node_slots: u32,
    /// Simulated seconds.
    pub duration_s: f64,
    /// Events processed.
    pub events: u64,
    /// The trace hash.
    pub trace_hash: String,
    /// Offer propagation.
    pub propagation: Propagation,
    /// Traffic.
    pub traffic: Traffic,
    /// Mesh health at the end.
    pub mesh: Mesh,
    /// Mean book completeness at the last sample.
    pub book_completeness: f64,
    /// Gossip validation verdicts.
    pub verdicts: BTreeMap<&'static str, u64>,
    /// Verdicts on synced offers.
    pub sync_verdicts: BTreeMap<&'static str, u64>,
    /// Churn that happened.
    pub churn: BTreeMap<&'static str, u64>,
    /// Signature verifications saved by the memo.
    pub verifier: MemoStats,
    /// The market (with a `[market]` section only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub market: Option<crate::market::MarketSummary>,
}

/// What the summary needs besides the metrics.
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// The scenario's name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// Initial nodes.
    pub nodes: u32,
    /// All node slots.
    pub node_slots: u32,
    /// When the run ended.
    pub end: SimTime,
    /// Offers published within this of the end do not count for coverage.
    pub settle: SimDuration,
    /// Events processed.
    pub events: u64,
    /// The trace hash.
    pub trace_hash: String,
    /// gossipsub's `D_lo`.
    pub d_lo: usize,
    /// Verifier statistics.
    pub verifier: MemoStats,
}

impl Metrics {
    /// Condenses the run into the `metrics.json` figures.
    pub fn summary(&self, facts: RunFacts) -> Summary {
        let cutoff = SimTime::from_micros(
            facts
                .end
                .as_micros()
                .saturating_sub(facts.settle.as_micros()),
        );
        let settled: Vec<f64> = self
            .messages
            .iter()
            .filter(|m| m.published_at <= cutoff)
            .map(|m| m.coverage())
            .collect();
        let gossip_deliveries: u64 = self.hops.iter().sum();
        let hop_sum: u64 = self
            .hops
            .iter()
            .enumerate()
            .map(|(h, n)| h as u64 * n)
            .sum();
        let propagation = Propagation {
            messages: self.messages.len(),
            withdrawals: self.messages.iter().filter(|m| m.withdrawal).count(),
            settled_messages: settled.len(),
            deliveries: self.deliveries(),
            p50_ms: self.latency_quantile_ms(0.5),
            p90_ms: self.latency_quantile_ms(0.9),
            p99_ms: self.latency_quantile_ms(0.99),
            max_ms: self.latency_quantile_ms(1.0),
            coverage_mean: if settled.is_empty() {
                1.0
            } else {
                settled.iter().sum::<f64>() / settled.len() as f64
            },
            coverage_min: settled.iter().copied().fold(1.0, f64::min),
            full_coverage_fraction: if settled.is_empty() {
                1.0
            } else {
                settled.iter().filter(|c| **c >= 1.0).count() as f64 / settled.len() as f64
            },
            mean_hops: if gossip_deliveries == 0 {
                0.0
            } else {
                hop_sum as f64 / gossip_deliveries as f64
            },
            max_hops: self.hops.len().saturating_sub(1),
            sync_deliveries: self.sync_deliveries,
        };
        let duplicates: u64 = self.per_node.iter().map(|c| c.duplicates).sum();
        let spread = |f: fn(&super::NodeCounters) -> u64| {
            Spread::of(self.per_node.iter().map(|c| f(c) as f64).collect())
        };
        let traffic = Traffic {
            frames: FRAME_KINDS
                .iter()
                .zip(self.frames.iter().zip(self.frame_bytes.iter()))
                .map(|(kind, (&count, &bytes))| (*kind, FrameCount { count, bytes }))
                .collect(),
            frames_sent_per_node: spread(|c| c.sent_frames),
            bytes_sent_per_node: spread(|c| c.sent_bytes),
            bytes_received_per_node: spread(|c| c.recv_bytes),
            lost: self.lost,
            blocked: self.blocked,
            undeliverable: self.undeliverable,
            duplicates,
            duplicates_per_delivery: if self.deliveries() == 0 {
                0.0
            } else {
                duplicates as f64 / self.deliveries() as f64
            },
        };
        let last = self.samples.last();
        let degrees = last.map(|s| s.mesh_degrees.clone()).unwrap_or_default();
        let pairs: u64 = degrees.iter().sum();
        let fraction = |pred: &dyn Fn(usize) -> bool| {
            if pairs == 0 {
                0.0
            } else {
                degrees
                    .iter()
                    .enumerate()
                    .filter(|(d, _)| pred(*d))
                    .map(|(_, n)| *n)
                    .sum::<u64>() as f64
                    / pairs as f64
            }
        };
        let mesh = Mesh {
            degree: Spread::of(
                degrees
                    .iter()
                    .enumerate()
                    .flat_map(|(d, n)| std::iter::repeat_n(d as f64, *n as usize))
                    .collect(),
            ),
            below_d_lo: fraction(&|d| d < facts.d_lo),
            empty: fraction(&|d| d == 0),
        };
        Summary {
            scenario: facts.scenario,
            seed: facts.seed,
            nodes: facts.nodes,
            node_slots: facts.node_slots,
            duration_s: facts.end.as_micros() as f64 / 1e6,
            events: facts.events,
            trace_hash: facts.trace_hash,
            propagation,
            traffic,
            mesh,
            book_completeness: last.map_or(0.0, |s| s.completeness),
            verdicts: self.verdicts.clone(),
            sync_verdicts: self.sync_verdicts.clone(),
            churn: self.churn.clone(),
            verifier: facts.verifier,
            market: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_pick_order_statistics() {
        let s = Spread::of((1..=100).map(f64::from).collect());
        assert_eq!((s.min, s.p50, s.p99, s.max), (1.0, 50.0, 99.0, 100.0));
        assert!((s.mean - 50.5).abs() < 1e-9);
        assert_eq!(Spread::of(vec![]), Spread::default());
    }
}

//! What a run measures: propagation of offers, traffic per node and per frame kind,
//! duplicates, mesh health and offer-book completeness over time.
//!
//! Only machines that exist in `agora-protocol` are measured: the offer book (deliveries,
//! completeness, verdicts), gossip decoding and the provider rate limit. [`Metrics`]
//! collects during the run; [`summary`] condenses it into the `metrics.json` figures;
//! [`output`] writes the files.

pub mod output;
pub mod summary;

use std::collections::BTreeMap;

use crate::gossip::{FRAME_KINDS, MsgIdx};
use crate::time::SimTime;

pub use summary::Summary;

/// Which nodes a message was meant for (eligible) and which books accepted it, as bit
/// sets interleaved word by word, so that recording a delivery reads one cache line.
#[derive(Debug, Clone, Default)]
struct Reach(Vec<[u64; 2]>);

impl Reach {
    /// Nobody, for `slots` nodes.
    fn new(slots: usize) -> Self {
        Reach(vec![[0; 2]; slots.div_ceil(64)])
    }

    /// Marks `node` eligible; returns whether it was not yet.
    fn add_eligible(&mut self, node: u32) -> bool {
        let bit = 1 << (node % 64);
        match self.0.get_mut((node / 64) as usize) {
            Some([eligible, _]) if *eligible & bit == 0 => {
                *eligible |= bit;
                true
            }
            _ => false,
        }
    }

    /// Marks `node` reached; returns whether it is eligible and was not reached before.
    fn reach(&mut self, node: u32) -> bool {
        let bit = 1 << (node % 64);
        match self.0.get_mut((node / 64) as usize) {
            Some([eligible, reached]) if *reached & bit == 0 => {
                *reached |= bit;
                *eligible & bit != 0
            }
            _ => false,
        }
    }
}

/// Traffic counters of one node.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeCounters {
    /// Frames sent.
    pub sent_frames: u64,
    /// Bytes sent.
    pub sent_bytes: u64,
    /// Frames received.
    pub recv_frames: u64,
    /// Bytes received.
    pub recv_bytes: u64,
    /// Full messages received that the seen cache already held.
    pub duplicates: u64,
}

impl NodeCounters {
    /// A frame of `bytes` left the node.
    pub fn record_sent(&mut self, bytes: usize) {
        self.sent_frames += 1;
        self.sent_bytes += bytes as u64;
    }

    /// A frame of `bytes` reached the node.
    pub fn record_received(&mut self, bytes: usize) {
        self.recv_frames += 1;
        self.recv_bytes += bytes as u64;
    }
}

/// One delivery of a message into a node's book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The node.
    pub node: u32,
    /// When its book accepted the offer.
    pub at: SimTime,
    /// Relays from the origin; `None` when it came by offer sync.
    pub hops: Option<u16>,
}

/// What is known about one published message.
#[derive(Debug, Clone)]
pub struct MessageStats {
    /// When the origin published it.
    pub published_at: SimTime,
    /// Its topic.
    pub topic: u16,
    /// The publishing node.
    pub origin: u32,
    /// Whether it is a withdrawal rather than an offer.
    pub withdrawal: bool,
    /// Nodes up and subscribed when it was published (origin excluded), and those whose
    /// book accepted it.
    reach: Reach,
    /// How many nodes were eligible.
    pub eligible_count: u32,
    /// How many eligible nodes' books accepted it.
    pub delivered_count: u32,
    /// Every delivery, when the run records them (tests).
    pub deliveries: Vec<Delivery>,
}

impl MessageStats {
    /// The fraction of eligible nodes reached (1 when none were eligible).
    pub fn coverage(&self) -> f64 {
        if self.eligible_count == 0 {
            1.0
        } else {
            f64::from(self.delivered_count) / f64::from(self.eligible_count)
        }
    }
}

/// One sample of the time series.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// When.
    pub at: SimTime,
    /// Nodes up.
    pub live: u32,
    /// Frames sent since the previous sample.
    pub frames: u64,
    /// Bytes sent since the previous sample.
    pub bytes: u64,
    /// Duplicates since the previous sample.
    pub duplicates: u64,
    /// Book deliveries since the previous sample.
    pub deliveries: u64,
    /// Mean over up nodes of the fraction of the current offers on their topics that their
    /// book holds.
    pub completeness: f64,
    /// Mean offers per book.
    pub book_mean: f64,
    /// Mesh degree counts over (up node, subscribed topic): `mesh_degrees[k]` pairs
    /// have degree `k`.
    pub mesh_degrees: Vec<u64>,
}

/// Latencies are histogrammed in 0.1 ms buckets up to 60 s, in 1 s buckets beyond.
const FINE_BUCKET_MICROS: u64 = 100;
const FINE_LIMIT_MICROS: u64 = 60_000_000;
const COARSE_BUCKET_MICROS: u64 = 1_000_000;

fn latency_bucket(micros: u64) -> usize {
    if micros < FINE_LIMIT_MICROS {
        (micros / FINE_BUCKET_MICROS) as usize
    } else {
        ((FINE_LIMIT_MICROS / FINE_BUCKET_MICROS)
            + (micros - FINE_LIMIT_MICROS) / COARSE_BUCKET_MICROS) as usize
    }
}

/// The lower bound of a latency bucket, in ms.
fn bucket_ms(bucket: usize) -> f64 {
    let fine = (FINE_LIMIT_MICROS / FINE_BUCKET_MICROS) as usize;
    let micros = if bucket < fine {
        bucket as u64 * FINE_BUCKET_MICROS
    } else {
        FINE_LIMIT_MICROS + (bucket - fine) as u64 * COARSE_BUCKET_MICROS
    };
    micros as f64 / 1_000.0
}

/// Everything a run counts.
#[derive(Debug, Clone)]
pub struct Metrics {
    slots: usize,
    record_deliveries: bool,
    /// Counters per node, as of the last [`Metrics::set_per_node`]: the simulated nodes
    /// keep the live counters next to their own state, where every frame touches them.
    pub per_node: Vec<NodeCounters>,
    /// Duplicates over all nodes.
    duplicates_total: u64,
    /// Frames sent per kind (see [`FRAME_KINDS`]).
    pub frames: [u64; FRAME_KINDS.len()],
    /// Bytes sent per kind.
    pub frame_bytes: [u64; FRAME_KINDS.len()],
    /// Frames lost on links.
    pub lost: u64,
    /// Frames blocked by a partition.
    pub blocked: u64,
    /// Frames that arrived at a down node or over a closed connection.
    pub undeliverable: u64,
    /// Validation verdicts on gossip, by label.
    pub verdicts: BTreeMap<&'static str, u64>,
    /// Verdicts on synced offers, by label.
    pub sync_verdicts: BTreeMap<&'static str, u64>,
    /// Published messages.
    pub messages: Vec<MessageStats>,
    latency: Vec<u64>,
    /// Gossip deliveries by hop count.
    pub hops: Vec<u64>,
    /// Deliveries that came by offer sync.
    pub sync_deliveries: u64,
    /// Time series.
    pub samples: Vec<Sample>,
    totals_at_last_sample: (u64, u64, u64, u64),
    deliveries_total: u64,
    /// Crashes, restarts and joins that happened.
    pub churn: BTreeMap<&'static str, u64>,
}

impl Metrics {
    /// Empty metrics for `slots` nodes; `record_deliveries` keeps every delivery.
    pub fn new(slots: usize, record_deliveries: bool) -> Self {
        Metrics {
            slots,
            record_deliveries,
            per_node: vec![NodeCounters::default(); slots],
            duplicates_total: 0,
            frames: [0; FRAME_KINDS.len()],
            frame_bytes: [0; FRAME_KINDS.len()],
            lost: 0,
            blocked: 0,
            undeliverable: 0,
            verdicts: BTreeMap::new(),
            sync_verdicts: BTreeMap::new(),
            messages: Vec::new(),
            latency: Vec::new(),
            hops: Vec::new(),
            sync_deliveries: 0,
            samples: Vec::new(),
            totals_at_last_sample: (0, 0, 0, 0),
            deliveries_total: 0,
            churn: BTreeMap::new(),
        }
    }

    /// A frame of `kind` and `bytes` was sent (the sender counts it in its own
    /// [`NodeCounters`]).
    pub fn sent(&mut self, kind: usize, bytes: usize) {
        if let (Some(f), Some(b)) = (self.frames.get_mut(kind), self.frame_bytes.get_mut(kind)) {
            *f += 1;
            *b += bytes as u64;
        }
    }

    /// A node received a message its seen cache already held (counted in its own
    /// [`NodeCounters`] too).
    pub fn duplicate(&mut self) {
        self.duplicates_total += 1;
    }

    /// Replaces the per-node counters with the nodes' current ones.
    pub fn set_per_node(&mut self, counters: impl Iterator<Item = NodeCounters>) {
        self.per_node.clear();
        self.per_node.extend(counters);
    }

    /// A gossip validation verdict.
    pub fn verdict(&mut self, label: &'static str) {
        *self.verdicts.entry(label).or_default() += 1;
    }

    /// A verdict on a synced offer.
    pub fn sync_verdict(&mut self, label: &'static str) {
        *self.sync_verdicts.entry(label).or_default() += 1;
    }

    /// A churn event.
    pub fn churned(&mut self, what: &'static str) {
        *self.churn.entry(what).or_default() += 1;
    }

    /// A message (an offer, or a withdrawal) was published; `eligible` are the nodes
    /// expected to receive it.
    pub fn published(
        &mut self,
        msg: MsgIdx,
        at: SimTime,
        topic: u16,
        origin: u32,
        withdrawal: bool,
        eligible: impl Iterator<Item = u32>,
    ) {
        let mut reach = Reach::new(self.slots);
        let mut count = 0;
        for node in eligible.filter(|&n| n != origin) {
            if reach.add_eligible(node) {
                count += 1;
            }
        }
        debug_assert_eq!(self.messages.len(), msg as usize);
        self.messages.push(MessageStats {
            published_at: at,
            topic,
            origin,
            withdrawal,
            reach,
            eligible_count: count,
            delivered_count: 0,
            deliveries: Vec::new(),
        });
    }

    /// `node`'s book accepted `msg` at `at`, after `hops` relays (`None`: by sync).
    pub fn delivered(&mut self, msg: MsgIdx, node: u32, at: SimTime, hops: Option<u16>) {
        let record = self.record_deliveries;
        let Some(stats) = self.messages.get_mut(msg as usize) else {
            return;
        };
        if !stats.reach.reach(node) {
            return;
        }
        stats.delivered_count += 1;
        if record {
            stats.deliveries.push(Delivery { node, at, hops });
        }
        let bucket = latency_bucket(at.saturating_since(stats.published_at).as_micros());
        if self.latency.len() <= bucket {
            self.latency.resize(bucket + 1, 0);
        }
        if let Some(b) = self.latency.get_mut(bucket) {
            *b += 1;
        }
        match hops {
            Some(h) => {
                let h = usize::from(h);
                if self.hops.len() <= h {
                    self.hops.resize(h + 1, 0);
                }
                if let Some(b) = self.hops.get_mut(h) {
                    *b += 1;
                }
            }
            None => self.sync_deliveries += 1,
        }
        self.deliveries_total += 1;
    }

    /// Records a sample; traffic figures are the change since the previous one.
    pub fn sample(&mut self, mut sample: Sample) {
        let frames: u64 = self.frames.iter().sum();
        let bytes: u64 = self.frame_bytes.iter().sum();
        let dups = self.duplicates_total;
        let (f0, b0, d0, del0) = self.totals_at_last_sample;
        sample.frames = frames - f0;
        sample.bytes = bytes - b0;
        sample.duplicates = dups - d0;
        sample.deliveries = self.deliveries_total - del0;
        self.totals_at_last_sample = (frames, bytes, dups, self.deliveries_total);
        self.samples.push(sample);
    }

    /// The delivery latency below which `fraction` of deliveries fall, in ms (0.1 ms
    /// resolution up to 60 s, 1 s beyond).
    pub fn latency_quantile_ms(&self, fraction: f64) -> Option<f64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let target = ((fraction * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (bucket, count) in self.latency.iter().enumerate() {
            seen += count;
            if seen >= target {
                return Some(bucket_ms(bucket));
            }
        }
        None
    }

    /// Deliveries into books (eligible nodes only).
    pub fn deliveries(&self) -> u64 {
        self.deliveries_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_count_once_and_only_for_eligible_nodes() {
        let mut m = Metrics::new(10, true);
        m.published(0, SimTime::ZERO, 0, 0, false, [0, 1, 2, 3].into_iter());
        assert_eq!(m.messages[0].eligible_count, 3);
        m.delivered(0, 1, SimTime::from_micros(5_000), Some(1));
        m.delivered(0, 1, SimTime::from_micros(9_000), Some(2));
        m.delivered(0, 7, SimTime::from_micros(9_000), Some(2));
        m.delivered(0, 2, SimTime::from_micros(20_000), None);
        assert_eq!(m.messages[0].delivered_count, 2);
        assert_eq!(m.deliveries(), 2);
        assert_eq!(m.hops, vec![0, 1]);
        assert_eq!(m.sync_deliveries, 1);
        assert_eq!(m.latency_quantile_ms(0.5), Some(5.0));
        assert_eq!(m.latency_quantile_ms(1.0), Some(20.0));
        assert_eq!(bucket_ms(latency_bucket(123_456)), 123.4);
        assert_eq!(bucket_ms(latency_bucket(90_500_000)), 90_000.0);
        assert!((m.messages[0].coverage() - 2.0 / 3.0).abs() < 1e-9);
    }
}

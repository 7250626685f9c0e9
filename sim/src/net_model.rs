//! The network model: who is in which region, how long a frame takes, what is lost, and
//! which pairs an active partition separates.
//!
//! A frame of `b` bytes from `a` to `c` is serialized on `a`'s uplink at the bandwidth of
//! the `(region(a), region(c))` link (frames queue behind earlier ones from the same
//! sender), is lost with the link's loss probability, and otherwise arrives one latency
//! draw after its last bit left. Frames between nodes that an active partition separates
//! are blocked. Everything random comes from the run's RNG passed in.

use rand_core::Rng;

use crate::rng;
use crate::scenario::{Latency, Link, Scenario};
use crate::time::{SimDuration, SimTime};

/// What happened to a frame handed to the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transit {
    /// It arrives at this instant.
    Arrives(SimTime),
    /// It was lost on the link.
    Lost,
    /// A partition separates the two nodes.
    Blocked,
}

/// Latency, bandwidth and loss of one directed region pair, ready to sample.
#[derive(Debug, Clone, Copy)]
struct LinkParams {
    latency: Latency,
    /// Mbit/s, i.e. bits per microsecond.
    bits_per_micro: f64,
    loss: f64,
}

impl From<Link> for LinkParams {
    fn from(link: Link) -> Self {
        LinkParams {
            latency: link.latency,
            bits_per_micro: link.bandwidth_mbps.0,
            loss: link.loss.0,
        }
    }
}

/// Regions, links, partitions and per-node uplinks.
#[derive(Debug, Clone)]
pub struct NetModel {
    region_count: usize,
    node_region: Vec<u16>,
    /// The nodes of each region, ascending.
    region_nodes: Vec<Vec<u32>>,
    /// `region_count × region_count`, row-major by sender region.
    links: Vec<LinkParams>,
    /// Active partitions: `(scenario index, side of each node)`.
    partitions: Vec<(usize, Vec<u8>)>,
    uplink_free: Vec<SimTime>,
}

/// Splits `count` nodes over `shares` by largest remainder, in listed order.
fn apportion(count: u32, shares: &[f64]) -> Vec<u32> {
    let total: f64 = shares.iter().sum();
    let exact: Vec<f64> = shares
        .iter()
        .map(|s| f64::from(count) * s / total)
        .collect();
    let mut counts: Vec<u32> = exact.iter().map(|e| e.floor() as u32).collect();
    let assigned: u32 = counts.iter().sum();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    // Largest fractional part first; ties to the earlier region.
    order.sort_by(|&a, &b| {
        let frac = |i: usize| exact.get(i).map_or(0.0, |e| e - e.floor());
        frac(b).total_cmp(&frac(a)).then(a.cmp(&b))
    });
    for &i in order
        .iter()
        .cycle()
        .take(count.saturating_sub(assigned) as usize)
    {
        if let Some(c) = counts.get_mut(i) {
            *c += 1;
        }
    }
    counts
}

impl NetModel {
    /// The model for `scenario`: initial nodes are numbered region by region in the order
    /// the regions are listed, then joining nodes likewise.
    pub fn new(scenario: &Scenario) -> Self {
        let shares: Vec<f64> = scenario.nodes.regions.iter().map(|r| r.share.0).collect();
        let mut node_region = Vec::with_capacity(scenario.node_slots() as usize);
        for count in [scenario.nodes.count, scenario.churn.joins] {
            for (region, n) in apportion(count, &shares).into_iter().enumerate() {
                node_region.extend(std::iter::repeat_n(region as u16, n as usize));
            }
        }
        let region_count = shares.len();
        let mut links =
            vec![LinkParams::from(scenario.network.default); region_count * region_count];
        for link in &scenario.network.links {
            let [a, b] = &link.regions;
            let (Some(a), Some(b)) = (
                scenario.region_index(a.get_ref()),
                scenario.region_index(b.get_ref()),
            ) else {
                continue;
            };
            for (from, to) in [(a, b), (b, a)] {
                if let Some(params) = links.get_mut(from * region_count + to) {
                    if let Some(latency) = link.latency {
                        params.latency = latency;
                    }
                    if let Some(bandwidth) = link.bandwidth_mbps {
                        params.bits_per_micro = bandwidth.0;
                    }
                    if let Some(loss) = link.loss {
                        params.loss = loss.0;
                    }
                }
            }
        }
        let slots = node_region.len();
        let mut region_nodes = vec![Vec::new(); region_count];
        for (node, &region) in node_region.iter().enumerate() {
            if let Some(list) = region_nodes.get_mut(usize::from(region)) {
                list.push(node as u32);
            }
        }
        NetModel {
            region_count,
            node_region,
            region_nodes,
            links,
            partitions: Vec::new(),
            uplink_free: vec![SimTime::ZERO; slots],
        }
    }

    /// The number of regions.
    pub fn region_count(&self) -> usize {
        self.region_count
    }

    /// The region index of `node`.
    pub fn region_of(&self, node: u32) -> u16 {
        self.node_region.get(node as usize).copied().unwrap_or(0)
    }

    /// The nodes of `region`, ascending (initial nodes, then joining ones).
    pub fn nodes_in(&self, region: u16) -> &[u32] {
        self.region_nodes
            .get(usize::from(region))
            .map_or(&[], Vec::as_slice)
    }

    fn link(&self, from: u32, to: u32) -> Option<&LinkParams> {
        let (a, b) = (self.region_of(from) as usize, self.region_of(to) as usize);
        self.links.get(a * self.region_count + b)
    }

    /// Whether an active partition separates `a` and `b`.
    pub fn blocked(&self, a: u32, b: u32) -> bool {
        self.partitions
            .iter()
            .any(|(_, side)| side.get(a as usize) != side.get(b as usize))
    }

    /// Starts partition `index`: `side[node]` says which side each node is on.
    pub fn start_partition(&mut self, index: usize, side: Vec<u8>) {
        self.partitions.retain(|(i, _)| *i != index);
        self.partitions.push((index, side));
    }

    /// Heals partition `index`; returns whether it was active.
    pub fn heal_partition(&mut self, index: usize) -> bool {
        let before = self.partitions.len();
        self.partitions.retain(|(i, _)| *i != index);
        self.partitions.len() != before
    }

    /// Whether partition `index` is active.
    pub fn partition_active(&self, index: usize) -> bool {
        self.partitions.iter().any(|(i, _)| *i == index)
    }

    /// Sends a frame of `bytes` from `from` to `to` at `now`.
    pub fn send(
        &mut self,
        rng: &mut impl Rng,
        now: SimTime,
        from: u32,
        to: u32,
        bytes: usize,
    ) -> Transit {
        if self.blocked(from, to) {
            return Transit::Blocked;
        }
        let Some(link) = self.link(from, to).copied() else {
            return Transit::Lost;
        };
        let wire_micros = (bytes as f64 * 8.0 / link.bits_per_micro).ceil() as u64;
        let uplink = self.uplink_free.get_mut(from as usize);
        let start = uplink.as_deref().copied().unwrap_or(now).max(now);
        let sent = start.saturating_add(SimDuration::from_micros(wire_micros));
        if let Some(free) = uplink {
            *free = sent;
        }
        if rng::chance(rng, link.loss) {
            return Transit::Lost;
        }
        Transit::Arrives(sent.saturating_add(sample_latency(rng, &link.latency)))
    }
}

/// One latency draw, rounded to whole microseconds.
pub fn sample_latency(rng: &mut impl Rng, latency: &Latency) -> SimDuration {
    let ms = match *latency {
        Latency::Uniform { base_ms, jitter_ms } => base_ms + jitter_ms * rng::unit(rng),
        Latency::LogNormal {
            median_ms,
            sigma,
            min_ms,
        } => (median_ms * (sigma * rng::standard_normal(rng)).exp()).max(min_ms),
    };
    // Cap at an hour: a pathological sigma must not overflow the clock.
    SimDuration::from_micros((ms.clamp(0.0, 3.6e6) * 1_000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    fn scenario(extra: &str) -> Scenario {
        let src = format!(
            "duration = \"1m\"\n[nodes]\ncount = 10\nregions = [{{ name = \"a\", share = 3 }}, {{ name = \"b\", share = 1 }}]\n{extra}"
        );
        Scenario::from_toml(&src, "t.toml").unwrap()
    }

    #[test]
    fn nodes_are_apportioned_by_share_in_region_order() {
        assert_eq!(apportion(10, &[3.0, 1.0]), vec![8, 2]);
        assert_eq!(apportion(100, &[0.4, 0.4, 0.2]), vec![40, 40, 20]);
        assert_eq!(apportion(10, &[1.0, 1.0, 1.0]), vec![4, 3, 3]);
        let net = NetModel::new(&scenario(""));
        assert_eq!(net.region_of(0), 0);
        assert_eq!(net.region_of(7), 0);
        assert_eq!(net.region_of(8), 1);
        assert_eq!(net.nodes_in(1), &[8, 9]);
        assert!(net.nodes_in(7).is_empty());
    }

    #[test]
    fn delay_is_serialization_plus_latency_and_uplinks_queue() {
        let mut net = NetModel::new(&scenario(
            "[network.default]\nlatency = { base_ms = 10 }\nbandwidth_mbps = 8\n",
        ));
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        // 1000 bytes at 8 Mbit/s take 1 ms on the wire, then 10 ms of latency.
        assert_eq!(
            net.send(&mut rng, SimTime::ZERO, 0, 1, 1000),
            Transit::Arrives(SimTime::from_micros(11_000))
        );
        // The second frame waits for the first to leave the uplink.
        assert_eq!(
            net.send(&mut rng, SimTime::ZERO, 0, 2, 1000),
            Transit::Arrives(SimTime::from_micros(12_000))
        );
    }

    #[test]
    fn region_pair_overrides_apply_both_ways_and_partitions_block() {
        let mut net = NetModel::new(&scenario(
            "[network.default]\nlatency = { base_ms = 10 }\nbandwidth_mbps = 1000\n\
             [[network.links]]\nregions = [\"a\", \"b\"]\nlatency = { base_ms = 100 }\nloss = 1.0\n",
        ));
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        assert_eq!(net.send(&mut rng, SimTime::ZERO, 0, 9, 100), Transit::Lost);
        assert_eq!(net.send(&mut rng, SimTime::ZERO, 9, 0, 100), Transit::Lost);
        assert!(matches!(
            net.send(&mut rng, SimTime::ZERO, 0, 1, 100),
            Transit::Arrives(_)
        ));
        let mut side = vec![0u8; 10];
        side[1] = 1;
        net.start_partition(0, side);
        assert!(net.blocked(0, 1) && !net.blocked(0, 2));
        assert_eq!(
            net.send(&mut rng, SimTime::ZERO, 0, 1, 100),
            Transit::Blocked
        );
        assert!(net.heal_partition(0));
        assert!(!net.partition_active(0));
        assert!(!net.blocked(0, 1));
    }

    proptest! {
        #[test]
        fn latency_draws_respect_their_floor(seed: u64, median in 1.0f64..500.0, sigma in 0.0f64..2.0, min in 0.0f64..100.0) {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let lat = Latency::LogNormal { median_ms: median, sigma, min_ms: min };
            for _ in 0..20 {
                prop_assert!(sample_latency(&mut rng, &lat).as_micros() as f64 >= (min * 1000.0).round() - 1.0);
            }
            let uni = Latency::Uniform { base_ms: min, jitter_ms: median };
            let d = sample_latency(&mut rng, &uni).as_micros() as f64;
            prop_assert!(d >= (min * 1000.0).round() - 1.0 && d <= ((min + median) * 1000.0).round() + 1.0);
        }
    }
}

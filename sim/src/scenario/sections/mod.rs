//! The sections of a scenario file, each checked on its own while it is deserialized.
//!
//! Sections whose fields constrain each other (a gossip `d_lo` above `d`, a heal before its
//! partition) deserialize through a raw twin and `try_from`, so the error points at the
//! section's line. Defaults follow the node's own settings where the node has one.

use serde::Deserialize;
use toml::Spanned;

use super::values::{NonNegative, Positive, Probability, Span};

mod gossip;
mod market;
mod network;

pub use gossip::{Gossip, Subscribe};
pub use market::{Adversary, Attack, Byzantine, Committee, Lie, Market, Providers, Reputation};
pub use network::{Latency, Link, Network, RegionLink};

/// How many nodes start, in which regions.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawNodes")]
pub struct Nodes {
    /// Nodes up at time zero (at least 1).
    pub count: u32,
    /// Connections each node dials when it starts (to distinct random nodes); links are
    /// two-way, so the mean degree is about twice this.
    pub outbound: u32,
    /// Regions and their shares of the nodes.
    pub regions: Vec<Region>,
    /// Probability that a dial goes to a random node of the dialler's own region rather
    /// than to any random node (nodes preferring nearby peers).
    pub region_affinity: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNodes {
    count: u32,
    #[serde(default = "default_outbound")]
    outbound: u32,
    #[serde(default)]
    region_affinity: Probability,
    #[serde(default = "default_regions")]
    regions: Vec<Region>,
}

fn default_outbound() -> u32 {
    8
}

fn default_regions() -> Vec<Region> {
    vec![Region {
        name: Spanned::new(0..0, "global".to_owned()),
        share: Positive(1.0),
    }]
}

impl TryFrom<RawNodes> for Nodes {
    type Error = String;
    fn try_from(raw: RawNodes) -> Result<Self, String> {
        if raw.count == 0 {
            return Err("nodes.count must be at least 1".into());
        }
        if raw.regions.is_empty() {
            return Err("nodes.regions needs at least one region".into());
        }
        let max = agora_protocol::gossip::MAX_REGION_TOPICS;
        if raw.regions.len() > max {
            return Err(format!(
                "nodes.regions lists {} regions, more than the {max} region topics a node may follow",
                raw.regions.len()
            ));
        }
        Ok(Nodes {
            count: raw.count,
            outbound: raw.outbound,
            regions: raw.regions,
            region_affinity: raw.region_affinity.0,
        })
    }
}

/// A region and its share of the nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// The region token offers carry (`a-z`, `0-9`, `-`, `_`, `.`, at most 32 bytes).
    pub name: Spanned<String>,
    /// Relative weight: nodes are split in proportion to the shares.
    pub share: Positive,
}

/// A partition: from `at` until `heal`, nodes on different sides cannot reach each other.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawPartition")]
pub struct Partition {
    /// When it starts.
    pub at: Span,
    /// When it heals (never, if absent).
    pub heal: Option<Span>,
    /// The sides; nodes on no listed side form one more side together.
    pub sides: Vec<Side>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartition {
    at: Span,
    heal: Option<Span>,
    sides: Vec<Side>,
}

impl TryFrom<RawPartition> for Partition {
    type Error = String;
    fn try_from(raw: RawPartition) -> Result<Self, String> {
        if raw.sides.is_empty() {
            return Err("a partition needs at least one side".into());
        }
        if let Some(heal) = raw.heal
            && heal <= raw.at
        {
            return Err(format!(
                "heal ({heal}) must come after the partition starts ({})",
                raw.at
            ));
        }
        Ok(Partition {
            at: raw.at,
            heal: raw.heal,
            sides: raw.sides,
        })
    }
}

/// One side of a partition: the nodes of these regions and these index ranges.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Side {
    /// Every node of these regions.
    #[serde(default)]
    pub regions: Vec<Spanned<String>>,
    /// Nodes with these indices.
    #[serde(default)]
    pub nodes: Vec<Spanned<NodeRange>>,
}

/// Node indices `start..end` (end exclusive), written `[start, end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "[u32; 2]")]
pub struct NodeRange {
    /// The first index.
    pub start: u32,
    /// One past the last index.
    pub end: u32,
}

impl TryFrom<[u32; 2]> for NodeRange {
    type Error = String;
    fn try_from([start, end]: [u32; 2]) -> Result<Self, String> {
        if start >= end {
            return Err(format!(
                "node range [{start}, {end}] is empty: the end is exclusive and must exceed the start"
            ));
        }
        Ok(NodeRange { start, end })
    }
}

impl NodeRange {
    /// Whether `index` lies in the range.
    pub fn contains(&self, index: u32) -> bool {
        (self.start..self.end).contains(&index)
    }
}

/// Crashes, restarts and joins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Churn {
    /// Crashes per node per hour of simulated time (a Poisson process per node).
    pub crash_per_node_hour: NonNegative,
    /// Mean time a crashed node stays down (exponential) before it restarts.
    pub mean_downtime: Span,
    /// Whether crashed nodes restart at all.
    pub restart: bool,
    /// Extra nodes (indices `nodes.count..`) that join during the run.
    pub joins: u32,
    /// Joins happen at uniform times within `[from, until]` (default: the whole run).
    pub join_window: Option<[Span; 2]>,
    /// Of the random departures, the fraction that are graceful leaves rather than
    /// crashes (see [`ChurnAction::Leave`]).
    pub leave_share: Probability,
    /// How long a leaving node stays up after withdrawing its offer, to flush its
    /// gossip, before it closes its connections (the node's shutdown order).
    pub leave_grace: Span,
    /// Scripted crashes, leaves and restarts.
    pub schedule: Vec<ChurnEvent>,
}

impl Default for Churn {
    fn default() -> Self {
        Churn {
            crash_per_node_hour: NonNegative(0.0),
            mean_downtime: Span::secs(60),
            restart: true,
            joins: 0,
            join_window: None,
            leave_share: Probability(0.0),
            leave_grace: Span::secs(2),
            schedule: Vec::new(),
        }
    }
}

/// A scripted churn event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChurnEvent {
    /// When.
    pub at: Span,
    /// What happens.
    pub action: ChurnAction,
    /// To which nodes.
    pub nodes: Spanned<NodeRange>,
}

/// What a scripted churn event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChurnAction {
    /// The nodes crash (in-memory state lost, connections reset).
    Crash,
    /// The nodes stop gracefully: a provider first gossips a signed withdrawal of its
    /// offer (when `workload.withdraw_on_leave`), then, after `churn.leave_grace`, the node
    /// goes down as in a crash.
    Leave,
    /// Down nodes restart, redial their old peers and re-sync; joins nodes not yet joined.
    Restart,
}

/// Who publishes offers, and how often.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawWorkload")]
pub struct Workload {
    /// Nodes that are providers (chosen at random among the initial nodes).
    pub providers: Spanned<u32>,
    /// Each provider signs and publishes a fresh offer this often.
    pub readvertise: Span,
    /// Each offer's validity (`expires_at - issued_at`, at most 15 min).
    pub offer_ttl: Span,
    /// First offers go out at uniform times within `[start, start + readvertise)`.
    pub start: Span,
    /// Whether a provider that leaves gracefully gossips an `OfferWithdrawal` first (as
    /// the node does when it stops); without it, books keep its offer until it expires.
    pub withdraw_on_leave: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    #[serde(default = "default_providers")]
    providers: Spanned<u32>,
    #[serde(default = "default_readvertise")]
    readvertise: Span,
    #[serde(default = "default_offer_ttl")]
    offer_ttl: Span,
    #[serde(default = "default_start")]
    start: Span,
    #[serde(default = "default_withdraw_on_leave")]
    withdraw_on_leave: bool,
}

fn default_providers() -> Spanned<u32> {
    Spanned::new(0..0, 0)
}
fn default_readvertise() -> Span {
    Span::secs(60)
}
fn default_offer_ttl() -> Span {
    Span::secs(300)
}
fn default_start() -> Span {
    Span::secs(1)
}
fn default_withdraw_on_leave() -> bool {
    true
}

impl TryFrom<RawWorkload> for Workload {
    type Error = String;
    fn try_from(raw: RawWorkload) -> Result<Self, String> {
        if raw.readvertise.as_micros() == 0 {
            return Err("workload.readvertise must be longer than zero".into());
        }
        let max_ttl = Span::secs(agora_protocol::offer::MAX_OFFER_TTL.as_secs());
        if raw.offer_ttl.as_micros() < 1_000 || raw.offer_ttl > max_ttl {
            return Err(format!(
                "workload.offer_ttl must be from 1ms to {max_ttl} (the protocol's limit), got {}",
                raw.offer_ttl
            ));
        }
        Ok(Workload {
            providers: raw.providers,
            readvertise: raw.readvertise,
            offer_ttl: raw.offer_ttl,
            start: raw.start,
            withdraw_on_leave: raw.withdraw_on_leave,
        })
    }
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            providers: default_providers(),
            readvertise: default_readvertise(),
            offer_ttl: default_offer_ttl(),
            start: default_start(),
            withdraw_on_leave: default_withdraw_on_leave(),
        }
    }
}

/// What the metrics sample, and when.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Time series (mesh health, traffic) are sampled this often.
    pub sample_every: Span,
    /// Offers published less than this before the end are left out of coverage figures
    /// (they may still be travelling).
    pub settle: Span,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            sample_every: Span::secs(10),
            settle: Span::secs(30),
        }
    }
}

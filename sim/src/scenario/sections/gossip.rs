//! `[gossip]`: gossipsub v1.1 parameters, checked against each other.

use serde::Deserialize;

use super::super::values::{Probability, Span};

/// Which region topics a node subscribes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subscribe {
    /// Every region's topic (the node's default, `follow_regions = ["*"]`).
    #[default]
    All,
    /// Only the node's own region.
    Own,
}

/// gossipsub v1.1 parameters (names as in the spec; defaults as rust-libp2p's, heartbeat
/// and seen-cache time as the node sets them).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawGossip")]
pub struct Gossip {
    /// Target mesh degree `D`.
    pub d: u32,
    /// Below this, the heartbeat grafts peers up to `D`.
    pub d_lo: u32,
    /// Above this, the heartbeat prunes down to `D`.
    pub d_hi: u32,
    /// When pruning, the best-scoring `d_score` peers are kept.
    pub d_score: u32,
    /// Minimum number of non-mesh peers sent IHAVE per heartbeat and topic.
    pub d_lazy: u32,
    /// Fraction of eligible non-mesh peers sent IHAVE, if more than `d_lazy`.
    pub gossip_factor: f64,
    /// Heartbeat interval.
    pub heartbeat: Span,
    /// Heartbeats a message stays in the message cache (answerable by IWANT).
    pub history_length: u32,
    /// Heartbeats a message is advertised in IHAVE.
    pub history_gossip: u32,
    /// How long message ids stay in the seen cache (duplicate suppression).
    pub seen_ttl: Span,
    /// Backoff after a PRUNE before the pair may GRAFT again.
    pub prune_backoff: Span,
    /// Most message ids in one IHAVE.
    pub max_ihave_length: u32,
    /// Publish to every subscribed peer, not only the mesh (the node sets this).
    pub flood_publish: bool,
    /// Which region topics nodes subscribe to.
    pub subscribe: Subscribe,
    /// Anti-entropy: each node syncs its offer book with one random peer this often.
    pub sync_interval: Span,
    /// Time a node takes to validate a message before it forwards it and its book shows it
    /// (decode, verify, the swarm's round trip through the event loop).
    pub validation_delay: Span,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawGossip {
    d: u32,
    d_lo: u32,
    d_hi: u32,
    d_score: u32,
    d_lazy: u32,
    gossip_factor: Probability,
    heartbeat: Span,
    history_length: u32,
    history_gossip: u32,
    seen_ttl: Span,
    prune_backoff: Span,
    max_ihave_length: u32,
    flood_publish: bool,
    subscribe: Subscribe,
    sync_interval: Span,
    validation_delay: Span,
}

impl Default for RawGossip {
    fn default() -> Self {
        RawGossip {
            d: 6,
            d_lo: 5,
            d_hi: 12,
            d_score: 4,
            d_lazy: 6,
            gossip_factor: Probability(0.25),
            heartbeat: Span::millis(700),
            history_length: 5,
            history_gossip: 3,
            seen_ttl: Span::secs(120),
            prune_backoff: Span::secs(60),
            max_ihave_length: 5000,
            flood_publish: true,
            subscribe: Subscribe::All,
            sync_interval: Span::secs(30),
            validation_delay: Span::millis(0),
        }
    }
}

impl TryFrom<RawGossip> for Gossip {
    type Error = String;
    fn try_from(raw: RawGossip) -> Result<Self, String> {
        if !(raw.d_lo <= raw.d && raw.d <= raw.d_hi) {
            return Err(format!(
                "gossip needs d_lo <= d <= d_hi, got d_lo = {}, d = {}, d_hi = {}",
                raw.d_lo, raw.d, raw.d_hi
            ));
        }
        if raw.d == 0 {
            return Err("gossip.d must be at least 1".into());
        }
        if raw.d_score > raw.d {
            return Err(format!(
                "gossip.d_score ({}) cannot exceed d ({})",
                raw.d_score, raw.d
            ));
        }
        if raw.history_gossip == 0 || raw.history_gossip > raw.history_length {
            return Err(format!(
                "gossip needs 1 <= history_gossip <= history_length, got {} and {}",
                raw.history_gossip, raw.history_length
            ));
        }
        for (name, span) in [
            ("heartbeat", raw.heartbeat),
            ("sync_interval", raw.sync_interval),
        ] {
            if span.as_micros() == 0 {
                return Err(format!("gossip.{name} must be longer than zero"));
            }
        }
        Ok(Gossip {
            d: raw.d,
            d_lo: raw.d_lo,
            d_hi: raw.d_hi,
            d_score: raw.d_score,
            d_lazy: raw.d_lazy,
            gossip_factor: raw.gossip_factor.0,
            heartbeat: raw.heartbeat,
            history_length: raw.history_length,
            history_gossip: raw.history_gossip,
            seen_ttl: raw.seen_ttl,
            prune_backoff: raw.prune_backoff,
            max_ihave_length: raw.max_ihave_length,
            flood_publish: raw.flood_publish,
            subscribe: raw.subscribe,
            sync_interval: raw.sync_interval,
            validation_delay: raw.validation_delay,
        })
    }
}

impl Default for Gossip {
    fn default() -> Self {
        // The raw defaults satisfy every check; the fallback is unreachable but total.
        Gossip::try_from(RawGossip::default()).unwrap_or(Gossip {
            d: 6,
            d_lo: 5,
            d_hi: 12,
            d_score: 4,
            d_lazy: 6,
            gossip_factor: 0.25,
            heartbeat: Span::millis(700),
            history_length: 5,
            history_gossip: 3,
            seen_ttl: Span::secs(120),
            prune_backoff: Span::secs(60),
            max_ihave_length: 5000,
            flood_publish: true,
            subscribe: Subscribe::All,
            sync_interval: Span::secs(30),
            validation_delay: Span::millis(0),
        })
    }
}

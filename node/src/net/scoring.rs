//! Peer scoring: gossipsub's parameters for our traffic, and the application-specific part.
//!
//! Offers are rare (a provider speaks every few minutes), so gossipsub's mesh-delivery
//! penalties (P3, P3b), built for chatty topics, are off: they would punish honest peers for
//! a quiet market. What counts is P4, invalid messages: a peer that forwards one bad
//! signature falls below the gossip threshold, two put it on the graylist. IP colocation
//! (P6) is off because test networks and NATed providers share addresses legitimately;
//! identities are what we score.
//!
//! On top, [`Penalties`] keeps our own tally per peer (stale replays, rate-limit floods,
//! malformed sync pages) that gossipsub cannot see, decaying over time, and the event loop
//! feeds it to gossipsub as the application-specific score, plus the peer's reputation as
//! a provider ([`app_score`]: `Reputation::gossip_score` in [-1, 1] times
//! [`REPUTATION_WEIGHT`]), so well-trusted providers' gossip is preferred and providers
//! that take leases and never run them lose some standing, never enough on their own to be
//! graylisted.

use core::time::Duration;
use std::collections::HashMap;

use libp2p::PeerId;
use libp2p::gossipsub::{PeerScoreParams, PeerScoreThresholds, TopicScoreParams};

/// gossipsub's global score parameters.
pub fn peer_score_params() -> PeerScoreParams {
    PeerScoreParams {
        app_specific_weight: 1.0,
        ip_colocation_factor_weight: 0.0,
        decay_interval: Duration::from_secs(1),
        retain_score: Duration::from_secs(3600),
        ..PeerScoreParams::default()
    }
}

/// Score thresholds: gossip below -10, publish below -50, graylist below -80.
pub fn thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds::default()
}

/// Per-topic parameters for an offers topic.
pub fn offers_topic_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        // P1: a little credit for staying in the mesh.
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 300.0,
        // P2: credit for being first to deliver a valid message.
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 50.0,
        // P3, P3b off (see the module docs).
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // P4: squared count of invalid messages, decaying ~1% a second.
        invalid_message_deliveries_weight: -20.0,
        invalid_message_deliveries_decay: 0.99,
        ..TopicScoreParams::default()
    }
}

/// What reputation weighs in the application score: a reputation score in [-1, 1] moves it
/// by at most 10, far from the graylist threshold (-80) and below one invalid message's P4
/// penalty, so reputation alone never silences a peer.
pub const REPUTATION_WEIGHT: f64 = 10.0;

/// A peer's application score from its `penalty` score (≤ 0, [`Penalties::score`]) and its
/// `reputation` gossip score (clamped to [-1, 1]).
pub fn app_score(penalty: f64, reputation: f64) -> f64 {
    let reputation = if reputation.is_finite() {
        reputation.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    penalty + REPUTATION_WEIGHT * reputation
}

/// What a peer did that we hold against it, beyond gossipsub's own accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// Relayed an offer older than one we hold (a replay, or badly out of order).
    Stale,
    /// Relayed more of one provider's messages than the rate limit allows.
    RateLimited,
    /// Sent a message that failed decoding or verification.
    Invalid,
    /// Answered a sync request with bad offers or garbage.
    BadSync,
}

impl Offence {
    fn weight(self) -> f64 {
        match self {
            Self::Stale | Self::RateLimited => 2.0,
            Self::Invalid | Self::BadSync => 10.0,
        }
    }
}

/// Decaying penalty points per peer, bounded in the number of peers tracked.
#[derive(Debug, Default)]
pub struct Penalties {
    points: HashMap<PeerId, f64>,
}

impl Penalties {
    /// Most peers tracked; beyond it the smallest penalty is forgotten.
    const MAX_PEERS: usize = 4096;
    /// Multiplier per [`Penalties::decay`] call (every 10 s: half-life about a minute).
    const DECAY: f64 = 0.9;

    /// Records an offence; returns the peer's new application score (negative points).
    pub fn record(&mut self, peer: PeerId, offence: Offence) -> f64 {
        if !self.points.contains_key(&peer) && self.points.len() >= Self::MAX_PEERS {
            let smallest = self
                .points
                .iter()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map(|(p, _)| *p);
            if let Some(p) = smallest {
                self.points.remove(&p);
            }
        }
        let p = self.points.entry(peer).or_insert(0.0);
        *p += offence.weight();
        -*p
    }

    /// Decays every penalty; returns the peers whose score changed, with the new score.
    pub fn decay(&mut self) -> Vec<(PeerId, f64)> {
        self.points.retain(|_, p| {
            *p *= Self::DECAY;
            *p >= 0.1
        });
        self.points.iter().map(|(peer, p)| (*peer, -*p)).collect()
    }

    /// A peer's current application score (0 when clean).
    pub fn score(&self, peer: &PeerId) -> f64 {
        self.points.get(peer).map_or(0.0, |p| -*p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_accepted_by_gossipsub() {
        peer_score_params().validate().unwrap();
        thresholds().validate().unwrap();
        offers_topic_params().validate().unwrap();
    }

    #[test]
    fn reputation_weighs_within_bounds() {
        assert_eq!(app_score(0.0, 0.0), 0.0, "newcomers are neutral");
        assert_eq!(app_score(-12.0, 0.5), -7.0);
        assert_eq!(app_score(0.0, 7.0), REPUTATION_WEIGHT, "clamped");
        assert_eq!(app_score(0.0, -1.0), -REPUTATION_WEIGHT);
        assert_eq!(app_score(-2.0, f64::NAN), -2.0);
        assert!(app_score(0.0, -1.0) > thresholds().graylist_threshold);
    }

    #[test]
    fn penalties_accumulate_and_decay() {
        let mut p = Penalties::default();
        let peer = PeerId::random();
        assert_eq!(p.score(&peer), 0.0);
        assert_eq!(p.record(peer, Offence::Invalid), -10.0);
        assert_eq!(p.record(peer, Offence::Stale), -12.0);
        let after = p.decay();
        assert_eq!(after.len(), 1);
        assert!((after[0].1 + 10.8).abs() < 1e-9);
        for _ in 0..200 {
            p.decay();
        }
        assert_eq!(p.score(&peer), 0.0, "forgotten once negligible");
    }
}

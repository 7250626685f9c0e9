//! A simplified gossipsub v1.1 peer score, with the node's parameters.
//!
//! What is kept, per peer (the node's `net/scoring.rs` values):
//!
//! - P1, time in mesh: 0.01 per second in the mesh, capped at 300 s, summed over topics;
//! - P2, first message deliveries: +1 per message first delivered by the peer, capped at
//!   50, decaying by 0.9 a second;
//! - P4, invalid messages: −20 × (count)², the count decaying by 0.99 a second;
//! - P5, the application score: minus the node's own penalty points (stale 2, rate-limited
//!   2, invalid 10), decaying by 0.9 every 10 s.
//!
//! Simplified: P2 and P4 are counted per peer across topics (not per topic; every topic
//! has weight 1 in the node, so with one topic per peer this is the same); decay is applied
//! at each heartbeat with the factor scaled to the heartbeat; P3, P3b and P6 are off as in
//! the node, and P7 (broken IWANT promises) is not modelled.

use agora_protocol::market::Offence;

use crate::time::SimDuration;

/// The node's penalty points for an offence the market reports (its `net/scoring.rs`
/// weights: stale and rate-limited 2).
pub fn offence_points(offence: Offence) -> f64 {
    match offence {
        Offence::Stale | Offence::RateLimited => 2.0,
    }
}

/// Below this, a peer is neither sent nor asked about IHAVE.
pub const GOSSIP_THRESHOLD: f64 = -10.0;
/// Below this, a peer is not sent our own publications.
pub const PUBLISH_THRESHOLD: f64 = -50.0;
/// Below this, everything from the peer is ignored.
pub const GRAYLIST_THRESHOLD: f64 = -80.0;

const P1_WEIGHT_PER_SEC: f64 = 0.01;
const P1_CAP_SECS: f64 = 300.0;
const P2_CAP: f64 = 50.0;
const P4_WEIGHT: f64 = -20.0;

/// Per-heartbeat decay factors.
#[derive(Debug, Clone, Copy)]
pub struct Decay {
    p2: f64,
    p4: f64,
    app: f64,
}

impl Decay {
    /// The factors for one heartbeat of length `heartbeat`.
    pub fn per_heartbeat(heartbeat: SimDuration) -> Self {
        let secs = heartbeat.as_micros() as f64 / 1e6;
        Decay {
            p2: 0.9f64.powf(secs),
            p4: 0.99f64.powf(secs),
            app: 0.9f64.powf(secs / 10.0),
        }
    }
}

/// Counters behind one peer's score.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PeerScore {
    first_deliveries: f64,
    invalid: f64,
    penalty: f64,
}

impl PeerScore {
    /// The peer was first to deliver a valid message.
    pub fn first_delivery(&mut self) {
        self.first_deliveries = (self.first_deliveries + 1.0).min(P2_CAP);
    }

    /// The peer delivered an invalid message (bad signature, malformed, wrong topic).
    pub fn invalid_message(&mut self) {
        self.invalid += 1.0;
    }

    /// The node holds an offence of `points` against the peer (application score).
    pub fn penalise(&mut self, points: f64) {
        self.penalty += points;
    }

    /// One heartbeat's decay; tiny values drop to zero.
    pub fn decay(&mut self, decay: &Decay) {
        for (value, factor) in [
            (&mut self.first_deliveries, decay.p2),
            (&mut self.invalid, decay.p4),
            (&mut self.penalty, decay.app),
        ] {
            *value *= factor;
            if *value < 0.01 {
                *value = 0.0;
            }
        }
    }

    /// Whether nothing counts against the peer: its score is then at least zero whatever
    /// its time in mesh, so threshold checks need not compute it.
    pub fn is_clean(&self) -> bool {
        self.invalid == 0.0 && self.penalty == 0.0
    }

    /// The score, given the peer's total time in our meshes.
    pub fn value(&self, time_in_mesh: SimDuration) -> f64 {
        let mesh_secs = (time_in_mesh.as_micros() as f64 / 1e6).min(P1_CAP_SECS);
        P1_WEIGHT_PER_SEC * mesh_secs
            + self.first_deliveries
            + P4_WEIGHT * self.invalid * self.invalid
            - self.penalty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_messages_push_a_peer_below_the_thresholds() {
        let mut s = PeerScore::default();
        s.invalid_message();
        assert!(s.value(SimDuration::ZERO) < GOSSIP_THRESHOLD);
        assert!(s.value(SimDuration::ZERO) > PUBLISH_THRESHOLD);
        s.invalid_message();
        // −20 × 2² = −80: at the graylist threshold, not below it.
        assert!(s.value(SimDuration::ZERO) < PUBLISH_THRESHOLD);
        s.invalid_message();
        assert!(s.value(SimDuration::ZERO) < GRAYLIST_THRESHOLD);
    }

    #[test]
    fn credit_is_capped_and_decays() {
        let mut s = PeerScore::default();
        for _ in 0..100 {
            s.first_delivery();
        }
        assert_eq!(s.value(SimDuration::ZERO), 50.0);
        assert!((s.value(SimDuration::from_secs(10_000)) - 53.0).abs() < 1e-9);
        let decay = Decay::per_heartbeat(SimDuration::from_secs(1));
        s.decay(&decay);
        assert!((s.value(SimDuration::ZERO) - 45.0).abs() < 1e-9);
        s.penalise(50.0);
        assert!(s.value(SimDuration::ZERO) < 0.0);
        for _ in 0..2_000 {
            s.decay(&decay);
        }
        assert!(s.value(SimDuration::ZERO).abs() < 1.0);
    }
}

//! Connections a peer's redial shows to be dead.
//!
//! An Agora node dials a peer only when it holds no connection to it (libp2p's default dial
//! condition, `DisconnectedAndNotDialing`). So when a peer dials us while we still hold an
//! older connection to it, the peer has lost that connection: its network was detached and
//! re-attached at another address, it moved, or it restarted. What we send on the old
//! connection goes nowhere until pings fail (up to about 16 s), and meanwhile:
//!
//! - gossipsub keeps sending to the peer on its first connection, the dead one, and tells
//!   the peer our subscriptions only on a first connection, so the peer never learns that
//!   we follow the ledger and offer topics and sends us none of its announcements;
//! - the ledger and book syncs that run when a peer connects do not run (it is not the
//!   peer's first connection), so nothing it took while apart is fetched until a periodic
//!   round happens to pick it.
//!
//! The loop therefore drops every connection to such a peer ([`Ages::established`] says
//! when) and both sides start afresh, exchanging subscriptions and syncing. It waits for
//! the peer's identify first (at most [`RESET_WAIT`]): that puts the peer's new listen
//! addresses in Kademlia, so the loop can redial it at once instead of waiting for the peer
//! to dial again. Two dials crossing (both sides dialling at once) also leave
//! two connections, both fresh: a duplicate whose older connection is younger than
//! [`FRESH`] is left alone.

use core::time::Duration;
use std::collections::HashMap;
use std::time::Instant;

use libp2p::PeerId;
use libp2p::swarm::ConnectionId;

/// An older connection younger than this is taken for a crossing dial, not a dead one.
/// Crossing dials start within one handshake of each other and so complete within about
/// one handshake of each other too (a few round trips); a false alarm costs a reconnect.
pub(super) const FRESH: Duration = Duration::from_secs(3);

/// Longest wait for a redialling peer's identify before its connections are dropped.
pub(super) const RESET_WAIT: Duration = Duration::from_secs(2);

/// When each open connection was established, per peer, and the peers whose connections
/// are to be dropped. Bounded by the swarm's connection limits (entries mirror open
/// connections and are forgotten with a peer's last one).
#[derive(Debug, Default)]
pub(super) struct Ages {
    since: HashMap<PeerId, Vec<(ConnectionId, Instant)>>,
    /// Peers found redialling past an open connection: reset on their identify or after
    /// [`RESET_WAIT`].
    resets: HashMap<PeerId, Reset>,
}

/// A peer's pending or issued reset.
#[derive(Debug, Clone, Copy)]
struct Reset {
    /// When the peer redialled.
    since: Instant,
    /// The loop has dropped its connections (they are closing).
    issued: bool,
}

impl Ages {
    /// Records connection `id` to `peer`, established at `now`, `inbound` when the peer
    /// dialled it. Returns whether the peer's older connections are dead: the peer dialled
    /// us while one of them had been open for at least [`FRESH`].
    pub(super) fn established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        inbound: bool,
        now: Instant,
    ) -> bool {
        let open = self.since.entry(peer).or_default();
        let stale = inbound
            && open
                .iter()
                .any(|(_, at)| now.saturating_duration_since(*at) >= FRESH);
        open.push((id, now));
        if stale {
            self.resets.entry(peer).or_insert(Reset {
                since: now,
                issued: false,
            });
        }
        stale
    }

    /// Whether `peer` awaits a reset (called on its identify: the loop resets it now); the
    /// reset counts as issued.
    pub(super) fn take_reset(&mut self, peer: &PeerId) -> bool {
        match self.resets.get_mut(peer) {
            Some(r) if !r.issued => {
                r.issued = true;
                true
            }
            _ => false,
        }
    }

    /// The peers that have awaited their reset for [`RESET_WAIT`] at `now`; their resets
    /// count as issued.
    pub(super) fn due_resets(&mut self, now: Instant) -> Vec<PeerId> {
        let mut due = Vec::new();
        for (peer, r) in &mut self.resets {
            if !r.issued && now.saturating_duration_since(r.since) >= RESET_WAIT {
                r.issued = true;
                due.push(*peer);
            }
        }
        due
    }

    /// Forgets connection `id` to `peer`. Returns whether it was the peer's last one and
    /// the loop had reset the peer: time to redial it.
    pub(super) fn closed(&mut self, peer: &PeerId, id: ConnectionId) -> bool {
        let Some(open) = self.since.get_mut(peer) else {
            return false;
        };
        open.retain(|(c, _)| *c != id);
        if !open.is_empty() {
            return false;
        }
        self.since.remove(peer);
        self.resets.remove(peer).is_some_and(|r| r.issued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_redialling_over_an_old_connection_marks_it_dead() {
        let mut ages = Ages::default();
        let peer = PeerId::random();
        let t0 = Instant::now();
        let (old, new) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        assert!(
            !ages.established(peer, old, false, t0),
            "a first connection"
        );
        // The peer dials us a minute later: it has lost the old connection.
        assert!(ages.established(peer, new, true, t0 + Duration::from_secs(60)));
        // Its identify has not come within RESET_WAIT: due then, not before.
        assert!(ages.due_resets(t0 + Duration::from_secs(61)).is_empty());
        assert_eq!(ages.due_resets(t0 + Duration::from_secs(62)), vec![peer]);
        assert!(!ages.take_reset(&peer), "a reset is handed out once");
        assert!(!ages.closed(&peer, old));
        assert!(
            ages.closed(&peer, new),
            "the last connection of a reset peer: redial"
        );
        assert!(ages.since.is_empty(), "closed connections are forgotten");
        assert!(ages.resets.is_empty());
    }

    #[test]
    fn a_reset_is_taken_on_identify_or_dropped_with_the_peer() {
        let mut ages = Ages::default();
        let peer = PeerId::random();
        let t0 = Instant::now();
        let id = ConnectionId::new_unchecked;
        ages.established(peer, id(1), true, t0);
        assert!(ages.established(peer, id(2), true, t0 + FRESH));
        assert!(ages.take_reset(&peer));
        assert!(!ages.take_reset(&peer));
        assert!(!ages.closed(&peer, id(1)));
        assert!(ages.closed(&peer, id(2)));
        // A peer whose connections all close before its reset is forgotten entirely, and
        // needs no redial from us.
        ages.established(peer, id(3), false, t0);
        assert!(ages.established(peer, id(4), true, t0 + FRESH));
        assert!(!ages.closed(&peer, id(3)));
        assert!(!ages.closed(&peer, id(4)));
        assert!(ages.resets.is_empty() && ages.since.is_empty());
        assert!(ages.due_resets(t0 + Duration::from_secs(3600)).is_empty());
        // Closing an unknown connection is harmless.
        assert!(!ages.closed(&peer, id(9)));
    }

    #[test]
    fn crossing_dials_and_our_own_dials_are_left_alone() {
        let mut ages = Ages::default();
        let (peer, other) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let id = ConnectionId::new_unchecked;
        // Both sides dialled at once: the peer's connection arrives a moment after ours.
        assert!(!ages.established(peer, id(1), false, t0));
        assert!(!ages.established(peer, id(2), true, t0 + Duration::from_millis(300)));
        // Our own second dial never marks anything (we dialled; the peer lost nothing).
        let mut ages = Ages::default();
        assert!(!ages.established(peer, id(3), true, t0));
        assert!(!ages.established(peer, id(4), false, t0 + Duration::from_secs(60)));
        // Another peer's old connection does not count.
        assert!(!ages.established(other, id(5), true, t0 + Duration::from_secs(60)));
        // Just under and at the threshold.
        let mut ages = Ages::default();
        assert!(!ages.established(peer, id(6), false, t0));
        assert!(!ages.established(peer, id(7), true, t0 + FRESH - Duration::from_millis(1)));
        ages.closed(&peer, id(7));
        assert!(ages.established(peer, id(8), true, t0 + FRESH));
    }
}

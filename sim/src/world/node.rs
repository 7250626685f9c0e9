//! One simulated node's state: connections, meshes, caches and its market.

use agora_protocol::market::Market;

use crate::gossip::mcache::MessageCache;
use crate::gossip::score::{Decay, PeerScore};
use crate::gossip::seen::SeenCache;
use crate::gossip::{MsgIdx, TopicIdx};
use crate::metrics::NodeCounters;
use crate::time::{SimDuration, SimTime};

/// Whether a node is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not joined yet.
    Pending,
    /// Running.
    Up,
    /// Crashed.
    Down,
}

/// A connected peer as this node sees it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The peer.
    pub node: u32,
    /// Its score counters.
    pub score: PeerScore,
    /// Per topic, no GRAFT before this instant (after a PRUNE).
    pub backoff: Vec<(TopicIdx, SimTime)>,
}

impl Peer {
    fn new(node: u32) -> Self {
        Peer {
            node,
            score: PeerScore::default(),
            backoff: Vec::new(),
        }
    }

    /// Whether grafting on `topic` is backed off at `now`.
    pub fn backing_off(&self, topic: TopicIdx, now: SimTime) -> bool {
        self.backoff
            .iter()
            .any(|(t, until)| *t == topic && *until > now)
    }

    /// Backs off `topic` until `until`.
    pub fn back_off(&mut self, topic: TopicIdx, until: SimTime) {
        self.backoff.retain(|(t, _)| *t != topic);
        self.backoff.push((topic, until));
    }
}

/// One subscribed topic's mesh: members and when each was grafted.
#[derive(Debug, Clone)]
pub struct TopicMesh {
    /// The topic.
    pub topic: TopicIdx,
    /// Members and their graft time.
    pub members: Vec<(u32, SimTime)>,
}

/// A simulated node.
///
/// `repr(C, align(64))` keeps the fields every frame delivery reads (status,
/// subscriptions, whether any peer has a score against it, the traffic counters, the seen
/// cache) together at the front, in the first two cache lines; the rest is touched far
/// less often.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
pub struct SimNode {
    /// Running or not.
    pub status: Status,
    /// Incremented at every crash; timers of an earlier life are ignored.
    pub epoch: u32,
    /// Bit `t` is set when the node subscribes to topic `t` (at most 64 topics, the
    /// protocol's `MAX_REGION_TOPICS`).
    topic_bits: u64,
    /// Connected peers whose score counters are not clean (see [`PeerScore::is_clean`]):
    /// while zero, threshold checks at or below zero pass without looking a peer up.
    unclean_peers: u32,
    /// Frames and bytes sent and received, duplicates: counted here rather than in a
    /// separate table so that a delivery touches one place (see
    /// [`Metrics::set_per_node`](crate::metrics::Metrics::set_per_node)). A crash keeps them.
    pub traffic: NodeCounters,
    /// Duplicate suppression.
    pub seen: SeenCache,
    /// The connected peers' ids, sorted: `peer_ids[i] == peers[i].node`. Searched often,
    /// so kept apart from the larger [`Peer`] records.
    peer_ids: Vec<u32>,
    /// Connected peers, sorted by node index.
    peers: Vec<Peer>,
    /// Peers remembered across a crash (the node persists known peers).
    pub known_peers: Vec<u32>,
    /// Meshes of the subscribed topics.
    pub meshes: Vec<TopicMesh>,
    /// IWANT answers and IHAVE ids.
    pub mcache: MessageCache,
    /// Ids asked for by IWANT since the last heartbeat, sorted (each IHAVE looks every id
    /// up: a binary search, not a scan).
    pub pending_iwant: Vec<MsgIdx>,
    /// The protocol's market, as the node runs it: offer book, rate limits, verdicts.
    pub market: Market,
    /// The provider this node is, if any (index into the run's providers).
    pub provider: Option<u32>,
    /// Leaving gracefully: it has withdrawn its offer and goes down soon, so it no longer
    /// advertises.
    pub leaving: bool,
}

impl SimNode {
    /// A node not yet started, subscribed to `topics` (indices below 64).
    pub fn new(topics: &[TopicIdx], history_length: usize) -> Self {
        SimNode {
            status: Status::Pending,
            epoch: 0,
            topic_bits: topics
                .iter()
                .filter(|&&t| t < 64)
                .fold(0, |bits, &t| bits | 1 << t),
            unclean_peers: 0,
            traffic: NodeCounters::default(),
            seen: SeenCache::default(),
            peer_ids: Vec::new(),
            peers: Vec::new(),
            known_peers: Vec::new(),
            meshes: topics
                .iter()
                .map(|&topic| TopicMesh {
                    topic,
                    members: Vec::new(),
                })
                .collect(),
            mcache: MessageCache::new(history_length),
            pending_iwant: Vec::new(),
            market: Market::default(),
            provider: None,
            leaving: false,
        }
    }

    /// Whether the node is running.
    pub fn is_up(&self) -> bool {
        self.status == Status::Up
    }

    /// The connected peers, sorted by node index.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// The connected peers' ids, ascending.
    pub fn peer_ids(&self) -> &[u32] {
        &self.peer_ids
    }

    fn peer_index(&self, node: u32) -> Option<usize> {
        self.peer_ids.binary_search(&node).ok()
    }

    /// The connected peer `node`.
    pub fn peer(&self, node: u32) -> Option<&Peer> {
        self.peer_index(node).and_then(|i| self.peers.get(i))
    }

    /// Whether `node` is connected.
    pub fn is_connected(&self, node: u32) -> bool {
        self.peer_index(node).is_some()
    }

    /// Changes the score counters of peer `node` (if connected) with `change`, keeping
    /// the count of unclean peers right.
    pub fn rescore(&mut self, node: u32, change: impl FnOnce(&mut PeerScore)) {
        let Some(peer) = self.peer_index(node).and_then(|i| self.peers.get_mut(i)) else {
            return;
        };
        let was_clean = peer.score.is_clean();
        change(&mut peer.score);
        match (was_clean, peer.score.is_clean()) {
            (true, false) => self.unclean_peers += 1,
            (false, true) => self.unclean_peers = self.unclean_peers.saturating_sub(1),
            _ => {}
        }
    }

    /// One heartbeat's score decay for every peer, and expired backoffs dropped.
    pub fn decay_scores(&mut self, decay: &Decay, now: SimTime) {
        if self.unclean_peers == 0 {
            // Clean peers have only first-delivery credit to decay.
            for peer in &mut self.peers {
                peer.score.decay(decay);
                if !peer.backoff.is_empty() {
                    peer.backoff.retain(|(_, until)| *until > now);
                }
            }
            return;
        }
        let mut unclean = 0;
        for peer in &mut self.peers {
            peer.score.decay(decay);
            unclean += u32::from(!peer.score.is_clean());
            if !peer.backoff.is_empty() {
                peer.backoff.retain(|(_, until)| *until > now);
            }
        }
        self.unclean_peers = unclean;
    }

    /// Backs off grafting `node` on `topic` until `until` (if connected).
    pub fn back_off(&mut self, node: u32, topic: TopicIdx, until: SimTime) {
        if let Some(peer) = self.peer_index(node).and_then(|i| self.peers.get_mut(i)) {
            peer.back_off(topic, until);
        }
    }

    /// Adds a connection to `node`; returns whether it is new.
    pub fn connect(&mut self, node: u32) -> bool {
        match self.peer_ids.binary_search(&node) {
            Ok(_) => false,
            Err(i) => {
                self.peer_ids.insert(i, node);
                self.peers.insert(i, Peer::new(node));
                if !self.known_peers.contains(&node) {
                    self.known_peers.push(node);
                }
                true
            }
        }
    }

    /// Drops the connection to `node` and its mesh memberships; returns whether it existed.
    pub fn disconnect(&mut self, node: u32) -> bool {
        for mesh in &mut self.meshes {
            mesh.members.retain(|(m, _)| *m != node);
        }
        match self.peer_ids.binary_search(&node) {
            Ok(i) => {
                self.peer_ids.remove(i);
                let peer = self.peers.remove(i);
                if !peer.score.is_clean() {
                    self.unclean_peers = self.unclean_peers.saturating_sub(1);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the node subscribes to `topic`.
    pub fn subscribes(&self, topic: TopicIdx) -> bool {
        topic < 64 && self.topic_bits & (1 << topic) != 0
    }

    /// The mesh of `topic`, if subscribed.
    pub fn mesh(&self, topic: TopicIdx) -> Option<&TopicMesh> {
        self.meshes.iter().find(|m| m.topic == topic)
    }

    /// The mesh of `topic`, mutably.
    pub fn mesh_mut(&mut self, topic: TopicIdx) -> Option<&mut TopicMesh> {
        self.meshes.iter_mut().find(|m| m.topic == topic)
    }

    /// `peer`'s total time in this node's meshes at `now`.
    pub fn time_in_mesh(&self, peer: u32, now: SimTime) -> SimDuration {
        let micros = self
            .meshes
            .iter()
            .flat_map(|m| m.members.iter())
            .filter(|(p, _)| *p == peer)
            .map(|(_, since)| now.saturating_since(*since).as_micros())
            .sum();
        SimDuration::from_micros(micros)
    }

    /// Whether `peer`'s score at `now` is at least `threshold` (a threshold at or below
    /// zero is met at once by a peer with nothing against it).
    pub fn score_at_least(&self, peer: u32, threshold: f64, now: SimTime) -> bool {
        if threshold <= 0.0 && self.unclean_peers == 0 {
            // Every connected peer is clean, and an unknown peer scores zero.
            return true;
        }
        match self.peer(peer) {
            Some(p) if threshold <= 0.0 && p.score.is_clean() => true,
            Some(p) => p.score.value(self.time_in_mesh(peer, now)) >= threshold,
            None => 0.0 >= threshold,
        }
    }

    /// `peer`'s score at `now` (0 for an unknown peer).
    pub fn score_of(&self, peer: u32, now: SimTime) -> f64 {
        self.peer(peer)
            .map_or(0.0, |p| p.score.value(self.time_in_mesh(peer, now)))
    }

    /// A crash: everything in memory is lost; the known peers (persisted) remain.
    pub fn crash(&mut self, history_length: usize) {
        self.status = Status::Down;
        self.epoch = self.epoch.wrapping_add(1);
        self.peers.clear();
        self.peer_ids.clear();
        self.unclean_peers = 0;
        for mesh in &mut self.meshes {
            mesh.members.clear();
        }
        self.seen = SeenCache::default();
        self.mcache = MessageCache::new(history_length);
        self.pending_iwant.clear();
        self.market = Market::default();
        self.leaving = false;
    }

    /// Checks the cached peer data against the peer records (tests).
    #[cfg(test)]
    fn consistent(&self) -> bool {
        self.peer_ids.iter().eq(self.peers.iter().map(|p| &p.node))
            && self.unclean_peers as usize
                == self.peers.iter().filter(|p| !p.score.is_clean()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::score::GOSSIP_THRESHOLD;

    #[test]
    fn peer_ids_and_the_unclean_count_follow_every_change() {
        let mut node = SimNode::new(&[0, 3], 5);
        assert!(node.subscribes(3) && !node.subscribes(1) && !node.subscribes(200));
        for peer in [9, 2, 5, 7] {
            assert!(node.connect(peer));
        }
        assert!(!node.connect(5));
        assert_eq!(node.peer_ids(), &[2, 5, 7, 9]);
        node.rescore(5, |s| s.penalise(2.0));
        node.rescore(7, |s| s.invalid_message());
        node.rescore(9, PeerScore::first_delivery);
        node.rescore(4, |s| s.penalise(1.0));
        assert!(node.consistent());
        assert!(!node.score_at_least(7, GOSSIP_THRESHOLD, SimTime::ZERO));
        assert!(node.score_at_least(2, 0.0, SimTime::ZERO));
        assert!(node.disconnect(7));
        assert!(node.consistent());
        let decay = Decay::per_heartbeat(SimDuration::from_secs(1));
        for _ in 0..1_000 {
            node.decay_scores(&decay, SimTime::ZERO);
        }
        assert!(node.consistent());
        assert_eq!(node.unclean_peers, 0, "penalties decay away");
        node.rescore(2, |s| s.penalise(50.0));
        node.crash(5);
        assert!(node.consistent() && node.peer_ids().is_empty());
    }
}

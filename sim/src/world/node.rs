//! One simulated node's state: connections, meshes, caches and its market.

use agora_protocol::market::Market;

use crate::gossip::mcache::MessageCache;
use crate::gossip::score::PeerScore;
use crate::gossip::seen::SeenCache;
use crate::gossip::{MsgIdx, TopicIdx};
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
#[derive(Debug, Clone)]
pub struct SimNode {
    /// Running or not.
    pub status: Status,
    /// Incremented at every crash; timers of an earlier life are ignored.
    pub epoch: u32,
    /// Connected peers, sorted by node index.
    pub peers: Vec<Peer>,
    /// Peers remembered across a crash (the node persists known peers).
    pub known_peers: Vec<u32>,
    /// Meshes of the subscribed topics.
    pub meshes: Vec<TopicMesh>,
    /// Duplicate suppression.
    pub seen: SeenCache,
    /// IWANT answers and IHAVE ids.
    pub mcache: MessageCache,
    /// Ids asked for by IWANT since the last heartbeat.
    pub pending_iwant: Vec<MsgIdx>,
    /// The protocol's market, as the node runs it: offer book, rate limits, verdicts.
    pub market: Market,
    /// The provider this node is, if any (index into the run's providers).
    pub provider: Option<u32>,
}

impl SimNode {
    /// A node not yet started, subscribed to `topics`.
    pub fn new(topics: &[TopicIdx], history_length: usize) -> Self {
        SimNode {
            status: Status::Pending,
            epoch: 0,
            peers: Vec::new(),
            known_peers: Vec::new(),
            meshes: topics
                .iter()
                .map(|&topic| TopicMesh {
                    topic,
                    members: Vec::new(),
                })
                .collect(),
            seen: SeenCache::default(),
            mcache: MessageCache::new(history_length),
            pending_iwant: Vec::new(),
            market: Market::default(),
            provider: None,
        }
    }

    /// Whether the node is running.
    pub fn is_up(&self) -> bool {
        self.status == Status::Up
    }

    /// The connected peer `node`.
    pub fn peer(&self, node: u32) -> Option<&Peer> {
        self.peers
            .binary_search_by_key(&node, |p| p.node)
            .ok()
            .and_then(|i| self.peers.get(i))
    }

    /// The connected peer `node`, mutably.
    pub fn peer_mut(&mut self, node: u32) -> Option<&mut Peer> {
        self.peers
            .binary_search_by_key(&node, |p| p.node)
            .ok()
            .and_then(|i| self.peers.get_mut(i))
    }

    /// Whether `node` is connected.
    pub fn is_connected(&self, node: u32) -> bool {
        self.peer(node).is_some()
    }

    /// Adds a connection to `node`; returns whether it is new.
    pub fn connect(&mut self, node: u32) -> bool {
        match self.peers.binary_search_by_key(&node, |p| p.node) {
            Ok(_) => false,
            Err(i) => {
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
        match self.peers.binary_search_by_key(&node, |p| p.node) {
            Ok(i) => {
                self.peers.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the node subscribes to `topic`.
    pub fn subscribes(&self, topic: TopicIdx) -> bool {
        self.meshes.iter().any(|m| m.topic == topic)
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
        for mesh in &mut self.meshes {
            mesh.members.clear();
        }
        self.seen = SeenCache::default();
        self.mcache = MessageCache::new(history_length);
        self.pending_iwant.clear();
        self.market = Market::default();
    }
}

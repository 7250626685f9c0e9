//! The simulated network: nodes running the protocol's machines over the network model,
//! driven by the engine's events.
//!
//! [`World`] owns every node, the network model, the message table, the providers and the
//! metrics; [`World::handle`] is the engine's handler. Its parts:
//!
//! - [`event`]: the events and their trace encoding;
//! - [`node`]: one node's state;
//! - [`setup`]: topology, providers, churn and partition schedules at time zero;
//! - [`gossip`]: gossipsub frames and publishing;
//! - `heartbeat`: the gossipsub heartbeat;
//! - [`sync`]: offer sync (anti-entropy and catch-up on connect);
//! - [`churn`]: crashes, restarts, joins, partitions and heals;
//! - [`sample`]: metrics samples.

pub mod churn;
pub mod event;
pub mod gossip;
mod heartbeat;
pub mod node;
pub mod sample;
pub mod setup;
pub mod sync;

use agora_protocol::AgoraId;
use agora_protocol::gossip::{GossipError, GossipMessage};

use crate::engine::{Ctx, NodeId};
use crate::fast_hash::FastMap;
use crate::gossip::score::Decay;
use crate::gossip::{Frame, MsgIdx, Params, TopicIdx};
use crate::metrics::Metrics;
use crate::net_model::{NetModel, Transit};
use crate::scenario::Scenario;
use crate::verifier::MemoVerifier;
use crate::workload::Provider;

pub use event::{Event, WORLD};
pub use node::{SimNode, Status};

/// A published gossip message, stored once for the whole run.
#[derive(Debug, Clone)]
pub struct Message {
    /// Its topic.
    pub topic: TopicIdx,
    /// The gossip bytes (kind byte and signed offer or withdrawal).
    pub bytes: Vec<u8>,
    /// The provider (index into the run's providers).
    pub provider: u32,
    /// The offer's sequence number (for a withdrawal, the highest one withdrawn).
    pub seq: u64,
    /// Whether it is a withdrawal rather than an offer.
    pub withdrawal: bool,
    /// The outcome of decoding and verifying the bytes on their topic, once the first
    /// receiver has done it: shared by every later receiver, whose book then holds a
    /// handle on this one decoded offer (see the `gossip` module).
    pub decoded: Option<Result<GossipMessage, GossipError>>,
}

/// What names a provider's signed message among all published: its provider, sequence
/// number, kind and issue time. A provider signs one offer per sequence number, and a
/// withdrawal's body is exactly these fields (ed25519 signatures are deterministic), so
/// two messages with one key are the same bytes. Cheaper than hashing the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignedKey {
    /// The provider.
    pub provider: AgoraId,
    /// The offer's sequence number, or the highest one a withdrawal withdraws.
    pub seq: u64,
    /// Whether it is a withdrawal.
    pub withdrawal: bool,
    /// When it was issued, in Unix milliseconds.
    pub issued_at_millis: u64,
}

impl SignedKey {
    /// The key of a published gossip message.
    pub fn of(message: &GossipMessage) -> Self {
        match message {
            GossipMessage::Offer(o) => Self::offer(o.body()),
            GossipMessage::Withdrawal(w) => Self::withdrawal(w.body()),
        }
    }

    /// The key of an offer.
    pub fn offer(offer: &agora_protocol::Offer) -> Self {
        SignedKey {
            provider: offer.provider,
            seq: offer.seq,
            withdrawal: false,
            issued_at_millis: offer.issued_at.as_unix_millis(),
        }
    }

    /// The key of a withdrawal.
    pub fn withdrawal(w: &agora_protocol::OfferWithdrawal) -> Self {
        SignedKey {
            provider: w.provider,
            seq: w.seq,
            withdrawal: true,
            issued_at_millis: w.issued_at.as_unix_millis(),
        }
    }
}

/// A provider: its node and key.
#[derive(Debug)]
pub struct ProviderSlot {
    /// The node that runs it.
    pub node: u32,
    /// Its key and sequence numbers.
    pub provider: Provider,
    /// Its latest published offer, `None` once withdrawn.
    pub latest: Option<MsgIdx>,
}

/// Everything a run simulates.
#[derive(Debug)]
pub struct World {
    scenario: Scenario,
    params: Params,
    decay: Decay,
    net: NetModel,
    topic_names: Vec<String>,
    nodes: Vec<SimNode>,
    providers: Vec<ProviderSlot>,
    messages: Vec<Message>,
    /// A signed offer's or withdrawal's [`SignedKey`] → its message, so sync pages can
    /// name shared messages.
    signed_index: FastMap<SignedKey, MsgIdx>,
    verifier: MemoVerifier,
    /// Per partition, the connections its timeout closed (to redial on heal).
    severed: Vec<Vec<(u32, u32)>>,
    metrics: Metrics,
    /// A reusable buffer for handlers' short lists of node ids (no allocation per event).
    scratch: Vec<u32>,
    /// The heartbeat's reusable lists.
    heartbeat_scratch: heartbeat::Scratch,
    /// Incremented whenever a connection closes (a crash closes all of the node's): a
    /// frame sent over an open connection in the same epoch is still on an open one.
    topology_epoch: u32,
    /// The market, with a `[market]` section.
    market: Option<Box<crate::market::Market>>,
    /// Why the market could not start, if it could not.
    market_failure: Option<crate::market::Violation>,
}

impl World {
    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// gossipsub parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The metrics so far (per-node traffic as of the last sample or [`World::finish`]).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Brings the metrics up to date with the nodes' own counters; call at the end.
    pub fn finish(&mut self) {
        self.metrics
            .set_per_node(self.nodes.iter().map(|node| node.traffic));
    }

    /// The network model.
    pub fn net(&self) -> &NetModel {
        &self.net
    }

    /// The nodes.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// The published messages.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The providers, in the order they were chosen.
    pub fn providers(&self) -> &[ProviderSlot] {
        &self.providers
    }

    /// The signature memo.
    pub fn verifier(&self) -> &MemoVerifier {
        &self.verifier
    }

    /// The market, with a `[market]` section.
    pub fn market(&self) -> Option<&crate::market::Market> {
        self.market.as_deref()
    }

    /// An invariant violation that stopped the run (or the market's failure to start).
    pub fn violation(&self) -> Option<&crate::market::Violation> {
        self.market_failure.as_ref().or_else(|| {
            self.market
                .as_deref()
                .and_then(crate::market::Market::violation)
        })
    }

    /// Region names, by index.
    pub fn region_names(&self) -> Vec<String> {
        self.scenario
            .nodes
            .regions
            .iter()
            .map(|r| r.name.get_ref().clone())
            .collect()
    }

    fn node(&self, index: u32) -> Option<&SimNode> {
        self.nodes.get(index as usize)
    }

    fn node_mut(&mut self, index: u32) -> Option<&mut SimNode> {
        self.nodes.get_mut(index as usize)
    }

    fn is_up(&self, index: u32) -> bool {
        self.node(index).is_some_and(SimNode::is_up)
    }

    /// The engine's handler: processes one event addressed to `node`.
    pub fn handle(&mut self, ctx: &mut Ctx<'_, Event>, node: NodeId, event: Event) {
        let n = node.as_u32();
        match event {
            Event::Deliver {
                from,
                bytes,
                link,
                frame,
            } => self.on_deliver(ctx, n, from, bytes, link, frame),
            Event::Heartbeat { epoch } => {
                if self.alive_in(n, epoch) {
                    self.heartbeat(ctx, n);
                }
            }
            Event::Advertise { epoch } => {
                if self.alive_in(n, epoch) {
                    self.advertise(ctx, n);
                }
            }
            Event::SyncTick { epoch } => {
                if self.alive_in(n, epoch) {
                    self.sync_tick(ctx, n);
                }
            }
            Event::Crash { epoch, restart } => self.on_crash(ctx, n, epoch, restart),
            Event::Leave { epoch, restart } => self.on_leave(ctx, n, epoch, restart),
            Event::Start => self.on_start(ctx, n),
            Event::Connect { peer } => self.dial(ctx, n, peer),
            Event::PartitionStart { index } => self.on_partition_start(ctx, index),
            Event::PartitionTimeout { index } => self.on_partition_timeout(index),
            Event::PartitionHeal { index } => self.on_partition_heal(ctx, index),
            Event::Sample => self.on_sample(ctx),
            Event::Market(event) => {
                if let Some(market) = self.market.as_deref_mut() {
                    let mut env = crate::market::Env {
                        net: &mut self.net,
                        nodes: &self.nodes,
                        verifier: &self.verifier,
                    };
                    market.handle(ctx, &mut env, n, event);
                    if market.violation().is_some() {
                        ctx.request_stop();
                    }
                }
            }
        }
    }

    fn alive_in(&self, n: u32, epoch: u32) -> bool {
        self.node(n)
            .is_some_and(|node| node.is_up() && node.epoch == epoch)
    }

    /// Hands `frame` from `from` to the network towards `to`, now.
    ///
    /// `to` must be connected to `from`: every caller answers the peer a frame came from
    /// or picks from the node's peers or meshes (mesh members are always connected peers).
    fn send(&mut self, ctx: &mut impl Sched, from: u32, to: u32, frame: Frame) {
        let now = ctx.now();
        self.send_at(ctx, now, from, to, frame);
    }

    /// Hands `frame` from `from` to the network towards `to` at `depart` (not before now).
    fn send_at(
        &mut self,
        ctx: &mut impl Sched,
        depart: crate::SimTime,
        from: u32,
        to: u32,
        frame: Frame,
    ) {
        // An eclipse's attackers withhold honest offers from its victims.
        let frame = match self
            .market
            .as_deref()
            .and_then(crate::market::Market::eclipse)
        {
            Some(eclipse) => {
                let messages = &self.messages;
                let provider_of = |m: MsgIdx| messages.get(m as usize).map(|msg| msg.provider);
                match eclipse.filter(from, to, frame, provider_of) {
                    Some(frame) => frame,
                    None => return,
                }
            }
            None => frame,
        };
        let bytes = frame.wire_bytes(
            |m| {
                self.messages
                    .get(m as usize)
                    .map_or(0, |msg| msg.bytes.len())
            },
            |t| self.topic_names.get(usize::from(t)).map_or(0, String::len),
            |m| self.messages.get(m as usize).map_or(0, |msg| msg.topic),
        );
        self.metrics.sent(frame.kind_index(), bytes);
        if let Some(node) = self.nodes.get_mut(from as usize) {
            node.traffic.record_sent(bytes);
        }
        let depart = depart.max(ctx.now());
        match self.net.send(ctx.rng(), depart, from, to, bytes) {
            Transit::Arrives(at) => {
                debug_assert!(
                    self.node(from).is_some_and(|n| n.is_connected(to)),
                    "node {from} sends to {to} without a connection"
                );
                let event = Event::Deliver {
                    from,
                    bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
                    link: self.topology_epoch,
                    frame,
                };
                ctx.at(at, to, event);
            }
            Transit::Lost => self.metrics.lost += 1,
            Transit::Blocked => self.metrics.blocked += 1,
        }
    }

    fn on_deliver(
        &mut self,
        ctx: &mut impl Sched,
        to: u32,
        from: u32,
        bytes: u32,
        link: u32,
        frame: Frame,
    ) {
        // Frames are only sent over open connections (see `send`), so when no connection
        // has closed since this one left (no crash either, which closes them all) it is
        // still on an open one: the common case skips the lookup.
        let connected = link == self.topology_epoch
            || self
                .node(to)
                .is_some_and(|n| n.is_up() && n.is_connected(from));
        if !connected {
            self.metrics.undeliverable += 1;
            return;
        }
        if let Some(node) = self.nodes.get_mut(to as usize) {
            node.traffic.record_received(bytes as usize);
        }
        match frame {
            Frame::Publish { msg, hops } => self.on_publish(ctx, to, from, msg, hops),
            Frame::IHave { topic, ids } => self.on_ihave(ctx, to, from, topic, &ids),
            Frame::IWant { ids } => self.on_iwant(ctx, to, from, &ids),
            Frame::Graft { topic } => self.on_graft(ctx, to, from, topic),
            Frame::Prune { topic } => self.on_prune(ctx, to, from, topic),
            Frame::SyncRequest(req) => self.on_sync_request(ctx, to, from, &req),
            Frame::SyncResponse(page) => self.on_sync_response(ctx, to, from, &page),
        }
    }
}

/// What world code needs from the engine: the clock, the RNG and a way to schedule.
/// Implemented by the handler's [`Ctx`] and by the [`Engine`](crate::Engine) itself (for
/// setup before the run).
pub trait Sched {
    /// The current instant.
    fn now(&self) -> crate::SimTime;
    /// The run's RNG.
    fn rng(&mut self) -> &mut crate::ChaCha20Rng;
    /// Schedules `event` for `node` at `at` (clamped to now: the clock never runs back).
    fn at(&mut self, at: crate::SimTime, node: u32, event: Event);
}

impl Sched for Ctx<'_, Event> {
    fn now(&self) -> crate::SimTime {
        Ctx::now(self)
    }
    fn rng(&mut self) -> &mut crate::ChaCha20Rng {
        Ctx::rng(self)
    }
    fn at(&mut self, at: crate::SimTime, node: u32, event: Event) {
        let delay = at.saturating_since(Ctx::now(self));
        self.schedule_in(delay, NodeId::new(node), event);
    }
}

impl Sched for crate::Engine<Event> {
    fn now(&self) -> crate::SimTime {
        crate::Engine::now(self)
    }
    fn rng(&mut self) -> &mut crate::ChaCha20Rng {
        crate::Engine::rng(self)
    }
    fn at(&mut self, at: crate::SimTime, node: u32, event: Event) {
        let delay = at.saturating_since(crate::Engine::now(self));
        self.schedule_in(delay, NodeId::new(node), event);
    }
}

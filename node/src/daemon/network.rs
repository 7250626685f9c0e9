//! The swarm's event loop: gossip validation, publishing with retries, discovery, offer
//! sync and the network snapshot the HTTP API reads.
//!
//! One task owns the [`Swarm`]; others talk to it through a bounded [`NetCommand`] channel
//! and read [`Shared`]. Every wait is bounded: requests time out (request-response), dead
//! connections are closed on ping failure, idle ones by the swarm's idle timeout, and
//! publications that cannot go out are retried until their message expires. A peer that
//! dials in past a connection it evidently lost (it moved, or its network came back) has
//! all its connections dropped and is redialled, so both sides start afresh (`stale`).
//!
//! Published services ride the same gossipsub on their own topic
//! ([`agora_protocol::service::SERVICES_TOPIC`], followed by every node): messages on it go
//! to the services directory instead of the market, and [`NetCommand::PublishService`]
//! publishes what agents submit. Both books are also synced point to point, page by page,
//! on every new connection and in each anti-entropy round ([`super::sync`]: offers on
//! `/agora/offer-sync/2`, services on `/agora/service-sync/1`).
//!
//! The quota committee (`committee` below) talks point to point on `/agora/quota/1`:
//! [`NetCommand::Quota`] calls a validator, inbound requests go to the node's
//! [`Quota`](crate::committee::Quota) service.
//!
//! The ledger (`ledger` below) announces its heads on `agora/v1/ledger` and syncs entries
//! point to point on `/agora/ledger/1`.
//!
//! Leases travel point to point on `/agora/lease/1`: [`NetCommand::Lease`] sends a gateway's
//! request to a provider by peer id (dialled through the addresses Kademlia knows, after a
//! DHT lookup if the first dial finds none) and hands back the answer; a provider's inbound
//! requests go to the lease service as [`InboundLease`]s, answered within
//! [`LEASE_ANSWER_TIMEOUT`].

use core::time::Duration;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use agora_attest::identity::agora_id_of;
use agora_protocol::Timestamp;
use agora_protocol::gossip::{GossipMessage, MAX_REGION_TOPICS, offers_topic, region_of_topic};
use agora_protocol::service::{MAX_SERVICE_TTL, SERVICES_TOPIC, ServiceGossip};
use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, TopicHash};
use libp2p::metrics::Recorder as _;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, Swarm, identify, kad, ping};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::peers;
use super::shared::{NetStatus, PeerStatus, Shared};
use super::sync::Book;
use crate::clock;
use crate::market::Verdict;
use crate::net::scoring::{Offence, Penalties, offers_topic_params};
use crate::net::{Behaviour, BehaviourEvent, KAD_PROTOCOL, PROTOCOL_VERSION};
use crate::store::Store;

mod book_sync;
mod committee;
mod ledger;
mod stale;

pub use committee::QuotaCall;

/// Requests to the event loop.
#[derive(Debug)]
pub enum NetCommand {
    /// Publish one of our own messages (already applied to our own book).
    Publish(Box<GossipMessage>),
    /// Publish a service record or withdrawal an agent submitted (already applied to our
    /// own directory) on the services topic.
    PublishService(Box<ServiceGossip>),
    /// Flush what is pending, keep the swarm running a moment so it leaves, then stop.
    Shutdown(oneshot::Sender<()>),
    /// Send a lease request (an encoded `lease_rpc::Request`) to a peer and hand back its
    /// encoded answer.
    Lease(Box<LeaseCall>),
    /// Send a quota committee request (an encoded `quota_rpc::Request`) to a validator and
    /// hand back its encoded answer.
    Quota(Box<QuotaCall>),
}

/// A lease request to send to `peer`; the answer (or why there is none) goes to `reply`.
#[derive(Debug)]
pub struct LeaseCall {
    /// The provider.
    pub peer: PeerId,
    /// The encoded request.
    pub request: Vec<u8>,
    /// Where the encoded answer goes.
    pub reply: oneshot::Sender<Result<Vec<u8>, String>>,
}

/// A lease request a peer sent us: the lease service answers on `reply` (encoded).
#[derive(Debug)]
pub struct InboundLease {
    /// Who sent it (a gateway).
    pub peer: PeerId,
    /// The encoded request.
    pub request: Vec<u8>,
    /// Where the encoded answer goes.
    pub reply: oneshot::Sender<Vec<u8>>,
}

/// How long the lease service may take to answer one inbound request.
pub const LEASE_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Most inbound lease requests being answered at once; beyond it new ones are refused.
const MAX_INBOUND_LEASES: usize = 128;
/// Most outbound lease requests in flight (sent or waiting for a DHT lookup).
const MAX_LEASE_CALLS: usize = 256;

struct PendingCall {
    call: LeaseCall,
    looked_up: bool,
}

type Answering = BoxFuture<'static, (ResponseChannel<Vec<u8>>, Option<Vec<u8>>)>;

/// Capacity of the command channel; senders wait when it is full (backpressure).
pub const COMMAND_QUEUE: usize = 64;

/// Most own messages waiting for a retry; the oldest is dropped beyond it.
const MAX_PENDING: usize = 32;
/// Event-loop tick: retries, expiry, status refresh.
const TICK: Duration = Duration::from_millis(500);
/// Ticks between random walks while a node has fewer connections than its target: 15 s.
const WALK_TICKS: u64 = 30;
/// Delay before syncing with the peer that made us follow a new region.
const FOLLOW_SYNC_DELAY: Duration = Duration::from_secs(2);
/// How long the loop keeps running after a shutdown request, for queued bytes to leave.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

struct Pending {
    topic: TopicHash,
    data: Vec<u8>,
    until: Timestamp,
    attempts: u32,
}

#[derive(Default)]
struct PeerInfo {
    agent_version: Option<String>,
    rtt: Option<Duration>,
}

/// Settings the loop needs beyond [`Shared`].
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// Bootstrap peers (id and address).
    pub bootstrap: Vec<(PeerId, Multiaddr)>,
    /// Connections to keep up.
    pub target_peers: u32,
    /// Follow every region peers announce (else only `regions`).
    pub follow_all: bool,
    /// Regions followed from the start (own region first).
    pub regions: Vec<String>,
    /// Period of anti-entropy: sync with one random connected peer.
    pub sync_interval: Duration,
}

/// The event loop's state.
pub struct NetworkLoop {
    swarm: Swarm<Behaviour>,
    shared: Arc<Shared>,
    store: Arc<dyn Store>,
    commands: mpsc::Receiver<NetCommand>,
    config: LoopConfig,
    libp2p_metrics: libp2p::metrics::Metrics,
    penalties: Penalties,
    peer_info: HashMap<PeerId, PeerInfo>,
    connected_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    /// When each open connection was established, to spot peers that lost theirs.
    ages: stale::Ages,
    pending: VecDeque<Pending>,
    sync_requests: HashMap<(Book, OutboundRequestId), (PeerId, u32)>,
    delayed_syncs: Vec<(PeerId, tokio::time::Instant)>,
    redial_soon: bool,
    /// Peers whose connections this node dropped because an interface went away, with the
    /// addresses they were connected at: each is redialled there once its last connection
    /// has closed (a peer that is not in the routing table, a Kademlia client, would
    /// otherwise never be dialled again). Bounded by the connection limits.
    redial_dropped: HashMap<PeerId, Vec<Multiaddr>>,
    regions: BTreeSet<String>,
    ticks: u64,
    lease_inbound: Option<mpsc::Sender<InboundLease>>,
    lease_calls: HashMap<OutboundRequestId, PendingCall>,
    parked: HashMap<PeerId, Vec<LeaseCall>>,
    lookups: HashMap<kad::QueryId, PeerId>,
    answering: FuturesUnordered<Answering>,
    ledger: ledger::LedgerSync,
    quota: committee::QuotaNet,
}

impl NetworkLoop {
    /// Prepares the loop: listens, subscribes, dials bootstrap and remembered peers.
    ///
    /// # Errors
    /// A message naming the listen address or topic that failed.
    pub fn new(
        mut swarm: Swarm<Behaviour>,
        shared: Arc<Shared>,
        store: Arc<dyn Store>,
        commands: mpsc::Receiver<NetCommand>,
        config: LoopConfig,
        libp2p_metrics: libp2p::metrics::Metrics,
    ) -> Result<Self, String> {
        for addr in &shared.config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        }
        let ledger_sync = ledger::LedgerSync::new(shared.ledger().cloned());
        let mut this = Self {
            swarm,
            shared,
            store,
            commands,
            config,
            libp2p_metrics,
            penalties: Penalties::default(),
            peer_info: HashMap::new(),
            connected_addrs: HashMap::new(),
            ages: stale::Ages::default(),
            pending: VecDeque::new(),
            sync_requests: HashMap::new(),
            delayed_syncs: Vec::new(),
            redial_soon: false,
            redial_dropped: HashMap::new(),
            regions: BTreeSet::new(),
            ticks: 0,
            lease_inbound: None,
            lease_calls: HashMap::new(),
            parked: HashMap::new(),
            lookups: HashMap::new(),
            answering: FuturesUnordered::new(),
            ledger: ledger_sync,
            quota: committee::QuotaNet::default(),
        };
        for region in this.config.regions.clone() {
            let _ = this.follow(&region)?;
        }
        // One services topic for the whole network, scored like the offers topics.
        let services = IdentTopic::new(SERVICES_TOPIC);
        let gs = &mut this.swarm.behaviour_mut().gossipsub;
        gs.subscribe(&services)
            .map_err(|e| format!("cannot subscribe to {services}: {e}"))?;
        gs.set_topic_params(services.clone(), offers_topic_params())
            .map_err(|e| format!("cannot score topic {services}: {e}"))?;
        this.ledger_subscribe()?;
        for (peer, addr) in this.config.bootstrap.clone() {
            this.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, addr.clone());
            this.dial(peer, vec![addr]);
        }
        match peers::load(this.store.as_ref()) {
            Ok(known) => {
                let want = this.config.target_peers as usize;
                for (i, (peer, addrs)) in known.into_iter().enumerate() {
                    for a in &addrs {
                        this.swarm.behaviour_mut().kad.add_address(&peer, a.clone());
                    }
                    if i < want {
                        this.dial(peer, addrs);
                    }
                }
            }
            Err(e) => warn!(error = %e, "could not load known peers"),
        }
        Ok(this)
    }

    /// Hands inbound lease requests to `tx` (the provider's lease service). Without it, the
    /// node answers every lease request with `unavailable`.
    #[must_use]
    pub fn with_lease_inbound(mut self, tx: mpsc::Sender<InboundLease>) -> Self {
        self.lease_inbound = Some(tx);
        self
    }

    /// Runs until a [`NetCommand::Shutdown`] (or every sender is gone).
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut stopping: Option<(oneshot::Sender<()>, tokio::time::Instant)> = None;
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                cmd = self.commands.recv(), if stopping.is_none() => match cmd {
                    Some(NetCommand::Publish(msg)) => self.publish(&msg),
                    Some(NetCommand::PublishService(msg)) => self.publish_service(&msg),
                    Some(NetCommand::Lease(call)) => self.send_lease(*call, false),
                    Some(NetCommand::Quota(call)) => self.send_quota(*call),
                    Some(NetCommand::Shutdown(done)) => {
                        self.retry_pending();
                        stopping = Some((done, tokio::time::Instant::now() + SHUTDOWN_GRACE));
                    }
                    None => break,
                },
                Some(done) = self.ledger.ingesting.next(), if !self.ledger.ingesting.is_empty() => {
                    self.on_ledger_ingested(done);
                }
                Some((channel, bytes)) = self.quota.answering.next(), if !self.quota.answering.is_empty() => {
                    self.on_quota_answered(channel, bytes);
                }
                Some((channel, answer)) = self.answering.next(), if !self.answering.is_empty() => {
                    match answer {
                        Some(bytes) => {
                            let _ = self.swarm.behaviour_mut().lease.send_response(channel, bytes);
                        }
                        // Dropping the channel closes the stream: the gateway fails over.
                        None => debug!("lease request not answered in time"),
                    }
                }
                _ = tick.tick() => {
                    self.on_tick();
                    if let Some((_, deadline)) = &stopping
                        && tokio::time::Instant::now() >= *deadline
                    {
                        if let Some((done, _)) = stopping.take() {
                            let _ = done.send(());
                        }
                        break;
                    }
                }
            }
        }
        info!("network stopped");
    }

    /// Subscribes to `region`'s offers; `Ok(true)` when newly followed.
    fn follow(&mut self, region: &str) -> Result<bool, String> {
        if self.regions.contains(region) || self.regions.len() >= MAX_REGION_TOPICS {
            return Ok(false);
        }
        let topic = IdentTopic::new(offers_topic(region));
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        gs.subscribe(&topic)
            .map_err(|e| format!("cannot subscribe to {topic}: {e}"))?;
        gs.set_topic_params(topic.clone(), offers_topic_params())
            .map_err(|e| format!("cannot score topic {topic}: {e}"))?;
        self.regions.insert(region.to_owned());
        info!(%region, "following region");
        Ok(true)
    }

    fn dial(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == *self.swarm.local_peer_id() || self.swarm.is_connected(&peer) {
            return;
        }
        let opts = DialOpts::peer_id(peer).addresses(addrs).build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!(%peer, error = %e, "dial not started");
        }
    }

    fn publish(&mut self, msg: &GossipMessage) {
        let region = match msg {
            GossipMessage::Offer(o) => o.body().region.clone(),
            GossipMessage::Withdrawal(_) => self.shared.config.region.clone(),
        };
        let until = match msg {
            GossipMessage::Offer(o) => o.body().expires_at,
            // A withdrawal matters as long as the offers it covers could still be held.
            GossipMessage::Withdrawal(w) => w
                .body()
                .issued_at
                .saturating_add(agora_protocol::offer::MAX_OFFER_TTL),
        };
        let pending = Pending {
            topic: IdentTopic::new(offers_topic(&region)).hash(),
            data: msg.encode(),
            until,
            attempts: 0,
        };
        self.try_publish(pending);
    }

    fn publish_service(&mut self, msg: &ServiceGossip) {
        let until = match msg {
            ServiceGossip::Record(r) => r.body().expires_at,
            // A withdrawal matters as long as the records it covers could still be held.
            ServiceGossip::Withdrawal(w) => w.body().issued_at.saturating_add(MAX_SERVICE_TTL),
        };
        let pending = Pending {
            topic: IdentTopic::new(SERVICES_TOPIC).hash(),
            data: msg.encode(),
            until,
            attempts: 0,
        };
        self.try_publish(pending);
    }

    fn try_publish(&mut self, mut p: Pending) {
        p.attempts += 1;
        let result = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(p.topic.clone(), p.data.clone());
        match result {
            Ok(_) | Err(gossipsub::PublishError::Duplicate) => {
                debug!(topic = %p.topic, attempts = p.attempts, "published");
                self.shared.metrics.publish("published");
            }
            Err(
                gossipsub::PublishError::NoPeersSubscribedToTopic
                | gossipsub::PublishError::AllQueuesFull(_),
            ) if clock::now() < p.until => {
                // Nobody subscribed yet (or everyone slow): keep it and try again.
                debug!(topic = %p.topic, attempts = p.attempts, "publish deferred");
                self.shared.metrics.publish("retried");
                if self.pending.len() >= MAX_PENDING {
                    self.pending.pop_front();
                    self.shared.metrics.publish("gave_up");
                }
                self.pending.push_back(p);
            }
            Err(e) => {
                warn!(topic = %p.topic, error = %e, "publish failed");
                self.shared.metrics.publish("gave_up");
            }
        }
    }

    fn retry_pending(&mut self) {
        for p in std::mem::take(&mut self.pending) {
            self.try_publish(p);
        }
    }

    fn penalise(&mut self, peer: PeerId, offence: Offence) {
        self.penalties.record(peer, offence);
        let score = self.app_score(&peer);
        self.swarm
            .behaviour_mut()
            .gossipsub
            .set_application_score(&peer, score);
        debug!(%peer, ?offence, score, "peer penalised");
    }

    /// `peer`'s application score: our penalties plus its weighted reputation (see
    /// [`crate::net::scoring::app_score`]).
    fn app_score(&self, peer: &PeerId) -> f64 {
        let reputation = match (self.shared.reputation(), agora_id_of(peer)) {
            (Some(r), Ok(id)) => r.gossip_score(&id),
            _ => 0.0,
        };
        crate::net::scoring::app_score(self.penalties.score(peer), reputation)
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        let now = clock::now();
        for peer in self.ages.due_resets(std::time::Instant::now()) {
            self.reset_peer(peer);
        }
        if !self.pending.is_empty() {
            self.retry_pending();
        }
        let due = tokio::time::Instant::now();
        let (ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed_syncs)
            .into_iter()
            .partition(|(_, at)| *at <= due);
        self.delayed_syncs = later;
        for (peer, _) in ready {
            if self.swarm.is_connected(&peer) {
                self.request_sync(Book::Offers, peer, None, 0);
            }
        }
        let expired = self.shared.market().expire(now);
        if expired > 0 {
            debug!(expired, "offers expired");
        }
        if self.ticks.is_multiple_of(20) {
            let expired = self.shared.services().expire(now);
            if expired > 0 {
                debug!(expired, "service records expired");
            }
        }
        // Every 5 s (or right after losing an address): keep enough connections; every
        // 10 s: decay penalties.
        if self.ticks.is_multiple_of(10) || std::mem::take(&mut self.redial_soon) {
            self.maintain_connections();
        }
        if self.ticks.is_multiple_of(20) {
            // Decayed penalties, and reputation (recomputed every 30 s) for every peer.
            let mut peers: BTreeSet<PeerId> =
                self.penalties.decay().into_iter().map(|(p, _)| p).collect();
            peers.extend(self.swarm.connected_peers().copied());
            for peer in peers {
                let score = self.app_score(&peer);
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .set_application_score(&peer, score);
            }
        }
        // Anti-entropy: now and then, sync with one connected peer.
        let sync_ticks = (self.config.sync_interval.as_millis() / TICK.as_millis()).max(1);
        self.ledger_tick(u128::from(self.ticks).is_multiple_of(sync_ticks));
        if u128::from(self.ticks).is_multiple_of(sync_ticks) {
            let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
            if !peers.is_empty() {
                let pick = usize::try_from(self.ticks).unwrap_or(0) % peers.len();
                if let Some(peer) = peers.get(pick) {
                    self.sync_round(*peer);
                }
            }
        }
        self.refresh_status();
    }

    fn maintain_connections(&mut self) {
        let connected = self.swarm.connected_peers().count();
        let target = self.config.target_peers as usize;
        if connected >= target {
            return;
        }
        for (peer, addr) in self.config.bootstrap.clone() {
            self.dial(peer, vec![addr]);
        }
        let mut candidates = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for entry in bucket.iter() {
                candidates.push((
                    *entry.node.key.preimage(),
                    entry.node.value.iter().cloned().collect::<Vec<_>>(),
                ));
            }
        }
        let unconnected: Vec<_> = candidates
            .into_iter()
            .filter(|(p, _)| !self.swarm.is_connected(p))
            .take(target - connected)
            .collect();
        for (peer, addrs) in unconnected {
            self.dial(peer, addrs);
        }
        // Below the target (the only way here): a random walk for more peers every 15 s,
        // at once when alone. Peers that bootstrapped through the same node at the same
        // moment learn of each other only so; a 5-minute walk left such a pair unconnected
        // for minutes (seen in the partition test's five-node start).
        if connected == 0 || self.ticks.is_multiple_of(WALK_TICKS) {
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }

    fn refresh_status(&mut self) {
        let listen_addrs = self.swarm.listeners().map(ToString::to_string).collect();
        let topics_of: HashMap<PeerId, Vec<String>> = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .map(|(p, ts)| (*p, ts.iter().map(ToString::to_string).collect()))
            .collect();
        let gs = &self.swarm.behaviour().gossipsub;
        let mut peers: Vec<PeerStatus> = self
            .connected_addrs
            .iter()
            .map(|(peer, addrs)| {
                let info = self.peer_info.get(peer);
                PeerStatus {
                    peer_id: peer.to_string(),
                    agora_id: agora_id_of(peer).ok().map(|id| id.to_string()),
                    addresses: addrs.iter().map(ToString::to_string).collect(),
                    agent_version: info.and_then(|i| i.agent_version.clone()),
                    rtt_ms: info
                        .and_then(|i| i.rtt)
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    score: gs.peer_score(peer),
                    app_score: self.app_score(peer),
                    topics: topics_of.get(peer).cloned().unwrap_or_default(),
                }
            })
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        self.shared
            .metrics
            .peers
            .set(i64::try_from(peers.len()).unwrap_or(i64::MAX));
        self.shared.set_status(NetStatus {
            listen_addrs,
            peers,
            topics: self.regions.iter().map(|r| offers_topic(r)).collect(),
        });
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.libp2p_metrics.record(&event);
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(ev)) => {
                self.libp2p_metrics.record(&ev);
                self.on_gossipsub(ev);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(ev)) => {
                self.libp2p_metrics.record(&ev);
                self.on_identify(ev);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ev)) => {
                self.libp2p_metrics.record(&ev);
                self.on_ping(ev);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(ev)) => {
                self.libp2p_metrics.record(&ev);
                self.on_kad(ev);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(ev)) => self.on_sync(Book::Offers, ev),
            SwarmEvent::Behaviour(BehaviourEvent::ServiceSync(ev)) => {
                self.on_sync(Book::Services, ev);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Lease(ev)) => self.on_lease(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Ledger(ev)) => self.on_ledger(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Quota(ev)) => self.on_quota(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Limits(never)) => match never {},
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address
                    .clone()
                    .with_p2p(*self.swarm.local_peer_id())
                    .unwrap_or(address);
                info!(address = %full, "listening");
                // A new interface (a container network re-attached, a cable plugged in) may
                // reach peers that were out of reach: keep connections up at once rather than
                // at the next round.
                self.redial_soon = true;
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                // An interface went away (a cable, a VPN, a container network detached):
                // connections over it are dead but would linger until pings fail. Drop them
                // all now and redial at once; live ones come back in milliseconds.
                warn!(%address, "listen address expired; reconnecting");
                let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                for peer in peers {
                    // Connections over other interfaces are dropped too (which interface a
                    // connection uses is not known here): the peer is redialled at the
                    // addresses it was connected at once they have closed.
                    if let Some(addrs) = self.connected_addrs.get(&peer) {
                        self.redial_dropped.insert(peer, addrs.clone());
                    }
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
                self.redial_soon = true;
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                debug!(peer = %peer_id, address = %endpoint.get_remote_address(), "connected");
                self.connected_addrs
                    .entry(peer_id)
                    .or_default()
                    .push(endpoint.get_remote_address().clone());
                let now = std::time::Instant::now();
                if self
                    .ages
                    .established(peer_id, connection_id, endpoint.is_listener(), now)
                {
                    // It dialled us past a connection it no longer has: reset it once its
                    // identify names its addresses (`stale`), so that gossipsub and the
                    // syncs treat the next connection as a first one.
                    info!(peer = %peer_id, "peer redialled past an open connection; resetting it");
                } else if num_established.get() == 1 {
                    self.sync_round(peer_id);
                    self.ledger_connected(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                cause,
                ..
            } => {
                debug!(peer = %peer_id, cause = ?cause, "connection closed");
                if self.ages.closed(&peer_id, connection_id) {
                    // A peer we reset is gone: redial it (now at its new address).
                    self.redial_soon = true;
                }
                if num_established == 0 {
                    self.connected_addrs.remove(&peer_id);
                    self.peer_info.remove(&peer_id);
                    self.ledger_disconnected(&peer_id);
                    if let Some(addrs) = self.redial_dropped.remove(&peer_id) {
                        debug!(peer = %peer_id, "redialling a peer dropped with an expired address");
                        self.dial(peer_id, addrs);
                    }
                } else if let Some(list) = self.connected_addrs.get_mut(&peer_id) {
                    let gone = endpoint.get_remote_address();
                    if let Some(i) = list.iter().position(|a| a == gone) {
                        list.swap_remove(i);
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(peer = ?peer_id, %error, "dial failed");
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                debug!(%error, "incoming connection failed");
            }
            _ => {}
        }
    }

    fn on_gossipsub(&mut self, ev: gossipsub::Event) {
        match ev {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                if self.ledger.is_topic(&message.topic) {
                    let acceptance =
                        self.on_ledger_gossip(message.source, propagation_source, &message.data);
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            acceptance,
                        );
                    return;
                }
                let topic = message.topic.as_str();
                let verdict = if topic == SERVICES_TOPIC {
                    self.shared
                        .services()
                        .on_gossip(topic, &message.data, clock::now())
                } else {
                    self.shared
                        .market()
                        .on_gossip(topic, &message.data, clock::now())
                };
                let acceptance = match verdict {
                    Verdict::Accept | Verdict::Known => MessageAcceptance::Accept,
                    Verdict::Ignore(_, offence) => {
                        if let Some(o) = offence {
                            self.penalise(propagation_source, o);
                        }
                        MessageAcceptance::Ignore
                    }
                    Verdict::Reject(_) => {
                        self.penalise(propagation_source, Offence::Invalid);
                        MessageAcceptance::Reject
                    }
                };
                debug!(from = %propagation_source, verdict = verdict.label(), "gossip");
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                if self.config.follow_all
                    && let Some(region) = region_of_topic(topic.as_str())
                {
                    match self.follow(region) {
                        // A region new to us: what was published on it before our mesh
                        // formed never reached us. Catch up from the peer that announced
                        // it, once its own offers had time to arrive.
                        Ok(true) => self
                            .delayed_syncs
                            .push((peer_id, tokio::time::Instant::now() + FOLLOW_SYNC_DELAY)),
                        Ok(false) => {}
                        Err(e) => warn!(error = %e, "cannot follow region"),
                    }
                }
                debug!(peer = %peer_id, %topic, "peer subscribed");
                if !self.pending.is_empty() {
                    self.retry_pending();
                }
            }
            gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            } => {
                debug!(peer = %peer_id, ?failed_messages, "slow peer");
            }
            gossipsub::Event::GossipsubNotSupported { peer_id } => {
                debug!(peer = %peer_id, "peer does not speak gossipsub");
            }
            gossipsub::Event::Unsubscribed { .. } => {}
        }
    }

    /// Drops every connection to `peer`, which redialled us past an open one (see
    /// `stale`); it is redialled once the last one has closed.
    fn reset_peer(&mut self, peer: PeerId) {
        debug!(%peer, "dropping the connections of a peer that redialled");
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    fn on_identify(&mut self, ev: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = ev else {
            return;
        };
        if info.protocol_version != PROTOCOL_VERSION {
            info!(peer = %peer_id, version = %info.protocol_version, "not an Agora peer; disconnecting");
            let _ = self.swarm.disconnect_peer_id(peer_id);
            return;
        }
        let addrs: Vec<Multiaddr> = info
            .listen_addrs
            .iter()
            .filter(|a| peers::dialable(a))
            .take(peers::MAX_ADDRS)
            .cloned()
            .collect();
        if info.protocols.contains(&KAD_PROTOCOL) {
            for a in &addrs {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer_id, a.clone());
            }
        }
        if let Err(e) = peers::remember(
            self.store.as_ref(),
            &peer_id,
            &addrs,
            clock::now().as_unix_millis(),
        ) {
            warn!(error = %e, "could not remember peer");
        }
        let entry = self.peer_info.entry(peer_id).or_default();
        entry.agent_version = Some(info.agent_version.chars().take(64).collect());
        // Its new addresses are known now: a peer awaiting a reset can be reset and redialled.
        if self.ages.take_reset(&peer_id) {
            self.reset_peer(peer_id);
        }
    }

    fn on_ping(&mut self, ev: ping::Event) {
        match ev.result {
            Ok(rtt) => self.peer_info.entry(ev.peer).or_default().rtt = Some(rtt),
            Err(e) => {
                debug!(peer = %ev.peer, error = %e, "ping failed; closing connection");
                self.swarm.close_connection(ev.connection);
            }
        }
    }
}

impl NetworkLoop {
    /// Sends a lease request; without a known address the first dial fails, and the peer is
    /// looked up in the DHT once before giving up.
    fn send_lease(&mut self, call: LeaseCall, looked_up: bool) {
        if call.reply.is_closed() {
            return;
        }
        if call.peer == *self.swarm.local_peer_id() {
            let _ = call
                .reply
                .send(Err("a node does not send lease requests to itself".into()));
            return;
        }
        if self.lease_calls.len() >= MAX_LEASE_CALLS {
            let _ = call
                .reply
                .send(Err("too many lease requests in flight".into()));
            return;
        }
        let id = self
            .swarm
            .behaviour_mut()
            .lease
            .send_request(&call.peer, call.request.clone());
        self.lease_calls.insert(id, PendingCall { call, looked_up });
    }

    fn look_up(&mut self, call: LeaseCall) {
        let parked: usize = self.parked.values().map(Vec::len).sum();
        if parked + self.lease_calls.len() >= MAX_LEASE_CALLS {
            let _ = call
                .reply
                .send(Err("too many lease requests in flight".into()));
            return;
        }
        let peer = call.peer;
        let waiting = self.parked.entry(peer).or_default();
        waiting.push(call);
        if waiting.len() == 1 {
            debug!(%peer, "looking up a provider's addresses");
            let qid = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
            self.lookups.insert(qid, peer);
        }
    }

    fn on_kad(&mut self, ev: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = ev
        else {
            return;
        };
        let Some(&peer) = self.lookups.get(&id) else {
            return;
        };
        let kad::QueryResult::GetClosestPeers(result) = result else {
            return;
        };
        let peers = match result {
            Ok(ok) => ok.peers,
            Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
        };
        let found = peers.into_iter().find(|p| p.peer_id == peer);
        if found.is_none() && !step.last {
            return;
        }
        self.lookups.remove(&id);
        let calls = self.parked.remove(&peer).unwrap_or_default();
        match found {
            Some(info) if !info.addrs.is_empty() => {
                for a in info.addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer, a);
                }
                for call in calls {
                    self.send_lease(call, true);
                }
            }
            _ => {
                for call in calls {
                    let _ = call
                        .reply
                        .send(Err(format!("no address known for peer {peer}")));
                }
            }
        }
    }

    fn on_lease(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        match ev {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.on_lease_request(peer, request, channel),
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(p) = self.lease_calls.remove(&request_id) {
                    let _ = p.call.reply.send(Ok(response));
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let Some(p) = self.lease_calls.remove(&request_id) else {
                    return;
                };
                debug!(%peer, %error, "lease request failed");
                if matches!(error, request_response::OutboundFailure::DialFailure) && !p.looked_up {
                    self.look_up(p.call);
                } else {
                    let _ = p.call.reply.send(Err(error.to_string()));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "lease answer failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_lease_request(
        &mut self,
        peer: PeerId,
        request: Vec<u8>,
        channel: ResponseChannel<Vec<u8>>,
    ) {
        let refuse = |detail: &str| {
            agora_protocol::lease_rpc::Response::Refused(agora_protocol::lease::Refusal::new(
                agora_protocol::lease::RefusalCode::Unavailable,
                detail,
            ))
            .encode()
            .unwrap_or_default()
        };
        if self.answering.len() >= MAX_INBOUND_LEASES {
            let _ = self
                .swarm
                .behaviour_mut()
                .lease
                .send_response(channel, refuse("too many lease requests at once; retry"));
            return;
        }
        let Some(tx) = &self.lease_inbound else {
            let _ = self
                .swarm
                .behaviour_mut()
                .lease
                .send_response(channel, refuse("this node is not a provider"));
            return;
        };
        let (reply, answer) = oneshot::channel();
        match tx.try_send(InboundLease {
            peer,
            request,
            reply,
        }) {
            Ok(()) => self.answering.push(Box::pin(async move {
                let answer = tokio::time::timeout(LEASE_ANSWER_TIMEOUT, answer)
                    .await
                    .ok()
                    .and_then(Result::ok);
                (channel, answer)
            })),
            Err(_) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .lease
                    .send_response(channel, refuse("the provider is busy; retry"));
            }
        }
    }
}

/// Splits a bootstrap multiaddr into its peer id and the address without `/p2p`.
pub fn split_peer(addr: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut addr = addr.clone();
    match addr.pop() {
        Some(libp2p::multiaddr::Protocol::P2p(peer)) => Some((peer, addr)),
        _ => None,
    }
}

//! The network loop's ledger part: announcements on [`LEDGER_TOPIC`], sync rounds over
//! [`LEDGER_PROTOCOL`](crate::net::LEDGER_PROTOCOL), answers to peers' requests.
//!
//! ```text
//! tick: log changed (≥ 1 s since the last) or 10 s passed ─▶ Announce on agora/v1/ledger
//! peer's Announce: other state hash, a head not held ─▶ round with its origin
//! connection opened, every 30 s one peer, entries waiting for parents ─▶ round
//! round: Page(frontier) ─▶ ingest ─▶ Page(next) … ─▶ Fetch(missing) … ─▶ done
//!        (again at once if an announcement came meanwhile)
//! ```
//!
//! One round per peer at a time and at most [`MAX_ROUNDS`] in all, one request in flight
//! per round, every request timing out (request-response's timeout); pages and fetches per
//! round are bounded. Received entries are verified and written on a blocking thread
//! ([`Ledger::ingest`]), never on the loop. A malformed answer or request, a badly signed
//! or badly linked entry, or a malformed announcement costs the peer a penalty.

use core::time::Duration;
use std::collections::HashMap;
use std::sync::Arc;

use agora_protocol::ledger::Cursor;
use agora_protocol::ledger_rpc::{Announce, LEDGER_TOPIC, Request, Response};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use libp2p::gossipsub::{IdentTopic, MessageAcceptance, TopicHash};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::NetworkLoop;
use crate::clock;
use crate::ledger::{Ingested, Ledger};
use crate::net::scoring::Offence;

/// Most sync rounds at once (one per peer).
pub(super) const MAX_ROUNDS: usize = 8;
/// Most pages one round asks for (256 entries each: catch-up of about 100,000 entries).
const MAX_PAGES: u32 = 400;
/// Most fetches by hash one round makes after its pages.
const MAX_FETCHES: u32 = 32;
/// A round older than this is forgotten (its requests time out well before).
const ROUND_TIMEOUT: Duration = Duration::from_secs(600);
/// Announce at least this often, changed or not.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(10);
/// And at most this often after changes.
const ANNOUNCE_DEBOUNCE: Duration = Duration::from_secs(1);

/// What a finished ingest was the answer to.
pub(super) enum Step {
    /// A page, and where the next one starts.
    Page(Option<Cursor>),
    /// A fetch by hash.
    Fetch,
}

type Ingesting = BoxFuture<'static, (PeerId, Step, Option<Ingested>)>;

struct Round {
    started: tokio::time::Instant,
    pages: u32,
    fetches: u32,
    /// An announcement asked for another round while this one ran.
    again: bool,
}

/// The loop's ledger state.
pub(super) struct LedgerSync {
    ledger: Option<Arc<Ledger>>,
    changes: Option<watch::Receiver<u64>>,
    topic: TopicHash,
    last_announce: Option<tokio::time::Instant>,
    rounds: HashMap<PeerId, Round>,
    requests: HashMap<OutboundRequestId, PeerId>,
    pub(super) ingesting: FuturesUnordered<Ingesting>,
    syncs: u64,
}

impl LedgerSync {
    /// The state for `ledger` (none: the node does not take part).
    pub(super) fn new(ledger: Option<Arc<Ledger>>) -> Self {
        Self {
            changes: ledger.as_ref().map(|l| l.changes()),
            ledger,
            topic: IdentTopic::new(LEDGER_TOPIC).hash(),
            last_announce: None,
            rounds: HashMap::new(),
            requests: HashMap::new(),
            ingesting: FuturesUnordered::new(),
            syncs: 0,
        }
    }

    /// Whether `topic` is the ledger's.
    pub(super) fn is_topic(&self, topic: &TopicHash) -> bool {
        *topic == self.topic
    }
}

impl NetworkLoop {
    /// Subscribes to the ledger topic (when the node has a ledger).
    pub(super) fn ledger_subscribe(&mut self) -> Result<(), String> {
        if self.ledger.ledger.is_none() {
            return Ok(());
        }
        let topic = IdentTopic::new(LEDGER_TOPIC);
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        gs.subscribe(&topic)
            .map_err(|e| format!("cannot subscribe to {topic}: {e}"))?;
        gs.set_topic_params(topic.clone(), crate::net::scoring::offers_topic_params())
            .map_err(|e| format!("cannot score topic {topic}: {e}"))?;
        Ok(())
    }

    /// Announces when the log changed (debounced) or every [`ANNOUNCE_EVERY`]; starts rounds
    /// for anti-entropy and for entries waiting on parents; forgets stale rounds.
    pub(super) fn ledger_tick(&mut self, every_sync: bool) {
        let Some(ledger) = self.ledger.ledger.clone() else {
            return;
        };
        let now = tokio::time::Instant::now();
        let changed = self
            .ledger
            .changes
            .as_ref()
            .is_some_and(|c| c.has_changed().unwrap_or(false));
        let since = self.ledger.last_announce.map(|t| now - t);
        let due = match since {
            None => true,
            Some(s) => s >= ANNOUNCE_EVERY || (changed && s >= ANNOUNCE_DEBOUNCE),
        };
        if due {
            if let Some(c) = self.ledger.changes.as_mut() {
                c.borrow_and_update();
            }
            self.ledger.last_announce = Some(now);
            self.ledger_announce(&ledger);
        }
        self.ledger
            .rounds
            .retain(|_, r| now - r.started < ROUND_TIMEOUT);
        if every_sync {
            let expired = ledger.expire(clock::now());
            if expired > 0 {
                debug!(expired, "ledger entries waited too long for their parents");
            }
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        if peers.is_empty() {
            return;
        }
        let waiting = !ledger.missing(1).is_empty();
        if every_sync || (waiting && self.ledger.rounds.is_empty()) {
            self.ledger.syncs = self.ledger.syncs.wrapping_add(1);
            let pick = usize::try_from(self.ledger.syncs).unwrap_or(0) % peers.len();
            if let Some(peer) = peers.get(pick) {
                self.ledger_round(*peer);
            }
        }
    }

    fn ledger_announce(&mut self, ledger: &Ledger) {
        let announce = ledger.announce(clock::now());
        let bytes = match announce.encode() {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "cannot encode a ledger announcement");
                return;
            }
        };
        let topic = self.ledger.topic.clone();
        match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            Ok(_) => debug!(
                entries = announce.entries,
                state_hash = %announce.state_hash,
                "ledger announced"
            ),
            Err(e) => debug!(error = %e, "ledger announcement not sent"),
        }
    }

    /// A new connection: catch up with the peer at once.
    pub(super) fn ledger_connected(&mut self, peer: PeerId) {
        self.ledger_round(peer);
    }

    /// A peer is gone: its round ends.
    pub(super) fn ledger_disconnected(&mut self, peer: &PeerId) {
        self.ledger.rounds.remove(peer);
    }

    /// Judges an announcement; starts a round with its origin (or whoever relayed it) when
    /// it shows entries this log lacks.
    pub(super) fn on_ledger_gossip(
        &mut self,
        origin: Option<PeerId>,
        relayed_by: PeerId,
        data: &[u8],
    ) -> MessageAcceptance {
        let Some(ledger) = self.ledger.ledger.clone() else {
            return MessageAcceptance::Ignore;
        };
        match Announce::decode(data) {
            Ok(announce) => {
                self.shared.metrics.gossip("ledger", "accepted");
                if ledger.wants(&announce) {
                    let peer = origin
                        .filter(|p| self.swarm.is_connected(p))
                        .unwrap_or(relayed_by);
                    debug!(%peer, entries = announce.entries, "peer's ledger has entries we lack");
                    self.ledger_round(peer);
                }
                MessageAcceptance::Accept
            }
            Err(e) => {
                debug!(from = %relayed_by, error = %e, "malformed ledger announcement");
                self.shared.metrics.gossip("ledger", "malformed");
                self.penalise(relayed_by, Offence::Invalid);
                MessageAcceptance::Reject
            }
        }
    }

    /// Starts a round with `peer`, or asks the running one to go again.
    fn ledger_round(&mut self, peer: PeerId) {
        let Some(ledger) = self.ledger.ledger.clone() else {
            return;
        };
        if peer == *self.swarm.local_peer_id() || !self.swarm.is_connected(&peer) {
            return;
        }
        if let Some(round) = self.ledger.rounds.get_mut(&peer) {
            round.again = true;
            return;
        }
        if self.ledger.rounds.len() >= MAX_ROUNDS {
            return;
        }
        self.ledger.rounds.insert(
            peer,
            Round {
                started: tokio::time::Instant::now(),
                pages: 1,
                fetches: 0,
                again: false,
            },
        );
        self.ledger_send(peer, &ledger.page_request(None));
    }

    fn ledger_send(&mut self, peer: PeerId, request: &Request) {
        match request.encode() {
            Ok(bytes) => {
                let id = self.swarm.behaviour_mut().ledger.send_request(&peer, bytes);
                self.ledger.requests.insert(id, peer);
            }
            Err(e) => {
                warn!(error = %e, "cannot encode a ledger request");
                self.ledger.rounds.remove(&peer);
            }
        }
    }

    /// Request-response events of the ledger protocol.
    pub(super) fn on_ledger(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        match ev {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.answer_ledger(peer, &request, channel),
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if self.ledger.requests.remove(&request_id).is_some() {
                    self.on_ledger_response(peer, &response);
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if self.ledger.requests.remove(&request_id).is_some() {
                    debug!(%peer, %error, "ledger request failed");
                    self.ledger.rounds.remove(&peer);
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "ledger answer failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn answer_ledger(&mut self, peer: PeerId, request: &[u8], channel: ResponseChannel<Vec<u8>>) {
        let Some(ledger) = self.ledger.ledger.clone() else {
            return;
        };
        let request = match Request::decode(request) {
            Ok(r) => r,
            Err(e) => {
                // Dropping the channel closes the stream: the peer gets no answer.
                debug!(%peer, error = %e, "malformed ledger request");
                self.penalise(peer, Offence::BadSync);
                return;
            }
        };
        match ledger.answer(&request).encode() {
            Ok(bytes) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .ledger
                    .send_response(channel, bytes);
            }
            Err(e) => warn!(error = %e, "cannot encode a ledger answer"),
        }
    }

    fn on_ledger_response(&mut self, peer: PeerId, bytes: &[u8]) {
        let Some(ledger) = self.ledger.ledger.clone() else {
            return;
        };
        let (step, entries) = match Response::decode(bytes) {
            Ok(Response::Page { entries, next }) => (Step::Page(next), entries),
            Ok(Response::Entries(entries)) => (Step::Fetch, entries),
            Err(e) => {
                debug!(%peer, error = %e, "malformed ledger answer");
                self.shared.metrics.ledger("synced", "malformed");
                self.penalise(peer, Offence::BadSync);
                self.ledger.rounds.remove(&peer);
                return;
            }
        };
        self.ledger.ingesting.push(Box::pin(async move {
            let ingested =
                tokio::task::spawn_blocking(move || ledger.ingest(clock::now(), &entries))
                    .await
                    .ok();
            (peer, step, ingested)
        }));
    }

    /// A page or fetch was ingested: penalise bad entries, then go on with the round.
    pub(super) fn on_ledger_ingested(
        &mut self,
        (peer, step, ingested): (PeerId, Step, Option<Ingested>),
    ) {
        let Some(ledger) = self.ledger.ledger.clone() else {
            return;
        };
        let Some(ingested) = ingested else {
            self.ledger.rounds.remove(&peer);
            return;
        };
        if let Some((digest, reason)) = ingested.faults.first() {
            debug!(%peer, %digest, %reason, faults = ingested.faults.len(), "peer sent bad ledger entries");
            self.penalise(peer, Offence::Invalid);
        }
        if ingested.accepted > 0 {
            debug!(%peer, accepted = ingested.accepted, "ledger entries synced");
        }
        let Some(round) = self.ledger.rounds.get_mut(&peer) else {
            return;
        };
        let after_page = matches!(step, Step::Page(_));
        let next = match step {
            Step::Page(Some(cursor)) if round.pages < MAX_PAGES && ingested.faults.is_empty() => {
                round.pages += 1;
                Some(ledger.page_request(Some(cursor)))
            }
            // After pages, or after a fetch that got somewhere: fetch what entries wait on.
            Step::Page(_) | Step::Fetch
                if !ingested.missing.is_empty()
                    && round.fetches < MAX_FETCHES
                    && ingested.faults.is_empty()
                    && (after_page || ingested.accepted > 0 || ingested.pending > 0) =>
            {
                round.fetches += 1;
                Some(Request::Fetch(ingested.missing))
            }
            _ => None,
        };
        match next {
            Some(request) => self.ledger_send(peer, &request),
            None => {
                let again = self.ledger.rounds.remove(&peer).is_some_and(|r| r.again);
                if again {
                    self.ledger_round(peer);
                }
            }
        }
    }
}

//! Offer sync (`/agora/offer-sync/1`) at one node: periodic anti-entropy with one random
//! peer, catch-up when a connection opens, and answering peers' requests page by page.

use agora_protocol::gossip::{GossipMessage, MAX_SYNC_PAGE, SyncRequest};
use agora_protocol::market::Verdict;
use agora_protocol::{AgoraId, Offer, Signed, SignedError};

use super::{Event, Sched, World};
use crate::gossip::{Frame, MsgIdx};
use crate::rng;
use crate::workload::timestamp;

/// Penalty points for a sync page with bad offers (the node's `Offence::BadSync`).
const BAD_SYNC_POINTS: f64 = 10.0;

impl World {
    /// Every `sync_interval`: drop expired offers, then sync with one random peer.
    pub(super) fn sync_tick(&mut self, ctx: &mut impl Sched, n: u32) {
        let now = ctx.now();
        let interval = self.params.sync_interval;
        let Some(node) = self.nodes.get_mut(n as usize) else {
            return;
        };
        node.market.expire(timestamp(now));
        let epoch = node.epoch;
        let count = node.peers.len();
        let peer = (count > 0)
            .then(|| rng::index(ctx.rng(), count))
            .and_then(|i| node.peers.get(i))
            .map(|p| p.node);
        if let Some(peer) = peer {
            self.request_sync(ctx, n, peer, None);
        }
        ctx.at(now.saturating_add(interval), n, Event::SyncTick { epoch });
    }

    /// Asks `peer` for the page after `after` (with our book's digest on the first page).
    pub(super) fn request_sync(
        &mut self,
        ctx: &mut impl Sched,
        n: u32,
        peer: u32,
        after: Option<AgoraId>,
    ) {
        let now = timestamp(ctx.now());
        let Some(node) = self.nodes.get(n as usize) else {
            return;
        };
        let digest = after.is_none().then(|| node.market.digest(now));
        let request = SyncRequest {
            after,
            limit: MAX_SYNC_PAGE,
            digest,
        };
        self.send(ctx, n, peer, Frame::SyncRequest(Box::new(request)));
    }

    /// Answers a sync request with one page of our book.
    pub(super) fn on_sync_request(
        &mut self,
        ctx: &mut impl Sched,
        n: u32,
        from: u32,
        req: &SyncRequest,
    ) {
        let now = timestamp(ctx.now());
        let Some(node) = self.nodes.get(n as usize) else {
            return;
        };
        let page = node.market.page(req, now);
        let next = page.next;
        // Withdrawals are not simulated yet, so pages carry none.
        let ids: Vec<MsgIdx> = page
            .offers
            .iter()
            .filter_map(|o| self.offer_index.get(&o.digest()).copied())
            .collect();
        self.send(
            ctx,
            n,
            from,
            Frame::SyncResponse {
                offers: ids.into(),
                next,
            },
        );
    }

    /// Applies a sync page: each offer verified like gossip, then given to the book.
    pub(super) fn on_sync_response(
        &mut self,
        ctx: &mut impl Sched,
        n: u32,
        from: u32,
        offers: &[MsgIdx],
        next: Option<AgoraId>,
    ) {
        let now = ctx.now();
        for &msg in offers {
            let offer = self.synced_offer(msg);
            let Some(node) = self.nodes.get_mut(n as usize) else {
                return;
            };
            match offer {
                Ok(offer) => {
                    let verdict = node.market.on_synced(offer, timestamp(now)).verdict;
                    self.metrics.sync_verdict(verdict.label());
                    if verdict == Verdict::Accept {
                        self.metrics.delivered(msg, n, now, None);
                    }
                }
                Err(_) => {
                    self.metrics.sync_verdict("bad_signature");
                    if let Some(peer) = node.peer_mut(from) {
                        peer.score.penalise(BAD_SYNC_POINTS);
                    }
                }
            }
        }
        if let Some(next) = next {
            self.request_sync(ctx, n, from, Some(next));
        }
    }

    /// Message `msg`'s signed offer as a sync page carries it (its bytes after the kind
    /// byte), decoded and verified. Gossip decoding is that same decode plus the kind byte
    /// and the topic check, so when the shared gossip decode of `msg` succeeded its offer
    /// is exactly this one, and the book shares that copy; otherwise the offer alone is
    /// decoded here.
    fn synced_offer(&mut self, msg: MsgIdx) -> Result<Signed<Offer>, SignedError> {
        let shared =
            super::gossip::decoded(&mut self.messages, &self.topic_names, &self.verifier, msg);
        if let Ok(GossipMessage::Offer(offer)) = shared {
            return Ok(offer);
        }
        let wire = self
            .messages
            .get(msg as usize)
            .and_then(|m| m.bytes.get(1..))
            .unwrap_or(&[]);
        Signed::<Offer>::decode(wire, &self.verifier)
    }
}

//! Offer sync (`/agora/offer-sync/2`) at one node: periodic anti-entropy with one random
//! peer, catch-up when a connection opens, and answering peers' requests page by page.
//! Requests list what the asker's book holds, so pages carry only the offers it lacks or
//! holds older (the protocol's `Market::sync_request` and `Market::page`, as in the node).
//! First pages carry the newest withdrawals the peer remembers, as in the node, so a node
//! that missed a withdrawal's gossip drops the offer at its next sync.

use agora_protocol::gossip::{GossipMessage, SyncRequest};
use agora_protocol::market::Verdict;
use agora_protocol::{AgoraId, Offer, OfferWithdrawal, Signed, SignedError};

use super::{Event, Sched, SignedKey, World};
use crate::gossip::{Frame, MsgIdx, SyncPage};
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
        let count = node.peer_ids().len();
        let peer = (count > 0)
            .then(|| rng::index(ctx.rng(), count))
            .and_then(|i| node.peer_ids().get(i))
            .copied();
        if let Some(peer) = peer {
            self.request_sync(ctx, n, peer, None);
        }
        ctx.at(now.saturating_add(interval), n, Event::SyncTick { epoch });
    }

    /// Asks `peer` for the page after `after`, as the node does: the protocol's request
    /// lists what our book holds after `after` (and carries its digest on the first page),
    /// so the page brings only offers we lack or hold older.
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
        let request = node.market.sync_request(after, now);
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
        // Every offer and withdrawal a book holds came from the message table, so its
        // key names its message (no need to hash its bytes).
        let index = |key: SignedKey| self.signed_index.get(&key).copied();
        let page = SyncPage {
            offers: page
                .offers
                .iter()
                .filter_map(|o| index(SignedKey::offer(o.body())))
                .collect(),
            withdrawals: page
                .withdrawals
                .iter()
                .filter_map(|w| index(SignedKey::withdrawal(w.body())))
                .collect(),
            next: page.next,
        };
        self.send(ctx, n, from, Frame::SyncResponse(Box::new(page)));
    }

    /// Applies a sync page: each offer, then each withdrawal, verified like gossip and
    /// given to the book (the node's order).
    pub(super) fn on_sync_response(
        &mut self,
        ctx: &mut impl Sched,
        n: u32,
        from: u32,
        page: &SyncPage,
    ) {
        let now = ctx.now();
        let offers = page.offers.iter().map(|&msg| (msg, false));
        let withdrawals = page.withdrawals.iter().map(|&msg| (msg, true));
        for (msg, withdrawal) in offers.chain(withdrawals) {
            let signed = self.synced(msg, withdrawal);
            let Some(node) = self.nodes.get_mut(n as usize) else {
                return;
            };
            let verdict = match signed {
                Ok(GossipMessage::Offer(offer)) => node.market.on_synced(offer, timestamp(now)),
                Ok(GossipMessage::Withdrawal(w)) => {
                    node.market.on_synced_withdrawal(w, timestamp(now))
                }
                Err(_) => {
                    self.metrics.sync_verdict("bad_signature");
                    node.rescore(from, |s| s.penalise(BAD_SYNC_POINTS));
                    continue;
                }
            }
            .verdict;
            self.metrics.sync_verdict(verdict.label());
            // Only nodes following the message's topic can be among its eligible ones
            // (subscriptions never change), so the others skip the metrics' bookkeeping:
            // most offers synced across regions.
            let topic = self.messages.get(msg as usize).map(|m| m.topic);
            if verdict == Verdict::Accept && topic.is_some_and(|t| node.subscribes(t)) {
                self.metrics.delivered(msg, n, now, None);
            }
        }
        if let Some(next) = page.next {
            self.request_sync(ctx, n, from, Some(next));
        }
    }

    /// Message `msg`'s signed offer (or withdrawal) as a sync page carries it (its bytes
    /// after the kind byte), decoded and verified. Gossip decoding is that same decode
    /// plus the kind byte and the topic check, so when the shared gossip decode of `msg`
    /// succeeded its message is exactly this one, and the book shares that copy;
    /// otherwise the bytes alone are decoded here.
    fn synced(&mut self, msg: MsgIdx, withdrawal: bool) -> Result<GossipMessage, SignedError> {
        let shared =
            super::gossip::decoded(&mut self.messages, &self.topic_names, &self.verifier, msg);
        match shared {
            Ok(GossipMessage::Offer(o)) if !withdrawal => return Ok(GossipMessage::Offer(o)),
            Ok(GossipMessage::Withdrawal(w)) if withdrawal => {
                return Ok(GossipMessage::Withdrawal(w));
            }
            _ => {}
        }
        let wire = self
            .messages
            .get(msg as usize)
            .and_then(|m| m.bytes.get(1..))
            .unwrap_or(&[]);
        if withdrawal {
            Signed::<OfferWithdrawal>::decode(wire, &self.verifier).map(GossipMessage::Withdrawal)
        } else {
            Signed::<Offer>::decode(wire, &self.verifier).map(GossipMessage::Offer)
        }
    }
}

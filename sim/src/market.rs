//! A simulated node's market: the protocol's [`OfferBook`] and [`RateLimiter`] fed the way
//! the node's `Market` feeds them, with the same verdicts for gossipsub.
//!
//! The node's `Market` lives in `agora-node` (with its store and metrics), which the
//! simulator cannot depend on; this is its in-memory core, kept to the same rules:
//! decode and verify on the topic, rate-limit the provider (burst 10, one per 2 s), apply
//! to the book, and map the book's answer to a verdict. The sync page follows
//! `Market::page`: an empty page for an equal digest, else up to a page of unexpired
//! offers in provider order after the cursor. (Withdrawals are not simulated yet, so pages
//! carry none.)

use core::time::Duration;

use agora_protocol::gossip::{GossipError, GossipMessage, MAX_SYNC_PAGE, SyncRequest, book_digest};
use agora_protocol::offer_book::{OfferBook, OfferBookConfig, OfferRejected};
use agora_protocol::rate::{RateLimit, RateLimiter};
use agora_protocol::{AgoraId, Digest, Offer, Signed, Timestamp, Verifier};

/// The node's limit on one provider's messages: a burst of 10, then one every 2 s.
pub const PROVIDER_RATE: RateLimit = RateLimit {
    burst: 10,
    interval: Duration::from_secs(2),
};

/// What the node holds against a peer, beyond gossipsub's own accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// Relayed an offer older than one held.
    Stale,
    /// Relayed more of one provider's messages than the rate limit allows.
    RateLimited,
}

impl Offence {
    /// Penalty points, as in the node's `net/scoring.rs`.
    pub fn points(self) -> f64 {
        match self {
            Offence::Stale | Offence::RateLimited => 2.0,
        }
    }
}

/// What gossipsub does with a message (the node's `market::Verdict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: applied, delivered and forwarded.
    Accept,
    /// Valid and already held (it came by sync first): forwarded, nothing changes.
    Known,
    /// Not forwarded, no gossipsub penalty; the reason and an offence, if any.
    Ignore(&'static str, Option<Offence>),
    /// Invalid: gossipsub penalises the sender (P4).
    Reject(&'static str),
}

impl Verdict {
    /// The metrics label (as the node's).
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Accept => "accepted",
            Verdict::Known => "duplicate",
            Verdict::Ignore(reason, _) | Verdict::Reject(reason) => reason,
        }
    }

    /// Whether gossipsub forwards the message.
    pub fn forwards(&self) -> bool {
        matches!(self, Verdict::Accept | Verdict::Known)
    }
}

fn rejected_verdict(e: &OfferRejected) -> Verdict {
    match e {
        OfferRejected::Duplicate { .. } => Verdict::Known,
        OfferRejected::Stale { .. } => Verdict::Ignore("stale", Some(Offence::Stale)),
        OfferRejected::Expired { .. } => Verdict::Ignore("expired", None),
        OfferRejected::FromFuture { .. } => Verdict::Ignore("from_future", None),
        OfferRejected::Full { .. } => Verdict::Ignore("book_full", None),
    }
}

/// One node's offer book and provider rate limits.
#[derive(Debug, Clone)]
pub struct Market {
    book: OfferBook,
    limiter: RateLimiter<AgoraId>,
}

impl Market {
    /// An empty market with the node's default bounds.
    pub fn new() -> Self {
        let config = OfferBookConfig::default();
        Market {
            book: OfferBook::new(config),
            limiter: RateLimiter::new(PROVIDER_RATE, config.max_offers.saturating_mul(2)),
        }
    }

    /// The book.
    pub fn book(&self) -> &OfferBook {
        &self.book
    }

    /// Validates gossip `data` that arrived on `topic` at `now` and applies it.
    pub fn on_gossip(
        &mut self,
        topic: &str,
        data: &[u8],
        now: Timestamp,
        verifier: &impl Verifier,
    ) -> Verdict {
        self.on_decoded(GossipMessage::decode_on_topic(data, topic, verifier), now)
    }

    /// Applies the outcome of [`GossipMessage::decode_on_topic`] for a message that
    /// arrived at `now`: the second half of [`Market::on_gossip`], for a driver that
    /// decodes each distinct message once and shares the result.
    pub fn on_decoded(
        &mut self,
        decoded: Result<GossipMessage, GossipError>,
        now: Timestamp,
    ) -> Verdict {
        let msg = match decoded {
            Ok(m) => m,
            Err(e) => return Verdict::Reject(e.reason()),
        };
        if self.limiter.check(&msg.provider(), now) {
            self.apply(msg, now)
        } else {
            Verdict::Ignore("rate_limited", Some(Offence::RateLimited))
        }
    }

    /// Applies an offer that came by sync (already verified).
    pub fn on_synced(&mut self, offer: Signed<Offer>, now: Timestamp) -> Verdict {
        self.apply(GossipMessage::Offer(offer), now)
    }

    /// Applies one of the node's own messages before it is published.
    pub fn apply_own(&mut self, msg: GossipMessage, now: Timestamp) -> Verdict {
        self.apply(msg, now)
    }

    fn apply(&mut self, msg: GossipMessage, now: Timestamp) -> Verdict {
        match msg {
            GossipMessage::Offer(offer) => match self.book.insert(offer, now) {
                Ok(_) => Verdict::Accept,
                Err(e) => rejected_verdict(&e),
            },
            GossipMessage::Withdrawal(w) => match self.book.withdraw(&w, now) {
                Ok(_) => Verdict::Accept,
                Err(e) => rejected_verdict(&e),
            },
        }
    }

    /// Drops expired offers; returns how many.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        self.book.expire(now).len()
    }

    /// The digest of the unexpired offers held at `now`.
    pub fn digest(&self, now: Timestamp) -> Digest {
        book_digest(self.book.iter().filter(|o| o.body().expires_at > now))
    }

    /// The page answering `req` at `now`: offers and the cursor for the next page.
    pub fn page(
        &self,
        req: &SyncRequest,
        now: Timestamp,
    ) -> (Vec<&Signed<Offer>>, Option<AgoraId>) {
        if req.after.is_none() && req.digest == Some(self.digest(now)) {
            return (Vec::new(), None);
        }
        let limit = usize::from(req.limit.clamp(1, MAX_SYNC_PAGE));
        let mut offers = Vec::with_capacity(limit);
        let mut more = false;
        for offer in self
            .book
            .iter()
            .filter(|o| req.after.is_none_or(|a| o.body().provider > a))
            .filter(|o| o.body().expires_at > now)
        {
            if offers.len() == limit {
                more = true;
                break;
            }
            offers.push(offer);
        }
        let next = if more {
            offers.last().map(|o| o.body().provider)
        } else {
            None
        };
        (offers, next)
    }
}

impl Default for Market {
    fn default() -> Self {
        Market::new()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use agora_protocol::Ed25519;
    use agora_protocol::gossip::offers_topic;

    use super::*;
    use crate::workload::Provider;

    fn signed(p: &mut Provider, at_ms: u64) -> Signed<Offer> {
        p.sign_offer(
            Timestamp::from_unix_millis(at_ms),
            Duration::from_secs(300),
            "eu-west",
            1024,
        )
        .unwrap()
    }

    #[test]
    fn verdicts_follow_the_node() {
        let mut market = Market::new();
        let mut p = Provider::from_seed([1; 32]);
        let now = Timestamp::from_unix_millis(10_000);
        let topic = offers_topic("eu-west");
        let old = GossipMessage::Offer(signed(&mut p, 5_000)).encode();
        let new = GossipMessage::Offer(signed(&mut p, 9_000)).encode();
        assert_eq!(
            market.on_gossip(&topic, &new, now, &Ed25519),
            Verdict::Accept
        );
        assert_eq!(
            market.on_gossip(&topic, &new, now, &Ed25519),
            Verdict::Known
        );
        assert_eq!(
            market.on_gossip(&topic, &old, now, &Ed25519),
            Verdict::Ignore("stale", Some(Offence::Stale))
        );
        assert_eq!(
            market.on_gossip(&offers_topic("us-east"), &new, now, &Ed25519),
            Verdict::Reject("wrong_topic")
        );
        let mut bad = new.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            market.on_gossip(&topic, &bad, now, &Ed25519),
            Verdict::Reject("bad_signature")
        );
        // The rate limit: 10 at once, then refused.
        let verdicts: Vec<Verdict> = (0..12)
            .map(|_| market.on_gossip(&topic, &new, now, &Ed25519))
            .collect();
        assert_eq!(
            verdicts.last(),
            Some(&Verdict::Ignore("rate_limited", Some(Offence::RateLimited)))
        );
    }

    #[test]
    fn pages_are_empty_for_equal_books_and_cursor_through_larger_ones() {
        let now = Timestamp::from_unix_millis(10_000);
        let mut full = Market::new();
        for i in 0..70u8 {
            let mut p = Provider::from_seed([i; 32]);
            assert_eq!(full.on_synced(signed(&mut p, 9_000), now), Verdict::Accept);
        }
        let same = SyncRequest {
            after: None,
            limit: 64,
            digest: Some(full.digest(now)),
        };
        assert_eq!(full.page(&same, now).0.len(), 0);
        let empty = SyncRequest {
            after: None,
            limit: 64,
            digest: Some(Market::new().digest(now)),
        };
        let (first, next) = full.page(&empty, now);
        assert_eq!(first.len(), 64);
        let (rest, end) = full.page(
            &SyncRequest {
                after: next,
                limit: 64,
                digest: None,
            },
            now,
        );
        assert_eq!((rest.len(), end), (6, None));
    }
}

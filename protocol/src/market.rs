//! The market as one node runs it, sans-IO: the [`OfferBook`] fed by gossip and sync, a
//! rate limit per provider, the signed withdrawals a node passes on in sync pages, and the
//! [`Verdict`] gossipsub needs for every message.
//!
//! The node (`agora-node`) wraps [`Market`] with its store and metrics; the simulator
//! (`agora-sim`) drives it directly, one per simulated node. Both feed it the same way:
//!
//! 1. [`Market::on_gossip`] for gossip bytes that arrived on a topic (decode, verify, check
//!    the topic against the offer's region, rate-limit the provider, apply), or
//!    [`Market::on_decoded`] with the result of [`GossipMessage::decode_on_topic`] for a
//!    driver that decodes each distinct message once and shares it;
//! 2. [`Market::on_synced`] / [`Market::on_synced_withdrawal`] for what a sync page brought
//!    (already verified; not rate-limited: the asker chose to ask);
//! 3. [`Market::apply_own`] for the node's own messages, before it publishes them;
//! 4. [`Market::expire`] now and then (the node every 30 s, before a sync round);
//! 5. reads at any time: [`Market::book`], [`Market::digest`], [`Market::page`] (a peer's
//!    sync request), [`Market::sync_request`] (ours: it lists what the book holds, so the
//!    peer sends only what we lack or hold older).
//!
//! Every input returns an [`Outcome`]: the verdict, plus what changed in the book (at most
//! one offer stored and one provider's offer removed), so a driver that mirrors the book
//! (the node's offer store) applies exactly those changes. The outcome is returned rather
//! than queued for a `poll_event`, so a driver that keeps no mirror (the simulator) leaves
//! nothing behind. Time always comes in as an argument.
//!
//! ```
//! use agora_protocol::market::{Market, Verdict};
//! use agora_protocol::gossip::{GossipMessage, offers_topic};
//! use agora_protocol::{Ed25519, Offer, Signed, Signer as _, Timestamp};
//!
//! let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
//! let now = Timestamp::from_unix_secs(1_000);
//! let offer = Signed::sign(Offer::example(key.id(), 1, now), &key)?;
//! let bytes = GossipMessage::Offer(offer).encode();
//!
//! let mut market = Market::default();
//! let topic = offers_topic("eu-west");
//! let outcome = market.on_gossip(&topic, &bytes, now, &Ed25519);
//! assert_eq!(outcome.verdict, Verdict::Accept);
//! assert!(outcome.stored.is_some());
//! // The same message again is valid and known: gossipsub still forwards it.
//! assert_eq!(market.on_gossip(&topic, &bytes, now, &Ed25519).verdict, Verdict::Known);
//! assert_eq!(market.book().len(), 1);
//! # Ok::<(), agora_protocol::EncodeError>(())
//! ```

use core::time::Duration;

use crate::gossip::{
    GossipError, GossipMessage, OfferSync, SyncRequest, SyncResponse, book_digest,
};
use crate::id::AgoraId;
use crate::offer::{Offer, OfferWithdrawal};
use crate::offer_book::{Inserted, OfferBook, OfferBookConfig, OfferRejected};
use crate::rate::{RateLimit, RateLimiter};
use crate::signed::{Digest, Signed, Verifier};
use crate::sync::{self, Held, Remembered};
use crate::time::Timestamp;

/// Limits on what one provider may send: a burst of 10, then one every 2 s.
pub const PROVIDER_RATE: RateLimit = RateLimit {
    burst: 10,
    interval: Duration::from_secs(2),
};

/// What a peer did wrong by relaying a message, beyond what gossipsub itself counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// Relayed an offer older than one held (a replay, or badly out of order).
    Stale,
    /// Relayed more of one provider's messages than [`PROVIDER_RATE`] allows.
    RateLimited,
}

/// What gossipsub should do with a message, and what (if anything) the sender did wrong,
/// as an [`Offence`] or, after [`Verdict::map_offence`], in a driver's own terms `O`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<O = Offence> {
    /// Valid and new: deliver and forward.
    Accept,
    /// Valid, and exactly what the book already holds (it came by sync first): forward it,
    /// or peers that rely on us for gossip would miss it, but nothing changes here.
    Known,
    /// Not forwarded, no gossipsub penalty (duplicates, stale, expired, rate-limited), with
    /// the reason and an offence when the sender deserves one.
    Ignore(&'static str, Option<O>),
    /// Invalid (bad signature, malformed, oversized, wrong topic): gossipsub penalises the
    /// sender.
    Reject(&'static str),
}

impl<O> Verdict<O> {
    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Accept => "accepted",
            Self::Known => "duplicate",
            Self::Ignore(reason, _) | Self::Reject(reason) => reason,
        }
    }

    /// Whether gossipsub forwards the message.
    pub fn forwards(&self) -> bool {
        matches!(self, Self::Accept | Self::Known)
    }

    /// The same verdict with its offence translated by `f`.
    pub fn map_offence<P>(self, f: impl FnOnce(O) -> P) -> Verdict<P> {
        match self {
            Self::Accept => Verdict::Accept,
            Self::Known => Verdict::Known,
            Self::Ignore(reason, offence) => Verdict::Ignore(reason, offence.map(f)),
            Self::Reject(reason) => Verdict::Reject(reason),
        }
    }
}

impl Verdict {
    /// The verdict on a message the book did not apply.
    fn from_rejected(e: &OfferRejected) -> Self {
        match e {
            OfferRejected::Duplicate { .. } => Self::Known,
            OfferRejected::Stale { .. } => Self::Ignore("stale", Some(Offence::Stale)),
            OfferRejected::Expired { .. } => Self::Ignore("expired", None),
            OfferRejected::FromFuture { .. } => Self::Ignore("from_future", None),
            OfferRejected::Full { .. } => Self::Ignore("book_full", None),
        }
    }
}

/// What one input did: the verdict, and the book's changes for a driver that mirrors it.
/// `S` is what the book stores (here a signed offer), `R` what names a removed entry (here a
/// provider); the services [`crate::service::directory::Outcome`] is the same shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<S = Signed<Offer>, R = AgoraId> {
    /// What gossipsub should do with the message.
    pub verdict: Verdict,
    /// The message's kind (`"offer"`, `"withdrawal"`; `"service"`, …), `None` when it did
    /// not decode.
    pub kind: Option<&'static str>,
    /// What the book now holds for the message's key (new, or replacing an older one).
    pub stored: Option<S>,
    /// An entry the book no longer holds: withdrawn, or evicted to make room for
    /// [`Outcome::stored`]. (A mirror deletes it; it may already be absent.) Entries that
    /// leave because they expired are not listed: [`Market::expire`] returns those,
    /// except the ones a full book drops on its own to make room, which a mirror finds
    /// expired the next time it reads them.
    pub removed: Option<R>,
}

impl<S, R> Outcome<S, R> {
    /// A message that changed nothing, with the `verdict` on it.
    pub(crate) fn unchanged(verdict: Verdict, kind: Option<&'static str>) -> Self {
        Self {
            verdict,
            kind,
            stored: None,
            removed: None,
        }
    }

    /// A message the book applied: what it stores now and what it removed.
    pub(crate) fn accepted(
        kind: Option<&'static str>,
        stored: Option<S>,
        removed: Option<R>,
    ) -> Self {
        Self {
            verdict: Verdict::Accept,
            kind,
            stored,
            removed,
        }
    }
}

/// A decoded gossip message, as the checks before any book see it.
pub(crate) trait Gossiped {
    /// Whom it speaks for (its signer): the key rate limits count.
    fn signer(&self) -> AgoraId;
    /// A short label for its kind.
    fn kind(&self) -> &'static str;
}

impl Gossiped for GossipMessage {
    fn signer(&self) -> AgoraId {
        self.provider()
    }
    fn kind(&self) -> &'static str {
        GossipMessage::kind(self)
    }
}

/// The checks every gossip message passes before a book sees it, at `now`: it decoded and
/// verified (else `Reject`, gossipsub's penalty), and its signer is within `limiter`'s rate
/// (else `Ignore` with [`Offence::RateLimited`]).
///
/// # Errors
/// The [`Outcome`] of a message that goes no further.
pub(crate) fn screen<M: Gossiped, S, R>(
    decoded: Result<M, GossipError>,
    limiter: &mut RateLimiter<AgoraId>,
    now: Timestamp,
) -> Result<M, Outcome<S, R>> {
    // An undecodable message has no trustworthy kind.
    let msg = decoded.map_err(|e| Outcome::unchanged(Verdict::Reject(e.reason()), None))?;
    if limiter.check(&msg.signer(), now) {
        Ok(msg)
    } else {
        let verdict = Verdict::Ignore("rate_limited", Some(Offence::RateLimited));
        Err(Outcome::unchanged(verdict, Some(msg.kind())))
    }
}

/// One page of a book for a peer's sync request, borrowing the offers it names (see
/// [`Market::page`]); [`Page::to_response`] puts it on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<'a> {
    /// Unexpired offers in provider order after the request's cursor, at most a page.
    pub offers: Vec<&'a Signed<Offer>>,
    /// On the first page, the newest remembered withdrawals (at most a page), newest first.
    pub withdrawals: Vec<&'a Signed<OfferWithdrawal>>,
    /// The cursor for the next page, `None` at the end.
    pub next: Option<AgoraId>,
}

impl Page<'_> {
    /// The wire form: each offer and withdrawal as its signer's bytes.
    pub fn to_response(&self) -> SyncResponse {
        SyncResponse {
            entries: self.offers.iter().map(|o| o.as_bytes().to_vec()).collect(),
            withdrawals: self
                .withdrawals
                .iter()
                .map(|w| w.as_bytes().to_vec())
                .collect(),
            next: self.next,
        }
    }
}

/// One node's market: its offer book, provider rate limits and remembered withdrawals.
#[derive(Debug, Clone)]
pub struct Market {
    book: OfferBook,
    /// Signed withdrawals still within the book's tombstone time, to pass on in sync pages.
    withdrawals: Remembered<AgoraId, OfferWithdrawal>,
    limiter: RateLimiter<AgoraId>,
}

impl Default for Market {
    /// A market with the default [`OfferBookConfig`].
    fn default() -> Self {
        Self::new(OfferBookConfig::default())
    }
}

impl Market {
    /// An empty market whose book has `config`'s bounds; the rate limiter tracks up to twice
    /// as many providers as the book holds, and as many withdrawals are remembered.
    pub fn new(config: OfferBookConfig) -> Self {
        Self {
            book: OfferBook::new(config),
            withdrawals: Remembered::new(config.max_offers, config.tombstone_ttl),
            limiter: RateLimiter::new(PROVIDER_RATE, config.max_offers.saturating_mul(2)),
        }
    }

    /// The offer book (for queries and reads).
    pub fn book(&self) -> &OfferBook {
        &self.book
    }

    /// Puts back an offer a driver kept from an earlier run (the node's store), at `now`:
    /// straight into the book, no rate limit, no verdict.
    ///
    /// # Errors
    /// [`OfferRejected`] as [`OfferBook::insert`] (e.g. it expired meanwhile).
    pub fn restore(
        &mut self,
        offer: Signed<Offer>,
        now: Timestamp,
    ) -> Result<Inserted, OfferRejected> {
        self.book.insert(offer, now)
    }

    /// Validates and applies gossip `data` that arrived on `topic` at `now`.
    pub fn on_gossip(
        &mut self,
        topic: &str,
        data: &[u8],
        now: Timestamp,
        verifier: &impl Verifier,
    ) -> Outcome {
        self.on_decoded(GossipMessage::decode_on_topic(data, topic, verifier), now)
    }

    /// The second half of [`Market::on_gossip`]: applies the outcome of
    /// [`GossipMessage::decode_on_topic`] for a message that arrived at `now`, for a driver
    /// that decodes each distinct message once and hands every receiver a clone (which
    /// shares the decoded offer, see [`Signed`]).
    pub fn on_decoded(
        &mut self,
        decoded: Result<GossipMessage, GossipError>,
        now: Timestamp,
    ) -> Outcome {
        match screen(decoded, &mut self.limiter, now) {
            Ok(msg) => self.apply(msg, now),
            Err(outcome) => outcome,
        }
    }

    /// Applies an offer received over sync (already verified by the caller).
    pub fn on_synced(&mut self, offer: Signed<Offer>, now: Timestamp) -> Outcome {
        self.apply(GossipMessage::Offer(offer), now)
    }

    /// Applies a withdrawal received over sync (already verified by the caller).
    pub fn on_synced_withdrawal(
        &mut self,
        withdrawal: Signed<OfferWithdrawal>,
        now: Timestamp,
    ) -> Outcome {
        self.apply(GossipMessage::Withdrawal(withdrawal), now)
    }

    /// Applies one of the node's own messages before it is published (a node never
    /// validates its own gossip, and its book must show its own offer).
    pub fn apply_own(&mut self, msg: GossipMessage, now: Timestamp) -> Outcome {
        self.apply(msg, now)
    }

    fn apply(&mut self, msg: GossipMessage, now: Timestamp) -> Outcome {
        let kind = Some(msg.kind());
        match msg {
            GossipMessage::Offer(offer) => match self.book.insert(offer.clone(), now) {
                Ok(inserted) => {
                    self.withdrawals.forget(&offer.body().provider);
                    Outcome::accepted(kind, Some(offer), inserted.evicted())
                }
                Err(e) => Outcome::unchanged(Verdict::from_rejected(&e), kind),
            },
            GossipMessage::Withdrawal(w) => match self.book.withdraw(&w, now) {
                Ok(_) => {
                    let provider = w.body().provider;
                    self.withdrawals.remember(provider, w);
                    Outcome::accepted(kind, None, Some(provider))
                }
                Err(e) => Outcome::unchanged(Verdict::from_rejected(&e), kind),
            },
        }
    }

    /// Drops offers expired at `now`, and withdrawals and tombstones past their time;
    /// returns the providers whose offers were dropped, in id order.
    pub fn expire(&mut self, now: Timestamp) -> Vec<AgoraId> {
        self.withdrawals.expire(now);
        self.book.expire(now)
    }

    /// The digest of the unexpired offers held at `now` (see [`book_digest`]).
    pub fn digest(&self, now: Timestamp) -> Digest {
        book_digest(self.book.iter().filter(|o| o.body().expires_at > now))
    }

    /// Our request at `now` for a peer's page after provider `after` (from the beginning
    /// for `None`, with our [`Market::digest`]): it lists the unexpired offers we hold after
    /// `after` (provider and sequence number, up to [`crate::sync::MAX_SYNC_HELD`]), so the
    /// page carries only offers we lack or hold an older one of. Ask again after each
    /// page's `next` with this method until it is `None`.
    pub fn sync_request(&self, after: Option<AgoraId>, now: Timestamp) -> SyncRequest {
        let digest = after.is_none().then(|| self.digest(now));
        let held = self
            .book
            .iter_after(after)
            .filter(|o| o.body().expires_at > now)
            .map(|o| Held {
                key: o.body().provider,
                seq: o.body().seq,
            });
        SyncRequest::holding(after, digest, held)
    }

    /// The page answering a peer's sync request at `now`: unexpired offers in provider
    /// order after `req.after`, at most `req.limit` (1 to [`crate::sync::MAX_SYNC_PAGE`]),
    /// leaving out those the asker holds at the same or a newer sequence number and
    /// stopping at its last listed provider unless it listed all it holds (see
    /// [`crate::sync`]), and on the first page the newest remembered withdrawals; an empty
    /// page when the asker starts from the beginning with a book equal to ours.
    pub fn page(&self, req: &SyncRequest, now: Timestamp) -> Page<'_> {
        let page = sync::page::<OfferSync, _>(
            req,
            || self.digest(now),
            self.book
                .iter_after(req.after)
                .filter(|o| o.body().expires_at > now),
            |o| o.provider,
            &self.withdrawals,
        );
        Page {
            offers: page.entries,
            withdrawals: page.withdrawals,
            next: page.next,
        }
    }
}

#[cfg(test)]
#[path = "market_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "market_sync_tests.rs"]
mod sync_tests;

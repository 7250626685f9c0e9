//! The node's view of the market: the sans-IO [`OfferBook`] fed by gossip and sync, with
//! the validation verdicts gossipsub needs, rate limits, persistence and metrics.
//!
//! Every offer the book accepts is written to [`Column::Offers`] (key: the provider's id),
//! and removed when it is withdrawn, replaced by nothing or expires, so a restarted node
//! comes back with the unexpired market it knew. Loading re-verifies every stored offer: the
//! store is not trusted more than the network.

use core::time::Duration;
use std::collections::BTreeMap;
use std::sync::Arc;

use agora_protocol::gossip::{
    GossipMessage, MAX_SYNC_PAGE, SyncRequest, SyncResponse, book_digest,
};
use agora_protocol::offer_book::{
    OfferBook, OfferBookConfig, OfferFilter, OfferRejected, OfferSort,
};
use agora_protocol::rate::{RateLimit, RateLimiter};
use agora_protocol::{AgoraId, Digest, Ed25519, Offer, OfferWithdrawal, Signed, Timestamp};
use tracing::{debug, warn};

use crate::metrics::NodeMetrics;
use crate::net::scoring::Offence;
use crate::store::{Column, Store, StoreError};

/// What gossipsub should do with a message, and what (if anything) the sender did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: deliver and forward.
    Accept,
    /// Valid, and exactly what the book already holds (it came by sync first): forward it,
    /// or peers that rely on us for gossip would miss it, but nothing changes here.
    Known,
    /// Not forwarded, no gossipsub penalty (duplicates, stale, expired, rate-limited), with
    /// the reason and an offence for our own score when the sender deserves one.
    Ignore(&'static str, Option<Offence>),
    /// Invalid (bad signature, malformed, oversized): gossipsub penalises the sender.
    Reject(&'static str),
}

impl Verdict {
    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Accept => "accepted",
            Self::Known => "duplicate",
            Self::Ignore(r, _) | Self::Reject(r) => r,
        }
    }
}

/// Limits on what one provider may send: a burst of 10, then one every 2 s.
pub const PROVIDER_RATE: RateLimit = RateLimit {
    burst: 10,
    interval: Duration::from_secs(2),
};

/// Most offers read back from the store on start (the book's bound).
const MAX_LOADED: usize = 100_000;

/// The offer book with its persistence, limits and metrics.
pub struct Market {
    book: OfferBook,
    /// Signed withdrawals still within the book's tombstone time, to pass on in sync pages.
    withdrawals: BTreeMap<AgoraId, Signed<OfferWithdrawal>>,
    tombstone_ttl: Duration,
    max_withdrawals: usize,
    limiter: RateLimiter<AgoraId>,
    store: Arc<dyn Store>,
    metrics: NodeMetrics,
}

impl std::fmt::Debug for Market {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Market")
            .field("offers", &self.book.len())
            .finish_non_exhaustive()
    }
}

/// The verdict on a message the book did not apply.
fn rejected_verdict(e: &OfferRejected) -> Verdict {
    match e {
        // Valid, and exactly what we hold: still worth forwarding (see `Verdict::Known`).
        OfferRejected::Duplicate { .. } => Verdict::Known,
        OfferRejected::Stale { .. } => Verdict::Ignore("stale", Some(Offence::Stale)),
        OfferRejected::Expired { .. } => Verdict::Ignore("expired", None),
        OfferRejected::FromFuture { .. } => Verdict::Ignore("from_future", None),
        OfferRejected::Full { .. } => Verdict::Ignore("book_full", None),
    }
}

impl Market {
    /// Opens the market over `store`, loading and re-verifying the offers it holds; expired
    /// or unverifiable ones are deleted.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub fn open(
        store: Arc<dyn Store>,
        config: OfferBookConfig,
        metrics: NodeMetrics,
        now: Timestamp,
    ) -> Result<Self, StoreError> {
        let mut market = Self {
            book: OfferBook::new(config),
            withdrawals: BTreeMap::new(),
            tombstone_ttl: config.tombstone_ttl,
            max_withdrawals: config.max_offers,
            limiter: RateLimiter::new(PROVIDER_RATE, config.max_offers.saturating_mul(2)),
            store,
            metrics,
        };
        let stored =
            market
                .store
                .scan_prefix(Column::Offers, b"", MAX_LOADED.min(config.max_offers))?;
        let (mut kept, mut dropped) = (0usize, 0usize);
        for (key, wire) in stored {
            match Signed::<Offer>::decode(&wire, &Ed25519) {
                Ok(offer) if offer.body().provider.as_bytes().as_slice() == key.as_slice() => {
                    if market.book.insert(offer, now).is_ok() {
                        kept += 1;
                        continue;
                    }
                }
                Ok(_) | Err(_) => {}
            }
            dropped += 1;
            market.store.delete(Column::Offers, &key)?;
        }
        debug!(kept, dropped, "offers loaded from the store");
        market.metrics.offers.set(gauge(market.book.len()));
        Ok(market)
    }

    /// Validates and applies gossip that arrived on `topic` at `now`.
    pub fn on_gossip(&mut self, topic: &str, data: &[u8], now: Timestamp) -> Verdict {
        let msg = match GossipMessage::decode_on_topic(data, topic, &Ed25519) {
            Ok(m) => m,
            Err(e) => {
                let verdict = Verdict::Reject(e.reason());
                debug!(error = %e, "gossip rejected");
                // An undecodable message has no trustworthy kind.
                self.metrics.gossip("unknown", verdict.label());
                return verdict;
            }
        };
        let verdict = if self.limiter.check(&msg.provider(), now) {
            self.apply(&msg, now)
        } else {
            Verdict::Ignore("rate_limited", Some(Offence::RateLimited))
        };
        self.metrics.gossip(msg.kind(), verdict.label());
        verdict
    }

    /// Applies a withdrawal received over sync (already verified by the caller).
    pub fn on_synced_withdrawal(
        &mut self,
        withdrawal: Signed<OfferWithdrawal>,
        now: Timestamp,
    ) -> Verdict {
        let verdict = self.apply(&GossipMessage::Withdrawal(withdrawal), now);
        self.metrics.synced(match verdict {
            Verdict::Accept => "withdrawal_accepted",
            _ => "withdrawal_ignored",
        });
        verdict
    }

    /// Applies an offer received over sync (already verified by the caller).
    pub fn on_synced(&mut self, offer: Signed<Offer>, now: Timestamp) -> Verdict {
        let verdict = self.apply(&GossipMessage::Offer(offer), now);
        self.metrics.synced(verdict.label());
        verdict
    }

    /// Applies one of our own messages before it is published (we never validate our own
    /// gossip, and our book must show our own offer).
    pub fn apply_own(&mut self, msg: &GossipMessage, now: Timestamp) -> Verdict {
        self.apply(msg, now)
    }

    fn apply(&mut self, msg: &GossipMessage, now: Timestamp) -> Verdict {
        match msg {
            GossipMessage::Offer(offer) => match self.book.insert(offer.clone(), now) {
                Ok(inserted) => {
                    if let agora_protocol::Inserted::Evicted { evicted } = inserted {
                        self.forget(&evicted);
                    }
                    self.persist(offer);
                    self.withdrawals.remove(&offer.body().provider);
                    self.metrics.offers.set(gauge(self.book.len()));
                    Verdict::Accept
                }
                Err(e) => rejected_verdict(&e),
            },
            GossipMessage::Withdrawal(w) => match self.book.withdraw(w, now) {
                Ok(_) => {
                    self.forget(&w.body().provider);
                    self.remember_withdrawal(w.clone());
                    self.metrics.offers.set(gauge(self.book.len()));
                    Verdict::Accept
                }
                Err(e) => rejected_verdict(&e),
            },
        }
    }

    fn remember_withdrawal(&mut self, w: Signed<OfferWithdrawal>) {
        if !self.withdrawals.contains_key(&w.body().provider)
            && self.withdrawals.len() >= self.max_withdrawals
        {
            let oldest = self
                .withdrawals
                .iter()
                .min_by_key(|(id, w)| (w.body().issued_at, **id))
                .map(|(id, _)| *id);
            if let Some(id) = oldest {
                self.withdrawals.remove(&id);
            }
        }
        self.withdrawals.insert(w.body().provider, w);
    }

    fn persist(&self, offer: &Signed<Offer>) {
        let key = offer.body().provider;
        if let Err(e) = self
            .store
            .put(Column::Offers, key.as_bytes(), offer.as_bytes())
        {
            // The book is authoritative while running; the store only speeds up restarts.
            warn!(error = %e, provider = %key, "could not persist offer");
        }
    }

    fn forget(&self, provider: &AgoraId) {
        if let Err(e) = self.store.delete(Column::Offers, provider.as_bytes()) {
            warn!(error = %e, %provider, "could not delete offer");
        }
    }

    /// Drops offers expired at `now` (from the book and the store); returns how many.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        let ttl = self.tombstone_ttl;
        self.withdrawals
            .retain(|_, w| w.body().issued_at.saturating_add(ttl) > now);
        let gone = self.book.expire(now);
        for id in &gone {
            self.forget(id);
        }
        self.metrics.offers.set(gauge(self.book.len()));
        gone.len()
    }

    /// Offers matching `filter` at `now`, sorted, at most `limit`.
    pub fn query(
        &self,
        filter: &OfferFilter,
        sort: OfferSort,
        limit: usize,
        now: Timestamp,
    ) -> Vec<Signed<Offer>> {
        self.book
            .query(filter, sort, limit, now)
            .into_iter()
            .cloned()
            .collect()
    }

    /// A provider's current offer.
    pub fn get(&self, provider: &AgoraId, now: Timestamp) -> Option<Signed<Offer>> {
        self.book.get(provider, now).cloned()
    }

    /// Offers held now.
    pub fn len(&self) -> usize {
        self.book.len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.book.is_empty()
    }

    /// The digest of the unexpired offers held at `now` (see [`book_digest`]).
    pub fn digest(&self, now: Timestamp) -> Digest {
        book_digest(self.book.iter().filter(|o| o.body().expires_at > now))
    }

    /// One page of unexpired offers after provider `after`, for a peer's sync request; an
    /// empty page when the asker starts from the beginning with a book equal to ours.
    pub fn page(&self, req: &SyncRequest, now: Timestamp) -> SyncResponse {
        if req.after.is_none() && req.digest == Some(self.digest(now)) {
            return SyncResponse {
                offers: Vec::new(),
                withdrawals: Vec::new(),
                next: None,
            };
        }
        let (after, limit) = (req.after, req.limit);
        let limit = usize::from(limit.clamp(1, MAX_SYNC_PAGE));
        let mut offers = Vec::with_capacity(limit);
        let mut last = None;
        let mut more = false;
        for offer in self
            .book
            .iter()
            .filter(|o| after.is_none_or(|a| o.body().provider > a))
            .filter(|o| o.body().expires_at > now)
        {
            if offers.len() == limit {
                more = true;
                break;
            }
            last = Some(offer.body().provider);
            offers.push(offer.as_bytes().to_vec());
        }
        // Withdrawals ride on the first page only: the newest, as many as a page holds.
        let withdrawals = if after.is_none() {
            let mut recent: Vec<&Signed<OfferWithdrawal>> = self.withdrawals.values().collect();
            recent.sort_by_key(|w| core::cmp::Reverse(w.body().issued_at));
            recent
                .into_iter()
                .take(usize::from(MAX_SYNC_PAGE))
                .map(|w| w.as_bytes().to_vec())
                .collect()
        } else {
            Vec::new()
        };
        SyncResponse {
            offers,
            withdrawals,
            next: if more { last } else { None },
        }
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;

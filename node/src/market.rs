//! The node's view of the market: the protocol's sans-IO [`market::Market`] (the offer
//! book fed by gossip and sync, provider rate limits, the verdicts gossipsub needs, sync
//! pages), which the simulator drives too, with the node's persistence and metrics.
//!
//! Every offer the book accepts is written to [`Column::Offers`] (key: the provider's id),
//! and removed when it is withdrawn, replaced by nothing or expires, so a restarted node
//! comes back with the unexpired market it knew. Loading re-verifies every stored offer: the
//! store is not trusted more than the network.

use std::sync::Arc;

use agora_protocol::gossip::{GossipMessage, SyncRequest, SyncResponse};
use agora_protocol::market::{self, Outcome};
use agora_protocol::offer_book::{OfferBookConfig, OfferFilter, OfferSort};
use agora_protocol::{AgoraId, Digest, Ed25519, Offer, OfferWithdrawal, Signed, Timestamp};
use tracing::{debug, warn};

use crate::metrics::NodeMetrics;
use crate::net::scoring::Offence;
use crate::store::{Column, Store, StoreError};

pub use agora_protocol::market::PROVIDER_RATE;

/// What gossipsub should do with a message: the protocol's [`market::Verdict`], its
/// offence in the node's own scoring terms.
pub type Verdict = market::Verdict<Offence>;

impl From<market::Offence> for Offence {
    fn from(o: market::Offence) -> Self {
        match o {
            market::Offence::Stale => Self::Stale,
            market::Offence::RateLimited => Self::RateLimited,
        }
    }
}

/// Most offers read back from the store on start (the book's bound).
const MAX_LOADED: usize = 100_000;

/// The protocol's [`market::Market`] (book, rate limits, withdrawals, verdicts, sync
/// pages) with the node's persistence and metrics around it.
pub struct Market {
    inner: market::Market,
    store: Arc<dyn Store>,
    metrics: NodeMetrics,
}

impl std::fmt::Debug for Market {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Market")
            .field("offers", &self.len())
            .finish_non_exhaustive()
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
            inner: market::Market::new(config),
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
                    if market.inner.restore(offer, now).is_ok() {
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
        market.metrics.offers.set(gauge(market.len()));
        Ok(market)
    }

    /// Validates and applies gossip that arrived on `topic` at `now`.
    pub fn on_gossip(&mut self, topic: &str, data: &[u8], now: Timestamp) -> Verdict {
        let decoded = GossipMessage::decode_on_topic(data, topic, &Ed25519);
        if let Err(e) = &decoded {
            debug!(error = %e, "gossip rejected");
        }
        let outcome = self.inner.on_decoded(decoded, now);
        // An undecodable message has no trustworthy kind.
        let kind = outcome.kind.unwrap_or("unknown");
        let verdict = self.record(outcome);
        self.metrics.gossip(kind, verdict.label());
        verdict
    }

    /// Applies a withdrawal received over sync (already verified by the caller).
    pub fn on_synced_withdrawal(
        &mut self,
        withdrawal: Signed<OfferWithdrawal>,
        now: Timestamp,
    ) -> Verdict {
        let outcome = self.inner.on_synced_withdrawal(withdrawal, now);
        let verdict = self.record(outcome);
        self.metrics.synced(match verdict {
            Verdict::Accept => "withdrawal_accepted",
            _ => "withdrawal_ignored",
        });
        verdict
    }

    /// Applies an offer received over sync (already verified by the caller).
    pub fn on_synced(&mut self, offer: Signed<Offer>, now: Timestamp) -> Verdict {
        let outcome = self.inner.on_synced(offer, now);
        let verdict = self.record(outcome);
        self.metrics.synced(verdict.label());
        verdict
    }

    /// Counts a sync page's outcome that is not an offer's (`malformed`, `bad_signature`).
    pub fn count_synced(&self, result: &str) {
        self.metrics.synced(result);
    }

    /// Applies one of our own messages before it is published (we never validate our own
    /// gossip, and our book must show our own offer).
    pub fn apply_own(&mut self, msg: &GossipMessage, now: Timestamp) -> Verdict {
        // A clone of the message shares its offer (see `Signed`).
        let outcome = self.inner.apply_own(msg.clone(), now);
        self.record(outcome)
    }

    /// Mirrors what an input changed into the store and the offers gauge.
    fn record(&self, outcome: Outcome) -> Verdict {
        if let Some(provider) = outcome.removed {
            self.forget(&provider);
        }
        if let Some(offer) = &outcome.stored {
            self.persist(offer);
        }
        if outcome.removed.is_some() || outcome.stored.is_some() {
            self.metrics.offers.set(gauge(self.len()));
        }
        outcome.verdict.map_offence(Offence::from)
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
        let gone = self.inner.expire(now);
        for id in &gone {
            self.forget(id);
        }
        self.metrics.offers.set(gauge(self.len()));
        gone.len()
    }

    /// Offers matching `filter` at `now`, sorted, at most `limit` (handles sharing the
    /// book's copies).
    pub fn query(
        &self,
        filter: &OfferFilter,
        sort: OfferSort,
        limit: usize,
        now: Timestamp,
    ) -> Vec<Signed<Offer>> {
        self.inner
            .book()
            .query(filter, sort, limit, now)
            .into_iter()
            .cloned()
            .collect()
    }

    /// A provider's current offer.
    pub fn get(&self, provider: &AgoraId, now: Timestamp) -> Option<Signed<Offer>> {
        self.inner.book().get(provider, now).cloned()
    }

    /// Offers held now.
    pub fn len(&self) -> usize {
        self.inner.book().len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.book().is_empty()
    }

    /// The digest of the unexpired offers held at `now` (see
    /// [`agora_protocol::gossip::book_digest`]).
    pub fn digest(&self, now: Timestamp) -> Digest {
        self.inner.digest(now)
    }

    /// Our request for a peer's sync page after provider `after` (from the beginning for
    /// `None`, with our digest): it lists the offers we hold after `after`, so the page
    /// carries only those we lack or hold older (see [`market::Market::sync_request`]).
    pub fn sync_request(&self, after: Option<AgoraId>, now: Timestamp) -> SyncRequest {
        self.inner.sync_request(after, now)
    }

    /// One page of unexpired offers after provider `after`, for a peer's sync request; an
    /// empty page when the asker starts from the beginning with a book equal to ours (see
    /// [`market::Market::page`]).
    pub fn page(&self, req: &SyncRequest, now: Timestamp) -> SyncResponse {
        self.inner.page(req, now).to_response()
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;

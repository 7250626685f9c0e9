//! The offer book: every node's view of the market, as a sans-IO state machine.
//!
//! The node feeds it what gossip delivers (already decoded and signature-checked
//! `Signed<Offer>` and `Signed<OfferWithdrawal>`), always passing the current time; the
//! simulator does the same. Rules:
//!
//! - One offer per provider: the highest `seq` wins; an equal `seq` is a duplicate, a lower
//!   one is stale.
//! - A withdrawal removes the provider's offer if its `seq` is not higher, and is remembered
//!   (a tombstone, until [`OfferBookConfig::tombstone_ttl`]) so older offers still in flight
//!   cannot resurrect it.
//! - Expired offers drop out ([`OfferBook::expire`], and are never returned by queries);
//!   offers claiming to be issued further in the future than the clock-skew tolerance are
//!   refused.
//! - The book is bounded. When full, a new provider's offer evicts the offer that expires
//!   soonest, if the new one outlives it: every provider holds at most one slot, so no
//!   provider can crowd out others, and fresh offers displace nearly-dead ones.
//!
//! These rules are [`crate::seq_book`]'s, which the service book shares; this module keys
//! them by provider and adds the market's filters and orders.
//!
//! All maps are ordered, so iteration and tie-breaking are deterministic. Offers are kept as
//! [`Signed`] handles, which share one decoded copy: a driver that gives the same offer to
//! many books (the simulator, where one offer reaches every node) keeps it once.

use core::ops::Bound;
use core::time::Duration;
use std::collections::BTreeMap;

use crate::id::AgoraId;
use crate::offer::{Isolation, Offer, OfferWithdrawal};
use crate::seq_book::{Limits, SeqBook, from_rejected, sequenced};
use crate::signed::Signed;
use crate::time::Timestamp;

/// Limits of an [`OfferBook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferBookConfig {
    /// Most offers held (one per provider).
    pub max_offers: usize,
    /// Tolerated difference between a provider's clock and ours.
    pub clock_skew: Duration,
    /// How long a withdrawal is remembered.
    pub tombstone_ttl: Duration,
}

impl Default for OfferBookConfig {
    fn default() -> Self {
        Self {
            max_offers: 10_000,
            clock_skew: Duration::from_secs(30),
            tombstone_ttl: Duration::from_secs(30 * 60),
        }
    }
}

/// What inserting an offer did: [`Inserted::Evicted`] names the provider evicted.
pub type Inserted = crate::seq_book::Inserted<AgoraId>;

/// Why an offer or withdrawal was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferRejected {
    /// The book already has this provider's offer with this `seq`.
    #[error("duplicate offer (seq {seq})")]
    Duplicate {
        /// The sequence number.
        seq: u64,
    },
    /// The book has a newer offer, or a withdrawal covering this `seq`.
    #[error("stale offer: seq {got}, already at {have}")]
    Stale {
        /// What the book holds (offer or withdrawal).
        have: u64,
        /// What arrived.
        got: u64,
    },
    /// The offer has expired.
    #[error("offer expired at {expires_at}")]
    Expired {
        /// When it expired.
        expires_at: Timestamp,
    },
    /// The offer claims to be issued in our future, beyond the skew tolerance.
    #[error("offer issued at {issued_at}, in the future")]
    FromFuture {
        /// Its claimed issue time.
        issued_at: Timestamp,
    },
    /// The book is full of offers that all outlive this one.
    #[error("offer book full ({max} providers)")]
    Full {
        /// The bound.
        max: usize,
    },
}

from_rejected!(OfferRejected);

/// Typed filters for [`OfferBook::query`]; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferFilter {
    /// Has a runtime of this isolation class.
    pub runtime: Option<Isolation>,
    /// Can start an image of this name.
    pub image: Option<String>,
    /// At least this much free vCPU (thousandths).
    pub min_vcpu_milli: Option<u32>,
    /// At least this much free memory (MiB).
    pub min_memory_mib: Option<u64>,
    /// Price of the requested (or, if unset, one vCPU and 1 GiB) resources per second at
    /// most this many micro-credits.
    pub max_price: Option<u64>,
    /// In this region.
    pub region: Option<String>,
    /// Carries all these labels.
    pub labels: BTreeMap<String, String>,
    /// Accepts this tier.
    pub tier: Option<String>,
}

impl OfferFilter {
    /// Whether `offer` passes the filter.
    pub fn matches(&self, offer: &Offer) -> bool {
        let cap = &offer.capacity;
        self.runtime.is_none_or(|r| offer.has_runtime(r))
            && self.image.as_deref().is_none_or(|i| offer.has_image(i))
            && self.min_vcpu_milli.is_none_or(|v| cap.vcpu_milli >= v)
            && self.min_memory_mib.is_none_or(|m| cap.memory_mib >= m)
            && self.max_price.is_none_or(|p| self.price_of(offer) <= p)
            && self.region.as_deref().is_none_or(|r| offer.region == r)
            && self
                .labels
                .iter()
                .all(|(k, v)| offer.labels.get(k) == Some(v))
            && self
                .tier
                .as_deref()
                .is_none_or(|t| offer.tiers.is_empty() || offer.tiers.iter().any(|x| x == t))
    }

    /// The per-second price of what this filter asks for, at `offer`'s prices.
    pub fn price_of(&self, offer: &Offer) -> u64 {
        offer.prices.per_second(
            self.min_vcpu_milli.unwrap_or(1000),
            self.min_memory_mib.unwrap_or(1024),
        )
    }
}

/// Order of query results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OfferSort {
    /// Cheapest first (for the filter's resources), then by provider id.
    #[default]
    Price,
    /// Most recently issued first.
    Newest,
}

/// A provider id as the books' map key: ordered exactly as [`AgoraId`] (its bytes,
/// lexicographically), but compared a machine word at a time (big-endian words order as
/// the bytes do) rather than through `memcmp`. Book lookups are the hottest path of a node
/// holding thousands of offers, and of the simulator driving ten thousand such books.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ProviderKey([u64; 4]);

impl ProviderKey {
    fn of(id: &AgoraId) -> Self {
        let mut words = [0u64; 4];
        for (word, bytes) in words.iter_mut().zip(id.as_bytes().chunks_exact(8)) {
            let mut be = [0u8; 8];
            be.copy_from_slice(bytes);
            *word = u64::from_be_bytes(be);
        }
        ProviderKey(words)
    }
}

// Offers and withdrawals are filed by provider under the rules of `seq_book`.
sequenced!(ProviderKey, |m| ProviderKey::of(&m.provider); entry Offer, withdrawal OfferWithdrawal);

/// The market as this node sees it.
#[derive(Debug, Clone)]
pub struct OfferBook {
    /// One offer per provider, with the withdrawn providers' tombstones.
    inner: SeqBook<Offer>,
}

impl OfferBook {
    /// An empty book.
    pub fn new(config: OfferBookConfig) -> Self {
        Self {
            inner: SeqBook::new(Limits {
                max: config.max_offers,
                clock_skew: config.clock_skew,
                tombstone_ttl: config.tombstone_ttl,
            }),
        }
    }

    /// Number of offers held (expired ones included until [`OfferBook::expire`]).
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the book holds no offers.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The provider's current offer, if unexpired at `now`.
    pub fn get(&self, provider: &AgoraId, now: Timestamp) -> Option<&Signed<Offer>> {
        self.inner.get(&ProviderKey::of(provider), now)
    }

    /// Applies an offer received at `now`.
    ///
    /// # Errors
    /// [`OfferRejected`] says why the book did not change.
    pub fn insert(
        &mut self,
        offer: Signed<Offer>,
        now: Timestamp,
    ) -> Result<Inserted, OfferRejected> {
        self.inner
            .insert(offer, now)
            .map(|i| i.map_evicted(|o| o.body().provider))
            .map_err(OfferRejected::from)
    }

    /// Applies a withdrawal received at `now`; returns whether an offer was removed.
    ///
    /// # Errors
    /// [`OfferRejected::Stale`] when the book holds a newer offer than the withdrawal covers,
    /// or a newer withdrawal; [`OfferRejected::FromFuture`] for a future-dated one.
    pub fn withdraw(
        &mut self,
        withdrawal: &Signed<OfferWithdrawal>,
        now: Timestamp,
    ) -> Result<bool, OfferRejected> {
        Ok(self.inner.withdraw(withdrawal.body(), now)?)
    }

    /// Drops offers expired at `now` and tombstones past their time; returns the providers
    /// whose offers were dropped, in id order.
    pub fn expire(&mut self, now: Timestamp) -> Vec<AgoraId> {
        self.inner
            .expire(now)
            .iter()
            .map(|o| o.body().provider)
            .collect()
    }

    /// Unexpired offers matching `filter`, sorted, at most `limit`.
    pub fn query(
        &self,
        filter: &OfferFilter,
        sort: OfferSort,
        limit: usize,
        now: Timestamp,
    ) -> Vec<&Signed<Offer>> {
        let mut hits: Vec<&Signed<Offer>> = self
            .inner
            .live(now)
            .filter(|o| filter.matches(o.body()))
            .collect();
        match sort {
            OfferSort::Price => {
                hits.sort_by_key(|o| (filter.price_of(o.body()), o.body().provider));
            }
            OfferSort::Newest => {
                hits.sort_by_key(|o| (core::cmp::Reverse(o.body().issued_at), o.body().provider))
            }
        }
        hits.truncate(limit);
        hits
    }

    /// All held offers, in provider order (expired ones included until expired).
    pub fn iter(&self) -> impl Iterator<Item = &Signed<Offer>> {
        self.inner.entries().values()
    }

    /// The held offers of providers after `after` (all of them for `None`), in provider
    /// order, as [`OfferBook::iter`]: a sync page's cursor resumes here without walking the
    /// providers before it.
    pub fn iter_after(&self, after: Option<AgoraId>) -> impl Iterator<Item = &Signed<Offer>> {
        let lower = after.map_or(Bound::Unbounded, |a| Bound::Excluded(ProviderKey::of(&a)));
        self.inner
            .entries()
            .range((lower, Bound::Unbounded))
            .map(|(_, o)| o)
    }
}

#[cfg(test)]
#[path = "offer_book_tests.rs"]
mod tests;

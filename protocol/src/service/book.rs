//! The service book: every node's view of published services, as a sans-IO state machine
//! (the [`crate::offer_book::OfferBook`]'s design, keyed by (owner, lease, port)).
//!
//! The node feeds it what gossip delivers (decoded and signature-checked records and
//! withdrawals), always passing the current time. Rules:
//!
//! - One record per (owner, lease, port): the highest `seq` wins; an equal `seq` is a
//!   duplicate, a lower one is stale.
//! - A withdrawal removes the record if its `seq` is not higher, and leaves a tombstone (until
//!   [`ServiceBookConfig::tombstone_ttl`]) so older records still in flight cannot resurrect
//!   it. Keys include the owner, and a record's owner is proven by the capability inside it,
//!   so nobody can tombstone another agent's service.
//! - Expired records drop out ([`ServiceBook::expire`]) and are never returned by queries;
//!   records issued further in the future than the clock-skew tolerance are refused.
//! - Bounded: at most [`ServiceBookConfig::max_per_owner`] records per owner (a flood from
//!   one key cannot crowd others out), and [`ServiceBookConfig::max_records`] in all: when
//!   full, a new record evicts the one expiring soonest if it outlives it.
//!
//! The sequence, tombstone, expiry and eviction rules are [`crate::seq_book`]'s, shared with
//! the offer book; the owner bound, filters and order are this module's.
//!
//! Maps are ordered, so iteration and tie-breaking are deterministic.

use core::ops::{Bound, RangeInclusive};
use core::time::Duration;

use super::{MAX_SERVICE_TTL, ServiceKind, ServiceRecord, ServiceWithdrawal};
use crate::id::AgoraId;
use crate::lease::LeaseId;
use crate::seq_book::{Limits, SeqBook, from_rejected, sequenced};
use crate::signed::{Digest, Signed};
use crate::time::Timestamp;

/// Where a record sits: one per owner, lease and port (also the cursor of sync pages).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ServiceKey {
    /// The lease's agent.
    pub owner: AgoraId,
    /// The lease.
    pub lease: LeaseId,
    /// The port.
    pub port: u16,
}

/// Limits of a [`ServiceBook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceBookConfig {
    /// Most records held.
    pub max_records: usize,
    /// Most records held for one owner.
    pub max_per_owner: usize,
    /// Tolerated difference between an owner's clock and ours.
    pub clock_skew: Duration,
    /// How long a withdrawal is remembered (records live at most [`MAX_SERVICE_TTL`]).
    pub tombstone_ttl: Duration,
}

impl Default for ServiceBookConfig {
    fn default() -> Self {
        Self {
            max_records: 10_000,
            max_per_owner: 32,
            clock_skew: Duration::from_secs(30),
            tombstone_ttl: MAX_SERVICE_TTL,
        }
    }
}

/// What inserting a record did: [`Inserted::Evicted`] names the key evicted.
pub type Inserted = crate::seq_book::Inserted<ServiceKey>;

/// Why a record or withdrawal was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceRejected {
    /// The book already holds this record.
    #[error("duplicate record (seq {seq})")]
    Duplicate {
        /// The sequence number.
        seq: u64,
    },
    /// The book holds a newer record or a withdrawal covering this `seq`.
    #[error("stale record: seq {got}, already at {have}")]
    Stale {
        /// What the book holds (record or withdrawal).
        have: u64,
        /// What arrived.
        got: u64,
    },
    /// The record has expired.
    #[error("record expired at {expires_at}")]
    Expired {
        /// When it expired.
        expires_at: Timestamp,
    },
    /// Issued in our future, beyond the skew tolerance.
    #[error("issued at {issued_at}, in the future")]
    FromFuture {
        /// Its claimed issue time.
        issued_at: Timestamp,
    },
    /// The owner already has as many records as allowed.
    #[error("the owner already publishes {max} services")]
    OwnerFull {
        /// The bound.
        max: usize,
    },
    /// The book is full of records that all outlive this one.
    #[error("service book full ({max} records)")]
    Full {
        /// The bound.
        max: usize,
    },
}

from_rejected!(ServiceRejected);

/// Typed filters for [`ServiceBook::query`]; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceFilter {
    /// Of this kind.
    pub kind: Option<ServiceKind>,
    /// With exactly this name.
    pub name: Option<String>,
    /// Published by this owner.
    pub owner: Option<AgoraId>,
    /// Running on this provider.
    pub provider: Option<AgoraId>,
    /// On this lease.
    pub lease: Option<LeaseId>,
}

impl ServiceFilter {
    /// Whether `record` passes the filter.
    pub fn matches(&self, record: &ServiceRecord) -> bool {
        self.kind.is_none_or(|k| record.kind == k)
            && self.name.as_deref().is_none_or(|n| record.name == n)
            && self.owner.is_none_or(|o| record.owner == o)
            && self.provider.is_none_or(|p| record.provider == p)
            && self.lease.is_none_or(|l| record.lease == l)
    }
}

// Records and withdrawals are filed by (owner, lease, port) under the rules of `seq_book`.
sequenced!(ServiceKey, |m| m.key(); entry ServiceRecord, withdrawal ServiceWithdrawal);

/// Published services as this node sees them.
#[derive(Debug, Clone)]
pub struct ServiceBook {
    config: ServiceBookConfig,
    /// Records by key, with the withdrawn keys' tombstones.
    inner: SeqBook<ServiceRecord>,
}

fn owner_range(owner: AgoraId) -> RangeInclusive<ServiceKey> {
    ServiceKey {
        owner,
        lease: Digest([0; 32]),
        port: 0,
    }..=ServiceKey {
        owner,
        lease: Digest([0xff; 32]),
        port: u16::MAX,
    }
}

/// How many records `owner` has in `book`.
fn count_in(book: &SeqBook<ServiceRecord>, owner: AgoraId) -> usize {
    book.entries().range(owner_range(owner)).count()
}

impl ServiceBook {
    /// An empty book.
    pub fn new(config: ServiceBookConfig) -> Self {
        Self {
            config,
            inner: SeqBook::new(Limits {
                max: config.max_records,
                clock_skew: config.clock_skew,
                tombstone_ttl: config.tombstone_ttl,
            }),
        }
    }

    /// Number of records held (expired ones included until [`ServiceBook::expire`]).
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the book holds no records.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The record at `key`, if unexpired at `now`.
    pub fn get(&self, key: &ServiceKey, now: Timestamp) -> Option<&Signed<ServiceRecord>> {
        self.inner.get(key, now)
    }

    /// How many records `owner` has in the book.
    pub fn count_of(&self, owner: AgoraId) -> usize {
        count_in(&self.inner, owner)
    }

    /// Applies a record received at `now`.
    ///
    /// # Errors
    /// [`ServiceRejected`] says why the book did not change.
    pub fn insert(
        &mut self,
        record: Signed<ServiceRecord>,
        now: Timestamp,
    ) -> Result<Inserted, ServiceRejected> {
        let owner = record.body().owner;
        let max = self.config.max_per_owner;
        // A new key must also fit its owner's bound (after dropping what has expired).
        let admit = |inner: &mut SeqBook<ServiceRecord>| {
            if count_in(inner, owner) >= max {
                inner.expire(now);
                if count_in(inner, owner) >= max {
                    return Err(ServiceRejected::OwnerFull { max });
                }
            }
            Ok(())
        };
        self.inner
            .insert_with(record, now, admit)
            .map(|i| i.map_evicted(|r| r.body().key()))
    }

    /// Applies a withdrawal received at `now`; returns whether a record was removed.
    ///
    /// # Errors
    /// [`ServiceRejected::Stale`] when the book holds a newer record than it covers, or a
    /// newer withdrawal; [`ServiceRejected::FromFuture`] for a future-dated one.
    pub fn withdraw(
        &mut self,
        withdrawal: &Signed<ServiceWithdrawal>,
        now: Timestamp,
    ) -> Result<bool, ServiceRejected> {
        Ok(self.inner.withdraw(withdrawal.body(), now)?)
    }

    /// Drops records expired at `now` and tombstones past their time; returns the keys of
    /// the records dropped, in key order.
    pub fn expire(&mut self, now: Timestamp) -> Vec<ServiceKey> {
        self.inner
            .expire(now)
            .iter()
            .map(|r| r.body().key())
            .collect()
    }

    /// Unexpired records matching `filter`, by name then key, at most `limit`.
    pub fn query(
        &self,
        filter: &ServiceFilter,
        limit: usize,
        now: Timestamp,
    ) -> Vec<&Signed<ServiceRecord>> {
        let mut hits: Vec<&Signed<ServiceRecord>> = self
            .inner
            .live(now)
            .filter(|r| filter.matches(r.body()))
            .collect();
        hits.sort_by(|a, b| {
            (a.body().name.as_str(), a.body().key()).cmp(&(b.body().name.as_str(), b.body().key()))
        });
        hits.truncate(limit);
        hits
    }

    /// All held records, in key order (expired ones included until expired).
    pub fn iter(&self) -> impl Iterator<Item = &Signed<ServiceRecord>> {
        self.inner.entries().values()
    }

    /// The held records after key `after` (all of them for `None`), in key order, as
    /// [`ServiceBook::iter`]: a sync page's cursor resumes here.
    pub fn iter_after(
        &self,
        after: Option<ServiceKey>,
    ) -> impl Iterator<Item = &Signed<ServiceRecord>> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.inner
            .entries()
            .range((lower, Bound::Unbounded))
            .map(|(_, r)| r)
    }
}

#[cfg(test)]
#[path = "book_tests.rs"]
mod tests;

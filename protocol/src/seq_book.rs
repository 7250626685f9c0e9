//! The rules the [`crate::offer_book::OfferBook`] and the [`crate::service::ServiceBook`]
//! share, written once: a bounded map of signed entries in which the highest sequence
//! number wins per key, withdrawals leave tombstones and expired entries drop out. Each book
//! keeps its own key, filters, order, extra bounds and error messages around it.
//!
//! - An entry expired at `now`, or issued further in the future than the clock-skew
//!   tolerance, is refused; so is a withdrawal from the future.
//! - Per key, a higher `seq` replaces, an equal one is a duplicate, a lower one (or one a
//!   tombstone covers) is stale.
//! - A withdrawal removes the key's entry unless that entry is newer, and leaves a tombstone
//!   until its TTL, so older entries still in flight cannot resurrect it. Tombstones are
//!   bounded like entries: when full, the one closest to its end is forgotten.
//! - When full, a new key evicts the entry expiring soonest (ties go to the lowest key) if
//!   the newcomer outlives it, so fresh entries displace nearly-dead ones.
//!
//! Maps are ordered, so iteration and tie-breaking are deterministic.

use core::fmt::Debug;
use core::time::Duration;
use std::collections::BTreeMap;

use crate::signed::Signed;
use crate::time::Timestamp;

/// What inserting into a book did; `E` names the entry a full book evicted (a provider for
/// the offer book, a service key for the service book).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted<E> {
    /// A key not in the book.
    New,
    /// Replaced the key's older entry.
    Replaced {
        /// The sequence number replaced.
        previous_seq: u64,
    },
    /// A new key took the place of the entry that expired soonest.
    Evicted {
        /// What was evicted.
        evicted: E,
    },
}

impl<E> Inserted<E> {
    /// The same outcome, naming the evicted entry through `f`.
    pub fn map_evicted<F>(self, f: impl FnOnce(E) -> F) -> Inserted<F> {
        match self {
            Self::New => Inserted::New,
            Self::Replaced { previous_seq } => Inserted::Replaced { previous_seq },
            Self::Evicted { evicted } => Inserted::Evicted {
                evicted: f(evicted),
            },
        }
    }

    /// What was evicted, if anything.
    pub fn evicted(self) -> Option<E> {
        match self {
            Self::Evicted { evicted } => Some(evicted),
            Self::New | Self::Replaced { .. } => None,
        }
    }
}

/// A signed message a book orders by sequence number under a key: an entry, or the
/// withdrawal of one (which shares its entry's key).
pub(crate) trait Sequenced {
    /// Where it sits in a book.
    type Key: Copy + Ord + Debug;
    /// Its key.
    fn book_key(&self) -> Self::Key;
    /// Its sequence number (a withdrawal covers every entry up to it).
    fn seq(&self) -> u64;
    /// When its signer issued it.
    fn issued_at(&self) -> Timestamp;
}

/// An entry a book holds until it expires.
pub(crate) trait Expiring: Sequenced {
    /// When it drops out of every book.
    fn expires_at(&self) -> Timestamp;
}

/// Files a book's entry type and its withdrawal type under `$key` (computed from a message
/// `$m` by `$book_key`), ordered by their `seq` and `issued_at` fields; the entry expires
/// at its `expires_at` field.
macro_rules! sequenced {
    ($key:ty, |$m:ident| $book_key:expr; entry $entry:ty, withdrawal $withdrawal:ty) => {
        $crate::seq_book::sequenced!(@one $key, |$m| $book_key, $entry);
        $crate::seq_book::sequenced!(@one $key, |$m| $book_key, $withdrawal);
        impl $crate::seq_book::Expiring for $entry {
            fn expires_at(&self) -> $crate::time::Timestamp {
                self.expires_at
            }
        }
    };
    (@one $key:ty, |$m:ident| $book_key:expr, $t:ty) => {
        impl $crate::seq_book::Sequenced for $t {
            type Key = $key;
            fn book_key(&self) -> $key {
                let $m = self;
                $book_key
            }
            fn seq(&self) -> u64 {
                self.seq
            }
            fn issued_at(&self) -> $crate::time::Timestamp {
                self.issued_at
            }
        }
    };
}
pub(crate) use sequenced;

/// `From<Rejected>` for a book's error type, whose variants of the same names carry the
/// same fields (its messages name what it holds).
macro_rules! from_rejected {
    ($error:ty) => {
        impl From<$crate::seq_book::Rejected> for $error {
            fn from(r: $crate::seq_book::Rejected) -> Self {
                use $crate::seq_book::Rejected;
                match r {
                    Rejected::Duplicate { seq } => Self::Duplicate { seq },
                    Rejected::Stale { have, got } => Self::Stale { have, got },
                    Rejected::Expired { expires_at } => Self::Expired { expires_at },
                    Rejected::FromFuture { issued_at } => Self::FromFuture { issued_at },
                    Rejected::Full { max } => Self::Full { max },
                }
            }
        }
    };
}
pub(crate) use from_rejected;

/// Why an entry or withdrawal was not applied; each book maps it into its own error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// The book already holds this key's entry with this `seq`.
    Duplicate { seq: u64 },
    /// The book holds a newer entry, or a withdrawal covering this `seq`.
    Stale { have: u64, got: u64 },
    /// The entry has expired.
    Expired { expires_at: Timestamp },
    /// Issued in our future, beyond the skew tolerance.
    FromFuture { issued_at: Timestamp },
    /// The book is full of entries that all outlive this one.
    Full { max: usize },
}

/// The bounds of a [`SeqBook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most entries held, and most tombstones.
    pub max: usize,
    /// Tolerated difference between a signer's clock and ours.
    pub clock_skew: Duration,
    /// How long a withdrawal is remembered.
    pub tombstone_ttl: Duration,
}

/// The shared core of a book: entries by key, and tombstones of withdrawn keys.
#[derive(Debug, Clone)]
pub(crate) struct SeqBook<T: Expiring> {
    limits: Limits,
    entries: BTreeMap<T::Key, Signed<T>>,
    /// Withdrawn keys: the withdrawn-up-to seq and when the tombstone may be forgotten.
    tombstones: BTreeMap<T::Key, (u64, Timestamp)>,
}

impl<T: Expiring> SeqBook<T> {
    /// An empty book.
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            entries: BTreeMap::new(),
            tombstones: BTreeMap::new(),
        }
    }

    /// Number of entries held (expired ones included until [`SeqBook::expire`]).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no entries.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every held entry by key, expired ones included until expired (for ranges).
    pub(crate) fn entries(&self) -> &BTreeMap<T::Key, Signed<T>> {
        &self.entries
    }

    /// The entry at `key`, if unexpired at `now`.
    pub(crate) fn get(&self, key: &T::Key, now: Timestamp) -> Option<&Signed<T>> {
        self.entries
            .get(key)
            .filter(|e| e.body().expires_at() > now)
    }

    /// The entries unexpired at `now`, in key order.
    pub(crate) fn live(&self, now: Timestamp) -> impl Iterator<Item = &Signed<T>> {
        self.entries
            .values()
            .filter(move |e| e.body().expires_at() > now)
    }

    /// Applies an entry received at `now`; an evicted entry comes back in the outcome.
    pub(crate) fn insert(
        &mut self,
        entry: Signed<T>,
        now: Timestamp,
    ) -> Result<Inserted<Signed<T>>, Rejected> {
        self.insert_with(entry, now, |_| Ok(()))
    }

    /// As [`SeqBook::insert`], asking `admit_new` before a key not yet held takes room (a
    /// book's own bound, such as records per owner; it may expire entries first).
    pub(crate) fn insert_with<E: From<Rejected>>(
        &mut self,
        entry: Signed<T>,
        now: Timestamp,
        admit_new: impl FnOnce(&mut Self) -> Result<(), E>,
    ) -> Result<Inserted<Signed<T>>, E> {
        let body = entry.body();
        let (key, seq, expires_at) = (body.book_key(), body.seq(), body.expires_at());
        if expires_at <= now {
            return Err(Rejected::Expired { expires_at }.into());
        }
        self.check_issued(body.issued_at(), now)?;
        if let Some(&(withdrawn, _)) = self.tombstones.get(&key)
            && seq <= withdrawn
        {
            return Err(Rejected::Stale {
                have: withdrawn,
                got: seq,
            }
            .into());
        }
        // One lookup serves the check and the replacement (the common case: a signer's
        // next entry).
        if let Some(current) = self.entries.get_mut(&key) {
            let have = current.body().seq();
            return match seq.cmp(&have) {
                core::cmp::Ordering::Less => Err(Rejected::Stale { have, got: seq }.into()),
                core::cmp::Ordering::Equal => Err(Rejected::Duplicate { seq: have }.into()),
                core::cmp::Ordering::Greater => {
                    *current = entry;
                    self.tombstones.remove(&key);
                    Ok(Inserted::Replaced { previous_seq: have })
                }
            };
        }
        admit_new(self)?;
        let mut result = Inserted::New;
        if self.entries.len() >= self.limits.max {
            self.expire(now);
        }
        if self.entries.len() >= self.limits.max {
            let victim = self
                .entries
                .iter()
                .min_by_key(|(k, e)| (e.body().expires_at(), **k))
                .map(|(k, e)| (*k, e.body().expires_at()));
            match victim {
                Some((victim, soonest)) if soonest < expires_at => {
                    if let Some(evicted) = self.entries.remove(&victim) {
                        result = Inserted::Evicted { evicted };
                    }
                }
                _ => {
                    return Err(Rejected::Full {
                        max: self.limits.max,
                    }
                    .into());
                }
            }
        }
        self.tombstones.remove(&key);
        self.entries.insert(key, entry);
        Ok(result)
    }

    /// Applies a withdrawal received at `now`; returns whether an entry was removed.
    pub(crate) fn withdraw<W: Sequenced<Key = T::Key>>(
        &mut self,
        withdrawal: &W,
        now: Timestamp,
    ) -> Result<bool, Rejected> {
        self.check_issued(withdrawal.issued_at(), now)?;
        let (key, seq) = (withdrawal.book_key(), withdrawal.seq());
        if let Some(current) = self.entries.get(&key) {
            let have = current.body().seq();
            if have > seq {
                return Err(Rejected::Stale { have, got: seq });
            }
        }
        if let Some(&(have, _)) = self.tombstones.get(&key)
            && have >= seq
        {
            return Err(Rejected::Stale { have, got: seq });
        }
        let removed = self.entries.remove(&key).is_some();
        if self.tombstones.len() >= self.limits.max {
            // Forget the tombstone closest to its end; bounded like the entries themselves.
            if let Some(oldest) = self
                .tombstones
                .iter()
                .min_by_key(|(k, (_, until))| (*until, **k))
                .map(|(k, _)| *k)
            {
                self.tombstones.remove(&oldest);
            }
        }
        self.tombstones
            .insert(key, (seq, now.saturating_add(self.limits.tombstone_ttl)));
        Ok(removed)
    }

    /// Drops entries expired at `now` and tombstones past their time; returns the entries
    /// dropped, in key order.
    pub(crate) fn expire(&mut self, now: Timestamp) -> Vec<Signed<T>> {
        let gone: Vec<T::Key> = self
            .entries
            .iter()
            .filter(|(_, e)| e.body().expires_at() <= now)
            .map(|(k, _)| *k)
            .collect();
        let dropped = gone.iter().filter_map(|k| self.entries.remove(k)).collect();
        self.tombstones.retain(|_, (_, until)| *until > now);
        dropped
    }

    /// Refuses what claims to be issued further in our future than the skew tolerance.
    fn check_issued(&self, issued_at: Timestamp, now: Timestamp) -> Result<(), Rejected> {
        if issued_at > now.saturating_add(self.limits.clock_skew) {
            return Err(Rejected::FromFuture { issued_at });
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "seq_book_tests.rs"]
pub(crate) mod tests;

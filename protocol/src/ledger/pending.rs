//! Entries waiting for the entries they name: bounded, indexed by what they wait for.

use std::collections::{BTreeMap, BTreeSet};

use crate::id::AgoraId;
use crate::signed::{Digest, Signed};
use crate::time::Timestamp;

use super::config::Config;
use super::entry::Entry;
use super::error::Rejected;

/// One waiting entry.
struct Held {
    entry: Signed<Entry>,
    arrived: Timestamp,
    /// Links not yet accepted.
    unresolved: BTreeSet<Digest>,
}

/// The pending set. Invariant: `waiters[d]` holds exactly the held entries whose
/// `unresolved` contains `d`, and no key of `waiters` maps to an empty set.
#[derive(Default)]
pub(super) struct Pending {
    held: BTreeMap<Digest, Held>,
    by_arrival: BTreeSet<(Timestamp, Digest)>,
    waiters: BTreeMap<Digest, BTreeSet<Digest>>,
    per_author: BTreeMap<AgoraId, usize>,
    bytes: usize,
}

impl Pending {
    pub(super) fn contains(&self, digest: &Digest) -> bool {
        self.held.contains_key(digest)
    }

    pub(super) fn len(&self) -> usize {
        self.held.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether `entry` fits within `config`'s pending bounds.
    pub(super) fn room_for(&self, config: &Config, entry: &Signed<Entry>) -> Result<(), Rejected> {
        let author = self
            .per_author
            .get(&entry.body().author)
            .copied()
            .unwrap_or(0);
        if self.held.len() >= config.max_pending
            || self.bytes.saturating_add(entry.as_bytes().len()) > config.max_pending_bytes
            || author >= config.max_pending_per_author
        {
            return Err(Rejected::PendingFull);
        }
        Ok(())
    }

    /// Holds `entry` until every digest of `unresolved` is resolved.
    pub(super) fn hold(
        &mut self,
        digest: Digest,
        entry: Signed<Entry>,
        arrived: Timestamp,
        unresolved: BTreeSet<Digest>,
    ) {
        for link in &unresolved {
            self.waiters.entry(*link).or_default().insert(digest);
        }
        self.by_arrival.insert((arrived, digest));
        *self.per_author.entry(entry.body().author).or_default() += 1;
        self.bytes = self.bytes.saturating_add(entry.as_bytes().len());
        self.held.insert(
            digest,
            Held {
                entry,
                arrived,
                unresolved,
            },
        );
    }

    /// The held entries waiting for `link`, which stop waiting for it (it was accepted or
    /// rejected): the caller resolves or drops each.
    pub(super) fn take_waiters(&mut self, link: &Digest) -> BTreeSet<Digest> {
        self.waiters.remove(link).unwrap_or_default()
    }

    /// The held entry `digest`.
    pub(super) fn entry(&self, digest: &Digest) -> Option<&Signed<Entry>> {
        self.held.get(digest).map(|h| &h.entry)
    }

    /// Marks `link` resolved for `digest` (after [`Pending::take_waiters`]); true when
    /// nothing is left to wait for.
    pub(super) fn resolve(&mut self, digest: &Digest, link: &Digest) -> bool {
        self.held.get_mut(digest).is_some_and(|h| {
            h.unresolved.remove(link);
            h.unresolved.is_empty()
        })
    }

    /// Stops holding `digest`, returning its entry.
    pub(super) fn remove(&mut self, digest: &Digest) -> Option<Signed<Entry>> {
        let held = self.held.remove(digest)?;
        for link in &held.unresolved {
            if let Some(set) = self.waiters.get_mut(link) {
                set.remove(digest);
                if set.is_empty() {
                    self.waiters.remove(link);
                }
            }
        }
        self.by_arrival.remove(&(held.arrived, *digest));
        let author = held.entry.body().author;
        if let Some(n) = self.per_author.get_mut(&author) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_author.remove(&author);
            }
        }
        self.bytes = self.bytes.saturating_sub(held.entry.as_bytes().len());
        Some(held.entry)
    }

    /// Held entries that arrived before `cutoff`, oldest first.
    pub(super) fn arrived_before(&self, cutoff: Timestamp) -> Vec<Digest> {
        self.by_arrival
            .iter()
            .take_while(|(at, _)| *at < cutoff)
            .map(|(_, d)| *d)
            .collect()
    }

    /// Digests waited for that are not held either: what to fetch.
    pub(super) fn missing(&self) -> impl Iterator<Item = &Digest> {
        self.waiters.keys().filter(|d| !self.held.contains_key(*d))
    }

    /// The held entries, by digest.
    pub(super) fn entries(&self) -> impl Iterator<Item = &Signed<Entry>> {
        self.held.values().map(|h| &h.entry)
    }
}

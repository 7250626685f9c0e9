//! [`EvidenceLog`]: the sans-IO Merkle DAG of signed entries.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest as _, Sha256};

use crate::id::AgoraId;
use crate::signed::{Digest, Signed, Verifier};
use crate::time::Timestamp;

use super::config::{Config, ConfigError};
use super::entry::Entry;
use super::equivocation::Equivocation;
use super::error::Rejected;
use super::fact::Fact;
use super::pending::Pending;

/// What [`EvidenceLog::state_hash`] hashes first.
pub const STATE_HASH_DOMAIN: &[u8] = b"agora/ledger-state/v1\0";

pub(super) const DIGEST_MIN: Digest = Digest([0; 32]);
pub(super) const DIGEST_MAX: Digest = Digest([0xff; 32]);

/// What became of an inserted entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted, with whatever that released.
    Inserted(Accepted),
    /// Already accepted or already waiting: nothing changed.
    Duplicate,
    /// Valid so far, waiting for the entries it names; `missing` are those this log has
    /// neither accepted nor holds (fetch them by hash). The rest wait for their own parents.
    Pending {
        /// Digests to fetch.
        missing: Vec<Digest>,
    },
    /// Refused; see [`Rejected::is_fault`]. Entries waiting for a refused entry are dropped
    /// with it when the refusal is the sender's fault.
    Rejected(Rejected),
}

/// An accepted entry and its consequences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The entry inserted.
    pub digest: Digest,
    /// Waiting entries it released, each accepted after all it names, in acceptance order.
    pub released: Vec<Digest>,
    /// Waiting entries that turned out invalid once what they name was known, and those
    /// that named them: dropped.
    pub dropped: Vec<(Digest, Rejected)>,
    /// Authors newly marked as equivocators (by two entries at one seq, or by a proof fact).
    pub equivocators: Vec<AgoraId>,
    /// Proofs for authors newly found equivocating here (not by a logged proof): facts for
    /// the caller to append, so that peers learn of it without holding both entries.
    pub proofs: Vec<Equivocation>,
}

impl Accepted {
    fn new(digest: Digest) -> Self {
        Self {
            digest,
            released: Vec::new(),
            dropped: Vec::new(),
            equivocators: Vec::new(),
            proofs: Vec::new(),
        }
    }
}

/// An accepted entry and its height.
pub(super) struct Node {
    pub(super) entry: Signed<Entry>,
    /// 0 for an entry naming nothing, else one more than the highest entry it names: sorting
    /// by (height, digest) is a topological order every replica computes alike.
    pub(super) height: u64,
}

/// An equivocating author.
struct Mark {
    proof: Option<Equivocation>,
    /// A proof naming the author is in the log.
    logged: bool,
}

/// The evidence log: every accepted entry, the entries waiting for parents, the heads, and
/// the authors caught equivocating. Sans-IO: no clock, no I/O, no randomness.
///
/// # Rules
///
/// An entry is accepted when it decodes and verifies, everything it names (`prev`,
/// `parents`) is accepted, `prev` is the author's entry at `seq - 1`, no parent is the
/// author's own, and it is dated no earlier than any of them. These depend only on the entry
/// and what it names (fixed by digest), so any delivery order, duplication or partition of
/// the same entries accepts the same set: the [`state_hash`](Self::state_hash) agrees.
/// An author with two accepted entries at one `seq` (a fork) is marked; both entries stay,
/// as evidence and because peers may already build on either. An entry dated in the future
/// is accepted all the same (a rule on the receiver's clock would split replicas); only
/// [`append`](Self::append) declines to build on one.
///
/// # Driving it
///
/// - Peers' entries: [`insert_bytes`](Self::insert_bytes) (or [`insert`](Self::insert) for
///   an already verified one). Penalise the sender when the outcome is a
///   [`Rejected::is_fault`]; fetch `missing` digests on `Pending`; persist and announce what
///   `Inserted` accepted (the entry and `released`); append the `proofs` it returns.
/// - Own facts: [`append`](Self::append).
/// - Now and then: [`expire`](Self::expire) with the time; [`missing`](Self::missing) to
///   retry fetches; [`heads`](Self::heads) and the state hash to announce.
/// - Peers asking: [`fetch`](Self::fetch) by digest, [`page`](Self::page) by frontier.
pub struct EvidenceLog {
    config: Config,
    accepted: BTreeMap<Digest, Node>,
    by_author: BTreeSet<(AgoraId, u64, Digest)>,
    by_height: BTreeSet<(u64, Digest)>,
    /// Highest accepted seq per author.
    authors: BTreeMap<AgoraId, u64>,
    heads: BTreeSet<Digest>,
    bytes: usize,
    pending: Pending,
    marks: BTreeMap<AgoraId, Mark>,
}

impl EvidenceLog {
    /// An empty log.
    ///
    /// # Errors
    /// [`ConfigError`] when `config` does not validate.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            accepted: BTreeMap::new(),
            by_author: BTreeSet::new(),
            by_height: BTreeSet::new(),
            authors: BTreeMap::new(),
            heads: BTreeSet::new(),
            bytes: 0,
            pending: Pending::default(),
            marks: BTreeMap::new(),
        })
    }

    /// Decodes, verifies (with `verifier`: the entry's signature and every nested one, see
    /// [`ledger::decode`](super::decode)) and inserts a peer's entry received at `now`.
    /// For a page of entries, [`insert_batch`](Self::insert_batch) verifies them together.
    ///
    /// Known bytes are recognised by digest before any signature check.
    pub fn insert_bytes(
        &mut self,
        now: Timestamp,
        bytes: &[u8],
        verifier: &impl Verifier,
    ) -> Outcome {
        let digest = Digest::of(bytes);
        if self.is_known(&digest) {
            return Outcome::Duplicate;
        }
        match super::ingest::decode(bytes, verifier) {
            Ok(entry) => self.insert_new(now, digest, entry),
            Err(e) => {
                self.drop_waiting_on(digest);
                Outcome::Rejected(Rejected::Invalid(e))
            }
        }
    }

    /// Inserts an entry already decoded and verified, received at `now`.
    pub fn insert(&mut self, now: Timestamp, entry: Signed<Entry>) -> Outcome {
        let digest = entry.digest();
        if self.is_known(&digest) {
            return Outcome::Duplicate;
        }
        self.insert_new(now, digest, entry)
    }

    pub(super) fn insert_new(
        &mut self,
        now: Timestamp,
        digest: Digest,
        entry: Signed<Entry>,
    ) -> Outcome {
        let mut unresolved = BTreeSet::new();
        for link in entry.body().links() {
            match self.accepted.get(link) {
                Some(node) => {
                    if let Err(reason) = check_link(entry.body(), link, &node.entry) {
                        self.drop_waiting_on(digest);
                        return Outcome::Rejected(reason);
                    }
                }
                None => {
                    unresolved.insert(*link);
                }
            }
        }
        if unresolved.is_empty() {
            let mut accepted = Accepted::new(digest);
            if let Err(reason) = self.accept(digest, entry, &mut accepted) {
                return Outcome::Rejected(reason);
            }
            self.release(digest, &mut accepted);
            return Outcome::Inserted(accepted);
        }
        if let Err(reason) = self.pending.room_for(&self.config, &entry) {
            return Outcome::Rejected(reason);
        }
        let missing = unresolved
            .iter()
            .filter(|d| !self.pending.contains(d))
            .copied()
            .collect();
        self.pending.hold(digest, entry, now, unresolved);
        Outcome::Pending { missing }
    }

    /// Adds an entry whose links are all accepted and checked.
    fn accept(
        &mut self,
        digest: Digest,
        entry: Signed<Entry>,
        accepted: &mut Accepted,
    ) -> Result<(), Rejected> {
        let len = entry.as_bytes().len();
        if self.accepted.len() >= self.config.max_entries
            || self.bytes.saturating_add(len) > self.config.max_bytes
        {
            return Err(Rejected::Full {
                entries: self.accepted.len(),
                bytes: self.bytes,
            });
        }
        let body = entry.body();
        let (author, seq) = (body.author, body.seq);
        let height = body
            .links()
            .filter_map(|link| self.accepted.get(link))
            .map(|node| node.height.saturating_add(1))
            .max()
            .unwrap_or(0);
        for link in body.links() {
            self.heads.remove(link);
        }
        self.heads.insert(digest);
        self.by_height.insert((height, digest));
        let fork = self
            .by_author
            .range((author, seq, DIGEST_MIN)..=(author, seq, DIGEST_MAX))
            .next()
            .map(|(_, _, d)| *d);
        self.by_author.insert((author, seq, digest));
        let top = self.authors.entry(author).or_insert(seq);
        *top = (*top).max(seq);
        self.bytes = self.bytes.saturating_add(len);
        if let Fact::Equivocation(proof) = &body.fact {
            self.mark(proof.author(), Some(proof.clone()), true, accepted);
        }
        let fork_proof = fork
            .and_then(|d| self.accepted.get(&d))
            .map(|other| Equivocation::new(&other.entry, &entry).ok());
        if let Some(proof) = fork_proof {
            self.mark(author, proof, false, accepted);
        }
        self.accepted.insert(digest, Node { entry, height });
        Ok(())
    }

    fn mark(
        &mut self,
        author: AgoraId,
        proof: Option<Equivocation>,
        logged: bool,
        accepted: &mut Accepted,
    ) {
        if let Some(mark) = self.marks.get_mut(&author) {
            mark.logged |= logged;
            if mark.proof.is_none() {
                mark.proof = proof;
            }
            return;
        }
        accepted.equivocators.push(author);
        if !logged && let Some(proof) = &proof {
            accepted.proofs.push(proof.clone());
        }
        self.marks.insert(author, Mark { proof, logged });
    }

    /// Accepts, iteratively, every waiting entry that `first`'s acceptance completes.
    fn release(&mut self, first: Digest, accepted: &mut Accepted) {
        let mut stack = vec![first];
        while let Some(link) = stack.pop() {
            for child in self.pending.take_waiters(&link) {
                let Some(entry) = self.pending.entry(&child).cloned() else {
                    continue;
                };
                let checked = match self.accepted.get(&link) {
                    Some(node) => check_link(entry.body(), &link, &node.entry),
                    None => Ok(()),
                };
                if let Err(reason) = checked {
                    self.pending.remove(&child);
                    accepted.dropped.push((child, reason));
                    accepted.dropped.extend(self.drop_waiting_on(child));
                    continue;
                }
                if !self.pending.resolve(&child, &link) {
                    continue;
                }
                let Some(entry) = self.pending.remove(&child) else {
                    continue;
                };
                match self.accept(child, entry, accepted) {
                    Ok(()) => {
                        accepted.released.push(child);
                        stack.push(child);
                    }
                    // Full: the entries waiting for it stay, waiting for room.
                    Err(reason) => accepted.dropped.push((child, reason)),
                }
            }
        }
    }

    /// Drops, iteratively, every waiting entry that names `rejected` or a dropped entry.
    pub(super) fn drop_waiting_on(&mut self, rejected: Digest) -> Vec<(Digest, Rejected)> {
        let mut dropped = Vec::new();
        let mut stack = vec![rejected];
        while let Some(link) = stack.pop() {
            for child in self.pending.take_waiters(&link) {
                if self.pending.remove(&child).is_some() {
                    dropped.push((child, Rejected::LinkRejected { link }));
                    stack.push(child);
                }
            }
        }
        dropped
    }

    /// Drops entries that have waited for their parents since before `now - pending_ttl`;
    /// returns their digests. Entries waiting for them keep waiting (they become missing).
    pub fn expire(&mut self, now: Timestamp) -> Vec<Digest> {
        let cutoff = now.saturating_sub(self.config.pending_ttl);
        let old = self.pending.arrived_before(cutoff);
        for digest in &old {
            self.pending.remove(digest);
        }
        old
    }

    /// SHA-256 over [`STATE_HASH_DOMAIN`], the number of accepted entries (u64, big-endian)
    /// and their digests in ascending byte order: equal exactly when the accepted sets are
    /// (up to SHA-256 collisions), whatever order they were inserted in. The sorted set is
    /// kept as entries arrive; the hash is computed on each call (32 bytes per entry, about
    /// 10 ms for 100,000 entries).
    pub fn state_hash(&self) -> Digest {
        let mut hash = Sha256::new();
        hash.update(STATE_HASH_DOMAIN);
        let count = u64::try_from(self.accepted.len()).unwrap_or(u64::MAX);
        hash.update(count.to_be_bytes());
        for digest in self.accepted.keys() {
            hash.update(digest.0);
        }
        Digest(hash.finalize().into())
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Accepted entries.
    pub fn len(&self) -> usize {
        self.accepted.len()
    }

    /// Whether nothing is accepted.
    pub fn is_empty(&self) -> bool {
        self.accepted.is_empty()
    }

    /// Wire bytes of the accepted entries.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries waiting for parents.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Wire bytes of the entries waiting for parents.
    pub fn pending_bytes(&self) -> usize {
        self.pending.bytes()
    }

    /// Whether `digest` is accepted.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.accepted.contains_key(digest)
    }

    /// Whether `digest` is waiting for parents.
    pub fn is_pending(&self, digest: &Digest) -> bool {
        self.pending.contains(digest)
    }

    pub(super) fn is_known(&self, digest: &Digest) -> bool {
        self.contains(digest) || self.is_pending(digest)
    }

    /// The accepted entry `digest`.
    pub fn get(&self, digest: &Digest) -> Option<&Signed<Entry>> {
        self.accepted.get(digest).map(|n| &n.entry)
    }

    /// The accepted entry `digest` with its height (see [`iter`](Self::iter)).
    pub(super) fn node(&self, digest: &Digest) -> Option<&Node> {
        self.accepted.get(digest)
    }

    /// Accepted entries in canonical order: by height (one more than the highest entry named),
    /// then digest. A topological order (what an entry names comes first), the same on every
    /// replica with the same entries: the order to fold facts into state.
    pub fn iter(&self) -> impl Iterator<Item = &Signed<Entry>> {
        self.by_height
            .iter()
            .filter_map(|(_, d)| self.accepted.get(d).map(|n| &n.entry))
    }

    /// The canonical order's index, from `start` (see [`page`](Self::page)).
    pub(super) fn by_height(&self) -> &BTreeSet<(u64, Digest)> {
        &self.by_height
    }

    /// The highest accepted seq of every author.
    pub(super) fn authors(&self) -> &BTreeMap<AgoraId, u64> {
        &self.authors
    }

    /// The first accepted entry of `author` at `seq` or above (lowest seq, then digest).
    pub(super) fn first_from(&self, author: AgoraId, seq: u64) -> Option<Digest> {
        self.by_author
            .range((author, seq, DIGEST_MIN)..=(author, u64::MAX, DIGEST_MAX))
            .next()
            .map(|(_, _, d)| *d)
    }

    /// `author`'s accepted entries by seq (forks side by side, by digest).
    pub fn by_author(&self, author: AgoraId) -> impl Iterator<Item = &Signed<Entry>> {
        self.by_author
            .range((author, 0, DIGEST_MIN)..=(author, u64::MAX, DIGEST_MAX))
            .filter_map(|(_, _, d)| self.get(d))
    }

    /// `author`'s latest accepted entry (highest seq; of forks, the highest digest).
    pub fn tip(&self, author: &AgoraId) -> Option<&Signed<Entry>> {
        let seq = *self.authors.get(author)?;
        self.by_author
            .range((*author, seq, DIGEST_MIN)..=(*author, seq, DIGEST_MAX))
            .next_back()
            .and_then(|(_, _, d)| self.get(d))
    }

    /// Accepted entries no accepted entry names, ascending.
    pub fn heads(&self) -> impl ExactSizeIterator<Item = &Digest> {
        self.heads.iter()
    }

    /// Up to `limit` digests that waiting entries name and this log has neither accepted
    /// nor holds: what to fetch.
    pub fn missing(&self, limit: usize) -> Vec<Digest> {
        self.pending.missing().take(limit).copied().collect()
    }

    /// The entries waiting for parents (in digest order).
    pub fn pending(&self) -> impl Iterator<Item = &Signed<Entry>> {
        self.pending.entries()
    }

    /// Whether `author` is marked as an equivocator.
    pub fn is_equivocator(&self, author: &AgoraId) -> bool {
        self.marks.contains_key(author)
    }

    /// Every author marked as an equivocator, ascending.
    pub fn equivocators(&self) -> impl Iterator<Item = &AgoraId> {
        self.marks.keys()
    }

    /// A proof that `author` equivocated, when this log has one (a logged proof, or its two
    /// entries when they fit in one).
    pub fn equivocation(&self, author: &AgoraId) -> Option<&Equivocation> {
        self.marks.get(author).and_then(|m| m.proof.as_ref())
    }
}

/// Checks `entry` against `linked`, the accepted entry it names as `link`.
fn check_link(entry: &Entry, link: &Digest, linked: &Signed<Entry>) -> Result<(), Rejected> {
    let named = linked.body();
    if entry.prev.as_ref() == Some(link) {
        if named.author != entry.author {
            return Err(Rejected::PrevAuthor { prev: *link });
        }
        let expected = entry.seq.saturating_sub(1);
        if named.seq != expected {
            return Err(Rejected::PrevSeq {
                prev: *link,
                expected,
                found: named.seq,
            });
        }
    } else if named.author == entry.author {
        return Err(Rejected::OwnParent { parent: *link });
    }
    if entry.at < named.at {
        return Err(Rejected::BeforeLink {
            at: entry.at,
            link: *link,
            link_at: named.at,
        });
    }
    Ok(())
}

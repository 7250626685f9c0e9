//! The evidence log in the node's store, and rebuilding it from there.
//!
//! - [`Column::LedgerEntries`]: key = an accepted entry's digest (32 bytes), value = its
//!   signed wire bytes. Only accepted entries are written (never pending ones), each in the
//!   batch that accepted it, so what an entry names is always written before it or with it.
//! - [`Column::LedgerHeads`]: `head/` + digest → empty, one key per head of the log (an
//!   index the rebuild cross-checks), and `own` → this node's latest own entry: seq (u64,
//!   big-endian) and digest. The own record is written in the batch of each own entry, so
//!   after a restart the node knows how far its chain went even if entries are missing.
//!
//! [`rebuild`] does not trust the store: every entry is checked against its key (SHA-256),
//! decoded and verified (its signature and every nested signature), then inserted in a
//! topological order of its links, so an entry is never held back waiting for a parent that
//! is in the store. What fails is reported as a [`Problem`] and left out of the log.

use std::collections::{BTreeMap, BTreeSet};

use agora_protocol::cofactored::Cofactored;
use agora_protocol::ledger::{Config, Entry, EvidenceLog, Outcome, Rejected};
use agora_protocol::{AgoraId, Digest, Signed, SignedError, Timestamp};

use crate::store::{Column, Store, StoreError, WriteBatch};

/// The prefix of a head's key in [`Column::LedgerHeads`].
pub const HEAD_PREFIX: &[u8] = b"head/";

/// The key of this node's own-chain record in [`Column::LedgerHeads`].
pub const OWN_KEY: &[u8] = b"own";

/// This node's latest own entry, as recorded with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnRecord {
    /// Its seq.
    pub seq: u64,
    /// Its digest.
    pub digest: Digest,
}

impl OwnRecord {
    fn encode(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        let (seq, digest) = out.split_at_mut(8);
        seq.copy_from_slice(&self.seq.to_be_bytes());
        digest.copy_from_slice(&self.digest.0);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let seq = bytes.get(..8)?.try_into().ok().map(u64::from_be_bytes)?;
        let digest = Digest(bytes.get(8..)?.try_into().ok()?);
        Some(Self { seq, digest })
    }
}

/// Adds to `batch` the accepted entries `digests` (in acceptance order) and the head changes
/// they make: each entry becomes a head and stops what it names from being one.
pub fn put_accepted(batch: &mut WriteBatch, log: &EvidenceLog, digests: &[Digest]) {
    for digest in digests {
        let Some(entry) = log.get(digest) else {
            continue;
        };
        batch.put(Column::LedgerEntries, digest.0, entry.as_bytes());
        for link in entry.body().links() {
            batch.delete(Column::LedgerHeads, head_key(link));
        }
        batch.put(Column::LedgerHeads, head_key(digest), Vec::new());
    }
}

/// Adds this node's own-chain record to `batch`.
pub fn put_own(batch: &mut WriteBatch, own: OwnRecord) {
    batch.put(Column::LedgerHeads, OWN_KEY, own.encode());
}

fn head_key(digest: &Digest) -> Vec<u8> {
    let mut key = HEAD_PREFIX.to_vec();
    key.extend_from_slice(&digest.0);
    key
}

/// Something wrong with one stored entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A key that is not a 32-byte digest.
    #[error("key {key} is not a 32-byte digest")]
    BadKey {
        /// The key, hex.
        key: String,
    },
    /// The stored bytes do not hash to their key: changed or damaged on disk.
    #[error("entry {key}: its bytes hash to {actual}, not to their key (tampered or corrupt)")]
    DigestMismatch {
        /// The key.
        key: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// The bytes do not decode or a signature does not verify.
    #[error("entry {digest}: {error}")]
    Invalid {
        /// The entry.
        digest: Digest,
        /// Why.
        error: SignedError,
    },
    /// The log refused it (a link that breaks the rules, or the log is full).
    #[error("entry {digest} refused: {reason}")]
    Refused {
        /// The entry.
        digest: Digest,
        /// Why.
        reason: Rejected,
    },
    /// It names entries the store does not hold (they are fetched from peers once the node
    /// runs).
    #[error("entry {digest} names {missing} entries the store does not hold")]
    Orphan {
        /// The entry.
        digest: Digest,
        /// How many of its links are missing.
        missing: usize,
    },
}

/// Why the store could not be read into a log at all.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// Reading failed.
    #[error("reading the ledger from the store: {0}")]
    Store(#[from] StoreError),
    /// The store holds more entries than the log may.
    #[error("the store holds more than {max} ledger entries, the log's bound")]
    TooMany {
        /// The bound.
        max: usize,
    },
    /// The configuration is invalid.
    #[error("ledger configuration: {0}")]
    Config(#[from] agora_protocol::ledger::ConfigError),
}

/// A log rebuilt from the store, and what did not go into it.
pub struct Rebuilt {
    /// The log.
    pub log: EvidenceLog,
    /// Entries read from the store.
    pub read: usize,
    /// What was wrong, entry by entry.
    pub problems: Vec<Problem>,
    /// The heads index as stored.
    pub stored_heads: BTreeSet<Digest>,
    /// The own-chain record as stored (whoever's chain: the store's owner).
    pub own: Option<OwnRecord>,
}

impl Rebuilt {
    /// Whether the stored heads index names exactly the rebuilt log's heads.
    pub fn heads_agree(&self) -> bool {
        self.log.heads().eq(self.stored_heads.iter())
    }

    /// Whether `author`'s rebuilt chain reaches the stored own record (its entry is in the
    /// log, or a later one is); `true` without a record.
    pub fn own_chain_complete(&self, author: &AgoraId) -> bool {
        own_chain_complete(&self.log, author, self.own)
    }
}

/// Whether `author`'s chain in `log` reaches `own`: the recorded entry is accepted, or the
/// author's tip is past its seq.
pub fn own_chain_complete(log: &EvidenceLog, author: &AgoraId, own: Option<OwnRecord>) -> bool {
    let Some(own) = own else {
        return true;
    };
    if log.contains(&own.digest) {
        return true;
    }
    log.tip(author).is_some_and(|t| t.body().seq > own.seq)
}

/// Reads every stored entry, checks and verifies each, and inserts them into a new log with
/// `config` at `now`, parents first.
///
/// # Errors
/// [`RebuildError`] when the store cannot be read or holds more than the log's bound; bad
/// entries are [`Problem`]s, not errors.
pub fn rebuild(store: &dyn Store, config: Config, now: Timestamp) -> Result<Rebuilt, RebuildError> {
    let max = config.max_entries;
    let mut log = EvidenceLog::new(config)?;
    let rows = store.scan_prefix(Column::LedgerEntries, b"", max.saturating_add(1))?;
    if rows.len() > max {
        return Err(RebuildError::TooMany { max });
    }
    let read = rows.len();
    let mut problems = Vec::new();
    let mut entries = BTreeMap::new();
    let mut intact: Vec<(Digest, Vec<u8>)> = Vec::with_capacity(rows.len());
    for (key, value) in rows {
        let Ok(key) = <[u8; 32]>::try_from(key.as_slice()).map(Digest) else {
            problems.push(Problem::BadKey {
                key: key.iter().map(|b| format!("{b:02x}")).collect(),
            });
            continue;
        };
        let actual = Digest::of(&value);
        if actual != key {
            problems.push(Problem::DigestMismatch { key, actual });
            continue;
        }
        intact.push((key, value));
    }
    // Every stored entry's signatures again, by the log's rule, a page at a time.
    for page in intact.chunks(agora_protocol::ledger::MAX_PAGE_ENTRIES) {
        let bytes: Vec<&[u8]> = page.iter().map(|(_, v)| v.as_slice()).collect();
        let decoded = agora_protocol::ledger::decode_batch(&bytes, &Cofactored);
        for ((key, _), decoded) in page.iter().zip(decoded) {
            match decoded {
                Ok(entry) => {
                    entries.insert(*key, entry);
                }
                Err(error) => problems.push(Problem::Invalid {
                    digest: *key,
                    error,
                }),
            }
        }
    }
    for digest in topological(&entries) {
        let Some(entry) = entries.remove(&digest) else {
            continue;
        };
        match log.insert(now, entry) {
            Outcome::Inserted(accepted) => {
                problems.extend(
                    accepted
                        .dropped
                        .into_iter()
                        .map(|(digest, reason)| Problem::Refused { digest, reason }),
                );
            }
            Outcome::Duplicate | Outcome::Pending { .. } => {}
            Outcome::Rejected(reason) => problems.push(Problem::Refused { digest, reason }),
        }
    }
    let held: BTreeSet<Digest> = log.pending().map(Signed::digest).collect();
    for entry in log.pending() {
        let missing = entry
            .body()
            .links()
            .filter(|l| !log.contains(l) && !held.contains(l))
            .count();
        problems.push(Problem::Orphan {
            digest: entry.digest(),
            missing: missing.max(1),
        });
    }
    let stored_heads = store
        .scan_prefix(Column::LedgerHeads, HEAD_PREFIX, usize::MAX)?
        .into_iter()
        .filter_map(|(k, _)| {
            let d = k.get(HEAD_PREFIX.len()..)?;
            <[u8; 32]>::try_from(d).ok().map(Digest)
        })
        .collect();
    let own = store
        .get(Column::LedgerHeads, OWN_KEY)?
        .and_then(|v| OwnRecord::decode(&v));
    Ok(Rebuilt {
        log,
        read,
        problems,
        stored_heads,
        own,
    })
}

/// The digests of `entries` ordered so that every entry comes after the entries it names
/// that are among them (a depth-first post-order; links are SHA-256 digests, so there are no
/// cycles).
fn topological(entries: &BTreeMap<Digest, Signed<Entry>>) -> Vec<Digest> {
    let mut order = Vec::with_capacity(entries.len());
    let mut done = BTreeSet::new();
    let mut stack = Vec::new();
    for root in entries.keys() {
        stack.push((*root, false));
        while let Some((digest, expanded)) = stack.pop() {
            if done.contains(&digest) {
                continue;
            }
            if expanded {
                done.insert(digest);
                order.push(digest);
                continue;
            }
            stack.push((digest, true));
            if let Some(entry) = entries.get(&digest) {
                for link in entry.body().links() {
                    if entries.contains_key(link) && !done.contains(link) {
                        stack.push((*link, false));
                    }
                }
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemStore, RocksStore};
    use agora_protocol::ledger::{Fact, Rating};
    use agora_protocol::{Signer as _, Timestamp};
    use ed25519_dalek::SigningKey;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn t(secs: u64) -> Timestamp {
        Timestamp::from_unix_secs(1_800_000_000 + secs)
    }

    fn rating(n: u64) -> Fact {
        let rating = Rating {
            rater: key(40).id(),
            provider: key(41).id(),
            lease: Digest::of(&n.to_be_bytes()),
            score: 50,
            rated_at: t(n),
        };
        Fact::Rating(Signed::sign(rating, &key(40)).unwrap())
    }

    /// Three authors appending in turn (each naming the others' heads), persisted the way
    /// the node does: one batch per entry.
    fn populate(store: &dyn Store) -> EvidenceLog {
        let mut log = EvidenceLog::new(Config::default()).unwrap();
        for n in 0..30u64 {
            let author = key(1 + u8::try_from(n % 3).unwrap());
            let entry = log.append(t(n), &author, rating(n)).unwrap();
            let mut batch = WriteBatch::new();
            put_accepted(&mut batch, &log, &[entry.digest()]);
            if n % 3 == 0 {
                put_own(
                    &mut batch,
                    OwnRecord {
                        seq: entry.body().seq,
                        digest: entry.digest(),
                    },
                );
            }
            store.write(batch).unwrap();
        }
        log
    }

    fn round_trip(store: &dyn Store) {
        let log = populate(store);
        let rebuilt = rebuild(store, Config::default(), t(100)).unwrap();
        assert_eq!(rebuilt.read, 30);
        assert!(rebuilt.problems.is_empty(), "{:?}", rebuilt.problems);
        assert_eq!(rebuilt.log.state_hash(), log.state_hash());
        assert!(rebuilt.heads_agree());
        assert_eq!(
            rebuilt.own.map(|o| o.seq),
            log.tip(&key(1).id()).map(|e| e.body().seq)
        );
        assert!(rebuilt.own_chain_complete(&key(1).id()));
        assert_eq!(rebuilt.log.pending_len(), 0);
    }

    #[test]
    fn both_stores_rebuild_the_same_log() {
        round_trip(&MemStore::new());
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path()).unwrap();
        round_trip(&store);
        drop(store);
        // And again after reopening the data dir.
        let store = RocksStore::open(dir.path()).unwrap();
        let rebuilt = rebuild(&store, Config::default(), t(100)).unwrap();
        assert_eq!(rebuilt.read, 30);
        assert!(rebuilt.problems.is_empty());
    }

    #[test]
    fn tampered_and_forged_entries_are_problems_not_entries() {
        let store = MemStore::new();
        let log = populate(&store);
        let tip = *log.heads().next().unwrap();
        let mut bytes = log.get(&tip).unwrap().as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        // Changed in place: the bytes no longer hash to their key.
        store.put(Column::LedgerEntries, &tip.0, &bytes).unwrap();
        let rebuilt = rebuild(&store, Config::default(), t(100)).unwrap();
        assert!(matches!(
            rebuilt.problems.as_slice(),
            [Problem::DigestMismatch { key, .. }] if *key == tip
        ));
        assert!(
            !rebuilt.heads_agree(),
            "the stored heads name the lost entry"
        );
        // Re-keyed by its new digest: the signature check refuses it.
        store.delete(Column::LedgerEntries, &tip.0).unwrap();
        let forged = Digest::of(&bytes);
        store.put(Column::LedgerEntries, &forged.0, &bytes).unwrap();
        let rebuilt = rebuild(&store, Config::default(), t(100)).unwrap();
        assert!(matches!(
            rebuilt.problems.as_slice(),
            [Problem::Invalid { digest, .. }] if *digest == forged
        ));
        let msg = rebuilt.problems[0].to_string();
        assert!(msg.contains(&forged.to_string()), "{msg}");
        assert_eq!(rebuilt.log.len(), 29);
    }

    #[test]
    fn a_missing_parent_leaves_an_orphan() {
        let store = MemStore::new();
        let log = populate(&store);
        let first = log.iter().next().unwrap().digest();
        store.delete(Column::LedgerEntries, &first.0).unwrap();
        let rebuilt = rebuild(&store, Config::default(), t(100)).unwrap();
        assert!(!rebuilt.problems.is_empty());
        assert!(
            rebuilt
                .problems
                .iter()
                .all(|p| matches!(p, Problem::Orphan { .. })),
            "{:?}",
            rebuilt.problems
        );
        assert!(rebuilt.log.len() < 29);
    }

    #[test]
    fn own_chain_is_incomplete_when_its_last_entry_is_gone() {
        let store = MemStore::new();
        let log = populate(&store);
        let own = log.tip(&key(1).id()).unwrap().digest();
        store.delete(Column::LedgerEntries, &own.0).unwrap();
        let rebuilt = rebuild(&store, Config::default(), t(100)).unwrap();
        assert!(!rebuilt.own_chain_complete(&key(1).id()));
    }

    #[test]
    fn topological_order_puts_links_first_in_any_store_order() {
        let store = MemStore::new();
        let log = populate(&store);
        let entries: BTreeMap<Digest, Signed<Entry>> =
            log.iter().map(|e| (e.digest(), e.clone())).collect();
        let order = topological(&entries);
        assert_eq!(order.len(), entries.len());
        let position: BTreeMap<Digest, usize> =
            order.iter().enumerate().map(|(i, d)| (*d, i)).collect();
        for (digest, entry) in &entries {
            for link in entry.body().links() {
                assert!(position[link] < position[digest]);
            }
        }
    }
}

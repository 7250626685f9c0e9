//! The node's replica of the evidence log: the sans-IO [`EvidenceLog`] kept in the store,
//! fed by this node's own facts and by its peers.
//!
//! ```text
//! signup (gateway), grant and final receipt (provider), revocations ─▶ Ledger::record
//!     ─▶ EvidenceLog::append ─▶ one batch (entry, heads, own-chain record) ─▶ WAL synced
//!     ─▶ acknowledged ─▶ announced (daemon::network: agora/v1/ledger)
//! peer pages and fetches ─▶ Ledger::ingest (verify outside the lock, insert, one batch)
//! start ─▶ store::rebuild (every entry re-verified) ─▶ the log and the own chain's seq
//! ```
//!
//! - Durability: an own entry is written (RocksDB WAL, in one atomic batch with the heads
//!   and the own-chain record) before anyone sees it, and the WAL is synced before
//!   [`Ledger::append`] returns, so whoever is told about it (an API caller, a gateway)
//!   learns of an entry that survives `kill -9` and power loss. Peers' entries are written
//!   in one batch per page, unsynced: a crash loses at most what peers still hold.
//! - Restart: [`store::rebuild`] re-verifies every stored entry (the store is not trusted:
//!   a damaged or altered entry is reported and left out, then fetched again from peers).
//!   The own chain continues from the stored entries; if the own-chain record names an entry
//!   the store lost, appends are refused (no second entry at a seq peers may hold) until
//!   peers return it.
//! - A store write that fails halts the ledger: nothing more is accepted or appended until
//!   a restart, so no entry is announced that the store does not hold.
//!
//! [`EvidenceLog`]: agora_protocol::ledger::EvidenceLog

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use agora_attest::Identity;
use agora_protocol::cofactored::Cofactored;
use agora_protocol::lease::LeaseId;
use agora_protocol::ledger::{
    AppendError, Config, Cursor, Entry, EvidenceLog, Fact, MAX_FETCH, MAX_PAGE_ENTRIES, Outcome,
    Rejected,
};
use agora_protocol::ledger_rpc::{
    Announce, MAX_ANNOUNCED_HEADS, MAX_FRONTIER_AUTHORS, Request, Response,
};
use agora_protocol::{AgoraId, Digest, Signed, Timestamp};
use serde::Serialize;
use tokio::sync::watch;
use tracing::{Instrument as _, debug, error, info, info_span, warn};

use crate::metrics::NodeMetrics;
use crate::store::{Column, Store, StoreError, WriteBatch};

pub mod store;
pub mod verify;

pub use store::{OwnRecord, Problem, RebuildError};

/// Why an append was not done (nothing was acknowledged).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// An earlier store write failed; the ledger takes nothing until a restart.
    #[error("the ledger is halted after a store failure: {0}")]
    Halted(String),
    /// The store's own-chain record names an entry the log lacks: appending now could sign
    /// a second entry at a seq peers may already hold.
    #[error(
        "this node's own ledger chain reached seq {seq} but that entry is missing; appends wait until peers return it"
    )]
    OwnChainIncomplete {
        /// The recorded seq.
        seq: u64,
    },
    /// The log refused the fact (invalid, too large, or the log is full).
    #[error(transparent)]
    Append(#[from] AppendError),
    /// Writing or syncing the store failed.
    #[error("ledger store: {0}")]
    Store(#[from] StoreError),
    /// The store could not be read into a log.
    #[error(transparent)]
    Rebuild(#[from] RebuildError),
    /// The blocking task doing the append died.
    #[error("ledger task: {0}")]
    Task(String),
}

/// What became of one fact given to [`Ledger::append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// A new own entry, written and synced.
    New(Signed<Entry>),
    /// The log already records this fact (the digest of its signed message; for a lease
    /// grant, any grant of that lease): nothing added.
    Known(Digest),
}

/// What a page or fetch answer did to the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Entries accepted (with those they released).
    pub accepted: usize,
    /// Entries already held.
    pub duplicates: usize,
    /// Entries now waiting for what they name.
    pub pending: usize,
    /// Entries refused through no fault of the sender (the log is full).
    pub refused: usize,
    /// Entries refused for the sender's fault (bad bytes, bad signature, bad links).
    pub faults: Vec<(Digest, Rejected)>,
    /// Digests waiting entries name that the log lacks: what to fetch next.
    pub missing: Vec<Digest>,
}

/// This node's latest own entry, as `GET /v1/ledger/state` shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct OwnChain {
    /// Its seq (the chain has seq + 1 entries).
    pub seq: u64,
    /// Its digest (hex).
    pub digest: String,
}

/// The log as `GET /v1/ledger/state` shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LedgerState {
    /// The state hash (hex): two nodes have the same one exactly when they accepted the
    /// same entries.
    pub state_hash: String,
    /// Accepted entries.
    pub entries: u64,
    /// Their wire bytes.
    pub bytes: u64,
    /// Accepted entries by kind of fact (`signup`, `lease`, `usage`, `rating`,
    /// `revocation`, `equivocation`).
    pub facts: BTreeMap<String, u64>,
    /// Usage receipts the log holds with the agent's acknowledgement (counted once each,
    /// however many acknowledged facts name them).
    pub acknowledged_receipts: u64,
    /// The heads (hex, ascending; at most 64 listed).
    pub heads: Vec<String>,
    /// How many heads there are.
    pub heads_total: u64,
    /// Authors with accepted entries.
    pub authors: u64,
    /// Entries waiting for entries they name.
    pub pending: u64,
    /// Their wire bytes.
    pub pending_bytes: u64,
    /// Authors caught signing two entries with one seq.
    pub equivocators: Vec<String>,
    /// This node's id (the author of its own entries).
    pub node: String,
    /// This node's latest own entry, if it appended any.
    pub own: Option<OwnChain>,
    /// Whether this node may append (its own chain is complete and the store works).
    pub appending: bool,
    /// Why the ledger stopped taking entries, if it did.
    pub halted: Option<String>,
}

struct Inner {
    log: EvidenceLog,
    /// Digests of the signed messages the accepted facts carry (dedupes appends).
    facts: BTreeSet<Digest>,
    /// Leases with a grant fact (an extension re-signs the grant: one fact per lease).
    leases: BTreeSet<LeaseId>,
    /// Receipts with a usage fact carrying the agent's acknowledgement.
    acked: BTreeSet<Digest>,
    kinds: BTreeMap<&'static str, u64>,
    own: Option<OwnRecord>,
    state_hash: Option<Digest>,
    halted: Option<String>,
}

impl Inner {
    fn state_hash(&mut self) -> Digest {
        *self.state_hash.get_or_insert_with(|| self.log.state_hash())
    }

    /// Counts and indexes newly accepted entries.
    fn note(&mut self, digests: &[Digest]) {
        for digest in digests {
            let Some(entry) = self.log.get(digest) else {
                continue;
            };
            let fact = &entry.body().fact;
            *self.kinds.entry(fact.kind()).or_default() += 1;
            if let Some(d) = fact_digest(fact) {
                self.facts.insert(d);
            }
            match fact {
                Fact::Lease(grant) => {
                    self.leases.insert(grant.body().lease);
                }
                Fact::Usage(usage) if usage.ack.is_some() => {
                    self.acked.insert(usage.receipt.digest());
                }
                _ => {}
            }
        }
        if !digests.is_empty() {
            self.state_hash = None;
        }
    }

    /// Whether the log already records `fact`: the same signed message, for a grant any
    /// grant of its lease, and for a usage fact one that prevails over it or is as good
    /// (see [`agora_protocol::ledger::Usage::prevails_over`]): an acknowledged receipt is
    /// recorded once, and an acknowledgement arriving after the receipt alone is appended
    /// as a second fact that upgrades it.
    fn records(&self, fact: &Fact) -> bool {
        match fact {
            Fact::Lease(grant) if self.leases.contains(&grant.body().lease) => true,
            Fact::Usage(usage) if usage.ack.is_some() => {
                self.acked.contains(&usage.receipt.digest())
            }
            _ => fact_digest(fact).is_some_and(|d| self.facts.contains(&d)),
        }
    }
}

/// The digest of the signed message a fact carries, which names the fact: a signup record,
/// a grant, a receipt, a rating, a revocation. Proofs have none (an author is marked once).
pub fn fact_digest(fact: &Fact) -> Option<Digest> {
    match fact {
        Fact::Signup(s) => Some(s.digest()),
        Fact::Lease(g) => Some(g.digest()),
        Fact::Usage(u) => Some(u.receipt.digest()),
        Fact::Rating(r) => Some(r.digest()),
        Fact::Revocation(r) => Some(r.digest()),
        Fact::Equivocation(_) => None,
    }
}

/// The node's ledger: the log, its store, and a signal of changes for the network loop.
pub struct Ledger {
    id: AgoraId,
    identity: Arc<Identity>,
    store: Arc<dyn Store>,
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
    metrics: NodeMetrics,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Rebuilds the log from `store` at `now` (see [`store::rebuild`]), for the node of
    /// `identity`.
    ///
    /// # Errors
    /// [`LedgerError::Rebuild`] when the store cannot be read, [`LedgerError::Store`] when
    /// the heads index cannot be repaired.
    pub fn open(
        identity: Arc<Identity>,
        store: Arc<dyn Store>,
        config: Config,
        metrics: NodeMetrics,
        now: Timestamp,
    ) -> Result<Self, LedgerError> {
        let id = identity.agora_id();
        let started = std::time::Instant::now();
        let rebuilt = store::rebuild(store.as_ref(), config, now)?;
        for problem in rebuilt.problems.iter().take(20) {
            warn!(%problem, "stored ledger entry left out");
        }
        if rebuilt.problems.len() > 20 {
            warn!(
                more = rebuilt.problems.len() - 20,
                "more stored ledger entries left out"
            );
        }
        if !rebuilt.own_chain_complete(&id) {
            warn!(
                seq = rebuilt.own.map(|o| o.seq),
                "this node's own ledger chain is missing its latest entry; appends wait until peers return it"
            );
        }
        if !rebuilt.heads_agree() {
            let mut batch = WriteBatch::new();
            for head in &rebuilt.stored_heads {
                let mut key = store::HEAD_PREFIX.to_vec();
                key.extend_from_slice(&head.0);
                batch.delete(Column::LedgerHeads, key);
            }
            let heads: Vec<Digest> = rebuilt.log.heads().copied().collect();
            for head in heads {
                let mut key = store::HEAD_PREFIX.to_vec();
                key.extend_from_slice(&head.0);
                batch.put(Column::LedgerHeads, key, Vec::new());
            }
            store.write(batch)?;
            info!("ledger heads index rewritten from the entries");
        }
        let mut inner = Inner {
            log: rebuilt.log,
            facts: BTreeSet::new(),
            leases: BTreeSet::new(),
            acked: BTreeSet::new(),
            kinds: BTreeMap::new(),
            own: rebuilt.own,
            state_hash: None,
            halted: None,
        };
        let all: Vec<Digest> = inner.log.iter().map(Signed::digest).collect();
        inner.note(&all);
        let state_hash = inner.state_hash();
        info!(
            entries = inner.log.len(),
            read = rebuilt.read,
            left_out = rebuilt.problems.len(),
            %state_hash,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "ledger restored (every entry re-verified)"
        );
        Ok(Self {
            id,
            identity,
            store,
            inner: Mutex::new(inner),
            changed: watch::channel(0).0,
            metrics,
        })
    }

    /// The author of this node's entries.
    pub fn id(&self) -> AgoraId {
        self.id
    }

    /// Locked state. A poisoned lock is recovered: the log's invariants hold after every
    /// completed call, and the store is written before the in-memory indexes change.
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes whenever entries are accepted (the network loop announces then).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Appends `facts` as this node's next entries at `now`, in one batch, and syncs the
    /// store before returning: an [`Appended::New`] entry survives any crash after this
    /// returns. Facts the log already records are skipped ([`Appended::Known`]).
    ///
    /// Blocks on the store's sync: call it from a blocking context (see [`Ledger::record`]).
    ///
    /// # Errors
    /// [`LedgerError`]; entries appended before a store failure stay in memory but the
    /// ledger halts, so none of them is announced.
    pub fn append(&self, now: Timestamp, facts: Vec<Fact>) -> Result<Vec<Appended>, LedgerError> {
        let mut out = Vec::with_capacity(facts.len());
        let mut new = Vec::new();
        {
            let mut inner = self.inner();
            if let Some(why) = &inner.halted {
                return Err(LedgerError::Halted(why.clone()));
            }
            if !store::own_chain_complete(&inner.log, &self.id, inner.own) {
                return Err(LedgerError::OwnChainIncomplete {
                    seq: inner.own.map_or(0, |o| o.seq),
                });
            }
            for fact in facts {
                if inner.records(&fact) {
                    out.push(Appended::Known(
                        fact_digest(&fact).unwrap_or(Digest([0; 32])),
                    ));
                    continue;
                }
                let entry = inner.log.append(now, self.identity.as_ref(), fact)?;
                new.push(entry.digest());
                out.push(Appended::New(entry));
            }
            let Some(last) = new.last().and_then(|d| inner.log.get(d)) else {
                return Ok(out);
            };
            let own = OwnRecord {
                seq: last.body().seq,
                digest: last.digest(),
            };
            let mut batch = WriteBatch::new();
            store::put_accepted(&mut batch, &inner.log, &new);
            store::put_own(&mut batch, own);
            if let Err(e) = self.store.write(batch) {
                error!(error = %e, "cannot write own ledger entries; the ledger halts");
                inner.halted = Some(e.to_string());
                return Err(e.into());
            }
            inner.own = Some(own);
            inner.note(&new);
        }
        // Synced outside the lock: peers' pages need not wait for the disk.
        self.store.flush()?;
        for appended in &out {
            if let Appended::New(entry) = appended {
                self.metrics.ledger("appended", entry.body().fact.kind());
                info!(
                    digest = %entry.digest(),
                    seq = entry.body().seq,
                    kind = entry.body().fact.kind(),
                    "ledger entry appended"
                );
            }
        }
        self.bump();
        Ok(out)
    }

    /// Appends one fact at the current time on a blocking thread, within a span naming its
    /// kind: what the node's async tasks call.
    ///
    /// # Errors
    /// As [`Ledger::append`].
    pub async fn record(self: &Arc<Self>, fact: Fact) -> Result<Appended, LedgerError> {
        let span = info_span!("ledger_append", kind = fact.kind(), fact = ?fact_digest(&fact));
        let this = Arc::clone(self);
        async move {
            let appended =
                tokio::task::spawn_blocking(move || this.append(crate::clock::now(), vec![fact]))
                    .await
                    .map_err(|e| LedgerError::Task(e.to_string()))??;
            appended
                .into_iter()
                .next()
                .ok_or_else(|| LedgerError::Task("no outcome".into()))
        }
        .instrument(span)
        .await
    }

    /// Verifies and inserts a peer's entries (wire bytes) received at `now`, writing what
    /// was accepted in one batch. Entries already held are recognised by digest before any
    /// signature check; verification happens outside the lock. Equivocations found are
    /// appended as proof facts.
    pub fn ingest(&self, now: Timestamp, wires: &[Vec<u8>]) -> Ingested {
        let mut out = Ingested::default();
        let fresh: Vec<(Digest, &Vec<u8>)> = {
            let inner = self.inner();
            wires
                .iter()
                .map(|w| (Digest::of(w), w))
                .filter(|(d, _)| !inner.log.contains(d) && !inner.log.is_pending(d))
                .collect()
        };
        out.duplicates = wires.len() - fresh.len();
        // The page's signatures (each entry's and every nested one) in two batched rounds,
        // by the evidence log's rule (cofactored ed25519: the same verdicts batched or one
        // by one, so every replica accepts the same entries however they arrive).
        let bytes: Vec<&[u8]> = fresh.iter().map(|(_, w)| w.as_slice()).collect();
        let decoded: Vec<_> = fresh
            .iter()
            .zip(agora_protocol::ledger::decode_batch(&bytes, &Cofactored))
            .map(|((d, w), decoded)| (*d, *w, decoded))
            .collect();
        let mut proofs = Vec::new();
        let mut accepted = Vec::new();
        {
            let mut inner = self.inner();
            if inner.halted.is_some() {
                out.refused = decoded.len();
                return out;
            }
            for (digest, wire, decoded) in decoded {
                let outcome = match decoded {
                    Ok(entry) => inner.log.insert(now, entry),
                    // The log drops whatever waited for these bytes.
                    Err(_) => inner.log.insert_bytes(now, wire, &Cofactored),
                };
                match outcome {
                    Outcome::Inserted(a) => {
                        accepted.push(a.digest);
                        accepted.extend(a.released);
                        out.refused += a.dropped.len();
                        for (d, reason) in &a.dropped {
                            debug!(digest = %d, %reason, "waiting ledger entry dropped");
                        }
                        for author in &a.equivocators {
                            warn!(%author, "ledger author equivocated");
                        }
                        proofs.extend(a.proofs);
                    }
                    Outcome::Duplicate => out.duplicates += 1,
                    Outcome::Pending { .. } => out.pending += 1,
                    Outcome::Rejected(reason) if reason.is_fault() => {
                        out.faults.push((digest, reason));
                    }
                    Outcome::Rejected(_) => out.refused += 1,
                }
            }
            if !accepted.is_empty() {
                let mut batch = WriteBatch::new();
                store::put_accepted(&mut batch, &inner.log, &accepted);
                if let Err(e) = self.store.write(batch) {
                    error!(error = %e, "cannot write peers' ledger entries; the ledger halts");
                    inner.halted = Some(e.to_string());
                }
                inner.note(&accepted);
            }
            out.missing = inner.log.missing(MAX_FETCH);
        }
        out.accepted = accepted.len();
        for (result, n) in [
            ("accepted", out.accepted),
            ("duplicate", out.duplicates),
            ("pending", out.pending),
            ("refused", out.refused),
            ("invalid", out.faults.len()),
        ] {
            for _ in 0..n {
                self.metrics.ledger("synced", result);
            }
        }
        if out.accepted > 0 {
            self.bump();
        }
        if !proofs.is_empty() {
            let facts = proofs.into_iter().map(Fact::Equivocation).collect();
            if let Err(e) = self.append(now, facts) {
                warn!(error = %e, "cannot append an equivocation proof");
            }
        }
        out
    }

    /// What to announce at `now`.
    pub fn announce(&self, now: Timestamp) -> Announce {
        let mut inner = self.inner();
        let state_hash = inner.state_hash();
        let heads: Vec<Digest> = inner
            .log
            .heads()
            .take(MAX_ANNOUNCED_HEADS)
            .copied()
            .collect();
        Announce {
            state_hash,
            entries: u64::try_from(inner.log.len()).unwrap_or(u64::MAX),
            more_heads: inner.log.heads().len() > heads.len(),
            heads,
            at: now,
        }
    }

    /// Whether a peer's announcement shows entries this log lacks: a different state hash
    /// and a head not accepted here (or more heads than it listed).
    pub fn wants(&self, announce: &Announce) -> bool {
        let mut inner = self.inner();
        if announce.state_hash == inner.state_hash() {
            return false;
        }
        announce.more_heads || announce.heads.iter().any(|h| !inner.log.contains(h))
    }

    /// A page request for everything past this log's frontier, after `after`. A frontier of
    /// more than [`MAX_FRONTIER_AUTHORS`] authors keeps those with the highest seqs.
    pub fn page_request(&self, after: Option<Cursor>) -> Request {
        let mut have = self.inner().log.frontier();
        if have.seqs.len() > MAX_FRONTIER_AUTHORS {
            let mut by_seq: Vec<(u64, AgoraId)> = have.seqs.iter().map(|(a, s)| (*s, *a)).collect();
            by_seq.sort_unstable_by(|a, b| b.cmp(a));
            have.seqs = by_seq
                .into_iter()
                .take(MAX_FRONTIER_AUTHORS)
                .map(|(s, a)| (a, s))
                .collect();
        }
        Request::Page {
            have,
            after,
            limit: u16::try_from(MAX_PAGE_ENTRIES).unwrap_or(u16::MAX),
        }
    }

    /// Digests that waiting entries name and the log lacks (at most `limit`).
    pub fn missing(&self, limit: usize) -> Vec<Digest> {
        self.inner().log.missing(limit)
    }

    /// Answers a peer's request from the log (bounded by the log's page and fetch limits).
    pub fn answer(&self, request: &Request) -> Response {
        let inner = self.inner();
        match request {
            Request::Fetch(digests) => Response::Entries(
                inner
                    .log
                    .fetch(digests)
                    .iter()
                    .map(|e| e.as_bytes().to_vec())
                    .collect(),
            ),
            Request::Page { have, after, limit } => {
                let page = inner.log.page(have, *after, usize::from(*limit));
                Response::Page {
                    entries: page.entries.iter().map(|e| e.as_bytes().to_vec()).collect(),
                    next: page.next,
                }
            }
        }
    }

    /// Drops entries that waited too long for their parents; returns how many.
    pub fn expire(&self, now: Timestamp) -> usize {
        self.inner().log.expire(now).len()
    }

    /// Whether the log records the fact carried by the signed message `digest`.
    pub fn has_fact(&self, digest: &Digest) -> bool {
        self.inner().facts.contains(digest)
    }

    /// Whether the log records `fact` (the same signed message; for a grant, any grant of
    /// its lease): [`Ledger::append`] skips those.
    pub fn records(&self, fact: &Fact) -> bool {
        self.inner().records(fact)
    }

    /// The log's state hash (cached between changes).
    pub fn state_hash(&self) -> Digest {
        self.inner().state_hash()
    }

    /// The state hash and every accepted entry (cheap clones of shared signed messages),
    /// taken under one short lock: work over them (reputation) runs without holding it.
    pub fn snapshot(&self) -> (Digest, Vec<Signed<Entry>>) {
        let mut inner = self.inner();
        let hash = inner.state_hash();
        (hash, inner.log.iter().cloned().collect())
    }

    /// Calls `f` with the log (read-only), under the lock: keep it short.
    pub fn with_log<T>(&self, f: impl FnOnce(&EvidenceLog) -> T) -> T {
        f(&self.inner().log)
    }

    /// The log's state, for `GET /v1/ledger/state`.
    pub fn state(&self) -> LedgerState {
        let mut inner = self.inner();
        let state_hash = inner.state_hash().to_string();
        let log = &inner.log;
        let appending =
            inner.halted.is_none() && store::own_chain_complete(log, &self.id, inner.own);
        LedgerState {
            state_hash,
            entries: u64::try_from(log.len()).unwrap_or(u64::MAX),
            bytes: u64::try_from(log.bytes()).unwrap_or(u64::MAX),
            facts: inner
                .kinds
                .iter()
                .map(|(k, n)| ((*k).to_owned(), *n))
                .collect(),
            acknowledged_receipts: u64::try_from(inner.acked.len()).unwrap_or(u64::MAX),
            heads: log
                .heads()
                .take(MAX_ANNOUNCED_HEADS)
                .map(ToString::to_string)
                .collect(),
            heads_total: u64::try_from(log.heads().len()).unwrap_or(u64::MAX),
            authors: u64::try_from(log.frontier().seqs.len()).unwrap_or(u64::MAX),
            pending: u64::try_from(log.pending_len()).unwrap_or(u64::MAX),
            pending_bytes: u64::try_from(log.pending_bytes()).unwrap_or(u64::MAX),
            equivocators: log.equivocators().map(ToString::to_string).collect(),
            node: self.id.to_string(),
            own: log.tip(&self.id).map(|e| OwnChain {
                seq: e.body().seq,
                digest: e.digest().to_string(),
            }),
            appending,
            halted: inner.halted.clone(),
        }
    }
}

#[cfg(test)]
mod tests;

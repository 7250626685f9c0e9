//! Offline verification of a data dir's ledger (`agora ledger verify`): every stored entry
//! re-verified, the log rebuilt, the state hash recomputed, and the heads index and the
//! own-chain record checked against it.

use std::collections::BTreeMap;

use agora_protocol::ledger::Config;
use agora_protocol::{AgoraId, Digest, Timestamp};

use super::store::{self, OwnRecord, Problem, RebuildError};
use crate::store::{Column, Store};

/// What verifying a store found.
#[derive(Debug)]
pub struct Report {
    /// Entries read from the store.
    pub read: usize,
    /// Entries that verified and went into the log.
    pub entries: usize,
    /// The recomputed state hash.
    pub state_hash: Digest,
    /// Accepted entries by kind of fact.
    pub facts: BTreeMap<&'static str, u64>,
    /// Authors with accepted entries.
    pub authors: usize,
    /// Authors caught equivocating.
    pub equivocators: Vec<AgoraId>,
    /// The data dir's owner (the node whose own chain the own-chain record follows).
    pub owner: Option<AgoraId>,
    /// The owner's recorded own chain.
    pub own: Option<OwnRecord>,
    /// Whether the owner's chain reaches the record.
    pub own_chain_complete: bool,
    /// Heads of the rebuilt log.
    pub heads: usize,
    /// Whether the stored heads index agrees with them.
    pub heads_agree: bool,
    /// Entries that failed, one by one.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Whether everything verified.
    pub fn ok(&self) -> bool {
        self.failures().is_empty()
    }

    /// Every failure, one line each, for people.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        if !self.heads_agree {
            out.push("the stored heads index does not match the entries' heads".to_owned());
        }
        if !self.own_chain_complete
            && let Some(own) = self.own
        {
            out.push(format!(
                "the node's own chain is recorded up to seq {} (entry {}) but that entry is not in the log",
                own.seq, own.digest
            ));
        }
        out
    }
}

/// Verifies the ledger in `store` at `now` (for pending entries' clock only).
///
/// # Errors
/// [`RebuildError`] when the store cannot be read at all.
pub fn verify(store: &dyn Store, now: Timestamp) -> Result<Report, RebuildError> {
    let rebuilt = store::rebuild(store, Config::default(), now)?;
    let owner = store
        .get(Column::Identity, crate::daemon::OWNER_KEY)?
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .and_then(|b| AgoraId::from_bytes(b).ok());
    let own_chain_complete = match owner {
        Some(owner) => rebuilt.own_chain_complete(&owner),
        None => rebuilt.own.is_none_or(|o| rebuilt.log.contains(&o.digest)),
    };
    let heads_agree = rebuilt.heads_agree();
    let log = &rebuilt.log;
    let mut facts = BTreeMap::new();
    for entry in log.iter() {
        *facts.entry(entry.body().fact.kind()).or_insert(0u64) += 1;
    }
    Ok(Report {
        read: rebuilt.read,
        entries: log.len(),
        state_hash: log.state_hash(),
        facts,
        authors: log.frontier().seqs.len(),
        equivocators: log.equivocators().copied().collect(),
        owner,
        own: rebuilt.own,
        own_chain_complete,
        heads: log.heads().len(),
        heads_agree,
        problems: rebuilt.problems,
    })
}

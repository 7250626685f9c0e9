//! The committee's state in the node's store.
//!
//! - [`Column::QuotaVotes`]: this validator's [`VoteRecord`]s by slot, written in one synced
//!   batch (with the certificates the request carried) before the vote is sent.
//! - [`Column::QuotaCertificates`]: certificates by slot (`s` chain position, `c` closing,
//!   `p` pool grant), and `L` + lease id → the slot key of a lock this provider was shown.
//!
//! Slot keys sort by account then position, so one account's chain is one prefix.

use std::sync::Arc;

use agora_protocol::committee::{Certificate, Committee, Slot, VoteRecord};
use agora_protocol::lease::LeaseId;
use agora_protocol::{AgoraId, Ed25519};
use tracing::warn;

use crate::store::{Column, Store, StoreError, WriteBatch};

/// Most records or certificates read back at start (a warning names a store beyond it).
pub const MAX_RESTORED: usize = 1 << 20;

/// Why the committee's state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored vote record or certificate does not decode.
    #[error("stored {what} under {key} does not decode: {reason}")]
    Corrupt {
        /// Record or certificate.
        what: &'static str,
        /// Its key, hex.
        key: String,
        /// Why.
        reason: String,
    },
    /// A record could not be encoded (not reachable for records a validator made).
    #[error("cannot encode: {0}")]
    Encode(String),
    /// A blocking task failed.
    #[error("store task failed: {0}")]
    Task(String),
}

/// The store key of `slot`.
pub fn slot_key(slot: &Slot) -> Vec<u8> {
    let mut key = Vec::with_capacity(41);
    match slot {
        Slot::Seq { account, seq } => {
            key.push(b's');
            key.extend_from_slice(account.as_bytes());
            key.extend_from_slice(&seq.to_be_bytes());
        }
        Slot::Close { account, lock_seq } => {
            key.push(b'c');
            key.extend_from_slice(account.as_bytes());
            key.extend_from_slice(&lock_seq.to_be_bytes());
        }
        Slot::Pool { epoch, index } => {
            key.push(b'p');
            key.extend_from_slice(&epoch.to_be_bytes());
            key.extend_from_slice(&index.to_be_bytes());
        }
    }
    key
}

/// Most lock certificates read back for one lease: the genesis bounds open locks per
/// account (64 by default), so a lease has no more.
const MAX_LOCKS_PER_LEASE: usize = 256;

fn lease_key(lease: &LeaseId) -> Vec<u8> {
    let mut key = vec![b'L'];
    key.extend_from_slice(&lease.0);
    key
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The committee's persistent state.
#[derive(Clone)]
pub struct State {
    store: Arc<dyn Store>,
    committee: Committee,
}

impl State {
    /// The state of `committee` in `store`.
    pub fn new(store: Arc<dyn Store>, committee: Committee) -> Self {
        Self { store, committee }
    }

    /// Writes a vote record and the certificates that came with its request in one batch,
    /// then syncs the store: when this returns `Ok`, the vote survives a crash. Runs on a
    /// blocking thread.
    ///
    /// # Errors
    /// [`StateError`].
    pub async fn persist_vote(
        &self,
        record: Vec<u8>,
        slot: Slot,
        proofs: &[Certificate],
    ) -> Result<(), StateError> {
        let mut batch = WriteBatch::new();
        batch.put(Column::QuotaVotes, slot_key(&slot), record);
        for cert in proofs {
            let bytes = cert
                .encode()
                .map_err(|e| StateError::Encode(e.to_string()))?;
            batch.put(Column::QuotaCertificates, slot_key(&cert.slot()), bytes);
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.write(batch)?;
            store.flush()
        })
        .await
        .map_err(|e| StateError::Task(e.to_string()))??;
        Ok(())
    }

    /// Keeps a certificate (not synced: certificates can always be fetched again).
    ///
    /// # Errors
    /// [`StateError`].
    pub fn put_certificate(&self, cert: &Certificate) -> Result<(), StateError> {
        let bytes = cert
            .encode()
            .map_err(|e| StateError::Encode(e.to_string()))?;
        self.store
            .put(Column::QuotaCertificates, &slot_key(&cert.slot()), &bytes)?;
        Ok(())
    }

    /// Keeps a lock or top-up certificate of `lease` (a provider about to start or extend
    /// it), indexed by the lease for the settlement: `L ‖ lease ‖ slot key` → slot key.
    ///
    /// # Errors
    /// [`StateError`].
    pub fn put_lock(&self, lease: &LeaseId, cert: &Certificate) -> Result<(), StateError> {
        let bytes = cert
            .encode()
            .map_err(|e| StateError::Encode(e.to_string()))?;
        let key = slot_key(&cert.slot());
        let mut index = lease_key(lease);
        index.extend_from_slice(&key);
        let mut batch = WriteBatch::new();
        batch
            .put(Column::QuotaCertificates, key.clone(), bytes)
            .put(Column::QuotaCertificates, index, key);
        self.store.write(batch)?;
        Ok(())
    }

    /// The lock and top-up certificates a provider kept for `lease`, by chain position
    /// (an index entry without the slot suffix is the single lock of an older store).
    ///
    /// # Errors
    /// [`StateError`].
    pub fn locks_of(&self, lease: &LeaseId) -> Result<Vec<Certificate>, StateError> {
        let mut out = Vec::new();
        for (_, key) in self.store.scan_prefix(
            Column::QuotaCertificates,
            &lease_key(lease),
            MAX_LOCKS_PER_LEASE,
        )? {
            if let Some(cert) = self.certificate_at(&key)?
                && !out.iter().any(|c: &Certificate| c.slot() == cert.slot())
            {
                out.push(cert);
            }
        }
        out.sort_by_key(|c| match c.slot() {
            Slot::Seq { seq, .. } => seq,
            _ => u64::MAX,
        });
        Ok(out)
    }

    /// The certificate of `slot`, if kept here.
    ///
    /// # Errors
    /// [`StateError`].
    pub fn certificate(&self, slot: &Slot) -> Result<Option<Certificate>, StateError> {
        self.certificate_at(&slot_key(slot))
    }

    fn certificate_at(&self, key: &[u8]) -> Result<Option<Certificate>, StateError> {
        let Some(bytes) = self.store.get(Column::QuotaCertificates, key)? else {
            return Ok(None);
        };
        Certificate::decode(&bytes, &self.committee, &Ed25519)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                what: "certificate",
                key: hex(key),
                reason: e.to_string(),
            })
    }

    /// The chain certificates kept for `account` from `from_seq` on, at most `limit`.
    ///
    /// # Errors
    /// [`StateError`].
    pub fn chain(
        &self,
        account: &AgoraId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Certificate>, StateError> {
        let mut prefix = vec![b's'];
        prefix.extend_from_slice(account.as_bytes());
        let mut out = Vec::new();
        for (key, bytes) in
            self.store
                .scan_prefix(Column::QuotaCertificates, &prefix, MAX_RESTORED)?
        {
            let seq = key
                .get(33..41)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes);
            if seq < from_seq {
                continue;
            }
            out.push(self.decode_certificate(&key, &bytes)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn decode_certificate(&self, key: &[u8], bytes: &[u8]) -> Result<Certificate, StateError> {
        Certificate::decode(bytes, &self.committee, &Ed25519).map_err(|e| StateError::Corrupt {
            what: "certificate",
            key: hex(key),
            reason: e.to_string(),
        })
    }

    /// Every stored vote record and certificate (for `Validator::restore`).
    ///
    /// # Errors
    /// [`StateError`], naming the first entry that does not decode.
    pub fn load(&self) -> Result<(Vec<VoteRecord>, Vec<Certificate>), StateError> {
        let votes = self
            .store
            .scan_prefix(Column::QuotaVotes, b"", MAX_RESTORED)?;
        if votes.len() >= MAX_RESTORED {
            warn!(
                limit = MAX_RESTORED,
                "more stored quota votes than read back"
            );
        }
        let mut records = Vec::with_capacity(votes.len());
        for (key, bytes) in votes {
            records.push(VoteRecord::decode(&bytes, &Ed25519).map_err(|e| {
                StateError::Corrupt {
                    what: "vote record",
                    key: hex(&key),
                    reason: e.to_string(),
                }
            })?);
        }
        let mut certificates = Vec::new();
        for prefix in [b"s", b"c", b"p"] {
            let stored = self
                .store
                .scan_prefix(Column::QuotaCertificates, prefix, MAX_RESTORED)?;
            if stored.len() >= MAX_RESTORED {
                warn!(
                    limit = MAX_RESTORED,
                    "more stored quota certificates than read back"
                );
            }
            for (key, bytes) in stored {
                certificates.push(self.decode_certificate(&key, &bytes)?);
            }
        }
        Ok((records, certificates))
    }
}

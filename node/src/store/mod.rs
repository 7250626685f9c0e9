//! The node's persistent state: a key-value [`Store`] with one [`Column`] per kind of state.
//!
//! - [`Store`]: the interface the rest of the node uses; `get`, `put`, `delete`, atomic
//!   [`WriteBatch`]es, bounded prefix scans in key order, and `flush` for durability.
//! - [`RocksStore`]: the on-disk store over RocksDB, one column family per [`Column`], with a
//!   schema version ([`SCHEMA_VERSION`]) checked on open.
//! - [`MemStore`]: an in-memory store with the same behaviour, for tests and the simulator.
//! - [`OpenError`], [`StoreError`], folded into [`Error`].
//!
//! Both stores pass the same conformance suite, so code written against [`Store`] behaves the
//! same on either.
//!
//! # Example
//!
//! ```
//! use agora_node::store::{Column, MemStore, Store, WriteBatch};
//!
//! # fn main() -> Result<(), agora_node::store::Error> {
//! let store = MemStore::new();
//! let mut batch = WriteBatch::new();
//! batch
//!     .put(Column::Peers, b"peer/a", b"addr-a")
//!     .put(Column::Peers, b"peer/b", b"addr-b")
//!     .delete(Column::Offers, b"offer/1");
//! store.write(batch)?; // all or nothing
//!
//! assert_eq!(store.get(Column::Peers, b"peer/a")?, Some(b"addr-a".to_vec()));
//! let peers = store.scan_prefix(Column::Peers, b"peer/", 100)?;
//! assert_eq!(peers.len(), 2);
//! # Ok(())
//! # }
//! ```
//!
//! On disk, open a data dir with [`RocksStore::open`]; it fails with a clear [`OpenError`] when
//! the dir is locked by another process, corrupt, or written by a newer agora.

mod batch;
#[cfg(test)]
mod conformance;
mod error;
mod memory;
mod rocks;
mod schema;

pub use batch::{BatchOp, WriteBatch};
pub use error::{Error, OpenError, StoreError};
pub use memory::MemStore;
pub use rocks::RocksStore;
pub use schema::SCHEMA_VERSION;

/// A key and its value, as returned by [`Store::scan_prefix`].
pub type Entry = (Vec<u8>, Vec<u8>);

/// A kind of state; each is a separate key space (a RocksDB column family).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Column {
    /// Store metadata, such as the schema version.
    Meta,
    /// The node's own identity.
    Identity,
    /// Known peers and their addresses.
    Peers,
    /// Compute offers.
    Offers,
    /// Leases granted or held.
    Leases,
    /// Workloads running or run under leases.
    Workloads,
    /// Ledger entries.
    LedgerEntries,
    /// Ledger heads.
    LedgerHeads,
    /// Account balances.
    Accounts,
    /// Attestation certificates.
    Certificates,
    /// Locks on funds or resources.
    Locks,
    /// Revoked keys and certificates.
    Revocations,
    /// The quota committee's vote records of this validator (written, synced, before a
    /// vote is sent).
    QuotaVotes,
    /// Quota committee certificates this node made or was sent.
    QuotaCertificates,
}

impl Column {
    /// Every column, in declaration order.
    pub const ALL: [Column; 14] = [
        Column::Meta,
        Column::Identity,
        Column::Peers,
        Column::Offers,
        Column::Leases,
        Column::Workloads,
        Column::LedgerEntries,
        Column::LedgerHeads,
        Column::Accounts,
        Column::Certificates,
        Column::Locks,
        Column::Revocations,
        Column::QuotaVotes,
        Column::QuotaCertificates,
    ];

    /// The column family name on disk. Never change one: it would orphan existing data.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Column::Meta => "meta",
            Column::Identity => "identity",
            Column::Peers => "peers",
            Column::Offers => "offers",
            Column::Leases => "leases",
            Column::Workloads => "workloads",
            Column::LedgerEntries => "ledger_entries",
            Column::LedgerHeads => "ledger_heads",
            Column::Accounts => "accounts",
            Column::Certificates => "certificates",
            Column::Locks => "locks",
            Column::Revocations => "revocations",
            Column::QuotaVotes => "quota_votes",
            Column::QuotaCertificates => "quota_certificates",
        }
    }
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A key-value store with one key space per [`Column`].
///
/// Keys and values are arbitrary bytes, keys ordered bytewise. Single operations are atomic;
/// [`Store::write`] applies several atomically. Writes are durable once [`Store::flush`] returns
/// (before that a crash may lose recent writes, but never part of a batch).
pub trait Store: Send + Sync {
    /// Reads the value under `key` in `col`, or `None` if there is none.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the backend fails to read.
    fn get(&self, col: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Sets the value under `key` in `col`, replacing any previous value.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the backend fails to write; the store is then unchanged.
    fn put(&self, col: Column, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Removes `key` from `col`. Removing a missing key succeeds.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the backend fails to write; the store is then unchanged.
    fn delete(&self, col: Column, key: &[u8]) -> Result<(), StoreError>;

    /// Applies every operation of `batch` in order, atomically: readers see all of them or none,
    /// and a crash keeps all of them or none. An empty batch succeeds and does nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the backend fails to write; no operation of the batch is then applied.
    fn write(&self, batch: WriteBatch) -> Result<(), StoreError>;

    /// Returns up to `limit` entries of `col` whose keys start with `prefix`, in ascending key
    /// order, read from one consistent view. An empty prefix matches every key.
    ///
    /// Callers must bound what they read: to page through more, scan again from a longer
    /// prefix or keep `limit` small and resume after the last key seen.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the backend fails to read.
    fn scan_prefix(
        &self,
        col: Column,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// Makes every write that returned before this call durable, so it survives a crash or
    /// power loss (RocksDB: syncs the write-ahead log). A no-op for in-memory stores.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the backend fails to sync or flush.
    fn flush(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn column_names_are_unique_and_not_default() {
        let names: BTreeSet<_> = Column::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Column::ALL.len());
        assert!(!names.contains(rocksdb::DEFAULT_COLUMN_FAMILY_NAME));
    }

    #[test]
    fn column_all_is_in_order() {
        let mut sorted = Column::ALL;
        sorted.sort();
        assert_eq!(sorted, Column::ALL);
        assert_eq!(Column::LedgerEntries.to_string(), "ledger_entries");
    }
}

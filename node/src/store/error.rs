//! Errors of the store: [`OpenError`] when opening a data dir, [`StoreError`] for reads and
//! writes, both folded into [`Error`].

use std::path::PathBuf;

/// Opening a data dir failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process (or another handle in this process) has the data dir open.
    #[error("data dir {} is locked: another agora process is using it", path.display())]
    Locked {
        /// The data dir.
        path: PathBuf,
    },
    /// RocksDB found the data dir damaged, or the schema version record is malformed.
    #[error("data dir {} is corrupt: {detail}", path.display())]
    Corrupt {
        /// The data dir.
        path: PathBuf,
        /// What is damaged, as reported by RocksDB or the schema check.
        detail: String,
    },
    /// The data dir was written by a newer agora, with a schema this build does not know.
    #[error(
        "data dir {} has schema version {found} but this agora supports up to {supported}: \
         it was written by a newer agora, upgrade agora to use it",
        path.display()
    )]
    NewerSchema {
        /// The data dir.
        path: PathBuf,
        /// The schema version found in the data dir.
        found: u32,
        /// The newest schema version this build understands ([`super::SCHEMA_VERSION`]).
        supported: u32,
    },
    /// The data dir records a schema version older than any this build can migrate from.
    #[error(
        "data dir {} has schema version {found}, older than the oldest supported version \
         {supported}",
        path.display()
    )]
    OlderSchema {
        /// The data dir.
        path: PathBuf,
        /// The schema version found in the data dir.
        found: u32,
        /// The oldest schema version this build can open.
        supported: u32,
    },
    /// A file system operation on the data dir failed (permissions, missing parent, full disk).
    #[error("i/o error on data dir {}: {detail}", path.display())]
    Io {
        /// The data dir.
        path: PathBuf,
        /// The underlying error message.
        detail: String,
    },
    /// RocksDB refused to open the data dir for another reason.
    #[error("rocksdb failed to open data dir {}: {detail}", path.display())]
    Rocks {
        /// The data dir.
        path: PathBuf,
        /// The RocksDB error message.
        detail: String,
    },
    /// Reading or writing the schema version record failed after the database opened.
    #[error("schema check on data dir {} failed", path.display())]
    Schema {
        /// The data dir.
        path: PathBuf,
        /// The read or write that failed.
        #[source]
        source: StoreError,
    },
}

/// A read or write on an open store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// RocksDB reported an error for an operation on a column.
    #[error("rocksdb {op} on column {column} failed")]
    Rocks {
        /// The operation: `get`, `put`, `delete`, `write`, `scan` or `flush`.
        op: &'static str,
        /// The column family name, or `*` for an operation over all columns.
        column: &'static str,
        /// The RocksDB error.
        #[source]
        source: rocksdb::Error,
    },
    /// The database has no handle for a column it was opened with (a bug in the store).
    #[error("column family {column} is not open")]
    MissingColumn {
        /// The column family name.
        column: &'static str,
    },
    /// A value could not be encoded for storage.
    #[error("encoding a {what} for the store: {detail}")]
    Encode {
        /// What was being stored.
        what: &'static str,
        /// The encoder's message.
        detail: String,
    },
    /// A thread panicked while holding the in-memory store's lock; its state may be partial.
    #[error("in-memory store lock is poisoned")]
    Poisoned,
}

/// Any store error: opening or using the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Opening the data dir failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A read or write failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

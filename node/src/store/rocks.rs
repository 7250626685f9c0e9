//! [`RocksStore`]: the on-disk [`Store`] over RocksDB, one column family per [`Column`].

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, Direction, ErrorKind,
    IteratorMode, Options, ReadOptions,
};
use tracing::{debug, info, warn};

use super::{
    BatchOp, Column, Entry, OpenError, SCHEMA_VERSION, Store, StoreError, WriteBatch, schema,
};

/// A [`Store`] in a RocksDB data dir.
///
/// Writes go to RocksDB's write-ahead log without syncing it; [`Store::flush`] syncs it, so a
/// crash keeps every write made before the last `flush` (and never part of a batch). Dropping
/// the store closes the database and releases the data dir's lock.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
    /// Group commit of [`Store::flush`]: see [`SyncedUpTo`].
    synced: SyncedUpTo,
}

/// Writes finished and writes made durable, so that concurrent [`Store::flush`] calls share
/// one WAL sync instead of queueing one each: a caller whose writes an earlier sync (begun
/// after they finished) already covered returns at once. Under a burst (100 leases granted
/// at once, each flushing its ledger entry) the syncs then come in a handful of rounds.
#[derive(Debug, Default)]
struct SyncedUpTo {
    /// Writes (put, delete, batch) that have returned.
    written: std::sync::atomic::AtomicU64,
    /// The `written` count the last finished sync covers; held while syncing.
    synced: std::sync::Mutex<u64>,
}

impl SyncedUpTo {
    fn wrote(&self) {
        self.written
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Runs `sync` unless a sync that began after every write this caller has seen return
    /// has already finished.
    fn flush(&self, sync: impl FnOnce() -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mine = self.written.load(std::sync::atomic::Ordering::SeqCst);
        let mut synced = self
            .synced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *synced >= mine {
            return Ok(());
        }
        // Every write counted here returned before the sync starts, so the sync covers it.
        let upto = self.written.load(std::sync::atomic::Ordering::SeqCst);
        sync()?;
        *synced = upto;
        Ok(())
    }
}

impl RocksStore {
    /// Opens the data dir at `path`, creating it and any missing column families, and checks its
    /// schema version (writing [`SCHEMA_VERSION`] to a fresh dir).
    ///
    /// Column families this build does not know (added by a newer agora) are opened too and left
    /// untouched, so that the schema check can explain a downgrade.
    ///
    /// # Errors
    ///
    /// - [`OpenError::Locked`] if another process (or another store in this one) has it open.
    /// - [`OpenError::Corrupt`] if RocksDB finds its files damaged, or the schema record is
    ///   malformed or missing from a dir that has data.
    /// - [`OpenError::NewerSchema`] if a newer agora wrote it; [`OpenError::OlderSchema`] if its
    ///   version is older than any this build can migrate.
    /// - [`OpenError::Io`] if the directory cannot be created or read.
    /// - [`OpenError::Rocks`] for any other RocksDB failure, [`OpenError::Schema`] if reading or
    ///   writing the schema record fails.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let io_err = |e: io::Error| OpenError::Io {
            path: path.to_owned(),
            detail: e.to_string(),
        };
        std::fs::create_dir_all(path).map_err(io_err)?;
        let opts = db_options();

        let existing = if path.join("CURRENT").try_exists().map_err(io_err)? {
            DB::list_cf(&opts, path).map_err(|e| classify(path, e))?
        } else {
            refuse_orphaned_files(path)?;
            Vec::new()
        };
        let known: BTreeSet<&str> = Column::ALL.iter().map(|c| c.name()).collect();
        let unknown: Vec<String> = existing
            .into_iter()
            .filter(|name| {
                !known.contains(name.as_str()) && name != rocksdb::DEFAULT_COLUMN_FAMILY_NAME
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !unknown.is_empty() {
            warn!(path = %path.display(), columns = ?unknown, "data dir has unknown column families");
        }
        let descriptors = Column::ALL
            .iter()
            .map(|c| ColumnFamilyDescriptor::new(c.name(), column_options()))
            .chain(
                unknown
                    .iter()
                    .map(|name| ColumnFamilyDescriptor::new(name, Options::default())),
            );
        let db =
            DB::open_cf_descriptors(&opts, path, descriptors).map_err(|e| classify(path, e))?;
        let store = Self {
            db,
            path: path.to_owned(),
            synced: SyncedUpTo::default(),
        };
        schema::ensure(&store, path)?;
        info!(path = %path.display(), schema = SCHEMA_VERSION, "store opened");
        Ok(store)
    }

    /// The data dir this store was opened from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, col: Column) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(col.name())
            .ok_or(StoreError::MissingColumn { column: col.name() })
    }
}

impl fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store for RocksStore {
    fn get(&self, col: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .get_cf(self.cf(col)?, key)
            .map_err(|source| rocks_err("get", col.name(), source))
    }

    fn put(&self, col: Column, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.db
            .put_cf(self.cf(col)?, key, value)
            .map_err(|source| rocks_err("put", col.name(), source))?;
        self.synced.wrote();
        Ok(())
    }

    fn delete(&self, col: Column, key: &[u8]) -> Result<(), StoreError> {
        self.db
            .delete_cf(self.cf(col)?, key)
            .map_err(|source| rocks_err("delete", col.name(), source))?;
        self.synced.wrote();
        Ok(())
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut rocks_batch = rocksdb::WriteBatch::default();
        for op in batch {
            match op {
                BatchOp::Put { column, key, value } => {
                    rocks_batch.put_cf(self.cf(column)?, key, value);
                }
                BatchOp::Delete { column, key } => rocks_batch.delete_cf(self.cf(column)?, key),
            }
        }
        self.db
            .write(rocks_batch)
            .map_err(|source| rocks_err("write", "*", source))?;
        self.synced.wrote();
        Ok(())
    }

    fn scan_prefix(
        &self,
        col: Column,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let cf = self.cf(col)?;
        let mut read_opts = ReadOptions::default();
        if let Some(upper) = prefix_successor(prefix) {
            read_opts.set_iterate_upper_bound(upper);
        }
        let iter = self.db.iterator_cf_opt(
            cf,
            read_opts,
            IteratorMode::From(prefix, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (key, value) = item.map_err(|source| rocks_err("scan", col.name(), source))?;
            // The upper bound already stops the iterator; this keeps the result right even if a
            // future option (a prefix extractor, say) changed that.
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.into_vec(), value.into_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn flush(&self) -> Result<(), StoreError> {
        // A synced WAL makes every acknowledged write durable: RocksDB replays it on open.
        // Memtables are not flushed to SST files here, so frequent callers do not create a
        // stream of tiny files; RocksDB flushes them itself, and on close.
        self.synced.flush(|| {
            self.db
                .flush_wal(true)
                .map_err(|source| rocks_err("flush", "*", source))
        })
    }
}

fn rocks_err(op: &'static str, column: &'static str, source: rocksdb::Error) -> StoreError {
    StoreError::Rocks { op, column, source }
}

fn db_options() -> Options {
    let mut opts = column_options();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // RocksDB keeps 1000 info LOG files by default; a handful is plenty for a node.
    opts.set_keep_log_file_num(10);
    opts
}

fn column_options() -> Options {
    let mut opts = Options::default();
    opts.set_compression_type(DBCompressionType::Lz4);
    opts
}

/// The smallest key greater than every key starting with `prefix`, or `None` if there is none
/// (the prefix is empty or all `0xff`).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if let Some(next) = last.checked_add(1) {
            upper.push(next);
            return Some(upper);
        }
    }
    None
}

/// Without `CURRENT`, RocksDB would silently start a new, empty database next to the old files.
/// Refuse instead if the dir holds a manifest or table files.
fn refuse_orphaned_files(path: &Path) -> Result<(), OpenError> {
    let entries = std::fs::read_dir(path).map_err(|e| OpenError::Io {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("MANIFEST-") || name.ends_with(".sst") {
            return Err(OpenError::Corrupt {
                path: path.to_owned(),
                detail: format!("CURRENT file is missing but {name} exists"),
            });
        }
    }
    Ok(())
}

/// Maps a RocksDB error from opening `path` to an [`OpenError`].
fn classify(path: &Path, err: rocksdb::Error) -> OpenError {
    let kind = err.kind();
    let detail = err.into_string();
    let path = path.to_owned();
    debug!(path = %path.display(), ?kind, detail = %detail, "rocksdb refused to open");
    match kind {
        ErrorKind::IOError if is_lock_error(&detail) => OpenError::Locked { path },
        ErrorKind::Corruption => OpenError::Corrupt { path, detail },
        ErrorKind::IOError if is_missing_manifest(&detail) => OpenError::Corrupt {
            path,
            detail: format!("CURRENT names a manifest that does not exist: {detail}"),
        },
        ErrorKind::IOError => OpenError::Io { path, detail },
        _ => OpenError::Rocks { path, detail },
    }
}

/// A `CURRENT` file naming a manifest that is not there surfaces as an I/O error ("No such
/// file or directory: While opening a file for sequentially reading: .../MANIFEST-000099"),
/// but the dir is damaged, not unreadable.
fn is_missing_manifest(detail: &str) -> bool {
    detail.contains("No such file or directory") && detail.contains("MANIFEST-")
}

/// RocksDB reports a held lock as an I/O error on the `LOCK` file: "lock hold by current
/// process" within one process, "While lock file: .../LOCK: Resource temporarily unavailable"
/// across processes. ("while open a file for lock" is a different failure, such as a
/// read-only dir, and stays an I/O error.)
fn is_lock_error(detail: &str) -> bool {
    detail.contains("lock hold by current process") || detail.contains("While lock file")
}

#[cfg(test)]
mod tests;

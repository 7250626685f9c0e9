//! [`MemStore`]: the in-memory [`Store`], for tests and the simulator.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{BatchOp, Column, Entry, Store, StoreError, WriteBatch};

type Map = BTreeMap<(Column, Vec<u8>), Vec<u8>>;

/// An in-memory [`Store`]: one ordered map behind a lock, so batches and scans are atomic.
///
/// Nothing survives the value being dropped; [`Store::flush`] does nothing.
#[derive(Debug, Default)]
pub struct MemStore {
    entries: RwLock<Map>,
}

impl MemStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, Map>, StoreError> {
        self.entries.read().map_err(|_| StoreError::Poisoned)
    }

    fn write_lock(&self) -> Result<RwLockWriteGuard<'_, Map>, StoreError> {
        self.entries.write().map_err(|_| StoreError::Poisoned)
    }
}

impl Store for MemStore {
    fn get(&self, col: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read()?.get(&(col, key.to_vec())).cloned())
    }

    fn put(&self, col: Column, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write_lock()?
            .insert((col, key.to_vec()), value.to_vec());
        Ok(())
    }

    fn delete(&self, col: Column, key: &[u8]) -> Result<(), StoreError> {
        self.write_lock()?.remove(&(col, key.to_vec()));
        Ok(())
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut entries = self.write_lock()?;
        for op in batch {
            match op {
                BatchOp::Put { column, key, value } => {
                    entries.insert((column, key), value);
                }
                BatchOp::Delete { column, key } => {
                    entries.remove(&(column, key));
                }
            }
        }
        Ok(())
    }

    fn scan_prefix(
        &self,
        col: Column,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let entries = self.read()?;
        let start = Bound::Included((col, prefix.to_vec()));
        Ok(entries
            .range((start, Bound::Unbounded))
            .take_while(|((c, key), _)| *c == col && key.starts_with(prefix))
            .take(limit)
            .map(|((_, key), value)| (key.clone(), value.clone()))
            .collect())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_store(case: &dyn Fn(&dyn Store)) {
        case(&MemStore::new());
    }

    crate::store::conformance::conformance_tests!(with_store);

    #[test]
    fn poisoned_lock_is_an_error_not_a_panic() {
        let store = MemStore::new();
        store.put(Column::Peers, b"k", b"v").unwrap();
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let _guard = store.entries.write().unwrap();
                panic!("poison the lock");
            })
            .join()
        });
        assert!(matches!(
            store.get(Column::Peers, b"k"),
            Err(StoreError::Poisoned)
        ));
        let mut batch = WriteBatch::new();
        batch.put(Column::Peers, b"k", b"w");
        assert!(matches!(store.write(batch), Err(StoreError::Poisoned)));
    }
}

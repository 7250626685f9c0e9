//! The schema version: which layout of keys and values a data dir holds.
//!
//! Stored in [`Column::Meta`] under [`VERSION_KEY`] as 4 big-endian bytes. A fresh store gets
//! [`SCHEMA_VERSION`]; a store of the same version opens; a newer one is refused so an older
//! agora never misreads (or rewrites) data it does not understand.

use std::path::Path;

use tracing::info;

use super::{Column, OpenError, Store};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The oldest schema version this build can open (migrating it to [`SCHEMA_VERSION`]).
pub(super) const MIN_SCHEMA_VERSION: u32 = 1;

/// The [`Column::Meta`] key holding the schema version.
pub(super) const VERSION_KEY: &[u8] = b"schema_version";

/// Encodes a schema version as stored.
pub(super) fn encode(version: u32) -> [u8; 4] {
    version.to_be_bytes()
}

/// Checks the schema version of `store` (opened from `path`), writing [`SCHEMA_VERSION`] if the
/// store is empty.
///
/// # Errors
///
/// [`OpenError::NewerSchema`] or [`OpenError::OlderSchema`] for a version this build cannot use;
/// [`OpenError::Corrupt`] if the record is malformed, or missing from a store that has data;
/// [`OpenError::Schema`] if reading or writing the record fails.
pub(super) fn ensure(store: &dyn Store, path: &Path) -> Result<(), OpenError> {
    let schema_err = |source| OpenError::Schema {
        path: path.to_owned(),
        source,
    };
    let Some(raw) = store.get(Column::Meta, VERSION_KEY).map_err(schema_err)? else {
        for col in Column::ALL {
            if !store
                .scan_prefix(col, b"", 1)
                .map_err(schema_err)?
                .is_empty()
            {
                return Err(OpenError::Corrupt {
                    path: path.to_owned(),
                    detail: format!("schema version is missing but column {col} has data"),
                });
            }
        }
        store
            .put(Column::Meta, VERSION_KEY, &encode(SCHEMA_VERSION))
            .map_err(schema_err)?;
        store.flush().map_err(schema_err)?;
        info!(path = %path.display(), schema = SCHEMA_VERSION, "store initialised");
        return Ok(());
    };
    let found = decode(&raw).ok_or_else(|| OpenError::Corrupt {
        path: path.to_owned(),
        detail: format!("schema version record is {} bytes, expected 4", raw.len()),
    })?;
    if found > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < MIN_SCHEMA_VERSION {
        return Err(OpenError::OlderSchema {
            path: path.to_owned(),
            found,
            supported: MIN_SCHEMA_VERSION,
        });
    }
    // MIN_SCHEMA_VERSION == SCHEMA_VERSION: no migrations exist yet.
    Ok(())
}

fn decode(raw: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(raw).ok().map(u32::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    fn path() -> &'static Path {
        Path::new("/data/agora")
    }

    #[test]
    fn fresh_store_gets_current_version() {
        let store = MemStore::new();
        ensure(&store, path()).unwrap();
        assert_eq!(
            store.get(Column::Meta, VERSION_KEY).unwrap(),
            Some(SCHEMA_VERSION.to_be_bytes().to_vec())
        );
        // And a second check accepts it.
        ensure(&store, path()).unwrap();
    }

    #[test]
    fn newer_version_is_refused() {
        let store = MemStore::new();
        store
            .put(Column::Meta, VERSION_KEY, &encode(SCHEMA_VERSION + 1))
            .unwrap();
        let err = ensure(&store, path()).unwrap_err();
        assert!(
            matches!(err, OpenError::NewerSchema { found, supported, .. }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("/data/agora"), "{msg}");
        assert!(msg.contains("newer agora"), "{msg}");
    }

    #[test]
    fn version_zero_is_older() {
        let store = MemStore::new();
        store.put(Column::Meta, VERSION_KEY, &encode(0)).unwrap();
        let err = ensure(&store, path()).unwrap_err();
        assert!(
            matches!(
                err,
                OpenError::OlderSchema {
                    found: 0,
                    supported: 1,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn malformed_version_is_corrupt() {
        for raw in [&b""[..], b"\x00\x01", b"\x00\x00\x00\x00\x01"] {
            let store = MemStore::new();
            store.put(Column::Meta, VERSION_KEY, raw).unwrap();
            let err = ensure(&store, path()).unwrap_err();
            assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
        }
    }

    #[test]
    fn missing_version_with_data_is_corrupt() {
        let store = MemStore::new();
        store.put(Column::Leases, b"lease/1", b"x").unwrap();
        let err = ensure(&store, path()).unwrap_err();
        assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("leases"), "{err}");
        assert_eq!(store.get(Column::Meta, VERSION_KEY).unwrap(), None);
    }
}

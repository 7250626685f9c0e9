//! [`Config`]: the evidence log's bounds.

use core::time::Duration;

use crate::signed::Signed;

use super::entry::Entry;

/// How much an [`EvidenceLog`](super::EvidenceLog) holds. Sizes count entries' wire bytes;
/// decoded bodies (nested messages keep their own bytes) and indexes come on top, roughly as
/// much again.
///
/// Convergence holds while the log is within these bounds: a full log refuses new entries
/// ([`Rejected::Full`](super::Rejected::Full)), which a peer with room still accepts. The
/// bounds protect memory; deciding who may write how much (so that honest replicas never
/// fill up) is for the quota and reputation pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Most accepted entries.
    pub max_entries: usize,
    /// Most wire bytes of accepted entries.
    pub max_bytes: usize,
    /// Most entries waiting for parents.
    pub max_pending: usize,
    /// Most wire bytes of entries waiting for parents.
    pub max_pending_bytes: usize,
    /// Most entries one author may have waiting, so that one key cannot fill the pending set.
    pub max_pending_per_author: usize,
    /// How long an entry waits for its parents before [`EvidenceLog::expire`] drops it.
    ///
    /// [`EvidenceLog::expire`]: super::EvidenceLog::expire
    pub pending_ttl: Duration,
}

impl Default for Config {
    /// 262,144 entries in 256 MiB; 4,096 pending entries in 32 MiB, 1,024 per author, for 10
    /// minutes.
    fn default() -> Self {
        Self {
            max_entries: 1 << 18,
            max_bytes: 256 << 20,
            max_pending: 4096,
            max_pending_bytes: 32 << 20,
            max_pending_per_author: 1024,
            pending_ttl: Duration::from_secs(600),
        }
    }
}

/// A [`Config`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A count is zero.
    #[error("{field} must be at least 1")]
    Zero {
        /// The field.
        field: &'static str,
    },
    /// A byte bound is below one largest entry, which could then never be held.
    #[error("{field} is {value} bytes, below the largest entry ({min} bytes)")]
    BelowOneEntry {
        /// The field.
        field: &'static str,
        /// Its value.
        value: usize,
        /// The largest entry's wire size.
        min: usize,
    },
}

impl Config {
    /// Checks that every bound admits at least one entry of the largest size.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("max_entries", self.max_entries),
            ("max_pending", self.max_pending),
            ("max_pending_per_author", self.max_pending_per_author),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        let min = Signed::<Entry>::MAX_WIRE_BYTES;
        for (field, value) in [
            ("max_bytes", self.max_bytes),
            ("max_pending_bytes", self.max_pending_bytes),
        ] {
            if value < min {
                return Err(ConfigError::BelowOneEntry { field, value, min });
            }
        }
        Ok(())
    }
}

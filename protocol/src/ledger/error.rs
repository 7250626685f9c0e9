//! Why the evidence log refused an entry, and why appending failed.

use crate::codec::EncodeError;
use crate::signed::{Digest, SignedError};
use crate::time::Timestamp;

/// Why an entry was not accepted.
///
/// [`Rejected::is_fault`] tells the sender's fault (penalise whoever sent it) from this
/// log's own limits (the sender did nothing wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The bytes do not decode, are not canonical, break a bound or do not verify.
    #[error("invalid entry: {0}")]
    Invalid(#[from] SignedError),
    /// `prev` is another author's entry.
    #[error("prev {prev} is another author's entry")]
    PrevAuthor {
        /// The named previous entry.
        prev: Digest,
    },
    /// `prev` does not have the sequence number just below the entry's.
    #[error("prev {prev} has seq {found}, expected {expected}")]
    PrevSeq {
        /// The named previous entry.
        prev: Digest,
        /// The seq it should have (the entry's minus one).
        expected: u64,
        /// The seq it has.
        found: u64,
    },
    /// A parent is the author's own entry (its own chain goes through `prev` only).
    #[error("parent {parent} is the author's own entry")]
    OwnParent {
        /// The parent.
        parent: Digest,
    },
    /// The entry is dated before an entry it names.
    #[error("dated {at}, before {link} dated {link_at}")]
    BeforeLink {
        /// The entry's time.
        at: Timestamp,
        /// The named entry.
        link: Digest,
        /// The named entry's time.
        link_at: Timestamp,
    },
    /// It names an entry this log rejected: it can never be accepted.
    #[error("names rejected entry {link}")]
    LinkRejected {
        /// The rejected entry.
        link: Digest,
    },
    /// This log holds as many entries or bytes as its [`Config`](super::Config) allows.
    #[error("the log is full ({entries} entries, {bytes} bytes)")]
    Full {
        /// Entries held.
        entries: usize,
        /// Wire bytes held.
        bytes: usize,
    },
    /// The set of entries waiting for parents (in all, or for this author) is full.
    #[error("too many entries are waiting for parents")]
    PendingFull,
}

impl Rejected {
    /// Whether the sender is at fault (so a driver penalises the peer that sent it), as
    /// opposed to this log being full.
    pub fn is_fault(&self) -> bool {
        !matches!(self, Self::Full { .. } | Self::PendingFull)
    }
}

/// Why [`EvidenceLog::append`](super::EvidenceLog::append) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The fact does not fit in an entry or fails validation.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The log refused the new entry (it is full).
    #[error(transparent)]
    Rejected(#[from] Rejected),
}

//! The replicated ledger's first piece: the evidence log, a Merkle-DAG CRDT of signed facts.
//!
//! ```text
//! node ──append(now, key, Fact)──▶ Signed<Entry> { author, seq, prev, parents, at, fact }
//!    ──▶ its own EvidenceLog, and (later pieces) heads on gossip, entries on request-response
//! peer bytes ──insert_bytes(now, bytes)──▶ Outcome::{Inserted, Duplicate, Pending, Rejected}
//!    Pending: the missing parents to fetch by hash (`fetch`), or a frontier page (`page`)
//! ```
//!
//! - [`Entry`] (domain `agora/ledger-entry/v1`): one fact by one node (its `author`), with a
//!   per-author `seq`, the digest of the author's previous entry (`prev`, its own chain) and
//!   up to [`MAX_PARENTS`] heads of other authors it had seen (`parents`, sorted, no
//!   duplicates), and a time `at` no earlier than any of those.
//! - [`Fact`]: what an entry records, each self-authenticating: a [`SignupRecord`], a lease
//!   grant (a provider accepted a lease; its final receipt says how it ended), a provider's
//!   [`UsageReceipt`] with the agent's [`ReceiptAck`] where the agent was there to sign, a
//!   [`Rating`], an attestation [`Revocation`], an [`Equivocation`] proof. Nested signed
//!   messages travel as their wire bytes and are verified as they decode.
//! - [`EvidenceLog`]: the sans-IO DAG. An entry is accepted once every entry it names is;
//!   until then it waits in a bounded pending set, and accepting one releases its waiting
//!   children (iteratively). Any delivery order, duplication or partition of the same
//!   entries gives the same accepted set and the same [`EvidenceLog::state_hash`].
//!   An author with two entries at one `seq` is marked as an equivocator; both entries stay.
//! - [`Frontier`], [`Cursor`], [`Page`]: "send me what I lack" (see [`EvidenceLog::page`]).
//! - [`decode_batch`] / [`EvidenceLog::insert_batch`]: a page of peers' entries verified
//!   together, every nested signature included (see [`ingest`]).
//! - [`reputation`]: deterministic per-epoch EigenTrust over the log's facts.
//!
//! The log reads no clock: `now` is passed in (pending entries expire by it, an author's own
//! entries take it as their time). It holds everything in memory, within [`Config`]'s bounds;
//! persistence, gossip and request-response are the node's and the simulator's.
//!
//! [`SignupRecord`]: crate::signup::SignupRecord
//! [`UsageReceipt`]: crate::lease::UsageReceipt
//! [`Revocation`]: crate::attestation::Revocation
//!
//! ```
//! use agora_protocol::ledger::{EvidenceLog, Config, Fact, Outcome, Rating};
//! use agora_protocol::{Digest, Ed25519, Signed, Signer, Timestamp};
//!
//! let node = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
//! let agent = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
//! let provider = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
//! let now = Timestamp::from_unix_secs(1_800_000_000);
//! let rating = Rating {
//!     rater: agent.id(),
//!     provider: provider.id(),
//!     lease: Digest::of(b"lease"),
//!     score: 90,
//!     rated_at: now,
//! };
//! let fact = Fact::Rating(Signed::sign(rating, &agent)?);
//!
//! let mut mine = EvidenceLog::new(Config::default())?;
//! let entry = mine.append(now, &node, fact)?;
//!
//! let mut theirs = EvidenceLog::new(Config::default())?;
//! let outcome = theirs.insert_bytes(now, entry.as_bytes(), &Ed25519);
//! assert!(matches!(outcome, Outcome::Inserted(_)));
//! assert_eq!(mine.state_hash(), theirs.state_hash());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod append;
pub mod config;
pub mod entry;
pub mod equivocation;
pub mod error;
pub mod fact;
pub mod ingest;
pub mod log;
mod pending;
pub mod rating;
pub mod reputation;
pub mod sync;

pub use append::MAX_PARENT_SKEW;
pub use config::{Config, ConfigError};
pub use entry::{Entry, MAX_ENTRY_PAYLOAD_BYTES, MAX_PARENTS};
pub use equivocation::{Equivocation, EquivocationError};
pub use error::{AppendError, Rejected};
pub use fact::{Fact, ReceiptAck, Usage};
pub use ingest::{decode, decode_batch};
pub use log::{Accepted, EvidenceLog, Outcome, STATE_HASH_DOMAIN};
pub use rating::{MAX_SCORE, Rating};
pub use sync::{Cursor, Frontier, MAX_FETCH, MAX_PAGE_BYTES, MAX_PAGE_ENTRIES, Page};

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod entry_tests;

#[cfg(test)]
mod ingest_tests;

#[cfg(test)]
mod log_tests;

#[cfg(test)]
mod prop_tests;

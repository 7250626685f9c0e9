//! Agora's protocol: wire types, the canonical signed encoding and (in later modules) the
//! sans-IO state machines shared by the node and the simulator.
//!
//! Nothing here performs I/O, reads a clock or draws OS randomness: time comes in as
//! [`Timestamp`], randomness as bytes chosen by the caller. That keeps every machine
//! deterministic, so `agora-sim` can drive exactly what `agora-node` runs.
//!
//! - [`AgoraId`]: an ed25519 public key with a printable `agora1…` form.
//! - [`codec`]: the canonical encoding (postcard, re-encode checked).
//! - [`Signed`]: a verified, domain-separated signed message of some [`SignedKind`].
//! - [`attestation`]: [`Attestation`], [`Revocation`], [`Credential`].
//! - [`challenge`]: proof-of-possession [`Challenge`] / [`ChallengeResponse`].
//! - [`offer`]: providers' signed capacity [`Offer`]s and [`OfferWithdrawal`]s.
//! - [`gossip`]: what gossip carries ([`GossipMessage`]), region topics, offer sync pages.
//! - [`offer_book`]: the sans-IO [`OfferBook`], every node's view of the market.
//! - [`seq_book`]: the rules the offer and service books share (highest `seq` per key,
//!   tombstones, expiry, bounds) and their [`seq_book::Inserted`].
//! - [`sync`]: paged catch-up between two nodes' books (offers, published services).
//! - [`market`]: the [`market::Market`] a node runs (book, provider rate limits, remembered
//!   withdrawals, gossipsub verdicts, sync pages), driven alike by the node and the
//!   simulator.
//! - [`rate`]: per-key token buckets ([`rate::RateLimiter`]).
//! - [`signup`]: the agent's self-authenticating [`signup::SignupRecord`], proof of work,
//!   and [`signup::TierLimits`].
//! - [`lease`]: agent-signed lease requests and operations, provider-signed grants,
//!   refusals, capabilities and usage receipts.
//! - [`read_proof`]: the agent-signed [`read_proof::ReadProof`] a node asks for before it
//!   lists the agent's leases (for one node, fresh, optionally delegated).
//! - [`frames`]: bounded framing for streamed operations (exec, logs, files).
//! - [`lease_rpc`]: what gateways and providers exchange point to point (proposals,
//!   operations, status queries) over `/agora/lease/1`.
//! - [`ledger`]: the replicated ledger's evidence log ([`ledger::EvidenceLog`]), a Merkle-DAG
//!   CRDT of signed [`ledger::Entry`]s recording self-authenticating [`ledger::Fact`]s.
//! - [`cofactored`]: ed25519 verification whose batched and one-by-one verdicts agree
//!   ([`cofactored::Cofactored`], the evidence log's rule; ingest checks pages in batches).
//! - [`ledger_rpc`]: how nodes keep their logs in step: head announcements on gossip,
//!   entries by hash or frontier page over `/agora/ledger/1`.
//! - [`committee`]: the quota committee (FastPay-style): agents' hash-chained quota ops
//!   certified by `2f + 1` of `3f + 1` validators ([`committee::Validator`],
//!   [`committee::Aggregator`], [`committee::Certificate`], [`committee::Accounts`]).
//! - [`admission`]: the provider's sans-IO decision on lease requests and operations.
//! - [`quota`]: the quota machine admission asks ([`quota::QuotaBook`], one node's view).
//! - [`service`]: published services (owner-signed [`service::ServiceRecord`]s on their
//!   own gossip topic, the sans-IO [`service::ServiceBook`] and [`service::Directory`]),
//!   owner-signed [`service::ServiceGrant`]s that let other agents' keys in.
//! - [`tunnel`]: the header that opens every tunnel stream (capability, optional grant).
//! - [`workload`]: what runtimes run ([`workload::WorkloadSpec`]) and why it ended
//!   ([`workload::TerminationReason`]).
//!
//! ```
//! use agora_protocol::{Signed, SignedKind, Ed25519};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct Hello { n: u32 }
//! impl SignedKind for Hello {
//!     const DOMAIN: &'static str = "example/hello/v1";
//!     const MAX_PAYLOAD_BYTES: usize = 64;
//! }
//!
//! let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
//! let msg = Signed::sign(Hello { n: 7 }, &key)?;
//! let back = Signed::<Hello>::decode(msg.as_bytes(), &Ed25519)?;
//! assert_eq!(back.body().n, 7);
//! # Ok::<(), agora_protocol::Error>(())
//! ```

#![forbid(unsafe_code)]

pub mod admission;
pub mod attestation;
pub mod bounds;
pub mod challenge;
pub mod codec;
pub mod cofactored;
pub mod committee;
mod deferred;
pub mod frames;
pub mod gossip;
pub mod id;
pub mod lease;
pub mod lease_rpc;
pub mod ledger;
pub mod ledger_rpc;
pub mod market;
pub mod offer;
pub mod offer_book;
pub mod quota;
pub mod quota_rpc;
pub mod rate;
pub mod read_proof;
pub mod seq_book;
pub mod service;
pub mod signed;
pub mod signup;
pub mod sync;
pub mod time;
pub mod tunnel;
pub mod workload;

pub use attestation::{Attestation, Claims, Credential, Revocation};
pub use challenge::{Challenge, ChallengeResponse};
pub use codec::{DecodeError, EncodeError};
pub use gossip::GossipMessage;
pub use id::{AgoraId, IdError};
pub use offer::{Isolation, Offer, OfferWithdrawal};
pub use offer_book::{Inserted, OfferBook, OfferBookConfig, OfferFilter, OfferRejected, OfferSort};
pub use signed::{
    Digest, DigestParseError, Ed25519, Signature, Signed, SignedError, SignedKind, Signer,
    Verifier, VerifyError,
};
pub use time::Timestamp;

/// Any error from this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Bytes did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A value could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A signature did not verify.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A printable id did not parse.
    #[error(transparent)]
    Id(#[from] IdError),
}

impl From<SignedError> for Error {
    fn from(e: SignedError) -> Self {
        match e {
            SignedError::Decode(d) => Self::Decode(d),
            SignedError::Verify(v) => Self::Verify(v),
        }
    }
}

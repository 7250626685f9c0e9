//! Agora identities and attestations: keys, key files, issuing, trust and revocation.
//!
//! - [`Identity`]: the ed25519 key that is a node's Agora id and libp2p `PeerId` at once.
//! - [`keyfile`]: secret keys on disk (mode 0600, refused when others can read them).
//! - [`issue`]: signing attestations, delegations and revocations.
//! - [`trust`]: trust roots from a TOML file; [`TrustStore::verify`] gives
//!   [`EffectiveClaims`] or a specific [`TrustError`].
//! - [`challenge`]: proof of possession for signup, replay-proof and bounded.
//!
//! This crate has no async and no network. File I/O happens only in [`keyfile`] and
//! [`trust`]; randomness comes from a caller-supplied CSPRNG and time is passed in.

#![forbid(unsafe_code)]

pub mod challenge;
mod error;
pub mod identity;
pub mod issue;
pub mod keyfile;
pub mod trust;

pub use challenge::{ChallengeError, ChallengeIssuer};
pub use error::PeerIdError;
pub use identity::{Identity, agora_id_of, peer_id_of};
pub use issue::{AttestationRequest, IssueError};
pub use keyfile::KeyFileError;
pub use trust::{
    EffectiveClaims, TrustConfig, TrustConfigError, TrustError, TrustRoot, TrustStore,
};

/// Any error from this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Key file problem.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// Trust configuration problem.
    #[error(transparent)]
    TrustConfig(#[from] TrustConfigError),
    /// A credential is not trusted.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// An attestation could not be issued.
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// A challenge problem.
    #[error(transparent)]
    Challenge(#[from] ChallengeError),
    /// A peer id problem.
    #[error(transparent)]
    PeerId(#[from] PeerIdError),
    /// A protocol (encoding, signature) error.
    #[error(transparent)]
    Protocol(#[from] agora_protocol::Error),
}

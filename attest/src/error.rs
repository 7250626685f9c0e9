//! Small errors shared by several modules.

/// A libp2p `PeerId` that does not carry an ed25519 key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PeerIdError {
    /// Hashed or non-ed25519 peer id.
    #[error("peer id does not inline an ed25519 key")]
    NotEd25519,
}

//! [`Identity`]: the ed25519 key that is both a node's Agora id and its libp2p `PeerId`.

use core::fmt;

use agora_protocol::{AgoraId, Signature, Signer};
use ed25519_dalek::SigningKey;
use libp2p_identity::{PeerId, PublicKey};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::error::PeerIdError;

/// Length of an ed25519 secret key (the seed).
pub const SECRET_KEY_LEN: usize = 32;

/// An ed25519 keypair: one key for the Agora id, the libp2p `PeerId` and every signature.
///
/// `Debug` shows only the public id; the secret is zeroed when dropped
/// (ed25519-dalek's `zeroize` feature) and is never logged.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// A fresh identity drawn from a cryptographically secure RNG.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self {
            key: SigningKey::generate(rng),
        }
    }

    /// The identity whose secret key (seed) is `secret`.
    pub fn from_secret_bytes(secret: &[u8; SECRET_KEY_LEN]) -> Self {
        Self {
            key: SigningKey::from_bytes(secret),
        }
    }

    /// The secret key bytes, zeroed when the returned value drops. Only the key-file module
    /// and libp2p need them.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; SECRET_KEY_LEN]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// The public Agora id (`agora1…`).
    pub fn agora_id(&self) -> AgoraId {
        self.key.verifying_key().into()
    }

    /// The libp2p `PeerId` of the same key.
    pub fn peer_id(&self) -> PeerId {
        self.libp2p_keypair().public().to_peer_id()
    }

    /// The same key as a libp2p keypair, for the node's swarm.
    #[allow(clippy::expect_used)]
    pub fn libp2p_keypair(&self) -> libp2p_identity::Keypair {
        let mut seed = self.secret_bytes();
        // Invariant: libp2p accepts any 32-byte ed25519 seed; it fails only on other lengths.
        libp2p_identity::Keypair::ed25519_from_bytes(&mut seed[..])
            .expect("a 32-byte seed is always a valid ed25519 secret key")
    }

    /// The underlying ed25519 signing key (for batch operations and benchmarks).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

impl Signer for Identity {
    fn id(&self) -> AgoraId {
        self.agora_id()
    }

    fn sign(&self, message: &[u8]) -> Signature {
        Signer::sign(&self.key, message)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.agora_id())
            .finish_non_exhaustive()
    }
}

/// The libp2p `PeerId` of an Agora id.
///
/// # Errors
/// Never for an [`AgoraId`] (it is always a valid key); the `Result` guards the conversion.
pub fn peer_id_of(id: &AgoraId) -> Result<PeerId, PeerIdError> {
    let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(id.as_bytes())
        .map_err(|_| PeerIdError::NotEd25519)?;
    Ok(PublicKey::from(key).to_peer_id())
}

/// The Agora id behind a libp2p `PeerId`, when the peer uses an (inlined) ed25519 key.
///
/// # Errors
/// [`PeerIdError::NotEd25519`] for hashed or non-ed25519 peer ids.
pub fn agora_id_of(peer: &PeerId) -> Result<AgoraId, PeerIdError> {
    // Ed25519 peer ids inline the protobuf-encoded key under the identity multihash (code 0).
    let hash = peer.as_ref();
    if hash.code() != 0 {
        return Err(PeerIdError::NotEd25519);
    }
    let key = PublicKey::try_decode_protobuf(hash.digest())
        .map_err(|_| PeerIdError::NotEd25519)?
        .try_into_ed25519()
        .map_err(|_| PeerIdError::NotEd25519)?;
    AgoraId::from_bytes(key.to_bytes()).map_err(|_| PeerIdError::NotEd25519)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn peer_id_and_agora_id_are_one_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let id = Identity::generate(&mut rng);
        assert_eq!(peer_id_of(&id.agora_id()).unwrap(), id.peer_id());
        assert_eq!(agora_id_of(&id.peer_id()).unwrap(), id.agora_id());
        assert!(id.peer_id().to_string().starts_with("12D3"));
    }

    #[test]
    fn debug_never_shows_secret() {
        let id = Identity::from_secret_bytes(&[0xab; 32]);
        let shown = format!("{id:?}");
        assert!(shown.contains("agora1"));
        assert!(!shown.to_lowercase().contains("abab"));
    }

    #[test]
    fn secret_round_trip() {
        let id = Identity::from_secret_bytes(&[3; 32]);
        let again = Identity::from_secret_bytes(&id.secret_bytes());
        assert_eq!(id.agora_id(), again.agora_id());
    }
}

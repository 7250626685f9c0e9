//! The tunnel endpoint's stateless-reset key, derived from the node's identity so that it
//! survives a restart.
//!
//! A QUIC server that lost a connection's state (the node crashed or restarted) answers that
//! connection's packets with a stateless reset: a token only the server that issued the
//! connection id can compute, `HMAC(reset key, connection id)`. quinn picks a random key per
//! endpoint, so after a restart the new endpoint's resets do not match and an agent's
//! `agora tunnel` holds a dead connection until its idle timeout, failing every new stream
//! meanwhile. With the key derived from the identity, the restarted endpoint's first reset
//! closes the stale connection and the dialer dials again at once. quinn's default connection
//! ids carry a tag under another per-process key, and a restarted endpoint drops (rather
//! than resets) packets whose tag it cannot verify; [`endpoint_config`] therefore uses plain
//! random ids.
//!
//! The key is `SHA-512(domain ‖ secret key)` (a full HMAC-SHA256 block): stable for one
//! identity, different for any other, and nothing on the wire reveals it (HMAC outputs do
//! not).

use std::sync::Arc;
use std::time::Duration;

use hmac::{KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256, Sha512};

use agora_attest::Identity;

/// The endpoint configuration of `identity`'s tunnel endpoint: its [`ResetKey`] and random
/// connection ids.
pub fn endpoint_config(identity: &Identity) -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::new(Arc::new(ResetKey::of(identity)));
    config.cid_generator(|| Box::new(RandomCids));
    super::accept_large_datagrams(&mut config);
    config
}

/// Length of the connection ids this endpoint issues.
const CID_LEN: usize = 8;

/// Connection ids of [`CID_LEN`] random bytes, each accepted as this endpoint's (no tag to
/// verify), so packets of a predecessor's connections get a stateless reset.
struct RandomCids;

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        quinn::ConnectionId::new(&rand::random::<[u8; CID_LEN]>())
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// Domain separating this derivation from every other use of the secret key.
const DOMAIN: &[u8] = b"agora/tunnel/stateless-reset-key/v1";

/// HMAC-SHA256 under a key derived from an identity.
pub struct ResetKey(hmac::Hmac<Sha256>);

impl std::fmt::Debug for ResetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResetKey(..)")
    }
}

impl ResetKey {
    /// The reset key of `identity`'s tunnel endpoint.
    pub fn of(identity: &Identity) -> Self {
        let secret = identity.secret_bytes();
        let key = Sha512::new()
            .chain_update(DOMAIN)
            .chain_update(secret.as_slice())
            .finalize();
        Self(hmac::Hmac::<Sha256>::new(&key))
    }

    fn mac(&self, data: &[u8]) -> hmac::Hmac<Sha256> {
        self.0.clone().chain_update(data)
    }
}

impl quinn::crypto::HmacKey for ResetKey {
    fn sign(&self, data: &[u8], signature_out: &mut [u8]) {
        let tag = self.mac(data).finalize().into_bytes();
        for (out, byte) in signature_out.iter_mut().zip(tag.iter()) {
            *out = *byte;
        }
    }

    fn signature_len(&self) -> usize {
        32
    }

    fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), quinn::crypto::CryptoError> {
        self.mac(data)
            .verify_slice(signature)
            .map_err(|_| quinn::crypto::CryptoError)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use quinn::crypto::HmacKey as _;

    use super::*;

    fn tag(key: &ResetKey, data: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        key.sign(data, &mut out);
        out
    }

    #[test]
    fn one_identity_always_derives_the_same_key_and_another_a_different_one() {
        let node = Identity::generate(&mut rand::rng());
        let again = Identity::from_secret_bytes(&node.secret_bytes());
        let other = Identity::generate(&mut rand::rng());
        let cid = b"connection id";
        assert_eq!(
            tag(&ResetKey::of(&node), cid),
            tag(&ResetKey::of(&again), cid)
        );
        assert_ne!(
            tag(&ResetKey::of(&node), cid),
            tag(&ResetKey::of(&other), cid)
        );
        assert_ne!(
            tag(&ResetKey::of(&node), cid),
            tag(&ResetKey::of(&node), b"other id")
        );
        let key = ResetKey::of(&node);
        assert!(key.verify(cid, &tag(&key, cid)).is_ok());
        assert!(key.verify(cid, &tag(&ResetKey::of(&other), cid)).is_err());
        assert_eq!(key.signature_len(), 32);
    }
}

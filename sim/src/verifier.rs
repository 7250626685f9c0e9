//! A memoising signature verifier: each distinct signed message is verified once per run.
//!
//! The protocol's decode path (`Signed::decode`, `GossipMessage::decode_on_topic`,
//! `SyncResponse::verified_offers`) takes a [`Verifier`]. In a simulation the same offer
//! reaches thousands of nodes, and each would check the same ed25519 signature again.
//! [`MemoVerifier`] wraps the real strict verifier and remembers every result under the
//! SHA-256 of exactly what was verified (signer, signed message, signature): the same bytes
//! give the same answer without the curve arithmetic, and any other bytes (a tampered
//! payload, signature or signer) are a different key, so they are verified for real and
//! fail as they would in the node.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use agora_protocol::{AgoraId, Ed25519, Signature, Verifier, VerifyError};
use sha2::{Digest as _, Sha256};

/// A [`Verifier`] that caches the results of an inner verifier (strict [`Ed25519`] by
/// default), keyed by the digest of the exact signer, message and signature bytes.
///
/// Single-threaded by design (the engine is): the cache sits behind a `RefCell` because
/// [`Verifier::verify`] takes `&self`.
#[derive(Debug, Default)]
pub struct MemoVerifier<V = Ed25519> {
    inner: V,
    results: RefCell<BTreeMap<[u8; 32], Result<(), VerifyError>>>,
    hits: Cell<u64>,
    misses: Cell<u64>,
}

/// How much work a [`MemoVerifier`] saved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoStats {
    /// Verifications answered from the cache.
    pub hits: u64,
    /// Verifications passed to the inner verifier (distinct messages seen).
    pub misses: u64,
}

impl<V: Verifier> MemoVerifier<V> {
    /// A memoising wrapper around `inner`.
    pub fn new(inner: V) -> Self {
        MemoVerifier {
            inner,
            results: RefCell::new(BTreeMap::new()),
            hits: Cell::new(0),
            misses: Cell::new(0),
        }
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> MemoStats {
        MemoStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
        }
    }

    /// Distinct messages verified so far.
    pub fn len(&self) -> usize {
        self.results.borrow().len()
    }

    /// Whether nothing has been verified yet.
    pub fn is_empty(&self) -> bool {
        self.results.borrow().is_empty()
    }
}

/// The cache key: SHA-256 over length-prefixed signer, message and signature.
fn key(signer: &AgoraId, message: &[u8], signature: &Signature) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(signer.as_bytes());
    hasher.update((message.len() as u64).to_le_bytes());
    hasher.update(message);
    hasher.update(signature.0);
    hasher.finalize().into()
}

impl<V: Verifier> Verifier for MemoVerifier<V> {
    fn verify(
        &self,
        signer: &AgoraId,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), VerifyError> {
        let key = key(signer, message, signature);
        if let Some(result) = self.results.borrow().get(&key) {
            self.hits.set(self.hits.get().saturating_add(1));
            return result.clone();
        }
        self.misses.set(self.misses.get().saturating_add(1));
        let result = self.inner.verify(signer, message, signature);
        self.results.borrow_mut().insert(key, result.clone());
        result
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use std::cell::Cell;

    use agora_protocol::gossip::GossipMessage;
    use agora_protocol::{Offer, Signed, Signer as _, Timestamp};
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    use super::*;

    /// Counts what reaches the real verifier.
    #[derive(Default)]
    struct Counting(Cell<u32>);

    impl Verifier for Counting {
        fn verify(&self, s: &AgoraId, m: &[u8], sig: &Signature) -> Result<(), VerifyError> {
            self.0.set(self.0.get() + 1);
            Ed25519.verify(s, m, sig)
        }
    }

    fn signed_gossip() -> Vec<u8> {
        let key = SigningKey::from_bytes(&[7; 32]);
        let offer = Offer::example(key.id(), 1, Timestamp::from_unix_secs(1_000));
        GossipMessage::Offer(Signed::sign(offer, &key).unwrap()).encode()
    }

    #[test]
    fn each_distinct_message_is_verified_once() {
        let memo = MemoVerifier::new(Counting::default());
        let bytes = signed_gossip();
        for _ in 0..5 {
            GossipMessage::decode(&bytes, &memo).unwrap();
        }
        assert_eq!(memo.inner.0.get(), 1);
        assert_eq!(memo.stats(), MemoStats { hits: 4, misses: 1 });
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn a_tampered_message_is_verified_and_fails_after_the_original_is_cached() {
        let memo = MemoVerifier::new(Counting::default());
        let bytes = signed_gossip();
        GossipMessage::decode(&bytes, &memo).unwrap();
        // Flip one bit of the signature, then one of the payload.
        for position in [bytes.len() - 1, bytes.len() / 2] {
            let mut tampered = bytes.clone();
            tampered[position] ^= 0x01;
            let err = GossipMessage::decode(&tampered, &memo).unwrap_err();
            assert_eq!(err.reason(), "bad_signature", "byte {position}");
            // Asking again gives the cached failure, not a pass.
            assert!(GossipMessage::decode(&tampered, &memo).is_err());
        }
        assert_eq!(memo.inner.0.get(), 3);
        // The original still verifies.
        assert!(GossipMessage::decode(&bytes, &memo).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever byte is flipped, the memo gives the answer the real verifier gives.
        #[test]
        fn the_memo_agrees_with_the_real_verifier(position in 0usize..10_000, bit in 0u8..8) {
            let memo = MemoVerifier::new(Ed25519);
            let bytes = signed_gossip();
            prop_assert!(GossipMessage::decode(&bytes, &memo).is_ok());
            let mut tampered = bytes.clone();
            let position = 1 + position % (bytes.len() - 1);
            tampered[position] ^= 1 << bit;
            let real = GossipMessage::decode(&tampered, &Ed25519).is_ok();
            prop_assert_eq!(GossipMessage::decode(&tampered, &memo).is_ok(), real);
            prop_assert!(!real);
        }
    }
}

//! Proof of possession: a verifier's challenge and the subject's signed response.
//!
//! The verifier (`agora_attest::ChallengeIssuer`) hands out a [`Challenge`]; the subject
//! signs a [`ChallengeResponse`] naming it. Because the response names the verifier and a
//! fresh nonce, it cannot be replayed to another verifier or reused with the same one.

use serde::{Deserialize, Serialize};

use crate::id::AgoraId;
use crate::signed::SignedKind;
use crate::time::Timestamp;

/// Length of a challenge nonce.
pub const CHALLENGE_NONCE_LEN: usize = 32;

/// A fresh challenge issued by `verifier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Challenge {
    /// The node that issued it; a response is only good there.
    pub verifier: AgoraId,
    /// Random bytes, never reused.
    pub nonce: [u8; CHALLENGE_NONCE_LEN],
    /// When it was issued (by the verifier's clock).
    pub issued_at: Timestamp,
}

/// The subject's answer, signed with the key it claims to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// The challenge answered.
    pub challenge: Challenge,
    /// The key proving possession (must be the signer).
    pub subject: AgoraId,
}

impl SignedKind for ChallengeResponse {
    const DOMAIN: &'static str = "agora/challenge-response/v1";
    const MAX_PAYLOAD_BYTES: usize = 256;

    fn author(&self) -> Option<AgoraId> {
        Some(self.subject)
    }
}

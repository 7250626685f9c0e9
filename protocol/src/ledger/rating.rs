//! [`Rating`]: an agent's signed score for a provider on one lease.

use serde::{Deserialize, Serialize};

use crate::codec::DecodeError;
use crate::id::AgoraId;
use crate::lease::LeaseId;
use crate::signed::SignedKind;
use crate::time::Timestamp;

/// The highest score; scores run from 0 (worst) to `MAX_SCORE` (best).
pub const MAX_SCORE: u8 = 100;

/// A rater's signed score for a provider's service on one lease.
///
/// The rating proves only who said what. Whether the rater had a lease with the provider
/// (a grant or receipt naming both) and how much the rating weighs are the reputation
/// layer's questions, answered from the rest of the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rating {
    /// Who rates (the signer): the lease's agent.
    pub rater: AgoraId,
    /// The rated provider.
    pub provider: AgoraId,
    /// The lease rated.
    pub lease: LeaseId,
    /// 0 ..= [`MAX_SCORE`].
    pub score: u8,
    /// When the rater signed it.
    pub rated_at: Timestamp,
}

impl SignedKind for Rating {
    const DOMAIN: &'static str = "agora/rating/v1";
    /// Two keys and a digest (96 bytes), a score and a varint time: 108 at most.
    const MAX_PAYLOAD_BYTES: usize = 128;

    fn validate(&self) -> Result<(), DecodeError> {
        if self.score > MAX_SCORE {
            return Err(DecodeError::InvalidField {
                field: "score",
                reason: format!("{} is above the maximum {MAX_SCORE}", self.score),
            });
        }
        if self.rater == self.provider {
            return Err(DecodeError::InvalidField {
                field: "provider",
                reason: format!("{} rates itself", self.rater),
            });
        }
        Ok(())
    }

    fn author(&self) -> Option<AgoraId> {
        Some(self.rater)
    }
}

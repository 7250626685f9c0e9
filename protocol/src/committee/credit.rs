//! Credits: what an attestation (chain) about an agent is worth, and whether it counts.
//!
//! A credential credits its holder when its root is issued by a genesis issuer, every link
//! but the last may delegate, and every link is valid at the validator's `now`. Links may
//! narrow, never widen: the amount is the smallest spending limit along the chain.
//! Revocations are not consulted here (the committee has no revocation list yet).

use serde::{Deserialize, Serialize};

use crate::attestation::Credential;
use crate::id::AgoraId;
use crate::signup::MICRO_PER_CREDIT;
use crate::time::Timestamp;

use super::genesis::Committee;

/// Why a credential does not credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CreditProblem {
    /// The root is not issued by a genesis issuer.
    #[error("the root issuer {0} is not a genesis issuer")]
    UntrustedIssuer(AgoraId),
    /// A link (0 = root) is not valid yet at `now`.
    #[error("link {0} is not valid yet")]
    NotYetValid(u8),
    /// A link has expired at `now`.
    #[error("link {0} has expired")]
    Expired(u8),
    /// A link before the last does not allow delegation.
    #[error("link {0} does not allow delegation")]
    NoDelegation(u8),
    /// The spending limit along the chain is zero.
    #[error("the spending limit is zero")]
    Zero,
}

/// The micro-credits `credential` is worth: the smallest spending limit along the chain.
pub fn amount_micro(credential: &Credential) -> u64 {
    credential
        .chain()
        .map(|link| link.body().claims.spending_limit_credits)
        .min()
        .unwrap_or(0)
        .saturating_mul(MICRO_PER_CREDIT)
}

/// Checks that `credential` credits its holder under `committee` at `now`, and returns
/// its amount.
///
/// # Errors
/// The first [`CreditProblem`], root first.
pub fn check(
    committee: &Committee,
    credential: &Credential,
    now: Timestamp,
) -> Result<u64, CreditProblem> {
    let root = credential.root().body().issuer;
    if !committee.is_issuer(&root) {
        return Err(CreditProblem::UntrustedIssuer(root));
    }
    let last = credential.len().saturating_sub(1);
    for (i, link) in credential.chain().enumerate() {
        let index = u8::try_from(i).unwrap_or(u8::MAX);
        let body = link.body();
        if now < body.not_before {
            return Err(CreditProblem::NotYetValid(index));
        }
        if now >= body.expires_at {
            return Err(CreditProblem::Expired(index));
        }
        if i < last && !body.claims.may_delegate {
            return Err(CreditProblem::NoDelegation(index));
        }
    }
    match amount_micro(credential) {
        0 => Err(CreditProblem::Zero),
        amount => Ok(amount),
    }
}

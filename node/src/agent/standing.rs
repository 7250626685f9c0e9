//! An agent's standing, judged from its signed signup record alone.
//!
//! The signup node and, later, every provider that receives a lease request call the same
//! [`judge`] on the record the agent carries: nobody takes another node's word for an
//! agent's tier. Judging checks what the record proves by itself, with this node's trust
//! store and policy, at this node's time:
//!
//! - **Unattested** (no credential): the contained tier, and the proof of work must meet
//!   this node's `pow_bits` (a provider asking more than the signup node did refuses).
//! - **Attested**: the credential must verify against this node's trust roots at `now`
//!   (unknown issuer, expired, revoked, … are refused with [`RefusalCode::Untrusted`] and
//!   the [`TrustError`]'s text). The claimed tier names a `[tiers.NAME]` table for the
//!   limits; the spending limit is the attestation's.
//! - **Attested with a tier this node does not know**: the agent is still who it says and
//!   its owner is known, but this node has no limits for that tier. It gets the contained
//!   tier's limits (named `contained`, with the claim kept in
//!   [`Standing::claimed_tier`]) and a spending limit of the *smaller* of the attestation's
//!   and the contained allowance: spending beyond that waits for the owner's approval,
//!   which the owner the attestation names can always give.
//!
//! What `judge` does not check is the challenge's freshness: that matters only at the
//! signup node, which consumes the challenge once (see `agent::signup`).

use agora_attest::{TrustError, TrustStore};
use agora_protocol::lease::{Refusal, RefusalCode};
use agora_protocol::signup::{CONTAINED_TIER, SignupRecord, TierLimits};
use agora_protocol::{AgoraId, Digest, Signed, Timestamp};
use serde::Serialize;
use std::collections::BTreeMap;

/// What a node demands of signup records and what tiers it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignupPolicy {
    /// Proof-of-work bits an unattested record must show.
    pub pow_bits: u8,
    /// Tiers by name; always holds [`CONTAINED_TIER`].
    tiers: BTreeMap<String, TierLimits>,
}

impl Default for SignupPolicy {
    /// 16 bits of proof of work and the built-in tiers.
    fn default() -> Self {
        Self::new(16, crate::config::builtin_tiers())
    }
}

impl SignupPolicy {
    /// A policy with `tiers`; a missing `contained` tier is added with its built-in limits.
    pub fn new(pow_bits: u8, mut tiers: BTreeMap<String, TierLimits>) -> Self {
        tiers
            .entry(CONTAINED_TIER.to_owned())
            .or_insert_with(TierLimits::contained);
        Self { pow_bits, tiers }
    }

    /// The policy a node configuration describes (`[signup] pow_bits`, `[tiers.*]`).
    ///
    /// # Errors
    /// The dotted config field and what is wrong (a validated config has none).
    pub fn from_config(config: &crate::config::NodeConfig) -> Result<Self, (String, String)> {
        Ok(Self::new(config.signup.pow_bits, config.tier_limits()?))
    }

    /// The contained tier.
    pub fn contained(&self) -> TierLimits {
        self.tiers
            .get(CONTAINED_TIER)
            .cloned()
            .unwrap_or_else(TierLimits::contained)
    }

    /// The tier called `name`, if this node knows it.
    pub fn tier(&self, name: &str) -> Option<&TierLimits> {
        self.tiers.get(name)
    }

    /// Every tier, by name.
    pub fn tiers(&self) -> &BTreeMap<String, TierLimits> {
        &self.tiers
    }
}

/// What a signup record entitles its agent to, here and now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Standing {
    /// The agent (the record's signer).
    pub agent: AgoraId,
    /// The limits that apply.
    pub tier: TierLimits,
    /// Who approves spending above the limit (from the attestation).
    pub owner: Option<AgoraId>,
    /// Whether a trusted attestation backs the agent.
    pub attested: bool,
    /// The trust root the attestation chains to.
    pub root: Option<AgoraId>,
    /// The root's display name in this node's trust config.
    pub root_name: Option<String>,
    /// The tier the attestation claims, when this node does not know it (and so applied
    /// the contained limits instead).
    pub claimed_tier: Option<String>,
    /// Digest of the leaf attestation (names the credential for quota and revocation).
    pub credential_digest: Option<Digest>,
    /// When the attestation stops being valid.
    pub expires_at: Option<Timestamp>,
}

/// Why a record gives no standing; [`StandingError::refusal`] is what a provider answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StandingError {
    /// An unattested record without the proof of work this node requires.
    #[error(
        "proof of work required: an unattested signup needs {required} bits, the record shows {shown}"
    )]
    PowRequired {
        /// Bits this node requires.
        required: u8,
        /// Bits the record claims.
        shown: u8,
    },
    /// The proof of work claims enough bits but does not check out.
    #[error("proof of work invalid: nonce {nonce} does not give {bits} leading zero bits")]
    PowInvalid {
        /// Claimed bits.
        bits: u8,
        /// The nonce.
        nonce: u64,
    },
    /// The credential is not trusted here.
    #[error("untrusted credential: {0}")]
    Untrusted(#[from] TrustError),
}

impl StandingError {
    /// The refusal for a lease request carrying this record.
    pub fn refusal(&self) -> Refusal {
        let code = match self {
            // The agent did honest work, just less than this node asks: a policy mismatch.
            Self::PowRequired { .. } => RefusalCode::Policy,
            Self::PowInvalid { .. } | Self::Untrusted(_) => RefusalCode::Untrusted,
        };
        Refusal::new(code, self.to_string())
    }
}

impl From<StandingError> for Refusal {
    fn from(e: StandingError) -> Self {
        e.refusal()
    }
}

/// Judges a signed signup record with this node's trust store and policy at `now`.
///
/// # Errors
/// A [`Refusal`]: [`RefusalCode::Untrusted`] for a credential that does not verify (the
/// message is the [`TrustError`]) or a forged proof of work, [`RefusalCode::Policy`] for
/// too little proof of work. See [`assess`] for the typed reason.
pub fn judge(
    record: &Signed<SignupRecord>,
    trust: &TrustStore,
    policy: &SignupPolicy,
    now: Timestamp,
) -> Result<Standing, Refusal> {
    assess(record, trust, policy, now).map_err(Refusal::from)
}

/// As [`judge`], with the typed reason.
///
/// # Errors
/// [`StandingError`].
pub fn assess(
    record: &Signed<SignupRecord>,
    trust: &TrustStore,
    policy: &SignupPolicy,
    now: Timestamp,
) -> Result<Standing, StandingError> {
    let r = record.body();
    let Some(credential) = &r.credential else {
        if !r.pow.meets(&r.agent, &r.challenge, policy.pow_bits) {
            return Err(if r.pow.bits < policy.pow_bits {
                StandingError::PowRequired {
                    required: policy.pow_bits,
                    shown: r.pow.bits,
                }
            } else {
                StandingError::PowInvalid {
                    bits: r.pow.bits,
                    nonce: r.pow.nonce,
                }
            });
        }
        return Ok(Standing {
            agent: r.agent,
            tier: policy.contained(),
            owner: None,
            attested: false,
            root: None,
            root_name: None,
            claimed_tier: None,
            credential_digest: None,
            expires_at: None,
        });
    };
    let claims = trust.verify(credential, now)?;
    if claims.holder != r.agent {
        // SignupRecord::validate already refuses this; kept so judging stands on its own.
        return Err(StandingError::Untrusted(TrustError::Malformed(format!(
            "the credential is held by {}, not by the agent {}",
            claims.holder, r.agent
        ))));
    }
    let (tier, claimed_tier) = match policy.tier(&claims.tier) {
        Some(limits) => (
            TierLimits {
                spending_limit_credits: claims.spending_limit_credits,
                ..limits.clone()
            },
            None,
        ),
        None => {
            let contained = policy.contained();
            (
                TierLimits {
                    spending_limit_credits: claims
                        .spending_limit_credits
                        .min(contained.spending_limit_credits),
                    ..contained
                },
                Some(claims.tier.clone()),
            )
        }
    };
    Ok(Standing {
        agent: r.agent,
        tier,
        owner: claims.owner,
        attested: true,
        root: Some(claims.root),
        root_name: Some(claims.root_name),
        claimed_tier,
        credential_digest: Some(claims.leaf_digest),
        expires_at: Some(claims.expires_at),
    })
}

#[cfg(test)]
#[path = "standing_tests.rs"]
mod tests;

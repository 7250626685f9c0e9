//! Signup: the agent's self-authenticating record, its proof of work, and tiers.
//!
//! An agent signs up at any node with one call. What it signs, a [`SignupRecord`], names the
//! node's fresh [`Challenge`] (so it proves possession of the key at that moment and cannot be
//! replayed there), carries the agent's attestation chain if it has one, and, for an
//! unattested agent, a small proof of work. The record then travels inside every lease
//! request: a provider that never saw the signup re-checks the signature, the proof of work
//! and the credential against *its own* trust roots, and derives the tier itself. No node has
//! to take another node's word for who the agent is.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::attestation::Credential;
use crate::bounds;
use crate::challenge::Challenge;
use crate::codec::DecodeError;
use crate::id::AgoraId;
use crate::signed::SignedKind;
use crate::time::Timestamp;

/// Micro-credits in one credit. Prices are in micro-credits per second; spending limits and
/// allowances in credits.
pub const MICRO_PER_CREDIT: u64 = 1_000_000;

/// The most proof-of-work difficulty any node may ask for (bits): bounded so that a
/// misconfigured node cannot make signups impossible.
pub const MAX_POW_BITS: u8 = 32;

/// The name of the tier an unattested agent gets.
pub const CONTAINED_TIER: &str = "contained";

/// Proof of work: a nonce such that SHA-256 over the agent, the challenge nonce and this
/// nonce starts with `bits` zero bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofOfWork {
    /// Difficulty the solver aimed for.
    pub bits: u8,
    /// The solution.
    pub nonce: u64,
}

impl ProofOfWork {
    /// No proof of work (for attested agents, or nodes that ask for none).
    pub const NONE: Self = Self { bits: 0, nonce: 0 };

    fn hash(agent: &AgoraId, challenge: &Challenge, nonce: u64) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"agora/signup-pow/v1\0");
        h.update(agent.as_bytes());
        h.update(challenge.nonce);
        h.update(nonce.to_le_bytes());
        h.finalize().into()
    }

    /// Whether this proof meets `required` bits for `agent` answering `challenge`.
    pub fn meets(&self, agent: &AgoraId, challenge: &Challenge, required: u8) -> bool {
        required == 0
            || (self.bits >= required
                && leading_zero_bits(&Self::hash(agent, challenge, self.nonce))
                    >= u32::from(required))
    }

    /// Finds a proof of `bits` difficulty (expected 2^bits hashes; `bits` is capped at
    /// [`MAX_POW_BITS`]). Deterministic: the search starts at nonce 0.
    pub fn solve(agent: &AgoraId, challenge: &Challenge, bits: u8) -> Self {
        let bits = bits.min(MAX_POW_BITS);
        if bits == 0 {
            return Self::NONE;
        }
        let mut nonce = 0u64;
        // Terminates: with bits ≤ 32 a solution exists among far fewer than 2^64 nonces with
        // overwhelming probability; the wrap-around guard keeps it total regardless.
        while leading_zero_bits(&Self::hash(agent, challenge, nonce)) < u32::from(bits) {
            nonce = nonce.wrapping_add(1);
            if nonce == 0 {
                break;
            }
        }
        Self { bits, nonce }
    }
}

fn leading_zero_bits(hash: &[u8; 32]) -> u32 {
    let mut n = 0;
    for b in hash {
        if *b == 0 {
            n += 8;
        } else {
            n += b.leading_zeros();
            break;
        }
    }
    n
}

/// What an agent signs to sign up: its key, the node's challenge, its credential (if any)
/// and a proof of work. Signed by the agent (see [`SignedKind::author`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignupRecord {
    /// The agent's key (the signer).
    pub agent: AgoraId,
    /// The challenge the signup node issued (its id, nonce and time).
    pub challenge: Challenge,
    /// The agent's attestation chain; `None` means the contained tier.
    pub credential: Option<Credential>,
    /// Proof of work (required by nodes for unattested signups).
    pub pow: ProofOfWork,
    /// An optional display name (bounded, for operators).
    pub name: Option<String>,
}

impl SignupRecord {
    /// When the agent signed up (the challenge's time, by the signup node's clock).
    pub fn signed_up_at(&self) -> Timestamp {
        self.challenge.issued_at
    }
}

impl SignedKind for SignupRecord {
    const DOMAIN: &'static str = "agora/signup/v1";
    const MAX_PAYLOAD_BYTES: usize = Credential::MAX_BYTES + 512;

    fn validate(&self) -> Result<(), DecodeError> {
        if let Some(credential) = &self.credential
            && credential.holder() != self.agent
        {
            return Err(DecodeError::InvalidField {
                field: "credential",
                reason: format!(
                    "is held by {}, not by the signing agent {}",
                    credential.holder(),
                    self.agent
                ),
            });
        }
        if self.pow.bits > MAX_POW_BITS {
            return Err(DecodeError::InvalidField {
                field: "pow.bits",
                reason: format!("{} is above the maximum {MAX_POW_BITS}", self.pow.bits),
            });
        }
        if let Some(name) = &self.name {
            bounds::max_len("name", name, 64)?;
        }
        Ok(())
    }

    fn author(&self) -> Option<AgoraId> {
        Some(self.agent)
    }
}

/// What a tier allows: the hard limits a provider enforces on one agent's leases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierLimits {
    /// Tier name (`contained`, or the attested tier).
    pub name: String,
    /// Most vCPU per lease, in thousandths.
    pub max_vcpu_milli: u32,
    /// Most memory per lease, MiB.
    pub max_memory_mib: u64,
    /// Most writable disk per lease, MiB.
    pub max_disk_mib: u64,
    /// Longest lease, seconds.
    pub max_lifetime_secs: u64,
    /// Most leases running at once (per provider).
    pub max_concurrent: u32,
    /// Whether workloads may reach the Internet at all.
    pub egress: bool,
    /// When set, the only destination ports egress may use (SMTP is never allowed).
    pub egress_ports: Option<Vec<u16>>,
    /// Most bytes one file transfer (`PUT`/`GET /files`) may move.
    pub max_file_bytes: u64,
    /// Credits the agent may spend without anyone's approval: the free allowance for the
    /// contained tier, the attestation's spending limit otherwise.
    pub spending_limit_credits: u64,
}

impl TierLimits {
    /// The contained tier of an unattested agent: small, short, fenced.
    pub fn contained() -> Self {
        Self {
            name: CONTAINED_TIER.into(),
            max_vcpu_milli: 1000,
            max_memory_mib: 1024,
            max_disk_mib: 1024,
            max_lifetime_secs: 72 * 3600,
            max_concurrent: 3,
            egress: true,
            egress_ports: Some(vec![53, 80, 443]),
            max_file_bytes: 64 * 1024 * 1024,
            spending_limit_credits: 10,
        }
    }

    /// Checks the bounds of a tier definition.
    ///
    /// # Errors
    /// [`DecodeError::InvalidField`] naming the field.
    pub fn validate(&self) -> Result<(), DecodeError> {
        bounds::token("name", &self.name, 32)?;
        if let Some(ports) = &self.egress_ports
            && ports.len() > 64
        {
            return Err(DecodeError::InvalidField {
                field: "egress_ports",
                reason: format!("{} ports, at most 64 allowed", ports.len()),
            });
        }
        Ok(())
    }

    /// The spending limit in micro-credits.
    pub fn spending_limit_micro(&self) -> u64 {
        self.spending_limit_credits.saturating_mul(MICRO_PER_CREDIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signed::{Ed25519, Signed};
    use ed25519_dalek::SigningKey;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn challenge() -> Challenge {
        Challenge {
            verifier: key(9).verifying_key().into(),
            nonce: [7; 32],
            issued_at: Timestamp::from_unix_secs(1_800_000_000),
        }
    }

    #[test]
    fn proof_of_work_solves_and_checks() {
        let agent: AgoraId = key(1).verifying_key().into();
        let pow = ProofOfWork::solve(&agent, &challenge(), 12);
        assert!(pow.meets(&agent, &challenge(), 12));
        assert!(pow.meets(&agent, &challenge(), 8));
        // Bound to the agent and the challenge.
        let other: AgoraId = key(2).verifying_key().into();
        let hits = (0..4)
            .filter(|_| pow.meets(&other, &challenge(), 12))
            .count();
        assert!(hits == 0 || hits == 4);
        let mut c2 = challenge();
        c2.nonce = [8; 32];
        assert!(!ProofOfWork::solve(&agent, &c2, 12).meets(&agent, &challenge(), 30));
        // A claimed difficulty below the requirement fails even if the hash happens to pass.
        let weak = ProofOfWork { bits: 4, ..pow };
        assert!(!weak.meets(&agent, &challenge(), 12));
        assert!(ProofOfWork::NONE.meets(&agent, &challenge(), 0));
        assert!(!ProofOfWork::NONE.meets(&agent, &challenge(), 1));
    }

    #[test]
    fn signup_record_round_trips_and_binds_the_agent() {
        let agent = key(1);
        let record = SignupRecord {
            agent: agent.verifying_key().into(),
            challenge: challenge(),
            credential: None,
            pow: ProofOfWork::solve(&agent.verifying_key().into(), &challenge(), 4),
            name: Some("agent-1".into()),
        };
        let signed = Signed::sign(record.clone(), &agent).unwrap();
        let back = Signed::<SignupRecord>::decode(signed.as_bytes(), &Ed25519).unwrap();
        assert_eq!(back.body(), &record);
        // Someone else cannot sign an agent's record.
        assert!(Signed::sign(record, &key(3)).is_err());
    }

    #[test]
    fn contained_tier_is_valid_and_excludes_smtp() {
        let t = TierLimits::contained();
        t.validate().unwrap();
        let ports = t.egress_ports.unwrap();
        assert!(!ports.contains(&25) && !ports.contains(&587));
        assert_eq!(
            TierLimits::contained().spending_limit_micro(),
            10 * MICRO_PER_CREDIT
        );
    }
}

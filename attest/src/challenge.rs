//! Proof of possession for signup: the verifier's side of challenge and response.
//!
//! A [`ChallengeIssuer`] hands out fresh [`Challenge`]s and remembers each until it is
//! answered or goes stale. A response is accepted once: it must name this verifier, answer
//! an outstanding challenge, arrive within the time-to-live and be signed by the subject it
//! names (the signature was checked when the response was decoded). The set of outstanding
//! challenges is bounded, so a flood of challenge requests cannot exhaust memory.

use core::time::Duration;
use std::collections::{HashMap, VecDeque};

use agora_protocol::challenge::CHALLENGE_NONCE_LEN;
use agora_protocol::{AgoraId, Challenge, ChallengeResponse, Signed, Timestamp};
use rand_core::CryptoRng;

/// Why a challenge could not be issued or a response was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// Too many challenges are outstanding; try again shortly.
    #[error("too many outstanding challenges ({max}); retry later")]
    TooMany {
        /// The bound.
        max: usize,
    },
    /// The response answers a challenge issued by another verifier.
    #[error("challenge was issued by {issued_by}, not by this node ({this})")]
    WrongVerifier {
        /// Who issued it.
        issued_by: AgoraId,
        /// This verifier.
        this: AgoraId,
    },
    /// Unknown nonce: never issued here, already used (a replay), or forgotten when stale.
    #[error("unknown or already used challenge (replay or never issued)")]
    Unknown,
    /// The challenge was answered too late.
    #[error("stale challenge: issued at {issued_at}, valid for {ttl_secs}s, now {now}")]
    Stale {
        /// When it was issued.
        issued_at: Timestamp,
        /// Its time-to-live.
        ttl_secs: u64,
        /// Our clock.
        now: Timestamp,
    },
}

/// Issues and checks signup challenges for one verifier.
#[derive(Debug)]
pub struct ChallengeIssuer {
    verifier: AgoraId,
    ttl: Duration,
    max_outstanding: usize,
    outstanding: HashMap<[u8; CHALLENGE_NONCE_LEN], Timestamp>,
    /// Issue order, for pruning stale entries oldest first.
    order: VecDeque<([u8; CHALLENGE_NONCE_LEN], Timestamp)>,
}

impl ChallengeIssuer {
    /// A verifier `verifier` whose challenges live `ttl`, at most `max_outstanding` at once.
    pub fn new(verifier: AgoraId, ttl: Duration, max_outstanding: usize) -> Self {
        Self {
            verifier,
            ttl,
            max_outstanding: max_outstanding.max(1),
            outstanding: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Challenges currently outstanding (after the last prune).
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Forgets challenges older than the time-to-live.
    pub fn prune(&mut self, now: Timestamp) {
        while let Some(&(nonce, issued_at)) = self.order.front() {
            if now < issued_at.saturating_add(self.ttl) {
                break;
            }
            self.order.pop_front();
            if self.outstanding.get(&nonce) == Some(&issued_at) {
                self.outstanding.remove(&nonce);
            }
        }
    }

    /// A fresh challenge.
    ///
    /// # Errors
    /// [`ChallengeError::TooMany`] when the bound is reached even after pruning.
    pub fn issue<R: CryptoRng + ?Sized>(
        &mut self,
        now: Timestamp,
        rng: &mut R,
    ) -> Result<Challenge, ChallengeError> {
        self.prune(now);
        if self.outstanding.len() >= self.max_outstanding {
            return Err(ChallengeError::TooMany {
                max: self.max_outstanding,
            });
        }
        let mut nonce = [0u8; CHALLENGE_NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        self.outstanding.insert(nonce, now);
        self.order.push_back((nonce, now));
        Ok(Challenge {
            verifier: self.verifier,
            nonce,
            issued_at: now,
        })
    }

    /// Checks a signed response; on success the challenge is consumed and the proven key
    /// returned.
    ///
    /// # Errors
    /// [`ChallengeError`]: wrong verifier, unknown or replayed nonce, stale.
    pub fn verify(
        &mut self,
        response: &Signed<ChallengeResponse>,
        now: Timestamp,
    ) -> Result<AgoraId, ChallengeError> {
        self.consume(&response.body().challenge, now)?;
        Ok(response.body().subject)
    }

    /// Consumes `challenge` as named in some other signed message (a signup record, say):
    /// it must be this verifier's, outstanding, and fresh at `now`. The caller has checked
    /// the signature of whatever message carries it.
    ///
    /// # Errors
    /// [`ChallengeError`]: wrong verifier, unknown or replayed nonce, stale.
    pub fn consume(&mut self, challenge: &Challenge, now: Timestamp) -> Result<(), ChallengeError> {
        if challenge.verifier != self.verifier {
            return Err(ChallengeError::WrongVerifier {
                issued_by: challenge.verifier,
                this: self.verifier,
            });
        }
        let issued_at = *self
            .outstanding
            .get(&challenge.nonce)
            .ok_or(ChallengeError::Unknown)?;
        if issued_at != challenge.issued_at {
            return Err(ChallengeError::Unknown);
        }
        // Consumed whatever the outcome below: a challenge is good for one attempt.
        self.outstanding.remove(&challenge.nonce);
        if now >= issued_at.saturating_add(self.ttl) {
            return Err(ChallengeError::Stale {
                issued_at,
                ttl_secs: self.ttl.as_secs(),
                now,
            });
        }
        Ok(())
    }
}

/// Signs the response to `challenge` with the subject's key.
///
/// # Errors
/// Only if the signer's id cannot be encoded (not reachable for ed25519 keys).
pub fn respond(
    challenge: Challenge,
    subject: &impl agora_protocol::Signer,
) -> Result<Signed<ChallengeResponse>, agora_protocol::EncodeError> {
    Signed::sign(
        ChallengeResponse {
            challenge,
            subject: subject.id(),
        },
        subject,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;
    use agora_protocol::Ed25519;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const T0: Timestamp = Timestamp::from_unix_secs(1_000);
    const TTL: Duration = Duration::from_secs(60);

    fn setup() -> (ChaCha20Rng, Identity, Identity, ChallengeIssuer) {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let node = Identity::generate(&mut rng);
        let agent = Identity::generate(&mut rng);
        let issuer = ChallengeIssuer::new(node.agora_id(), TTL, 4);
        (rng, node, agent, issuer)
    }

    #[test]
    fn fresh_response_accepted_once() {
        let (mut rng, _node, agent, mut issuer) = setup();
        let c = issuer.issue(T0, &mut rng).unwrap();
        let r = respond(c, &agent).unwrap();
        // It survives the wire.
        let r = Signed::<ChallengeResponse>::decode(r.as_bytes(), &Ed25519).unwrap();
        assert_eq!(issuer.verify(&r, T0), Ok(agent.agora_id()));
        assert_eq!(issuer.verify(&r, T0), Err(ChallengeError::Unknown));
    }

    #[test]
    fn stale_rejected_at_ttl() {
        let (mut rng, _node, agent, mut issuer) = setup();
        let c = issuer.issue(T0, &mut rng).unwrap();
        let r = respond(c, &agent).unwrap();
        assert!(matches!(
            issuer.verify(&r, T0.saturating_add(TTL)),
            Err(ChallengeError::Stale { .. })
        ));
    }

    #[test]
    fn other_verifier_and_forged_nonce_rejected() {
        let (mut rng, node, agent, mut issuer) = setup();
        let mut other = ChallengeIssuer::new(agent.agora_id(), TTL, 4);
        let foreign = other.issue(T0, &mut rng).unwrap();
        let r = respond(foreign, &agent).unwrap();
        assert!(matches!(
            issuer.verify(&r, T0),
            Err(ChallengeError::WrongVerifier { .. })
        ));
        let made_up = Challenge {
            verifier: node.agora_id(),
            nonce: [1; CHALLENGE_NONCE_LEN],
            issued_at: T0,
        };
        let r = respond(made_up, &agent).unwrap();
        assert_eq!(issuer.verify(&r, T0), Err(ChallengeError::Unknown));
    }

    #[test]
    fn bounded_and_pruned() {
        let (mut rng, _node, _agent, mut issuer) = setup();
        for _ in 0..4 {
            issuer.issue(T0, &mut rng).unwrap();
        }
        assert_eq!(
            issuer.issue(T0, &mut rng),
            Err(ChallengeError::TooMany { max: 4 })
        );
        // After the TTL the old ones are pruned and new ones can be issued.
        assert!(issuer.issue(T0.saturating_add(TTL), &mut rng).is_ok());
        assert_eq!(issuer.outstanding(), 1);
    }

    #[test]
    fn signature_by_someone_else_fails_to_decode() {
        let (mut rng, _node, agent, mut issuer) = setup();
        let c = issuer.issue(T0, &mut rng).unwrap();
        let impostor = Identity::generate(&mut rng);
        // The impostor claims to be `agent` but can only sign with its own key.
        let body = ChallengeResponse {
            challenge: c,
            subject: agent.agora_id(),
        };
        assert!(Signed::sign(body, &impostor).is_err());
    }
}

//! Issuing attestations and revocations with an [`Identity`].

use core::time::Duration;

use agora_protocol::attestation::NONCE_LEN;
use agora_protocol::{
    AgoraId, Attestation, Claims, Credential, EncodeError, Revocation, Signed, Timestamp,
};
use rand_core::CryptoRng;

use crate::identity::Identity;

/// What to attest about a subject; [`issue`] adds the issuer, times and nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationRequest {
    /// Whom the attestation is about.
    pub subject: AgoraId,
    /// What is stated.
    pub claims: Claims,
    /// How long it stays valid from `now`.
    pub valid_for: Duration,
}

/// Why an attestation could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// A claim or time is out of bounds (the message names the field).
    #[error("cannot issue attestation: {0}")]
    Invalid(#[from] EncodeError),
    /// The validity period is zero.
    #[error("cannot issue attestation: validity period must be positive")]
    ZeroValidity,
    /// Delegating from a credential the issuer does not hold.
    #[error("cannot delegate: the parent credential is about {holder}, not the issuer {issuer}")]
    NotHolder {
        /// The parent credential's holder.
        holder: AgoraId,
        /// The would-be delegating issuer.
        issuer: AgoraId,
    },
    /// Delegating from a credential whose leaf does not allow it.
    #[error("cannot delegate: the parent credential does not allow delegation")]
    DelegationNotAllowed,
    /// The chain would be longer than the wire allows.
    #[error("cannot delegate: {0}")]
    Chain(String),
}

/// Signs an attestation by `issuer`, valid from `now` for `request.valid_for`.
///
/// # Errors
/// [`IssueError`] when the request is out of bounds.
pub fn issue<R: CryptoRng + ?Sized>(
    issuer: &Identity,
    request: AttestationRequest,
    now: Timestamp,
    rng: &mut R,
) -> Result<Signed<Attestation>, IssueError> {
    if request.valid_for.is_zero() {
        return Err(IssueError::ZeroValidity);
    }
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let body = Attestation {
        issuer: issuer.agora_id(),
        subject: request.subject,
        claims: request.claims,
        issued_at: now,
        not_before: now,
        expires_at: now.saturating_add(request.valid_for),
        nonce,
    };
    Ok(Signed::sign(body, issuer)?)
}

/// Issues a credential: directly (no `parent`) or as a delegation extending `parent`, which
/// must be about `issuer` and allow delegation. A delegated link never outlives its parent.
///
/// # Errors
/// [`IssueError`].
pub fn issue_credential<R: CryptoRng + ?Sized>(
    issuer: &Identity,
    parent: Option<&Credential>,
    mut request: AttestationRequest,
    now: Timestamp,
    rng: &mut R,
) -> Result<Credential, IssueError> {
    let Some(parent) = parent else {
        return Ok(Credential::single(issue(issuer, request, now, rng)?));
    };
    if parent.holder() != issuer.agora_id() {
        return Err(IssueError::NotHolder {
            holder: parent.holder(),
            issuer: issuer.agora_id(),
        });
    }
    let leaf = parent.leaf().body();
    if !leaf.claims.may_delegate {
        return Err(IssueError::DelegationNotAllowed);
    }
    let remaining = leaf.expires_at.saturating_duration_since(now);
    request.valid_for = request.valid_for.min(remaining);
    let link = issue(issuer, request, now, rng)?;
    parent
        .delegate(link)
        .map_err(|e| IssueError::Chain(e.to_string()))
}

/// Signs the revocation of `attestation` by its issuer.
///
/// # Errors
/// [`EncodeError`] when `identity` is not the attestation's issuer or the reason is too long.
pub fn revoke(
    identity: &Identity,
    attestation: &Signed<Attestation>,
    reason: &str,
    now: Timestamp,
) -> Result<Signed<Revocation>, EncodeError> {
    Signed::sign(
        Revocation {
            issuer: attestation.body().issuer,
            subject: attestation.body().subject,
            attestation: attestation.digest(),
            revoked_at: now,
            reason: reason.to_owned(),
        },
        identity,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    pub(crate) fn claims(tier: &str, limit: u64, may_delegate: bool) -> Claims {
        Claims {
            organisation: None,
            tier: tier.into(),
            spending_limit_credits: limit,
            owner: None,
            may_delegate,
            model: None,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn issue_sets_times_and_distinct_nonces() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let issuer = Identity::generate(&mut rng);
        let subject = Identity::generate(&mut rng).agora_id();
        let now = Timestamp::from_unix_secs(1_000);
        let req = AttestationRequest {
            subject,
            claims: claims("standard", 10, false),
            valid_for: Duration::from_secs(60),
        };
        let a = issue(&issuer, req.clone(), now, &mut rng).unwrap();
        let b = issue(&issuer, req, now, &mut rng).unwrap();
        assert_eq!(a.body().expires_at, Timestamp::from_unix_secs(1_060));
        assert_ne!(a.body().nonce, b.body().nonce);
    }

    #[test]
    fn delegation_is_capped_by_parent_expiry_and_needs_permission() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let root = Identity::generate(&mut rng);
        let mid = Identity::generate(&mut rng);
        let leaf = Identity::generate(&mut rng);
        let now = Timestamp::from_unix_secs(0);
        let req = |subject, may| AttestationRequest {
            subject,
            claims: claims("standard", 10, may),
            valid_for: Duration::from_secs(3600),
        };
        let parent =
            issue_credential(&root, None, req(mid.agora_id(), true), now, &mut rng).unwrap();
        let later = Timestamp::from_unix_secs(600);
        let child = issue_credential(
            &mid,
            Some(&parent),
            req(leaf.agora_id(), false),
            later,
            &mut rng,
        )
        .unwrap();
        assert_eq!(
            child.leaf().body().expires_at,
            Timestamp::from_unix_secs(3600)
        );
        assert!(matches!(
            issue_credential(
                &leaf,
                Some(&child),
                req(root.agora_id(), false),
                later,
                &mut rng
            ),
            Err(IssueError::DelegationNotAllowed)
        ));
        assert!(matches!(
            issue_credential(
                &root,
                Some(&child),
                req(root.agora_id(), false),
                later,
                &mut rng
            ),
            Err(IssueError::NotHolder { .. })
        ));
    }
}

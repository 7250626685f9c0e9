//! The provider's rule: start work only against a lock certificate.
//!
//! Admission asks for quota with a [`QuotaRequest`] and takes a [`QuotaAnswer`] back as an
//! input event; [`quota_answer`] is that answer from a lock certificate the agent supplied,
//! so admission does not change. [`check_lock`] is the same decision with a typed error.

use core::time::Duration;

use crate::id::AgoraId;
use crate::lease::{Refusal as LeaseRefusal, RefusalCode};
use crate::quota::{QuotaAnswer, QuotaRequest};
use crate::time::Timestamp;

use super::certificate::Certificate;
use super::genesis::Committee;
use super::op::{Action, LockTerms, Op};

/// Why a certificate does not cover a lease.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockCheckError {
    /// It was certified by another committee than this provider's.
    #[error("the certificate is of another committee")]
    WrongCommittee,
    /// It certifies something other than a lock.
    #[error("the certificate is of a {0} op, not a lock")]
    NotALock(&'static str),
    /// The lock is another agent's.
    #[error("the lock is {found}'s, the lease is {expected}'s")]
    WrongAgent {
        /// The lease's agent.
        expected: AgoraId,
        /// The lock's account.
        found: AgoraId,
    },
    /// The lock is for another lease.
    #[error("the lock is for another lease")]
    WrongLease,
    /// The lock names another provider.
    #[error("the lock is for provider {0}")]
    WrongProvider(AgoraId),
    /// The lock holds less than the lease may cost.
    #[error("the lock holds {locked_micro} micro-credits, the lease may cost {needed_micro}")]
    TooSmall {
        /// Locked.
        locked_micro: u64,
        /// Price × lifetime.
        needed_micro: u64,
    },
    /// The lock lapses before the lease ends.
    #[error("the lock lapses at {lock_expires}, the lease ends at {lease_expires}")]
    ExpiresTooSoon {
        /// The lock's expiry.
        lock_expires: Timestamp,
        /// The lease's.
        lease_expires: Timestamp,
    },
}

/// Checks that `certificate` is a lock, certified by `committee`, by the request's agent,
/// for the request's lease, naming `me` as provider, of at least the request's amount
/// (price × lifetime), lasting until the lease's expiry plus `margin` (time quota may take
/// before the lease starts: admission restarts the lease's clock when quota answers).
///
/// # Errors
/// The first [`LockCheckError`].
pub fn check_lock<'c>(
    certificate: &'c Certificate,
    committee: &Committee,
    request: &QuotaRequest,
    me: &AgoraId,
    margin: Duration,
) -> Result<&'c LockTerms, LockCheckError> {
    if certificate.genesis() != committee.digest() {
        return Err(LockCheckError::WrongCommittee);
    }
    let op = certificate.op();
    let Op::Chain(chain) = op else {
        return Err(LockCheckError::NotALock(op.kind()));
    };
    let Action::Lock(terms) = &chain.body().action else {
        return Err(LockCheckError::NotALock(op.kind()));
    };
    let account = chain.body().account;
    if account != request.agent {
        return Err(LockCheckError::WrongAgent {
            expected: request.agent,
            found: account,
        });
    }
    if terms.lease != request.lease {
        return Err(LockCheckError::WrongLease);
    }
    if terms.provider != *me {
        return Err(LockCheckError::WrongProvider(terms.provider));
    }
    if terms.amount_micro < request.amount_micro {
        return Err(LockCheckError::TooSmall {
            locked_micro: terms.amount_micro,
            needed_micro: request.amount_micro,
        });
    }
    let lease_expires = request.expires_at.saturating_add(margin);
    if terms.expires_at < lease_expires {
        return Err(LockCheckError::ExpiresTooSoon {
            lock_expires: terms.expires_at,
            lease_expires,
        });
    }
    Ok(terms)
}

/// The [`QuotaAnswer`] admission takes: `Granted` exactly when [`check_lock`] passes,
/// otherwise `Denied` with [`RefusalCode::Quota`] and the reason. No certificate, no lease.
pub fn quota_answer(
    certificate: Option<&Certificate>,
    committee: &Committee,
    request: &QuotaRequest,
    me: &AgoraId,
    margin: Duration,
) -> QuotaAnswer {
    let Some(certificate) = certificate else {
        return QuotaAnswer::Denied(LeaseRefusal::new(
            RefusalCode::Quota,
            "a lock certificate of the quota committee is required",
        ));
    };
    match check_lock(certificate, committee, request, me, margin) {
        Ok(_) => QuotaAnswer::Granted,
        Err(e) => QuotaAnswer::Denied(LeaseRefusal::new(
            RefusalCode::Quota,
            format!("lock certificate refused: {e}"),
        )),
    }
}

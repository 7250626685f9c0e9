//! The provider's rule: start work only against a lock certificate.
//!
//! Admission asks for quota with a [`QuotaRequest`] and takes a [`QuotaAnswer`] back as an
//! input event; [`quota_answer`] is that answer from a lock certificate the agent supplied,
//! so admission does not change. [`check_lock`] is the same decision with a typed error;
//! [`check_top_up`] the decision for an extension, against the top-up the agent supplied.

use core::time::Duration;

use crate::id::AgoraId;
use crate::lease::{LeaseId, Refusal as LeaseRefusal, RefusalCode};
use crate::quota::{QuotaAnswer, QuotaRequest};
use crate::time::Timestamp;

use super::certificate::Certificate;
use super::genesis::Committee;
use super::op::{Action, LockTerms, TopUpTerms};

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
    /// It certifies something other than a top-up.
    #[error("the certificate is of a {0} op, not a top-up")]
    NotATopUp(&'static str),
    /// The top-up's base is not what the provider's locks for the lease hold: its
    /// settlement would not charge the extension.
    #[error("the top-up's base is {found} micro-credits, the lease's locks here hold {expected}")]
    WrongBase {
        /// What the locks the provider kept hold.
        expected: u64,
        /// The top-up's base.
        found: u64,
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
    let Action::Lock(terms) = chain_action(certificate, committee)? else {
        return Err(LockCheckError::NotALock(certificate.op().kind()));
    };
    covers(
        certificate,
        terms,
        &Cover {
            agent: request.agent,
            lease: request.lease,
            provider: *me,
            amount_micro: request.amount_micro,
            until: request.expires_at.saturating_add(margin),
        },
    )?;
    Ok(terms)
}

/// What a lock must cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cover {
    /// The lease's agent (the lock's account).
    pub agent: AgoraId,
    /// The lease.
    pub lease: LeaseId,
    /// The provider checking it.
    pub provider: AgoraId,
    /// At least this many micro-credits.
    pub amount_micro: u64,
    /// Lasting at least until then.
    pub until: Timestamp,
}

/// Checks that `certificate` is a top-up certified by `committee` covering `cover` (the
/// extension's cost, until the extended lease's end plus a margin), whose base is
/// `held_micro`, what the locks the provider kept for the lease hold: its settlement then
/// charges the cost above them.
///
/// # Errors
/// The first [`LockCheckError`].
pub fn check_top_up<'c>(
    certificate: &'c Certificate,
    committee: &Committee,
    cover: &Cover,
    held_micro: u64,
) -> Result<&'c TopUpTerms, LockCheckError> {
    let Action::TopUp(top_up) = chain_action(certificate, committee)? else {
        return Err(LockCheckError::NotATopUp(certificate.op().kind()));
    };
    covers(certificate, &top_up.lock, cover)?;
    if top_up.base_micro != held_micro {
        return Err(LockCheckError::WrongBase {
            expected: held_micro,
            found: top_up.base_micro,
        });
    }
    Ok(top_up)
}

/// The action of a chain op certified by `committee`.
fn chain_action<'c>(
    certificate: &'c Certificate,
    committee: &Committee,
) -> Result<&'c Action, LockCheckError> {
    if certificate.genesis() != committee.digest() {
        return Err(LockCheckError::WrongCommittee);
    }
    match certificate.op().chain() {
        Some(chain) => Ok(&chain.body().action),
        None => Err(LockCheckError::NotALock(certificate.op().kind())),
    }
}

/// Whether `terms` (of `certificate`'s account) cover `cover`.
fn covers(
    certificate: &Certificate,
    terms: &LockTerms,
    cover: &Cover,
) -> Result<(), LockCheckError> {
    let account = certificate.op().account();
    if account != cover.agent {
        return Err(LockCheckError::WrongAgent {
            expected: cover.agent,
            found: account,
        });
    }
    if terms.lease != cover.lease {
        return Err(LockCheckError::WrongLease);
    }
    if terms.provider != cover.provider {
        return Err(LockCheckError::WrongProvider(terms.provider));
    }
    if terms.amount_micro < cover.amount_micro {
        return Err(LockCheckError::TooSmall {
            locked_micro: terms.amount_micro,
            needed_micro: cover.amount_micro,
        });
    }
    if terms.expires_at < cover.until {
        return Err(LockCheckError::ExpiresTooSoon {
            lock_expires: terms.expires_at,
            lease_expires: cover.until,
        });
    }
    Ok(())
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

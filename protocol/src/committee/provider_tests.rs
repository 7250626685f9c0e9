//! The provider's check of a lock certificate before it starts work.

use core::time::Duration;

use crate::lease::RefusalCode;
use crate::quota::{QuotaAnswer, QuotaRequest};
use crate::signup::MICRO_PER_CREDIT;

use super::certificate::Certificate;
use super::genesis::Committee;
use super::provider::{LockCheckError, check_lock, quota_answer};
use super::test_support::*;

const MARGIN: Duration = Duration::from_secs(30);

/// A credit and a lock of 10 credits for lease 1 at [`PROVIDER`] until `t(600)`.
fn certificates() -> (Committee, Certificate, Certificate) {
    let committee = committee(1);
    let mut vs = validators(&committee, 1);
    let credit = certify_everywhere(
        &committee,
        &mut vs,
        t(1),
        credit_op(AGENT, 0, None, 50, 1),
        vec![],
    );
    let lock = lock_op(
        AGENT,
        1,
        Some(credit.digest()),
        lock_terms(1, PROVIDER, 10 * MICRO_PER_CREDIT, t(600)),
    );
    let lock = certify_everywhere(&committee, &mut vs, t(2), lock, vec![]);
    (committee, credit, lock)
}

fn request() -> QuotaRequest {
    QuotaRequest {
        lease: lease(1),
        agent: id(AGENT),
        amount_micro: 10 * MICRO_PER_CREDIT,
        limit_micro: 0,
        approved_micro: None,
        has_owner: false,
        expires_at: t(570),
    }
}

#[test]
fn a_matching_lock_grants() {
    let (committee, _, lock) = certificates();
    let me = id(PROVIDER);
    assert_eq!(
        check_lock(&lock, &committee, &request(), &me, MARGIN)
            .unwrap()
            .lease,
        lease(1)
    );
    assert_eq!(
        quota_answer(Some(&lock), &committee, &request(), &me, MARGIN),
        QuotaAnswer::Granted
    );
}

#[test]
fn every_mismatch_denies() {
    let (committee, credit, lock) = certificates();
    let me = id(PROVIDER);
    let check = |cert: &Certificate, req: &QuotaRequest, me, c: &Committee| {
        check_lock(cert, c, req, me, MARGIN)
            .map(|_| ())
            .unwrap_err()
    };
    assert_eq!(
        check(&credit, &request(), &me, &committee),
        LockCheckError::NotALock("credit")
    );
    let mut r = request();
    r.agent = id(AGENT + 1);
    assert_eq!(
        check(&lock, &r, &me, &committee),
        LockCheckError::WrongAgent {
            expected: id(AGENT + 1),
            found: id(AGENT)
        }
    );
    let mut r = request();
    r.lease = lease(2);
    assert_eq!(
        check(&lock, &r, &me, &committee),
        LockCheckError::WrongLease
    );
    let stranger = id(61);
    assert_eq!(
        check(&lock, &request(), &stranger, &committee),
        LockCheckError::WrongProvider(id(PROVIDER))
    );
    let mut r = request();
    r.amount_micro += 1;
    assert_eq!(
        check(&lock, &r, &me, &committee),
        LockCheckError::TooSmall {
            locked_micro: 10 * MICRO_PER_CREDIT,
            needed_micro: 10 * MICRO_PER_CREDIT + 1
        }
    );
    let mut r = request();
    r.expires_at = t(571);
    assert_eq!(
        check(&lock, &r, &me, &committee),
        LockCheckError::ExpiresTooSoon {
            lock_expires: t(600),
            lease_expires: t(601)
        }
    );
    let mut g = genesis(1);
    g.epoch_secs += 1;
    let other = Committee::new(g).unwrap();
    assert_eq!(
        check(&lock, &request(), &me, &other),
        LockCheckError::WrongCommittee
    );

    // Admission sees a quota refusal, and without any certificate there is no lease.
    for cert in [None, Some(&credit)] {
        match quota_answer(cert, &committee, &request(), &me, MARGIN) {
            QuotaAnswer::Denied(refusal) => assert_eq!(refusal.code, RefusalCode::Quota),
            QuotaAnswer::Granted => panic!("granted without a lock"),
        }
    }
}

//! Every refusal a validator gives, and what closing a lock does.

use crate::attestation::{Attestation, Credential};
use crate::signed::{Digest, Signed};
use crate::signup::MICRO_PER_CREDIT;
use crate::time::Timestamp;

use super::credit::CreditProblem;
use super::message::{Answer, Request};
use super::op::Action;
use super::refusal::{ReceiptField, Refusal};
use super::test_support::*;

#[test]
fn credit_refusals() {
    let mut fx = fixture();
    let head = Some(fx.credit.digest());
    let credit = |c: Credential| chain_op(AGENT, 1, head, Action::Credit(c));

    // The same attestation again.
    assert_eq!(
        fx.refusal(t(20), credit(credential(AGENT, CREDITS, 1))),
        Refusal::AlreadyCredited { issuer: id(ISSUER) }
    );
    // An issuer the genesis does not list.
    let stranger = Credential::single(attestation(71, AGENT, 5, 2, false));
    assert_eq!(
        fx.refusal(t(20), credit(stranger)),
        Refusal::Credential(CreditProblem::UntrustedIssuer(id(71)))
    );
    // A zero spending limit.
    assert_eq!(
        fx.refusal(t(20), credit(credential(AGENT, 0, 3))),
        Refusal::Credential(CreditProblem::Zero)
    );
    // A root that may not delegate, then a link to the agent.
    let root = attestation(ISSUER, 80, 50, 4, false);
    let link = attestation(80, AGENT, 50, 5, false);
    let chain = Credential::from_chain(vec![root, link]).unwrap();
    assert_eq!(
        fx.refusal(t(20), credit(chain)),
        Refusal::Credential(CreditProblem::NoDelegation(0))
    );
    // Not valid yet, and expired.
    let at = |not_before: Timestamp, expires_at: Timestamp| {
        let mut body: Attestation = attestation(ISSUER, AGENT, 5, 6, false).body().clone();
        body.not_before = not_before;
        body.issued_at = not_before;
        body.expires_at = expires_at;
        Credential::single(Signed::sign(body, &key(ISSUER)).unwrap())
    };
    assert_eq!(
        fx.refusal(t(20), credit(at(t(100), t(200)))),
        Refusal::Credential(CreditProblem::NotYetValid(0))
    );
    assert_eq!(
        fx.refusal(t(300), credit(at(t(100), t(200)))),
        Refusal::Credential(CreditProblem::Expired(0))
    );
}

#[test]
fn a_delegated_chain_credits_its_smallest_limit() {
    let mut fx = fixture();
    let root = attestation(ISSUER, 80, 7, 4, true);
    let link = attestation(80, AGENT, 500, 5, false);
    let chain = Credential::from_chain(vec![root, link]).unwrap();
    let op = chain_op(AGENT, 1, Some(fx.credit.digest()), Action::Credit(chain));
    certify_everywhere(&fx.committee, &mut fx.validators, t(20), op, vec![]);
    let account = fx.v().accounts().get(&id(AGENT)).unwrap().clone();
    assert_eq!(account.credited_micro(), (CREDITS + 7) * MICRO_PER_CREDIT);
}

#[test]
fn overflow_is_refused() {
    let mut fx = fixture();
    let big = chain_op(
        AGENT,
        1,
        Some(fx.credit.digest()),
        // 100 + this leaves about 5.5 credits below u64::MAX micro-credits.
        Action::Credit(credential(AGENT, u64::MAX / MICRO_PER_CREDIT - 105, 2)),
    );
    let big = certify_everywhere(&fx.committee, &mut fx.validators, t(20), big, vec![]);
    assert_eq!(
        fx.refusal(t(20), credit_op(AGENT, 2, Some(big.digest()), 6, 3)),
        Refusal::Overflow
    );
    assert_eq!(
        fx.refusal(t(20), free_tier_op(AGENT, 0, 0)),
        Refusal::Overflow
    );
}

#[test]
fn lock_refusals() {
    let mut fx = fixture();
    let head = Some(fx.credit.digest());
    let lock = |terms| lock_op(AGENT, 1, head, terms);
    let now = t(20);
    assert_eq!(
        fx.refusal(now, lock(lock_terms(1, PROVIDER, 0, t(600)))),
        Refusal::ZeroAmount
    );
    let latest = now.saturating_add(fx.committee.max_lock_lifetime());
    assert_eq!(
        fx.refusal(now, lock(lock_terms(1, PROVIDER, 5, now))),
        Refusal::LockExpiry {
            expires_at: now,
            latest
        }
    );
    let too_far = latest.saturating_add(core::time::Duration::from_millis(1));
    assert_eq!(
        fx.refusal(now, lock(lock_terms(1, PROVIDER, 5, too_far))),
        Refusal::LockExpiry {
            expires_at: too_far,
            latest
        }
    );
    assert_eq!(
        fx.refusal(
            now,
            lock(lock_terms(
                1,
                PROVIDER,
                CREDITS * MICRO_PER_CREDIT + 1,
                t(600)
            ))
        ),
        Refusal::Insufficient {
            available_micro: CREDITS * MICRO_PER_CREDIT,
            amount_micro: CREDITS * MICRO_PER_CREDIT + 1
        }
    );
}

#[test]
fn locked_quota_is_not_available_again() {
    let mut fx = fixture();
    let first = fx.lock(1, fx.credit.digest(), 1, 60, t(600));
    // 40 credits are left: 41 is too much, the same lease is locked already.
    assert_eq!(
        fx.refusal(
            t(20),
            lock_op(
                AGENT,
                2,
                Some(first.digest()),
                lock_terms(2, PROVIDER, 41 * MICRO_PER_CREDIT, t(600))
            )
        ),
        Refusal::Insufficient {
            available_micro: 40 * MICRO_PER_CREDIT,
            amount_micro: 41 * MICRO_PER_CREDIT
        }
    );
    assert_eq!(
        fx.refusal(
            t(20),
            lock_op(
                AGENT,
                2,
                Some(first.digest()),
                lock_terms(1, PROVIDER, 1, t(600))
            )
        ),
        Refusal::LeaseLocked { lease: lease(1) }
    );
}

#[test]
fn too_many_locks() {
    let mut g = genesis(1);
    g.locks.max_open = 1;
    let mut fx = fixture_with(g);
    let first = fx.lock(1, fx.credit.digest(), 1, 1, t(600));
    assert_eq!(
        fx.refusal(
            t(20),
            lock_op(
                AGENT,
                2,
                Some(first.digest()),
                lock_terms(2, PROVIDER, 1, t(600))
            )
        ),
        Refusal::TooManyLocks { max: 1 }
    );
}

#[test]
fn settle_and_unlock_refusals() {
    let mut fx = fixture();
    let lock = fx.lock(1, fx.credit.digest(), 1, 10, t(600));
    let grace = fx.committee.settle_grace();
    let deadline = t(600).saturating_add(grace);
    let settle = |n, provider, lock_seq, lock_digest| {
        settle_op(
            provider,
            AGENT,
            lock_seq,
            lock_digest,
            receipt(provider, AGENT, n, 1),
        )
    };

    // A closing of a position this validator has not reached.
    assert_eq!(
        fx.refusal(t(30), settle(1, PROVIDER, 5, lock.digest())),
        Refusal::Behind {
            account: id(AGENT),
            next_seq: 2
        }
    );
    // Position 0 is a credit, not a lock.
    assert_eq!(
        fx.refusal(t(30), settle(1, PROVIDER, 0, lock.digest())),
        Refusal::NoSuchLock {
            account: id(AGENT),
            lock_seq: 0
        }
    );
    // Another lock op named.
    assert_eq!(
        fx.refusal(t(30), settle(1, PROVIDER, 1, Digest::of(b"other"))),
        Refusal::LockMismatch {
            actual: lock.digest()
        }
    );
    // A receipt for another lease; a receipt (and settlement) by another provider.
    assert_eq!(
        fx.refusal(t(30), settle(2, PROVIDER, 1, lock.digest())),
        Refusal::ReceiptMismatch {
            field: ReceiptField::Lease
        }
    );
    assert_eq!(
        fx.refusal(t(30), settle(1, 61, 1, lock.digest())),
        Refusal::ReceiptMismatch {
            field: ReceiptField::Provider
        }
    );
    // Too late to settle, too early to unlock.
    assert_eq!(
        fx.refusal(deadline, settle(1, PROVIDER, 1, lock.digest())),
        Refusal::SettleTooLate { deadline }
    );
    assert_eq!(
        fx.refusal(t(601), unlock_op(AGENT, 1, lock.digest())),
        Refusal::NotExpired {
            unlock_at: deadline
        }
    );
}

#[test]
fn a_closed_lock_is_gone_and_its_quota_back() {
    let mut fx = fixture();
    let lock = fx.lock(1, fx.credit.digest(), 1, 10, t(600));
    let settle = settle_op(
        PROVIDER,
        AGENT,
        1,
        lock.digest(),
        receipt(PROVIDER, AGENT, 1, 3 * MICRO_PER_CREDIT),
    );
    certify_everywhere(
        &fx.committee,
        &mut fx.validators,
        t(700),
        settle,
        vec![lock.clone()],
    );
    let account = fx.v().accounts().get(&id(AGENT)).unwrap().clone();
    assert_eq!(account.spent_micro(), 3 * MICRO_PER_CREDIT);
    assert_eq!(account.available_micro(), (CREDITS - 3) * MICRO_PER_CREDIT);
    assert!(account.locks().is_empty());
    // The slot's vote is forgotten and the lock is closed: an unlock is refused.
    let deadline = t(600).saturating_add(fx.committee.settle_grace());
    assert_eq!(
        fx.refusal(deadline, unlock_op(AGENT, 1, lock.digest())),
        Refusal::NoSuchLock {
            account: id(AGENT),
            lock_seq: 1
        }
    );
    assert_eq!(fx.v().votes().count(), 0);
}

#[test]
fn an_unsettled_lock_is_unlocked_after_the_grace() {
    let mut fx = fixture();
    let lock = fx.lock(1, fx.credit.digest(), 1, 10, t(600));
    let deadline = t(600).saturating_add(fx.committee.settle_grace());
    let account = fx.v().accounts().get(&id(AGENT)).unwrap().clone();
    assert!(account.unlockable(t(600), &fx.committee).is_empty());
    assert_eq!(account.unlockable(deadline, &fx.committee), vec![1]);
    certify_everywhere(
        &fx.committee,
        &mut fx.validators,
        deadline,
        unlock_op(AGENT, 1, lock.digest()),
        vec![lock],
    );
    let account = fx.v().accounts().get(&id(AGENT)).unwrap().clone();
    assert_eq!(account.available_micro(), CREDITS * MICRO_PER_CREDIT);
    assert_eq!(account.spent_micro(), 0);
}

#[test]
fn free_tier_refusals() {
    let mut fx = fixture();
    assert_eq!(
        fx.refusal(t(20), free_tier_op(AGENT, 1, 0)),
        Refusal::WrongEpoch {
            epoch: 1,
            current: Some(0)
        }
    );
    assert_eq!(
        fx.refusal(
            Timestamp::from_unix_secs(START - 1),
            free_tier_op(AGENT, 0, 0)
        ),
        Refusal::WrongEpoch {
            epoch: 0,
            current: None
        }
    );
    assert_eq!(
        fx.refusal(t(20), free_tier_op(AGENT, 0, FREE_CAP)),
        Refusal::PoolIndex {
            index: FREE_CAP,
            cap: FREE_CAP
        }
    );
    certify_everywhere(
        &fx.committee,
        &mut fx.validators,
        t(20),
        free_tier_op(AGENT, 0, 3),
        vec![],
    );
    assert_eq!(
        fx.refusal(t(20), free_tier_op(AGENT, 0, 4)),
        Refusal::AlreadyClaimed { epoch: 0 }
    );
    // The pool slot is another agent's claim now.
    assert!(matches!(
        fx.refusal(t(20), free_tier_op(AGENT + 1, 0, 3)),
        Refusal::Conflict { .. }
    ));
    // The next epoch's grant is fine.
    let next = t(EPOCH_SECS + 1);
    assert!(matches!(
        vote(
            fx.v(),
            next,
            &Request {
                op: free_tier_op(AGENT, 1, 3),
                proofs: vec![]
            }
        ),
        Some(Answer::Vote(_))
    ));

    let mut g = genesis(1);
    g.free_tier.cap_per_epoch = 0;
    let mut off = fixture_with(g);
    assert_eq!(
        off.refusal(t(20), free_tier_op(AGENT, 0, 0)),
        Refusal::FreeTierDisabled
    );
}

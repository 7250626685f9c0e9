//! Top-ups: one more lock per extension of a lease, each settled for the cost above its
//! base, so the lease is charged its cost once whatever order the closings take.

use core::time::Duration;

use crate::signup::MICRO_PER_CREDIT;

use super::account::Accounts;
use super::certificate::Certificate;
use super::provider::{Cover, LockCheckError, check_lock, check_top_up};
use super::refusal::{Refusal, TopUpProblem};
use super::test_support::*;

const M: u64 = MICRO_PER_CREDIT;

/// A fixture with a lock of 10 credits for lease 1 until `t(600)` and its certificate.
fn locked() -> (Fixture, Certificate) {
    let mut fx = fixture();
    let lock = fx.lock(1, fx.credit.digest(), 1, 10, t(600));
    (fx, lock)
}

#[test]
fn a_top_up_follows_the_leases_locks() {
    let (mut fx, lock) = locked();
    let head = Some(lock.digest());
    let now = t(20);
    let top_up = |terms, base| top_up_op(AGENT, 2, head, terms, base);
    assert_eq!(
        fx.refusal(now, top_up(lock_terms(2, PROVIDER, 5 * M, t(900)), 0)),
        Refusal::NotLocked { lease: lease(2) }
    );
    assert_eq!(
        fx.refusal(
            now,
            top_up(lock_terms(1, PROVIDER + 1, 5 * M, t(900)), 10 * M)
        ),
        Refusal::TopUp {
            problem: TopUpProblem::Provider {
                expected: id(PROVIDER)
            }
        }
    );
    assert_eq!(
        fx.refusal(now, top_up(lock_terms(1, PROVIDER, 5 * M, t(900)), 9 * M)),
        Refusal::TopUp {
            problem: TopUpProblem::Base {
                held_micro: 10 * M,
                base_micro: 9 * M
            }
        }
    );
    assert_eq!(
        fx.refusal(now, top_up(lock_terms(1, PROVIDER, 5 * M, t(600)), 10 * M)),
        Refusal::TopUp {
            problem: TopUpProblem::Expiry { latest: t(600) }
        }
    );
    // The shared lock rules hold too: funds.
    assert_eq!(
        fx.refusal(now, top_up(lock_terms(1, PROVIDER, 91 * M, t(900)), 10 * M)),
        Refusal::Insufficient {
            available_micro: 90 * M,
            amount_micro: 91 * M
        }
    );
    // A second plain lock for the lease is still refused: extending takes a top-up.
    assert_eq!(
        fx.refusal(
            now,
            lock_op(AGENT, 2, head, lock_terms(1, PROVIDER, 5 * M, t(900)))
        ),
        Refusal::LeaseLocked { lease: lease(1) }
    );
}

/// Certifies a top-up of `amount` credits for lease 1 until `expires` over `base` credits.
fn top_up(
    fx: &mut Fixture,
    seq: u64,
    prev: &Certificate,
    amount: u64,
    base: u64,
    expires: u64,
) -> Certificate {
    let op = top_up_op(
        AGENT,
        seq,
        Some(prev.digest()),
        lock_terms(1, PROVIDER, amount * M, t(expires)),
        base * M,
    );
    certify_everywhere(&fx.committee, &mut fx.validators, t(30), op, Vec::new())
}

#[test]
fn a_lease_with_top_ups_is_charged_its_cost_once_in_any_order() {
    let (mut fx, lock) = locked();
    let first = top_up(&mut fx, 2, &lock, 5, 10, 900);
    let second = top_up(&mut fx, 3, &first, 5, 15, 1200);
    let account = fx.v().accounts().get(&id(AGENT)).unwrap().clone();
    assert_eq!(account.locked_for(&lease(1), &id(PROVIDER)), 20 * M);
    assert_eq!(account.available_micro(), 80 * M);
    // The lease cost 17 credits: 10 from the lock, 5 from the first top-up, 2 from the
    // second, whichever closing comes first.
    let settle = |seq: u64, c: &Certificate| {
        settle_op(
            PROVIDER,
            AGENT,
            seq,
            c.digest(),
            receipt(PROVIDER, AGENT, 1, 17 * M),
        )
    };
    let closings: Vec<Certificate> = [(3, &second), (1, &lock), (2, &first)]
        .into_iter()
        .map(|(seq, c)| {
            certify_everywhere(
                &fx.committee,
                &mut fx.validators,
                t(1300),
                settle(seq, c),
                vec![c.clone()],
            )
        })
        .collect();
    let account = fx.v().accounts().get(&id(AGENT)).unwrap().clone();
    assert_eq!(account.spent_micro(), 17 * M);
    assert_eq!(account.available_micro(), 83 * M);
    assert!(account.locks().is_empty());
    // Another view applying everything in another order ends the same.
    let mut other = Accounts::new(fx.committee.clone());
    for c in [&fx.credit, &lock, &first, &second] {
        other.apply(c).unwrap();
    }
    for c in closings.iter().rev() {
        other.apply(c).unwrap();
    }
    assert_eq!(other.get(&id(AGENT)), Some(&account));
}

#[test]
fn an_unused_top_up_is_returned_by_its_unlock() {
    let (mut fx, lock) = locked();
    let extra = top_up(&mut fx, 2, &lock, 5, 10, 900);
    // The lease was stopped early: its lock is settled for 4 credits, the top-up lapses.
    let settle = settle_op(
        PROVIDER,
        AGENT,
        1,
        lock.digest(),
        receipt(PROVIDER, AGENT, 1, 4 * M),
    );
    certify_everywhere(&fx.committee, &mut fx.validators, t(100), settle, vec![]);
    let after = t(900).saturating_add(fx.committee.settle_grace());
    certify_everywhere(
        &fx.committee,
        &mut fx.validators,
        after,
        unlock_op(AGENT, 2, extra.digest()),
        vec![],
    );
    let account = fx.v().accounts().get(&id(AGENT)).unwrap().clone();
    assert_eq!(account.spent_micro(), 4 * M);
    assert_eq!(account.available_micro(), 96 * M);
}

#[test]
fn the_provider_checks_a_top_up_against_the_locks_it_kept() {
    let (mut fx, lock) = locked();
    let extra = top_up(&mut fx, 2, &lock, 5, 10, 900);
    let cover = Cover {
        agent: id(AGENT),
        lease: lease(1),
        provider: id(PROVIDER),
        amount_micro: 5 * M,
        until: t(880),
    };
    let committee = fx.committee.clone();
    assert_eq!(
        check_top_up(&extra, &committee, &cover, 10 * M)
            .unwrap()
            .base_micro,
        10 * M
    );
    assert_eq!(
        check_top_up(&extra, &committee, &cover, 12 * M),
        Err(LockCheckError::WrongBase {
            expected: 12 * M,
            found: 10 * M
        })
    );
    assert!(matches!(
        check_top_up(
            &extra,
            &committee,
            &Cover {
                amount_micro: 6 * M,
                ..cover
            },
            10 * M
        ),
        Err(LockCheckError::TooSmall { .. })
    ));
    assert!(matches!(
        check_top_up(
            &extra,
            &committee,
            &Cover {
                until: t(901),
                ..cover
            },
            10 * M
        ),
        Err(LockCheckError::ExpiresTooSoon { .. })
    ));
    assert_eq!(
        check_top_up(&lock, &committee, &cover, 0),
        Err(LockCheckError::NotATopUp("lock"))
    );
    // And a top-up never opens a lease.
    let request = crate::quota::QuotaRequest {
        lease: lease(1),
        agent: id(AGENT),
        amount_micro: M,
        limit_micro: 0,
        approved_micro: None,
        has_owner: false,
        expires_at: t(570),
    };
    assert_eq!(
        check_lock(&extra, &committee, &request, &id(PROVIDER), Duration::ZERO),
        Err(LockCheckError::NotALock("top_up"))
    );
}

#[test]
fn a_top_up_keeps_the_locks_it_extends_open_until_its_own_deadline() {
    let (mut fx, lock) = locked();
    let extra = top_up(&mut fx, 2, &lock, 5, 10, 900);
    let grace = fx.committee.settle_grace();
    let first_deadline = t(600).saturating_add(grace);
    let account = fx.v().accounts().get(&id(AGENT)).unwrap().clone();
    assert!(account.unlockable(first_deadline, &fx.committee).is_empty());
    let unlock_at = t(900).saturating_add(grace);
    assert_eq!(
        fx.refusal(first_deadline, unlock_op(AGENT, 1, lock.digest())),
        Refusal::NotExpired { unlock_at }
    );
    assert_eq!(account.unlockable(unlock_at, &fx.committee), vec![1, 2]);
    // The provider settles both with the final receipt after the first lock's own deadline.
    for (seq, c) in [(1, &lock), (2, &extra)] {
        let settle = settle_op(
            PROVIDER,
            AGENT,
            seq,
            c.digest(),
            receipt(PROVIDER, AGENT, 1, 12 * M),
        );
        certify_everywhere(
            &fx.committee,
            &mut fx.validators,
            first_deadline,
            settle,
            vec![],
        );
    }
    let account = fx.v().accounts().get(&id(AGENT)).unwrap().clone();
    assert_eq!(account.spent_micro(), 12 * M);
    assert!(account.locks().is_empty());
}

//! Account state: applying certificates in order, duplicates, closings, grants.

use crate::signup::MICRO_PER_CREDIT;

use super::account::{Accounts, Applied, ApplyError};
use super::test_support::*;

#[test]
fn applies_a_chain_its_closings_and_grants() {
    let committee = committee(1);
    let mut vs = validators(&committee, 1);
    let c0 = certify_everywhere(
        &committee,
        &mut vs,
        t(1),
        credit_op(AGENT, 0, None, 50, 1),
        vec![],
    );
    let lock = lock_op(
        AGENT,
        1,
        Some(c0.digest()),
        lock_terms(1, PROVIDER, 20 * MICRO_PER_CREDIT, t(600)),
    );
    let c1 = certify_everywhere(&committee, &mut vs, t(2), lock, vec![]);
    let grant = certify_everywhere(&committee, &mut vs, t(3), free_tier_op(AGENT, 0, 5), vec![]);
    let settle = settle_op(
        PROVIDER,
        AGENT,
        1,
        c1.digest(),
        receipt(PROVIDER, AGENT, 1, 25 * MICRO_PER_CREDIT),
    );
    let c2 = certify_everywhere(&committee, &mut vs, t(700), settle, vec![]);

    let mut accounts = Accounts::new(committee.clone());
    // Out of order: the lock and its settlement wait for the credit.
    assert_eq!(
        accounts.apply(&c1),
        Err(ApplyError::Behind {
            account: id(AGENT),
            next_seq: 0,
            needed: 1
        })
    );
    assert!(matches!(
        accounts.apply(&c2),
        Err(ApplyError::Behind { needed: 1, .. })
    ));
    assert!(
        accounts.get(&id(AGENT)).is_none(),
        "nothing applied, no account"
    );
    assert_eq!(
        accounts.apply(&c0),
        Ok(Applied::Chain {
            account: id(AGENT),
            seq: 0
        })
    );
    assert_eq!(accounts.apply(&c0), Ok(Applied::Duplicate));
    accounts.apply(&c1).unwrap();
    let a = accounts.get(&id(AGENT)).unwrap();
    assert_eq!(a.locked_micro(), 20 * MICRO_PER_CREDIT);
    assert_eq!(a.available_micro(), 30 * MICRO_PER_CREDIT);
    assert_eq!(
        a.lock_for(&lease(1), &id(PROVIDER)).map(|(seq, _)| seq),
        Some(1)
    );
    assert_eq!(
        accounts.apply(&grant),
        Ok(Applied::Granted {
            account: id(AGENT),
            epoch: 0,
            amount_micro: FREE_MICRO
        })
    );
    // The receipt says 25 credits; the lock held 20: 20 are charged, nothing returns.
    assert_eq!(
        accounts.apply(&c2),
        Ok(Applied::Closed {
            account: id(AGENT),
            lock_seq: 1,
            charged_micro: 20 * MICRO_PER_CREDIT,
            returned_micro: 0
        })
    );
    assert_eq!(accounts.apply(&c2), Ok(Applied::Duplicate));
    let a = accounts.get(&id(AGENT)).unwrap();
    assert_eq!(a.spent_micro(), 20 * MICRO_PER_CREDIT);
    assert_eq!(a.granted_micro(), FREE_MICRO);
    assert_eq!(a.available_micro(), 30 * MICRO_PER_CREDIT + FREE_MICRO);
    assert_eq!(a.next_seq(), 2);
    assert_eq!(a.head(), Some(c1.digest()));

    // A certificate of another committee is not applied.
    let mut other = Accounts::new(super::test_support::committee(2));
    assert_eq!(other.apply(&c0), Err(ApplyError::WrongCommittee));
}

#[test]
fn a_second_grant_in_one_epoch_credits_nothing() {
    let committee = committee(1);
    let mut vs = validators(&committee, 1);
    let a = certify_everywhere(&committee, &mut vs, t(1), free_tier_op(AGENT, 0, 1), vec![]);
    // Validators refuse a second claim once they applied the first; a client that raced two
    // claims before either was applied may hold two certificates: they credit once.
    let mut fresh = validators(&committee, 1);
    let b = certify_everywhere(
        &committee,
        &mut fresh,
        t(1),
        free_tier_op(AGENT, 0, 2),
        vec![],
    );
    let mut accounts = Accounts::new(committee);
    accounts.apply(&b).unwrap();
    assert!(matches!(
        accounts.apply(&a),
        Ok(Applied::Granted {
            amount_micro: 0,
            ..
        })
    ));
    assert_eq!(
        accounts.get(&id(AGENT)).unwrap().available_micro(),
        FREE_MICRO
    );
}

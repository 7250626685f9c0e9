//! Locks and top-ups signed by a delegate (a node's `/mcp` endpoint) under the agent's
//! delegation: validators check that it allows the operation now and that its spend cap
//! holds over everything locked and charged under it.

use crate::lease::{Delegation, OpKind};
use crate::signed::{Digest, Signed};
use crate::signup::MICRO_PER_CREDIT;

use super::certificate::Certificate;
use super::op::{Action, ChainOp, Op, TopUpTerms};
use super::refusal::{DelegationProblem, Refusal};
use super::test_support::*;

const M: u64 = MICRO_PER_CREDIT;
const DELEGATE: u8 = 70;

/// The agent's delegation to [`DELEGATE`] for `ops`, capped at `cap` credits, valid from
/// `t(0)` to `t(until)`.
fn delegation(ops: &[OpKind], cap: u64, until: u64) -> Signed<Delegation> {
    let body = Delegation {
        agent: id(AGENT),
        delegate: id(DELEGATE),
        ops: ops.to_vec(),
        spend_cap_credits: cap,
        issued_at: t(0),
        expires_at: t(until),
    };
    Signed::sign(body, &key(AGENT)).unwrap()
}

/// `action` at `seq` after `prev`, signed by [`DELEGATE`] under `delegation`.
fn delegated(seq: u64, prev: Digest, action: Action, delegation: &Signed<Delegation>) -> Op {
    let body = ChainOp {
        account: id(AGENT),
        seq,
        prev: Some(prev),
        action,
        delegation: Some(delegation.clone()),
    };
    Op::Chain(Signed::sign(body, &key(DELEGATE)).unwrap())
}

fn lock(n: u64, credits: u64) -> Action {
    Action::Lock(lock_terms(n, PROVIDER, credits * M, t(600)))
}

fn certified(fx: &mut Fixture, op: Op) -> Certificate {
    certify_everywhere(&fx.committee, &mut fx.validators, t(20), op, vec![])
}

#[test]
fn a_delegate_locks_within_its_cap_and_no_further() {
    let mut fx = fixture();
    let d = delegation(&[OpKind::Lease, OpKind::Extend], 30, 3600);
    let head = fx.credit.digest();
    let first = certified(&mut fx, delegated(1, head, lock(1, 20), &d));
    let account = fx.v().accounts().get(&id(AGENT)).unwrap().clone();
    let (_, held) = account.lock_for(&lease(1), &id(PROVIDER)).unwrap();
    assert_eq!(held.delegation, Some(d.digest()));
    assert_eq!(account.delegated_micro(&d.digest()), 20 * M);
    // 20 locked under it, 11 more would pass its cap of 30 (though the balance has 80).
    assert_eq!(
        fx.refusal(t(21), delegated(2, first.digest(), lock(2, 11), &d)),
        Refusal::Delegation {
            problem: DelegationProblem::SpendCap {
                cap_micro: 30 * M,
                used_micro: 20 * M,
                amount_micro: 11 * M,
            }
        }
    );
    // The lease cost 4: settled, 16 return to the cap; 11 more now fit.
    let settle = settle_op(
        PROVIDER,
        AGENT,
        1,
        first.digest(),
        receipt(PROVIDER, AGENT, 1, 4 * M),
    );
    certify_everywhere(&fx.committee, &mut fx.validators, t(30), settle, vec![]);
    let account = fx.v().accounts().get(&id(AGENT)).unwrap().clone();
    assert_eq!(account.delegated_micro(&d.digest()), 4 * M);
    let second = certified(&mut fx, delegated(2, first.digest(), lock(2, 11), &d));
    // The agent's own locks do not count against its delegate's cap.
    let own = lock_op(
        AGENT,
        3,
        Some(second.digest()),
        lock_terms(3, PROVIDER, 40 * M, t(600)),
    );
    certified(&mut fx, own);
    let account = fx.v().accounts().get(&id(AGENT)).unwrap().clone();
    assert_eq!(account.delegated_micro(&d.digest()), 15 * M);
}

#[test]
fn a_delegate_acts_only_while_its_delegation_allows_the_operation() {
    let mut fx = fixture();
    let head = fx.credit.digest();
    let not_allowed = Refusal::Delegation {
        problem: DelegationProblem::NotAllowed,
    };
    // Exec only: no lease.
    let exec_only = delegation(&[OpKind::Exec], 100, 3600);
    assert_eq!(
        fx.refusal(t(20), delegated(1, head, lock(1, 1), &exec_only)),
        not_allowed
    );
    // Expired.
    let lapsed = delegation(&[OpKind::Lease], 100, 10);
    assert_eq!(
        fx.refusal(t(20), delegated(1, head, lock(1, 1), &lapsed)),
        not_allowed
    );
    // Leases but not extensions: its lock certifies, its top-up does not.
    let leases = delegation(&[OpKind::Lease], 100, 3600);
    let first = certified(&mut fx, delegated(1, head, lock(1, 10), &leases));
    let top_up = Action::TopUp(TopUpTerms {
        lock: lock_terms(1, PROVIDER, 5 * M, t(900)),
        base_micro: 10 * M,
    });
    assert_eq!(
        fx.refusal(t(21), delegated(2, first.digest(), top_up.clone(), &leases)),
        not_allowed
    );
    let both = delegation(&[OpKind::Lease, OpKind::Extend], 100, 3600);
    certified(&mut fx, delegated(2, first.digest(), top_up, &both));
}

#[test]
fn a_delegated_op_must_be_the_agents_and_signed_by_its_delegate() {
    let d = delegation(&[OpKind::Lease], 100, 3600);
    let body = |account: u8, action: Action| ChainOp {
        account: id(account),
        seq: 1,
        prev: Some(Digest::of(b"head")),
        action,
        delegation: Some(d.clone()),
    };
    // Signed by the agent, not the delegate the delegation names: refused at signing.
    assert!(Signed::sign(body(AGENT, lock(1, 1)), &key(AGENT)).is_err());
    // For another account than the delegation's agent.
    assert!(Signed::sign(body(AGENT + 1, lock(1, 1)), &key(DELEGATE)).is_err());
    // A credit: the agent's alone.
    let credit = Action::Credit(credential(AGENT, 5, 9));
    assert!(Signed::sign(body(AGENT, credit), &key(DELEGATE)).is_err());
    // A delegate's key without any delegation is not the account's.
    let bare = ChainOp {
        delegation: None,
        ..body(AGENT, lock(1, 1))
    };
    assert!(Signed::sign(bare, &key(DELEGATE)).is_err());
    // The genuine op round-trips; its wire bytes re-signed by another key do not decode.
    let good = Signed::sign(body(AGENT, lock(1, 1)), &key(DELEGATE)).unwrap();
    let back = Signed::<ChainOp>::decode(good.as_bytes(), &crate::Ed25519).unwrap();
    assert_eq!(back.signer(), id(DELEGATE));
    let mut tampered = good.as_bytes().to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(Signed::<ChainOp>::decode(&tampered, &crate::Ed25519).is_err());
}

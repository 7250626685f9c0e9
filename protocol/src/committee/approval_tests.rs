//! Locks above the balance under the agent's owner's approval ([`ApprovedLock`]):
//! validators check the approval against the owners the account's credited attestations
//! name; the approved lock holds and charges outside the balance; its slot still holds one
//! op, and the agent's next locks follow it as if it were plain.

use core::time::Duration;
use std::collections::BTreeMap;

use crate::attestation::{Attestation, Claims, Credential};
use crate::lease::Approval;
use crate::quota::{QuotaAnswer, QuotaRequest};
use crate::signed::Signed;
use crate::signup::MICRO_PER_CREDIT;

use super::certificate::Certificate;
use super::genesis::Committee;
use super::message::Request;
use super::op::{Action, ApprovedLock, Op};
use super::provider::quota_answer;
use super::refusal::{ApprovalProblem, Refusal};
use super::test_support::*;
use super::validator::{Outcome, Validator};

const M: u64 = MICRO_PER_CREDIT;
const OWNER: u8 = 80;
const STRANGER: u8 = 81;

/// A credit of `credits` for [`AGENT`] whose attestation names [`OWNER`].
fn owned_credit(credits: u64) -> Op {
    let body = Attestation {
        issuer: id(ISSUER),
        subject: id(AGENT),
        claims: Claims {
            organisation: None,
            tier: "standard".into(),
            spending_limit_credits: credits,
            owner: Some(id(OWNER)),
            may_delegate: false,
            model: None,
            labels: BTreeMap::new(),
        },
        issued_at: t(0),
        not_before: t(0),
        expires_at: t(10 * 86_400),
        nonce: [7; 16],
    };
    let credential = Credential::single(Signed::sign(body, &key(ISSUER)).unwrap());
    chain_op(AGENT, 0, None, Action::Credit(credential))
}

/// `signer`'s approval of lease `n` for `agent`, up to `credits`.
fn approval(signer: u8, agent: u8, n: u64, credits: u64) -> Signed<Approval> {
    let body = Approval {
        owner: id(signer),
        request: lease(n),
        agent: id(agent),
        max_cost_micro: credits * M,
        approved_at: t(15),
    };
    Signed::sign(body, &key(signer)).unwrap()
}

/// `op` (a plain chain op) under `approval`.
fn approved(op: &Op, approval: Signed<Approval>) -> Op {
    let Op::Chain(op) = op else {
        panic!("not a chain op")
    };
    Op::Approved(ApprovedLock {
        op: op.clone(),
        approval,
    })
}

/// The agent's plain lock of `credits` for lease 1 at [`PROVIDER`], after `credit`.
fn plain_lock(credit: &Certificate, credits: u64) -> Op {
    lock_op(
        AGENT,
        1,
        Some(credit.digest()),
        lock_terms(1, PROVIDER, credits * M, t(600)),
    )
}

/// Validators that applied an owned credit of 10 credits.
fn owned() -> (
    Committee,
    Vec<Validator<ed25519_dalek::SigningKey>>,
    Certificate,
) {
    let committee = committee(1);
    let mut vs = validators(&committee, 1);
    let credit = certify_everywhere(&committee, &mut vs, t(10), owned_credit(10), vec![]);
    (committee, vs, credit)
}

/// Certifies `plain` (a lock of 50 credits for lease 1) at every validator under the
/// owner's approval of 50.
fn certify_approved(
    committee: &Committee,
    vs: &mut [Validator<ed25519_dalek::SigningKey>],
    plain: &Op,
) -> Certificate {
    certify_everywhere(
        committee,
        vs,
        t(20),
        approved(plain, approval(OWNER, AGENT, 1, 50)),
        vec![],
    )
}

fn refusal(v: &mut Validator<ed25519_dalek::SigningKey>, op: Op) -> Refusal {
    match v.handle_request(t(20), &Request { op, proofs: vec![] }) {
        Outcome::Refused(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn an_owner_approves_a_lock_above_the_balance_and_pays_for_it() {
    let (committee, mut vs, credit) = owned();
    let plain = plain_lock(&credit, 50);
    // 50 credits above a balance of 10: refused plain.
    assert_eq!(
        refusal(&mut vs[0], plain.clone()),
        Refusal::Insufficient {
            available_micro: 10 * M,
            amount_micro: 50 * M,
        }
    );
    let cert = certify_approved(&committee, &mut vs, &plain);
    // Named in the chain as the plain lock it wraps.
    assert_eq!(cert.op().chain_digest(), plain.digest());
    assert_ne!(cert.digest(), plain.digest());
    let account = vs[0].accounts().get(&id(AGENT)).unwrap().clone();
    assert_eq!(account.head(), Some(plain.digest()));
    let (seq, lock) = account.lock_for(&lease(1), &id(PROVIDER)).unwrap();
    assert_eq!(seq, 1);
    assert!(lock.approved);
    assert_eq!(lock.op, plain.digest());
    assert_eq!(account.available_micro(), 10 * M);
    assert_eq!(account.approved_locked_micro(), 50 * M);

    // The agent's next lock (signed before anyone knew of the approval, naming the plain
    // lock) follows it and spends the agent's own balance.
    let next = lock_op(
        AGENT,
        2,
        Some(plain.digest()),
        lock_terms(1, PROVIDER + 1, 8 * M, t(600)),
    );
    certify_everywhere(&committee, &mut vs, t(21), next, vec![]);
    let account = vs[0].accounts().get(&id(AGENT)).unwrap().clone();
    assert_eq!(account.available_micro(), 2 * M);

    // Settled at 30: charged to the owner's approval, the agent's balance untouched.
    let settle = settle_op(
        PROVIDER,
        AGENT,
        1,
        cert.op().chain_digest(),
        receipt(PROVIDER, AGENT, 1, 30 * M),
    );
    certify_everywhere(&committee, &mut vs, t(30), settle, vec![]);
    let account = vs[0].accounts().get(&id(AGENT)).unwrap().clone();
    assert_eq!(account.approved_spent_micro(), 30 * M);
    assert_eq!(account.spent_micro(), 0);
    assert_eq!(account.approved_locked_micro(), 0);
    assert_eq!(account.available_micro(), 2 * M);
}

#[test]
fn an_approval_that_does_not_cover_the_lock_is_refused() {
    let (_, mut vs, credit) = owned();
    let plain = plain_lock(&credit, 50);
    let problem = |p| Refusal::Approval { problem: p };
    let v = &mut vs[0];
    // Signed by someone the credited attestation does not name.
    assert_eq!(
        refusal(v, approved(&plain, approval(STRANGER, AGENT, 1, 50))),
        problem(ApprovalProblem::NotOwner {
            signer: id(STRANGER)
        })
    );
    // For another request.
    assert_eq!(
        refusal(v, approved(&plain, approval(OWNER, AGENT, 2, 50))),
        problem(ApprovalProblem::Lease)
    );
    // For another agent.
    assert_eq!(
        refusal(v, approved(&plain, approval(OWNER, AGENT + 1, 1, 50))),
        problem(ApprovalProblem::Agent)
    );
    // For less than the lock holds.
    assert_eq!(
        refusal(v, approved(&plain, approval(OWNER, AGENT, 1, 49))),
        problem(ApprovalProblem::Cover {
            approved_micro: 49 * M,
            amount_micro: 50 * M,
        })
    );
    // A credit is the agent's alone to sign; no owner approves one.
    let credit_op = credit_op(AGENT, 1, Some(credit.digest()), 5, 9);
    assert_eq!(
        refusal(v, approved(&credit_op, approval(OWNER, AGENT, 1, 50))),
        problem(ApprovalProblem::NotALock)
    );
}

#[test]
fn an_agent_whose_credits_name_no_owner_has_no_approver() {
    let mut fx = fixture();
    let head = fx.credit.digest();
    let plain = lock_op(
        AGENT,
        1,
        Some(head),
        lock_terms(1, PROVIDER, 500 * M, t(600)),
    );
    assert_eq!(
        fx.refusal(t(20), approved(&plain, approval(OWNER, AGENT, 1, 500))),
        Refusal::Approval {
            problem: ApprovalProblem::NotOwner { signer: id(OWNER) }
        }
    );
}

#[test]
fn a_slot_holds_the_plain_lock_or_the_approved_one_never_both() {
    let (_, mut vs, credit) = owned();
    let plain = plain_lock(&credit, 5);
    let v = &mut vs[0];
    match v.handle_request(
        t(20),
        &Request {
            op: plain.clone(),
            proofs: vec![],
        },
    ) {
        Outcome::Persist(p) => {
            v.release(p);
        }
        other => panic!("expected a vote, got {other:?}"),
    }
    assert_eq!(
        refusal(v, approved(&plain, approval(OWNER, AGENT, 1, 5))),
        Refusal::Conflict {
            slot: plain.slot(),
            voted: plain.digest(),
        }
    );
}

#[test]
fn a_provider_starts_against_an_approved_lock() {
    let (committee, mut vs, credit) = owned();
    let plain = plain_lock(&credit, 50);
    let cert = certify_approved(&committee, &mut vs, &plain);
    let request = QuotaRequest {
        lease: lease(1),
        agent: id(AGENT),
        amount_micro: 50 * M,
        limit_micro: 10 * M,
        approved_micro: Some(50 * M),
        has_owner: true,
        expires_at: t(500),
    };
    assert_eq!(
        quota_answer(
            Some(&cert),
            &committee,
            &request,
            &id(PROVIDER),
            Duration::from_secs(30)
        ),
        QuotaAnswer::Granted
    );
    // The certificate round-trips with the approval inside.
    let back = Certificate::decode(&cert.encode().unwrap(), &committee, &crate::Ed25519).unwrap();
    assert_eq!(back.op().approval(), Some(&approval(OWNER, AGENT, 1, 50)));
}

#[test]
fn a_top_up_above_the_balance_is_approved_by_its_own_digest_not_the_leases() {
    let (committee, mut vs, credit) = owned();
    // A lease within the balance (8 of 10 credits), then a top-up of 6 more: above it.
    let plain = lock_op(
        AGENT,
        1,
        Some(credit.digest()),
        lock_terms(1, PROVIDER, 8 * M, t(600)),
    );
    let lock = certify_everywhere(&committee, &mut vs, t(20), plain, vec![]);
    let top_up = top_up_op(
        AGENT,
        2,
        Some(lock.digest()),
        lock_terms(1, PROVIDER, 6 * M, t(900)),
        8 * M,
    );
    assert!(matches!(
        refusal(&mut vs[0], top_up.clone()),
        Refusal::Insufficient { .. }
    ));
    // The owner's approval of the lease itself does not pay for its extensions.
    assert_eq!(
        refusal(&mut vs[0], approved(&top_up, approval(OWNER, AGENT, 1, 50))),
        Refusal::Approval {
            problem: ApprovalProblem::Lease
        }
    );
    // An approval naming this very top-up does.
    let mut named = approval(OWNER, AGENT, 1, 6).body().clone();
    named.request = top_up.digest();
    let named = Signed::sign(named, &key(OWNER)).unwrap();
    let cert = certify_everywhere(&committee, &mut vs, t(21), approved(&top_up, named), vec![]);
    assert_eq!(cert.op().chain_digest(), top_up.digest());
    let account = vs[0].accounts().get(&id(AGENT)).unwrap().clone();
    assert_eq!(account.available_micro(), 2 * M);
    assert_eq!(account.approved_locked_micro(), 6 * M);
}

//! Failover: one lease may hold a lock at each candidate a gateway tried, and a provider's
//! signed refusal releases its lock at once.

use crate::lease::{LeaseRefusal, Refusal as LeaseRefusalReason, RefusalCode};
use crate::signed::Signed;
use crate::signup::MICRO_PER_CREDIT;

use super::certificate::Certificate;
use super::op::{Op, Release};
use super::refusal::{Refusal, ReleaseProblem, TopUpProblem};
use super::test_support::*;

const M: u64 = MICRO_PER_CREDIT;
const OTHER: u8 = PROVIDER + 1;

/// `provider`'s signed refusal of lease `n` for `agent`.
fn refusal(provider: u8, agent: u8, n: u64) -> Signed<LeaseRefusal> {
    refusal_with(provider, agent, n, RefusalCode::Capacity)
}

fn refusal_with(provider: u8, agent: u8, n: u64, code: RefusalCode) -> Signed<LeaseRefusal> {
    let body = LeaseRefusal {
        request: lease(n),
        agent: id(agent),
        provider: id(provider),
        refusal: LeaseRefusalReason {
            code,
            detail: "full".into(),
        },
        at: t(21),
    };
    Signed::sign(body, &key(provider)).unwrap()
}

fn release_op(lock_seq: u64, lock: &Certificate, refusal: Signed<LeaseRefusal>) -> Op {
    Op::Release(Release {
        account: id(AGENT),
        lock_seq,
        lock: lock.digest(),
        refusal,
    })
}

/// A fixture with a lock of 10 credits for lease 1 at [`PROVIDER`] (seq 1) and one of 10
/// credits for the same lease at [`OTHER`] (seq 2), as a gateway failing over makes them.
fn failed_over() -> (Fixture, Certificate, Certificate) {
    let mut fx = fixture();
    let first = fx.lock(1, fx.credit.digest(), 1, 10, t(600));
    let op = lock_op(
        AGENT,
        2,
        Some(first.digest()),
        lock_terms(1, OTHER, 10 * M, t(600)),
    );
    let second = certify_everywhere(&fx.committee, &mut fx.validators, t(22), op, vec![]);
    (fx, first, second)
}

#[test]
fn a_lease_may_be_locked_once_at_each_candidate() {
    let (mut fx, first, second) = failed_over();
    let account = fx.v().accounts().get(&id(AGENT)).unwrap().clone();
    assert_eq!(account.locked_for(&lease(1), &id(PROVIDER)), 10 * M);
    assert_eq!(account.locked_for(&lease(1), &id(OTHER)), 10 * M);
    assert_eq!(account.available_micro(), 80 * M);
    // Twice at one provider is still refused.
    assert_eq!(
        fx.refusal(
            t(23),
            lock_op(
                AGENT,
                3,
                Some(second.digest()),
                lock_terms(1, OTHER, M, t(600))
            )
        ),
        Refusal::LeaseLocked { lease: lease(1) }
    );
    // A top-up follows the locks at its own provider only.
    let top_up = top_up_op(
        AGENT,
        3,
        Some(second.digest()),
        lock_terms(1, OTHER, 5 * M, t(900)),
        10 * M,
    );
    certify_everywhere(&fx.committee, &mut fx.validators, t(24), top_up, vec![]);
    let account = fx.v().accounts().get(&id(AGENT)).unwrap().clone();
    assert_eq!(account.locked_for(&lease(1), &id(OTHER)), 15 * M);
    // The first provider's lock keeps its own deadline: the top-up at OTHER does not
    // extend it.
    let (_, lock) = account.lock_for(&lease(1), &id(PROVIDER)).unwrap();
    assert_eq!(
        account.settle_deadline(lock, &fx.committee),
        t(600).saturating_add(fx.committee.settle_grace())
    );
    let _ = first;
}

#[test]
fn a_providers_refusal_releases_its_lock_at_once() {
    let (mut fx, first, _second) = failed_over();
    certify_everywhere(
        &fx.committee,
        &mut fx.validators,
        t(30),
        release_op(1, &first, refusal(PROVIDER, AGENT, 1)),
        vec![],
    );
    let account = fx.v().accounts().get(&id(AGENT)).unwrap().clone();
    assert!(account.lock_for(&lease(1), &id(PROVIDER)).is_none());
    assert_eq!(account.spent_micro(), 0);
    assert_eq!(account.available_micro(), 90 * M);
    // The provider can no longer settle it: the closing slot is taken.
    let settle = settle_op(
        PROVIDER,
        AGENT,
        1,
        first.digest(),
        receipt(PROVIDER, AGENT, 1, 3 * M),
    );
    assert!(matches!(
        fx.refusal(t(40), settle),
        Refusal::Conflict { .. } | Refusal::NoSuchLock { .. }
    ));
}

#[test]
fn only_the_locks_own_providers_refusal_of_its_lease_releases_it() {
    let (mut fx, first, second) = failed_over();
    let cases = [
        (refusal(OTHER, AGENT, 1), ReleaseProblem::Provider),
        (refusal(PROVIDER, AGENT, 2), ReleaseProblem::Lease),
        (refusal(PROVIDER, AGENT + 1, 1), ReleaseProblem::Agent),
        // A replay refusal: the provider saw the request before, perhaps granting it.
        (
            refusal_with(PROVIDER, AGENT, 1, RefusalCode::Replay),
            ReleaseProblem::Replay,
        ),
    ];
    for (evidence, problem) in cases {
        assert_eq!(
            fx.refusal(t(30), release_op(1, &first, evidence)),
            Refusal::Release { problem }
        );
    }
    // A lease topped up at a provider was granted there: no refusal releases it.
    let top_up = top_up_op(
        AGENT,
        3,
        Some(second.digest()),
        lock_terms(1, OTHER, 5 * M, t(900)),
        10 * M,
    );
    let extra = certify_everywhere(&fx.committee, &mut fx.validators, t(24), top_up, vec![]);
    for (seq, lock) in [(2, &second), (3, &extra)] {
        assert_eq!(
            fx.refusal(t(30), release_op(seq, lock, refusal(OTHER, AGENT, 1))),
            Refusal::Release {
                problem: ReleaseProblem::ToppedUp
            }
        );
    }
    // A top-up at a provider holding no lock for the lease names the one that does.
    assert_eq!(
        fx.refusal(
            t(31),
            top_up_op(
                AGENT,
                4,
                Some(extra.digest()),
                lock_terms(1, OTHER + 1, M, t(900)),
                0
            )
        ),
        Refusal::TopUp {
            problem: TopUpProblem::Provider {
                expected: id(PROVIDER)
            }
        }
    );
}

#[test]
fn a_release_round_trips_the_wire_and_a_tampered_refusal_does_not_decode() {
    let (_, first, _) = failed_over();
    let op = release_op(1, &first, refusal(PROVIDER, AGENT, 1));
    let bytes = crate::codec::encode(&op, super::op::MAX_OP_BYTES).unwrap();
    let back: Op = crate::codec::decode(&bytes, super::op::MAX_OP_BYTES).unwrap();
    assert_eq!(back, op);
    assert_eq!(back.kind(), "release");
    // Flip a byte inside the refusal's signed payload (its detail text): the signature no
    // longer verifies.
    let at = bytes.windows(4).position(|w| w == b"full").unwrap();
    let mut tampered = bytes.clone();
    tampered[at] ^= 1;
    assert!(crate::codec::decode::<Op>(&tampered, super::op::MAX_OP_BYTES).is_err());
}

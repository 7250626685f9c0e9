use super::*;
use crate::challenge::Challenge;
use crate::lease::{Candidate, Delegation};
use crate::quota::QuotaBook;
use crate::signup::{ProofOfWork, SignupRecord};
use crate::workload::WorkloadSpec;
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn id(seed: u8) -> AgoraId {
    key(seed).verifying_key().into()
}

const PROVIDER: u8 = 2;
const OWNER: u8 = 9;

fn t(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(1_800_000_000 + secs)
}

fn offer() -> Signed<Offer> {
    Signed::sign(Offer::example(id(PROVIDER), 1, t(0)), &key(PROVIDER)).unwrap()
}

fn machine() -> Admission {
    let mut a = Admission::new(id(PROVIDER), AdmissionConfig::default());
    a.offer_published(offer());
    a
}

fn standing(agent: u8) -> Standing {
    Standing {
        agent: id(agent),
        tier: TierLimits::contained(),
        owner: None,
    }
}

fn signup(agent: u8) -> Signed<SignupRecord> {
    let record = SignupRecord {
        agent: id(agent),
        challenge: Challenge {
            verifier: id(3),
            nonce: [5; 32],
            issued_at: t(0),
        },
        credential: None,
        pow: ProofOfWork::NONE,
        name: None,
    };
    Signed::sign(record, &key(agent)).unwrap()
}

fn request(agent: u8, nonce: u8, edit: impl FnOnce(&mut LeaseRequest)) -> LeaseProposal {
    let mut r = LeaseRequest {
        agent: id(agent),
        candidates: vec![Candidate {
            provider: id(PROVIDER),
            offer: offer().digest(),
        }],
        isolation: Isolation::Sandbox,
        spec: WorkloadSpec::example(Digest::of(b"busybox"), &["echo", "hi"]),
        max_price_per_sec: 100,
        nonce: [nonce; NONCE_LEN],
        issued_at: t(10),
        signup: signup(agent),
        delegation: None,
    };
    edit(&mut r);
    LeaseProposal {
        request: Signed::sign(r, &key(agent)).unwrap(),
        approval: None,
        lock: None,
    }
}

fn refused(d: Decision) -> RefusalCode {
    match d {
        Decision::Refused(r) => r.code,
        Decision::NeedQuota(q) => panic!("expected a refusal, got a quota request {q:?}"),
    }
}

/// Drives one proposal through admission and a quota book, as the node does.
fn admit(
    a: &mut Admission,
    quota: &mut QuotaBook,
    p: &LeaseProposal,
    s: &Standing,
    now: Timestamp,
) -> Result<ActiveLease, Refusal> {
    match a.request(p, s, now) {
        Decision::Refused(r) => Err(r),
        Decision::NeedQuota(q) => {
            let answer = quota.lock(&q);
            a.quota_answer(&q.lease, answer, now)
        }
    }
}

#[test]
fn a_fitting_request_is_admitted_at_the_offers_price() {
    let mut a = machine();
    let mut quota = QuotaBook::new();
    let p = request(1, 1, |_| {});
    let lease = admit(&mut a, &mut quota, &p, &standing(1), t(11)).unwrap();
    assert_eq!(lease.lease, p.request.digest());
    assert_eq!(lease.price_per_sec, 52);
    assert_eq!(lease.reserved_micro, 52 * 3600);
    assert_eq!(lease.expires_at, t(11 + 3600));
    assert_eq!(a.committed().vcpu_milli, 500);
    assert_eq!(quota.account(&id(1)).unwrap().locked_micro(), 52 * 3600);
    // The same request again is a replay, even after the lease ended.
    assert_eq!(
        refused(a.request(&p, &standing(1), t(12))),
        RefusalCode::Replay
    );
    a.end(&lease.lease, t(13));
    assert_eq!(
        refused(a.request(&p, &standing(1), t(14))),
        RefusalCode::Replay
    );
    assert_eq!(a.committed().vcpu_milli, 0);
}

#[test]
fn each_refusal_names_its_reason() {
    let s = standing(1);
    let now = t(11);
    let cases: Vec<(RefusalCode, LeaseProposal)> = vec![
        (
            RefusalCode::Stale,
            request(1, 1, |r| r.issued_at = t(10 + 301 + 1)),
        ),
        (
            RefusalCode::OfferMismatch,
            request(1, 1, |r| r.candidates[0].provider = id(7)),
        ),
        (
            RefusalCode::OfferMismatch,
            request(1, 1, |r| r.candidates[0].offer = Digest::of(b"old")),
        ),
        (
            RefusalCode::Unsupported,
            request(1, 1, |r| r.isolation = Isolation::Microvm),
        ),
        (
            RefusalCode::Unsupported,
            request(1, 1, |r| {
                r.spec.image = ImageSource::Named {
                    name: "busybox".into(),
                    digest: Digest::of(b"substitute"),
                }
            }),
        ),
        (
            RefusalCode::TierLimit,
            request(1, 1, |r| r.spec.resources.memory_mib = 2048),
        ),
        (
            RefusalCode::Lifetime,
            request(1, 1, |r| r.spec.lifetime_secs = 73 * 3600),
        ),
        (
            RefusalCode::Price,
            request(1, 1, |r| r.max_price_per_sec = 51),
        ),
    ];
    for (code, p) in cases {
        let mut a = machine();
        let got = refused(a.request(&p, &s, now));
        assert_eq!(got, code, "{:?}", p.request.body());
        assert_eq!(a.committed().vcpu_milli, 0);
    }
    // Signed more than `max_age` ago.
    let mut a = machine();
    let late = t(10 + 301);
    assert_eq!(
        refused(a.request(&request(1, 1, |_| {}), &s, late)),
        RefusalCode::Stale
    );
}

#[test]
fn capacity_and_concurrency_are_never_exceeded() {
    let mut a = machine();
    let mut quota = QuotaBook::new();
    // Four 500-milli leases fill 2000 milli; a fifth from another agent finds no room.
    for (agent, nonce) in [(1, 1), (1, 2), (1, 3), (4, 1)] {
        admit(
            &mut a,
            &mut quota,
            &request(agent, nonce, |_| {}),
            &standing(agent),
            t(11),
        )
        .unwrap();
    }
    // The contained tier allows three at once per agent.
    assert_eq!(
        refused(a.request(&request(1, 4, |_| {}), &standing(1), t(11))),
        RefusalCode::TooManyLeases
    );
    assert_eq!(
        refused(a.request(&request(5, 1, |_| {}), &standing(5), t(11))),
        RefusalCode::Capacity
    );
}

#[test]
fn capacity_is_held_while_quota_is_asked() {
    let mut a = machine();
    let mut big = standing(1);
    big.tier.max_vcpu_milli = 2000;
    let p1 = request(1, 1, |r| {
        r.spec.resources.vcpu_milli = 2000;
        r.max_price_per_sec = 1000;
    });
    let Decision::NeedQuota(q) = a.request(&p1, &big, t(11)) else {
        panic!("expected a quota request");
    };
    let mut big4 = standing(4);
    big4.tier.max_vcpu_milli = 2000;
    let p2 = request(4, 1, |r| {
        r.spec.resources.vcpu_milli = 2000;
        r.max_price_per_sec = 1000;
    });
    assert_eq!(refused(a.request(&p2, &big4, t(11))), RefusalCode::Capacity);
    // Quota denied: the capacity is free again and the request id is spent.
    let denied = QuotaAnswer::Denied(Refusal::new(RefusalCode::Quota, "no"));
    assert_eq!(
        a.quota_answer(&q.lease, denied, t(12)).unwrap_err().code,
        RefusalCode::Quota
    );
    assert!(matches!(
        a.request(&p2, &big4, t(12)),
        Decision::NeedQuota(_)
    ));
    assert_eq!(refused(a.request(&p1, &big, t(12))), RefusalCode::Replay);
}

fn approval(p: &LeaseProposal, owner: u8, max: u64, at: Timestamp) -> Signed<Approval> {
    Signed::sign(
        Approval {
            owner: id(owner),
            request: p.request.digest(),
            agent: p.request.body().agent,
            max_cost_micro: max,
            approved_at: at,
        },
        &key(owner),
    )
    .unwrap()
}

#[test]
fn above_the_limit_the_owners_approval_lets_the_request_through() {
    let mut a = machine();
    let mut quota = QuotaBook::new();
    let mut s = standing(1);
    s.owner = Some(id(OWNER));
    s.tier.spending_limit_credits = 0;
    let mut p = request(1, 1, |_| {});
    let err = admit(&mut a, &mut quota, &p, &s, t(11)).unwrap_err();
    assert_eq!(err.code, RefusalCode::ApprovalRequired);
    // Another key's approval is refused.
    p.approval = Some(approval(&p, 8, u64::MAX, t(500)));
    assert_eq!(
        refused(a.request(&p, &s, t(500))),
        RefusalCode::ApprovalInvalid
    );
    // The owner's approval, long after the request was signed, is accepted.
    p.approval = Some(approval(&p, OWNER, 52 * 3600, t(500)));
    let lease = admit(&mut a, &mut quota, &p, &s, t(501)).unwrap();
    assert_eq!(lease.starts_at, t(501));
    // An approval for another request does not transfer.
    let mut other = request(1, 2, |_| {});
    other.approval = Some(approval(&p, OWNER, u64::MAX, t(500)));
    assert_eq!(
        refused(a.request(&other, &s, t(501))),
        RefusalCode::ApprovalInvalid
    );
}

#[test]
fn delegates_are_held_to_their_scope_and_cap() {
    let delegation = |ops: Vec<OpKind>, cap: u64| {
        Signed::sign(
            Delegation {
                agent: id(1),
                delegate: id(6),
                ops,
                spend_cap_credits: cap,
                issued_at: t(0),
                expires_at: t(1000),
            },
            &key(1),
        )
        .unwrap()
    };
    let by_delegate = |d: Signed<Delegation>| {
        let mut r = request(1, 1, |_| {}).request.body().clone();
        r.delegation = Some(d);
        LeaseProposal {
            request: Signed::sign(r, &key(6)).unwrap(),
            approval: None,
            lock: None,
        }
    };
    let mut a = machine();
    let p = by_delegate(delegation(vec![OpKind::Exec], 100));
    assert_eq!(
        refused(a.request(&p, &standing(1), t(11))),
        RefusalCode::Unauthorized
    );
    let p = by_delegate(delegation(vec![OpKind::Lease], 0));
    assert_eq!(
        refused(a.request(&p, &standing(1), t(11))),
        RefusalCode::Unauthorized
    );
    let p = by_delegate(delegation(vec![OpKind::Lease], 1));
    let mut quota = QuotaBook::new();
    let lease = admit(&mut a, &mut quota, &p, &standing(1), t(11)).unwrap();
    assert_eq!(lease.delegate, Some(id(6)));
}

fn op(lease: LeaseId, agent: u8, nonce: u8, op: Op, at: Timestamp) -> Signed<LeaseOp> {
    Signed::sign(
        LeaseOp {
            agent: id(agent),
            provider: id(PROVIDER),
            lease,
            op,
            nonce: [nonce; NONCE_LEN],
            issued_at: at,
            delegation: None,
        },
        &key(agent),
    )
    .unwrap()
}

#[test]
fn operations_need_the_agent_freshness_and_a_new_nonce() {
    let mut a = machine();
    let mut quota = QuotaBook::new();
    let lease = admit(
        &mut a,
        &mut quota,
        &request(1, 1, |_| {}),
        &standing(1),
        t(11),
    )
    .unwrap()
    .lease;
    let stop = op(lease, 1, 1, Op::Stop, t(20));
    assert!(a.check_op(&stop, t(21)).is_ok());
    assert_eq!(
        a.check_op(&stop, t(22)).unwrap_err().code,
        RefusalCode::Replay
    );
    let other = op(lease, 4, 1, Op::Stop, t(20));
    assert_eq!(
        a.check_op(&other, t(21)).unwrap_err().code,
        RefusalCode::Unauthorized
    );
    let old = op(lease, 1, 2, Op::Status, t(20));
    assert_eq!(
        a.check_op(&old, t(20 + 400)).unwrap_err().code,
        RefusalCode::Stale
    );
    let unknown = op(Digest::of(b"x"), 1, 3, Op::Status, t(20));
    assert_eq!(
        a.check_op(&unknown, t(21)).unwrap_err().code,
        RefusalCode::UnknownLease
    );
}

#[test]
fn extensions_are_priced_and_bounded() {
    let mut a = machine();
    let mut quota = QuotaBook::new();
    let l = admit(
        &mut a,
        &mut quota,
        &request(1, 1, |_| {}),
        &standing(1),
        t(0),
    )
    .unwrap();
    let (extra, until) = a.extension(&l.lease, 600).unwrap();
    assert_eq!((extra, until), (52 * 600, t(3600 + 600)));
    a.extended(&l.lease, extra, until);
    assert_eq!(a.lease(&l.lease).unwrap().reserved_micro, 52 * 4200);
    assert_eq!(
        a.extension(&l.lease, 72 * 3600).unwrap_err().code,
        RefusalCode::Lifetime
    );
    assert_eq!(a.tick(t(4199)), Vec::<LeaseId>::new());
    assert_eq!(a.tick(t(4200)), vec![l.lease]);
    assert_eq!(l.cost_until(t(100)), 5200);
    assert_eq!(l.cost_until(t(100_000)), l.reserved_micro);
}

proptest! {
    /// Whatever arrives in whatever order, resources held never exceed capacity, no lease id
    /// is admitted twice, and an agent never holds more leases than its tier allows.
    #[test]
    fn invariants_hold_under_any_sequence(
        steps in proptest::collection::vec((1u8..6, 0u8..4, 0u32..2500, any::<bool>(), 0u64..30), 1..60)
    ) {
        let mut a = machine();
        let mut quota = QuotaBook::new();
        let mut granted = std::collections::BTreeSet::new();
        let mut now = t(11);
        for (agent, nonce, vcpu, end_one, advance) in steps {
            now = now.saturating_add(Duration::from_secs(advance));
            let mut s = standing(agent);
            s.tier.max_vcpu_milli = 2500;
            let p = request(agent, nonce, |r| {
                r.spec.resources.vcpu_milli = vcpu.max(1);
                r.max_price_per_sec = 1000;
                r.issued_at = now;
            });
            if let Ok(l) = admit(&mut a, &mut quota, &p, &s, now) {
                prop_assert!(granted.insert(l.lease), "admitted twice");
            }
            let first = a.leases().next().map(|l| l.lease);
            if let Some(first) = first.filter(|_| end_one) {
                a.end(&first, now);
            }
            let held = a.committed();
            prop_assert!(held.vcpu_milli <= 2000);
            for agent in 1u8..6 {
                prop_assert!(a.leases().filter(|l| l.agent == id(agent)).count() <= 3);
            }
        }
    }
}

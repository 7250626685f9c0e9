use super::*;
use crate::signed::Digest;
use proptest::prelude::*;

fn agent(n: u8) -> AgoraId {
    ed25519_dalek::SigningKey::from_bytes(&[n; 32])
        .verifying_key()
        .into()
}

fn lease(n: u32) -> LeaseId {
    Digest::of(&n.to_le_bytes())
}

fn t(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(secs)
}

fn req(n: u32, amount_micro: u64, limit_micro: u64) -> QuotaRequest {
    QuotaRequest {
        lease: lease(n),
        agent: agent(1),
        amount_micro,
        limit_micro,
        approved_micro: None,
        has_owner: false,
        expires_at: t(100),
    }
}

/// An extension of lease `n` by `extra` until `until`.
fn ext(n: u32, extra: u64, limit_micro: u64, until: u64) -> QuotaRequest {
    QuotaRequest {
        expires_at: t(until),
        ..req(n, extra, limit_micro)
    }
}

fn code(answer: &QuotaAnswer) -> Option<RefusalCode> {
    match answer {
        QuotaAnswer::Granted => None,
        QuotaAnswer::Denied(r) => Some(r.code),
    }
}

#[test]
fn locks_fit_under_the_limit_and_no_further() {
    let mut book = QuotaBook::new();
    assert_eq!(book.lock(&req(1, 6, 10)), QuotaAnswer::Granted);
    assert_eq!(code(&book.lock(&req(2, 5, 10))), Some(RefusalCode::Quota));
    assert_eq!(book.lock(&req(3, 4, 10)), QuotaAnswer::Granted);
    // The same lease again is not a second lock.
    assert_eq!(book.lock(&req(1, 6, 10)), QuotaAnswer::Granted);
    assert_eq!(book.account(&agent(1)).unwrap().committed_micro(), 10);
}

#[test]
fn above_the_limit_an_owner_must_approve() {
    let mut book = QuotaBook::new();
    let mut r = req(1, 20, 10);
    r.has_owner = true;
    assert_eq!(code(&book.lock(&r)), Some(RefusalCode::ApprovalRequired));
    // A refused agent leaves no empty account behind.
    assert!(book.account(&agent(1)).is_none());
    r.approved_micro = Some(19);
    assert_eq!(code(&book.lock(&r)), Some(RefusalCode::ApprovalInvalid));
    r.approved_micro = Some(20);
    assert_eq!(book.lock(&r), QuotaAnswer::Granted);
    // The approved lock does not use up the agent's own limit.
    assert_eq!(book.lock(&req(2, 10, 10)), QuotaAnswer::Granted);
    let settled = book.settle(&agent(1), &lease(1), 15).unwrap();
    assert_eq!((settled.charged_micro, settled.returned_micro), (15, 5));
    let account = book.account(&agent(1)).unwrap();
    assert_eq!((account.spent_micro, account.approved_spent_micro), (0, 15));
}

#[test]
fn settling_charges_at_most_the_lock_and_only_once() {
    let mut book = QuotaBook::new();
    book.lock(&req(1, 10, 10));
    let s = book.settle(&agent(1), &lease(1), 50).unwrap();
    assert_eq!((s.charged_micro, s.returned_micro), (10, 0));
    assert!(book.settle(&agent(1), &lease(1), 5).is_none());
    assert_eq!(code(&book.lock(&req(2, 1, 10))), Some(RefusalCode::Quota));
}

#[test]
fn lapsed_locks_return() {
    let mut book = QuotaBook::new();
    book.lock(&req(1, 10, 10));
    assert!(book.expire(t(99)).is_empty());
    assert_eq!(book.expire(t(100)), vec![(agent(1), lease(1))]);
    assert_eq!(book.lock(&req(2, 10, 10)), QuotaAnswer::Granted);
}

#[test]
fn extensions_grow_within_the_limit() {
    let mut book = QuotaBook::new();
    book.lock(&req(1, 4, 10));
    assert_eq!(book.grow(&ext(1, 6, 10, 200)), QuotaAnswer::Granted);
    let lock = book.account(&agent(1)).unwrap().locks[&lease(1)];
    assert_eq!((lock.amount_micro, lock.expires_at), (10, t(200)));
    assert_eq!(
        code(&book.grow(&ext(1, 1, 10, 300))),
        Some(RefusalCode::Quota)
    );
    assert_eq!(
        code(&book.grow(&ext(9, 1, 10, 300))),
        Some(RefusalCode::UnknownLease)
    );
}

#[test]
fn an_extension_over_the_limit_waits_for_the_owner_and_then_is_the_owners() {
    let mut book = QuotaBook::new();
    book.lock(&req(1, 8, 10));
    // Over the limit: an agent with an owner is sent to it, one without refused.
    assert_eq!(
        code(&book.grow(&ext(1, 5, 10, 200))),
        Some(RefusalCode::Quota)
    );
    let owned = QuotaRequest {
        has_owner: true,
        ..ext(1, 5, 10, 200)
    };
    assert_eq!(
        code(&book.grow(&owned)),
        Some(RefusalCode::ApprovalRequired)
    );
    // An approval below the extension's cost is not one.
    let short = QuotaRequest {
        approved_micro: Some(4),
        ..owned.clone()
    };
    assert_eq!(code(&book.grow(&short)), Some(RefusalCode::ApprovalInvalid));
    let approved = QuotaRequest {
        approved_micro: Some(5),
        ..owned
    };
    assert_eq!(book.grow(&approved), QuotaAnswer::Granted);
    let account = book.account(&agent(1)).unwrap().clone();
    let lock = account.locks[&lease(1)];
    assert_eq!((lock.amount_micro, lock.approved_extra_micro), (13, 5));
    // The approved part does not count against the limit: 2 more still fit.
    assert_eq!(account.committed_micro(), 8);
    assert_eq!(book.lock(&req(2, 2, 10)), QuotaAnswer::Granted);
    // Settling spends the agent's own part first, then the owner's.
    let settled = book.settle(&agent(1), &lease(1), 11).unwrap();
    assert_eq!((settled.charged_micro, settled.returned_micro), (11, 2));
    let account = book.account(&agent(1)).unwrap();
    assert_eq!((account.spent_micro, account.approved_spent_micro), (8, 3));
}

#[test]
fn an_owner_approved_lease_grows_only_by_a_new_approval() {
    let mut book = QuotaBook::new();
    let over = QuotaRequest {
        has_owner: true,
        approved_micro: Some(50),
        ..req(1, 50, 10)
    };
    assert_eq!(book.lock(&over), QuotaAnswer::Granted);
    // Even a small extension within the limit is the owner's to approve.
    let small = QuotaRequest {
        has_owner: true,
        ..ext(1, 1, 10, 200)
    };
    assert_eq!(
        code(&book.grow(&small)),
        Some(RefusalCode::ApprovalRequired)
    );
    let approved = QuotaRequest {
        approved_micro: Some(1),
        ..small
    };
    assert_eq!(book.grow(&approved), QuotaAnswer::Granted);
    let account = book.account(&agent(1)).unwrap();
    assert_eq!(account.locks[&lease(1)].amount_micro, 51);
    assert_eq!(account.committed_micro(), 0);
}

#[test]
fn amounts_are_shown_in_credits() {
    assert_eq!(credits(2_500_000), "2.5");
    assert_eq!(credits(3_000_000), "3");
    assert_eq!(credits(1), "0.000001");
}

#[derive(Debug, Clone)]
enum Step {
    Lock {
        lease: u32,
        amount: u64,
    },
    Settle {
        lease: u32,
        cost: u64,
    },
    Grow {
        lease: u32,
        extra: u64,
        approved: bool,
    },
    Expire {
        at: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u32..16, 0u64..40).prop_map(|(lease, amount)| Step::Lock { lease, amount }),
        (0u32..16, 0u64..40).prop_map(|(lease, cost)| Step::Settle { lease, cost }),
        (0u32..16, 0u64..20, any::<bool>()).prop_map(|(lease, extra, approved)| Step::Grow {
            lease,
            extra,
            approved
        }),
        (0u64..200).prop_map(|at| Step::Expire { at }),
    ]
}

proptest! {
    /// Whatever happens, an agent never commits more than its limit, and every micro-credit
    /// locked is either still locked, charged or returned.
    #[test]
    fn never_above_the_limit_and_nothing_lost(steps in proptest::collection::vec(step(), 1..80)) {
        const LIMIT: u64 = 100;
        let mut book = QuotaBook::new();
        let (mut locked_in, mut charged, mut returned) = (0u64, 0u64, 0u64);
        for s in steps {
            match s {
                Step::Lock { lease: n, amount } => {
                    let mut r = req(n, amount, LIMIT);
                    r.expires_at = t(u64::from(n) * 10);
                    let before = book.account(&agent(1)).map_or(0, Account::locked_micro);
                    book.lock(&r);
                    let after = book.account(&agent(1)).map_or(0, Account::locked_micro);
                    locked_in += after - before;
                }
                Step::Settle { lease: n, cost } => {
                    if let Some(s) = book.settle(&agent(1), &lease(n), cost) {
                        charged += s.charged_micro;
                        returned += s.returned_micro;
                    }
                }
                Step::Grow { lease: n, extra, approved } => {
                    let before = book.account(&agent(1)).map_or(0, Account::locked_micro);
                    let mut e = ext(n, extra, LIMIT, 300);
                    e.has_owner = true;
                    e.approved_micro = approved.then_some(extra);
                    book.grow(&e);
                    let after = book.account(&agent(1)).map_or(0, Account::locked_micro);
                    locked_in += after - before;
                }
                Step::Expire { at } => {
                    let before = book.account(&agent(1)).map_or(0, Account::locked_micro);
                    book.expire(t(at));
                    let after = book.account(&agent(1)).map_or(0, Account::locked_micro);
                    returned += before - after;
                }
            }
            let account = book.account(&agent(1)).cloned().unwrap_or_default();
            prop_assert!(account.committed_micro() <= LIMIT);
            prop_assert_eq!(account.spent_micro + account.approved_spent_micro, charged);
            prop_assert_eq!(locked_in, account.locked_micro() + charged + returned);
        }
    }
}

#[test]
fn a_restored_account_is_the_one_stored() {
    let mut book = QuotaBook::new();
    assert_eq!(book.lock(&req(1, 300, 1000)), QuotaAnswer::Granted);
    book.settle(&agent(1), &lease(1), 100);
    assert_eq!(book.lock(&req(2, 400, 1000)), QuotaAnswer::Granted);
    let stored = book.account(&agent(1)).unwrap().clone();
    let mut again = QuotaBook::new();
    again.restore(agent(1), stored.clone());
    assert_eq!(again, book);
    // The limit still counts what was spent and locked before the restart.
    assert_eq!(
        code(&again.lock(&req(3, 600, 1000))),
        Some(RefusalCode::Quota)
    );
    // An empty account is not kept.
    again.restore(agent(2), Account::default());
    assert!(again.account(&agent(2)).is_none());
}

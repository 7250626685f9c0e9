//! The checks a validator runs before it votes: pure functions of the committee, its view
//! of the accounts, the op and its clock. Signatures were checked when the op was decoded
//! (each signed op names the key that must sign it: the agent, or the receipt's provider).

use crate::time::Timestamp;

use super::account::{Account, Accounts};
use super::credit;
use super::genesis::Committee;
use super::op::{
    Action, ApprovedLock, ChainOp, CreditKey, FreeTierClaim, LockTerms, Op, TopUpTerms,
};
use super::refusal::{
    ApprovalProblem, DelegationProblem, ReceiptField, Refusal, ReleaseProblem, TopUpProblem,
};

/// Whether `op` may get this validator's vote at `now`.
///
/// # Errors
/// The [`Refusal`].
pub fn check(accounts: &Accounts, op: &Op, now: Timestamp) -> Result<(), Refusal> {
    let committee = accounts.committee();
    let empty = Account::default();
    let account = accounts.get(&op.account()).unwrap_or(&empty);
    match op {
        Op::Chain(signed) => check_chain(committee, account, signed.body(), false, now),
        Op::Approved(approved) => {
            check_approval(account, approved)?;
            check_chain(committee, account, approved.op.body(), true, now)
        }
        Op::FreeTier(claim) => check_free_tier(committee, account, claim.body(), now),
        Op::Settle(settle) => {
            let body = settle.body();
            let lock = open_lock(account, body.account, body.lock_seq, body.lock)?;
            let receipt = body.receipt.body();
            if receipt.lease != lock.lease {
                return Err(Refusal::ReceiptMismatch {
                    field: ReceiptField::Lease,
                });
            }
            if receipt.provider != lock.provider {
                return Err(Refusal::ReceiptMismatch {
                    field: ReceiptField::Provider,
                });
            }
            let deadline = account.settle_deadline(&lock, committee);
            if now >= deadline {
                return Err(Refusal::SettleTooLate { deadline });
            }
            Ok(())
        }
        Op::Unlock(unlock) => {
            let lock = open_lock(account, unlock.account, unlock.lock_seq, unlock.lock)?;
            let unlock_at = account.settle_deadline(&lock, committee);
            if now < unlock_at {
                return Err(Refusal::NotExpired { unlock_at });
            }
            Ok(())
        }
        Op::Release(release) => {
            let lock = open_lock(account, release.account, release.lock_seq, release.lock)?;
            let refusal = release.refusal.body();
            let problem = if refusal.request != lock.lease {
                Some(ReleaseProblem::Lease)
            } else if refusal.refusal.code == crate::lease::RefusalCode::Replay {
                Some(ReleaseProblem::Replay)
            } else if refusal.provider != lock.provider {
                Some(ReleaseProblem::Provider)
            } else if refusal.agent != release.account {
                Some(ReleaseProblem::Agent)
            } else if account.locks_for(&lock.lease, &lock.provider).count() > 1
                || lock.base_micro != 0
            {
                Some(ReleaseProblem::ToppedUp)
            } else {
                None
            };
            problem.map_or(Ok(()), |problem| Err(Refusal::Release { problem }))
        }
    }
}

/// An approved lock's approval: by an owner a credited attestation names, for this agent
/// and this lease request (a top-up: this very top-up, by the digest its chain names it
/// with, so the approval of a lease never pays for its extensions too), for at least what
/// the lock holds.
fn check_approval(account: &Account, approved: &ApprovedLock) -> Result<(), Refusal> {
    let op = approved.op.body();
    let approval = approved.approval.body();
    let named = |terms: &LockTerms| match &op.action {
        // The name the agent's chain gives the top-up (its plain op's digest).
        Action::TopUp(_) => Op::Chain(approved.op.clone()).digest(),
        _ => terms.lease,
    };
    let problem = match op.action.lock_terms() {
        None => Some(ApprovalProblem::NotALock),
        Some(_) if approval.agent != op.account => Some(ApprovalProblem::Agent),
        Some(terms) if approval.request != named(terms) => Some(ApprovalProblem::Lease),
        // The approval's signature was checked on decode against its `owner`.
        Some(_) if !account.has_owner(&approval.owner) => Some(ApprovalProblem::NotOwner {
            signer: approval.owner,
        }),
        Some(terms) if approval.max_cost_micro < terms.amount_micro => {
            Some(ApprovalProblem::Cover {
                approved_micro: approval.max_cost_micro,
                amount_micro: terms.amount_micro,
            })
        }
        Some(_) => None,
    };
    problem.map_or(Ok(()), |problem| Err(Refusal::Approval { problem }))
}

/// A chain op at the account's next position; `approved` under its owner's approval
/// (checked before), so a lock may go above the balance.
fn check_chain(
    committee: &Committee,
    account: &Account,
    op: &ChainOp,
    approved: bool,
    now: Timestamp,
) -> Result<(), Refusal> {
    if op.seq < account.next_seq() {
        return Err(Refusal::Stale {
            account: op.account,
            seq: op.seq,
            next_seq: account.next_seq(),
        });
    }
    if op.seq > account.next_seq() {
        return Err(Refusal::Behind {
            account: op.account,
            next_seq: account.next_seq(),
        });
    }
    if op.prev != account.head() {
        return Err(Refusal::BrokenChain {
            expected: account.head(),
            found: op.prev,
        });
    }
    if let Some(delegation) = &op.delegation {
        check_delegation(account, op, delegation, now)?;
    }
    match &op.action {
        Action::Credit(credential) => {
            let amount = credit::check(committee, credential, now).map_err(Refusal::Credential)?;
            let key = CreditKey::of(credential);
            if account.credited(&key) {
                return Err(Refusal::AlreadyCredited { issuer: key.issuer });
            }
            funds_fit(account, amount)
        }
        Action::Lock(terms) => {
            if account.lock_for(&terms.lease, &terms.provider).is_some() {
                return Err(Refusal::LeaseLocked { lease: terms.lease });
            }
            check_lock(committee, account, terms, approved, now)
        }
        Action::TopUp(top_up) => {
            check_top_up(account, top_up)?;
            check_lock(committee, account, &top_up.lock, approved, now)
        }
    }
}

/// A delegate's lock or top-up: its delegation allows the operation now, and what is
/// locked and charged under it stays within its spend cap.
fn check_delegation(
    account: &Account,
    op: &ChainOp,
    delegation: &crate::signed::Signed<crate::lease::Delegation>,
    now: Timestamp,
) -> Result<(), Refusal> {
    let d = delegation.body();
    let allowed = op.delegated_kind().is_some_and(|kind| d.allows(kind, now));
    if !allowed {
        return Err(Refusal::Delegation {
            problem: DelegationProblem::NotAllowed,
        });
    }
    let amount_micro = op.action.lock_terms().map_or(0, |t| t.amount_micro);
    let cap_micro = d
        .spend_cap_credits
        .saturating_mul(crate::signup::MICRO_PER_CREDIT);
    let used_micro = account.delegated_micro(&delegation.digest());
    if used_micro.saturating_add(amount_micro) > cap_micro {
        return Err(Refusal::Delegation {
            problem: DelegationProblem::SpendCap {
                cap_micro,
                used_micro,
                amount_micro,
            },
        });
    }
    Ok(())
}

/// A top-up follows the lease's open locks at its provider: the base they hold, a later
/// expiry. (A lease may have locks at other candidates a gateway failed over from; they
/// are not the running lease's.)
fn check_top_up(account: &Account, top_up: &TopUpTerms) -> Result<(), Refusal> {
    let terms = &top_up.lock;
    let Some(latest) = account.latest_expiry(&terms.lease, &terms.provider) else {
        if let Some(other) = account.locks().values().find(|l| l.lease == terms.lease) {
            return Err(Refusal::TopUp {
                problem: TopUpProblem::Provider {
                    expected: other.provider,
                },
            });
        }
        return Err(Refusal::NotLocked { lease: terms.lease });
    };
    let held_micro = account.locked_for(&terms.lease, &terms.provider);
    if top_up.base_micro != held_micro {
        return Err(Refusal::TopUp {
            problem: TopUpProblem::Base {
                held_micro,
                base_micro: top_up.base_micro,
            },
        });
    }
    if terms.expires_at <= latest {
        return Err(Refusal::TopUp {
            problem: TopUpProblem::Expiry { latest },
        });
    }
    Ok(())
}

/// The checks a lock and a top-up share: an amount, an expiry within bounds, room for one
/// more open lock, the funds (the owner's, when `approved`).
fn check_lock(
    committee: &Committee,
    account: &Account,
    terms: &LockTerms,
    approved: bool,
    now: Timestamp,
) -> Result<(), Refusal> {
    if terms.amount_micro == 0 {
        return Err(Refusal::ZeroAmount);
    }
    let latest = now.saturating_add(committee.max_lock_lifetime());
    if terms.expires_at <= now || terms.expires_at > latest {
        return Err(Refusal::LockExpiry {
            expires_at: terms.expires_at,
            latest,
        });
    }
    let max = committee.locks().max_open;
    if account.locks().len() >= usize::try_from(max).unwrap_or(usize::MAX) {
        return Err(Refusal::TooManyLocks { max });
    }
    let available = account.available_micro();
    if !approved && terms.amount_micro > available {
        return Err(Refusal::Insufficient {
            available_micro: available,
            amount_micro: terms.amount_micro,
        });
    }
    Ok(())
}

fn check_free_tier(
    committee: &Committee,
    account: &Account,
    claim: &FreeTierClaim,
    now: Timestamp,
) -> Result<(), Refusal> {
    if !committee.free_tier_enabled() {
        return Err(Refusal::FreeTierDisabled);
    }
    let current = committee.epoch_at(now);
    if current != Some(claim.epoch) {
        return Err(Refusal::WrongEpoch {
            epoch: claim.epoch,
            current,
        });
    }
    let cap = committee.free_tier().cap_per_epoch;
    if claim.index >= cap {
        return Err(Refusal::PoolIndex {
            index: claim.index,
            cap,
        });
    }
    if account.claimed(claim.epoch) {
        return Err(Refusal::AlreadyClaimed { epoch: claim.epoch });
    }
    funds_fit(account, committee.free_tier().allowance_micro)
}

/// Whether `amount` more credit keeps the account's totals within `u64`.
fn funds_fit(account: &Account, amount: u64) -> Result<(), Refusal> {
    account
        .credited_micro()
        .checked_add(account.granted_micro())
        .and_then(|total| total.checked_add(amount))
        .map(|_| ())
        .ok_or(Refusal::Overflow)
}

/// The open lock a closing names: known here, open, the same lock op.
fn open_lock(
    account: &Account,
    id: crate::id::AgoraId,
    lock_seq: u64,
    lock_op: crate::signed::Digest,
) -> Result<super::account::Lock, Refusal> {
    if lock_seq >= account.next_seq() {
        return Err(Refusal::Behind {
            account: id,
            next_seq: account.next_seq(),
        });
    }
    let lock = account.locks().get(&lock_seq).ok_or(Refusal::NoSuchLock {
        account: id,
        lock_seq,
    })?;
    if lock.op != lock_op {
        return Err(Refusal::LockMismatch { actual: lock.op });
    }
    Ok(*lock)
}

//! Account state: certified ops applied in order give balance, locks and spent.
//!
//! [`Accounts`] is what validators check requests against and what any node shows as an
//! agent's quota. It trusts certificates (they were verified when made or decoded) and only
//! orders them: a chain op applies at its account's next `seq`, a closing once its lock is
//! known, a free-tier grant at most once per account and epoch. Whatever order certificates
//! arrive in, the state after all of them is the same (closings and grants commute; the
//! chain is one order).
//!
//! A view that lacks some closing certificates counts those locks as still held, so its
//! available balance is never above the true one: that is what lets validators check
//! balances without agreeing on everything first.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::id::AgoraId;
use crate::lease::LeaseId;
use crate::signed::{Digest, Signed};
use crate::time::Timestamp;

use super::certificate::Certificate;
use super::credit;
use super::genesis::Committee;
use super::op::{Action, CreditKey, LockTerms, Op};

/// An open lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Lock {
    /// The lease it pays for.
    pub lease: LeaseId,
    /// The provider that may settle it.
    pub provider: AgoraId,
    /// Micro-credits locked.
    pub amount_micro: u64,
    /// When it lapses.
    pub expires_at: Timestamp,
    /// The digest of the lock op (closings name it).
    pub op: Digest,
    /// What the lease's earlier locks held when this one was made (0 for a first lock; a
    /// top-up's `base_micro`): its settlement charges only the cost above it.
    pub base_micro: u64,
    /// The digest of the delegation its op was signed under, when a delegate signed it.
    pub delegation: Option<Digest>,
    /// Whether the agent's owner approved it: it holds and charges the owner's approval,
    /// not the agent's balance.
    pub approved: bool,
}

impl Lock {
    /// What settling this lock with a receipt of `cost_micro` charges: the cost above the
    /// base, at most the amount.
    pub fn charge_for(&self, cost_micro: u64) -> u64 {
        cost_micro
            .saturating_sub(self.base_micro)
            .min(self.amount_micro)
    }
}

/// One agent's quota.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Account {
    next_seq: u64,
    head: Option<Digest>,
    credited_micro: u64,
    granted_micro: u64,
    spent_micro: u64,
    locks: BTreeMap<u64, Lock>,
    credits: BTreeSet<CreditKey>,
    free_epochs: BTreeSet<u64>,
    /// Charged by settlements of locks made under each delegation (by its digest).
    delegated_spent: BTreeMap<Digest, u64>,
    /// Charged by settlements of owner-approved locks (outside the balance).
    approved_spent_micro: u64,
    /// The owners the credited attestations name: who may approve locks above the balance.
    owners: BTreeSet<AgoraId>,
}

impl Account {
    /// The next chain position to certify.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The digest of the last certified chain op (`None` before the first).
    pub fn head(&self) -> Option<Digest> {
        self.head
    }

    /// Micro-credits credited from attestations.
    pub fn credited_micro(&self) -> u64 {
        self.credited_micro
    }

    /// Micro-credits granted by the free tier.
    pub fn granted_micro(&self) -> u64 {
        self.granted_micro
    }

    /// Micro-credits charged by settlements.
    pub fn spent_micro(&self) -> u64 {
        self.spent_micro
    }

    /// Micro-credits open locks hold against the balance (owner-approved ones hold the
    /// owner's approval instead).
    pub fn locked_micro(&self) -> u64 {
        self.held_micro(false)
    }

    /// Micro-credits open owner-approved locks hold.
    pub fn approved_locked_micro(&self) -> u64 {
        self.held_micro(true)
    }

    /// What the open locks approved (or not) by the owner hold together.
    fn held_micro(&self, approved: bool) -> u64 {
        self.locks
            .values()
            .filter(|l| l.approved == approved)
            .fold(0u64, |sum, l| sum.saturating_add(l.amount_micro))
    }

    /// Micro-credits charged by settlements of owner-approved locks.
    pub fn approved_spent_micro(&self) -> u64 {
        self.approved_spent_micro
    }

    /// Whether `owner` is named as the agent's owner by a credited attestation.
    pub fn has_owner(&self, owner: &AgoraId) -> bool {
        self.owners.contains(owner)
    }

    /// What may still be locked: credited + granted − spent − locked (never negative).
    pub fn available_micro(&self) -> u64 {
        self.credited_micro
            .saturating_add(self.granted_micro)
            .saturating_sub(self.spent_micro.saturating_add(self.locked_micro()))
    }

    /// Open locks by the chain position that made them.
    pub fn locks(&self) -> &BTreeMap<u64, Lock> {
        &self.locks
    }

    /// The first open lock for `lease` at `provider`, if any (with its chain position).
    pub fn lock_for(&self, lease: &LeaseId, provider: &AgoraId) -> Option<(u64, &Lock)> {
        self.locks_for(lease, provider).next()
    }

    /// Every open lock for `lease` at `provider` (its lock and top-ups), by chain position.
    ///
    /// A request names up to eight candidate providers and a gateway fails over from one to
    /// the next, so one lease id may have locks at several providers (one each); each
    /// provider's locks pay only for what that provider runs.
    pub fn locks_for(
        &self,
        lease: &LeaseId,
        provider: &AgoraId,
    ) -> impl Iterator<Item = (u64, &Lock)> {
        let (lease, provider) = (*lease, *provider);
        self.locks
            .iter()
            .filter(move |(_, l)| l.lease == lease && l.provider == provider)
            .map(|(seq, l)| (*seq, l))
    }

    /// What the open locks for `lease` at `provider` hold together (a top-up's
    /// `base_micro`).
    pub fn locked_for(&self, lease: &LeaseId, provider: &AgoraId) -> u64 {
        self.locks_for(lease, provider)
            .fold(0u64, |sum, (_, l)| sum.saturating_add(l.amount_micro))
    }

    /// What is locked (open locks) and charged under the delegation `delegation` (its
    /// digest): what its spend cap bounds.
    pub fn delegated_micro(&self, delegation: &Digest) -> u64 {
        let locked = self
            .locks
            .values()
            .filter(|l| l.delegation.as_ref() == Some(delegation))
            .fold(0u64, |sum, l| sum.saturating_add(l.amount_micro));
        self.delegated_spent
            .get(delegation)
            .copied()
            .unwrap_or(0)
            .saturating_add(locked)
    }

    /// Whether the attestation `key` was credited.
    pub fn credited(&self, key: &CreditKey) -> bool {
        self.credits.contains(key)
    }

    /// Whether a free-tier grant of `epoch` was applied.
    pub fn claimed(&self, epoch: u64) -> bool {
        self.free_epochs.contains(&epoch)
    }

    /// The latest expiry among the open locks for `lease` at `provider` (`None` without
    /// any).
    pub fn latest_expiry(&self, lease: &LeaseId, provider: &AgoraId) -> Option<Timestamp> {
        self.locks_for(lease, provider)
            .map(|(_, l)| l.expires_at)
            .max()
    }

    /// Until when `lock` may be settled, and from when anyone may unlock it: the settle
    /// grace after the latest expiry among the open locks of its lease at its provider (a
    /// top-up extends the lease, so the locks it extends stay open for their provider to
    /// settle with the lease's final receipt).
    pub fn settle_deadline(&self, lock: &Lock, committee: &Committee) -> Timestamp {
        self.latest_expiry(&lock.lease, &lock.provider)
            .map_or(lock.expires_at, |latest| latest.max(lock.expires_at))
            .saturating_add(committee.settle_grace())
    }

    /// Locks anyone may unlock at `now`, by position: past their
    /// [`settle_deadline`](Self::settle_deadline).
    pub fn unlockable(&self, now: Timestamp, committee: &Committee) -> Vec<u64> {
        self.locks
            .iter()
            .filter(|(_, l)| self.settle_deadline(l, committee) <= now)
            .map(|(seq, _)| *seq)
            .collect()
    }

    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What applying a certificate did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A chain op took its place.
    Chain {
        /// The account.
        account: AgoraId,
        /// Its position.
        seq: u64,
    },
    /// A free-tier grant was credited.
    Granted {
        /// The account.
        account: AgoraId,
        /// The epoch.
        epoch: u64,
        /// Micro-credits granted (0 when the account already had this epoch's grant).
        amount_micro: u64,
    },
    /// A lock was closed.
    Closed {
        /// The account.
        account: AgoraId,
        /// The lock's position.
        lock_seq: u64,
        /// Moved to spent.
        charged_micro: u64,
        /// Returned.
        returned_micro: u64,
    },
    /// Already applied (or superseded): nothing changed.
    Duplicate,
}

/// Why a certificate could not be applied (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// An earlier chain op of the account is missing.
    #[error("account {account} is at seq {next_seq}; seq {needed} needs the ones before")]
    Behind {
        /// The account.
        account: AgoraId,
        /// The next position this view can apply.
        next_seq: u64,
        /// The position the certificate needs applied first (its own, or its lock's).
        needed: u64,
    },
    /// The chain op does not follow the account's head: two certificates exist for one
    /// position, which takes more than `f` faulty validators.
    #[error("seq {seq} of {account} names prev {prev:?}, the head is {head:?}")]
    Fork {
        /// The account.
        account: AgoraId,
        /// The position.
        seq: u64,
        /// What the op names.
        prev: Option<Digest>,
        /// This view's head.
        head: Option<Digest>,
    },
    /// The closing names another lock op than the one at its position (again, more than
    /// `f` faulty validators).
    #[error("closing of {account}#{lock_seq} names another lock op")]
    WrongLock {
        /// The account.
        account: AgoraId,
        /// The position.
        lock_seq: u64,
    },
    /// The certificate is of another committee.
    #[error("certificate of another committee")]
    WrongCommittee,
}

/// Every account a node knows of.
#[derive(Debug, Clone)]
pub struct Accounts {
    committee: Committee,
    accounts: BTreeMap<AgoraId, Account>,
}

impl Accounts {
    /// No accounts yet.
    pub fn new(committee: Committee) -> Self {
        Self {
            committee,
            accounts: BTreeMap::new(),
        }
    }

    /// The committee.
    pub fn committee(&self) -> &Committee {
        &self.committee
    }

    /// One account (`None` for an account without any certified op).
    pub fn get(&self, account: &AgoraId) -> Option<&Account> {
        self.accounts.get(account)
    }

    /// Every account with certified ops, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (&AgoraId, &Account)> {
        self.accounts.iter()
    }

    /// Applies a certificate.
    ///
    /// # Errors
    /// [`ApplyError::Behind`] when earlier chain ops are missing (apply those, then this
    /// again); the others only when more than `f` validators misbehaved.
    pub fn apply(&mut self, certificate: &Certificate) -> Result<Applied, ApplyError> {
        if certificate.genesis() != self.committee.digest() {
            return Err(ApplyError::WrongCommittee);
        }
        let account_id = certificate.op().account();
        let mut account = self.accounts.remove(&account_id).unwrap_or_default();
        let result = apply_to(&mut account, &self.committee, certificate);
        if !account.is_empty() {
            self.accounts.insert(account_id, account);
        }
        result
    }
}

fn apply_to(
    account: &mut Account,
    committee: &Committee,
    certificate: &Certificate,
) -> Result<Applied, ApplyError> {
    match certificate.op() {
        Op::Chain(signed) => apply_chain(account, signed, false, certificate.digest()),
        op @ Op::Approved(approved) => apply_chain(account, &approved.op, true, op.chain_digest()),
        Op::FreeTier(claim) => {
            let claim = claim.body();
            let amount_micro = if account.free_epochs.insert(claim.epoch) {
                let amount = committee.free_tier().allowance_micro;
                account.granted_micro = account.granted_micro.saturating_add(amount);
                amount
            } else {
                0
            };
            Ok(Applied::Granted {
                account: claim.account,
                epoch: claim.epoch,
                amount_micro,
            })
        }
        Op::Settle(settle) => {
            let body = settle.body();
            let cost = settle.body().receipt.body().total_micro;
            close(account, body.account, body.lock_seq, body.lock, Some(cost))
        }
        Op::Unlock(unlock) => close(account, unlock.account, unlock.lock_seq, unlock.lock, None),
        Op::Release(release) => close(
            account,
            release.account,
            release.lock_seq,
            release.lock,
            None,
        ),
    }
}

/// Applies the agent's chain op `signed` (under its owner's approval when `approved`),
/// named in the chain by `digest`.
fn apply_chain(
    account: &mut Account,
    signed: &Signed<super::op::ChainOp>,
    approved: bool,
    digest: Digest,
) -> Result<Applied, ApplyError> {
    let op = signed.body();
    if op.seq < account.next_seq {
        return Ok(Applied::Duplicate);
    }
    if op.seq > account.next_seq {
        return Err(ApplyError::Behind {
            account: op.account,
            next_seq: account.next_seq,
            needed: op.seq,
        });
    }
    if op.prev != account.head {
        return Err(ApplyError::Fork {
            account: op.account,
            seq: op.seq,
            prev: op.prev,
            head: account.head,
        });
    }
    match &op.action {
        Action::Credit(credential) => {
            // The amount was checked at voting time; a certificate is authoritative.
            let amount = credit::amount_micro(credential);
            if account.credits.insert(CreditKey::of(credential)) {
                account.credited_micro = account.credited_micro.saturating_add(amount);
                account.owners.extend(credential.owner());
            }
        }
        Action::Lock(terms) => {
            let mut lock = lock_of(terms, 0, digest);
            lock.delegation = op.delegation.as_ref().map(Signed::digest);
            lock.approved = approved;
            account.locks.insert(op.seq, lock);
        }
        Action::TopUp(top_up) => {
            let mut lock = lock_of(&top_up.lock, top_up.base_micro, digest);
            lock.delegation = op.delegation.as_ref().map(Signed::digest);
            lock.approved = approved;
            account.locks.insert(op.seq, lock);
        }
    }
    account.next_seq = op.seq.saturating_add(1);
    account.head = Some(digest);
    Ok(Applied::Chain {
        account: op.account,
        seq: op.seq,
    })
}

fn lock_of(terms: &LockTerms, base_micro: u64, op: Digest) -> Lock {
    Lock {
        lease: terms.lease,
        provider: terms.provider,
        amount_micro: terms.amount_micro,
        expires_at: terms.expires_at,
        op,
        base_micro,
        delegation: None,
        approved: false,
    }
}

fn close(
    account: &mut Account,
    id: AgoraId,
    lock_seq: u64,
    lock_op: Digest,
    cost_micro: Option<u64>,
) -> Result<Applied, ApplyError> {
    if lock_seq >= account.next_seq {
        return Err(ApplyError::Behind {
            account: id,
            next_seq: account.next_seq,
            needed: lock_seq,
        });
    }
    let Some(lock) = account.locks.get(&lock_seq) else {
        return Ok(Applied::Duplicate);
    };
    if lock.op != lock_op {
        return Err(ApplyError::WrongLock {
            account: id,
            lock_seq,
        });
    }
    let amount = lock.amount_micro;
    let charged = lock.charge_for(cost_micro.unwrap_or(0));
    if let Some(delegation) = lock.delegation {
        let spent = account.delegated_spent.entry(delegation).or_insert(0);
        *spent = spent.saturating_add(charged);
    }
    let approved = lock.approved;
    account.locks.remove(&lock_seq);
    if approved {
        account.approved_spent_micro = account.approved_spent_micro.saturating_add(charged);
    } else {
        account.spent_micro = account.spent_micro.saturating_add(charged);
    }
    Ok(Applied::Closed {
        account: id,
        lock_seq,
        charged_micro: charged,
        returned_micro: amount - charged,
    })
}

//! [`Refusal`]: why a validator did not vote, sent back to the client as data.

use serde::{Deserialize, Serialize};

use crate::id::AgoraId;
use crate::lease::LeaseId;
use crate::signed::Digest;
use crate::time::Timestamp;

use super::credit::CreditProblem;
use super::op::Slot;

/// Why a validator refused to vote for an op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// This validator already voted for another op in the slot; it never will for this one.
    #[error("already voted for op {voted} in {slot}")]
    Conflict {
        /// The slot.
        slot: Slot,
        /// The op it voted for.
        voted: Digest,
    },
    /// The chain position is already certified here.
    #[error("seq {seq} of {account} is already certified (next is {next_seq})")]
    Stale {
        /// The account.
        account: AgoraId,
        /// The op's position.
        seq: u64,
        /// This validator's next position.
        next_seq: u64,
    },
    /// This validator lacks earlier certified ops of the account: send their certificates.
    #[error("{account} is at seq {next_seq} here; send the certificates from there")]
    Behind {
        /// The account.
        account: AgoraId,
        /// The first position missing here.
        next_seq: u64,
    },
    /// `prev` is not the digest of the certified op before it.
    #[error("prev is {found:?}, the certified head is {expected:?}")]
    BrokenChain {
        /// The head this validator knows.
        expected: Option<Digest>,
        /// What the op names.
        found: Option<Digest>,
    },
    /// The credential does not credit.
    #[error("credential refused: {0}")]
    Credential(CreditProblem),
    /// The attestation was credited before.
    #[error("attestation by {issuer} with this nonce was already credited")]
    AlreadyCredited {
        /// Its issuer.
        issuer: AgoraId,
    },
    /// The balance would exceed `u64` micro-credits.
    #[error("the balance would overflow")]
    Overflow,
    /// A lock of nothing.
    #[error("a lock must be of at least one micro-credit")]
    ZeroAmount,
    /// Not enough available quota.
    #[error("{amount_micro} micro-credits asked, {available_micro} available")]
    Insufficient {
        /// Available now (credited + granted − spent − locked).
        available_micro: u64,
        /// Asked.
        amount_micro: u64,
    },
    /// The lock expires before now, or too far ahead.
    #[error("lock expiry {expires_at} is not within (now, {latest}]")]
    LockExpiry {
        /// The asked expiry.
        expires_at: Timestamp,
        /// The latest allowed (now + the genesis' longest lock).
        latest: Timestamp,
    },
    /// The account holds as many open locks as the genesis allows.
    #[error("{max} locks are open already")]
    TooManyLocks {
        /// The bound.
        max: u32,
    },
    /// The lease already has an open lock in this account.
    #[error("lease {lease} is locked already")]
    LeaseLocked {
        /// The lease.
        lease: LeaseId,
    },
    /// No open lock at that position here (never locked, or closed).
    #[error("no open lock at {account}#{lock_seq}")]
    NoSuchLock {
        /// The account.
        account: AgoraId,
        /// The position.
        lock_seq: u64,
    },
    /// The closing names another lock op than the one at its position.
    #[error("the lock at that position is op {actual}")]
    LockMismatch {
        /// The lock op there.
        actual: Digest,
    },
    /// The receipt is not for this lock's lease or provider.
    #[error("the receipt's {field} does not match the lock")]
    ReceiptMismatch {
        /// Which field.
        field: ReceiptField,
    },
    /// The settle grace is over.
    #[error("the lock could be settled until {deadline}")]
    SettleTooLate {
        /// Expiry + settle grace.
        deadline: Timestamp,
    },
    /// The lock may not be unlocked yet.
    #[error("the lock may be unlocked from {unlock_at}")]
    NotExpired {
        /// Expiry + settle grace.
        unlock_at: Timestamp,
    },
    /// The genesis has no free tier.
    #[error("there is no free tier")]
    FreeTierDisabled,
    /// The claim is not for this validator's current epoch.
    #[error("epoch {epoch} asked, the current epoch is {current:?}")]
    WrongEpoch {
        /// Asked.
        epoch: u64,
        /// Current here (`None` before the start).
        current: Option<u64>,
    },
    /// The pool index is not below the cap.
    #[error("pool index {index} is not below the cap {cap}")]
    PoolIndex {
        /// Asked.
        index: u32,
        /// The cap per epoch.
        cap: u32,
    },
    /// The account already has this epoch's grant.
    #[error("the account already has the grant of epoch {epoch}")]
    AlreadyClaimed {
        /// The epoch.
        epoch: u64,
    },
    /// A top-up for a lease without an open lock here (never locked, or closed).
    #[error("lease {lease} has no open lock to top up")]
    NotLocked {
        /// The lease.
        lease: LeaseId,
    },
    /// A top-up whose terms do not follow the lease's open locks.
    #[error("the top-up does not follow the lease's locks: {problem}")]
    TopUp {
        /// What does not match.
        problem: TopUpProblem,
    },
    /// A delegate's op its delegation does not cover.
    #[error("the delegation does not cover it: {problem}")]
    Delegation {
        /// What it does not cover.
        problem: DelegationProblem,
    },
    /// A release whose refusal does not release this lock.
    #[error("the refusal does not release the lock: {problem}")]
    Release {
        /// What does not match.
        problem: ReleaseProblem,
    },
    /// An approved lock whose approval does not cover it (new variants go at the end).
    #[error("the owner's approval does not cover the lock: {problem}")]
    Approval {
        /// What it does not cover.
        problem: ApprovalProblem,
    },
}

/// How an owner's approval fails to cover an approved lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApprovalProblem {
    /// The op is a credit: an owner approves locks and top-ups only.
    #[error("an owner approves locks and top-ups, not credits")]
    NotALock,
    /// The approval is for another agent than the account.
    #[error("it is for another agent than the account")]
    Agent,
    /// The approval is for another request than the lock's lease.
    #[error("it is for another request than the lock's lease")]
    Lease,
    /// Its signer is not an owner the account's credited attestations name.
    #[error("{signer} is not an owner the account's credited attestations name")]
    NotOwner {
        /// Who signed it.
        signer: AgoraId,
    },
    /// It approves less than the lock holds.
    #[error("it approves {approved_micro} micro-credits, the lock holds {amount_micro}")]
    Cover {
        /// What the owner approved.
        approved_micro: u64,
        /// What the lock holds.
        amount_micro: u64,
    },
}

/// How a delegation fails to cover a delegate's chain op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DelegationProblem {
    /// It does not allow the operation now (not among its ops, or outside its time).
    #[error("it does not allow this operation now")]
    NotAllowed,
    /// The op would take what is locked or spent under it above its spend cap.
    #[error(
        "{used_micro} micro-credits locked or spent under it, {amount_micro} more asked, its cap is {cap_micro}"
    )]
    SpendCap {
        /// The cap, micro-credits.
        cap_micro: u64,
        /// Locked (open) and charged under it so far.
        used_micro: u64,
        /// Asked.
        amount_micro: u64,
    },
}

/// How a provider's refusal fails to release a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ReleaseProblem {
    /// It refuses another request than the lock's lease.
    #[error("it refuses another request than the lock's lease")]
    Lease,
    /// It is signed by another provider than the lock's.
    #[error("it is signed by another provider than the lock's")]
    Provider,
    /// It is about another agent than the account.
    #[error("it is about another agent than the account")]
    Agent,
    /// The lease has a top-up at this provider: the provider granted it once.
    #[error("the lease was topped up at this provider, so it was granted")]
    ToppedUp,
    /// It refuses a replay: the provider saw the request before and may have granted it.
    #[error("a `replay` refusal: the provider may have granted the request before")]
    Replay,
}

/// How a top-up fails to follow the lease's open locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TopUpProblem {
    /// It names another provider than the lease's locks.
    #[error("the lease's locks are for provider {expected}")]
    Provider {
        /// The locks' provider.
        expected: AgoraId,
    },
    /// Its base is not what the open locks hold.
    #[error("the open locks hold {held_micro} micro-credits, the base says {base_micro}")]
    Base {
        /// What they hold.
        held_micro: u64,
        /// What the top-up says.
        base_micro: u64,
    },
    /// It lapses no later than a lock it would extend.
    #[error("it must lapse after {latest}, when the lease's last lock does")]
    Expiry {
        /// The latest expiry among the lease's open locks.
        latest: Timestamp,
    },
}

/// A field of a usage receipt a settlement is checked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiptField {
    /// The lease.
    Lease,
    /// The provider.
    Provider,
}

impl core::fmt::Display for ReceiptField {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Lease => "lease",
            Self::Provider => "provider",
        })
    }
}

impl Refusal {
    /// Whether asking the same validator again (after sending certificates, or later) may
    /// get a vote: `Behind` and the time-bound refusals. The others stand.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Behind { .. }
                | Self::NotExpired { .. }
                | Self::WrongEpoch { .. }
                | Self::Insufficient { .. }
                | Self::NoSuchLock { .. }
        )
    }
}

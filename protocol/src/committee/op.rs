//! What the committee certifies: [`Op`]s, each in one [`Slot`].
//!
//! | op | signed by | slot |
//! |---|---|---|
//! | [`ChainOp`] with [`Action::Credit`], [`Action::Lock`] or [`Action::TopUp`] | the account's agent | `Seq { account, seq }` |
//! | [`FreeTierClaim`] | the account's agent | `Pool { epoch, index }` |
//! | [`Settle`] (carrying the provider's [`UsageReceipt`]) | the lock's provider | `Close { account, lock_seq }` |
//! | [`Unlock`] | nobody: anyone may ask once the lock lapsed | `Close { account, lock_seq }` |
//! | [`Release`] (carrying the provider's signed [`LeaseRefusal`]) | nobody: anyone holding the refusal may ask | `Close { account, lock_seq }` |
//! | [`ApprovedLock`]: a lock or top-up [`ChainOp`] beside its owner's [`Approval`] | the agent (the op) and its owner (the approval) | `Seq { account, seq }` |
//!
//! Only the agent writes its own chain (`seq` 0, 1, 2, … each naming the previous op's
//! digest), so no one else can take a sequence number from it and stall it. A lock is closed
//! in a slot of its own (settled by its provider or, after expiry and the settle grace,
//! unlocked). A lease that is extended gets one more lock per extension ([`Action::TopUp`]),
//! each closed in its own slot: a top-up names what the lease's earlier locks hold
//! (`base_micro`), and its settlement charges only the receipt's cost above that, so however
//! the closings interleave the lease is charged its cost once. The locks of one lease are
//! settled and unlocked by the settle grace after the latest of their expiries, so the
//! provider settles them all with the lease's final receipt. Free-tier grants come from a per-epoch pool of `cap_per_epoch` slots:
//! uniqueness per slot is what makes a certificate unique, so the pool's cap holds
//! network-wide.
//!
//! A lock whose provider refused the lease is released at once ([`Release`]): the
//! provider's own signed refusal of the request is the authority, so a gateway that fails
//! over from a refusing provider to the next candidate does not leave the agent's quota
//! held until the lock lapses. A provider that signed a refusal never grants that request
//! afterwards (it would run a lease whose lock may already be returned), and a `replay`
//! refusal releases nothing: it says the provider saw the request before, perhaps granting
//! it.
//!
//! Above its balance, an agent whose attestation names an owner may lock what the owner
//! approved ([`ApprovedLock`]): the agent's own signed lock, unchanged, beside the owner's
//! signed [`Approval`] of the same lease request. It takes the lock's own chain position
//! and, in the chain, is named by the digest of the plain lock
//! ([`Op::chain_digest`]): the agent's next locks (a gateway's fallbacks, signed before
//! anyone knew an approval was needed) follow it either way, and the slot still holds one
//! op only. What an approved lock holds and charges is the owner's, not the agent's
//! balance.

use core::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::attestation::{Credential, NONCE_LEN};
use crate::codec::DecodeError;
use crate::id::AgoraId;
use crate::lease::{Approval, Delegation, LeaseId, LeaseRefusal, OpKind, UsageReceipt};
use crate::signed::{Digest, Signed, SignedKind};
use crate::time::Timestamp;

/// What a validator signs at most once: one position that one op may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Slot {
    /// Position `seq` of `account`'s chain.
    Seq {
        /// The account (the agent's id).
        account: AgoraId,
        /// The sequence number.
        seq: u64,
    },
    /// The closing of the lock made at `lock_seq` of `account`'s chain.
    Close {
        /// The account.
        account: AgoraId,
        /// The chain position of the lock.
        lock_seq: u64,
    },
    /// Free-tier grant number `index` of `epoch`.
    Pool {
        /// The epoch.
        epoch: u64,
        /// The grant's index, below the genesis cap.
        index: u32,
    },
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Seq { account, seq } => write!(f, "{account}#{seq}"),
            Self::Close { account, lock_seq } => write!(f, "{account}#{lock_seq}/close"),
            Self::Pool { epoch, index } => write!(f, "pool {epoch}/{index}"),
        }
    }
}

/// One entry of an agent's own chain. Signed by the agent (`account`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainOp {
    /// The account: the agent's id, the signer.
    pub account: AgoraId,
    /// 0 for the first op, then one more than the previous.
    pub seq: u64,
    /// The digest of the certified op at `seq - 1` (`None` exactly for `seq` 0).
    pub prev: Option<Digest>,
    /// What it does.
    pub action: Action,
    /// Present when a delegate signs for the agent (a remote MCP endpoint under the agent's
    /// signed delegation): only a lock or a top-up, only while the delegation allows
    /// leases (a lock) or extensions (a top-up), and within its spend cap over everything
    /// locked under it that is not returned (validators check all three).
    pub delegation: Option<Signed<Delegation>>,
}

/// What a chain op does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Credit the spending limit of an attestation about the agent, issued by a genesis
    /// issuer (directly or through a delegation chain). Once per (issuer, subject, nonce).
    Credit(Credential),
    /// Lock quota for a lease.
    Lock(LockTerms),
    /// Lock more quota for a lease that has open locks, to extend it (new variants go at
    /// the end: the variant index is the wire tag).
    TopUp(TopUpTerms),
}

/// A top-up's terms: one more lock for a lease, settled for the cost above its base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopUpTerms {
    /// The lock: the same lease and provider as the lease's open locks, a later expiry.
    pub lock: LockTerms,
    /// What the lease's open locks hold together when the top-up is signed: its settlement
    /// charges `min(amount, receipt cost − base)`, the cost the earlier locks do not cover.
    pub base_micro: u64,
}

/// A lock's terms: what a provider checks before it starts work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockTerms {
    /// The lease it pays for.
    pub lease: LeaseId,
    /// The provider that may settle it.
    pub provider: AgoraId,
    /// Micro-credits locked (at least price × lifetime).
    pub amount_micro: u64,
    /// When it lapses; its provider may settle it until `settle_grace` after.
    pub expires_at: Timestamp,
}

impl ChainOp {
    /// The largest payload: an 8-link credential and the header.
    pub const MAX_PAYLOAD: usize = Credential::MAX_BYTES + 128;
}

impl SignedKind for ChainOp {
    const DOMAIN: &'static str = "agora/quota-op/v1";
    const MAX_PAYLOAD_BYTES: usize = Self::MAX_PAYLOAD;

    fn validate(&self) -> Result<(), DecodeError> {
        if (self.seq == 0) != self.prev.is_none() {
            return Err(invalid(
                "prev",
                format!(
                    "seq {} {} a previous op",
                    self.seq,
                    if self.prev.is_some() {
                        "cannot have"
                    } else {
                        "needs"
                    }
                ),
            ));
        }
        if let Some(delegation) = &self.delegation {
            if delegation.body().agent != self.account {
                return Err(invalid(
                    "delegation",
                    format!(
                        "is {}'s, not the account {}'s",
                        delegation.body().agent,
                        self.account
                    ),
                ));
            }
            if matches!(self.action, Action::Credit(_)) {
                return Err(invalid(
                    "delegation",
                    "a delegate signs locks and top-ups only".into(),
                ));
            }
        }
        if let Action::Credit(credential) = &self.action
            && credential.holder() != self.account
        {
            return Err(invalid(
                "action.credential",
                format!(
                    "is held by {}, not by the account {}",
                    credential.holder(),
                    self.account
                ),
            ));
        }
        Ok(())
    }

    fn author(&self) -> Option<AgoraId> {
        Some(
            self.delegation
                .as_ref()
                .map_or(self.account, |d| d.body().delegate),
        )
    }
}

impl Action {
    /// The lock terms of a lock or a top-up (`None` for a credit).
    pub fn lock_terms(&self) -> Option<&LockTerms> {
        match self {
            Self::Lock(terms) => Some(terms),
            Self::TopUp(top_up) => Some(&top_up.lock),
            Self::Credit(_) => None,
        }
    }
}

impl ChainOp {
    /// What a delegation must allow for this op: a lease for a lock, an extension for a
    /// top-up (`None` for a credit, which only the agent signs).
    pub fn delegated_kind(&self) -> Option<OpKind> {
        match self.action {
            Action::Lock(_) => Some(OpKind::Lease),
            Action::TopUp(_) => Some(OpKind::Extend),
            Action::Credit(_) => None,
        }
    }
}

/// A claim of free-tier grant `index` of `epoch` for `account`. Signed by the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreeTierClaim {
    /// The account credited (the signer).
    pub account: AgoraId,
    /// The epoch (validators vote only in their current one).
    pub epoch: u64,
    /// The pool slot, below the genesis cap. Clients pick one at random and try another
    /// when told it is taken.
    pub index: u32,
}

impl SignedKind for FreeTierClaim {
    const DOMAIN: &'static str = "agora/quota-free-tier/v1";
    const MAX_PAYLOAD_BYTES: usize = 64;

    fn author(&self) -> Option<AgoraId> {
        Some(self.account)
    }
}

/// A provider's settlement of a lock with its usage receipt: the receipt's cost (at most the
/// lock) moves to spent, the rest returns. Signed by the provider (the receipt's signer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settle {
    /// The account (the receipt's agent).
    pub account: AgoraId,
    /// The chain position of the lock.
    pub lock_seq: u64,
    /// The digest of the lock op (binds the settlement to that exact lock).
    pub lock: Digest,
    /// The provider's receipt for the lock's lease.
    pub receipt: Signed<UsageReceipt>,
}

impl SignedKind for Settle {
    const DOMAIN: &'static str = "agora/quota-settle/v1";
    const MAX_PAYLOAD_BYTES: usize = Signed::<UsageReceipt>::MAX_WIRE_BYTES + 128;

    fn validate(&self) -> Result<(), DecodeError> {
        if self.receipt.body().agent != self.account {
            return Err(invalid(
                "receipt.agent",
                format!(
                    "is {}, not the account {}",
                    self.receipt.body().agent,
                    self.account
                ),
            ));
        }
        Ok(())
    }

    fn author(&self) -> Option<AgoraId> {
        Some(self.receipt.body().provider)
    }
}

/// The return of a lock that was not settled in time. Unsigned: its only authority is the
/// time, which each validator reads from its own clock (`now ≥ expires_at + settle_grace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unlock {
    /// The account.
    pub account: AgoraId,
    /// The chain position of the lock.
    pub lock_seq: u64,
    /// The digest of the lock op.
    pub lock: Digest,
}

/// The return of a lock whose provider refused its lease: the provider's signed refusal of
/// the request (whose id is the lock's lease) is the authority; the envelope is unsigned.
/// Only a lease's first lock at a provider is released so (a top-up means the provider
/// granted the lease).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The account.
    pub account: AgoraId,
    /// The chain position of the lock.
    pub lock_seq: u64,
    /// The digest of the lock op.
    pub lock: Digest,
    /// The lock's provider's refusal of the lease request (signature checked on decode).
    pub refusal: Signed<LeaseRefusal>,
}

/// An agent's lock or top-up certified above its balance under its owner's approval.
/// Unsigned envelope: the op is the agent's, the approval the owner's (both signatures
/// checked on decode); validators check that the approval's signer is an owner the
/// account's credited attestations name, and that it covers the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovedLock {
    /// The agent's lock or top-up, exactly as it signed it.
    pub op: Signed<ChainOp>,
    /// The owner's approval of the lease request the lock pays for (of a top-up: of the
    /// top-up itself, named by its digest).
    pub approval: Signed<Approval>,
}

/// An operation the committee certifies.
///
/// The variant index is the wire tag: new variants go at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// An entry of the agent's chain.
    Chain(Signed<ChainOp>),
    /// A free-tier grant from the epoch's pool.
    FreeTier(Signed<FreeTierClaim>),
    /// A lock settled by its provider.
    Settle(Signed<Settle>),
    /// A lapsed lock returned.
    Unlock(Unlock),
    /// A lock returned because its provider refused the lease.
    Release(Release),
    /// A lock or top-up above the agent's balance, under its owner's approval.
    Approved(ApprovedLock),
}

/// A `Signed` envelope around a payload: version, signer, length varint, signature.
const ENVELOPE: usize = 1 + 32 + 5 + 64;

/// The largest encoded [`Op`]: its tag, a length prefix and the largest signed op.
pub const MAX_OP_BYTES: usize = 1 + 5 + ENVELOPE + ChainOp::MAX_PAYLOAD;

const _: () = assert!(Signed::<Settle>::MAX_WIRE_BYTES < MAX_OP_BYTES - 6);
const _: () = assert!(Signed::<ChainOp>::MAX_WIRE_BYTES <= MAX_OP_BYTES - 6);
// A delegated top-up (the largest delegated op) fits the payload bound a credit sets.
const _: () = assert!(Signed::<Delegation>::MAX_WIRE_BYTES + 256 < ChainOp::MAX_PAYLOAD);
const _: () = assert!(32 + 10 + 32 + Signed::<LeaseRefusal>::MAX_WIRE_BYTES < MAX_OP_BYTES - 6);
// An approved delegated top-up fits too.
const _: () = assert!(
    Signed::<Delegation>::MAX_WIRE_BYTES + 256 + ENVELOPE + Signed::<Approval>::MAX_WIRE_BYTES
        < MAX_OP_BYTES - 6
);

impl Op {
    /// The account it concerns (a pool grant's beneficiary).
    pub fn account(&self) -> AgoraId {
        match self {
            Self::Chain(op) => op.body().account,
            Self::FreeTier(claim) => claim.body().account,
            Self::Settle(settle) => settle.body().account,
            Self::Unlock(unlock) => unlock.account,
            Self::Release(release) => release.account,
            Self::Approved(approved) => approved.op.body().account,
        }
    }

    /// The agent's chain op it certifies: its own, or the one an approval covers.
    pub fn chain(&self) -> Option<&Signed<ChainOp>> {
        match self {
            Self::Chain(op) => Some(op),
            Self::Approved(approved) => Some(&approved.op),
            _ => None,
        }
    }

    /// The owner's approval an approved lock carries.
    pub fn approval(&self) -> Option<&Signed<Approval>> {
        match self {
            Self::Approved(approved) => Some(&approved.approval),
            _ => None,
        }
    }

    /// The digest that names the op in its account: the next chain op's `prev`, and the
    /// `lock` a closing names. The op's own [`digest`](Self::digest), except for an
    /// approved lock, named as the plain lock it wraps (so locks signed after it, before
    /// anyone knew an approval was needed, still follow it).
    pub fn chain_digest(&self) -> Digest {
        match self {
            Self::Approved(approved) => Self::Chain(approved.op.clone()).digest(),
            op => op.digest(),
        }
    }

    /// The slot it takes.
    pub fn slot(&self) -> Slot {
        match self {
            Self::Chain(op) => Slot::Seq {
                account: op.body().account,
                seq: op.body().seq,
            },
            Self::FreeTier(claim) => Slot::Pool {
                epoch: claim.body().epoch,
                index: claim.body().index,
            },
            Self::Settle(settle) => Slot::Close {
                account: settle.body().account,
                lock_seq: settle.body().lock_seq,
            },
            Self::Unlock(unlock) => Slot::Close {
                account: unlock.account,
                lock_seq: unlock.lock_seq,
            },
            Self::Release(release) => Slot::Close {
                account: release.account,
                lock_seq: release.lock_seq,
            },
            Self::Approved(approved) => Slot::Seq {
                account: approved.op.body().account,
                seq: approved.op.body().seq,
            },
        }
    }

    /// The op's name: SHA-256 of its canonical encoding, hashed as it is encoded (no copy).
    pub fn digest(&self) -> Digest {
        // Hashing cannot fail and our types always serialize; a failure would only give a
        // digest no validator signs.
        let hash = postcard::serialize_with_flavor(self, HashFlavor(Sha256::new()))
            .unwrap_or_else(|_| Sha256::new());
        Digest(hash.finalize().into())
    }

    /// A short lowercase name of the kind, for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Chain(op) => match op.body().action {
                Action::Credit(_) => "credit",
                Action::Lock(_) => "lock",
                Action::TopUp(_) => "top_up",
            },
            Self::FreeTier(_) => "free_tier",
            Self::Settle(_) => "settle",
            Self::Unlock(_) => "unlock",
            Self::Release(_) => "release",
            Self::Approved(_) => "approved_lock",
        }
    }
}

/// A postcard flavor that feeds SHA-256 instead of a buffer.
struct HashFlavor(Sha256);

impl postcard::ser_flavors::Flavor for HashFlavor {
    type Output = Sha256;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.update(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.update([data]);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Sha256> {
        Ok(self.0)
    }
}

/// What makes a credit unique: the leaf attestation's issuer and nonce (its subject is the
/// account).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CreditKey {
    /// The leaf attestation's issuer.
    pub issuer: AgoraId,
    /// Its nonce.
    pub nonce: [u8; NONCE_LEN],
}

impl CreditKey {
    /// The key of `credential`'s leaf.
    pub fn of(credential: &Credential) -> Self {
        let leaf = credential.leaf().body();
        Self {
            issuer: leaf.issuer,
            nonce: leaf.nonce,
        }
    }
}

fn invalid(field: &'static str, reason: String) -> DecodeError {
    DecodeError::InvalidField { field, reason }
}

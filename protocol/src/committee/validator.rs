//! [`Validator`]: one committee member's sans-IO state machine.
//!
//! ```text
//! Request ──handle_request(now, &req)──▶ Outcome::Persist(p) ──store p.record()──▶ release(p) ──▶ Vote
//!                                   ├──▶ Outcome::Vote(v)      (voted for this op before: send v again)
//!                                   ├──▶ Outcome::Pending      (the vote is being stored: answer later)
//!                                   └──▶ Outcome::Refused(r)
//! Certificate ──handle_certificate(&cert)──▶ Applied / ApplyError
//! now ──handle_timeout(now)──▶ forgets pool votes of past epochs; poll_timeout() says when
//! ```
//!
//! **Persist before answering.** A new vote comes out as a [`Persist`]: the driver stores
//! [`Persist::record`] durably (fsync, an atomic batch) and only then calls
//! [`Validator::release`] for the signed vote it may send. After a crash the driver rebuilds
//! the validator with [`Validator::restore`] from every stored record (and the certificates
//! it stored), so a vote that ever left the node is known again and no other op in its slot
//! is ever signed. The state machine marks a vote as taken the moment it is made, so a second
//! request for the slot, even before `release`, is refused (another op) or told `Pending`.
//!
//! Call order: `handle_request` / `handle_certificate` / `handle_timeout` as inputs arrive,
//! `release` after each stored `Persist`. Nothing here reads a clock or does I/O.

use std::collections::BTreeMap;

use crate::codec::EncodeError;
use crate::id::AgoraId;
use crate::signed::{Digest, Signed, Signer, Verifier};
use crate::time::Timestamp;

use super::account::{Accounts, Applied, ApplyError};
use super::certificate::Certificate;
use super::genesis::Committee;
use super::message::Request;
use super::op::Slot;
use super::refusal::Refusal;
use super::rules;
use super::vote::{RecordError, Vote, VoteRecord};

/// What [`Validator::handle_request`] decided.
#[derive(Debug)]
#[must_use = "a new vote must be stored, then released and sent"]
pub enum Outcome {
    /// A new vote: store it, then [`Validator::release`] it.
    Persist(Persist),
    /// This validator voted for this very op before (and stored it): send the vote again.
    Vote(Signed<Vote>),
    /// This validator voted for this op and the vote is not stored yet: it goes out when
    /// released; the client will ask again if it misses it.
    Pending,
    /// No vote.
    Refused(Refusal),
}

/// A new vote that must be stored before it is sent.
#[derive(Debug)]
#[must_use = "store the record, then call Validator::release"]
pub struct Persist {
    record: VoteRecord,
}

impl Persist {
    /// What to store, durably, before releasing the vote.
    pub fn record(&self) -> &VoteRecord {
        &self.record
    }

    /// The record's bytes for the store.
    ///
    /// # Errors
    /// [`EncodeError`] (not reachable for records a validator made).
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        self.record.encode()
    }
}

/// Why a validator could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The signing key is not a validator of the committee.
    #[error("{0} is not a validator of this committee")]
    NotMember(AgoraId),
    /// A stored record is not this validator's, or is of another committee.
    #[error("stored vote in {slot} is by {signer} for committee {genesis}, not ours")]
    Foreign {
        /// The slot.
        slot: Slot,
        /// Its signer.
        signer: AgoraId,
        /// Its genesis digest.
        genesis: Digest,
    },
    /// A stored record does not check.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Two stored records for one slot: this validator equivocated (or its store is corrupt).
    #[error("two stored votes in {0}")]
    Equivocation(Slot),
}

struct Held {
    record: VoteRecord,
    durable: bool,
}

/// One validator: its view of the accounts and the votes it has cast but not yet seen
/// certified.
pub struct Validator<S> {
    signer: S,
    id: AgoraId,
    accounts: Accounts,
    votes: BTreeMap<Slot, Held>,
}

impl<S: Signer> Validator<S> {
    /// A fresh validator (no votes, no accounts).
    ///
    /// # Errors
    /// [`RestoreError::NotMember`] when `signer` is not in the committee.
    pub fn new(committee: Committee, signer: S) -> Result<Self, RestoreError> {
        Self::restore(committee, signer, Vec::new(), Vec::new())
    }

    /// Rebuilds a validator after a restart from every vote record it stored and the
    /// certificates it stored (in any order).
    ///
    /// # Errors
    /// [`RestoreError`]: not a member, a record of another signer or committee, or two
    /// records in one slot.
    pub fn restore(
        committee: Committee,
        signer: S,
        records: impl IntoIterator<Item = VoteRecord>,
        certificates: impl IntoIterator<Item = Certificate>,
    ) -> Result<Self, RestoreError> {
        let id = signer.id();
        if !committee.is_member(&id) {
            return Err(RestoreError::NotMember(id));
        }
        let mut validator = Self {
            signer,
            id,
            accounts: Accounts::new(committee),
            votes: BTreeMap::new(),
        };
        for record in records {
            record.check()?;
            let vote = record.vote.body();
            if record.vote.signer() != id || vote.genesis != validator.accounts.committee().digest()
            {
                return Err(RestoreError::Foreign {
                    slot: vote.slot,
                    signer: record.vote.signer(),
                    genesis: vote.genesis,
                });
            }
            let slot = vote.slot;
            match validator.votes.get(&slot) {
                Some(held) if held.record.vote.body().op != vote.op => {
                    return Err(RestoreError::Equivocation(slot));
                }
                Some(_) => {}
                None => {
                    validator.votes.insert(
                        slot,
                        Held {
                            record,
                            durable: true,
                        },
                    );
                }
            }
        }
        let certificates: Vec<Certificate> = certificates.into_iter().collect();
        validator.apply_all(&certificates);
        Ok(validator)
    }

    /// This validator's id.
    pub fn id(&self) -> AgoraId {
        self.id
    }

    /// Its view of the accounts.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The votes it holds (cast, not yet seen certified), by slot.
    pub fn votes(&self) -> impl Iterator<Item = (&Slot, &VoteRecord)> {
        self.votes.iter().map(|(slot, held)| (slot, &held.record))
    }

    /// Handles a client's request at `now`: applies its certificates, then votes or refuses.
    pub fn handle_request(&mut self, now: Timestamp, request: &Request) -> Outcome {
        self.apply_all(&request.proofs);
        let op = &request.op;
        let slot = op.slot();
        let digest = op.digest();
        if let Some(held) = self.votes.get(&slot) {
            let voted = held.record.vote.body().op;
            return if voted != digest {
                Outcome::Refused(Refusal::Conflict { slot, voted })
            } else if held.durable {
                Outcome::Vote(held.record.vote.clone())
            } else {
                Outcome::Pending
            };
        }
        if let Err(refusal) = rules::check(&self.accounts, op, now) {
            return Outcome::Refused(refusal);
        }
        let vote = Vote {
            genesis: self.accounts.committee().digest(),
            slot,
            op: digest,
        };
        #[expect(
            clippy::expect_used,
            reason = "a vote always validates and is at most 107 bytes, within its 128-byte bound"
        )]
        let vote = Signed::sign(vote, &self.signer).expect("a vote always signs");
        let record = VoteRecord {
            op: op.clone(),
            vote,
        };
        self.votes.insert(
            slot,
            Held {
                record: record.clone(),
                durable: false,
            },
        );
        Outcome::Persist(Persist { record })
    }

    /// Releases a vote whose record the driver stored durably: the signed vote to send.
    pub fn release(&mut self, persist: Persist) -> Signed<Vote> {
        let slot = persist.record.slot();
        if let Some(held) = self.votes.get_mut(&slot)
            && held.record.vote == persist.record.vote
        {
            held.durable = true;
        }
        persist.record.vote
    }

    /// Applies a certificate (from a client, a peer or the store) to this validator's view.
    ///
    /// # Errors
    /// [`ApplyError::Behind`] when earlier certificates of the account are missing.
    pub fn handle_certificate(&mut self, certificate: &Certificate) -> Result<Applied, ApplyError> {
        let applied = self.accounts.apply(certificate)?;
        self.forget_settled(certificate.slot());
        Ok(applied)
    }

    /// Forgets pool votes of epochs before the current one (they can no longer be voted on).
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let Some(current) = self.accounts.committee().epoch_at(now) else {
            return;
        };
        self.votes.retain(|slot, _| match slot {
            Slot::Pool { epoch, .. } => *epoch >= current,
            Slot::Seq { .. } | Slot::Close { .. } => true,
        });
    }

    /// When [`Validator::handle_timeout`] has work next: the start of the next epoch.
    pub fn poll_timeout(&self, now: Timestamp) -> Option<Timestamp> {
        let committee = self.accounts.committee();
        let next = committee.epoch_at(now).map_or(0, |e| e.saturating_add(1));
        Some(committee.epoch_start(next))
    }

    /// Applies certificates in dependency order (each account's chain by `seq` first).
    fn apply_all(&mut self, certificates: &[Certificate]) {
        let mut ordered: Vec<&Certificate> = certificates.iter().collect();
        ordered.sort_by_key(|c| match c.slot() {
            // Chain ops first, in order; closings (which need their lock) after.
            Slot::Seq { account, seq } => (0u8, Some(account), seq),
            Slot::Close { account, lock_seq } => (1, Some(account), lock_seq),
            Slot::Pool { epoch, .. } => (2, None, epoch),
        });
        for certificate in ordered {
            // A certificate that does not apply (yet) is for a later request to carry again.
            let _ = self.handle_certificate(certificate);
        }
    }

    /// Drops held votes the certificate made moot: chain positions up to it, or its closing.
    fn forget_settled(&mut self, slot: Slot) {
        match slot {
            Slot::Seq { account, seq } => {
                let from = Slot::Seq { account, seq: 0 };
                let to = Slot::Seq { account, seq };
                let done: Vec<Slot> = self.votes.range(from..=to).map(|(s, _)| *s).collect();
                for slot in done {
                    self.votes.remove(&slot);
                }
            }
            Slot::Close { .. } => {
                self.votes.remove(&slot);
            }
            // Pool votes stay until their epoch is over: the pool slot is global.
            Slot::Pool { .. } => {}
        }
    }
}

impl<S> core::fmt::Debug for Validator<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Validator")
            .field("id", &self.id)
            .field("accounts", &self.accounts.iter().count())
            .field("votes", &self.votes.len())
            .finish_non_exhaustive()
    }
}

/// Decodes stored vote records (for [`Validator::restore`]).
///
/// # Errors
/// The first record that does not decode.
pub fn decode_records<'a>(
    stored: impl IntoIterator<Item = &'a [u8]>,
    verifier: &impl Verifier,
) -> Result<Vec<VoteRecord>, RecordError> {
    stored
        .into_iter()
        .map(|bytes| VoteRecord::decode(bytes, verifier))
        .collect()
}

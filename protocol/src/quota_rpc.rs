//! What nodes exchange with the quota committee's validators point to point (libp2p
//! request-response `/agora/quota/1`).
//!
//! ```text
//! client (gateway, provider, signup node) ──Request::Vote(committee Request)──▶ validator
//!                                          ◀── Response::Answer(Vote | Refused)
//! client, once certified ──Request::Certified(Certificate)──▶ every validator ◀── Stored
//! anyone ──Request::Account(agent)──▶ validator ◀── Response::Account(AccountView)
//! ```
//!
//! Every message is one postcard value, canonical and bounded ([`MAX_REQUEST_BYTES`],
//! [`MAX_RESPONSE_BYTES`]). Nested committee messages travel as their own encodings and are
//! decoded with their own decoders: ops' signatures are verified as they decode, votes with
//! the caller's [`Verifier`], certificates against the caller's [`Committee`]. An
//! [`AccountView`]'s figures are one validator's word; only its head certificate is proof
//! (of the chain position and head digest the agent's next op must name).

use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError, EncodeError};
use crate::committee::message::{MAX_ANSWER_BYTES, MAX_REQUEST_BYTES as MAX_VOTE_REQUEST_BYTES};
use crate::committee::{
    Answer, Certificate, CertificateError, Committee, MAX_CERTIFICATE_BYTES,
    Request as VoteRequest, RequestError,
};
use crate::id::AgoraId;
use crate::lease::LeaseId;
use crate::signed::{Digest, SignedError, Verifier};
use crate::time::Timestamp;

/// Most locks an [`AccountView`] lists (the genesis bounds open locks per account lower).
pub const MAX_VIEW_LOCKS: usize = 256;

/// Longest reason in a [`Response::Refused`], bytes.
pub const MAX_REASON_BYTES: usize = 512;

/// Largest encoded [`Request`].
pub const MAX_REQUEST_BYTES: usize = MAX_VOTE_REQUEST_BYTES + 16;

/// One lock as listed in an [`AccountView`]: 10 + 32 + 32 + 10 + 10 + 32 + 1 bytes at most.
const MAX_LOCK_VIEW_BYTES: usize = 128;

/// Largest encoded [`Response`]: an account view with its head certificate and every lock.
pub const MAX_RESPONSE_BYTES: usize =
    MAX_CERTIFICATE_BYTES + MAX_VIEW_LOCKS * MAX_LOCK_VIEW_BYTES + MAX_ANSWER_BYTES + 256;

/// A client's request to a validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// "Vote for this op."
    Vote(VoteRequest),
    /// "This op is certified": the validator applies and keeps it.
    Certified(Certificate),
    /// "What do you know of this account?"
    Account(AgoraId),
}

/// A validator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The answer to a [`Request::Vote`].
    Answer(Answer),
    /// A [`Request::Certified`] was taken.
    Stored,
    /// The answer to a [`Request::Account`].
    Account(AccountView),
    /// The request was not handled (not a validator, busy, malformed); the reason is for
    /// logs.
    Refused(String),
}

/// One open lock, as a validator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockView {
    /// The chain position that made it.
    pub seq: u64,
    /// The lease it pays for.
    pub lease: LeaseId,
    /// The provider that may settle it.
    pub provider: AgoraId,
    /// Micro-credits locked.
    pub amount_micro: u64,
    /// When it lapses.
    pub expires_at: Timestamp,
    /// The digest that names the lock op in the account ([`crate::committee::Op::chain_digest`]).
    pub op: Digest,
    /// Whether the agent's owner approved it (it holds the owner's approval, not the
    /// balance).
    pub approved: bool,
}

/// What one validator knows of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    /// The certificate of the account's last chain op (`None` before the first): proves
    /// the next position (its seq + 1) and the head digest.
    pub head: Option<Certificate>,
    /// Micro-credits credited from attestations.
    pub credited_micro: u64,
    /// Micro-credits granted by the free tier.
    pub granted_micro: u64,
    /// Micro-credits charged by settlements.
    pub spent_micro: u64,
    /// Micro-credits charged by settlements of owner-approved locks (outside the balance).
    pub approved_spent_micro: u64,
    /// Open locks, by position.
    pub locks: Vec<LockView>,
}

impl AccountView {
    /// The next chain position, as the head certificate proves it.
    pub fn next_seq(&self) -> u64 {
        self.head.as_ref().map_or(0, |c| match c.slot() {
            crate::committee::Slot::Seq { seq, .. } => seq.saturating_add(1),
            crate::committee::Slot::Close { .. } | crate::committee::Slot::Pool { .. } => 0,
        })
    }

    /// The digest the next chain op must name as `prev`.
    pub fn head_digest(&self) -> Option<Digest> {
        self.head.as_ref().map(|c| c.op().chain_digest())
    }

    /// Micro-credits open locks hold against the balance (not the owner-approved ones).
    pub fn locked_micro(&self) -> u64 {
        self.locks
            .iter()
            .filter(|l| !l.approved)
            .fold(0u64, |sum, l| sum.saturating_add(l.amount_micro))
    }

    /// What may still be locked: credited + granted − spent − locked (never negative).
    pub fn available_micro(&self) -> u64 {
        self.credited_micro
            .saturating_add(self.granted_micro)
            .saturating_sub(self.spent_micro.saturating_add(self.locked_micro()))
    }
}

#[derive(Serialize, Deserialize)]
enum RequestWire {
    Vote(Vec<u8>),
    Certified(Vec<u8>),
    Account(AgoraId),
}

#[derive(Serialize, Deserialize)]
struct AccountWire {
    head: Option<Vec<u8>>,
    credited_micro: u64,
    granted_micro: u64,
    spent_micro: u64,
    approved_spent_micro: u64,
    locks: Vec<LockView>,
}

#[derive(Serialize, Deserialize)]
enum ResponseWire {
    Answer(Vec<u8>),
    Stored,
    Account(AccountWire),
    Refused(String),
}

/// Why bytes are not a quota message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The envelope does not decode or breaks a bound.
    #[error("quota message does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The vote request inside does not decode or verify.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// A certificate inside does not decode or verify.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// The answer inside does not decode or its vote does not verify.
    #[error("answer does not decode: {0}")]
    Answer(#[from] SignedError),
    /// More locks than [`MAX_VIEW_LOCKS`], or a reason longer than [`MAX_REASON_BYTES`].
    #[error("{0} over its bound")]
    TooLong(&'static str),
}

impl Request {
    /// Canonical bytes.
    ///
    /// # Errors
    /// [`EncodeError`] above the bounds.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let wire = match self {
            Self::Vote(request) => RequestWire::Vote(request.encode()?),
            Self::Certified(certificate) => RequestWire::Certified(certificate.encode()?),
            Self::Account(account) => RequestWire::Account(*account),
        };
        codec::encode(&wire, MAX_REQUEST_BYTES)
    }

    /// Decodes a request, verifying signatures and certificates against `committee`.
    ///
    /// # Errors
    /// [`RpcError`].
    pub fn decode(
        bytes: &[u8],
        committee: &Committee,
        verifier: &impl Verifier,
    ) -> Result<Self, RpcError> {
        Ok(
            match codec::decode::<RequestWire>(bytes, MAX_REQUEST_BYTES)? {
                RequestWire::Vote(inner) => {
                    Self::Vote(VoteRequest::decode(&inner, committee, verifier)?)
                }
                RequestWire::Certified(inner) => {
                    Self::Certified(Certificate::decode(&inner, committee, verifier)?)
                }
                RequestWire::Account(account) => Self::Account(account),
            },
        )
    }
}

impl Response {
    /// Canonical bytes.
    ///
    /// # Errors
    /// [`EncodeError`] above the bounds.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let wire = match self {
            Self::Answer(answer) => ResponseWire::Answer(answer.encode()?),
            Self::Stored => ResponseWire::Stored,
            Self::Account(view) => {
                if view.locks.len() > MAX_VIEW_LOCKS {
                    return Err(EncodeError::InvalidField {
                        field: "locks",
                        reason: format!("{} locks, at most {MAX_VIEW_LOCKS}", view.locks.len()),
                    });
                }
                ResponseWire::Account(AccountWire {
                    head: view.head.as_ref().map(Certificate::encode).transpose()?,
                    credited_micro: view.credited_micro,
                    granted_micro: view.granted_micro,
                    spent_micro: view.spent_micro,
                    approved_spent_micro: view.approved_spent_micro,
                    locks: view.locks.clone(),
                })
            }
            Self::Refused(reason) => {
                let mut reason = reason.clone();
                if reason.len() > MAX_REASON_BYTES {
                    let mut cut = MAX_REASON_BYTES;
                    while !reason.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    reason.truncate(cut);
                }
                ResponseWire::Refused(reason)
            }
        };
        codec::encode(&wire, MAX_RESPONSE_BYTES)
    }

    /// Decodes a response: a vote's signature with `verifier`, a head certificate against
    /// `committee`.
    ///
    /// # Errors
    /// [`RpcError`].
    pub fn decode(
        bytes: &[u8],
        committee: &Committee,
        verifier: &impl Verifier,
    ) -> Result<Self, RpcError> {
        Ok(
            match codec::decode::<ResponseWire>(bytes, MAX_RESPONSE_BYTES)? {
                ResponseWire::Answer(inner) => Self::Answer(Answer::decode(&inner, verifier)?),
                ResponseWire::Stored => Self::Stored,
                ResponseWire::Account(wire) => {
                    if wire.locks.len() > MAX_VIEW_LOCKS {
                        return Err(RpcError::TooLong("locks"));
                    }
                    let head = wire
                        .head
                        .map(|bytes| Certificate::decode(&bytes, committee, verifier))
                        .transpose()?;
                    Self::Account(AccountView {
                        head,
                        credited_micro: wire.credited_micro,
                        granted_micro: wire.granted_micro,
                        spent_micro: wire.spent_micro,
                        approved_spent_micro: wire.approved_spent_micro,
                        locks: wire.locks,
                    })
                }
                ResponseWire::Refused(reason) => {
                    if reason.len() > MAX_REASON_BYTES {
                        return Err(RpcError::TooLong("reason"));
                    }
                    Self::Refused(reason)
                }
            },
        )
    }
}

#[cfg(test)]
#[path = "quota_rpc_tests.rs"]
mod tests;

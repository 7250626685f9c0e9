//! [`Certificate`]: an op with `2f + 1` validators' votes, verified against a [`Committee`].
//!
//! # Wire format
//!
//! ```text
//! op     Op (postcard: variant tag, then the signed op's wire bytes behind a length prefix)
//! votes  varint count (= 2f + 1), then per vote: validator [u8; 32] | signature [u8; 64]
//! ```
//!
//! Votes are in strictly ascending validator order, so a set of votes has one encoding; a
//! vote's body (genesis digest, slot, op digest) is not repeated: the verifier rebuilds it
//! from the op and its committee. Verifying a certificate is `2f + 1` signature checks over
//! one shared signing input, in which only the signer's 32 bytes change.

use core::fmt;

use serde::ser::SerializeTuple as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{self, DecodeError, EncodeError};
use crate::id::AgoraId;
use crate::signed::{
    Digest, SIGNATURE_LEN, Signature, SignedError, SignedKind, Verifier, signing_input,
};

use super::genesis::{Committee, MAX_VALIDATORS};
use super::op::{MAX_OP_BYTES, Op, Slot};
use super::vote::Vote;

/// One validator's signature in a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoteSig {
    /// The validator.
    pub validator: AgoraId,
    /// Its signature over the [`Vote`].
    pub signature: Signature,
}

/// The largest encoded [`Certificate`] (a full committee's worth of votes).
pub const MAX_CERTIFICATE_BYTES: usize = MAX_OP_BYTES + 5 + MAX_VALIDATORS * (32 + SIGNATURE_LEN);

/// Why bytes are not a certificate of a committee.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The bytes do not decode, or the op's own signature does not verify.
    #[error("certificate does not decode: {0}")]
    Decode(#[from] SignedError),
    /// Not exactly a quorum of votes.
    #[error("{found} votes, a certificate has exactly {quorum}")]
    WrongCount {
        /// Votes present.
        found: usize,
        /// `2f + 1`.
        quorum: usize,
    },
    /// Votes are not in strictly ascending validator order (or one is repeated).
    #[error("votes are not in strictly ascending validator order")]
    Unordered,
    /// A signer is not a validator of the committee.
    #[error("{0} is not a validator of this committee")]
    NotMember(AgoraId),
    /// A vote's signature does not verify.
    #[error("the vote of {0} does not verify")]
    BadSignature(AgoraId),
}

impl From<DecodeError> for CertificateError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e.into())
    }
}

/// An op certified by a quorum of a committee's validators.
///
/// Values exist only after verification ([`Certificate::decode`],
/// [`UncheckedCertificate::verify`]) or assembly from verified votes (the
/// [`Aggregator`](super::Aggregator)), so holding one means `2f + 1` distinct validators of
/// [`Certificate::genesis`] signed this op in this slot.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    op: Op,
    digest: Digest,
    genesis: Digest,
    votes: Vec<VoteSig>,
}

/// A decoded certificate not yet checked against a committee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UncheckedCertificate {
    /// The op.
    pub op: Op,
    /// The votes, ascending by validator.
    pub votes: Vec<VoteSig>,
}

impl UncheckedCertificate {
    /// Checks the votes against `committee` with `verifier`.
    ///
    /// # Errors
    /// [`CertificateError`] other than `Decode`.
    pub fn verify(
        self,
        committee: &Committee,
        verifier: &impl Verifier,
    ) -> Result<Certificate, CertificateError> {
        let quorum = committee.quorum();
        if self.votes.len() != quorum {
            return Err(CertificateError::WrongCount {
                found: self.votes.len(),
                quorum,
            });
        }
        if self
            .votes
            .windows(2)
            .any(|w| matches!(w, [a, b] if a.validator >= b.validator))
        {
            return Err(CertificateError::Unordered);
        }
        if let Some(outsider) = self
            .votes
            .iter()
            .find(|v| !committee.is_member(&v.validator))
        {
            return Err(CertificateError::NotMember(outsider.validator));
        }
        let digest = self.op.digest();
        let Some(first) = self.votes.first() else {
            return Err(CertificateError::WrongCount { found: 0, quorum });
        };
        let mut input =
            VoteInput::new(committee.digest(), self.op.slot(), digest, &first.validator)?;
        for vote in &self.votes {
            input
                .verify(verifier, &vote.validator, &vote.signature)
                .map_err(|()| CertificateError::BadSignature(vote.validator))?;
        }
        Ok(Certificate {
            op: self.op,
            digest,
            genesis: committee.digest(),
            votes: self.votes,
        })
    }
}

impl Certificate {
    /// Decodes a certificate and verifies it against `committee`: the op's own signatures
    /// (strict ed25519, as every nested signed message), then `2f + 1` distinct members'
    /// votes with `verifier`.
    ///
    /// # Errors
    /// [`CertificateError`].
    pub fn decode(
        bytes: &[u8],
        committee: &Committee,
        verifier: &impl Verifier,
    ) -> Result<Self, CertificateError> {
        codec::decode::<UncheckedCertificate>(bytes, MAX_CERTIFICATE_BYTES)?
            .verify(committee, verifier)
    }

    /// Canonical bytes.
    ///
    /// # Errors
    /// [`EncodeError`] (not reachable for certificates within the bounds).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        codec::encode(self, MAX_CERTIFICATE_BYTES)
    }

    /// Assembles a certificate from votes the caller verified (sorted here).
    pub(crate) fn assemble(
        op: Op,
        digest: Digest,
        genesis: Digest,
        mut votes: Vec<VoteSig>,
    ) -> Self {
        votes.sort_by_key(|v| v.validator);
        Self {
            op,
            digest,
            genesis,
            votes,
        }
    }

    /// The certified op.
    pub fn op(&self) -> &Op {
        &self.op
    }

    /// The op's digest.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The slot it certifies.
    pub fn slot(&self) -> Slot {
        self.op.slot()
    }

    /// The genesis digest of the committee that certified it.
    pub fn genesis(&self) -> Digest {
        self.genesis
    }

    /// The votes, ascending by validator.
    pub fn votes(&self) -> &[VoteSig] {
        &self.votes
    }

    /// The certificate as unchecked parts (to re-verify against another committee).
    pub fn into_unchecked(self) -> UncheckedCertificate {
        UncheckedCertificate {
            op: self.op,
            votes: self.votes,
        }
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("slot", &self.slot())
            .field("kind", &self.op.kind())
            .field("op", &self.digest)
            .field("signers", &self.votes.len())
            .finish()
    }
}

/// Encoded as its [`UncheckedCertificate`] parts.
impl Serialize for Certificate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.op)?;
        t.serialize_element(&self.votes)?;
        t.end()
    }
}

/// A validator id and a signature, 96 bytes with no length prefix (the signature as two
/// 32-byte halves: serde has no 64-byte arrays).
impl Serialize for VoteSig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (lo, hi) = self.signature.0.split_at(32);
        let mut t = s.serialize_tuple(3)?;
        t.serialize_element(&self.validator)?;
        t.serialize_element(&<[u8; 32]>::try_from(lo).unwrap_or_default())?;
        t.serialize_element(&<[u8; 32]>::try_from(hi).unwrap_or_default())?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for VoteSig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (validator, lo, hi) = <(AgoraId, [u8; 32], [u8; 32])>::deserialize(d)?;
        let mut signature = [0u8; SIGNATURE_LEN];
        let (a, b) = signature.split_at_mut(32);
        a.copy_from_slice(&lo);
        b.copy_from_slice(&hi);
        Ok(Self {
            validator,
            signature: Signature(signature),
        })
    }
}

/// The signing input of a vote, built once per op; only the signer bytes change per check.
pub(crate) struct VoteInput {
    input: Vec<u8>,
    signer_at: usize,
}

impl VoteInput {
    /// The input for a vote on `op` in `slot` of committee `genesis`; `placeholder` is any
    /// id (the signer's 32 bytes, just before the payload, are replaced at each check).
    pub(crate) fn new(
        genesis: Digest,
        slot: Slot,
        op: Digest,
        placeholder: &AgoraId,
    ) -> Result<Self, DecodeError> {
        let vote = Vote { genesis, slot, op };
        let payload = codec::encode(&vote, Vote::MAX_PAYLOAD_BYTES)
            .map_err(|e| DecodeError::Malformed(e.to_string()))?;
        let input = signing_input::<Vote>(placeholder, &payload);
        let signer_at = input.len() - payload.len() - 32;
        Ok(Self { input, signer_at })
    }

    /// Verifies `signature` by `signer` over this vote.
    pub(crate) fn verify(
        &mut self,
        verifier: &impl Verifier,
        signer: &AgoraId,
        signature: &Signature,
    ) -> Result<(), ()> {
        let Some(slot) = self.input.get_mut(self.signer_at..self.signer_at + 32) else {
            return Err(());
        };
        slot.copy_from_slice(signer.as_bytes());
        verifier
            .verify(signer, &self.input, signature)
            .map_err(|_| ())
    }
}

//! What clients and validators exchange: a [`Request`] (an op and the certificates the
//! validator may lack) and an [`Answer`] (a vote or a refusal).

use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError, EncodeError};
use crate::signed::{Signed, SignedError, SignedKind, Verifier};

use super::certificate::{
    Certificate, CertificateError, MAX_CERTIFICATE_BYTES, UncheckedCertificate,
};
use super::genesis::Committee;
use super::op::{MAX_OP_BYTES, Op};
use super::refusal::Refusal;
use super::vote::Vote;

/// Most certificates one request carries.
pub const MAX_PROOFS: usize = 8;

/// The largest encoded [`Request`].
pub const MAX_REQUEST_BYTES: usize = MAX_OP_BYTES + 1 + MAX_PROOFS * (5 + MAX_CERTIFICATE_BYTES);

/// The largest encoded [`Answer`].
pub const MAX_ANSWER_BYTES: usize = 1 + 5 + Signed::<Vote>::MAX_WIRE_BYTES + 256;

/// "Vote for this op." Sent by a client to every validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The op.
    pub op: Op,
    /// Certificates the validator may lack, applied before the op is checked: for a chain
    /// op the previous position's, for a closing the lock's; after a
    /// [`Refusal::Behind`], the missing positions' (at most [`MAX_PROOFS`]).
    pub proofs: Vec<Certificate>,
}

#[derive(Serialize)]
struct RequestRef<'a> {
    op: &'a Op,
    proofs: &'a [Certificate],
}

#[derive(Serialize, Deserialize)]
struct RequestWire {
    op: Op,
    proofs: Vec<UncheckedCertificate>,
}

/// Why bytes are not a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The bytes do not decode, or the op's signature does not verify.
    #[error("request does not decode: {0}")]
    Decode(#[from] SignedError),
    /// More than [`MAX_PROOFS`] certificates.
    #[error("{0} certificates, at most {MAX_PROOFS}")]
    TooManyProofs(usize),
    /// A certificate does not verify.
    #[error("certificate {index}: {error}")]
    Proof {
        /// Its position in the request.
        index: usize,
        /// What is wrong.
        error: CertificateError,
    },
}

impl From<DecodeError> for RequestError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e.into())
    }
}

impl Request {
    /// Canonical bytes.
    ///
    /// # Errors
    /// [`EncodeError`] above the bounds.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        if self.proofs.len() > MAX_PROOFS {
            return Err(EncodeError::InvalidField {
                field: "proofs",
                reason: format!("{} certificates, at most {MAX_PROOFS}", self.proofs.len()),
            });
        }
        codec::encode(
            &RequestRef {
                op: &self.op,
                proofs: &self.proofs,
            },
            MAX_REQUEST_BYTES,
        )
    }

    /// Decodes a request, verifying the op's signatures and every certificate against
    /// `committee` (votes with `verifier`).
    ///
    /// # Errors
    /// [`RequestError`].
    pub fn decode(
        bytes: &[u8],
        committee: &Committee,
        verifier: &impl Verifier,
    ) -> Result<Self, RequestError> {
        let wire: RequestWire = codec::decode(bytes, MAX_REQUEST_BYTES)?;
        if wire.proofs.len() > MAX_PROOFS {
            return Err(RequestError::TooManyProofs(wire.proofs.len()));
        }
        let proofs = wire
            .proofs
            .into_iter()
            .enumerate()
            .map(|(index, proof)| {
                proof
                    .verify(committee, verifier)
                    .map_err(|error| RequestError::Proof { index, error })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            op: wire.op,
            proofs,
        })
    }
}

/// A validator's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Its vote.
    Vote(Signed<Vote>),
    /// Why not.
    Refused(Refusal),
}

#[derive(Serialize, Deserialize)]
enum AnswerWire {
    Vote(Vec<u8>),
    Refused(Refusal),
}

/// [`AnswerWire`] borrowed, for encoding without copies (`&[u8]` and `Vec<u8>` encode alike).
#[derive(Serialize)]
enum AnswerRef<'a> {
    Vote(&'a [u8]),
    Refused(&'a Refusal),
}

impl Answer {
    /// Canonical bytes.
    ///
    /// # Errors
    /// [`EncodeError`] (not reachable).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let wire = match self {
            Self::Vote(vote) => AnswerRef::Vote(vote.as_bytes()),
            Self::Refused(refusal) => AnswerRef::Refused(refusal),
        };
        codec::encode(&wire, MAX_ANSWER_BYTES)
    }

    /// Decodes an answer, verifying a vote's signature with `verifier`.
    ///
    /// # Errors
    /// [`SignedError`].
    pub fn decode(bytes: &[u8], verifier: &impl Verifier) -> Result<Self, SignedError> {
        match codec::decode::<AnswerWire>(bytes, MAX_ANSWER_BYTES)? {
            AnswerWire::Vote(wire) => Ok(Self::Vote(Signed::decode(&wire, verifier)?)),
            AnswerWire::Refused(refusal) => Ok(Self::Refused(refusal)),
        }
    }
}

const _: () = assert!(Signed::<Vote>::MAX_WIRE_BYTES < MAX_ANSWER_BYTES);
const _: () = assert!(Vote::MAX_PAYLOAD_BYTES >= 1 + 32 + 1 + 32 + 10 + 32);

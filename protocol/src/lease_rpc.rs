//! What gateways and providers exchange point to point (libp2p request-response
//! `/agora/lease/1`), never over gossip.
//!
//! ```text
//! gateway ──Request::Propose(LeaseProposal)──────────▶ provider ──▶ Response::Answer(LeaseAnswer)
//! gateway ──Request::Operate(Signed<LeaseOp>)────────▶ provider ──▶ Response::Status | Refused
//! gateway ──Request::Query(LeaseId)──────────────────▶ provider ──▶ Response::Status | Refused
//! gateway ──Request::Extend { op, top_up }────────────▶ provider ──▶ Response::Status | Refused
//! gateway ──Request::ApprovedExtend { op, approval }──▶ provider ──▶ Response::Status | Refused
//! ```
//!
//! [`Request::Extend`] is an extension under a quota committee: the agent's signed `Extend`
//! with the committee's certificate of the agent's top-up lock that pays for it.
//! [`Request::ApprovedExtend`] is an extension above the agent's spending limit that the
//! provider refused `approval_required`, back with the owner's approval of the same signed
//! operation.
//!
//! Both directions are one postcard frame each, bounded ([`MAX_REQUEST_BYTES`],
//! [`MAX_RESPONSE_BYTES`]); nested signed messages are verified as they are decoded, so a
//! decoded [`Request`] carries only messages whose signatures hold. What a provider does with
//! them (admission, operations) is the provider's business; the gateway only relays.
//!
//! [`Request::Query`] is unsigned and read-only: a lease's state, its latest grant and its
//! latest usage receipt are not secret from whoever knows the lease id (the gateways that
//! relayed it), and every part that matters is signed by the provider.

use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError, EncodeError};
use crate::lease::{
    Approval, LeaseAnswer, LeaseGrant, LeaseId, LeaseOp, LeaseProposal, LeaseRefusal, LeaseRequest,
    ReceiptAck, Refusal, UsageReceipt,
};
use crate::signed::Signed;
use crate::time::Timestamp;
use crate::workload::TerminationReason;

/// Largest encoded [`Request`]: a proposal with the largest request, an approval and a
/// lock certificate.
pub const MAX_REQUEST_BYTES: usize = Signed::<LeaseRequest>::MAX_WIRE_BYTES
    + Signed::<Approval>::MAX_WIRE_BYTES
    + crate::committee::MAX_CERTIFICATE_BYTES
    + 32;

/// Largest encoded [`Response`]: a status with the largest grant, receipt and
/// acknowledgement.
pub const MAX_RESPONSE_BYTES: usize = Signed::<LeaseGrant>::MAX_WIRE_BYTES
    + Signed::<UsageReceipt>::MAX_WIRE_BYTES
    + Signed::<ReceiptAck>::MAX_WIRE_BYTES
    + Signed::<LeaseRefusal>::MAX_WIRE_BYTES
    + 1024;

/// A gateway's request to a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Asks for a lease.
    Propose(LeaseProposal),
    /// An agent-signed operation that answers at once (extend, stop, status).
    Operate(Signed<LeaseOp>),
    /// The state of a lease (read-only, unsigned).
    Query(LeaseId),
    /// An agent-signed `Extend` with the certificate of the agent's top-up lock paying for
    /// it (a provider with a quota committee extends only so).
    Extend {
        /// The agent's signed operation.
        op: Signed<LeaseOp>,
        /// The committee's certificate of the agent's top-up (votes checked by the
        /// provider against its committee).
        top_up: crate::committee::UncheckedCertificate,
    },
    /// An agent-signed `Extend` above the agent's spending limit with its owner's approval
    /// of that very operation (a provider without a quota committee; under one, the
    /// committee certifies the top-up under the approval instead).
    ApprovedExtend {
        /// The agent's signed operation.
        op: Signed<LeaseOp>,
        /// The owner's approval, naming the operation's digest.
        approval: Signed<crate::lease::Approval>,
    },
}

/// Where a lease is in its life, as its provider says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// The workload runs (or is starting).
    Running,
    /// The lease ended.
    Ended {
        /// Why.
        reason: TerminationReason,
        /// When.
        at: Timestamp,
    },
}

impl LeaseState {
    /// `running` or `ended`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Ended { .. } => "ended",
        }
    }
}

/// A lease's state with the provider's latest signed statements about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    /// The lease.
    pub lease: LeaseId,
    /// Its state.
    pub state: LeaseState,
    /// The latest grant (an extension re-signs it with the new expiry).
    pub grant: Signed<LeaseGrant>,
    /// The latest usage receipt; the final one has `ended` set.
    pub receipt: Option<Signed<UsageReceipt>>,
    /// The agent's acknowledgement of the final receipt, once the provider recorded one
    /// ([`crate::lease::Op::Acknowledge`]).
    pub ack: Option<Signed<ReceiptAck>>,
}

/// A provider's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The answer to a [`Request::Propose`].
    Answer(LeaseAnswer),
    /// The lease after an operation or for a query.
    Status(Box<LeaseStatus>),
    /// The operation or query was refused (or the request was not understood).
    Refused(Refusal),
}

impl Request {
    /// Encodes the request.
    ///
    /// # Errors
    /// [`EncodeError::TooLong`] over [`MAX_REQUEST_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        codec::encode(self, MAX_REQUEST_BYTES)
    }

    /// Decodes a request, verifying every signed message in it.
    ///
    /// # Errors
    /// [`DecodeError`] for anything but one canonical, well-signed request.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes, MAX_REQUEST_BYTES)
    }
}

impl Response {
    /// Encodes the response.
    ///
    /// # Errors
    /// [`EncodeError::TooLong`] over [`MAX_RESPONSE_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        codec::encode(self, MAX_RESPONSE_BYTES)
    }

    /// Decodes a response, verifying every signed message in it.
    ///
    /// # Errors
    /// [`DecodeError`] for anything but one canonical, well-signed response.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes, MAX_RESPONSE_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge::Challenge;
    use crate::id::AgoraId;
    use crate::lease::{Candidate, Capability, NONCE_LEN, Op, RefusalCode};
    use crate::offer::Isolation;
    use crate::signed::Digest;
    use crate::signup::{ProofOfWork, SignupRecord};
    use crate::workload::WorkloadSpec;
    use ed25519_dalek::SigningKey;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn id(seed: u8) -> AgoraId {
        key(seed).verifying_key().into()
    }

    fn t(s: u64) -> Timestamp {
        Timestamp::from_unix_secs(1_800_000_000 + s)
    }

    fn request() -> Signed<LeaseRequest> {
        let signup = Signed::sign(
            SignupRecord {
                agent: id(1),
                challenge: Challenge {
                    verifier: id(3),
                    nonce: [5; 32],
                    issued_at: t(0),
                },
                credential: None,
                pow: ProofOfWork::NONE,
                name: None,
            },
            &key(1),
        )
        .unwrap();
        Signed::sign(
            LeaseRequest {
                agent: id(1),
                candidates: vec![Candidate {
                    provider: id(2),
                    offer: Digest::of(b"offer"),
                }],
                isolation: Isolation::Sandbox,
                spec: WorkloadSpec::example(Digest::of(b"busybox"), &["echo", "hi"]),
                max_price_per_sec: 100,
                nonce: [1; NONCE_LEN],
                issued_at: t(1),
                signup,
                delegation: None,
            },
            &key(1),
        )
        .unwrap()
    }

    fn grant(lease: LeaseId) -> Signed<LeaseGrant> {
        let token = Signed::sign(
            Capability {
                lease,
                agent: id(1),
                provider: id(2),
                ports: vec![],
                expires_at: t(100),
            },
            &key(2),
        )
        .unwrap();
        Signed::sign(
            LeaseGrant {
                owner: None,
                lease,
                agent: id(1),
                provider: id(2),
                price_per_sec: 5,
                reserved_micro: 500,
                starts_at: t(1),
                expires_at: t(100),
                tunnel_endpoints: vec![],
                token,
            },
            &key(2),
        )
        .unwrap()
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let req = request();
        let lease = req.digest();
        let op = Signed::sign(
            LeaseOp {
                agent: id(1),
                provider: id(2),
                lease,
                op: Op::Extend { secs: 60 },
                nonce: [2; NONCE_LEN],
                issued_at: t(2),
                delegation: None,
            },
            &key(1),
        )
        .unwrap();
        for r in [
            Request::Propose(LeaseProposal {
                request: req,
                approval: None,
                lock: None,
            }),
            Request::Operate(op),
            Request::Query(lease),
        ] {
            assert_eq!(Request::decode(&r.encode().unwrap()).unwrap(), r);
        }
        for r in [
            Response::Answer(LeaseAnswer::Granted(grant(lease))),
            Response::Status(Box::new(LeaseStatus {
                lease,
                state: LeaseState::Ended {
                    reason: TerminationReason::StoppedByAgent,
                    at: t(50),
                },
                grant: grant(lease),
                receipt: None,
                ack: None,
            })),
            Response::Refused(Refusal::new(RefusalCode::UnknownLease, "no such lease")),
        ] {
            assert_eq!(Response::decode(&r.encode().unwrap()).unwrap(), r);
        }
    }

    #[test]
    fn a_tampered_nested_message_is_refused() {
        let r = Request::Propose(LeaseProposal {
            request: request(),
            approval: None,
            lock: None,
        });
        let bytes = r.encode().unwrap();
        // Flip one byte of the signed request's payload (well inside it).
        for i in [20, bytes.len() / 2, bytes.len() - 70] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(Request::decode(&bad).is_err(), "byte {i}");
        }
        assert!(Request::decode(&[]).is_err());
        assert!(Response::decode(&[9, 9, 9]).is_err());
    }
}

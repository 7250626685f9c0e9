//! Service records on gossip: their own topic ([`SERVICES_TOPIC`], one for the whole
//! network: records are few and small next to offers) and two more gossip message kinds.
//!
//! The framing is [`crate::gossip`]'s: one kind byte, then the signed message's wire bytes,
//! at most [`MAX_GOSSIP_BYTES`] in all. Kind bytes are one registry across topics: 1 offer,
//! 2 offer withdrawal (offers topics, [`crate::GossipMessage`]), 3 service record, 4 service
//! withdrawal (this topic, [`ServiceGossip`]). So an offer relayed on the services topic, or
//! a record on an offers topic, fails as an unknown kind before any signature is checked.

use crate::gossip::{GossipError, MAX_GOSSIP_BYTES, frame, unframe};
use crate::id::AgoraId;
use crate::signed::{Signed, Verifier};

use super::{ServiceKey, ServiceRecord, ServiceWithdrawal};

/// The gossip topic of published services.
pub const SERVICES_TOPIC: &str = "agora/v1/services";

/// Kind byte of a service record.
pub const KIND_SERVICE: u8 = 3;
/// Kind byte of a service withdrawal.
pub const KIND_SERVICE_WITHDRAWAL: u8 = 4;

// A largest signed record fits one gossip message.
const _: () = assert!(Signed::<ServiceRecord>::MAX_WIRE_BYTES < MAX_GOSSIP_BYTES);

/// One verified message of the services topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceGossip {
    /// An owner's current record for one port of its lease.
    Record(Signed<ServiceRecord>),
    /// An owner withdrawing it.
    Withdrawal(Signed<ServiceWithdrawal>),
}

impl ServiceGossip {
    /// The wire bytes: a kind byte, then the signed message.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Record(r) => frame(KIND_SERVICE, r.as_bytes()),
            Self::Withdrawal(w) => frame(KIND_SERVICE_WITHDRAWAL, w.as_bytes()),
        }
    }

    /// Decodes and verifies services gossip bytes (the record's nested capability included).
    ///
    /// # Errors
    /// [`GossipError`] for anything but a well-formed message signed by its owner.
    pub fn decode(bytes: &[u8], verifier: &impl Verifier) -> Result<Self, GossipError> {
        match unframe(bytes)? {
            (KIND_SERVICE, rest) => Ok(Self::Record(Signed::decode(rest, verifier)?)),
            (KIND_SERVICE_WITHDRAWAL, rest) => {
                Ok(Self::Withdrawal(Signed::decode(rest, verifier)?))
            }
            (other, _) => Err(GossipError::UnknownKind(Some(other))),
        }
    }

    /// Decodes gossip that arrived on `topic`, which must be [`SERVICES_TOPIC`].
    ///
    /// # Errors
    /// As [`ServiceGossip::decode`], plus [`GossipError::WrongServicesTopic`].
    pub fn decode_on_topic(
        bytes: &[u8],
        topic: &str,
        verifier: &impl Verifier,
    ) -> Result<Self, GossipError> {
        if topic != SERVICES_TOPIC {
            return Err(GossipError::WrongServicesTopic {
                topic: topic.to_owned(),
            });
        }
        Self::decode(bytes, verifier)
    }

    /// The owner the message speaks for (its signer).
    pub fn owner(&self) -> AgoraId {
        match self {
            Self::Record(r) => r.body().owner,
            Self::Withdrawal(w) => w.body().owner,
        }
    }

    /// The book key it concerns.
    pub fn key(&self) -> ServiceKey {
        match self {
            Self::Record(r) => r.body().key(),
            Self::Withdrawal(w) => w.body().key(),
        }
    }

    /// A short label for the kind (metrics, logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Record(_) => "service",
            Self::Withdrawal(_) => "service_withdrawal",
        }
    }
}

//! What travels over gossip, and the point-to-point offer sync that backs it up.
//!
//! Gossip carries only small, self-authenticating facts: signed [`Offer`]s and
//! [`OfferWithdrawal`]s today, ledger head announcements later. Never negotiation traffic.
//! Every message is under [`MAX_GOSSIP_BYTES`] and is one kind byte followed by the signed
//! message's wire bytes, so a relay checks it without knowing more than this module. Kind
//! bytes are one registry: 1 and 2 here, 3 and 4 for published services on their own topic
//! ([`crate::service::ServiceGossip`]), 5 for ledger announcements
//! ([`crate::ledger_rpc::Announce`]).
//!
//! Topics are sharded by region ([`offers_topic`]): a node follows its own region and, if
//! it wants the whole market, every region its peers announce, up to [`MAX_REGION_TOPICS`].
//!
//! A node that was cut off catches up with [`SyncRequest`] / [`SyncResponse`]: a peer's
//! current offers, paged by provider id, each still signed by its provider.

use crate::id::AgoraId;
use crate::offer::{MAX_OFFER_WIRE_BYTES, Offer, OfferWithdrawal};
use crate::signed::{Digest, Signed, SignedError, Verifier};
use crate::sync::{Kind, PageRequest, PageResponse};

/// Largest gossip message, in bytes (kind byte included).
pub const MAX_GOSSIP_BYTES: usize = 4 * 1024;

/// Most region topics a node follows (gossipsub's own cap is 100 topics).
pub const MAX_REGION_TOPICS: usize = 64;

/// Prefix of every offers topic; the region follows.
pub const OFFERS_TOPIC_PREFIX: &str = "agora/v1/offers/";

/// The gossip topic carrying offers and withdrawals of providers in `region`.
pub fn offers_topic(region: &str) -> String {
    format!("{OFFERS_TOPIC_PREFIX}{region}")
}

/// The region of an offers topic, if `topic` is one with a well-formed region token.
pub fn region_of_topic(topic: &str) -> Option<&str> {
    let region = topic.strip_prefix(OFFERS_TOPIC_PREFIX)?;
    crate::bounds::token("region", region, 32).ok()?;
    Some(region)
}

const KIND_OFFER: u8 = 1;
const KIND_WITHDRAWAL: u8 = 2;

/// One verified gossip message.
// Short-lived, and nearly every message is an offer: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipMessage {
    /// A provider's current offer.
    Offer(Signed<Offer>),
    /// A provider withdrawing its offers.
    Withdrawal(Signed<OfferWithdrawal>),
}

/// Why gossip bytes were refused. Each maps to a reason label for metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GossipError {
    /// Larger than [`MAX_GOSSIP_BYTES`].
    #[error("gossip message is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Empty, or a kind byte this build does not know.
    #[error("unknown gossip message kind {0:?}")]
    UnknownKind(Option<u8>),
    /// The signed message inside did not decode or verify.
    #[error(transparent)]
    Signed(#[from] SignedError),
    /// Published on the wrong topic (an offer from another region).
    #[error("offer for region {region:?} published on topic {topic:?}")]
    WrongTopic {
        /// The offer's region.
        region: String,
        /// The topic it came on.
        topic: String,
    },
    /// Services gossip on another topic than [`crate::service::SERVICES_TOPIC`].
    #[error("service message published on topic {topic:?}")]
    WrongServicesTopic {
        /// The topic it came on.
        topic: String,
    },
}

impl GossipError {
    /// A short stable label (for metrics and logs).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::UnknownKind(_) => "unknown_kind",
            Self::Signed(SignedError::Decode(_)) => "malformed",
            Self::Signed(SignedError::Verify(_)) => "bad_signature",
            Self::WrongTopic { .. } | Self::WrongServicesTopic { .. } => "wrong_topic",
        }
    }
}

/// The framing every topic's messages share: one kind byte, then a signed message's wire
/// bytes.
pub(crate) fn frame(kind: u8, wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + wire.len());
    out.push(kind);
    out.extend_from_slice(wire);
    out
}

/// Splits gossip bytes into their kind byte and the signed message after it, for the
/// topic's decoder to match on (it refuses kinds of other topics as unknown).
///
/// # Errors
/// [`GossipError::TooLarge`] over [`MAX_GOSSIP_BYTES`], [`GossipError::UnknownKind`] when
/// empty.
pub(crate) fn unframe(bytes: &[u8]) -> Result<(u8, &[u8]), GossipError> {
    if bytes.len() > MAX_GOSSIP_BYTES {
        return Err(GossipError::TooLarge {
            len: bytes.len(),
            max: MAX_GOSSIP_BYTES,
        });
    }
    match bytes.split_first() {
        Some((&kind, rest)) => Ok((kind, rest)),
        None => Err(GossipError::UnknownKind(None)),
    }
}

impl GossipMessage {
    /// The wire bytes: a kind byte, then the signed message.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Offer(o) => frame(KIND_OFFER, o.as_bytes()),
            Self::Withdrawal(w) => frame(KIND_WITHDRAWAL, w.as_bytes()),
        }
    }

    /// Decodes and verifies gossip bytes.
    ///
    /// # Errors
    /// [`GossipError`] for anything but a well-formed message signed by its author.
    pub fn decode(bytes: &[u8], verifier: &impl Verifier) -> Result<Self, GossipError> {
        match unframe(bytes)? {
            (KIND_OFFER, rest) => Ok(Self::Offer(Signed::decode(rest, verifier)?)),
            (KIND_WITHDRAWAL, rest) => Ok(Self::Withdrawal(Signed::decode(rest, verifier)?)),
            (other, _) => Err(GossipError::UnknownKind(Some(other))),
        }
    }

    /// Decodes gossip that arrived on `topic`, and checks an offer came on its region's topic.
    ///
    /// # Errors
    /// As [`GossipMessage::decode`], plus [`GossipError::WrongTopic`].
    pub fn decode_on_topic(
        bytes: &[u8],
        topic: &str,
        verifier: &impl Verifier,
    ) -> Result<Self, GossipError> {
        let msg = Self::decode(bytes, verifier)?;
        if let Self::Offer(o) = &msg
            && offers_topic(&o.body().region) != topic
        {
            return Err(GossipError::WrongTopic {
                region: o.body().region.clone(),
                topic: topic.to_owned(),
            });
        }
        Ok(msg)
    }

    /// The provider the message speaks for (its signer).
    pub fn provider(&self) -> AgoraId {
        match self {
            Self::Offer(o) => o.body().provider,
            Self::Withdrawal(w) => w.body().provider,
        }
    }

    /// A short label for the kind (metrics, logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Offer(_) => "offer",
            Self::Withdrawal(_) => "withdrawal",
        }
    }
}

/// Most offers in one [`SyncResponse`] page.
pub const MAX_SYNC_PAGE: u16 = crate::sync::MAX_SYNC_PAGE;

/// Largest encoded [`SyncRequest`].
pub const MAX_SYNC_REQUEST_BYTES: usize = crate::sync::MAX_SYNC_REQUEST_BYTES;

/// Largest encoded [`SyncResponse`].
pub const MAX_SYNC_RESPONSE_BYTES: usize = <OfferSync as Kind>::MAX_RESPONSE_BYTES;

// The bound is a page of the largest offers and withdrawals, as it always was.
const _: () = assert!(
    MAX_SYNC_RESPONSE_BYTES
        == MAX_SYNC_PAGE as usize
            * (MAX_OFFER_WIRE_BYTES + 3 + Signed::<OfferWithdrawal>::MAX_WIRE_BYTES + 2)
            + 64
);

/// What offer sync pages carry ([`crate::sync`]): offers by provider, and their
/// withdrawals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferSync;

impl Kind for OfferSync {
    type Cursor = AgoraId;
    type Entry = Offer;
    type Withdrawal = OfferWithdrawal;
}

/// Asks a peer for the offers it holds, in provider-id order, after a cursor (see
/// [`crate::sync::PageRequest`]).
pub type SyncRequest = PageRequest<OfferSync>;

/// One page of a peer's offers, each as its provider signed it (see
/// [`crate::sync::PageResponse`]).
pub type SyncResponse = PageResponse<OfferSync>;

/// A digest of an offer book's contents: every (provider, seq) in provider order. Two
/// books with the same offers have the same digest.
pub fn book_digest<'a>(offers: impl IntoIterator<Item = &'a Signed<Offer>>) -> Digest {
    crate::sync::digest(offers, |o, bytes| {
        bytes.extend_from_slice(o.provider.as_bytes());
        bytes.extend_from_slice(&o.seq.to_be_bytes());
    })
}

impl SyncResponse {
    /// Verifies each offer, keeping those that verify; returns them and the count refused.
    pub fn verified_offers(&self, verifier: &impl Verifier) -> (Vec<Signed<Offer>>, usize) {
        self.verified_entries(verifier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offer::tests::{key, offer};
    use crate::signed::{Ed25519, Signer as _};
    use crate::time::Timestamp;

    fn signed_offer(seq: u64) -> Signed<Offer> {
        Signed::sign(offer(3, seq, 1_000), &key(3)).unwrap()
    }

    #[test]
    fn offer_round_trips_under_the_bound() {
        let msg = GossipMessage::Offer(signed_offer(1));
        let bytes = msg.encode();
        assert!(bytes.len() <= MAX_GOSSIP_BYTES);
        assert_eq!(GossipMessage::decode(&bytes, &Ed25519).unwrap(), msg);
        assert_eq!(msg.kind(), "offer");
    }

    #[test]
    fn withdrawal_round_trips() {
        let k = key(3);
        let w = Signed::sign(
            OfferWithdrawal {
                provider: k.id(),
                seq: 9,
                issued_at: Timestamp::from_unix_millis(5),
            },
            &k,
        )
        .unwrap();
        let msg = GossipMessage::Withdrawal(w);
        let back = GossipMessage::decode(&msg.encode(), &Ed25519).unwrap();
        assert_eq!(back, msg);
        assert_eq!(back.provider(), k.id());
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let mut bytes = GossipMessage::Offer(signed_offer(1)).encode();
        assert_eq!(
            GossipMessage::decode(&[], &Ed25519).unwrap_err().reason(),
            "unknown_kind"
        );
        assert_eq!(
            GossipMessage::decode(&[9, 1, 2], &Ed25519)
                .unwrap_err()
                .reason(),
            "unknown_kind"
        );
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            GossipMessage::decode(&bytes, &Ed25519)
                .unwrap_err()
                .reason(),
            "bad_signature"
        );
        assert_eq!(
            GossipMessage::decode(&bytes[..40], &Ed25519)
                .unwrap_err()
                .reason(),
            "malformed"
        );
        let big = vec![1u8; MAX_GOSSIP_BYTES + 1];
        assert_eq!(
            GossipMessage::decode(&big, &Ed25519).unwrap_err().reason(),
            "too_large"
        );
    }

    #[test]
    fn offers_must_come_on_their_region_topic() {
        let msg = GossipMessage::Offer(signed_offer(1));
        let region = match &msg {
            GossipMessage::Offer(o) => o.body().region.clone(),
            GossipMessage::Withdrawal(_) => unreachable!(),
        };
        let bytes = msg.encode();
        assert!(GossipMessage::decode_on_topic(&bytes, &offers_topic(&region), &Ed25519).is_ok());
        let err = GossipMessage::decode_on_topic(&bytes, &offers_topic("elsewhere"), &Ed25519)
            .unwrap_err();
        assert_eq!(err.reason(), "wrong_topic");
    }

    #[test]
    fn topics_name_their_region() {
        assert_eq!(region_of_topic(&offers_topic("eu-west")), Some("eu-west"));
        assert_eq!(region_of_topic("agora/v1/offers/"), None);
        assert_eq!(region_of_topic("agora/v1/offers/a b"), None);
        assert_eq!(region_of_topic("other/topic"), None);
    }

    #[test]
    fn sync_pages_round_trip_and_are_bounded() {
        let req = SyncRequest {
            after: Some(key(1).id()),
            limit: 10,
            digest: Some(book_digest([&signed_offer(1)])),
            held: Vec::new(),
            held_all: true,
        };
        assert!(req.encode().unwrap().len() <= MAX_SYNC_REQUEST_BYTES);
        assert_ne!(
            book_digest([&signed_offer(1)]),
            book_digest([&signed_offer(2)])
        );
        assert_eq!(SyncRequest::decode(&req.encode().unwrap()).unwrap(), req);

        let good = signed_offer(1);
        let mut bad = good.as_bytes().to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let w = Signed::sign(
            OfferWithdrawal {
                provider: key(3).id(),
                seq: 1,
                issued_at: Timestamp::from_unix_millis(2_000),
            },
            &key(3),
        )
        .unwrap();
        let resp = SyncResponse {
            entries: vec![good.as_bytes().to_vec(), bad],
            withdrawals: vec![w.as_bytes().to_vec()],
            next: None,
        };
        let back = SyncResponse::decode(&resp.encode().unwrap()).unwrap();
        let (ok, refused) = back.verified_offers(&Ed25519);
        assert_eq!(ok, vec![good.clone()]);
        assert_eq!(refused, 1);
        assert_eq!(back.verified_withdrawals(&Ed25519), (vec![w.clone()], 0));

        let full = SyncResponse {
            entries: vec![good.as_bytes().to_vec(); usize::from(MAX_SYNC_PAGE) + 1],
            withdrawals: vec![],
            next: None,
        };
        assert!(full.encode().is_err());
        let max = SyncResponse {
            entries: vec![vec![0u8; MAX_OFFER_WIRE_BYTES]; usize::from(MAX_SYNC_PAGE)],
            withdrawals: vec![
                vec![0u8; Signed::<OfferWithdrawal>::MAX_WIRE_BYTES];
                usize::from(MAX_SYNC_PAGE)
            ],
            next: Some(key(1).id()),
        };
        assert!(max.encode().is_ok(), "a full page of maximal offers fits");
    }
}

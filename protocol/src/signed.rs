//! `Signed<T>`: a payload, its signer and an ed25519 signature, with domain separation.
//!
//! # Wire format (version 1)
//!
//! ```text
//! version   u8        0x01
//! signer    [u8; 32]  ed25519 public key (the signer's AgoraId)
//! length    varint    payload length, shortest LEB128 form, at most T::MAX_PAYLOAD_BYTES
//! payload   [u8]      canonical encoding of T (see `codec`)
//! signature [u8; 64]  ed25519 over the signing input below
//! ```
//!
//! The signature covers `"agora-signed\0" ‖ T::DOMAIN ‖ "\0" ‖ version ‖ signer ‖ payload`.
//! Every message kind has its own `DOMAIN` string (no NUL inside), so a signature made for
//! one kind never verifies as another, even when the payload bytes happen to coincide.

use core::fmt;
use core::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::codec::{self, DecodeError, EncodeError};
use crate::id::{AgoraId, PUBLIC_KEY_LEN};

/// The envelope format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// Length of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

const SIGNING_PREFIX: &[u8] = b"agora-signed\0";

/// A kind of signed message: its domain-separation string and size limit.
pub trait SignedKind: Serialize + DeserializeOwned {
    /// Domain-separation context, unique per kind, e.g. `"agora/attestation/v1"`.
    const DOMAIN: &'static str;
    /// The largest payload accepted for this kind.
    const MAX_PAYLOAD_BYTES: usize;

    /// Checks semantic bounds (string lengths, counts) beyond what the type expresses.
    ///
    /// Called before signing and after decoding.
    ///
    /// # Errors
    /// [`DecodeError::InvalidField`] naming the offending field.
    fn validate(&self) -> Result<(), DecodeError> {
        Ok(())
    }

    /// The key that must have signed this body, when the body names it (an attestation's
    /// issuer, a response's subject). [`Signed`] refuses any other signer.
    fn author(&self) -> Option<AgoraId> {
        None
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; SIGNATURE_LEN]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(")?;
        for b in self.0.iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// Something that signs with an ed25519 key (an `agora_attest::Identity`, a test key).
pub trait Signer {
    /// The public id of the signing key.
    fn id(&self) -> AgoraId;
    /// Signs `message` (already domain-separated by the caller).
    fn sign(&self, message: &[u8]) -> Signature;
}

impl Signer for ed25519_dalek::SigningKey {
    fn id(&self) -> AgoraId {
        self.verifying_key().into()
    }
    fn sign(&self, message: &[u8]) -> Signature {
        Signature(ed25519_dalek::Signer::sign(self, message).to_bytes())
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature does not match the message and signer.
    #[error("bad signature by {signer}")]
    BadSignature {
        /// The claimed signer.
        signer: AgoraId,
    },
    /// The signer bytes are not a public key.
    #[error("signer is not a valid ed25519 public key")]
    InvalidSigner,
    /// The body names an author other than the key that signed it.
    #[error("signed by {signer} but the message names {author} as its author")]
    WrongSigner {
        /// Who signed.
        signer: AgoraId,
        /// Who the body says must sign.
        author: AgoraId,
    },
}

/// Checks signatures. The node uses [`Ed25519`]; the simulator wraps it in a cache so that
/// each distinct message is verified once per run. The evidence log's rule is
/// [`Cofactored`](crate::cofactored::Cofactored), which checks many signatures at once.
pub trait Verifier {
    /// Verifies `signature` over `message` by `signer`.
    ///
    /// # Errors
    /// [`VerifyError`] when it does not verify.
    fn verify(
        &self,
        signer: &AgoraId,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), VerifyError>;

    /// Verifies every check, one result per check in order. Each result must be what
    /// [`Verifier::verify`] gives for that check alone (so batching never changes a
    /// verdict); the default verifies them one by one.
    fn verify_batch(&self, checks: &[SignatureCheck]) -> Vec<Result<(), VerifyError>> {
        checks
            .iter()
            .map(|c| self.verify(&c.signer, &c.message, &c.signature))
            .collect()
    }
}

/// One signature to check: the signer, the exact bytes it signed (the domain-separated
/// signing input, see [`signing_input`]) and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureCheck {
    /// The claimed signer.
    pub signer: AgoraId,
    /// The signed bytes.
    pub message: Vec<u8>,
    /// The signature.
    pub signature: Signature,
}

/// Strict ed25519 verification (rejects small-order keys and malleable signatures).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ed25519;

impl Verifier for Ed25519 {
    fn verify(
        &self,
        signer: &AgoraId,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), VerifyError> {
        let key = signer
            .verifying_key()
            .map_err(|_| VerifyError::InvalidSigner)?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &sig)
            .map_err(|_| VerifyError::BadSignature { signer: *signer })
    }
}

/// Why a signed message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedError {
    /// The envelope or payload did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The signature did not verify.
    #[error(transparent)]
    Verify(#[from] VerifyError),
}

/// A SHA-256 digest naming a message by its exact wire bytes.
///
/// Serde: lowercase hex in human-readable formats, 32 raw bytes in the canonical encoding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return Ok(Self(<[u8; 32]>::deserialize(d)?));
        }
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "schemars")]
impl schemars::JsonSchema for Digest {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Digest".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A SHA-256 digest: 64 lowercase hex digits.",
            "pattern": "^[0-9a-f]{64}$",
        })
    }
}

/// Text that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a digest is 64 hex digits")]
pub struct DigestParseError;

impl core::str::FromStr for Digest {
    type Err = DigestParseError;
    /// Parses 64 hex digits (either case).
    fn from_str(text: &str) -> Result<Self, DigestParseError> {
        let mut out = [0u8; 32];
        // from_str_radix alone would accept a sign ("+f").
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DigestParseError);
        }
        for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let hex = core::str::from_utf8(pair).map_err(|_| DigestParseError)?;
            *byte = u8::from_str_radix(hex, 16).map_err(|_| DigestParseError)?;
        }
        Ok(Self(out))
    }
}

impl Digest {
    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// A verified message of kind `T` signed by [`Signed::signer`].
///
/// Values exist only after signing ([`Signed::sign`]) or after decoding **and** verifying
/// ([`Signed::decode`]), so holding one means its signature is good. It keeps its exact
/// wire bytes, so re-sending it or hashing it ([`Signed::digest`]) never re-encodes.
///
/// A `Signed<T>` is an immutable, shared handle: cloning it shares the one decoded message
/// (an [`Arc`]) instead of copying body and bytes, so everything that keeps the same
/// message (an offer in every book of a simulated network, a query result, a sync page)
/// holds one copy of it. Nothing about it can change after it is made, so sharing is
/// invisible but for the memory it saves.
pub struct Signed<T> {
    inner: Arc<Inner<T>>,
}

/// What a [`Signed`] holds.
struct Inner<T> {
    body: T,
    signer: AgoraId,
    signature: Signature,
    wire: Vec<u8>,
}

impl<T> Clone for Signed<T> {
    /// Another handle on the same message (no copy).
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> Signed<T> {
    fn new(body: T, signer: AgoraId, signature: Signature, wire: Vec<u8>) -> Self {
        Self {
            inner: Arc::new(Inner {
                body,
                signer,
                signature,
                wire,
            }),
        }
    }
}

impl<T: SignedKind> Signed<T> {
    /// The largest envelope for this kind.
    pub const MAX_WIRE_BYTES: usize = 1 + PUBLIC_KEY_LEN + 5 + T::MAX_PAYLOAD_BYTES + SIGNATURE_LEN;

    /// Encodes and signs `body` with `signer`.
    ///
    /// # Errors
    /// [`EncodeError`] if the body fails validation or exceeds `T::MAX_PAYLOAD_BYTES`.
    pub fn sign(body: T, signer: &impl Signer) -> Result<Self, EncodeError> {
        body.validate().map_err(|e| match e {
            DecodeError::InvalidField { field, reason } => {
                EncodeError::InvalidField { field, reason }
            }
            other => EncodeError::Serialize(other.to_string()),
        })?;
        let payload = codec::encode(&body, T::MAX_PAYLOAD_BYTES)?;
        let signer_id = signer.id();
        if let Some(author) = body.author().filter(|a| *a != signer_id) {
            return Err(EncodeError::InvalidField {
                field: "author",
                reason: format!(
                    "the message names {author} as its author but {signer_id} signs it"
                ),
            });
        }
        let signature = signer.sign(&signing_input::<T>(&signer_id, &payload));
        let len = u32::try_from(payload.len()).map_err(|_| EncodeError::TooLong {
            len: payload.len(),
            max: T::MAX_PAYLOAD_BYTES,
        })?;
        let mut wire = Vec::with_capacity(1 + PUBLIC_KEY_LEN + 5 + payload.len() + SIGNATURE_LEN);
        wire.push(FORMAT_VERSION);
        wire.extend_from_slice(signer_id.as_bytes());
        codec::put_varint_u32(&mut wire, len);
        wire.extend_from_slice(&payload);
        wire.extend_from_slice(&signature.0);
        Ok(Self::new(body, signer_id, signature, wire))
    }

    /// Decodes a wire envelope and verifies its signature with `verifier`.
    ///
    /// Never panics; rejects over-long input, unknown versions, trailing bytes,
    /// non-canonical payloads, invalid fields and bad signatures.
    ///
    /// # Errors
    /// [`SignedError::Decode`] or [`SignedError::Verify`].
    pub fn decode(wire: &[u8], verifier: &impl Verifier) -> Result<Self, SignedError> {
        let (signer, signature, payload) = verified_payload::<T>(wire, verifier)?;
        let body: T = codec::decode(payload, T::MAX_PAYLOAD_BYTES)?;
        body.validate()?;
        if let Some(author) = body.author().filter(|a| *a != signer) {
            return Err(VerifyError::WrongSigner { signer, author }.into());
        }
        Ok(Self::new(body, signer, signature, wire.to_vec()))
    }

    /// Decodes an envelope whose signature is not verified yet (the parts [`envelope`] gave),
    /// recording every signature nested in the payload instead of verifying it: the message
    /// and the nested checks in decoding order. Bounds, canonical form, fields and the author
    /// are checked as by [`Signed::decode`].
    ///
    /// Crate-private because the result is not yet a verified message: the caller verifies
    /// the envelope's signature and every recorded one before anything else sees it.
    ///
    /// # Errors
    /// [`SignedError::Decode`] or [`SignedError::Verify`] (a wrong author).
    pub(crate) fn decode_recording_nested(
        wire: &[u8],
        signer: AgoraId,
        signature: Signature,
        payload: &[u8],
    ) -> Result<(Self, Vec<SignatureCheck>), SignedError> {
        let (body, checks) =
            crate::deferred::record(|| codec::decode::<T>(payload, T::MAX_PAYLOAD_BYTES));
        let body = body?;
        body.validate()?;
        if let Some(author) = body.author().filter(|a| *a != signer) {
            return Err(VerifyError::WrongSigner { signer, author }.into());
        }
        Ok((Self::new(body, signer, signature, wire.to_vec()), checks))
    }
}

/// Checks a `Signed<T>` envelope (length bounds, version, signer key, payload length, no
/// trailing bytes) and verifies its signature, before anything decodes the payload: the
/// signer, the signature and the verified payload bytes.
///
/// # Errors
/// [`SignedError::Decode`] or [`SignedError::Verify`].
pub(crate) fn verified_payload<'w, T: SignedKind>(
    wire: &'w [u8],
    verifier: &impl Verifier,
) -> Result<(AgoraId, Signature, &'w [u8]), SignedError> {
    let (signer, signature, payload) = envelope::<T>(wire)?;
    // Verify before decoding the payload: unsigned garbage never reaches the decoder.
    verifier.verify(&signer, &signing_input::<T>(&signer, payload), &signature)?;
    Ok((signer, signature, payload))
}

/// Checks a `Signed<T>` envelope (length bounds, version, signer key, payload length, no
/// trailing bytes) without verifying its signature: the signer, the signature and the
/// payload bytes.
///
/// # Errors
/// [`SignedError::Decode`], or [`VerifyError::InvalidSigner`] for a signer that is no key.
pub(crate) fn envelope<T: SignedKind>(
    wire: &[u8],
) -> Result<(AgoraId, Signature, &[u8]), SignedError> {
    let max = Signed::<T>::MAX_WIRE_BYTES;
    if wire.len() > max {
        return Err(DecodeError::TooLong {
            len: wire.len(),
            max,
        }
        .into());
    }
    let (&version, rest) = wire.split_first().ok_or(DecodeError::Truncated)?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnknownVersion {
            found: version,
            supported: FORMAT_VERSION,
        }
        .into());
    }
    let (signer_bytes, rest) = rest
        .split_first_chunk::<PUBLIC_KEY_LEN>()
        .ok_or(DecodeError::Truncated)?;
    let signer = AgoraId::from_bytes(*signer_bytes).map_err(|_| VerifyError::InvalidSigner)?;
    let (len, rest) = codec::take_varint_u32(rest)?;
    let len = usize::try_from(len).map_err(|_| DecodeError::Malformed("payload length".into()))?;
    if len > T::MAX_PAYLOAD_BYTES {
        return Err(DecodeError::TooLong {
            len,
            max: T::MAX_PAYLOAD_BYTES,
        }
        .into());
    }
    let payload = rest.get(..len).ok_or(DecodeError::Truncated)?;
    let rest = rest.get(len..).ok_or(DecodeError::Truncated)?;
    let (sig_bytes, rest) = rest
        .split_first_chunk::<SIGNATURE_LEN>()
        .ok_or(DecodeError::Truncated)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { count: rest.len() }.into());
    }
    Ok((signer, Signature(*sig_bytes), payload))
}

impl<T> Signed<T> {
    /// The signed payload.
    pub fn body(&self) -> &T {
        &self.inner.body
    }

    /// Who signed it.
    pub fn signer(&self) -> AgoraId {
        self.inner.signer
    }

    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.inner.signature
    }

    /// The exact wire bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.inner.wire
    }

    /// Consumes the message, returning its wire bytes (copied if other handles share it).
    pub fn into_bytes(self) -> Vec<u8> {
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner.wire,
            Err(shared) => shared.wire.clone(),
        }
    }

    /// The SHA-256 of the wire bytes: a stable name for this message.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.inner.wire)
    }

    /// Whether `self` and `other` are handles on the same copy of a message (not merely
    /// equal ones): what lets a driver check that its holders share.
    pub fn shares_with(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// The bytes an ed25519 signature of kind `T` covers.
pub fn signing_input<T: SignedKind>(signer: &AgoraId, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(
        SIGNING_PREFIX.len() + T::DOMAIN.len() + 2 + PUBLIC_KEY_LEN + payload.len(),
    );
    m.extend_from_slice(SIGNING_PREFIX);
    m.extend_from_slice(T::DOMAIN.as_bytes());
    m.push(0);
    m.push(FORMAT_VERSION);
    m.extend_from_slice(signer.as_bytes());
    m.extend_from_slice(payload);
    m
}

impl<T: fmt::Debug> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("signer", &self.inner.signer)
            .field("body", &self.inner.body)
            .finish_non_exhaustive()
    }
}

impl<T> PartialEq for Signed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.shares_with(other) || self.inner.wire == other.inner.wire
    }
}

impl<T> Eq for Signed<T> {}

/// Nested signed messages are carried as their wire bytes.
impl<T> Serialize for Signed<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.inner.wire)
    }
}

/// Decoding a nested signed message verifies it with strict [`Ed25519`] (or, while the
/// evidence log decodes an entry, records it to be verified with the entry's other signatures).
impl<'de, T: SignedKind> Deserialize<'de> for Signed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_bytes(WireVisitor(PhantomData))
    }
}

struct WireVisitor<T>(PhantomData<T>);

impl<T: SignedKind> serde::de::Visitor<'_> for WireVisitor<T> {
    type Value = Signed<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a signed {} message", T::DOMAIN)
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Signed::decode(v, &crate::deferred::Nested).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Ping {
        n: u64,
        text: String,
    }
    impl SignedKind for Ping {
        const DOMAIN: &'static str = "agora/test-ping/v1";
        const MAX_PAYLOAD_BYTES: usize = 256;
        fn validate(&self) -> Result<(), DecodeError> {
            if self.text.len() > 100 {
                return Err(DecodeError::InvalidField {
                    field: "text",
                    reason: "too long".into(),
                });
            }
            Ok(())
        }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Pong {
        n: u64,
        text: String,
    }
    impl SignedKind for Pong {
        const DOMAIN: &'static str = "agora/test-pong/v1";
        const MAX_PAYLOAD_BYTES: usize = 256;
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    /// A `Ping` signed by key 1.
    fn hi() -> Signed<Ping> {
        let ping = Ping {
            n: 5,
            text: "hi".into(),
        };
        Signed::sign(ping, &key(1)).unwrap()
    }

    #[test]
    fn sign_then_decode() {
        let m = hi();
        let back = Signed::<Ping>::decode(m.as_bytes(), &Ed25519).unwrap();
        assert_eq!(back.body(), m.body());
        assert_eq!(back.signer(), key(1).id());
        assert_eq!(back.digest(), m.digest());
    }

    #[test]
    fn clones_share_one_copy() {
        let m = hi();
        let copy = m.clone();
        assert!(copy.shares_with(&m) && copy == m);
        let decoded = Signed::<Ping>::decode(m.as_bytes(), &Ed25519).unwrap();
        assert!(
            decoded == m && !decoded.shares_with(&m),
            "equal, but a copy of its own"
        );
        assert_eq!(
            copy.into_bytes(),
            m.as_bytes(),
            "a shared handle gives its bytes too"
        );
        let wire = m.as_bytes().to_vec();
        assert_eq!(m.into_bytes(), wire);
    }

    #[test]
    fn cross_kind_reuse_is_rejected() {
        // Same payload bytes, other kind: the domain string differs, so the signature fails.
        let m = hi();
        let err = Signed::<Pong>::decode(m.as_bytes(), &Ed25519).unwrap_err();
        assert!(matches!(
            err,
            SignedError::Verify(VerifyError::BadSignature { .. })
        ));
    }

    #[test]
    fn envelope_errors() {
        let m = hi();
        let w = m.as_bytes();
        let mut v2 = w.to_vec();
        v2[0] = 2;
        assert!(matches!(
            Signed::<Ping>::decode(&v2, &Ed25519),
            Err(SignedError::Decode(DecodeError::UnknownVersion {
                found: 2,
                ..
            }))
        ));
        let mut extra = w.to_vec();
        extra.push(0);
        assert!(matches!(
            Signed::<Ping>::decode(&extra, &Ed25519),
            Err(SignedError::Decode(DecodeError::TrailingBytes { count: 1 }))
        ));
        assert!(matches!(
            Signed::<Ping>::decode(&w[..w.len() - 1], &Ed25519),
            Err(SignedError::Decode(DecodeError::Truncated))
        ));
        assert!(Signed::<Ping>::decode(&[], &Ed25519).is_err());
        let big = vec![1u8; Signed::<Ping>::MAX_WIRE_BYTES + 1];
        assert!(matches!(
            Signed::<Ping>::decode(&big, &Ed25519),
            Err(SignedError::Decode(DecodeError::TooLong { .. }))
        ));
    }

    #[test]
    fn invalid_fields_are_refused_both_ways() {
        let long = Ping {
            n: 1,
            text: "x".repeat(150),
        };
        assert!(matches!(
            Signed::sign(long, &key(1)),
            Err(EncodeError::InvalidField { field: "text", .. })
        ));
    }

    #[test]
    fn nested_signed_round_trips_through_serde() {
        let m = Signed::sign(
            Ping {
                n: 9,
                text: "in".into(),
            },
            &key(3),
        )
        .unwrap();
        let bytes = codec::encode(&vec![m.clone()], 4096).unwrap();
        let back: Vec<Signed<Ping>> = codec::decode(&bytes, 4096).unwrap();
        assert_eq!(back, vec![m]);
    }

    #[test]
    fn digest_is_hex_in_json_and_raw_in_binary() {
        let d = Digest::of(b"agora");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"zz\"").is_err());
        assert_eq!(postcard::to_allocvec(&d).unwrap(), d.0.to_vec());
    }

    proptest! {
        #[test]
        fn any_flipped_bit_is_rejected(n: u64, text in "[a-zA-Z0-9 ]{0,40}", bit in 0usize..10_000) {
            let m = Signed::sign(Ping { n, text }, &key(2)).unwrap();
            let mut w = m.as_bytes().to_vec();
            let bit = bit % (w.len() * 8);
            w[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(Signed::<Ping>::decode(&w, &Ed25519).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Signed::<Ping>::decode(&bytes, &Ed25519);
        }
    }
}

//! Attestations, revocations and credentials (chains of attestations) as wire types.
//!
//! Verification policy (trust roots, validity windows, revocation lists) lives in
//! `agora-attest`; this module only defines what is signed and how it is bounded.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::bounds;
use crate::codec::{self, DecodeError, EncodeError};
use crate::id::AgoraId;
use crate::signed::{Digest, Signed, SignedError, SignedKind};
use crate::time::Timestamp;

/// Longest delegation chain a credential may carry on the wire. Trust stores usually
/// allow fewer (see `agora_attest::TrustConfig::max_chain_len`).
pub const MAX_CHAIN_LEN: usize = 8;

/// Length of an attestation's random nonce.
pub const NONCE_LEN: usize = 16;

/// What an issuer states about a subject key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The operator or organisation responsible for the subject.
    pub organisation: Option<String>,
    /// The service tier granted, e.g. `standard` (a token: a-z, 0-9, `-_.`).
    pub tier: String,
    /// Credits the subject may spend without further approval.
    pub spending_limit_credits: u64,
    /// The key that approves spending above the limit.
    pub owner: Option<AgoraId>,
    /// Whether the subject may issue attestations to others (delegation).
    pub may_delegate: bool,
    /// The model or runtime the subject is (e.g. an agent's model name).
    pub model: Option<String>,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
}

/// A signed statement by `issuer` about `subject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// Who states it (must be the signer).
    pub issuer: AgoraId,
    /// Whom it is about.
    pub subject: AgoraId,
    /// What is stated.
    pub claims: Claims,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// Not valid before this instant.
    pub not_before: Timestamp,
    /// Not valid from this instant on.
    pub expires_at: Timestamp,
    /// Random bytes that make every issuance distinct (quota is credited once per nonce).
    pub nonce: [u8; NONCE_LEN],
}

impl SignedKind for Attestation {
    const DOMAIN: &'static str = "agora/attestation/v1";
    const MAX_PAYLOAD_BYTES: usize = 8 * 1024;

    fn validate(&self) -> Result<(), DecodeError> {
        if self.issuer == self.subject {
            return Err(DecodeError::InvalidField {
                field: "subject",
                reason: "an attestation cannot be about its own issuer".into(),
            });
        }
        if self.not_before >= self.expires_at {
            return Err(DecodeError::InvalidField {
                field: "expires_at",
                reason: format!(
                    "{} is not after not_before {}",
                    self.expires_at, self.not_before
                ),
            });
        }
        if self.issued_at > self.expires_at {
            return Err(DecodeError::InvalidField {
                field: "issued_at",
                reason: format!("{} is after expires_at {}", self.issued_at, self.expires_at),
            });
        }
        let c = &self.claims;
        bounds::token("claims.tier", &c.tier, 32)?;
        if let Some(org) = &c.organisation {
            bounds::max_len("claims.organisation", org, 128)?;
        }
        if let Some(model) = &c.model {
            bounds::max_len("claims.model", model, 128)?;
        }
        bounds::labels("claims.labels", &c.labels, 32)
    }

    fn author(&self) -> Option<AgoraId> {
        Some(self.issuer)
    }
}

/// An issuer's signed withdrawal of one of its attestations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Who revokes (must be the attestation's issuer and the signer).
    pub issuer: AgoraId,
    /// The attestation's subject, for indexing and display.
    pub subject: AgoraId,
    /// The revoked attestation: the digest of its signed wire bytes.
    pub attestation: Digest,
    /// When it was revoked.
    pub revoked_at: Timestamp,
    /// A short human-readable reason.
    pub reason: String,
}

impl SignedKind for Revocation {
    const DOMAIN: &'static str = "agora/revocation/v1";
    const MAX_PAYLOAD_BYTES: usize = 1024;

    fn validate(&self) -> Result<(), DecodeError> {
        bounds::max_len("reason", &self.reason, 256)
    }

    fn author(&self) -> Option<AgoraId> {
        Some(self.issuer)
    }
}

impl Signed<Revocation> {
    /// Printable form: base64url (no padding) of the wire bytes.
    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.as_bytes())
    }

    /// Parses and verifies the printable form.
    ///
    /// # Errors
    /// Bad base64, or any envelope or signature error.
    pub fn from_base64(text: &str) -> Result<Self, crate::Error> {
        let bytes = decode_base64(text, Self::MAX_WIRE_BYTES)?;
        Ok(Self::decode(&bytes, &crate::signed::Ed25519)?)
    }
}

/// A delegation chain: `chain[0]` is issued by a (hopefully trusted) root, each next link is
/// issued by the previous link's subject, and the last link's subject is the holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    root: Signed<Attestation>,
    delegations: Vec<Signed<Attestation>>,
}

/// Format version of an encoded [`Credential`].
pub const CREDENTIAL_VERSION: u8 = 1;

impl Credential {
    /// Largest encoded credential.
    pub const MAX_BYTES: usize =
        1 + 1 + MAX_CHAIN_LEN * (Signed::<Attestation>::MAX_WIRE_BYTES + 2);

    /// A credential of a single, directly issued attestation.
    pub fn single(attestation: Signed<Attestation>) -> Self {
        Self {
            root: attestation,
            delegations: Vec::new(),
        }
    }

    /// A credential from a chain, checking its links.
    ///
    /// # Errors
    /// [`DecodeError::InvalidField`] when the chain is empty, too long, or a link's issuer is
    /// not the previous link's subject.
    pub fn from_chain(chain: Vec<Signed<Attestation>>) -> Result<Self, DecodeError> {
        if chain.is_empty() || chain.len() > MAX_CHAIN_LEN {
            return Err(DecodeError::InvalidField {
                field: "chain",
                reason: format!("{} links, expected 1 to {MAX_CHAIN_LEN}", chain.len()),
            });
        }
        for pair in chain.windows(2) {
            if let [parent, child] = pair
                && parent.body().subject != child.body().issuer
            {
                return Err(DecodeError::InvalidField {
                    field: "chain",
                    reason: format!(
                        "link issued by {} does not follow one about {}",
                        child.body().issuer,
                        parent.body().subject
                    ),
                });
            }
        }
        let mut links = chain.into_iter();
        let root = links.next().ok_or(DecodeError::InvalidField {
            field: "chain",
            reason: "empty chain".into(),
        })?;
        Ok(Self {
            root,
            delegations: links.collect(),
        })
    }

    /// The credential extended by one more link issued by the current holder.
    ///
    /// # Errors
    /// As [`Credential::from_chain`].
    pub fn delegate(&self, next: Signed<Attestation>) -> Result<Self, DecodeError> {
        let mut chain: Vec<_> = self.chain().cloned().collect();
        chain.push(next);
        Self::from_chain(chain)
    }

    /// The links, root first.
    pub fn chain(&self) -> impl Iterator<Item = &Signed<Attestation>> + Clone {
        core::iter::once(&self.root).chain(self.delegations.iter())
    }

    /// The number of links (1 for a directly issued attestation).
    pub fn len(&self) -> usize {
        1 + self.delegations.len()
    }

    /// Always false: a credential has at least one link.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The first link, issued by the root.
    pub fn root(&self) -> &Signed<Attestation> {
        &self.root
    }

    /// The link about the holder.
    pub fn leaf(&self) -> &Signed<Attestation> {
        self.delegations.last().unwrap_or(&self.root)
    }

    /// The key the credential is about.
    pub fn holder(&self) -> AgoraId {
        self.leaf().body().subject
    }

    /// The owner the chain names for its holder: the one nearest the holder (a link may
    /// name the holder's owner where the links above it named none or another).
    pub fn owner(&self) -> Option<AgoraId> {
        self.chain()
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .find_map(|a| a.body().claims.owner)
    }

    /// Canonical bytes: a version byte, then the postcard list of signed links.
    ///
    /// # Errors
    /// [`EncodeError::TooLong`] (not reachable for chains built through this type).
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = vec![CREDENTIAL_VERSION];
        let chain: Vec<&Signed<Attestation>> = self.chain().collect();
        out.extend(codec::encode(&chain, Self::MAX_BYTES - 1)?);
        Ok(out)
    }

    /// Decodes a credential, verifying every link's signature and the chain's linkage.
    ///
    /// # Errors
    /// [`SignedError::Decode`] for malformed bytes or a broken chain,
    /// [`SignedError::Verify`] for a link whose signature does not verify.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignedError> {
        if bytes.len() > Self::MAX_BYTES {
            return Err(DecodeError::TooLong {
                len: bytes.len(),
                max: Self::MAX_BYTES,
            }
            .into());
        }
        let (&version, rest) = bytes.split_first().ok_or(DecodeError::Truncated)?;
        if version != CREDENTIAL_VERSION {
            return Err(DecodeError::UnknownVersion {
                found: version,
                supported: CREDENTIAL_VERSION,
            }
            .into());
        }
        // Links are decoded as raw bytes first (same encoding as nested `Signed`), so that a
        // bad signature surfaces as a verification error rather than an opaque serde one.
        let raw: Vec<Vec<u8>> = codec::decode(rest, Self::MAX_BYTES)?;
        if raw.is_empty() || raw.len() > MAX_CHAIN_LEN {
            return Err(DecodeError::InvalidField {
                field: "chain",
                reason: format!("{} links, expected 1 to {MAX_CHAIN_LEN}", raw.len()),
            }
            .into());
        }
        let chain = raw
            .iter()
            .map(|link| Signed::<Attestation>::decode(link, &crate::deferred::Nested))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_chain(chain)?)
    }

    /// Printable form: one base64url line (no padding).
    ///
    /// # Errors
    /// As [`Credential::to_bytes`].
    pub fn to_base64(&self) -> Result<String, EncodeError> {
        Ok(URL_SAFE_NO_PAD.encode(self.to_bytes()?))
    }

    /// Parses the printable form.
    ///
    /// # Errors
    /// Bad base64 or any [`Credential::from_bytes`] error.
    pub fn from_base64(text: &str) -> Result<Self, SignedError> {
        Self::from_bytes(&decode_base64(text, Self::MAX_BYTES)?)
    }
}

/// A credential nested in another message travels as its canonical bytes
/// ([`Credential::to_bytes`]); decoding verifies every link, as [`Credential::from_bytes`].
impl Serialize for Credential {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = self.to_bytes().map_err(serde::ser::Error::custom)?;
        s.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for Credential {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Credential;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("an encoded credential")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Credential, E> {
                Credential::from_bytes(v).map_err(E::custom)
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

/// Decodes base64url text (padding and surrounding whitespace tolerated), bounded in size.
///
/// # Errors
/// [`DecodeError::TooLong`] or [`DecodeError::Malformed`].
pub fn decode_base64(text: &str, max_bytes: usize) -> Result<Vec<u8>, DecodeError> {
    let text = text.trim().trim_end_matches('=');
    let max_chars = max_bytes.div_ceil(3) * 4;
    if text.len() > max_chars {
        return Err(DecodeError::TooLong {
            len: text.len() / 4 * 3,
            max: max_bytes,
        });
    }
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| DecodeError::Malformed(format!("not base64url: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signed::{Ed25519, Signer, VerifyError};
    use ed25519_dalek::SigningKey;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    pub(crate) fn sample(issuer: &SigningKey, subject: AgoraId) -> Attestation {
        Attestation {
            issuer: issuer.id(),
            subject,
            claims: Claims {
                organisation: Some("Acme".into()),
                tier: "standard".into(),
                spending_limit_credits: 1000,
                owner: None,
                may_delegate: true,
                model: Some("gpt-x".into()),
                labels: BTreeMap::from([("team".into(), "infra".into())]),
            },
            issued_at: Timestamp::from_unix_secs(100),
            not_before: Timestamp::from_unix_secs(100),
            expires_at: Timestamp::from_unix_secs(1000),
            nonce: [7; NONCE_LEN],
        }
    }

    #[test]
    fn signer_must_be_issuer() {
        let body = sample(&key(1), key(2).id());
        assert!(matches!(
            Signed::sign(body.clone(), &key(3)),
            Err(EncodeError::InvalidField {
                field: "author",
                ..
            })
        ));
        // Forge an envelope whose signature is good but whose signer is not the issuer.
        let mut forged = body;
        forged.issuer = key(3).id();
        let good = Signed::sign(forged, &key(3)).unwrap();
        assert!(Signed::<Attestation>::decode(good.as_bytes(), &Ed25519).is_ok());
    }

    #[test]
    fn wrong_signer_detected_on_decode() {
        // Build by hand: body names issuer 1 but key 3 signs.
        let body = sample(&key(1), key(2).id());
        let payload = codec::encode(&body, 8192).unwrap();
        let signer = key(3).id();
        let sig = key(3).sign(&crate::signed::signing_input::<Attestation>(
            &signer, &payload,
        ));
        let mut wire = vec![1];
        wire.extend_from_slice(signer.as_bytes());
        codec::put_varint_u32(&mut wire, payload.len() as u32);
        wire.extend_from_slice(&payload);
        wire.extend_from_slice(&sig.0);
        assert!(matches!(
            Signed::<Attestation>::decode(&wire, &Ed25519),
            Err(SignedError::Verify(VerifyError::WrongSigner { .. }))
        ));
    }

    #[test]
    fn validation_bounds() {
        let mut a = sample(&key(1), key(2).id());
        a.claims.tier = "Gold Tier".into();
        assert!(Signed::sign(a, &key(1)).is_err());
        let mut a = sample(&key(1), key(1).id());
        a.subject = key(1).id();
        assert!(Signed::sign(a, &key(1)).is_err());
        let mut a = sample(&key(1), key(2).id());
        a.expires_at = a.not_before;
        assert!(Signed::sign(a, &key(1)).is_err());
    }

    #[test]
    fn credential_chain_round_trip_and_linkage() {
        let root = Signed::sign(sample(&key(1), key(2).id()), &key(1)).unwrap();
        let link = Signed::sign(sample(&key(2), key(4).id()), &key(2)).unwrap();
        let cred = Credential::single(root.clone())
            .delegate(link.clone())
            .unwrap();
        assert_eq!(cred.holder(), key(4).id());
        let text = cred.to_base64().unwrap();
        assert_eq!(Credential::from_base64(&text).unwrap(), cred);

        let stray = Signed::sign(sample(&key(5), key(6).id()), &key(5)).unwrap();
        assert!(Credential::single(root).delegate(stray).is_err());
        assert!(Credential::from_chain(vec![]).is_err());
        assert!(Credential::from_base64("!!!").is_err());
        assert!(matches!(
            Credential::from_bytes(&[9, 0]),
            Err(SignedError::Decode(DecodeError::UnknownVersion {
                found: 9,
                ..
            }))
        ));
        // A flipped bit in a link's signature is a verification error, not a parse error.
        let mut bytes = cred.to_bytes().unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            Credential::from_bytes(&bytes),
            Err(SignedError::Verify(_))
        ));
    }

    #[test]
    fn revocation_printable_round_trip() {
        let att = Signed::sign(sample(&key(1), key(2).id()), &key(1)).unwrap();
        let r = Revocation {
            issuer: key(1).id(),
            subject: key(2).id(),
            attestation: att.digest(),
            revoked_at: Timestamp::from_unix_secs(500),
            reason: "key compromised".into(),
        };
        let r = Signed::sign(r, &key(1)).unwrap();
        assert_eq!(
            Signed::<Revocation>::from_base64(&r.to_base64()).unwrap(),
            r
        );
    }
}

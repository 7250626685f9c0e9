//! Agora ids: an ed25519 public key with a printable, checksummed form (`agora1…`).

use core::fmt;
use core::str::FromStr;

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32m, Hrp};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The human-readable prefix of a printable [`AgoraId`].
pub const ID_PREFIX: &str = "agora";

/// Length in bytes of an ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// The identity of a node, agent, issuer or validator: an ed25519 public key.
///
/// The same key is the node's libp2p `PeerId` (see `agora_attest::Identity::peer_id`).
/// Its printable form is Bech32m with the prefix `agora`, e.g.
/// `agora1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs…`; parsing checks the
/// checksum and that the bytes are a valid curve point.
///
/// Serde: the printable string in human-readable formats (JSON, TOML), the 32 raw bytes in
/// binary ones (the canonical encoding); both forms are validated when read.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AgoraId([u8; PUBLIC_KEY_LEN]);

/// The big-endian word in `bytes` (8 of them).
#[inline]
fn be_word(bytes: &[u8]) -> u64 {
    let mut be = [0u8; 8];
    be.copy_from_slice(bytes);
    u64::from_be_bytes(be)
}

impl Ord for AgoraId {
    /// The order of the key bytes, compared a big-endian word at a time (ids are the keys
    /// of every book and rate limiter; nearly every comparison ends at the first word).
    #[inline]
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        for (a, b) in self.0.chunks_exact(8).zip(other.0.chunks_exact(8)) {
            let (a, b) = (be_word(a), be_word(b));
            if a != b {
                return a.cmp(&b);
            }
        }
        core::cmp::Ordering::Equal
    }
}

impl PartialOrd for AgoraId {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Why a string or byte array is not an [`AgoraId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not valid Bech32m (bad character, mixed case, wrong checksum, ...).
    #[error("invalid agora id {input:?}: {reason}")]
    Encoding {
        /// The rejected input (ids are public, so echoing them is safe).
        input: String,
        /// What the Bech32m decoder reported.
        reason: String,
    },
    /// The prefix is not `agora`.
    #[error("invalid agora id {input:?}: prefix is {found:?}, expected \"agora\"")]
    WrongPrefix {
        /// The rejected input.
        input: String,
        /// The prefix found.
        found: String,
    },
    /// The payload is not 32 bytes.
    #[error("invalid agora id: key is {len} bytes, expected 32")]
    WrongLength {
        /// Decoded length.
        len: usize,
    },
    /// The 32 bytes are not a valid ed25519 public key.
    #[error("invalid agora id: not an ed25519 public key")]
    NotAKey,
}

impl AgoraId {
    /// The id for a raw ed25519 public key.
    ///
    /// # Errors
    /// [`IdError::NotAKey`] when the bytes do not decompress to a curve point.
    pub fn from_bytes(bytes: [u8; PUBLIC_KEY_LEN]) -> Result<Self, IdError> {
        if !is_key(&bytes) {
            return Err(IdError::NotAKey);
        }
        Ok(Self(bytes))
    }

    /// The raw public key bytes.
    pub const fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// The ed25519 verifying key.
    ///
    /// # Errors
    /// Never for ids built through [`AgoraId::from_bytes`] or parsing; kept fallible so
    /// callers need no invariant.
    pub fn verifying_key(&self) -> Result<VerifyingKey, IdError> {
        VerifyingKey::from_bytes(&self.0).map_err(|_| IdError::NotAKey)
    }

    /// A short form for logs and tables: the first 12 characters after the prefix.
    pub fn short(&self) -> String {
        let full = self.to_string();
        let start = ID_PREFIX.len() + 1;
        full.get(start..start + 12).unwrap_or(&full).to_owned()
    }
}

/// Slots of the per-thread table of keys [`is_key`] found valid.
const KNOWN_KEY_SLOTS: usize = 1024;

thread_local! {
    /// Keys found valid lately on this thread, direct-mapped by their first two bytes.
    static KNOWN_KEYS: core::cell::RefCell<Vec<Option<[u8; PUBLIC_KEY_LEN]>>> =
        const { core::cell::RefCell::new(Vec::new()) };
}

/// Whether `bytes` decompress to a curve point. The check costs about 3 µs and the same few
/// thousand keys (nodes, providers, agents) recur in every ledger entry and sync page, each
/// several times, so keys found valid are remembered per thread (a pure function's memo: a
/// miss only costs the check again).
fn is_key(bytes: &[u8; PUBLIC_KEY_LEN]) -> bool {
    let [b0, b1, ..] = *bytes;
    let slot = usize::from(u16::from_le_bytes([b0, b1])) % KNOWN_KEY_SLOTS;
    let known = KNOWN_KEYS.with(|k| k.borrow().get(slot).is_some_and(|s| s == &Some(*bytes)));
    if known {
        return true;
    }
    let valid = VerifyingKey::from_bytes(bytes).is_ok();
    if valid {
        KNOWN_KEYS.with(|k| {
            let mut k = k.borrow_mut();
            if k.is_empty() {
                k.resize(KNOWN_KEY_SLOTS, None);
            }
            if let Some(s) = k.get_mut(slot) {
                *s = Some(*bytes);
            }
        });
    }
    valid
}

impl TryFrom<[u8; PUBLIC_KEY_LEN]> for AgoraId {
    type Error = IdError;
    fn try_from(bytes: [u8; PUBLIC_KEY_LEN]) -> Result<Self, IdError> {
        Self::from_bytes(bytes)
    }
}

impl From<AgoraId> for [u8; PUBLIC_KEY_LEN] {
    fn from(id: AgoraId) -> Self {
        id.0
    }
}

impl From<VerifyingKey> for AgoraId {
    fn from(key: VerifyingKey) -> Self {
        Self(key.to_bytes())
    }
}

fn hrp() -> Hrp {
    // "agora" is a valid HRP by construction (ASCII 33..=126, length 1..=83).
    Hrp::parse_unchecked(ID_PREFIX)
}

impl fmt::Display for AgoraId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        bech32::encode_lower_to_fmt::<Bech32m, _>(f, hrp(), &self.0).map_err(|_| fmt::Error)
    }
}

impl fmt::Debug for AgoraId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgoraId({self})")
    }
}

impl FromStr for AgoraId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        let input = s.trim();
        // Bound the work before decoding: a printable id is 64 characters.
        if input.len() > 100 {
            return Err(IdError::Encoding {
                input: format!("{}…", input.get(..16).unwrap_or_default()),
                reason: format!("{} characters is too long", input.len()),
            });
        }
        let checked = CheckedHrpstring::new::<Bech32m>(input).map_err(|e| IdError::Encoding {
            input: input.to_owned(),
            reason: e.to_string(),
        })?;
        if checked.hrp() != hrp() {
            return Err(IdError::WrongPrefix {
                input: input.to_owned(),
                found: checked.hrp().to_string(),
            });
        }
        let bytes: Vec<u8> = checked.byte_iter().collect();
        let len = bytes.len();
        let array: [u8; PUBLIC_KEY_LEN] =
            bytes.try_into().map_err(|_| IdError::WrongLength { len })?;
        Self::from_bytes(array)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn id(seed: u8) -> AgoraId {
        SigningKey::from_bytes(&[seed; 32]).verifying_key().into()
    }

    proptest::proptest! {
        /// Ids order as their bytes do, also when they share a prefix of any length.
        #[test]
        fn ids_order_as_their_bytes(a: [u8; 32], mut b: [u8; 32], shared in 0usize..=32) {
            b[..shared].copy_from_slice(&a[..shared]);
            proptest::prop_assert_eq!(AgoraId(a).cmp(&AgoraId(b)), a.cmp(&b));
            proptest::prop_assert_eq!(AgoraId(a).cmp(&AgoraId(a)), core::cmp::Ordering::Equal);
        }
    }

    #[test]
    fn printable_round_trip() {
        let a = id(7);
        let s = a.to_string();
        assert!(s.starts_with("agora1"), "{s}");
        assert_eq!(s.parse::<AgoraId>().unwrap(), a);
        assert_eq!(s.to_uppercase().parse::<AgoraId>().unwrap(), a);
        assert_eq!(format!(" {s}\n").parse::<AgoraId>().unwrap(), a);
    }

    #[test]
    fn parse_errors_are_specific() {
        let s = id(1).to_string();
        let mut typo = s.clone().into_bytes();
        let last = typo.len() - 1;
        typo[last] = if typo[last] == b'q' { b'p' } else { b'q' };
        let typo = String::from_utf8(typo).unwrap();
        assert!(matches!(
            typo.parse::<AgoraId>(),
            Err(IdError::Encoding { .. })
        ));

        let other =
            bech32::encode::<Bech32m>(Hrp::parse("other").unwrap(), id(1).as_bytes()).unwrap();
        assert!(matches!(
            other.parse::<AgoraId>(),
            Err(IdError::WrongPrefix { .. })
        ));

        let short = bech32::encode::<Bech32m>(hrp(), &[1u8; 31]).unwrap();
        assert_eq!(
            short.parse::<AgoraId>(),
            Err(IdError::WrongLength { len: 31 })
        );

        let legacy = bech32::encode::<bech32::Bech32>(hrp(), id(1).as_bytes()).unwrap();
        assert!(legacy.parse::<AgoraId>().is_err());
        assert!("".parse::<AgoraId>().is_err());
        assert!("x".repeat(500).parse::<AgoraId>().is_err());
    }

    #[test]
    fn rejects_non_points() {
        // y = 2 with the sign bit set has no matching x on the curve.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        bytes[31] = 0x80;
        let found = (0u8..=255)
            .map(|b| {
                bytes[1] = b;
                AgoraId::from_bytes(bytes)
            })
            .any(|r| r == Err(IdError::NotAKey));
        assert!(found);
    }
}

impl Serialize for AgoraId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for AgoraId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            let bytes = <[u8; PUBLIC_KEY_LEN]>::deserialize(deserializer)?;
            Self::from_bytes(bytes).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(feature = "schemars")]
impl schemars::JsonSchema for AgoraId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AgoraId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "An Agora id: an ed25519 public key in Bech32m with the `agora` prefix.",
            "pattern": "^agora1[02-9ac-hj-np-z]{58}$",
        })
    }
}

#[cfg(test)]
mod serde_tests {
    use super::*;

    #[test]
    fn human_readable_is_the_printable_form_and_binary_is_raw() {
        let id: AgoraId = ed25519_dalek::SigningKey::from_bytes(&[5; 32])
            .verifying_key()
            .into();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<AgoraId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<AgoraId>("\"agora1nope\"").is_err());
        let bin = postcard::to_allocvec(&id).unwrap();
        assert_eq!(bin.as_slice(), id.as_bytes());
        assert_eq!(postcard::from_bytes::<AgoraId>(&bin).unwrap(), id);
    }
}

//! The canonical binary encoding of everything Agora signs.
//!
//! Payloads are [postcard](https://postcard.jamesmunns.com/wire-format) 1.x: fields in
//! declaration order, integers as LEB128 varints (zig-zag for signed), byte strings and
//! sequences length-prefixed, enums as a varint variant index. Our types never use floats or
//! hash maps, only `BTreeMap` (sorted keys), so one value has exactly one encoding.
//!
//! postcard's decoder alone would accept a few alternative spellings (an over-long varint,
//! say). [`decode`] therefore re-encodes what it decoded and rejects the input unless the
//! bytes are identical: only the canonical form is ever accepted, so a signature covers one
//! value and one value only.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why bytes did not decode into a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input is longer than this kind of message allows.
    #[error("message is {len} bytes, more than the {max} allowed")]
    TooLong {
        /// Input length.
        len: usize,
        /// Limit for this kind.
        max: usize,
    },
    /// The input ended early.
    #[error("message is truncated")]
    Truncated,
    /// Bytes remained after the value.
    #[error("{count} trailing bytes after the message")]
    TrailingBytes {
        /// Number of extra bytes.
        count: usize,
    },
    /// The format version byte is not one this build understands.
    #[error("unknown format version {found} (this build reads version {supported})")]
    UnknownVersion {
        /// Version found.
        found: u8,
        /// Version supported.
        supported: u8,
    },
    /// The bytes do not describe a value of the expected type.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The value decoded but its encoding is not the canonical one.
    #[error("message is not canonically encoded")]
    NonCanonical,
    /// A field is outside its allowed range.
    #[error("invalid field {field}: {reason}")]
    InvalidField {
        /// Field path, e.g. `claims.labels`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoding exceeds the limit for its kind.
    #[error("encoded message is {len} bytes, more than the {max} allowed")]
    TooLong {
        /// Encoded length.
        len: usize,
        /// Limit for this kind.
        max: usize,
    },
    /// A field is outside its allowed range.
    #[error("invalid field {field}: {reason}")]
    InvalidField {
        /// Field path.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The serializer failed (does not happen for Agora's own types).
    #[error("cannot encode message: {0}")]
    Serialize(String),
}

/// Encodes `value` canonically, refusing results over `max_len` bytes.
///
/// # Errors
/// [`EncodeError::TooLong`] over the limit; [`EncodeError::Serialize`] if serde fails.
pub fn encode<T: Serialize + ?Sized>(value: &T, max_len: usize) -> Result<Vec<u8>, EncodeError> {
    let bytes = postcard::to_allocvec(value).map_err(|e| EncodeError::Serialize(e.to_string()))?;
    if bytes.len() > max_len {
        return Err(EncodeError::TooLong {
            len: bytes.len(),
            max: max_len,
        });
    }
    Ok(bytes)
}

/// The length of `value`'s canonical encoding, counted without encoding it.
///
/// # Errors
/// [`EncodeError::Serialize`] if serde fails.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, EncodeError> {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        .map_err(|e| EncodeError::Serialize(e.to_string()))
}

/// Decodes exactly one canonically encoded `T` from `bytes` (at most `max_len` long).
///
/// Never panics; allocation is bounded by the input length, which is checked first.
///
/// # Errors
/// Any [`DecodeError`] but `UnknownVersion`.
pub fn decode<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    max_len: usize,
) -> Result<T, DecodeError> {
    if bytes.len() > max_len {
        return Err(DecodeError::TooLong {
            len: bytes.len(),
            max: max_len,
        });
    }
    let (value, rest) = postcard::take_from_bytes::<T>(bytes).map_err(map_postcard)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { count: rest.len() });
    }
    let again = postcard::to_allocvec(&value).map_err(|_| DecodeError::NonCanonical)?;
    if again != bytes {
        return Err(DecodeError::NonCanonical);
    }
    Ok(value)
}

fn map_postcard(e: postcard::Error) -> DecodeError {
    match e {
        postcard::Error::DeserializeUnexpectedEnd => DecodeError::Truncated,
        other => DecodeError::Malformed(other.to_string()),
    }
}

/// Reads a LEB128 `u32` varint in its shortest form, returning it and the rest.
///
/// # Errors
/// `Truncated` when the input ends inside the varint, `NonCanonical` for an over-long
/// form, `Malformed` when the value does not fit in 32 bits.
pub(crate) fn take_varint_u32(bytes: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    let mut value: u32 = 0;
    for (i, byte) in bytes.iter().enumerate().take(5) {
        let low = u32::from(byte & 0x7f);
        let shift = 7 * u32::try_from(i).map_err(|_| DecodeError::Malformed("varint".into()))?;
        if i == 4 && low > 0x0f {
            return Err(DecodeError::Malformed(
                "length varint exceeds 32 bits".into(),
            ));
        }
        value |= low << shift;
        if byte & 0x80 == 0 {
            if i > 0 && *byte == 0 {
                return Err(DecodeError::NonCanonical);
            }
            let rest = bytes.get(i + 1..).ok_or(DecodeError::Truncated)?;
            return Ok((value, rest));
        }
    }
    if bytes.len() >= 5 {
        Err(DecodeError::Malformed(
            "length varint exceeds 32 bits".into(),
        ))
    } else {
        Err(DecodeError::Truncated)
    }
}

/// Appends `value` as a shortest-form LEB128 varint.
pub(crate) fn put_varint_u32(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        a: u64,
        b: String,
        c: Option<bool>,
        d: BTreeMap<String, u32>,
    }

    #[test]
    fn over_long_varint_is_rejected() {
        // 1 as a one-byte varint, then as a two-byte over-long form.
        assert_eq!(decode::<u32>(&[1], 16), Ok(1));
        assert_eq!(
            decode::<u32>(&[0x81, 0x00], 16),
            Err(DecodeError::NonCanonical)
        );
    }

    #[test]
    fn trailing_and_truncated() {
        assert_eq!(
            decode::<u32>(&[1, 2], 16),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
        assert_eq!(decode::<u64>(&[0x80], 16), Err(DecodeError::Truncated));
        assert!(matches!(
            decode::<u64>(&[0; 40], 16),
            Err(DecodeError::TooLong { .. })
        ));
        assert!(matches!(
            decode::<bool>(&[2], 16),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn huge_declared_length_does_not_allocate() {
        // A sequence claiming u32::MAX elements in a 6-byte input.
        let r = decode::<Vec<u64>>(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x01], 64);
        assert!(r.is_err());
    }

    #[test]
    fn encoded_len_counts_the_encoding() {
        let value = (300u32, "agora", vec![Some(1u64), None], [7u8; 32]);
        assert_eq!(
            encoded_len(&value).unwrap(),
            encode(&value, usize::MAX).unwrap().len()
        );
    }

    #[test]
    fn varint_helpers() {
        for v in [0u32, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut out = Vec::new();
            put_varint_u32(&mut out, v);
            out.push(0xaa);
            let (back, rest) = take_varint_u32(&out).unwrap();
            assert_eq!(back, v);
            assert_eq!(rest, &[0xaa]);
        }
        assert_eq!(
            take_varint_u32(&[0x80, 0x00]),
            Err(DecodeError::NonCanonical)
        );
        assert_eq!(take_varint_u32(&[0x80]), Err(DecodeError::Truncated));
        assert!(take_varint_u32(&[0xff, 0xff, 0xff, 0xff, 0x1f]).is_err());
        assert!(take_varint_u32(&[0xff; 6]).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(a: u64, b in ".{0,20}", c: Option<bool>, d in proptest::collection::btree_map(".{0,4}", any::<u32>(), 0..5)) {
            let s = Sample { a, b, c, d };
            let bytes = encode(&s, 1024).unwrap();
            prop_assert_eq!(decode::<Sample>(&bytes, 1024).unwrap(), s);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode::<Sample>(&bytes, 1024);
        }
    }
}

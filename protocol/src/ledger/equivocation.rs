//! [`Equivocation`]: the proof that an author signed two different entries with one `seq`.
//!
//! An honest node never does that: its entries form one chain. The proof is the two signed
//! entries' wire bytes, in ascending digest order (so one pair has one encoding).
//!
//! Checking a proof verifies both signatures and reads only the `author` and `seq` that open
//! each entry's payload; it does not decode the entries' facts. An entry's fact may itself be
//! a proof, so decoding them in full would let an attacker nest proofs hundreds deep (each
//! level a little smaller than the last) and recurse that deep; reading two fields cannot.
//! What the author signed under the entry domain with that opening is its entry, well formed
//! or not, so the proof holds either way.

use core::fmt;

use serde::de::Error as _;
use serde::ser::SerializeTuple as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::DecodeError;
use crate::id::AgoraId;
use crate::signed::{
    Digest, Signed, SignedError, SignedKind, Verifier, VerifyError, verified_payload,
};

use super::entry::{Entry, MAX_PLAIN_ENTRY_WIRE_BYTES};

/// Why two entries do not prove an equivocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EquivocationError {
    /// One of them is not an entry signed by its author.
    #[error("not a signed entry: {0}")]
    NotAnEntry(#[from] SignedError),
    /// They are by two authors.
    #[error("the entries are by {first} and {second}")]
    DifferentAuthors {
        /// The first entry's author.
        first: AgoraId,
        /// The second entry's author.
        second: AgoraId,
    },
    /// They have different sequence numbers.
    #[error("the entries have seq {first} and {second}")]
    DifferentSeqs {
        /// The first entry's seq.
        first: u64,
        /// The second entry's seq.
        second: u64,
    },
    /// They are one entry.
    #[error("the two entries are the same")]
    SameEntry,
    /// They are not in ascending digest order (a proof has one encoding).
    #[error("the entries are not in ascending digest order")]
    Unordered,
    /// Together they are larger than a proof may be.
    #[error("the entries are {len} bytes together, more than the {max} a proof holds")]
    TooLarge {
        /// Their combined wire length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Two signed entries by one author with one `seq` and different digests.
#[derive(Clone, PartialEq, Eq)]
pub struct Equivocation {
    author: AgoraId,
    seq: u64,
    first: Vec<u8>,
    second: Vec<u8>,
}

/// The most wire bytes the two entries of a proof may hold together: two plain entries.
const MAX_PAIR_BYTES: usize = 2 * MAX_PLAIN_ENTRY_WIRE_BYTES;

impl Equivocation {
    /// The proof that `a` and `b` (in either order) equivocate.
    ///
    /// # Errors
    /// Other authors, other seqs, the same entry, or entries too large for one proof
    /// (possible only when both themselves carry proofs: the author is still marked by every
    /// log that accepts both, only this compact proof cannot be made).
    pub fn new(a: &Signed<Entry>, b: &Signed<Entry>) -> Result<Self, EquivocationError> {
        let (first, second) = if a.digest() <= b.digest() {
            (a, b)
        } else {
            (b, a)
        };
        let head = |e: &Signed<Entry>| (e.body().author, e.body().seq);
        Self::check(head(first), head(second), first.digest(), second.digest())?;
        check_size(first.as_bytes(), second.as_bytes())?;
        Ok(Self {
            author: first.body().author,
            seq: first.body().seq,
            first: first.as_bytes().to_vec(),
            second: second.as_bytes().to_vec(),
        })
    }

    /// Checks a proof given as the two entries' wire bytes, `first` with the lower digest,
    /// verifying signatures with `verifier`.
    ///
    /// # Errors
    /// Any [`EquivocationError`].
    pub fn from_wire(
        first: &[u8],
        second: &[u8],
        verifier: &impl Verifier,
    ) -> Result<Self, EquivocationError> {
        check_size(first, second)?;
        let heads = (entry_head(first, verifier)?, entry_head(second, verifier)?);
        let digests = (Digest::of(first), Digest::of(second));
        Self::check(heads.0, heads.1, digests.0, digests.1)?;
        Ok(Self {
            author: heads.0.0,
            seq: heads.0.1,
            first: first.to_vec(),
            second: second.to_vec(),
        })
    }

    fn check(
        first: (AgoraId, u64),
        second: (AgoraId, u64),
        first_digest: Digest,
        second_digest: Digest,
    ) -> Result<(), EquivocationError> {
        if first.0 != second.0 {
            return Err(EquivocationError::DifferentAuthors {
                first: first.0,
                second: second.0,
            });
        }
        if first.1 != second.1 {
            return Err(EquivocationError::DifferentSeqs {
                first: first.1,
                second: second.1,
            });
        }
        match first_digest.cmp(&second_digest) {
            core::cmp::Ordering::Less => Ok(()),
            core::cmp::Ordering::Equal => Err(EquivocationError::SameEntry),
            core::cmp::Ordering::Greater => Err(EquivocationError::Unordered),
        }
    }

    /// The equivocating author.
    pub fn author(&self) -> AgoraId {
        self.author
    }

    /// The sequence number it used twice.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The two entries' wire bytes, lower digest first.
    pub fn entries(&self) -> (&[u8], &[u8]) {
        (&self.first, &self.second)
    }

    /// The two entries' digests, ascending.
    pub fn digests(&self) -> (Digest, Digest) {
        (Digest::of(&self.first), Digest::of(&self.second))
    }
}

fn check_size(first: &[u8], second: &[u8]) -> Result<(), EquivocationError> {
    let len = first.len().saturating_add(second.len());
    if len > MAX_PAIR_BYTES {
        return Err(EquivocationError::TooLarge {
            len,
            max: MAX_PAIR_BYTES,
        });
    }
    Ok(())
}

/// Verifies a signed entry's envelope and returns the `(author, seq)` that open its payload,
/// without decoding the rest (see the module docs).
fn entry_head(wire: &[u8], verifier: &impl Verifier) -> Result<(AgoraId, u64), SignedError> {
    let (signer, _, payload) = verified_payload::<Entry>(wire, verifier)?;
    let ((author, seq), _) = postcard::take_from_bytes::<(AgoraId, u64)>(payload)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if author != signer {
        return Err(VerifyError::WrongSigner { signer, author }.into());
    }
    Ok((author, seq))
}

impl fmt::Debug for Equivocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b) = self.digests();
        f.debug_struct("Equivocation")
            .field("author", &self.author)
            .field("seq", &self.seq)
            .field("first", &a)
            .field("second", &b)
            .finish()
    }
}

/// Canonical form: a pair of byte strings (each a length varint and the entry's wire bytes).
impl Serialize for Equivocation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut pair = s.serialize_tuple(2)?;
        pair.serialize_element(&Bytes(&self.first))?;
        pair.serialize_element(&Bytes(&self.second))?;
        pair.end()
    }
}

/// Decoding checks the proof, verifying both signatures with strict
/// [`Ed25519`](crate::signed::Ed25519) (or, while
/// the evidence log decodes the entry carrying it, with the entry's other signatures).
impl<'de> Deserialize<'de> for Equivocation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (ByteBuf(first), ByteBuf(second)) = <(ByteBuf, ByteBuf)>::deserialize(d)?;
        Self::from_wire(&first, &second, &crate::deferred::Nested).map_err(D::Error::custom)
    }
}

struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

struct ByteBuf(Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_bytes(ByteBufVisitor)
    }
}

struct ByteBufVisitor;

impl serde::de::Visitor<'_> for ByteBufVisitor {
    type Value = ByteBuf;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a signed {} message", Entry::DOMAIN)
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
        Ok(ByteBuf(v.to_vec()))
    }
}

//! [`Entry`]: one node's signed, hash-linked record of one [`Fact`].

use serde::{Deserialize, Serialize};

use crate::attestation::Revocation;
use crate::codec::DecodeError;
use crate::id::{AgoraId, PUBLIC_KEY_LEN};
use crate::lease::{LeaseGrant, UsageReceipt};
use crate::signed::{Digest, SIGNATURE_LEN, Signed, SignedKind};
use crate::signup::SignupRecord;
use crate::time::Timestamp;

use super::fact::{Fact, ReceiptAck};
use super::rating::Rating;

/// Most heads of other authors one entry names as parents. Eight is enough to merge the
/// branches a node sees between two of its own entries; the rest are merged by later ones.
pub const MAX_PARENTS: usize = 8;

/// A `Signed` envelope around a payload: version, signer, length varint, signature.
const ENVELOPE_BYTES: usize = 1 + PUBLIC_KEY_LEN + 5 + SIGNATURE_LEN;

/// A postcard length prefix (a `u32` varint) in front of nested bytes.
const LEN_PREFIX: usize = 5;

/// The largest entry header: author (32), seq (varint ≤ 10), prev (1 + 32), the parents'
/// count (1) and digests, at (varint ≤ 10).
pub const MAX_HEADER_BYTES: usize = PUBLIC_KEY_LEN + 10 + 1 + 32 + 1 + MAX_PARENTS * 32 + 10;

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// The largest fact other than an equivocation proof, tag included. A signup record with a
/// full credential chain (8 attestations) dominates: about 65 KiB.
pub const MAX_EVIDENCE_BYTES: usize = 1 + max(
    max(
        LEN_PREFIX + Signed::<SignupRecord>::MAX_WIRE_BYTES,
        LEN_PREFIX + Signed::<LeaseGrant>::MAX_WIRE_BYTES,
    ),
    max(
        // Usage: the receipt, the option tag and the acknowledgement.
        LEN_PREFIX
            + Signed::<UsageReceipt>::MAX_WIRE_BYTES
            + 1
            + LEN_PREFIX
            + Signed::<ReceiptAck>::MAX_WIRE_BYTES,
        max(
            LEN_PREFIX + Signed::<Rating>::MAX_WIRE_BYTES,
            LEN_PREFIX + Signed::<Revocation>::MAX_WIRE_BYTES,
        ),
    ),
);

/// The largest signed entry whose fact is not an equivocation proof.
pub const MAX_PLAIN_ENTRY_WIRE_BYTES: usize =
    ENVELOPE_BYTES + MAX_HEADER_BYTES + MAX_EVIDENCE_BYTES;

/// The largest equivocation proof: two entries' wire bytes with their length prefixes, so a
/// proof of any two entries that do not themselves carry proofs always fits.
pub const MAX_PROOF_BYTES: usize = 2 * (LEN_PREFIX + MAX_PLAIN_ENTRY_WIRE_BYTES);

/// The largest entry payload: a header and the largest fact (a proof, about 132 KiB).
pub const MAX_ENTRY_PAYLOAD_BYTES: usize =
    MAX_HEADER_BYTES + max(MAX_EVIDENCE_BYTES, 1 + MAX_PROOF_BYTES);

// A proof of any two plain entries fits in an entry, and a full signup record in a plain one.
const _: () = assert!(MAX_ENTRY_PAYLOAD_BYTES >= MAX_HEADER_BYTES + 1 + MAX_PROOF_BYTES);
const _: () = assert!(MAX_PROOF_BYTES >= 2 * (LEN_PREFIX + MAX_PLAIN_ENTRY_WIRE_BYTES));
const _: () = assert!(Signed::<SignupRecord>::MAX_WIRE_BYTES < MAX_EVIDENCE_BYTES);

/// One node's record of one fact, linked by digest to its own previous entry and to heads of
/// other authors it had seen. Signed by its `author`.
///
/// Canonical form (checked by [`SignedKind::validate`]): `prev` is present exactly when
/// `seq > 0`; `parents` are strictly ascending (sorted, no duplicates), at most
/// [`MAX_PARENTS`], and never repeat `prev`. What needs the named entries themselves (that
/// `prev` is the author's entry `seq - 1`, that parents are other authors', that `at` is no
/// earlier than any of them) is checked by the [`EvidenceLog`](super::EvidenceLog) once they
/// are known.
///
/// `author` and `seq` must stay the first two fields: an [`Equivocation`](super::Equivocation)
/// proof reads just them from a signed entry's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The node that appends it (the signer).
    pub author: AgoraId,
    /// 0 for the author's first entry, then one more than `prev`'s.
    pub seq: u64,
    /// The digest of the author's previous entry (`None` exactly for `seq` 0).
    pub prev: Option<Digest>,
    /// Digests of other authors' entries this one follows, ascending.
    pub parents: Vec<Digest>,
    /// When the author appended it, by its clock, never earlier than what it names.
    pub at: Timestamp,
    /// What it records.
    pub fact: Fact,
}

impl Entry {
    /// Every digest this entry names: `prev` first, then the parents.
    pub fn links(&self) -> impl Iterator<Item = &Digest> {
        self.prev.iter().chain(self.parents.iter())
    }
}

impl SignedKind for Entry {
    const DOMAIN: &'static str = "agora/ledger-entry/v1";
    const MAX_PAYLOAD_BYTES: usize = MAX_ENTRY_PAYLOAD_BYTES;

    fn validate(&self) -> Result<(), DecodeError> {
        if (self.seq == 0) != self.prev.is_none() {
            return Err(invalid(
                "prev",
                format!(
                    "seq {} {} a previous entry",
                    self.seq,
                    if self.prev.is_some() {
                        "cannot have"
                    } else {
                        "needs"
                    }
                ),
            ));
        }
        if self.parents.len() > MAX_PARENTS {
            return Err(invalid(
                "parents",
                format!("{} parents, at most {MAX_PARENTS}", self.parents.len()),
            ));
        }
        if self.parents.windows(2).any(|w| w.first() >= w.get(1)) {
            return Err(invalid("parents", "are not strictly ascending".to_owned()));
        }
        if let Some(prev) = &self.prev
            && self.parents.contains(prev)
        {
            return Err(invalid("parents", format!("repeat prev {prev}")));
        }
        self.fact.validate()
    }

    fn author(&self) -> Option<AgoraId> {
        Some(self.author)
    }
}

fn invalid(field: &'static str, reason: String) -> DecodeError {
    DecodeError::InvalidField { field, reason }
}

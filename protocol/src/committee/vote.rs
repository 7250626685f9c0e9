//! [`Vote`]: a validator's signature on one op in one slot, and [`VoteRecord`], what a
//! validator stores before it lets the vote out.

use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError, EncodeError};
use crate::signed::{Digest, Signed, SignedError, SignedKind, Verifier};

use super::op::{MAX_OP_BYTES, Op, Slot};

/// "In the committee named by `genesis`, I vote for op `op` in `slot`." Signed by a
/// validator; an honest one signs each slot at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The committee's genesis digest.
    pub genesis: Digest,
    /// The slot.
    pub slot: Slot,
    /// The digest of the op ([`Op::digest`]).
    pub op: Digest,
}

impl SignedKind for Vote {
    const DOMAIN: &'static str = "agora/quota-vote/v1";
    const MAX_PAYLOAD_BYTES: usize = 128;
}

/// What a validator persists for each vote it casts: the op and the signed vote. A validator
/// rebuilt from its records ([`Validator::restore`](super::Validator::restore)) never signs
/// another op in a slot it voted in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRecord {
    /// The op voted for.
    pub op: Op,
    /// The signed vote.
    pub vote: Signed<Vote>,
}

/// The largest encoded [`VoteRecord`].
pub const MAX_RECORD_BYTES: usize = MAX_OP_BYTES + 5 + Signed::<Vote>::MAX_WIRE_BYTES;

/// Why stored bytes are not a vote record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes do not decode or a signature does not verify.
    #[error("vote record does not decode: {0}")]
    Decode(#[from] SignedError),
    /// The vote names another op or slot than the record's op.
    #[error("the vote does not match the op it is stored with")]
    Mismatch,
}

impl VoteRecord {
    /// Canonical bytes for the store.
    ///
    /// # Errors
    /// [`EncodeError`] (not reachable for records a validator made).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        codec::encode(self, MAX_RECORD_BYTES)
    }

    /// Decodes stored bytes, verifying the vote's signature with `verifier` (nested signed
    /// ops verify with strict ed25519) and that the vote is for the op.
    ///
    /// # Errors
    /// [`RecordError`].
    pub fn decode(bytes: &[u8], verifier: &impl Verifier) -> Result<Self, RecordError> {
        // A nested `Signed` is its wire bytes behind a length prefix, as a `Vec<u8>` is.
        #[derive(Deserialize, Serialize)]
        struct Wire {
            op: Op,
            vote: Vec<u8>,
        }
        let wire: Wire = codec::decode(bytes, MAX_RECORD_BYTES).map_err(SignedError::from)?;
        let vote = Signed::<Vote>::decode(&wire.vote, verifier)?;
        let record = Self { op: wire.op, vote };
        record.check()?;
        Ok(record)
    }

    /// The slot voted in.
    pub fn slot(&self) -> Slot {
        self.vote.body().slot
    }

    /// Checks that the vote is for this op.
    ///
    /// # Errors
    /// [`RecordError::Mismatch`].
    pub fn check(&self) -> Result<(), RecordError> {
        let vote = self.vote.body();
        if vote.slot != self.op.slot() || vote.op != self.op.digest() {
            return Err(RecordError::Mismatch);
        }
        Ok(())
    }
}

impl From<DecodeError> for RecordError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e.into())
    }
}

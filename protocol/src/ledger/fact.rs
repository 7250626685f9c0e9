//! [`Fact`]: what an evidence-log entry records. Every fact is self-authenticating: a signed
//! message by the party it speaks for, carried as its wire bytes and verified as it decodes.

use serde::{Deserialize, Serialize};

use crate::attestation::Revocation;
use crate::codec::DecodeError;
pub use crate::lease::ReceiptAck;
use crate::lease::{LeaseGrant, UsageReceipt};
use crate::signed::Signed;
use crate::signup::SignupRecord;

use super::equivocation::Equivocation;
use super::rating::Rating;

/// One self-authenticating fact.
///
/// The variant index is the wire tag: new kinds of fact are appended at the end (older
/// decoders refuse them), existing ones never move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fact {
    /// An agent signed up (its record re-verifies against anyone's trust roots).
    Signup(Signed<SignupRecord>),
    /// A provider accepted a lease: the signed grant. How the lease went is told by its
    /// receipts (the final one's `ended`) and ratings, or by their absence.
    Lease(Signed<LeaseGrant>),
    /// What a lease used and cost, by its provider, acknowledged by the agent if it could.
    Usage(Usage),
    /// A rater's score for a provider on a lease.
    Rating(Signed<Rating>),
    /// An issuer withdrew an attestation.
    Revocation(Signed<Revocation>),
    /// An author signed two different entries with one sequence number.
    Equivocation(Equivocation),
}

impl Fact {
    /// Checks what the nested messages' own validation cannot: that they belong together.
    ///
    /// # Errors
    /// [`DecodeError::InvalidField`] naming the mismatch.
    pub fn validate(&self) -> Result<(), DecodeError> {
        match self {
            Self::Usage(usage) => usage.validate(),
            Self::Signup(_)
            | Self::Lease(_)
            | Self::Rating(_)
            | Self::Revocation(_)
            | Self::Equivocation(_) => Ok(()),
        }
    }

    /// A short lowercase name of the kind, for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Signup(_) => "signup",
            Self::Lease(_) => "lease",
            Self::Usage(_) => "usage",
            Self::Rating(_) => "rating",
            Self::Revocation(_) => "revocation",
            Self::Equivocation(_) => "equivocation",
        }
    }
}

/// A provider-signed usage receipt and, where the agent was live to sign it, the agent's
/// acknowledgement of that very receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// The provider's receipt.
    pub receipt: Signed<UsageReceipt>,
    /// The agent's countersignature, if any.
    pub ack: Option<Signed<ReceiptAck>>,
}

impl Usage {
    /// Whether this fact prevails over `other`, a fact about the same receipt, as the
    /// evidence of what the lease used: the agent's acknowledgement upgrades the provider's
    /// word alone, so an acknowledged fact prevails over an unacknowledged one; between two
    /// acknowledgements the lower digest prevails. The order is total on distinct facts
    /// and reads nothing but the two facts, so every replica picks the same one whatever
    /// order the entries came in (reputation counts a receipt as acknowledged when any
    /// logged fact about it is; a node appends an acknowledged fact after an
    /// unacknowledged one, never the reverse).
    pub fn prevails_over(&self, other: &Self) -> bool {
        match (&self.ack, &other.ack) {
            (Some(_), None) => true,
            (None, _) => false,
            (Some(mine), Some(theirs)) => mine.digest() < theirs.digest(),
        }
    }

    /// Of `facts` about one receipt, the one that prevails (see [`Usage::prevails_over`]).
    pub fn prevailing<'a>(facts: impl IntoIterator<Item = &'a Self>) -> Option<&'a Self> {
        facts.into_iter().fold(None, |best, f| match best {
            Some(b) if !f.prevails_over(b) => Some(b),
            _ => Some(f),
        })
    }

    /// The acknowledgement, if present, is by the receipt's agent and names this receipt.
    ///
    /// # Errors
    /// [`DecodeError::InvalidField`] `usage.ack` on a mismatch.
    pub fn validate(&self) -> Result<(), DecodeError> {
        let Some(ack) = &self.ack else {
            return Ok(());
        };
        let receipt = self.receipt.body();
        if ack.body().agent != receipt.agent {
            return Err(DecodeError::InvalidField {
                field: "usage.ack",
                reason: format!(
                    "signed by {}, not by the receipt's agent {}",
                    ack.body().agent,
                    receipt.agent
                ),
            });
        }
        if ack.body().receipt != self.receipt.digest() {
            return Err(DecodeError::InvalidField {
                field: "usage.ack",
                reason: format!("acknowledges receipt {}", ack.body().receipt),
            });
        }
        Ok(())
    }
}

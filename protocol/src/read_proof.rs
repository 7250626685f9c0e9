//! Read proofs: what an agent signs to read its own records at one node.
//!
//! A node answers `GET /v1/leases?agent=ID` with every lease it relayed or runs for the agent:
//! images, commands (which may hold secrets), receipts, credits spent. It shows them only to
//! a caller that proves it is the agent, or acts for it, with a [`ReadProof`]:
//!
//! ```text
//! agent ──Signed<ReadProof { agent, node, issued_at, delegation? }>──▶ node
//!                 node: signature by the agent (or its delegate), for this node,
//!                       for the agent asked about, issued within READ_PROOF_WINDOW of now,
//!                       a delegation allowing `Status` now
//! ```
//!
//! The proof names the node it is for, so one shown to a node cannot be replayed at
//! another; it is fresh for [`READ_PROOF_WINDOW`] either side of the node's clock, so one
//! that leaks (a logged URL) soon stops working. It carries no nonce: reading changes
//! nothing, so reading twice with one proof within the window harms no one.
//!
//! ```
//! use agora_protocol::read_proof::{READ_PROOF_WINDOW, ReadProof};
//! use agora_protocol::{AgoraId, Ed25519, Signed, Timestamp};
//!
//! let agent = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
//! let node: AgoraId = ed25519_dalek::SigningKey::from_bytes(&[2; 32]).verifying_key().into();
//! let now = Timestamp::from_unix_secs(1_800_000_000);
//! let proof = ReadProof::new(agent.verifying_key().into(), node, now, None);
//! let signed = Signed::sign(proof, &agent)?;
//! let back = Signed::<ReadProof>::decode(signed.as_bytes(), &Ed25519)?;
//! back.body().check(&node, &back.body().agent, now.saturating_add(READ_PROOF_WINDOW))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::time::Duration;

use serde::{Deserialize, Serialize};

use crate::codec::DecodeError;
use crate::id::AgoraId;
use crate::lease::{Delegation, OpKind, author_of, check_delegation};
use crate::signed::{Signed, SignedKind};
use crate::time::Timestamp;

/// How far a proof's `issued_at` may be from the node's clock, either way.
pub const READ_PROOF_WINDOW: Duration = Duration::from_secs(5 * 60);

/// An agent's signed proof, for one node, that the caller is the agent (or its delegate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadProof {
    /// The agent whose records are read.
    pub agent: AgoraId,
    /// The node the proof is for (the only one that accepts it).
    pub node: AgoraId,
    /// When it was signed.
    pub issued_at: Timestamp,
    /// Present when a delegate signs for the agent: it must allow [`OpKind::Status`].
    pub delegation: Option<Signed<Delegation>>,
}

/// Why a node refuses a verified [`ReadProof`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadProofError {
    /// It proves who another agent is.
    #[error("the proof is {proof}'s, not {asked}'s")]
    WrongAgent {
        /// The agent the proof names.
        proof: AgoraId,
        /// The agent asked about.
        asked: AgoraId,
    },
    /// It is for another node.
    #[error("the proof is for node {proof}, not this node ({node})")]
    WrongNode {
        /// The node the proof names.
        proof: AgoraId,
        /// This node.
        node: AgoraId,
    },
    /// Issued too long ago, or too far in the future.
    #[error("the proof was issued at {issued_at}, more than {window_secs} s from now ({now})")]
    Stale {
        /// When it says it was signed.
        issued_at: Timestamp,
        /// The node's clock.
        now: Timestamp,
        /// [`READ_PROOF_WINDOW`], seconds.
        window_secs: u64,
    },
    /// Its delegation does not allow reading the agent's leases now.
    #[error(
        "the delegation does not allow `status` now (ops {ops:?}, valid from {from} until {until})"
    )]
    Scope {
        /// What the delegation allows.
        ops: Vec<OpKind>,
        /// Its `issued_at`.
        from: Timestamp,
        /// Its `expires_at`.
        until: Timestamp,
    },
}

impl ReadProof {
    /// A proof that the signer is `agent` (or, with `delegation`, acts for it) to `node`.
    pub fn new(
        agent: AgoraId,
        node: AgoraId,
        issued_at: Timestamp,
        delegation: Option<Signed<Delegation>>,
    ) -> Self {
        Self {
            agent,
            node,
            issued_at,
            delegation,
        }
    }

    /// Whether this proof (already verified as [`Signed`]) lets its signer read `agent`'s
    /// records at `node` at `now`.
    ///
    /// # Errors
    /// [`ReadProofError`]: for another agent or node, stale, or delegated without
    /// [`OpKind::Status`] now.
    pub fn check(
        &self,
        node: &AgoraId,
        agent: &AgoraId,
        now: Timestamp,
    ) -> Result<(), ReadProofError> {
        if self.agent != *agent {
            return Err(ReadProofError::WrongAgent {
                proof: self.agent,
                asked: *agent,
            });
        }
        if self.node != *node {
            return Err(ReadProofError::WrongNode {
                proof: self.node,
                node: *node,
            });
        }
        let skew = if self.issued_at > now {
            self.issued_at.saturating_duration_since(now)
        } else {
            now.saturating_duration_since(self.issued_at)
        };
        if skew > READ_PROOF_WINDOW {
            return Err(ReadProofError::Stale {
                issued_at: self.issued_at,
                now,
                window_secs: READ_PROOF_WINDOW.as_secs(),
            });
        }
        if let Some(d) = &self.delegation {
            let d = d.body();
            if !d.allows(OpKind::Status, now) {
                return Err(ReadProofError::Scope {
                    ops: d.ops.clone(),
                    from: d.issued_at,
                    until: d.expires_at,
                });
            }
        }
        Ok(())
    }
}

impl SignedKind for ReadProof {
    const DOMAIN: &'static str = "agora/read-proof/v1";
    // Two ids, a time, the option tag and a delegation at its largest.
    const MAX_PAYLOAD_BYTES: usize = Signed::<Delegation>::MAX_WIRE_BYTES + 96;

    fn validate(&self) -> Result<(), DecodeError> {
        check_delegation(self.agent, self.delegation.as_ref())
    }

    fn author(&self) -> Option<AgoraId> {
        Some(author_of(self.agent, self.delegation.as_ref()))
    }
}

#[cfg(test)]
#[path = "read_proof_tests.rs"]
mod tests;

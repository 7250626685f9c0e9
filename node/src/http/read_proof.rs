//! Who may list an agent's leases: `GET /v1/leases?agent=ID` shows images, commands (which
//! may hold secrets), receipts and credits spent, so it answers only a caller that proves it
//! is the agent or acts for it, the way every other agent operation is authenticated.
//!
//! The proof is one of:
//! - `proof=B64URL`: a [`ReadProof`] the agent signed (or a delegate, with a delegation that
//!   allows `status` now) for this node, issued within
//!   [`READ_PROOF_WINDOW`](agora_protocol::read_proof::READ_PROOF_WINDOW) of its clock;
//! - `Authorization: Bearer agt_…`: one of this node's tokens whose delegation is the agent's
//!   and allows `status` now (see [`crate::agent::tokens`]).
//!
//! `GET /v1/leases/{id}` needs neither: a lease id is the SHA-256 of the agent's signed
//! request, unguessable, so knowing it is the capability to read that one lease.
//!
//! | Code | Status | Meaning |
//! |---|---|---|
//! | `proof_required` | 401 | neither `proof` nor a bearer token |
//! | `malformed_proof` | 400 | `proof` is not base64url of a signed read proof |
//! | `bad_proof` | 401 | its signature does not verify, is not the agent's (or its delegate's), or it proves another agent |
//! | `proof_wrong_node` | 401 | it was signed for another node |
//! | `stale` | 409 | issued more than five minutes before or after this node's clock |
//! | `unauthorized` | 403 | its delegation, or the token's, does not allow `status` now; or the token is another agent's |
//! | `bad_token` | 401 | an unknown, revoked or expired bearer token |

use agora_protocol::lease::OpKind;
use agora_protocol::read_proof::{ReadProof, ReadProofError};
use agora_protocol::{AgoraId, DecodeError, Ed25519, Signed, SignedError, Timestamp};
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::ApiError;
use crate::agent::Tokens;
use crate::agent::tokens::bearer;

/// Who proved the right to read an agent's leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// The agent, with its own signature.
    Agent,
    /// A delegate (this key) under the agent's delegation.
    Delegate(AgoraId),
    /// A bearer token of this node, standing for the agent's delegation to it.
    Token,
}

impl Reader {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Delegate(_) => "delegate",
            Self::Token => "token",
        }
    }
}

/// Checks that the caller may read `agent`'s leases at `node` (this node) at `now`: with
/// `proof` (the query parameter) when given, else with the request's bearer token.
///
/// # Errors
/// The codes in the [module](self) table.
pub fn authorize(
    tokens: &Tokens,
    node: &AgoraId,
    agent: &AgoraId,
    proof: Option<&str>,
    headers: &HeaderMap,
    now: Timestamp,
) -> Result<Reader, ApiError> {
    if let Some(text) = proof {
        return check_proof(text, node, agent, now);
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    let Some(token) = token else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "proof_required",
            format!(
                "listing {agent}'s leases needs proof that you are the agent: `proof`, a read \
                 proof it signed for this node ({node}), or `Authorization: Bearer` with its \
                 token of this node (`agora agent ps` signs one)"
            ),
        ));
    };
    let session = tokens.find(token, now)?;
    if session.agent != *agent {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "unauthorized",
            format!("the token is {}'s, not {agent}'s", session.agent),
        ));
    }
    if !session.allows(OpKind::Status, now) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "unauthorized",
            "the token's delegation does not allow `status` now: sign one that does",
        ));
    }
    Ok(Reader::Token)
}

/// Decodes and checks a base64url `Signed<ReadProof>`.
fn check_proof(
    text: &str,
    node: &AgoraId,
    agent: &AgoraId,
    now: Timestamp,
) -> Result<Reader, ApiError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim().as_bytes())
        .map_err(|e| {
            ApiError::bad_request("malformed_proof", format!("proof is not base64url: {e}"))
        })?;
    let proof = Signed::<ReadProof>::decode(&bytes, &Ed25519).map_err(|e| match e {
        // Signed by someone else than it names, or with another agent's delegation.
        SignedError::Verify(_) | SignedError::Decode(DecodeError::InvalidField { .. }) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "bad_proof", format!("proof: {e}"))
        }
        SignedError::Decode(d) => ApiError::bad_request("malformed_proof", format!("proof: {d}")),
    })?;
    proof.body().check(node, agent, now).map_err(|e| {
        let (status, code) = match &e {
            ReadProofError::WrongAgent { .. } => (StatusCode::UNAUTHORIZED, "bad_proof"),
            ReadProofError::WrongNode { .. } => (StatusCode::UNAUTHORIZED, "proof_wrong_node"),
            ReadProofError::Stale { .. } => (StatusCode::CONFLICT, "stale"),
            ReadProofError::Scope { .. } => (StatusCode::FORBIDDEN, "unauthorized"),
        };
        ApiError::new(status, code, e.to_string())
    })?;
    Ok(match &proof.body().delegation {
        None => Reader::Agent,
        Some(_) => Reader::Delegate(proof.signer()),
    })
}

#[cfg(test)]
#[path = "read_proof_tests.rs"]
mod tests;

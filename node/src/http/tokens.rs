//! `POST /v1/tokens`, `GET` and `DELETE /v1/tokens/self`: an agent exchanges a delegation it
//! signed to this node for a short bearer token that works at this node only (see
//! [`crate::agent::tokens`]); with it, `/mcp` acts for the agent within the delegation.
//!
//! | Code | Status | Meaning |
//! |---|---|---|
//! | `malformed_delegation` | 400 | not base64url of a signed delegation, or a bad signature |
//! | `invalid_record` | 400 | the signup record given does not decode or verify |
//! | `delegation_wrong_node` | 400 | the delegate is not this node |
//! | `delegation_expired` | 400 | the delegation is not valid now |
//! | `delegation_reused` | 409 | the delegation already bought a token |
//! | `signup_required` | 400 | no signup record given, and none at this node |
//! | `signup_mismatch` | 400 | the signup record is another agent's |
//! | `tokens_exhausted` | 503 | too many live tokens |
//! | `bad_token` | 401 | `…/self` without a live token of this node |

use std::sync::Arc;

use agora_protocol::lease::{Delegation, OpKind};
use agora_protocol::signup::SignupRecord;
use agora_protocol::{AgoraId, Ed25519, Signed, Timestamp};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::json::JsonBody;
use crate::agent::tokens::{Session, TokenError, bearer};
use crate::clock;
use crate::daemon::Shared;

/// `POST /v1/tokens` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// base64url of the agent's `Signed<Delegation>` naming this node as delegate.
    pub delegation: String,
    /// base64url of the agent's `Signed<SignupRecord>`; optional when it signed up here.
    #[serde(default)]
    pub signup: Option<String>,
}

/// What a token stands for (never the token itself, except once when issued).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct TokenView {
    /// The bearer token, only in the answer that issues it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The agent it authenticates.
    pub agent: AgoraId,
    /// The node it works at (this one, only).
    pub node: AgoraId,
    /// What the agent allowed this node to do for it.
    pub ops: Vec<OpKind>,
    /// Most credits one lease requested under it may commit.
    pub spend_cap_credits: u64,
    /// When the token ends (RFC 3339).
    pub expires_at: String,
}

impl TokenView {
    fn of(session: &Session, node: AgoraId, token: Option<String>) -> Self {
        let d = session.delegation.body();
        Self {
            token,
            agent: session.agent,
            node,
            ops: d.ops.clone(),
            spend_cap_credits: d.spend_cap_credits,
            expires_at: session.expires_at.to_string(),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        let status = match &e {
            TokenError::Reused => StatusCode::CONFLICT,
            TokenError::Full(_) => StatusCode::SERVICE_UNAVAILABLE,
            TokenError::Unknown => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

fn decode<T: agora_protocol::SignedKind>(
    text: &str,
    code: &'static str,
    what: &str,
) -> Result<Signed<T>, ApiError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim())
        .map_err(|e| ApiError::bad_request(code, format!("{what}: not base64url: {e}")))?;
    Signed::decode(&bytes, &Ed25519)
        .map_err(|e| ApiError::bad_request(code, format!("{what}: {e}")))
}

/// The agent's signup record: the one given, else the one from its signup here.
fn signup_record(
    shared: &Shared,
    given: Option<&str>,
    agent: &AgoraId,
) -> Result<Signed<SignupRecord>, ApiError> {
    if let Some(text) = given {
        return decode(text, "invalid_record", "signup");
    }
    let account = super::signup::service(shared)?.account(agent)?;
    let Some(account) = account else {
        return Err(ApiError::bad_request(
            "signup_required",
            format!(
                "{agent} has not signed up at this node: send `signup`, the record from signing \
                 up elsewhere"
            ),
        ));
    };
    decode(
        &account.signup_record,
        "invalid_record",
        "stored signup record",
    )
}

/// `POST /v1/tokens`.
pub async fn issue(
    State(shared): State<Arc<Shared>>,
    JsonBody(body): JsonBody<TokenBody>,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    let delegation: Signed<Delegation> =
        decode(&body.delegation, "malformed_delegation", "delegation")?;
    let agent = delegation.body().agent;
    let signup = signup_record(&shared, body.signup.as_deref(), &agent)?;
    let now = clock::now();
    let issued = shared
        .tokens
        .issue(delegation, signup, now, &mut rand::rng())?;
    tracing::info!(%agent, expires_at = %issued.session.expires_at, "token issued");
    Ok((
        StatusCode::CREATED,
        Json(TokenView::of(
            &issued.session,
            shared.id,
            Some(issued.token),
        )),
    ))
}

/// The live session behind the request's bearer token at `now`.
///
/// # Errors
/// `bad_token` (401) without one.
pub fn session_of(
    shared: &Shared,
    headers: &HeaderMap,
    now: Timestamp,
) -> Result<(String, Session), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .ok_or(TokenError::Unknown)?;
    let session = shared.tokens.find(token, now)?;
    Ok((token.to_owned(), session))
}

/// `GET /v1/tokens/self`.
pub async fn show(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<TokenView>, ApiError> {
    let (_, session) = session_of(&shared, &headers, clock::now())?;
    Ok(Json(TokenView::of(&session, shared.id, None)))
}

/// `DELETE /v1/tokens/self`.
pub async fn revoke(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (token, session) = session_of(&shared, &headers, clock::now())?;
    shared.tokens.revoke(&token);
    tracing::info!(agent = %session.agent, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}

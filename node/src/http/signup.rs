//! `GET /v1/signup/challenge` and `POST /v1/signup`: agents sign up with one signed call (see [`crate::agent::signup`] for the checks, in order).
//!
//! | Code | Status | Meaning |
//! |---|---|---|
//! | `rate_limited` | 429 | too many requests from this address or prefix (`Retry-After`) |
//! | `challenges_exhausted` | 503 | too many challenges outstanding (`Retry-After`) |
//! | `invalid_record` | 400 | the record does not decode or its signature does not verify |
//! | `challenge_wrong_node` | 400 | the record answers another node's challenge |
//! | `challenge_unknown` | 400 | not a challenge this node issued |
//! | `challenge_expired` | 400 | answered after the challenge's time-to-live |
//! | `challenge_replayed` | 409 | the challenge was already used |
//! | `pow_required` | 403 | an unattested signup without enough proof of work |
//! | `pow_invalid` | 403 | the proof of work does not check out |
//! | `untrusted` | 403 | the attestation does not verify here (unknown issuer, expired, revoked, …) |
//! | `unknown_account` | 404 | `GET /v1/accounts/{agent}`: no signup here |
//!
//! A signup is recorded in the ledger before it is answered; the answer's `ledger_entry`
//! names the entry (hex digest), or is `null` when the ledger could not take it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::ApiError;
use super::json::JsonBody;
use crate::agent::{IssuedChallenge, SignupError, SignupService};
use crate::clock;
use crate::daemon::Shared;

/// Largest `POST /v1/signup` body: a maximal record in base64url, plus JSON.
pub const MAX_BODY_BYTES: usize =
    agora_protocol::Signed::<agora_protocol::signup::SignupRecord>::MAX_WIRE_BYTES / 3 * 4 + 1024;

/// `POST /v1/signup` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupBody {
    /// base64url of the agent's `Signed<SignupRecord>` wire bytes.
    pub record: String,
}

impl From<SignupError> for ApiError {
    fn from(e: SignupError) -> Self {
        let status = match &e {
            SignupError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            SignupError::ChallengesExhausted { .. } => StatusCode::SERVICE_UNAVAILABLE,
            SignupError::ChallengeReplayed => StatusCode::CONFLICT,
            SignupError::Standing(_) => StatusCode::FORBIDDEN,
            SignupError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        let retry = e.retry_after();
        let err = ApiError::new(status, e.code(), e.to_string());
        match retry {
            Some(d) => err.with_retry_after(d.as_secs().max(1)),
            None => err,
        }
    }
}

pub(super) fn service(shared: &Shared) -> Result<&Arc<SignupService>, ApiError> {
    shared.signup().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "signup is not running on this node",
        )
    })
}

/// `GET /v1/signup/challenge`.
pub async fn challenge(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Json<IssuedChallenge>, ApiError> {
    let c = service(&shared)?.challenge(peer.ip(), clock::now(), &mut rand::rng())?;
    Ok(Json(c))
}

/// `POST /v1/signup`.
pub async fn signup(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<SignupBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let account = service(&shared)?.signup(peer.ip(), &body.record, clock::now())?;
    let record = account.signup_record.clone();
    let entry = match shared.ledger() {
        Some(ledger) => log_signup(ledger, &record).await,
        None => None,
    };
    Ok(Json(
        serde_json::json!({ "account": account, "signup_record": record, "ledger_entry": entry }),
    ))
}

/// Appends the signup record to the ledger: the digest of the entry (hex), written and
/// synced, or `None` (logged) when the ledger refused it. The account stands either way:
/// the agent's signup does not depend on the evidence log.
async fn log_signup(ledger: &Arc<crate::ledger::Ledger>, record_base64: &str) -> Option<String> {
    use agora_protocol::ledger::Fact;
    use agora_protocol::signup::SignupRecord;
    use agora_protocol::{Ed25519, Signed};
    let bytes = agora_protocol::attestation::decode_base64(
        record_base64,
        Signed::<SignupRecord>::MAX_WIRE_BYTES,
    )
    .ok()?;
    let record = Signed::<SignupRecord>::decode(&bytes, &Ed25519).ok()?;
    let agent = record.body().agent;
    match ledger.record(Fact::Signup(record)).await {
        Ok(crate::ledger::Appended::New(entry)) => Some(entry.digest().to_string()),
        Ok(crate::ledger::Appended::Known(_)) => None,
        Err(e) => {
            tracing::warn!(%agent, error = %e, "cannot record the signup in the ledger");
            None
        }
    }
}

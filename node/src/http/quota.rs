//! The quota committee over HTTP (nodes with a genesis only; others answer `no_committee`).
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /v1/accounts/{agent}/quota` | the agent's quota account: balance, locks, `next_seq` and `head` for its next op |
//! | `POST /v1/accounts/{agent}/quota` | `{"op"}`: the agent's signed credit or free-tier claim, certified → `{certificate, account}` |
//!
//! `POST /v1/leases` takes the agent's signed lock beside its request (`lock`); the gateway
//! certifies it here ([`certify_lock`]) before relaying.

use std::sync::Arc;

use agora_protocol::committee::{
    Action, Certificate, ChainOp, MAX_OP_BYTES, Op, Refusal, UncheckedCertificate,
};
use agora_protocol::lease::{LeaseOp, LeaseRequest};
use agora_protocol::{AgoraId, Signed};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::ApiError;
use super::json::JsonBody;
use crate::agent::quota::{QuotaAccount, account_view};
use crate::clock;
use crate::committee::{CertifyError, Quota};
use crate::daemon::Shared;

/// Largest `POST /v1/accounts/{agent}/quota` body: a maximal op in base64url, plus JSON.
pub const MAX_BODY_BYTES: usize = MAX_OP_BYTES / 3 * 4 + 1024;

/// `POST /v1/accounts/{agent}/quota` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpBody {
    /// base64url of the op's canonical encoding: a `ChainOp` crediting an attestation, or a
    /// `FreeTierClaim`, signed by the agent.
    pub op: String,
}

fn quota(shared: &Shared) -> Result<&Arc<Quota>, ApiError> {
    shared.quota().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_committee",
            "this node has no quota committee (no genesis configured)",
        )
    })
}

async fn view(quota: &Arc<Quota>, agent: AgoraId) -> Result<QuotaAccount, ApiError> {
    let view = quota.account(agent).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "committee_unreachable",
            e.to_string(),
        )
    })?;
    Ok(account_view(agent, quota.committee(), &view, clock::now()))
}

/// `GET /v1/accounts/{agent}/quota`.
pub async fn account(
    State(shared): State<Arc<Shared>>,
    Path(agent): Path<String>,
) -> Result<Json<QuotaAccount>, ApiError> {
    // The path is checked before the node's configuration: bad input is named as such.
    let agent = ApiError::path_id("bad_agent", &agent)?;
    Ok(Json(view(quota(&shared)?, agent).await?))
}

fn refused(e: &CertifyError) -> ApiError {
    let status = match e {
        CertifyError::Refused(_) => StatusCode::CONFLICT,
        CertifyError::TimedOut { .. } | CertifyError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
    };
    let code = if status == StatusCode::CONFLICT {
        "quota"
    } else {
        "committee_unreachable"
    };
    ApiError::new(status, code, e.to_string())
}

/// Certifies `op`; when more than `f` validators lack the account's earlier ops (they
/// missed a certificate), once more with the account's head certificate for them.
async fn certify(quota: &Arc<Quota>, op: Op) -> Result<Certificate, ApiError> {
    match quota.certify(op.clone(), Vec::new()).await {
        Ok(cert) => Ok(cert),
        Err(e)
            if e.refusals()
                .iter()
                .any(|(_, r)| matches!(r, Refusal::Behind { .. })) =>
        {
            let history = quota
                .account(op.account())
                .await
                .ok()
                .and_then(|v| v.head)
                .into_iter()
                .collect();
            quota.certify(op, history).await.map_err(|e| refused(&e))
        }
        Err(e) => Err(refused(&e)),
    }
}

/// `POST /v1/accounts/{agent}/quota`.
pub async fn submit(
    State(shared): State<Arc<Shared>>,
    Path(agent): Path<String>,
    JsonBody(body): JsonBody<OpBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let agent = ApiError::path_id("bad_agent", &agent)?;
    let quota = quota(&shared)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(body.op.trim().as_bytes())
        .map_err(|e| ApiError::bad_request("malformed_op", format!("op is not base64url: {e}")))?;
    let op: Op = agora_protocol::codec::decode(&bytes, MAX_OP_BYTES)
        .map_err(|e| ApiError::bad_request("malformed_op", format!("op: {e}")))?;
    let allowed = match &op {
        Op::Chain(c) => matches!(c.body().action, Action::Credit(_)),
        Op::FreeTier(_) => true,
        Op::Settle(_) | Op::Unlock(_) => false,
    };
    if !allowed {
        return Err(ApiError::bad_request(
            "malformed_op",
            format!(
                "a {} op is not submitted here (locks go with POST /v1/leases)",
                op.kind()
            ),
        ));
    }
    if op.account() != agent {
        return Err(ApiError::bad_request(
            "malformed_op",
            format!("the op is {}'s, not {agent}'s", op.account()),
        ));
    }
    let cert = certify(quota, op).await?;
    let encoded = cert
        .encode()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let account = view(quota, agent).await.ok();
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "certificate": URL_SAFE_NO_PAD.encode(encoded),
            "account": account,
        })),
    ))
}

/// The certificate of the agent's lock for `request` (`lock`: base64url of its
/// `Signed<ChainOp>`), or `None` without a lock. The lock must be the request's agent's,
/// for this very lease, at one of its candidates.
///
/// # Errors
/// `no_committee`, `malformed_lock`, `bad_signature`, `bad_lock`, `quota` (the committee
/// refused: not enough quota, a conflicting op), `committee_unreachable`.
pub async fn certify_lock(
    shared: &Shared,
    lock: Option<&str>,
    request: &Signed<LeaseRequest>,
) -> Result<Option<UncheckedCertificate>, ApiError> {
    let Some(lock) = lock else {
        return Ok(None);
    };
    let quota = quota(shared)?;
    let lock: Signed<ChainOp> = super::leases::decode_signed(lock, "malformed_lock", "lock")?;
    let body = lock.body();
    let Action::Lock(terms) = &body.action else {
        return Err(ApiError::bad_request("bad_lock", "the op is not a lock"));
    };
    let req = request.body();
    if body.account != req.agent {
        return Err(ApiError::bad_request(
            "bad_lock",
            format!(
                "the lock is {}'s, the request {}'s",
                body.account, req.agent
            ),
        ));
    }
    if terms.lease != request.digest() {
        return Err(ApiError::bad_request(
            "bad_lock",
            "the lock is for another lease than this request",
        ));
    }
    if req.candidate_for(&terms.provider).is_none() {
        return Err(ApiError::bad_request(
            "bad_lock",
            format!("the lock names {}, not a candidate", terms.provider),
        ));
    }
    let cert = certify(quota, Op::Chain(lock)).await?;
    Ok(Some(cert.into_unchecked()))
}

/// The certificate of the agent's top-up paying for the extension `op` (`top_up`:
/// base64url of its `Signed<ChainOp>`). The top-up must be the operation's agent's, for
/// this lease, at its provider; the provider checks the rest (amount, expiry, base).
///
/// # Errors
/// `no_committee`, `malformed_top_up`, `bad_signature`, `bad_top_up`, `quota` (the
/// committee refused), `committee_unreachable`.
pub async fn certify_top_up(
    shared: &Shared,
    top_up: &str,
    op: &Signed<LeaseOp>,
) -> Result<UncheckedCertificate, ApiError> {
    let quota = quota(shared)?;
    let top_up: Signed<ChainOp> =
        super::leases::decode_signed(top_up, "malformed_top_up", "top_up")?;
    let body = top_up.body();
    let Action::TopUp(terms) = &body.action else {
        return Err(ApiError::bad_request(
            "bad_top_up",
            "the op is not a top-up",
        ));
    };
    let extend = op.body();
    let mismatch = if body.account != extend.agent {
        Some(format!(
            "the top-up is {}'s, the operation {}'s",
            body.account, extend.agent
        ))
    } else if terms.lock.lease != extend.lease {
        Some("the top-up is for another lease".to_owned())
    } else if terms.lock.provider != extend.provider {
        Some(format!(
            "the top-up names {}, the lease's provider is {}",
            terms.lock.provider, extend.provider
        ))
    } else {
        None
    };
    if let Some(detail) = mismatch {
        return Err(ApiError::bad_request("bad_top_up", detail));
    }
    let cert = certify(quota, Op::Chain(top_up)).await?;
    Ok(cert.into_unchecked())
}

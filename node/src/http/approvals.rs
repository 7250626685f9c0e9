//! Lease requests waiting for their owner: `GET /v1/approvals`, `GET /v1/approvals/{id}`
//! and `POST /v1/approvals/{id}` (the owner's signed approval). See
//! [`crate::lease::approvals`].
//!
//! | Outcome | Status | `error.code` |
//! |---|---|---|
//! | approved, and a provider granted the lease | 201 | |
//! | an approved extension, and the provider extended the lease | 200 | |
//! | no such waiting request | 404 | `unknown_approval` |
//! | expired before the owner answered | 409 | `approval_timeout` |
//! | already answered | 409 | `not_pending` |
//! | the approval is for another request, agent or owner | 409 | `approval_invalid` |
//! | approved, but no provider granted it | 403 / 409 | the provider's refusal code, `no_match` |
//! | approved, but the quota committee did not certify the lock under it | 409 / 503 | `quota`, `committee_unreachable` |

use std::sync::Arc;

use agora_protocol::AgoraId;
use agora_protocol::Signed;
use agora_protocol::lease::{Approval, LeaseOp, LeaseProposal};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::ApiError;
use super::json::JsonBody;
use super::leases::{answer, decode_signed, gateway, parse_lease};
use crate::clock;
use crate::daemon::Shared;
use crate::lease::Proposed;
use crate::lease::approvals::{ApprovalError, ApprovalState, ApprovalView, state_name};

/// Largest body of `POST /v1/approvals/{id}`.
pub const MAX_BODY_BYTES: usize = 4096;

fn approval_error(e: &ApprovalError) -> ApiError {
    let status = match e {
        ApprovalError::Unknown(_) => StatusCode::NOT_FOUND,
        ApprovalError::Full(_) => StatusCode::TOO_MANY_REQUESTS,
        ApprovalError::Invalid(_) | ApprovalError::NoOwner | ApprovalError::NotPending { .. } => {
            StatusCode::CONFLICT
        }
        ApprovalError::Record(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.code(), e.to_string())
}

/// `GET /v1/approvals` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only requests this owner must approve.
    pub owner: Option<String>,
    /// Only this agent's requests.
    pub agent: Option<String>,
    /// Only requests in this state: `pending`, `approved`, `refused` or `expired`.
    pub state: Option<String>,
}

fn parse_id(field: &'static str, text: &str) -> Result<AgoraId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request("bad_query", format!("{field}: {text:?} is not an Agora id"))
    })
}

/// `GET /v1/approvals`: requests waiting here (and those answered in the last hour).
pub async fn list(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let owner = q
        .owner
        .as_deref()
        .map(|o| parse_id("owner", o))
        .transpose()?;
    let agent = q
        .agent
        .as_deref()
        .map(|a| parse_id("agent", a))
        .transpose()?;
    if let Some(s) = q.state.as_deref()
        && !matches!(s, "pending" | "approved" | "refused" | "expired")
    {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("state: {s:?} is not pending, approved, refused or expired"),
        ));
    }
    let now = clock::now();
    let all = gateway(&shared)?
        .approvals()
        .all(now)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()))?;
    let views: Vec<ApprovalView> = all
        .iter()
        .filter(|p| owner.is_none_or(|o| p.owner == o))
        .filter(|p| agent.is_none_or(|a| p.agent == a))
        .filter(|p| {
            q.state
                .as_deref()
                .is_none_or(|s| state_name(&p.state_at(now)) == s)
        })
        .map(|p| ApprovalView::of(p, now))
        .collect();
    Ok(Json(json!({ "count": views.len(), "approvals": views })))
}

/// `GET /v1/approvals/{id}`: one request and where it is.
pub async fn one(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Json<ApprovalView>, ApiError> {
    let id = parse_lease(&id)?;
    let p = gateway(&shared)?
        .approvals()
        .get(&id)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()))?
        .ok_or_else(|| approval_error(&ApprovalError::Unknown(id)))?;
    Ok(Json(ApprovalView::of(&p, clock::now())))
}

/// Body of `POST /v1/approvals/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// The owner's signed `Approval`, base64url (`agora approve` builds it).
    pub approval: String,
}

/// `POST /v1/approvals/{id}`: the owner's approval; the request is relayed again with it.
pub async fn approve(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ApproveBody>,
) -> Result<Response, ApiError> {
    let id = parse_lease(&id)?;
    let approval: Signed<Approval> =
        decode_signed(&body.approval, "malformed_approval", "approval")?;
    let gateway = gateway(&shared)?;
    let approvals = gateway.approvals();
    let pending = approvals
        .take(&id, &approval, clock::now())
        .map_err(|e| approval_error(&e))?;
    let request = match (&pending.request, &pending.extend) {
        (Some(request), _) => request.clone(),
        (None, Some(extend)) => return extend_approved(&shared, &pending, extend, approval).await,
        (None, None) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store",
                format!("the waiting request {id} keeps neither a request nor an extension"),
            ));
        }
    };
    let req = request.body().clone();
    let outcome = if let Some((first, rest)) = pending.locks.split_first() {
        // Under a quota committee: the agent's locks, certified above its balance under
        // the owner's approval.
        let relayed = match super::quota::decode_locks(&shared, Some(first), rest, &request) {
            Ok(locks) => {
                super::quota::propose_locked(
                    &shared,
                    gateway,
                    request.clone(),
                    Some(approval),
                    locks,
                )
                .await
            }
            Err(e) => Err(e.into()),
        };
        match relayed {
            Ok(outcome) => outcome,
            Err(e) => {
                let e = ApiError::from(e);
                let state = ApprovalState::Refused {
                    code: e.code().to_owned(),
                    detail: e.message().to_owned(),
                };
                approvals.settle(&id, state, clock::now()).map_err(|e| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string())
                })?;
                return Err(e);
            }
        }
    } else {
        gateway
            .propose(LeaseProposal {
                request: request.clone(),
                approval: Some(approval),
                lock: None,
            })
            .await
    };
    let state = match &outcome {
        Proposed::Granted { grant, .. } => ApprovalState::Approved {
            lease: grant.body().lease,
            provider: grant.body().provider,
        },
        Proposed::Stopped { refusal, .. } => ApprovalState::Refused {
            code: refusal.body().refusal.code.as_str().to_owned(),
            detail: refusal.body().refusal.detail.clone(),
        },
        Proposed::NoMatch { .. } => ApprovalState::Refused {
            code: "no_match".into(),
            detail: "no candidate granted the approved request".into(),
        },
    };
    approvals
        .settle(&id, state, clock::now())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()))?;
    Ok(answer(outcome, &req))
}

/// An extension the owner approved: relayed with the approval (under a committee, its
/// top-up certified under it first). Answers 200 with the lease, extended, or why not.
async fn extend_approved(
    shared: &Shared,
    pending: &crate::lease::approvals::PendingApproval,
    extend: &Signed<LeaseOp>,
    approval: Signed<Approval>,
) -> Result<Response, ApiError> {
    let gateway = gateway(shared)?;
    let lease = extend.body().lease;
    let answer = match pending.locks.first() {
        Some(top_up) => match super::quota::decode_top_up(shared, top_up, extend) {
            Ok(top_up) => {
                match super::quota::certify_top_up(shared, top_up, Some(&approval)).await {
                    Ok(cert) => Ok(gateway.extend_with_top_up(extend.clone(), cert).await),
                    Err(e) => Err(ApiError::from(e)),
                }
            }
            Err(e) => Err(e),
        },
        None => Ok(gateway.extend_approved(extend.clone(), approval).await),
    };
    let state = match &answer {
        Ok(Ok(Ok(_))) => ApprovalState::Approved {
            lease,
            provider: extend.body().provider,
        },
        Ok(Ok(Err(r))) => ApprovalState::Refused {
            code: r.code.as_str().to_owned(),
            detail: r.detail.clone(),
        },
        Ok(Err(e)) => ApprovalState::Refused {
            code: e.code().to_owned(),
            detail: e.to_string(),
        },
        Err(e) => ApprovalState::Refused {
            code: e.code().to_owned(),
            detail: e.message().to_owned(),
        },
    };
    gateway
        .approvals()
        .settle(&pending.id, state, clock::now())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()))?;
    super::leases::status_answer(gateway, &lease, answer?)
}

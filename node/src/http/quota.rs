//! The quota committee over HTTP (nodes with a genesis only; others answer `no_committee`).
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /v1/accounts/{agent}/quota` | the agent's quota account: balance, locks, `next_seq` and `head` for its next op |
//! | `POST /v1/accounts/{agent}/quota` | `{"op"}`: the agent's signed credit or free-tier claim, certified → `{certificate, account}` |
//!
//! `POST /v1/leases` takes the agent's signed locks beside its request (`lock`, and
//! `fallback_locks` for the next candidates); the gateway certifies each here as it fails
//! over to its provider, and releases the lock of a provider that refused
//! ([`propose_locked`]).

use std::sync::Arc;

use agora_protocol::committee::{
    Action, ApprovedLock, Certificate, ChainOp, MAX_OP_BYTES, Op, Refusal, UncheckedCertificate,
};
use agora_protocol::lease::{Approval, LeaseOp, LeaseRequest};
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
async fn certify_op(quota: &Arc<Quota>, op: Op) -> Result<Certificate, CertifyError> {
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
            quota.certify(op, history).await
        }
        Err(e) => Err(e),
    }
}

/// [`certify_op`], its failure as the API's error.
async fn certify(quota: &Arc<Quota>, op: Op) -> Result<Certificate, ApiError> {
    certify_op(quota, op).await.map_err(|e| refused(&e))
}

/// Whether validators refused for the agent's balance (an owner's approval could lift it).
fn over_balance(e: &CertifyError) -> bool {
    e.refusals()
        .iter()
        .any(|(_, r)| matches!(r, Refusal::Insufficient { .. }))
}

/// Certifies the agent's `lock`; when validators refuse it for the balance and the owner
/// approved the request, as an [`ApprovedLock`] above the balance instead (the same slot:
/// at most one of the two is ever certified).
async fn certify_lock(
    quota: &Arc<Quota>,
    lock: Signed<ChainOp>,
    approval: Option<&Signed<Approval>>,
) -> Result<Certificate, CertifyError> {
    match (certify_op(quota, Op::Chain(lock.clone())).await, approval) {
        (Err(e), Some(approval)) if over_balance(&e) => {
            let approved = Op::Approved(ApprovedLock {
                op: lock,
                approval: approval.clone(),
            });
            certify_op(quota, approved).await
        }
        (result, _) => result,
    }
}

/// Why [`propose_locked`] relayed nothing: the committee did not certify the first lock.
#[derive(Debug)]
pub enum Unrelayed {
    /// Validators refused it for the agent's balance and no approval came with it: the
    /// request may wait for the owner the agent's attestation names (`approval_required`).
    OverBalance(ApiError),
    /// Any other failure.
    Failed(ApiError),
}

impl From<Unrelayed> for ApiError {
    fn from(u: Unrelayed) -> Self {
        match u {
            Unrelayed::OverBalance(e) | Unrelayed::Failed(e) => e,
        }
    }
}

impl From<ApiError> for Unrelayed {
    fn from(e: ApiError) -> Self {
        Self::Failed(e)
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
        Op::Settle(_) | Op::Unlock(_) | Op::Release(_) | Op::Approved(_) => false,
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

/// The agent's lock `lock` (base64url of its `Signed<ChainOp>`), checked against
/// `request`: the request's agent's, a `Lock` for this very lease at one of its candidates.
///
/// # Errors
/// `malformed_lock`, `bad_signature`, `bad_lock`.
fn decode_lock(
    lock: &str,
    request: &Signed<LeaseRequest>,
) -> Result<(Signed<ChainOp>, AgoraId), ApiError> {
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
    let provider = terms.provider;
    Ok((lock, provider))
}

/// The agent's locks for `request`, in the order a gateway uses them: `lock`, then each of
/// `fallback_locks`, each at the chain position after the one before and naming it as
/// `prev`, each at another candidate. Empty without any.
///
/// # Errors
/// `no_committee` (locks sent to a node without one), `malformed_lock`, `bad_signature`,
/// `bad_lock`.
pub fn decode_locks(
    shared: &Shared,
    lock: Option<&str>,
    fallback_locks: &[String],
    request: &Signed<LeaseRequest>,
) -> Result<Vec<(Signed<ChainOp>, AgoraId)>, ApiError> {
    let Some(first) = lock else {
        if fallback_locks.is_empty() {
            return Ok(Vec::new());
        }
        return Err(ApiError::bad_request(
            "bad_lock",
            "fallback_locks without a lock",
        ));
    };
    quota(shared)?;
    if fallback_locks.len() >= agora_protocol::lease::MAX_CANDIDATES {
        return Err(ApiError::bad_request(
            "bad_lock",
            format!(
                "{} fallback locks; a request has at most {} candidates",
                fallback_locks.len(),
                agora_protocol::lease::MAX_CANDIDATES
            ),
        ));
    }
    let mut locks: Vec<(Signed<ChainOp>, AgoraId)> = Vec::with_capacity(1 + fallback_locks.len());
    for encoded in std::iter::once(first).chain(fallback_locks.iter().map(String::as_str)) {
        let (lock, provider) = decode_lock(encoded, request)?;
        if let Some((before, _)) = locks.last() {
            let chained = lock.body().seq == before.body().seq.saturating_add(1)
                && lock.body().prev == Some(Op::Chain(before.clone()).digest());
            if !chained {
                return Err(ApiError::bad_request(
                    "bad_lock",
                    "each fallback lock must take the chain position after the lock before it \
                     and name it as prev",
                ));
            }
        }
        if locks.iter().any(|(_, p)| *p == provider) {
            return Err(ApiError::bad_request(
                "bad_lock",
                format!("two locks name {provider}"),
            ));
        }
        locks.push((lock, provider));
    }
    Ok(locks)
}

/// Relays `request` under the quota committee, failing over along the agent's `locks`
/// (from [`decode_locks`], at least one): certify the next lock, propose to its provider
/// with the certificate; on a grant, done; on that provider's signed refusal, release its
/// lock at once with the refusal (`committee::Release`) and go on unless the refusal is
/// about the agent itself; when it does not answer, go on (that lock lapses). A lock after
/// the first that the committee does not certify (the agent cannot afford another while an
/// unanswering provider's lock is held) ends the relay with the attempts so far. With the
/// owner's `approval`, a lock above the balance is certified under it.
///
/// # Errors
/// [`Unrelayed`] when the first lock is not certified: `quota` (over the balance, or
/// otherwise refused) or `committee_unreachable`.
pub async fn propose_locked(
    shared: &Shared,
    gateway: &crate::lease::Gateway,
    request: Signed<LeaseRequest>,
    approval: Option<Signed<Approval>>,
    locks: Vec<(Signed<ChainOp>, AgoraId)>,
) -> Result<crate::lease::gateway::Proposed, Unrelayed> {
    use crate::lease::gateway::{Outcome, Proposed, fails_over};
    let quota = quota(shared)?;
    let mut attempts = Vec::new();
    for (i, (lock, provider)) in locks.into_iter().enumerate() {
        let cert = match certify_lock(quota, lock, approval.as_ref()).await {
            Ok(cert) => cert,
            Err(e) if i == 0 && approval.is_none() && over_balance(&e) => {
                return Err(Unrelayed::OverBalance(refused(&e)));
            }
            Err(e) if i == 0 => return Err(Unrelayed::Failed(refused(&e))),
            Err(e) => {
                tracing::info!(lease = %request.digest(), %provider, error = %e, "no failover: the next lock was not certified");
                break;
            }
        };
        let outcome = gateway
            .propose(agora_protocol::lease::LeaseProposal {
                request: request.clone(),
                approval: approval.clone(),
                lock: Some(cert.clone().into_unchecked()),
            })
            .await;
        let (tried, stop) = match outcome {
            Proposed::Granted {
                grant,
                attempts: tried,
            } => {
                attempts.extend(tried);
                return Ok(Proposed::Granted { grant, attempts });
            }
            Proposed::Stopped {
                refusal,
                attempts: tried,
            } => (tried, Some(refusal)),
            Proposed::NoMatch { attempts: tried } => (tried, None),
        };
        for attempt in &tried {
            if let Outcome::Refused(refusal) = &attempt.outcome {
                release(quota, &cert, refusal.clone()).await;
            }
        }
        attempts.extend(tried);
        if let Some(refusal) = stop {
            debug_assert!(!fails_over(refusal.body().refusal.code));
            return Ok(Proposed::Stopped { refusal, attempts });
        }
    }
    Ok(Proposed::NoMatch { attempts })
}

/// Releases the lock `cert` certifies with its provider's signed refusal (logged; a lock
/// not released lapses at its expiry).
async fn release(
    quota: &Arc<Quota>,
    cert: &Certificate,
    refusal: Signed<agora_protocol::lease::LeaseRefusal>,
) {
    let lease = refusal.body().request;
    match quota.release(cert, refusal).await {
        Some(Ok(_)) => tracing::info!(%lease, slot = %cert.slot(), "lock released after a refusal"),
        Some(Err(e)) => {
            tracing::warn!(%lease, slot = %cert.slot(), error = %e, "lock not released; it lapses at its expiry");
        }
        None => {}
    }
}

/// The certificate of the agent's `top_up` paying for an extension (checked against the
/// operation by [`decode_top_up`]; the provider checks the rest: amount, expiry, base).
/// Above the agent's balance, the owner's `approval` of the top-up has it certified as an
/// [`ApprovedLock`]; without one that refusal is [`Unrelayed::OverBalance`] (the extension
/// may wait for the owner).
///
/// # Errors
/// `no_committee`, `quota` (the committee refused), `committee_unreachable`.
pub async fn certify_top_up(
    shared: &Shared,
    top_up: Signed<ChainOp>,
    approval: Option<&Signed<Approval>>,
) -> Result<UncheckedCertificate, Unrelayed> {
    let quota = quota(shared)?;
    match certify_lock(quota, top_up, approval).await {
        Ok(cert) => Ok(cert.into_unchecked()),
        Err(e) if approval.is_none() && over_balance(&e) => {
            Err(Unrelayed::OverBalance(refused(&e)))
        }
        Err(e) => Err(Unrelayed::Failed(refused(&e))),
    }
}

/// The agent's signed top-up (`top_up`, base64url) for the extension `op`, at a node with a
/// quota committee: the operation's agent's, for its lease and provider.
///
/// # Errors
/// `no_committee`, `malformed_top_up`, `bad_signature`, `bad_top_up`.
pub fn decode_top_up(
    shared: &Shared,
    top_up: &str,
    op: &Signed<LeaseOp>,
) -> Result<Signed<ChainOp>, ApiError> {
    quota(shared)?;
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
    match mismatch {
        Some(detail) => Err(ApiError::bad_request("bad_top_up", detail)),
        None => Ok(top_up),
    }
}

//! Leases through any node: `POST /v1/leases`, `GET /v1/leases`, `GET /v1/leases/{id}`,
//! `POST /v1/leases/{id}/extend`, `DELETE /v1/leases/{id}`, `POST /v1/leases/{id}/ack` and
//! `POST /v1/leases/quote`.
//!
//! The handlers only decode and verify what the agent signed, hand it to the
//! [`Gateway`](crate::lease::Gateway) and translate the outcome. Every grant, refusal and
//! receipt comes with the provider's signed message (base64url) beside its JSON fields, so
//! an agent need not trust this node.
//!
//! | Outcome | Status | `error.code` |
//! |---|---|---|
//! | granted | 201 | |
//! | body not base64url / not a request | 400 | `malformed_request`, `malformed_approval`, `malformed_op` |
//! | a signature does not verify | 400 | `bad_signature` |
//! | every candidate refused or failed | 409 | `no_match` (with `attempts`, offer by offer) |
//! | refused for the agent itself | 403 / 409 | the refusal code (`untrusted`, `stale`, `quota`, …) |
//! | operation refused | 403 / 404 / 409 | the refusal code (`unauthorized`, `unknown_lease`, `ended`, …) |
//! | provider unreachable | 502 / 504 | `unreachable`, `bad_answer` / `timeout` |
//! | listing without the agent's proof | 400 / 401 / 403 / 409 | see [`super::read_proof`] |
//!
//! `GET /v1/leases?agent=ID` lists only for a caller that proves it is the agent (a signed
//! read proof, or the agent's bearer token); `GET /v1/leases/{id}` answers anyone, because
//! a lease id is the SHA-256 of the agent's signed request: knowing it is the capability to
//! read that lease.
//!
//! A lease view says whether its provider answers (`provider_contact`) and who says it
//! ended (`ended.source`): `provider` for the reasons it signed, `gateway` for
//! `provider_lost`, this node's verdict on a provider silent longer than
//! `[leases] provider_lost_after` (see [`crate::lease::gateway::contact`]).

use core::time::Duration;
use std::sync::Arc;

use agora_protocol::admission::price_of;
use agora_protocol::lease::{
    Approval, LeaseGrant, LeaseId, LeaseOp, LeaseProposal, LeaseRequest, Op, Refusal, RefusalCode,
    UsageReceipt,
};
use agora_protocol::lease_rpc::{LeaseState, LeaseStatus};
use agora_protocol::offer::Isolation;
use agora_protocol::offer_book::{OfferFilter, OfferSort};
use agora_protocol::workload::{Resources, TerminationReason};
use agora_protocol::{AgoraId, Digest, Ed25519, Signed, SignedError, SignedKind, Timestamp};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::ApiError;
use super::json::JsonBody;
use crate::clock;
use crate::daemon::Shared;
use crate::lease::approvals::{ApprovalError, ApprovalView, Asked, PendingApproval};
use crate::lease::gateway::contact::{Contact, PROVIDER_LOST};
use crate::lease::gateway::{AttemptView, CallError, Proposed, is_relayed};
use crate::lease::record::{GatewayLease, ProviderLease};
use crate::lease::{Gateway, Provider};

/// Largest request body (a signed request is at most 64 KiB, base64 adds a third).
pub const MAX_BODY_BYTES: usize = 128 * 1024;
/// Most leases one listing returns.
pub const MAX_LIST: usize = 500;
/// How long `GET /v1/leases/{id}` waits for the provider's fresh state.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

fn b64<T>(m: &Signed<T>) -> String {
    URL_SAFE_NO_PAD.encode(m.as_bytes())
}

/// Decodes a base64url signed message of kind `T` (signature verified).
pub(super) fn decode_signed<T: SignedKind>(
    text: &str,
    malformed: &'static str,
    what: &str,
) -> Result<Signed<T>, ApiError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim().as_bytes())
        .map_err(|e| ApiError::bad_request(malformed, format!("{what} is not base64url: {e}")))?;
    Signed::decode(&bytes, &Ed25519).map_err(|e| match e {
        SignedError::Verify(v) => ApiError::bad_request("bad_signature", format!("{what}: {v}")),
        SignedError::Decode(d) => ApiError::bad_request(malformed, format!("{what}: {d}")),
    })
}

pub(super) fn gateway(shared: &Shared) -> Result<&Arc<Gateway>, ApiError> {
    shared.gateway().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "leases are not served yet",
        )
    })
}

pub(super) fn parse_lease(id: &str) -> Result<LeaseId, ApiError> {
    id.parse::<Digest>().map_err(|_| {
        ApiError::bad_request(
            "bad_lease_id",
            format!("{id:?} is not a lease id (64 hex digits)"),
        )
    })
}

/// A usage receipt as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptView {
    /// Order among the lease's receipts (0, 1, …).
    pub seq: u32,
    /// Start of the lease (RFC 3339).
    pub from: String,
    /// Counted up to (RFC 3339).
    pub to: String,
    /// CPU time, milliseconds.
    pub cpu_ms: u64,
    /// Memory integral, MiB × seconds.
    pub memory_mib_secs: u64,
    /// Bytes sent by the workload (network and tunnels).
    pub egress_bytes: u64,
    /// Tunnel bytes from the agent into the workload.
    pub tunnel_in_bytes: u64,
    /// Tunnel bytes from the workload to the agent (also in `egress_bytes`).
    pub tunnel_out_bytes: u64,
    /// Price, micro-credits per second.
    pub price_per_sec: u64,
    /// Cost so far, micro-credits.
    pub total_micro: u64,
    /// Set on the final receipt: why the lease ended (stable code).
    pub ended: Option<&'static str>,
    /// The provider's signed receipt, base64url.
    pub signed: String,
}

impl From<&Signed<UsageReceipt>> for ReceiptView {
    fn from(r: &Signed<UsageReceipt>) -> Self {
        let b = r.body();
        Self {
            seq: b.seq,
            from: b.from.to_string(),
            to: b.to.to_string(),
            cpu_ms: b.cpu_ms,
            memory_mib_secs: b.memory_mib_secs,
            egress_bytes: b.egress_bytes,
            tunnel_in_bytes: b.tunnel_in_bytes,
            tunnel_out_bytes: b.tunnel_out_bytes,
            price_per_sec: b.price_per_sec,
            total_micro: b.total_micro,
            ended: b.ended.as_ref().map(TerminationReason::code),
            signed: b64(r),
        }
    }
}

/// How a lease ended.
#[derive(Debug, Clone, Serialize)]
pub struct EndedView {
    /// Stable code (`exited`, `stopped_by_agent`, `lifetime_expired`, …, or
    /// `provider_lost`).
    pub reason: &'static str,
    /// Who says so: `provider` (it signed the reason; its final receipt carries it) or
    /// `gateway` (this node's own, unsigned observation: `provider_lost`).
    pub source: &'static str,
    /// The full reason as the provider signed it (exit code, detail); null for
    /// `provider_lost`.
    pub detail: Option<TerminationReason>,
    /// When (RFC 3339): the provider's end, or when this node gave the lease up.
    pub at: String,
}

/// Whether the lease's provider answers this node about it (this node's observation,
/// unsigned).
#[derive(Debug, Clone, Serialize)]
pub struct ContactView {
    /// Whether it answered the last time it was asked.
    pub reachable: bool,
    /// Since when it has not answered (RFC 3339), while unreachable.
    pub unreachable_since: Option<String>,
    /// Why the last attempt failed (`unreachable`, `timeout`, `bad_answer`), while
    /// unreachable.
    pub error: Option<String>,
    /// When it last answered about the lease (RFC 3339).
    pub last_heard_at: String,
}

impl ContactView {
    /// A provider that answered at `at`.
    fn answered(at: Timestamp) -> Self {
        Self {
            reachable: true,
            unreachable_since: None,
            error: None,
            last_heard_at: at.to_string(),
        }
    }

    /// What this node recorded (`last_heard`: when the provider last answered).
    fn of(contact: &Contact, last_heard: Timestamp) -> Self {
        Self {
            reachable: contact.is_reachable(),
            unreachable_since: contact.unreachable_since.map(|t| t.to_string()),
            error: contact
                .last_error
                .clone()
                .filter(|_| !contact.is_reachable()),
            last_heard_at: last_heard.to_string(),
        }
    }
}

/// A lease as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseView {
    /// The lease id (the digest of the agent's signed request).
    pub lease: LeaseId,
    /// The agent.
    pub agent: AgoraId,
    /// The provider.
    pub provider: AgoraId,
    /// `running` or `ended`.
    pub state: &'static str,
    /// How it ended.
    pub ended: Option<EndedView>,
    /// Price, micro-credits per second.
    pub price_per_sec: u64,
    /// Micro-credits reserved for its lifetime.
    pub reserved_micro: u64,
    /// Start (RFC 3339).
    pub starts_at: String,
    /// End unless extended (RFC 3339).
    pub expires_at: String,
    /// Seconds left (0 once ended or expired).
    pub remaining_secs: u64,
    /// The provider's tunnel endpoints.
    pub tunnel_endpoints: Vec<String>,
    /// Workload ports the capability opens.
    pub ports: Vec<u16>,
    /// The provider's signed grant (base64url): verify it yourself.
    pub grant: String,
    /// The capability presented on tunnel streams (base64url).
    pub capability: String,
    /// The latest signed usage receipt.
    pub receipt: Option<ReceiptView>,
    /// The agent's signed acknowledgement of the final receipt (base64url), once its
    /// provider recorded one; null before (or when this node has only its own record).
    pub acknowledgement: Option<String>,
    /// Runtime, image and command, when this node relayed the lease.
    pub runtime: Option<Isolation>,
    /// Image name.
    pub image: Option<String>,
    /// Command.
    pub command: Option<Vec<String>>,
    /// Whether the provider answered just now (`false`: this node's last known state).
    pub fresh: bool,
    /// Whether the provider answers this node about the lease.
    pub provider_contact: ContactView,
}

impl LeaseView {
    /// The view of a grant, a state and a receipt.
    pub fn new(
        grant: &Signed<LeaseGrant>,
        state: &LeaseState,
        receipt: Option<&Signed<UsageReceipt>>,
        now: Timestamp,
    ) -> Self {
        let g = grant.body();
        let ended = match state {
            LeaseState::Running => None,
            LeaseState::Ended { reason, at } => Some(EndedView {
                reason: reason.code(),
                source: "provider",
                detail: Some(reason.clone()),
                at: at.to_string(),
            }),
        };
        let remaining_secs = if ended.is_some() {
            0
        } else {
            g.expires_at.saturating_duration_since(now).as_secs()
        };
        Self {
            lease: g.lease,
            agent: g.agent,
            provider: g.provider,
            state: state.name(),
            ended,
            price_per_sec: g.price_per_sec,
            reserved_micro: g.reserved_micro,
            starts_at: g.starts_at.to_string(),
            expires_at: g.expires_at.to_string(),
            remaining_secs,
            tunnel_endpoints: g.tunnel_endpoints.clone(),
            ports: g.token.body().ports.clone(),
            grant: b64(grant),
            capability: b64(&g.token),
            receipt: receipt.map(ReceiptView::from),
            acknowledgement: None,
            runtime: None,
            image: None,
            command: None,
            fresh: false,
            provider_contact: ContactView::answered(now),
        }
    }

    fn of_status(s: &LeaseStatus, now: Timestamp) -> Self {
        let mut v = Self::new(&s.grant, &s.state, s.receipt.as_ref(), now);
        v.acknowledgement = s.ack.as_ref().map(b64);
        v.fresh = true;
        v
    }

    fn of_gateway(r: &GatewayLease, now: Timestamp) -> Self {
        let mut v = Self::new(&r.grant, &r.state, r.receipt.as_ref(), now);
        if let Some(at) = r.lost_at() {
            v.state = "ended";
            v.ended = Some(EndedView {
                reason: PROVIDER_LOST,
                source: "gateway",
                detail: None,
                at: at.to_string(),
            });
            v.remaining_secs = 0;
        }
        v.provider_contact = ContactView::of(&r.contact, r.updated_at);
        v.runtime = Some(r.isolation);
        v.image = Some(r.image.clone());
        v.command = Some(r.command.clone());
        v
    }

    fn of_provider(l: &ProviderLease, now: Timestamp) -> Option<Self> {
        let grant = l.grant.as_ref()?;
        let mut v = Self::new(grant, &l.state(), l.receipt.as_ref(), now);
        v.acknowledgement = l.ack.as_ref().map(b64);
        v.runtime = Some(l.active.isolation);
        v.fresh = true;
        Some(v)
    }

    fn with_request(mut self, r: &LeaseRequest) -> Self {
        self.runtime = Some(r.isolation);
        self.image = r.spec.image_name().map(str::to_owned);
        self.command = Some(r.spec.command.clone());
        self
    }
}

/// `POST /v1/leases` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateLease {
    /// The agent's signed `LeaseRequest`, base64url.
    pub request: String,
    /// The owner's signed `Approval`, base64url, when above the spending limit.
    #[serde(default)]
    pub approval: Option<String>,
    /// The agent's signed lock (`ChainOp` with a `Lock` for this lease at one candidate),
    /// base64url: on a network with a quota committee the node certifies it and relays the
    /// request with the certificate, to that candidate.
    #[serde(default)]
    pub lock: Option<String>,
    /// The agent's further locks, one per further candidate in the order to fail over, each
    /// at the chain position after the one before (base64url each): certified only when the
    /// node fails over to its candidate. A refusing provider's lock is released at once.
    #[serde(default)]
    pub fallback_locks: Vec<String>,
}

pub(super) fn refusal_status(code: RefusalCode) -> StatusCode {
    match code {
        RefusalCode::Untrusted | RefusalCode::Unauthorized => StatusCode::FORBIDDEN,
        RefusalCode::UnknownLease => StatusCode::NOT_FOUND,
        RefusalCode::Invalid => StatusCode::BAD_REQUEST,
        _ => StatusCode::CONFLICT,
    }
}

/// `POST /v1/leases`.
pub async fn create(
    State(shared): State<Arc<Shared>>,
    JsonBody(body): JsonBody<CreateLease>,
) -> Result<Response, ApiError> {
    let request: Signed<LeaseRequest> =
        decode_signed(&body.request, "malformed_request", "request")?;
    let approval: Option<Signed<Approval>> = body
        .approval
        .as_deref()
        .map(|a| decode_signed(a, "malformed_approval", "approval"))
        .transpose()?;
    let gateway = gateway(&shared)?;
    let locks = super::quota::decode_locks(
        &shared,
        body.lock.as_deref(),
        &body.fallback_locks,
        &request,
    )?;
    let req = request.body().clone();
    let original = request.clone();
    let outcome = if locks.is_empty() {
        gateway
            .propose(LeaseProposal {
                request,
                approval,
                lock: None,
            })
            .await
    } else {
        match super::quota::propose_locked(&shared, gateway, request, approval, locks).await {
            Ok(outcome) => outcome,
            // Over its balance at the committee, with an owner named: the request and its
            // locks (as the agent sent them) wait for the owner.
            Err(super::quota::Unrelayed::OverBalance(e)) => {
                let asked = Asked {
                    refusal: None,
                    why: e.message().to_owned(),
                    locks: body.lock.into_iter().chain(body.fallback_locks).collect(),
                };
                return park(gateway, original, asked, &[]).map_err(|none| none.unwrap_or(e));
            }
            Err(e) => return Err(e.into()),
        }
    };
    // Over its spending limit, with an owner named: the request waits for the owner.
    if let Proposed::Stopped { refusal, attempts } = &outcome
        && refusal.body().refusal.code == RefusalCode::ApprovalRequired
    {
        match park(
            gateway,
            original,
            Asked::by_provider(refusal.clone()),
            attempts,
        ) {
            Ok(parked) => return Ok(parked),
            Err(None) => {}
            Err(Some(e)) => return Err(e),
        }
    }
    Ok(answer(outcome, &req))
}

/// Parks `request` for its owner's approval: 202 with the waiting request. `Err(None)`
/// when its attestation names no owner (the caller answers the refusal itself).
fn park(
    gateway: &crate::lease::Gateway,
    request: Signed<LeaseRequest>,
    asked: Asked,
    attempts: &[crate::lease::gateway::Attempt],
) -> Result<Response, Option<ApiError>> {
    let attempts: Vec<AttemptView> = attempts.iter().map(AttemptView::from).collect();
    let parked = gateway.approvals().park(request, asked, clock::now());
    waiting(parked, Some(attempts))
}

/// 202 with the request parked for its owner (and the providers tried), or `Err(None)`
/// when nobody can approve it.
fn waiting(
    parked: Result<PendingApproval, ApprovalError>,
    attempts: Option<Vec<AttemptView>>,
) -> Result<Response, Option<ApiError>> {
    match parked {
        Ok(pending) => {
            let view = ApprovalView::of(&pending, clock::now());
            let body = match attempts {
                Some(attempts) => json!({ "approval": view, "attempts": attempts }),
                None => json!({ "approval": view }),
            };
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        Err(ApprovalError::NoOwner) => Err(None),
        Err(e) => {
            let status = if matches!(e, ApprovalError::Full(_)) {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            Err(Some(ApiError::new(status, e.code(), e.to_string())))
        }
    }
}

/// The answer to a relayed lease request: 201 with the lease, or why not.
pub(super) fn answer(outcome: Proposed, req: &LeaseRequest) -> Response {
    let now = clock::now();
    match outcome {
        Proposed::Granted { grant, attempts } => {
            let view = LeaseView::new(&grant, &LeaseState::Running, None, now).with_request(req);
            let attempts: Vec<AttemptView> = attempts.iter().map(AttemptView::from).collect();
            (
                StatusCode::CREATED,
                Json(json!({ "lease": view, "attempts": attempts })),
            )
                .into_response()
        }
        Proposed::Stopped { refusal, attempts } => {
            let r = &refusal.body().refusal;
            let attempts: Vec<AttemptView> = attempts.iter().map(AttemptView::from).collect();
            (
                refusal_status(r.code),
                Json(json!({
                    "error": { "code": r.code.as_str(), "message": r.detail },
                    "refusal": b64(&refusal),
                    "attempts": attempts,
                })),
            )
                .into_response()
        }
        Proposed::NoMatch { attempts } => {
            let summary: Vec<String> = attempts
                .iter()
                .map(|a| {
                    let v = AttemptView::from(a);
                    format!("{}: {}", a.provider.short(), v.code.unwrap_or(v.outcome))
                })
                .collect();
            let attempts: Vec<AttemptView> = attempts.iter().map(AttemptView::from).collect();
            (
                StatusCode::CONFLICT,
                Json(json!({
                    "error": {
                        "code": "no_match",
                        "message": format!("no candidate granted the lease ({})", summary.join(", ")),
                    },
                    "attempts": attempts,
                })),
            )
                .into_response()
        }
    }
}

/// `GET /v1/leases` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Whose leases (required).
    pub agent: Option<String>,
    /// Most leases (1 to 500, default 100).
    pub limit: Option<usize>,
    /// The agent's signed `ReadProof` for this node, base64url (or send its bearer token).
    pub proof: Option<String>,
}

/// `GET /v1/leases?agent=ID&proof=B64URL`: the leases this node relayed for the agent, and
/// those it runs for it as a provider (with `quota`: what the agent spent and has locked
/// here), to the agent or its delegate only (see [`super::read_proof`]).
pub async fn list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let agent_text = q
        .agent
        .ok_or_else(|| ApiError::bad_request("bad_query", "query parameter `agent` is required"))?;
    let agent: AgoraId = agent_text
        .parse()
        .map_err(|e| ApiError::bad_request("bad_query", format!("query parameter `agent`: {e}")))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("query parameter `limit`: {limit} is not 1 to {MAX_LIST}"),
        ));
    }
    let now = clock::now();
    let reader = super::read_proof::authorize(
        &shared.tokens,
        &shared.id,
        &agent,
        q.proof.as_deref(),
        &headers,
        now,
    )?;
    tracing::debug!(%agent, reader = reader.as_str(), "listing leases");
    let gateway = gateway(&shared)?;
    let mut views: Vec<LeaseView> = gateway
        .leases_of(&agent, limit)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()))?
        .iter()
        .map(|r| LeaseView::of_gateway(r, now))
        .collect();
    if let Some(local) = gateway.local() {
        for l in local.leases() {
            if l.active.agent == agent
                && !views.iter().any(|v| v.lease == l.active.lease)
                && views.len() < limit
                && let Some(v) = LeaseView::of_provider(&l, now)
            {
                views.push(v);
            }
        }
    }
    views.sort_by(|a, b| b.starts_at.cmp(&a.starts_at));
    // On a provider: what the agent has spent and has locked here.
    let quota = gateway.local().and_then(|p| p.account(&agent)).map(|a| {
        json!({
            "spent_micro": a.spent_micro,
            "approved_spent_micro": a.approved_spent_micro,
            "locked_micro": a.locked_micro(),
        })
    });
    Ok(Json(json!({
        "count": views.len(),
        "leases": views,
        "quota": quota,
        "at": now.to_string(),
    })))
}

/// `GET /v1/leases/{id}`: this node's record, refreshed from the provider when it answers
/// within a few seconds; otherwise the record says since when it has not answered, and
/// after `[leases] provider_lost_after` that the lease ended with `provider_lost`.
pub async fn one(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Json<LeaseView>, ApiError> {
    let id = parse_lease(&id)?;
    view(&shared, &id).await.map(Json)
}

/// The lease `GET /v1/leases/{id}` shows (see [`one`]).
///
/// # Errors
/// `unknown_lease` (404) when this node neither relayed nor runs it; `store`; `unavailable`.
pub(super) async fn view(shared: &Shared, id: &LeaseId) -> Result<LeaseView, ApiError> {
    let id = *id;
    let gateway = gateway(shared)?;
    let record = gateway
        .lease(&id)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()))?;
    if let Some(record) = record {
        let timeout = STATUS_TIMEOUT.min(gateway.timeout());
        let fresh = gateway.query(&record.provider, &id, timeout).await;
        let now = clock::now();
        let mut view = match fresh {
            Ok(Ok(status)) => LeaseView::of_status(&status, now),
            // The query noted whether the provider answered (and may have given the lease
            // up): show the record as it is now.
            _ => {
                let latest = gateway.lease(&id).ok().flatten();
                LeaseView::of_gateway(latest.as_ref().unwrap_or(&record), now)
            }
        };
        view.runtime = Some(record.isolation);
        view.image = Some(record.image.clone());
        view.command = Some(record.command.clone());
        return Ok(view);
    }
    gateway
        .local()
        .and_then(|p: &Arc<Provider>| p.lease(&id))
        .and_then(|l| LeaseView::of_provider(&l, clock::now()))
        .ok_or_else(|| ApiError::not_found("unknown_lease", format!("no lease {id} known here")))
}

/// Body of `POST /v1/leases/{id}/extend` and `DELETE /v1/leases/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpBody {
    /// The agent's signed `LeaseOp`, base64url.
    pub op: String,
}

/// Checks a signed operation against the lease in the path and the kind of endpoint.
pub(super) fn checked_op(
    id: &str,
    text: &str,
    want: fn(&Op) -> bool,
    what: &str,
) -> Result<Signed<LeaseOp>, ApiError> {
    let id = parse_lease(id)?;
    let op: Signed<LeaseOp> = decode_signed(text, "malformed_op", "op")?;
    if op.body().lease != id {
        return Err(ApiError::bad_request(
            "lease_mismatch",
            format!("the operation is for lease {}, not {id}", op.body().lease),
        ));
    }
    if !want(&op.body().op) {
        return Err(ApiError::bad_request(
            "wrong_op",
            format!("this endpoint takes a signed {what} operation"),
        ));
    }
    Ok(op)
}

pub(super) async fn relay(
    shared: &Shared,
    id: &str,
    body: &OpBody,
    want: fn(&Op) -> bool,
    what: &str,
) -> Result<Response, ApiError> {
    let op = checked_op(id, &body.op, want, what)?;
    let id = op.body().lease;
    if !is_relayed(&op.body().op) {
        return Err(ApiError::bad_request(
            "wrong_op",
            format!("this endpoint takes a signed {what} operation"),
        ));
    }
    let gateway = gateway(shared)?;
    status_answer(gateway, &id, gateway.operate(op).await)
}

/// A relayed operation's answer: the lease's view, or the provider's refusal.
pub(super) fn status_answer(
    gateway: &Gateway,
    id: &LeaseId,
    answer: Result<Result<LeaseStatus, Refusal>, CallError>,
) -> Result<Response, ApiError> {
    match answer {
        Ok(Ok(status)) => {
            let mut view = LeaseView::of_status(&status, clock::now());
            if let Ok(Some(r)) = gateway.lease(id) {
                view.runtime = Some(r.isolation);
                view.image = Some(r.image);
                view.command = Some(r.command);
            }
            Ok(Json(json!({ "lease": view })).into_response())
        }
        Ok(Err(r)) => Err(ApiError::new(
            refusal_status(r.code),
            r.code.as_str(),
            r.detail,
        )),
        Err(e) => Err(call_error(&e)),
    }
}

/// A provider that gave no usable answer, as an API error (502, or 504 on a timeout).
pub(super) fn call_error(e: &CallError) -> ApiError {
    let status = match e {
        CallError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    ApiError::new(status, e.code(), e.to_string())
}

/// Body of `POST /v1/leases/{id}/extend`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// The agent's signed `Extend` operation, base64url.
    pub op: String,
    /// Under a quota committee: the agent's signed top-up lock (`Signed<ChainOp>`,
    /// base64url) paying for the extension; this node has it certified.
    #[serde(default)]
    pub top_up: Option<String>,
}

/// `POST /v1/leases/{id}/extend` with `{"op": "<signed Extend>", "top_up": "<signed
/// top-up>"?}`. Above the agent's spending limit (the provider answers
/// `approval_required`; under a committee, validators refuse the top-up for the balance)
/// an agent whose attestation names an owner waits for the owner: 202 with `approval`.
pub async fn extend(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ExtendBody>,
) -> Result<Response, ApiError> {
    let want = |op: &Op| matches!(op, Op::Extend { .. });
    let op = checked_op(&id, &body.op, want, "extend")?;
    let gateway = gateway(&shared)?;
    let id = op.body().lease;
    let Some(top_up) = &body.top_up else {
        let answer = gateway.operate(op.clone()).await;
        if let Ok(Err(r)) = &answer
            && r.code == RefusalCode::ApprovalRequired
        {
            match park_extension(gateway, op, None, &r.detail).await {
                Ok(parked) => return Ok(parked),
                Err(Some(e)) => return Err(e),
                Err(None) => {}
            }
        }
        return status_answer(gateway, &id, answer);
    };
    let top_up = super::quota::decode_top_up(&shared, top_up, &op)?;
    match super::quota::certify_top_up(&shared, top_up.clone(), None).await {
        Ok(cert) => status_answer(gateway, &id, gateway.extend_with_top_up(op, cert).await),
        // Over its balance at the committee: the extension and its top-up wait for the
        // owner, who approves the top-up.
        Err(super::quota::Unrelayed::OverBalance(e)) => {
            park_extension(gateway, op, Some(top_up), e.message())
                .await
                .map_err(|none| none.unwrap_or(e))
        }
        Err(e) => Err(e.into()),
    }
}

/// Parks the extension `op` (under a committee with its `top_up`) for the owner the
/// lease's provider-signed grant names: 202 with the waiting request. `Err(None)` when
/// nobody can approve it (the caller answers the refusal itself).
async fn park_extension(
    gateway: &Gateway,
    op: Signed<LeaseOp>,
    top_up: Option<Signed<agora_protocol::committee::ChainOp>>,
    why: &str,
) -> Result<Response, Option<ApiError>> {
    let body = op.body();
    let grant = match gateway.lease(&body.lease) {
        Ok(Some(record)) => record.grant,
        _ => match gateway
            .query(&body.provider, &body.lease, Duration::from_secs(10))
            .await
        {
            Ok(Ok(status)) => status.grant,
            _ => return Err(None),
        },
    };
    let parked =
        gateway
            .approvals()
            .park_extension(op, grant.body(), top_up, why.to_owned(), clock::now());
    waiting(parked, None)
}

/// `POST /v1/leases/{id}/ack` with `{"op": "<signed Acknowledge>"}`: the agent's
/// countersignature of an ended lease's final receipt, relayed to its provider, which
/// records it as evidence.
pub async fn acknowledge(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<OpBody>,
) -> Result<Response, ApiError> {
    relay(
        &shared,
        &id,
        &body,
        |op| matches!(op, Op::Acknowledge { .. }),
        "acknowledge",
    )
    .await
}

/// `DELETE /v1/leases/{id}` with `{"op": "<signed Stop>"}`.
pub async fn stop(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<OpBody>,
) -> Result<Response, ApiError> {
    relay(&shared, &id, &body, |op| matches!(op, Op::Stop), "stop").await
}

/// `POST /v1/leases/quote` body: what the agent wants (unsigned; nothing is reserved).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    /// Runtime (default `sandbox`).
    #[serde(default = "default_runtime")]
    pub runtime: Isolation,
    /// Image name (default `busybox`).
    #[serde(default = "default_image")]
    pub image: String,
    /// Only offers pinning the image to this digest.
    #[serde(default)]
    pub image_digest: Option<Digest>,
    /// vCPU in thousandths (default 500).
    #[serde(default = "default_vcpu")]
    pub vcpu_milli: u32,
    /// Memory, MiB (default 256).
    #[serde(default = "default_memory")]
    pub memory_mib: u64,
    /// Writable disk, MiB (default 64).
    #[serde(default = "default_disk")]
    pub disk_mib: u64,
    /// Lifetime, seconds (default 3600).
    #[serde(default = "default_lifetime")]
    pub lifetime_secs: u64,
    /// Most micro-credits per second.
    #[serde(default)]
    pub max_price_per_sec: Option<u64>,
    /// Only this region.
    #[serde(default)]
    pub region: Option<String>,
    /// Only providers serving this tier.
    #[serde(default)]
    pub tier: Option<String>,
    /// Most offers returned (1 to 100, default 8: what one request may list).
    #[serde(default)]
    pub limit: Option<usize>,
}

fn default_runtime() -> Isolation {
    Isolation::Sandbox
}
fn default_image() -> String {
    "busybox".into()
}
fn default_vcpu() -> u32 {
    500
}
fn default_memory() -> u64 {
    256
}
fn default_disk() -> u64 {
    64
}
fn default_lifetime() -> u64 {
    3600
}

/// One ranked offer of a quote.
#[derive(Debug, Serialize)]
pub struct QuoteView {
    /// The provider (a candidate's `provider`).
    pub provider: AgoraId,
    /// The digest of its signed offer (a candidate's `offer`).
    pub offer: Digest,
    /// What the resources cost there, micro-credits per second.
    pub price_per_sec: u64,
    /// The most the lease can cost (price × lifetime), micro-credits.
    pub max_cost_micro: u64,
    /// The image as this provider pins it (the spec's `image`).
    pub image: agora_protocol::offer::ImageRef,
    /// Region.
    pub region: String,
    /// Longest lease, seconds.
    pub max_lease_secs: u64,
    /// When the offer expires (RFC 3339): sign the request before.
    pub expires_at: String,
    /// The signed offer, base64url.
    pub signed: String,
}

/// `POST /v1/leases/quote`: the offers that fit, cheapest first.
pub async fn quote(
    State(shared): State<Arc<Shared>>,
    JsonBody(q): JsonBody<QuoteRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(agora_protocol::lease::MAX_CANDIDATES);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "bad_quote",
            format!("limit {limit} is not 1 to 100"),
        ));
    }
    if q.image.is_empty() || q.image.len() > 256 || q.vcpu_milli == 0 || q.memory_mib == 0 {
        return Err(ApiError::bad_request(
            "bad_quote",
            "image must be 1 to 256 bytes, vcpu_milli and memory_mib positive",
        ));
    }
    let filter = OfferFilter {
        runtime: Some(q.runtime),
        image: Some(q.image.clone()),
        min_vcpu_milli: Some(q.vcpu_milli),
        min_memory_mib: Some(q.memory_mib),
        region: q.region.clone(),
        tier: q.tier.clone(),
        ..OfferFilter::default()
    };
    let resources = Resources {
        vcpu_milli: q.vcpu_milli,
        memory_mib: q.memory_mib,
        disk_mib: q.disk_mib,
        pids: 1,
    };
    let now = clock::now();
    let offers = shared.market().query(&filter, OfferSort::Price, 1000, now);
    let mut views: Vec<QuoteView> = offers
        .iter()
        .filter_map(|o| {
            let b = o.body();
            let image = b
                .runtimes
                .iter()
                .find(|r| r.isolation == q.runtime)?
                .images
                .iter()
                .find(|i| i.name == q.image && q.image_digest.is_none_or(|d| d == i.digest))?
                .clone();
            let price = price_of(&b.prices, &resources);
            if q.max_price_per_sec.is_some_and(|m| price > m)
                || b.max_lease_secs < q.lifetime_secs
                || b.capacity.disk_mib < q.disk_mib
            {
                return None;
            }
            Some(QuoteView {
                provider: b.provider,
                offer: o.digest(),
                price_per_sec: price,
                max_cost_micro: price.saturating_mul(q.lifetime_secs),
                image,
                region: b.region.clone(),
                max_lease_secs: b.max_lease_secs,
                expires_at: b.expires_at.to_string(),
                signed: b64(o),
            })
        })
        .collect();
    views.sort_by(|a, b| {
        a.price_per_sec
            .cmp(&b.price_per_sec)
            .then(a.provider.cmp(&b.provider))
    });
    views.truncate(limit);
    Ok(Json(
        json!({ "count": views.len(), "offers": views, "at": now.to_string() }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_refusals_map_to_statuses() {
        assert_eq!(
            refusal_status(RefusalCode::Untrusted),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            refusal_status(RefusalCode::UnknownLease),
            StatusCode::NOT_FOUND
        );
        assert_eq!(refusal_status(RefusalCode::Quota), StatusCode::CONFLICT);
        assert_eq!(refusal_status(RefusalCode::Ended), StatusCode::CONFLICT);
    }

    #[test]
    fn a_lost_lease_shows_the_gateways_reason_beside_the_providers_receipt() {
        use crate::lease::gateway::contact::fixtures::{at, lease};
        let grace = Duration::from_secs(120);
        let mut r = lease(3600);
        let v = serde_json::to_value(LeaseView::of_gateway(&r, at(5))).unwrap();
        assert_eq!(v["state"], "running");
        assert_eq!(v["provider_contact"]["reachable"], true, "{v}");
        assert_eq!(v["provider_contact"]["last_heard_at"], at(0).to_string());

        r.unanswered("timeout", at(10), grace);
        let v = serde_json::to_value(LeaseView::of_gateway(&r, at(11))).unwrap();
        assert_eq!(v["state"], "running", "{v}");
        assert_eq!(v["ended"], serde_json::Value::Null);
        assert_eq!(v["provider_contact"]["reachable"], false, "{v}");
        assert_eq!(
            v["provider_contact"]["unreachable_since"],
            at(10).to_string()
        );
        assert_eq!(v["provider_contact"]["error"], "timeout");

        r.unanswered("unreachable", at(130), grace);
        let v = serde_json::to_value(LeaseView::of_gateway(&r, at(131))).unwrap();
        assert_eq!(v["state"], "ended", "{v}");
        assert_eq!(v["ended"]["reason"], "provider_lost");
        assert_eq!(v["ended"]["source"], "gateway");
        assert_eq!(v["ended"]["detail"], serde_json::Value::Null);
        assert_eq!(v["ended"]["at"], at(130).to_string());
        assert_eq!(v["remaining_secs"], 0);
        assert_eq!(v["receipt"]["seq"], 1, "the provider's last signed receipt");
        assert_eq!(v["receipt"]["ended"], serde_json::Value::Null);
        assert_eq!(v["provider_contact"]["error"], "unreachable");
    }

    #[test]
    fn provider_signed_ends_say_so() {
        let r = crate::lease::gateway::contact::fixtures::lease(3600);
        let end = LeaseState::Ended {
            reason: TerminationReason::StoppedByAgent,
            at: r.created_at,
        };
        let v = serde_json::to_value(LeaseView::new(&r.grant, &end, None, r.created_at)).unwrap();
        assert_eq!(v["ended"]["reason"], "stopped_by_agent");
        assert_eq!(v["ended"]["source"], "provider");
        assert_eq!(v["ended"]["detail"], "stopped_by_agent");
    }

    #[test]
    fn bad_lease_ids_are_named() {
        assert_eq!(parse_lease("xyz").unwrap_err().code(), "bad_lease_id");
        let d = Digest::of(b"x");
        assert_eq!(parse_lease(&d.to_string()).unwrap(), d);
    }

    #[test]
    fn malformed_and_forged_messages_have_distinct_codes() {
        let e = decode_signed::<LeaseRequest>("not base64!", "malformed_request", "request")
            .unwrap_err();
        assert_eq!(e.code(), "malformed_request");
        let e = decode_signed::<LeaseRequest>("AAAA", "malformed_request", "request").unwrap_err();
        assert_eq!(e.code(), "malformed_request");
    }
}

//! Lease requests waiting for their owner's approval, kept by the gateway that relayed them.
//!
//! ```text
//! POST /v1/leases ─▶ provider refuses `approval_required` (the agent is over its spending
//!   limit and its attestation names an owner), or, under a quota committee, validators
//!   refuse the agent's lock for its balance ─▶ park: pending (with the agent's locks),
//!   202 to the agent, webhook to the owner's URL (if configured)
//! GET /v1/approvals?owner=ID ─▶ the owner sees it (`agora approvals watch`)
//! POST /v1/approvals/{id} {approval signed by the owner} ─▶ relay request + approval (under
//!   a committee: each lock certified above the balance under the approval) ─▶
//!   approved (the lease) or refused (the provider's or the committee's reason)
//! nobody answers within `[approvals] timeout` ─▶ expired, reason `approval_timeout`
//!
//! POST /v1/leases/{id}/extend ─▶ provider refuses `approval_required` (the extension goes
//!   over the agent's limit, or the lease already runs on the owner's approval), or, under a
//!   committee, validators refuse the agent's top-up for its balance ─▶ park the signed
//!   `Extend` (with the top-up) under the id the owner approves: the operation's digest (the
//!   top-up's under a committee) ─▶ POST /v1/approvals/{id} ─▶ the operation relayed with
//!   the approval (under a committee: the top-up certified under it) ─▶ the lease, extended
//! ```
//!
//! The gateway decides nothing: the provider judges the approval against the owner its own
//! trust roots find in the agent's attestation, and validators against the owners the
//! agent's credited attestations name. The gateway only refuses early an approval
//! that cannot be the right one (another request, another agent, another owner than the
//! attestation names), so an owner learns at once that they used the wrong key.

use core::time::Duration;
use std::sync::Arc;

use agora_protocol::committee::{Action, ChainOp, Op as CommitteeOp};
use agora_protocol::lease::{
    Approval, LeaseGrant, LeaseId, LeaseOp, LeaseRefusal, LeaseRequest, Op, RefusalCode,
};
use agora_protocol::{AgoraId, Signed, Timestamp};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::record::{self, RecordError};
use crate::store::{Column, Store, WriteBatch};

const APPROVAL: &[u8] = b"approval/";

/// Most requests waiting at one gateway; beyond it new ones are refused (`rate_limited`).
pub const MAX_PENDING: usize = 1000;
/// Most requests of one agent waiting at once.
pub const MAX_PENDING_PER_AGENT: usize = 16;
/// How long an answered or expired request stays visible.
pub const RETENTION: Duration = Duration::from_secs(3600);
/// How long the owner's webhook may take.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a waiting request is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ApprovalState {
    /// Waiting for the owner.
    Pending,
    /// The owner approved and a provider granted the lease.
    Approved {
        /// The lease (the request's id).
        lease: LeaseId,
        /// The provider that granted it.
        provider: AgoraId,
    },
    /// The owner approved but no provider granted it.
    Refused {
        /// The refusal code.
        code: String,
        /// Why.
        detail: String,
    },
    /// Nobody answered in time (reason `approval_timeout`).
    Expired,
}

/// A request waiting for (or answered by) its owner: a lease request, or an extension of
/// a running lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingApproval {
    /// What the owner's approval names: a lease request's id (the lease id it will have),
    /// or an extension's (the digest of the agent's signed `Extend`, or under a quota
    /// committee of its signed top-up).
    pub id: LeaseId,
    /// The agent.
    pub agent: AgoraId,
    /// The owner its attestation names (who must sign the approval).
    pub owner: AgoraId,
    /// The most it can cost (a lease at the agent's own price cap, an extension at the
    /// lease's price): what the owner approves.
    pub max_cost_micro: u64,
    /// The agent's signed lease request (none for an extension).
    #[serde(with = "record::b64_opt", default)]
    pub request: Option<Signed<LeaseRequest>>,
    /// The agent's signed `Extend` of a running lease (none for a lease request).
    #[serde(with = "record::b64_opt", default)]
    pub extend: Option<Signed<LeaseOp>>,
    /// The provider's signed refusal that asked for the approval (none when the quota
    /// committee refused the agent's lock for its balance).
    #[serde(with = "record::b64_opt", default)]
    pub refusal: Option<Signed<LeaseRefusal>>,
    /// Why it waits: the provider's or the committee's words.
    #[serde(default)]
    pub why: String,
    /// The agent's signed locks (base64url `ChainOp`s, the lock then its fallbacks, or an
    /// extension's top-up), kept to be certified under the approval; empty without a
    /// committee.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<String>,
    /// When it was parked.
    pub created_at: Timestamp,
    /// When it expires unanswered.
    pub expires_at: Timestamp,
    /// Where it is.
    #[serde(flatten)]
    pub state: ApprovalState,
    /// When the state last changed.
    pub updated_at: Timestamp,
}

impl PendingApproval {
    /// `lease` (a lease request) or `extension`.
    pub fn kind(&self) -> &'static str {
        if self.extend.is_some() {
            "extension"
        } else {
            "lease"
        }
    }

    /// Its state at `now` (a pending one past its expiry is expired).
    pub fn state_at(&self, now: Timestamp) -> ApprovalState {
        match self.state {
            ApprovalState::Pending if now >= self.expires_at => ApprovalState::Expired,
            ref s => s.clone(),
        }
    }
}

/// Why a request could not be parked or an approval not taken.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// No such request waits here.
    #[error("no request {0} waits for approval here")]
    Unknown(LeaseId),
    /// Too many waiting requests.
    #[error("{0}")]
    Full(String),
    /// The agent's attestation names no owner to approve.
    #[error("the agent's attestation names no owner: nobody can approve this request")]
    NoOwner,
    /// The approval cannot be for this request.
    #[error("{0}")]
    Invalid(String),
    /// It is no longer pending.
    #[error("request {id} is {state}, not pending")]
    NotPending {
        /// The request.
        id: LeaseId,
        /// Its state's name.
        state: &'static str,
    },
    /// The store failed.
    #[error(transparent)]
    Record(#[from] RecordError),
}

impl ApprovalError {
    /// The refusal code the API answers.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unknown(_) => "unknown_approval",
            Self::Full(_) => "rate_limited",
            Self::NoOwner => "approval_required",
            Self::Invalid(_) => RefusalCode::ApprovalInvalid.as_str(),
            Self::NotPending { state, .. } if *state == "expired" => {
                RefusalCode::ApprovalTimeout.as_str()
            }
            Self::NotPending { .. } => "not_pending",
            Self::Record(_) => "store",
        }
    }
}

/// The name of a state, for errors and filters.
pub fn state_name(s: &ApprovalState) -> &'static str {
    match s {
        ApprovalState::Pending => "pending",
        ApprovalState::Approved { .. } => "approved",
        ApprovalState::Refused { .. } => "refused",
        ApprovalState::Expired => "expired",
    }
}

/// The owner the agent's attestation claims (nearest the agent in the chain). The gateway
/// uses it only to show the request to that owner; the provider verifies.
pub fn claimed_owner(request: &LeaseRequest) -> Option<AgoraId> {
    request.signup.body().credential.as_ref()?.owner()
}

/// What asked for the owner's approval.
#[derive(Debug, Clone)]
pub struct Asked {
    /// The provider's signed `approval_required` refusal (none under a quota committee).
    pub refusal: Option<Signed<LeaseRefusal>>,
    /// Why, in words.
    pub why: String,
    /// Under a committee, the agent's signed locks (base64url), to certify under the
    /// approval.
    pub locks: Vec<String>,
}

impl Asked {
    /// A provider's `approval_required` refusal.
    pub fn by_provider(refusal: Signed<LeaseRefusal>) -> Self {
        Self {
            why: refusal.body().refusal.detail.clone(),
            refusal: Some(refusal),
            locks: Vec::new(),
        }
    }
}

/// The requests waiting at this gateway.
pub struct Approvals {
    store: Arc<dyn Store>,
    timeout: Duration,
    webhook: Option<String>,
    http: reqwest::Client,
    lock: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("timeout", &self.timeout)
            .field("webhook", &self.webhook)
            .finish_non_exhaustive()
    }
}

fn key(id: &LeaseId) -> Vec<u8> {
    let mut k = APPROVAL.to_vec();
    k.extend_from_slice(&id.0);
    k
}

impl Approvals {
    /// Waiting requests in `store`, expiring after `timeout`, announced to `webhook`.
    pub fn new(store: Arc<dyn Store>, timeout: Duration, webhook: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            store,
            timeout,
            webhook,
            http,
            lock: std::sync::Mutex::new(()),
        }
    }

    /// How long a request waits for its owner.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn put(&self, p: &PendingApproval) -> Result<(), RecordError> {
        let mut batch = WriteBatch::new();
        batch.put(
            Column::Leases,
            key(&p.id),
            serde_json::to_vec(p).unwrap_or_default(),
        );
        self.store.write(batch)?;
        Ok(())
    }

    /// One request by id.
    ///
    /// # Errors
    /// [`RecordError`].
    pub fn get(&self, id: &LeaseId) -> Result<Option<PendingApproval>, RecordError> {
        let k = key(id);
        match self.store.get(Column::Leases, &k)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| RecordError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    reason: e.to_string(),
                }),
        }
    }

    /// Every request kept here (answered ones for [`RETENTION`]), oldest first; drops those
    /// past retention.
    ///
    /// # Errors
    /// [`RecordError`].
    pub fn all(&self, now: Timestamp) -> Result<Vec<PendingApproval>, RecordError> {
        let mut out = Vec::new();
        let mut stale = WriteBatch::new();
        let mut any_stale = false;
        for (k, v) in self
            .store
            .scan_prefix(Column::Leases, APPROVAL, MAX_PENDING * 4)?
        {
            let Ok(p) = serde_json::from_slice::<PendingApproval>(&v) else {
                warn!(key = %String::from_utf8_lossy(&k), "dropping a corrupt approval record");
                stale.delete(Column::Leases, k);
                any_stale = true;
                continue;
            };
            let ended_at = match p.state_at(now) {
                ApprovalState::Pending => None,
                ApprovalState::Expired => Some(p.expires_at),
                _ => Some(p.updated_at),
            };
            if ended_at.is_some_and(|t| now >= t.saturating_add(RETENTION)) {
                stale.delete(Column::Leases, k);
                any_stale = true;
            } else {
                out.push(p);
            }
        }
        if any_stale {
            self.store.write(stale)?;
        }
        out.sort_by_key(|p| p.created_at);
        Ok(out)
    }

    /// Parks a request a provider refused with `approval_required`, or whose lock the
    /// quota committee refused for the agent's balance.
    ///
    /// # Errors
    /// [`ApprovalError::NoOwner`] when nobody could approve it, [`ApprovalError::Full`].
    pub fn park(
        &self,
        request: Signed<LeaseRequest>,
        asked: Asked,
        now: Timestamp,
    ) -> Result<PendingApproval, ApprovalError> {
        let req = request.body();
        let owner = claimed_owner(req).ok_or(ApprovalError::NoOwner)?;
        self.wait(PendingApproval {
            id: request.digest(),
            agent: req.agent,
            owner,
            max_cost_micro: req.max_price_per_sec.saturating_mul(req.spec.lifetime_secs),
            request: Some(request.clone()),
            extend: None,
            refusal: asked.refusal,
            why: asked.why,
            locks: asked.locks,
            created_at: now,
            expires_at: now.saturating_add(self.timeout),
            state: ApprovalState::Pending,
            updated_at: now,
        })
    }

    /// Parks an extension over the agent's limit for the owner the lease's `grant` names
    /// (none: nobody can approve it, [`ApprovalError::NoOwner`]). The owner approves the
    /// signed `Extend` itself, costing the added seconds at the lease's price; under a
    /// committee the agent's `top_up` instead (by its chain digest), costing what it locks.
    ///
    /// # Errors
    /// [`ApprovalError::NoOwner`], [`ApprovalError::Invalid`] for an operation that is not
    /// an extension, [`ApprovalError::Full`].
    pub fn park_extension(
        &self,
        extend: Signed<LeaseOp>,
        grant: &LeaseGrant,
        top_up: Option<Signed<ChainOp>>,
        why: String,
        now: Timestamp,
    ) -> Result<PendingApproval, ApprovalError> {
        use base64::Engine as _;
        let owner = grant.owner.ok_or(ApprovalError::NoOwner)?;
        let Op::Extend { secs } = extend.body().op else {
            return Err(ApprovalError::Invalid("not an extension".into()));
        };
        let (id, cost_micro, locks) = match top_up {
            Some(top_up) => {
                let amount = match &top_up.body().action {
                    Action::TopUp(terms) => terms.lock.amount_micro,
                    _ => return Err(ApprovalError::Invalid("not a top-up".into())),
                };
                let text =
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(top_up.as_bytes());
                (CommitteeOp::Chain(top_up).digest(), amount, vec![text])
            }
            None => (
                extend.digest(),
                grant.price_per_sec.saturating_mul(secs),
                Vec::new(),
            ),
        };
        self.wait(PendingApproval {
            id,
            agent: extend.body().agent,
            owner,
            max_cost_micro: cost_micro,
            request: None,
            extend: Some(extend),
            refusal: None,
            why,
            locks,
            created_at: now,
            expires_at: now.saturating_add(self.timeout),
            state: ApprovalState::Pending,
            updated_at: now,
        })
    }

    /// Keeps `p` waiting (an existing entry of the same id answers instead), within the
    /// bounds per node and per agent, and tells the owner's webhook.
    fn wait(&self, p: PendingApproval) -> Result<PendingApproval, ApprovalError> {
        let now = p.created_at;
        let _g = self.guard();
        if let Some(existing) = self.get(&p.id)? {
            return Ok(existing);
        }
        let waiting: Vec<PendingApproval> = self
            .all(now)?
            .into_iter()
            .filter(|p| p.state_at(now) == ApprovalState::Pending)
            .collect();
        if waiting.len() >= MAX_PENDING {
            return Err(ApprovalError::Full(
                "too many requests wait for approval at this node; retry later".into(),
            ));
        }
        if waiting.iter().filter(|w| w.agent == p.agent).count() >= MAX_PENDING_PER_AGENT {
            return Err(ApprovalError::Full(format!(
                "{MAX_PENDING_PER_AGENT} of this agent's requests already wait for approval"
            )));
        }
        self.put(&p)?;
        info!(request = %p.id, agent = %p.agent, owner = %p.owner, kind = p.kind(), "waits for its owner's approval");
        self.notify(&p);
        Ok(p)
    }

    /// Checks an owner's approval against a waiting request and returns the request.
    ///
    /// # Errors
    /// [`ApprovalError`]: unknown, not pending (expired: `approval_timeout`), or an
    /// approval that cannot be for it.
    pub fn take(
        &self,
        id: &LeaseId,
        approval: &Signed<Approval>,
        now: Timestamp,
    ) -> Result<PendingApproval, ApprovalError> {
        let _g = self.guard();
        let mut p = self.get(id)?.ok_or(ApprovalError::Unknown(*id))?;
        let state = p.state_at(now);
        if state != ApprovalState::Pending {
            if state == ApprovalState::Expired && p.state == ApprovalState::Pending {
                p.state = ApprovalState::Expired;
                p.updated_at = now;
                self.put(&p)?;
            }
            return Err(ApprovalError::NotPending {
                id: *id,
                state: state_name(&state),
            });
        }
        let a = approval.body();
        if a.request != *id {
            return Err(ApprovalError::Invalid(format!(
                "the approval is for request {}, not {id}",
                a.request
            )));
        }
        if a.agent != p.agent {
            return Err(ApprovalError::Invalid(
                "the approval is for another agent".into(),
            ));
        }
        if a.owner != p.owner {
            return Err(ApprovalError::Invalid(format!(
                "approved by {}, but the agent's attestation names {} as its owner",
                a.owner, p.owner
            )));
        }
        if a.max_cost_micro < p.max_cost_micro {
            debug!(request = %id, approved = a.max_cost_micro, asked = p.max_cost_micro, "approval below the request's cap");
        }
        Ok(p)
    }

    /// Records what came of relaying an approved request.
    ///
    /// # Errors
    /// [`RecordError`].
    pub fn settle(
        &self,
        id: &LeaseId,
        state: ApprovalState,
        now: Timestamp,
    ) -> Result<(), RecordError> {
        let _g = self.guard();
        if let Some(mut p) = self.get(id)? {
            p.state = state;
            p.updated_at = now;
            self.put(&p)?;
        }
        Ok(())
    }

    /// Announces a new waiting request to the configured webhook (in the background; a
    /// failure is logged, the request still waits).
    fn notify(&self, p: &PendingApproval) {
        let Some(url) = self.webhook.clone() else {
            return;
        };
        let body = serde_json::json!({
            "event": "approval_requested",
            "approval": ApprovalView::of(p, p.created_at),
        });
        let http = self.http.clone();
        let id = p.id;
        tokio::spawn(async move {
            match http.post(&url).json(&body).send().await {
                Ok(r) if r.status().is_success() => debug!(request = %id, "owner's webhook called"),
                Ok(r) => warn!(request = %id, status = %r.status(), "owner's webhook refused"),
                Err(e) => warn!(request = %id, error = %e, "owner's webhook failed"),
            }
        });
    }
}

/// A waiting request as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalView {
    /// What the approval names: a lease request's id (the lease id it will have), or an
    /// extension's (its signed operation's digest, under a committee its top-up's).
    pub id: LeaseId,
    /// `lease` (a lease request) or `extension` (of the running lease `lease`).
    pub kind: &'static str,
    /// The agent.
    pub agent: AgoraId,
    /// Who must approve.
    pub owner: AgoraId,
    /// The most the lease can cost (micro-credits): what an approval covers.
    pub max_cost_micro: u64,
    /// `pending`, `approved`, `refused` or `expired`.
    pub state: &'static str,
    /// The lease: of an extension, the one it extends; of a lease request, once approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseId>,
    /// Of an extension: how many seconds it adds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extend_secs: Option<u64>,
    /// The provider that granted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<AgoraId>,
    /// Why it was refused or expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The details of a refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What a lease request runs: runtime, image and command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The image name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Lifetime asked, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifetime_secs: Option<u64>,
    /// When it was parked (RFC 3339).
    pub created_at: String,
    /// When it expires unanswered (RFC 3339).
    pub expires_at: String,
    /// The agent's signed request, base64url (what the owner approves): its
    /// `LeaseRequest`, or for an extension its `LeaseOp`.
    pub request: String,
    /// Of an extension under a quota committee: the agent's signed top-up (`ChainOp`,
    /// base64url), which the approval names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_up: Option<String>,
    /// Why it waits: the provider's or the quota committee's words.
    pub why: String,
    /// The provider's signed refusal asking for approval, base64url (absent when the quota
    /// committee refused the agent's lock for its balance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

impl ApprovalView {
    /// The view of `p` at `now`.
    pub fn of(p: &PendingApproval, now: Timestamp) -> Self {
        use base64::Engine as _;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let state = p.state_at(now);
        let (lease, provider, reason, detail) = match &state {
            ApprovalState::Approved { lease, provider } => {
                (Some(*lease), Some(*provider), None, None)
            }
            ApprovalState::Refused { code, detail } => {
                (None, None, Some(code.clone()), Some(detail.clone()))
            }
            ApprovalState::Expired => (
                None,
                None,
                Some(RefusalCode::ApprovalTimeout.as_str().to_owned()),
                None,
            ),
            ApprovalState::Pending => (None, None, None, None),
        };
        let mut view = Self {
            id: p.id,
            kind: p.kind(),
            agent: p.agent,
            owner: p.owner,
            max_cost_micro: p.max_cost_micro,
            state: state_name(&state),
            lease,
            extend_secs: None,
            provider,
            reason,
            detail,
            runtime: None,
            image: None,
            command: None,
            lifetime_secs: None,
            created_at: p.created_at.to_string(),
            expires_at: p.expires_at.to_string(),
            request: String::new(),
            top_up: None,
            why: p.why.clone(),
            refusal: p.refusal.as_ref().map(|r| b64(r.as_bytes())),
        };
        if let Some(request) = &p.request {
            let req = request.body();
            view.runtime = Some(req.isolation.as_str().to_owned());
            view.image = Some(match &req.spec.image {
                agora_protocol::workload::ImageSource::Named { name, .. } => name.clone(),
                agora_protocol::workload::ImageSource::Tarball { .. } => "tarball".into(),
            });
            view.command = Some(req.spec.command.clone());
            view.lifetime_secs = Some(req.spec.lifetime_secs);
            view.request = b64(request.as_bytes());
        }
        if let Some(extend) = &p.extend {
            let op = extend.body();
            view.lease = Some(op.lease);
            view.provider = Some(op.provider);
            if let Op::Extend { secs } = op.op {
                view.extend_secs = Some(secs);
            }
            view.request = b64(extend.as_bytes());
            view.top_up = p.locks.first().cloned();
        }
        view
    }
}

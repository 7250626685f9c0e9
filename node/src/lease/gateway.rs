//! The gateway's side of leases: relay an agent's signed request to the providers it names,
//! in its order, and its operations to the provider that holds the lease.
//!
//! ```text
//! POST /v1/leases ─▶ decode + verify ─▶ for each candidate (≤ 8, agent's order):
//!     call(provider, Propose) within provider_timeout
//!        ├─ Granted (signed by that provider, for this request) ─▶ record ─▶ 201
//!        ├─ Refused, another provider might not refuse (capacity, price, …) ─▶ next
//!        ├─ unreachable / timeout / bad answer ─▶ next
//!        └─ Refused for the agent itself (untrusted, stale, quota, …) ─▶ stop
//!     nothing left ─▶ 409 no_match, with every attempt's reason
//! ```
//!
//! A gateway adds nothing an agent must trust: every request is the agent's, every answer
//! the provider's, both signed; it checks answers only to fail over sooner. A gateway that
//! is also a provider answers requests naming itself directly, without the network.
//!
//! # A provider that vanishes
//!
//! `GET /v1/leases/{id}` asks the lease's provider for its signed status; relayed
//! operations and streams reach it too. While none of these gets a usable answer the view
//! says so (`provider_contact.reachable: false`, `unreachable_since`, `error`: `unreachable`,
//! `timeout` or `bad_answer`). Once the provider has been unreachable for
//! `[leases] provider_lost_after` (default 2 min), or the grant's expiry has passed without
//! word from it, the gateway records the lease as ended with the reason code
//! [`contact::PROVIDER_LOST`]: `ended.source` is `gateway` (this node's observation,
//! unsigned) where provider-signed ends say `provider`, and the provider's last signed
//! grant and receipt stay in the view. A provider that answers again wins: its signed
//! state replaces the gateway's verdict (a lease it still runs shows running again). The
//! rules are in [`contact`], pure and tested with the time passed in. A streamed
//! operation (exec, logs) whose provider vanishes midway ends with the NDJSON line
//! `{"type":"error","code":"unreachable",…}` once the connection is known lost (at once
//! for a closed socket, within the ping timeout for a silent peer).

use core::time::Duration;
use std::sync::{Arc, OnceLock};

use agora_protocol::lease::{
    LeaseAnswer, LeaseGrant, LeaseId, LeaseOp, LeaseProposal, LeaseRefusal, Op, Refusal,
    RefusalCode,
};
use agora_protocol::lease_rpc::{self as rpc, LeaseState, LeaseStatus};
use agora_protocol::workload::ImageSource;
use agora_protocol::{AgoraId, Digest, Signed};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::provider::Provider;
use super::record::{self, GatewayLease, RecordError};
use crate::daemon::network::{LeaseCall, NetCommand};
use crate::store::Store;

pub mod contact;
mod stream;
pub use stream::{OpStream, open_on};

/// Why a call to a provider gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The provider could not be reached (no address, dial failed, connection lost).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer did not decode or verify, or does not fit the question.
    #[error("bad answer: {0}")]
    BadAnswer(String),
}

impl CallError {
    /// A stable code: `unreachable`, `timeout` or `bad_answer`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::Timeout(_) => "timeout",
            Self::BadAnswer(_) => "bad_answer",
        }
    }
}

/// Whether a provider's refusal leaves hope with another provider (fail over), as opposed
/// to a refusal of the agent or its request itself (stop: every provider would say it).
pub fn fails_over(code: RefusalCode) -> bool {
    match code {
        RefusalCode::Capacity
        | RefusalCode::OfferMismatch
        | RefusalCode::Unsupported
        | RefusalCode::Price
        | RefusalCode::Unavailable
        | RefusalCode::Policy
        | RefusalCode::Lifetime
        | RefusalCode::TooManyLeases
        | RefusalCode::RateLimited
        | RefusalCode::UnknownLease
        | RefusalCode::Ended => true,
        RefusalCode::Untrusted
        | RefusalCode::Unauthorized
        | RefusalCode::Stale
        | RefusalCode::Replay
        | RefusalCode::Quota
        | RefusalCode::ApprovalRequired
        | RefusalCode::ApprovalInvalid
        | RefusalCode::ApprovalTimeout
        | RefusalCode::TierLimit
        | RefusalCode::Invalid => false,
    }
}

/// What came of asking one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It granted the lease.
    Granted,
    /// It refused (signed).
    Refused(Signed<LeaseRefusal>),
    /// No usable answer.
    Failed(CallError),
}

/// One candidate tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The provider.
    pub provider: AgoraId,
    /// The offer named.
    pub offer: Digest,
    /// What came of it.
    pub outcome: Outcome,
    /// How long it took.
    pub elapsed: Duration,
}

/// The end of relaying a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proposed {
    /// A provider granted it.
    Granted {
        /// The provider's signed grant.
        grant: Signed<LeaseGrant>,
        /// Every candidate tried, the granting one last.
        attempts: Vec<Attempt>,
    },
    /// A provider refused it for a reason every provider would give: no use trying others.
    Stopped {
        /// That provider's refusal.
        refusal: Signed<LeaseRefusal>,
        /// Every candidate tried, the refusing one last.
        attempts: Vec<Attempt>,
    },
    /// Every candidate refused or failed.
    NoMatch {
        /// Why, candidate by candidate.
        attempts: Vec<Attempt>,
    },
}

/// Relays leases for agents.
pub struct Gateway {
    store: Arc<dyn Store>,
    net: mpsc::Sender<NetCommand>,
    /// Opens libp2p streams for streamed operations ([`Gateway::open_stream`]).
    streams: OnceLock<std::sync::Mutex<libp2p_stream::Control>>,
    local: OnceLock<Arc<Provider>>,
    approvals: super::approvals::Approvals,
    id: AgoraId,
    timeout: Duration,
    /// How long a provider may stay unreachable before its running leases count as lost.
    provider_lost_after: Duration,
    /// Serialises read-modify-write of relayed lease records (never held across an await).
    records: std::sync::Mutex<()>,
    metrics: crate::metrics::NodeMetrics,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("id", &self.id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A short view of an answer for logs and errors.
fn unexpected(r: &rpc::Response) -> CallError {
    CallError::BadAnswer(
        match r {
            rpc::Response::Answer(_) => "a lease answer to an operation",
            rpc::Response::Status(_) => "a status to a proposal",
            rpc::Response::Refused(_) => "an unsigned refusal to a proposal",
        }
        .into(),
    )
}

impl Gateway {
    /// A gateway for node `id`, sending through `net`, waiting `timeout` per provider,
    /// counting outcomes in `metrics` (`agora_leases_total{role="gateway"}`).
    pub fn new(
        id: AgoraId,
        store: Arc<dyn Store>,
        net: mpsc::Sender<NetCommand>,
        timeout: Duration,
        metrics: crate::metrics::NodeMetrics,
    ) -> Self {
        Self {
            store: store.clone(),
            net,
            streams: OnceLock::new(),
            local: OnceLock::new(),
            approvals: super::approvals::Approvals::new(
                store,
                crate::config::ApprovalSection::default().timeout,
                None,
            ),
            id,
            timeout,
            provider_lost_after: crate::config::LeaseSection::default().provider_lost_after,
            records: std::sync::Mutex::new(()),
            metrics,
        }
    }

    /// A running lease whose provider stays unreachable this long is recorded as ended with
    /// [`contact::PROVIDER_LOST`] (see the module docs).
    #[must_use]
    pub fn with_provider_lost_after(mut self, after: Duration) -> Self {
        self.provider_lost_after = after;
        self
    }

    /// Requests wait for their owner's approval up to `timeout`; each new one is POSTed to
    /// `webhook`, if any.
    #[must_use]
    pub fn with_approvals(mut self, timeout: Duration, webhook: Option<String>) -> Self {
        self.approvals = super::approvals::Approvals::new(self.store.clone(), timeout, webhook);
        self
    }

    /// The requests waiting here for their owner's approval.
    pub fn approvals(&self) -> &super::approvals::Approvals {
        &self.approvals
    }

    /// Opens operation streams to providers with `control` (the swarm's stream behaviour).
    pub fn set_streams(&self, control: libp2p_stream::Control) {
        let _ = self.streams.set(std::sync::Mutex::new(control));
    }

    /// Serves requests naming this node with its own provider, without the network.
    pub fn set_local(&self, provider: Arc<Provider>) {
        let _ = self.local.set(provider);
    }

    /// The per-provider timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `request` to `provider` and waits up to `timeout` for its answer.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn call(
        &self,
        provider: &AgoraId,
        request: &rpc::Request,
        timeout: Duration,
    ) -> Result<rpc::Response, CallError> {
        if *provider == self.id {
            let local = self
                .local
                .get()
                .ok_or_else(|| CallError::Unreachable("this node is not a provider".into()))?;
            return tokio::time::timeout(timeout, local.handle(request, crate::clock::now()))
                .await
                .map_err(|_| CallError::Timeout(timeout));
        }
        let peer = agora_attest::identity::peer_id_of(provider)
            .map_err(|e| CallError::Unreachable(format!("no peer id for {provider}: {e}")))?;
        let bytes = request
            .encode()
            .map_err(|e| CallError::BadAnswer(format!("cannot encode the request: {e}")))?;
        let (reply, answer) = oneshot::channel();
        let call = NetCommand::Lease(Box::new(LeaseCall {
            peer,
            request: bytes,
            reply,
        }));
        let exchange = async {
            self.net
                .send(call)
                .await
                .map_err(|_| CallError::Unreachable("the network is stopping".into()))?;
            answer
                .await
                .map_err(|_| CallError::Unreachable("the network dropped the request".into()))?
                .map_err(CallError::Unreachable)
        };
        let bytes = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| CallError::Timeout(timeout))??;
        rpc::Response::decode(&bytes).map_err(|e| CallError::BadAnswer(e.to_string()))
    }

    /// Relays a proposal to the request's candidates in order (see the module docs).
    pub async fn propose(&self, proposal: LeaseProposal) -> Proposed {
        let id = proposal.request.digest();
        let req = proposal.request.body().clone();
        let request = rpc::Request::Propose(proposal);
        let mut attempts = Vec::new();
        // A lock certificate names one provider: the request goes to that candidate only.
        let locked_to = proposal_lock_provider(&request);
        for candidate in req
            .candidates
            .iter()
            .filter(|c| locked_to.is_none_or(|p| p == c.provider))
        {
            let started = std::time::Instant::now();
            let answer = self.call(&candidate.provider, &request, self.timeout).await;
            let outcome = match answer {
                Ok(rpc::Response::Answer(LeaseAnswer::Granted(g))) => {
                    let b = g.body();
                    if b.lease == id && b.provider == candidate.provider && b.agent == req.agent {
                        Ok(g)
                    } else {
                        Err(Outcome::Failed(CallError::BadAnswer(
                            "a grant for another lease or by another provider".into(),
                        )))
                    }
                }
                Ok(rpc::Response::Answer(LeaseAnswer::Refused(r))) => {
                    if r.body().provider == candidate.provider && r.body().request == id {
                        Err(Outcome::Refused(r))
                    } else {
                        Err(Outcome::Failed(CallError::BadAnswer(
                            "a refusal of another request or by another provider".into(),
                        )))
                    }
                }
                Ok(rpc::Response::Refused(r)) => Err(Outcome::Failed(CallError::Unreachable(
                    format!("{}: {}", r.code, r.detail),
                ))),
                Ok(other) => Err(Outcome::Failed(unexpected(&other))),
                Err(e) => Err(Outcome::Failed(e)),
            };
            let elapsed = started.elapsed();
            match outcome {
                Ok(grant) => {
                    attempts.push(Attempt {
                        provider: candidate.provider,
                        offer: candidate.offer,
                        outcome: Outcome::Granted,
                        elapsed,
                    });
                    self.remember(&req, &grant);
                    self.metrics.lease("gateway", "granted");
                    info!(lease = %id, provider = %candidate.provider, tried = attempts.len(), "lease relayed");
                    return Proposed::Granted { grant, attempts };
                }
                Err(outcome) => {
                    let stop = match &outcome {
                        Outcome::Refused(r) => {
                            (!fails_over(r.body().refusal.code)).then(|| r.clone())
                        }
                        _ => None,
                    };
                    debug!(lease = %id, provider = %candidate.provider, ?outcome, "candidate did not grant");
                    attempts.push(Attempt {
                        provider: candidate.provider,
                        offer: candidate.offer,
                        outcome,
                        elapsed,
                    });
                    if let Some(refusal) = stop {
                        self.metrics
                            .lease("gateway", refusal.body().refusal.code.as_str());
                        return Proposed::Stopped { refusal, attempts };
                    }
                }
            }
        }
        self.metrics.lease("gateway", "no_match");
        Proposed::NoMatch { attempts }
    }

    fn remember(&self, req: &agora_protocol::lease::LeaseRequest, grant: &Signed<LeaseGrant>) {
        let g = grant.body();
        let record = GatewayLease {
            lease: g.lease,
            agent: g.agent,
            provider: g.provider,
            isolation: req.isolation,
            image: match &req.spec.image {
                ImageSource::Named { name, .. } => name.clone(),
                ImageSource::Tarball { .. } => "tarball".into(),
            },
            command: req.spec.command.clone(),
            created_at: crate::clock::now(),
            grant: grant.clone(),
            state: LeaseState::Running,
            receipt: None,
            updated_at: crate::clock::now(),
            contact: contact::Contact::default(),
        };
        if let Err(e) = record::put_gateway(self.store.as_ref(), &record) {
            warn!(lease = %g.lease, error = %e, "cannot record a relayed lease");
        }
    }

    /// Applies `observe` to the record of a relayed lease held by `provider` (if this node
    /// relayed it) and stores the result; logs and counts what changed.
    fn observe(
        &self,
        provider: &AgoraId,
        lease: &LeaseId,
        observe: impl FnOnce(&mut GatewayLease) -> contact::Change,
    ) {
        let _guard = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut r = match record::gateway_lease(self.store.as_ref(), lease) {
            Ok(Some(r)) if r.provider == *provider => r,
            Ok(_) => return,
            Err(e) => {
                warn!(lease = %lease, error = %e, "cannot read a relayed lease");
                return;
            }
        };
        let change = observe(&mut r);
        if let Err(e) = record::put_gateway(self.store.as_ref(), &r) {
            warn!(lease = %lease, error = %e, "cannot update a relayed lease");
        }
        match change {
            contact::Change::Unchanged => {}
            contact::Change::Unreachable => info!(
                lease = %lease,
                provider = %provider,
                error = r.contact.last_error.as_deref().unwrap_or(""),
                "the provider of a relayed lease does not answer"
            ),
            contact::Change::Lost => {
                self.metrics.lease("gateway", contact::PROVIDER_LOST);
                warn!(
                    lease = %lease,
                    provider = %provider,
                    since = %r.contact.unreachable_since.unwrap_or(r.updated_at),
                    last_heard = %r.updated_at,
                    "relayed lease recorded as ended: provider_lost"
                );
            }
            contact::Change::Back => info!(
                lease = %lease,
                provider = %provider,
                state = r.state.name(),
                "the provider of a relayed lease answers again"
            ),
        }
    }

    /// Updates the record of a relayed lease with a provider's fresh status.
    fn refresh(&self, status: &LeaseStatus) {
        let provider = status.grant.body().provider;
        self.observe(&provider, &status.lease, |r| {
            r.answered(status, crate::clock::now())
        });
    }

    /// Notes that `provider` gave no usable answer about `lease` (see [`contact`]).
    fn unanswered(&self, provider: &AgoraId, lease: &LeaseId, error: &CallError) {
        let after = self.provider_lost_after;
        self.observe(provider, lease, |r| {
            r.unanswered(error.code(), crate::clock::now(), after)
        });
    }

    /// Relays an agent's operation to the provider it names; a status answer updates this
    /// node's record of the lease.
    ///
    /// # Errors
    /// [`CallError`] when the provider gives no usable answer.
    pub async fn operate(
        &self,
        op: Signed<LeaseOp>,
    ) -> Result<Result<LeaseStatus, Refusal>, CallError> {
        self.relay_op(&op, &rpc::Request::Operate(op.clone())).await
    }

    /// Relays an agent's `Extend` with the committee's certificate of its top-up lock.
    ///
    /// # Errors
    /// [`CallError`] when the provider gives no usable answer.
    pub async fn extend_with_top_up(
        &self,
        op: Signed<LeaseOp>,
        top_up: agora_protocol::committee::UncheckedCertificate,
    ) -> Result<Result<LeaseStatus, Refusal>, CallError> {
        self.relay_op(
            &op,
            &rpc::Request::Extend {
                op: op.clone(),
                top_up,
            },
        )
        .await
    }

    /// Relays an agent's `Extend` that waited above its spending limit with the owner's
    /// approval of it (a provider without a quota committee).
    ///
    /// # Errors
    /// [`CallError`] when the provider gives no usable answer.
    pub async fn extend_approved(
        &self,
        op: Signed<LeaseOp>,
        approval: Signed<agora_protocol::lease::Approval>,
    ) -> Result<Result<LeaseStatus, Refusal>, CallError> {
        self.relay_op(
            &op,
            &rpc::Request::ApprovedExtend {
                op: op.clone(),
                approval,
            },
        )
        .await
    }

    /// Sends `request`, carrying the agent's `op`, to the provider `op` names; a status
    /// answer updates this node's record of the lease.
    async fn relay_op(
        &self,
        op: &Signed<LeaseOp>,
        request: &rpc::Request,
    ) -> Result<Result<LeaseStatus, Refusal>, CallError> {
        let (provider, lease) = (op.body().provider, op.body().lease);
        let answer = self.call(&provider, request, self.timeout).await;
        self.checked_status(&provider, &lease, answer)
    }

    /// Asks the provider of a relayed lease for its state (read-only).
    ///
    /// # Errors
    /// [`CallError`] when the provider gives no usable answer.
    pub async fn query(
        &self,
        provider: &AgoraId,
        lease: &LeaseId,
        timeout: Duration,
    ) -> Result<Result<LeaseStatus, Refusal>, CallError> {
        let answer = self
            .call(provider, &rpc::Request::Query(*lease), timeout)
            .await;
        self.checked_status(provider, lease, answer)
    }

    /// [`Self::status_answer`], noting a missing or unusable answer in the lease's record.
    fn checked_status(
        &self,
        provider: &AgoraId,
        lease: &LeaseId,
        answer: Result<rpc::Response, CallError>,
    ) -> Result<Result<LeaseStatus, Refusal>, CallError> {
        let checked = answer.and_then(|a| self.status_answer(provider, lease, a));
        if let Err(e) = &checked {
            self.unanswered(provider, lease, e);
        }
        checked
    }

    fn status_answer(
        &self,
        provider: &AgoraId,
        lease: &LeaseId,
        answer: rpc::Response,
    ) -> Result<Result<LeaseStatus, Refusal>, CallError> {
        match answer {
            rpc::Response::Status(s) => {
                let g = s.grant.body();
                if s.lease != *lease || g.lease != *lease || g.provider != *provider {
                    return Err(CallError::BadAnswer(
                        "a status of another lease or by another provider".into(),
                    ));
                }
                if let Some(r) = &s.receipt
                    && (r.body().lease != *lease || r.body().provider != *provider)
                {
                    return Err(CallError::BadAnswer(
                        "a receipt of another lease or by another provider".into(),
                    ));
                }
                self.refresh(&s);
                Ok(Ok(*s))
            }
            rpc::Response::Refused(r) => {
                self.observe(provider, lease, |l| l.heard(crate::clock::now()));
                Ok(Err(r))
            }
            other => Err(unexpected(&other)),
        }
    }

    /// A relayed lease as this node last saw it.
    ///
    /// # Errors
    /// [`RecordError`].
    pub fn lease(&self, id: &LeaseId) -> Result<Option<GatewayLease>, RecordError> {
        record::gateway_lease(self.store.as_ref(), id)
    }

    /// Forgets relayed leases over for more than `retention` at `now` (see
    /// [`record::prune_gateway`]); how many.
    ///
    /// # Errors
    /// [`RecordError`].
    pub fn prune(
        &self,
        now: agora_protocol::Timestamp,
        retention: Duration,
    ) -> Result<usize, RecordError> {
        record::prune_gateway(self.store.as_ref(), now, retention)
    }

    /// The leases relayed for `agent` (at most `limit`).
    ///
    /// # Errors
    /// [`RecordError`].
    pub fn leases_of(
        &self,
        agent: &AgoraId,
        limit: usize,
    ) -> Result<Vec<GatewayLease>, RecordError> {
        record::gateway_leases_of(self.store.as_ref(), agent, limit)
    }

    /// The local provider, if this node is one.
    pub fn local(&self) -> Option<&Arc<Provider>> {
        self.local.get()
    }
}

/// One attempt as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    /// The provider.
    pub provider: AgoraId,
    /// The offer named.
    pub offer: Digest,
    /// `granted`, `refused`, `unreachable`, `timeout` or `bad_answer`.
    pub outcome: &'static str,
    /// The refusal code, when refused.
    pub code: Option<&'static str>,
    /// Why, for people.
    pub detail: Option<String>,
    /// The provider's signed refusal (base64url), when refused.
    pub signed_refusal: Option<String>,
    /// Milliseconds the attempt took.
    pub elapsed_ms: u64,
}

impl From<&Attempt> for AttemptView {
    fn from(a: &Attempt) -> Self {
        use base64::Engine as _;
        let (outcome, code, detail, signed) = match &a.outcome {
            Outcome::Granted => ("granted", None, None, None),
            Outcome::Refused(r) => (
                "refused",
                Some(r.body().refusal.code.as_str()),
                Some(r.body().refusal.detail.clone()),
                Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r.as_bytes())),
            ),
            Outcome::Failed(e) => (e.code(), None, Some(e.to_string()), None),
        };
        Self {
            provider: a.provider,
            offer: a.offer,
            outcome,
            code,
            detail,
            signed_refusal: signed,
            elapsed_ms: u64::try_from(a.elapsed.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// Whether an operation is one the gateway relays over `/agora/lease/1` (not streamed).
pub fn is_relayed(op: &Op) -> bool {
    matches!(
        op,
        Op::Extend { .. } | Op::Stop | Op::Status | Op::RevokeGrant { .. } | Op::Acknowledge { .. }
    )
}

/// The provider a proposal's lock certificate names, if it carries one.
fn proposal_lock_provider(request: &rpc::Request) -> Option<AgoraId> {
    let rpc::Request::Propose(p) = request else {
        return None;
    };
    match &p.lock.as_ref()?.op.chain()?.body().action {
        agora_protocol::committee::Action::Lock(terms) => Some(terms.provider),
        agora_protocol::committee::Action::TopUp(_)
        | agora_protocol::committee::Action::Credit(_) => None,
    }
}

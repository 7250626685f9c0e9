//! The provider's side of leases: admission, quota, workloads, grants and receipts.
//!
//! ```text
//! Propose ─▶ judge(signup record) ─▶ Admission::request ─▶ QuotaBook::lock ─▶ quota_answer
//!        ─▶ record (starting) ─▶ Supervisor::launch ─▶ sign LeaseGrant + Capability ─▶ record (running)
//!                                      └─ failure: abort, release quota, refusal `unavailable`
//! Operate(Extend) ─▶ check_op ─▶ extension ─▶ QuotaBook::grow ─▶ extended ─▶ re-signed grant
//! Extend { op, top_up } (quota committee) ─▶ check_op ─▶ extension ─▶ check_top_up (covers
//!                 the extension over the kept locks) ─▶ kept with the lease ─▶ extended
//! Operate(Stop)   ─▶ check_op ─▶ Supervisor::stop(stopped_by_agent) ─▶ end ─▶ settle ─▶ final receipt
//! Operate(RevokeGrant) ─▶ check_op ─▶ grant id kept with the lease ─▶ tunnel streams under it cut
//! Operate(Acknowledge) (ended lease) ─▶ the agent's ack of the final receipt ─▶ record
//!                 ─▶ Ledger::record(Usage { receipt, ack })
//! tick (1 s)      ─▶ workloads that ended, leases that expired ─▶ end ─▶ settle ─▶ final receipt
//!                 (under a committee: every kept lock and top-up settled with it)
//! grant, final receipt ─▶ Ledger::record (before the grant is answered; see `with_ledger`)
//!                 ─▶ usage samples (5 s: runtime stats, tunnel bytes from tunnel::Meter)
//!                 ─▶ periodic receipts ─▶ forget ended leases after retention
//! ```
//!
//! [`Provider`] drives the sans-IO [`Admission`] and [`QuotaBook`] (behind one short mutex,
//! never held across an await) and the [`Supervisor`]. Every change to a lease is written
//! with the agent's quota account in one batch, so a restarted provider restores both
//! ([`Provider::open`]); a lease found still `starting` after a restart never got its grant,
//! so its workload is stopped and its quota returned.
//!
//! Streamed operations (exec, logs, files) are not answered here: their handler calls
//! [`Provider::authorize`] to check the agent's signed operation and get the workload.

use core::time::Duration;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use agora_attest::Identity;
use agora_protocol::admission::{ActiveLease, Admission, AdmissionConfig, Decision, Standing};
use agora_protocol::lease::{
    Approval, Capability, LeaseAnswer, LeaseGrant, LeaseId, LeaseOp, LeaseProposal, LeaseRefusal,
    Op, ReceiptAck, Refusal, RefusalCode,
};
use agora_protocol::lease_rpc::{self as rpc, LeaseStatus};
use agora_protocol::ledger::{Fact, Usage as UsageFact};
use agora_protocol::quota::{QuotaAnswer, QuotaBook};
use agora_protocol::service::GrantId;
use agora_protocol::signup::SignupRecord;
use agora_protocol::workload::TerminationReason;
use agora_protocol::{AgoraId, Offer, Signed, Timestamp};
use tracing::{debug, info, warn};

use super::meter;
use super::record::{self, Phase, ProviderLease, RecordError, Usage};
use crate::runtime::WorkloadId;
use crate::runtime::supervisor::{Supervisor, SupervisorError};
use crate::store::{Store, WriteBatch};

/// Judges an agent's signup record at a time: its standing here, or why it has none.
pub type Judge =
    Arc<dyn Fn(&Signed<SignupRecord>, Timestamp) -> Result<Standing, Refusal> + Send + Sync>;

/// Most grants one lease may have revoked (each revocation is kept with the lease record).
pub const MAX_REVOKED_GRANTS: usize = 256;

/// How much longer than the lease a lock certificate must last: admission restarts the
/// lease's clock when quota answers, up to the request's freshness window after signing.
pub const LOCK_MARGIN: Duration = Duration::from_secs(60);

/// How far ahead of this provider's clock an acknowledgement may be dated (clock skew).
pub const ACK_MAX_AHEAD: Duration = Duration::from_secs(300);

/// Most refused requests remembered at once under a quota committee (each for the request's
/// freshness window); beyond it, refusals go unsigned (see `Provider::refuse_proposal`).
pub const MAX_REFUSED: usize = 100_000;

/// How often usage is sampled from the runtime.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Metering and retention settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// A running lease gets a signed receipt this often.
    pub receipt_interval: Duration,
    /// An ended lease stays queryable this long.
    pub retention: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            receipt_interval: Duration::from_secs(60),
            retention: Duration::from_secs(3600),
        }
    }
}

/// The workload id of a lease: `l-` and the first 16 bytes of the lease id in hex.
pub fn workload_id(lease: &LeaseId) -> WorkloadId {
    let hex: String = lease
        .0
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    // Invariant: "l-" + 32 lowercase hex digits is a valid workload id.
    WorkloadId::try_from(format!("l-{hex}")).unwrap_or_else(|_| WorkloadId::random())
}

/// A checked operation on a running lease: what a streamed operation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The lease (its tier caps file sizes).
    pub lease: ActiveLease,
    /// The workload running it.
    pub workload: WorkloadId,
}

struct State {
    admission: Admission,
    quota: QuotaBook,
    leases: BTreeMap<LeaseId, ProviderLease>,
    endpoints: Vec<String>,
    /// Workloads of leases that never got their grant (found after a restart).
    orphans: Vec<WorkloadId>,
    /// Leases restored from the store, and when: the nonces of operations on them before
    /// the restart are forgotten, so operations signed before it are refused as stale.
    restored: std::collections::BTreeSet<LeaseId>,
    opened_at: Timestamp,
    /// Under a quota committee: requests this provider refused (with a signed refusal), and
    /// until when they are remembered. Never granted afterwards: see
    /// [`Provider::refuse_proposal`].
    refused: BTreeMap<LeaseId, Timestamp>,
}

/// The provider's lease service.
pub struct Provider {
    identity: Arc<Identity>,
    store: Arc<dyn Store>,
    supervisor: Arc<Supervisor>,
    judge: Judge,
    settings: Settings,
    state: Mutex<State>,
    metrics: crate::metrics::NodeMetrics,
    /// Per-lease tunnel bytes, added by the tunnel endpoint, folded into receipts here.
    tunnels: crate::tunnel::Meter,
    /// Bumped at every grant revocation: live tunnel streams under a grant watch it.
    revocations: tokio::sync::watch::Sender<u64>,
    /// Where grants and final receipts are recorded as evidence.
    ledger: Option<Arc<crate::ledger::Ledger>>,
    /// The quota committee, when the network has one: leases start only against its lock
    /// certificates (instead of the local quota book) and are settled with it.
    quota: Option<Arc<crate::committee::Quota>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("id", &self.identity.agora_id())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn refusal(code: RefusalCode, detail: impl Into<String>) -> Refusal {
    Refusal::new(code, detail)
}

impl Provider {
    /// A provider service restoring the leases and quota accounts in `store` at `now`.
    ///
    /// # Errors
    /// [`RecordError`] when the store fails or holds a corrupt record.
    pub fn open(
        identity: Arc<Identity>,
        store: Arc<dyn Store>,
        supervisor: Arc<Supervisor>,
        admission: AdmissionConfig,
        judge: Judge,
        settings: Settings,
        now: Timestamp,
    ) -> Result<Self, RecordError> {
        let mut state = State {
            admission: Admission::new(identity.agora_id(), admission),
            quota: QuotaBook::new(),
            leases: BTreeMap::new(),
            endpoints: Vec::new(),
            orphans: Vec::new(),
            restored: std::collections::BTreeSet::new(),
            opened_at: now,
            refused: BTreeMap::new(),
        };
        for (agent, account) in record::load_accounts(store.as_ref())? {
            state.quota.restore(agent, account);
        }
        let mut batch = WriteBatch::new();
        let mut touched = Vec::new();
        let tunnels = crate::tunnel::Meter::default();
        for lease in record::load_provider(store.as_ref())? {
            let id = lease.active.lease;
            match lease.phase {
                Phase::Starting => {
                    // Crashed mid-launch: the agent never got a grant. Undo it.
                    warn!(lease = %id, "lease never granted before a restart; aborting it");
                    state.quota.settle(&lease.active.agent, &id, 0);
                    state.orphans.push(lease.workload.clone());
                    record::delete_provider(&mut batch, &id);
                    touched.push(lease.active.agent);
                }
                Phase::Running => {
                    tunnels.restore(
                        &id,
                        crate::tunnel::Traffic {
                            to_workload: lease.usage.tunnel_in_bytes,
                            from_workload: lease.usage.tunnel_out_bytes,
                            streams: 0,
                        },
                    );
                    state.admission.restore(lease.active.clone());
                    state.restored.insert(id);
                    state.leases.insert(id, lease);
                }
                Phase::Ended { .. } => {
                    state.leases.insert(id, lease);
                }
            }
        }
        for agent in touched {
            record::put_account(&mut batch, &agent, state.quota.account(&agent));
        }
        for (lease, until) in record::load_refused(store.as_ref())? {
            if until > now {
                state.refused.insert(lease, until);
            } else {
                record::delete_refused(&mut batch, &lease);
            }
        }
        store.write(batch).map_err(RecordError::from)?;
        let running = state
            .leases
            .values()
            .filter(|l| l.phase == Phase::Running)
            .count();
        if running > 0 {
            info!(leases = running, "leases restored");
        }
        Ok(Self {
            identity,
            store,
            supervisor,
            judge,
            settings,
            state: Mutex::new(state),
            metrics: crate::metrics::NodeMetrics::default(),
            tunnels,
            revocations: tokio::sync::watch::channel(0).0,
            ledger: None,
            quota: None,
        })
    }

    /// Records every grant and final receipt in `ledger` (see [`Provider::ledger_facts`]).
    #[must_use]
    pub fn with_ledger(mut self, ledger: Option<Arc<crate::ledger::Ledger>>) -> Self {
        self.ledger = ledger;
        self
    }

    /// Appends `fact` about `lease` to the ledger, if there is one. A failure is logged:
    /// the daemon records what the ledger lacks again later (see
    /// [`Provider::ledger_facts`]).
    async fn log_fact(&self, lease: &LeaseId, fact: Fact) {
        let Some(ledger) = &self.ledger else {
            return;
        };
        if let Err(e) = ledger.record(fact).await {
            warn!(lease = %lease, error = %e, "cannot record the lease in the ledger; retried later");
        }
    }

    /// The evidence of this provider's leases: each granted lease's grant and each ended
    /// lease's final receipt, with the agent's acknowledgement once it sent one.
    pub fn ledger_facts(&self) -> Vec<Fact> {
        let st = self.state();
        let mut facts = Vec::new();
        for l in st.leases.values() {
            if let Some(grant) = &l.grant {
                facts.push(Fact::Lease(grant.clone()));
            }
            if let (Phase::Ended { .. }, Some(receipt)) = (&l.phase, &l.receipt)
                && receipt.body().ended.is_some()
            {
                facts.push(Fact::Usage(UsageFact {
                    receipt: receipt.clone(),
                    ack: l.ack.clone(),
                }));
            }
        }
        facts
    }

    /// The per-lease tunnel byte counters the tunnel endpoint adds to and receipts count.
    pub fn tunnel_meter(&self) -> crate::tunnel::Meter {
        self.tunnels.clone()
    }

    /// Admits leases against the quota committee's lock certificates (and settles them
    /// there) instead of the local quota book, when `quota` is set.
    #[must_use]
    pub fn with_quota(mut self, quota: Option<Arc<crate::committee::Quota>>) -> Self {
        self.quota = quota;
        self
    }

    /// Counts outcomes in `metrics` (`agora_leases_total{role="provider"}`).
    #[must_use]
    pub fn with_metrics(mut self, metrics: crate::metrics::NodeMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// This provider's id.
    pub fn id(&self) -> AgoraId {
        self.identity.agora_id()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records an offer this provider signed: requests may name it (admission honours the
    /// latest few) and grants list its tunnel endpoints.
    pub fn offer_published(&self, offer: &Signed<Offer>) {
        let mut st = self.state();
        st.endpoints.clone_from(&offer.body().tunnel_endpoints);
        st.admission.offer_published(offer.clone());
    }

    /// Writes a lease's record (or its removal) and its agent's quota account, atomically.
    fn persist(&self, st: &State, lease: &LeaseId, agent: &AgoraId) {
        let mut batch = WriteBatch::new();
        match st.leases.get(lease) {
            Some(l) => record::put_provider(&mut batch, l),
            None => record::delete_provider(&mut batch, lease),
        }
        record::put_account(&mut batch, agent, st.quota.account(agent));
        if let Err(e) = self.store.write(batch) {
            warn!(lease = %lease, error = %e, "cannot store lease state");
        }
    }

    /// Answers one request from a gateway.
    pub async fn handle(&self, request: &rpc::Request, now: Timestamp) -> rpc::Response {
        match request {
            rpc::Request::Propose(p) => self.propose(p, now).await,
            rpc::Request::Operate(op) => self.operate(op, now).await,
            rpc::Request::Query(id) => self.query(id),
            rpc::Request::Extend { op, top_up } => match op.body().op {
                Op::Extend { secs } => answer(
                    &op.body().lease,
                    self.extend(op, secs, Paid::TopUp(top_up), now),
                ),
                _ => rpc::Response::Refused(refusal(
                    RefusalCode::Invalid,
                    "a top-up certificate comes with an extend operation only",
                )),
            },
            rpc::Request::ApprovedExtend { op, approval } => match op.body().op {
                Op::Extend { secs } => answer(
                    &op.body().lease,
                    self.extend(op, secs, Paid::Approved(approval), now),
                ),
                _ => rpc::Response::Refused(refusal(
                    RefusalCode::Invalid,
                    "an owner's approval comes with an extend operation only",
                )),
            },
        }
    }

    fn refuse(
        &self,
        request: LeaseId,
        agent: AgoraId,
        r: Refusal,
        now: Timestamp,
    ) -> rpc::Response {
        debug!(lease = %request, code = %r.code, detail = %r.detail, "lease refused");
        self.metrics.lease("provider", r.code.as_str());
        let signed = Signed::sign(
            LeaseRefusal {
                request,
                agent,
                provider: self.id(),
                refusal: r.clone(),
                at: now,
            },
            self.identity.as_ref(),
        );
        match signed {
            Ok(s) => rpc::Response::Answer(LeaseAnswer::Refused(s)),
            Err(_) => rpc::Response::Refused(r),
        }
    }

    /// Refuses a proposal. Under a quota committee a signed refusal is what releases the
    /// agent's lock for the request at this provider (`committee::Release`), so that a
    /// gateway failing over does not leave the quota held until the lock lapses. The
    /// provider therefore first remembers (in the store) that it never grants this request,
    /// until the request is past its freshness window. A `replay` refusal releases nothing
    /// (it says the request was seen before, perhaps granted), so it is signed as it is;
    /// any other refusal of a request this provider holds a lease for would be a bug, and
    /// goes unsigned. When it cannot remember (the store failed, or [`MAX_REFUSED`] are
    /// remembered already) the refusal goes unsigned too: the gateway fails over all the
    /// same and the lock lapses instead.
    fn refuse_proposal(
        &self,
        id: LeaseId,
        req: &agora_protocol::lease::LeaseRequest,
        r: Refusal,
        now: Timestamp,
    ) -> rpc::Response {
        if self.quota.is_some() && r.code != RefusalCode::Replay {
            let mut st = self.state();
            if st.leases.contains_key(&id) {
                warn!(lease = %id, code = %r.code, "a refusal of a granted request goes unsigned");
                return rpc::Response::Refused(r);
            }
            let max_age = st.admission.config().max_age;
            let mut batch = WriteBatch::new();
            // Forget the lapsed ones now and then (a scan of the map), not at every refusal.
            if st.refused.len() % 1024 == 1023 || st.refused.len() >= MAX_REFUSED {
                st.refused.retain(|lease, until| {
                    let keep = *until > now;
                    if !keep {
                        record::delete_refused(&mut batch, lease);
                    }
                    keep
                });
            }
            if st.refused.len() >= MAX_REFUSED {
                warn!(lease = %id, "too many refusals remembered; this one goes unsigned");
                let _ = self.store.write(batch);
                return rpc::Response::Refused(r);
            }
            let until = req.issued_at.max(now).saturating_add(max_age);
            record::put_refused(&mut batch, &id, until);
            if let Err(e) = self.store.write(batch) {
                warn!(lease = %id, error = %e, "cannot remember a refusal; it goes unsigned");
                return rpc::Response::Refused(r);
            }
            st.refused.insert(id, until);
        }
        self.refuse(id, req.agent, r, now)
    }

    /// Judges a lease proposal; on admission, launches the workload and signs the grant.
    pub async fn propose(&self, proposal: &LeaseProposal, now: Timestamp) -> rpc::Response {
        let req = proposal.request.body();
        let id = proposal.request.digest();
        let active = match self.admit(proposal, now) {
            Ok(a) => a,
            Err(r) => return self.refuse_proposal(id, req, r, now),
        };
        let workload = workload_id(&id);
        let launched = self
            .supervisor
            .launch(workload.clone(), req.isolation, req.spec.clone(), now)
            .await;
        if let Err(e) = launched {
            let code = match &e {
                SupervisorError::NoRuntime(_) => RefusalCode::Unsupported,
                SupervisorError::Runtime(r) if r.is_client_error() => RefusalCode::Unsupported,
                _ => RefusalCode::Unavailable,
            };
            warn!(lease = %id, error = %e, "workload could not start; lease aborted");
            self.abort(&id, &req.agent, now);
            return self.refuse_proposal(
                id,
                req,
                refusal(code, format!("the workload could not start: {e}")),
                now,
            );
        }
        match self.grant(&active) {
            Ok(grant) => {
                self.metrics.lease("provider", "granted");
                info!(lease = %id, agent = %req.agent, workload = %workload, price = active.price_per_sec, "lease granted");
                self.log_fact(&id, Fact::Lease(grant.clone())).await;
                rpc::Response::Answer(LeaseAnswer::Granted(grant))
            }
            Err(r) => {
                let _ = self
                    .supervisor
                    .stop(
                        &workload,
                        TerminationReason::RuntimeError {
                            detail: r.detail.clone(),
                        },
                        now,
                    )
                    .await;
                self.abort(&id, &req.agent, now);
                self.refuse_proposal(id, req, r, now)
            }
        }
    }

    /// Standing, admission and quota: the lease is recorded as starting, capacity and quota
    /// held.
    fn admit(&self, proposal: &LeaseProposal, now: Timestamp) -> Result<ActiveLease, Refusal> {
        let req = proposal.request.body();
        let id = proposal.request.digest();
        let standing = (self.judge)(&req.signup, now)?;
        // The lock certificate's votes are checked before the state is locked.
        let lock = self.quota.as_ref().map(|quota| {
            proposal.lock.clone().map(|unchecked| {
                unchecked
                    .verify(quota.committee(), &agora_protocol::Ed25519)
                    .map_err(|e| {
                        refusal(
                            RefusalCode::Quota,
                            format!("the lock certificate does not verify: {e}"),
                        )
                    })
            })
        });
        let mut st = self.state();
        if st.leases.contains_key(&id) {
            return Err(refusal(
                RefusalCode::Replay,
                format!("request {id} was seen before"),
            ));
        }
        if st.refused.get(&id).is_some_and(|until| *until > now) {
            return Err(refusal(
                RefusalCode::Replay,
                format!("request {id} was refused before; sign a new request"),
            ));
        }
        let q = match st.admission.request(proposal, &standing, now) {
            Decision::Refused(r) => return Err(r),
            Decision::NeedQuota(q) => q,
        };
        let answer = match (&self.quota, lock) {
            (Some(_), Some(Some(Err(r)))) => QuotaAnswer::Denied(r),
            (Some(quota), Some(lock)) => {
                let lock = lock.and_then(Result::ok);
                let answer = agora_protocol::committee::quota_answer(
                    lock.as_ref(),
                    quota.committee(),
                    &q,
                    &self.id(),
                    LOCK_MARGIN,
                );
                if let (QuotaAnswer::Granted, Some(lock)) = (&answer, &lock)
                    && let Err(e) = quota.state().put_lock(&id, lock)
                {
                    warn!(lease = %id, error = %e, "cannot keep the lock certificate");
                }
                answer
            }
            _ => st.quota.lock(&q),
        };
        let active = st.admission.quota_answer(&q.lease, answer, now)?;
        st.leases.insert(
            id,
            ProviderLease {
                active: active.clone(),
                workload: workload_id(&id),
                phase: Phase::Starting,
                grant: None,
                receipt: None,
                usage: Usage {
                    sampled_at: active.starts_at,
                    ..Usage::default()
                },
                revoked_grants: Vec::new(),
                ack: None,
            },
        );
        self.persist(&st, &id, &req.agent);
        Ok(active)
    }

    fn abort(&self, id: &LeaseId, agent: &AgoraId, now: Timestamp) {
        let mut st = self.state();
        st.admission.abort(id, now);
        st.quota.settle(agent, id, 0);
        st.leases.remove(id);
        self.persist(&st, id, agent);
    }

    fn sign_grant(
        &self,
        active: &ActiveLease,
        endpoints: Vec<String>,
    ) -> Result<Signed<LeaseGrant>, Refusal> {
        let provider = self.id();
        let sign_err = |e: agora_protocol::EncodeError| {
            refusal(
                RefusalCode::Unavailable,
                format!("cannot sign the grant: {e}"),
            )
        };
        let token = Signed::sign(
            Capability {
                lease: active.lease,
                agent: active.agent,
                provider,
                ports: active.ports.clone(),
                expires_at: active.expires_at,
            },
            self.identity.as_ref(),
        )
        .map_err(sign_err)?;
        Signed::sign(
            LeaseGrant {
                owner: active.owner,
                lease: active.lease,
                agent: active.agent,
                provider,
                price_per_sec: active.price_per_sec,
                reserved_micro: active.reserved_micro,
                starts_at: active.starts_at,
                expires_at: active.expires_at,
                tunnel_endpoints: endpoints,
                token,
            },
            self.identity.as_ref(),
        )
        .map_err(sign_err)
    }

    /// Signs the grant of a launched lease and records it as running.
    fn grant(&self, active: &ActiveLease) -> Result<Signed<LeaseGrant>, Refusal> {
        let mut st = self.state();
        let endpoints = st.endpoints.clone();
        // The lease may have been extended while it launched (not possible before a grant,
        // but the record is the truth): sign what the record holds.
        let current = st
            .leases
            .get(&active.lease)
            .map_or_else(|| active.clone(), |l| l.active.clone());
        let grant = self.sign_grant(&current, endpoints)?;
        if let Some(l) = st.leases.get_mut(&active.lease) {
            l.grant = Some(grant.clone());
            if l.phase == Phase::Starting {
                l.phase = Phase::Running;
            }
        }
        self.persist(&st, &active.lease, &active.agent);
        Ok(grant)
    }

    /// Checks an agent's operation on a lease that runs: signature owner, freshness, replay
    /// (see [`Admission::check_op`]).
    fn check_running(
        &self,
        st: &mut State,
        op: &Signed<LeaseOp>,
        now: Timestamp,
    ) -> Result<Authorized, Refusal> {
        self.check_running_with(st, op, None, now)
    }

    /// [`Provider::check_running`] for an operation back with its owner's `approval` (see
    /// [`agora_protocol::admission::Admission::check_op_approved`]).
    fn check_running_with(
        &self,
        st: &mut State,
        op: &Signed<LeaseOp>,
        approval: Option<&Signed<Approval>>,
        now: Timestamp,
    ) -> Result<Authorized, Refusal> {
        let body = op.body();
        match st.leases.get(&body.lease).map(|l| &l.phase) {
            Some(Phase::Ended { .. }) => {
                return Err(refusal(
                    RefusalCode::Ended,
                    format!("lease {} has ended", body.lease),
                ));
            }
            Some(Phase::Starting) => {
                return Err(refusal(
                    RefusalCode::Unavailable,
                    "the lease is still starting",
                ));
            }
            _ => {}
        }
        if st.restored.contains(&body.lease) && body.issued_at < st.opened_at {
            // Its nonce may have been used before the restart: it cannot be told from a replay.
            return Err(refusal(
                RefusalCode::Stale,
                format!(
                    "signed at {}, before the provider restarted at {}; sign it again",
                    body.issued_at, st.opened_at
                ),
            ));
        }
        let lease = st.admission.check_op_approved(op, approval, now)?.clone();
        let workload = st
            .leases
            .get(&body.lease)
            .map_or_else(|| workload_id(&body.lease), |l| l.workload.clone());
        Ok(Authorized { lease, workload })
    }

    /// Checks an agent-signed operation on a running lease and names its workload: what a
    /// streamed operation (exec, logs, files) runs before touching the workload. The
    /// operation's nonce is consumed.
    ///
    /// # Errors
    /// The [`Refusal`] to send back (unknown lease, ended, not the agent's, stale, replayed).
    pub fn authorize(&self, op: &Signed<LeaseOp>, now: Timestamp) -> Result<Authorized, Refusal> {
        let mut st = self.state();
        self.check_running(&mut st, op, now)
    }

    /// The runtime running `workload`, for a streamed operation already authorized.
    ///
    /// # Errors
    /// The [`Refusal`] to send back when the workload is gone.
    pub fn runtime_of(
        &self,
        workload: &WorkloadId,
    ) -> Result<Arc<dyn crate::runtime::Runtime>, Refusal> {
        let record = self
            .supervisor
            .record(workload)
            .ok_or_else(|| refusal(RefusalCode::Ended, "the lease's workload is gone"))?;
        self.supervisor
            .runtime(record.isolation)
            .cloned()
            .map_err(|e| refusal(RefusalCode::Unavailable, e.to_string()))
    }

    /// The workload of `lease` if it runs here and is not past its expiry at `now`: what a
    /// tunnel stream may reach (checked again while the stream is piped).
    pub fn live_workload(&self, lease: &LeaseId, now: Timestamp) -> Option<WorkloadId> {
        self.state()
            .leases
            .get(lease)
            .filter(|l| l.phase == Phase::Running && now < l.active.expires_at)
            .map(|l| l.workload.clone())
    }

    /// Counts a streamed operation's traffic as the workload's activity (idle timeout).
    pub fn touch(&self, workload: &WorkloadId, now: Timestamp) {
        self.supervisor.touch(workload, now);
    }

    /// For an operation on an ended lease: whether it is the agent's (status and stop of an
    /// ended lease answer its final state).
    fn ended_lease_of(&self, st: &State, op: &LeaseOp) -> Option<Result<(), Refusal>> {
        let l = st.leases.get(&op.lease)?;
        if !matches!(l.phase, Phase::Ended { .. }) {
            return None;
        }
        Some(if op.provider != self.id() {
            Err(refusal(
                RefusalCode::Invalid,
                "the operation names another provider",
            ))
        } else if l.active.agent != op.agent {
            Err(refusal(RefusalCode::Unauthorized, "not the lease's agent"))
        } else {
            Ok(())
        })
    }

    /// Performs an agent-signed operation that answers at once (status, extend, stop).
    pub async fn operate(&self, op: &Signed<LeaseOp>, now: Timestamp) -> rpc::Response {
        let body = op.body();
        let result = match &body.op {
            Op::Status => self.status_op(op, now),
            Op::Extend { secs } => self.extend(op, *secs, Paid::Quota, now),
            Op::Stop => self.stop(op, now).await,
            Op::Exec { .. } | Op::Logs { .. } | Op::PutFiles { .. } | Op::GetFiles { .. } => {
                Err(refusal(
                    RefusalCode::Unsupported,
                    "exec, logs and files are streamed operations, not answered here",
                ))
            }
            Op::Relay => Err(refusal(
                RefusalCode::Unsupported,
                "a relay is asked of a gateway node, not of the provider",
            )),
            Op::RevokeGrant { grant } => self.revoke_grant(op, *grant, now),
            Op::Acknowledge { ack } => self.acknowledge(op, ack, now).await,
        };
        answer(&body.lease, result)
    }

    fn status_op(&self, op: &Signed<LeaseOp>, now: Timestamp) -> Result<LeaseStatus, Refusal> {
        let mut st = self.state();
        match self.ended_lease_of(&st, op.body()) {
            Some(r) => r?,
            None => {
                self.check_running(&mut st, op, now)?;
            }
        }
        status_of(&st, &op.body().lease)
    }

    /// Extends a running lease by `secs`: paid from the local quota book (above the
    /// agent's limit, with its owner's approval of this very operation), or under a quota
    /// committee by the agent's `top_up` lock, which must cover the extension's cost until
    /// the new end (plus [`LOCK_MARGIN`]) over exactly what the lease's kept locks hold.
    fn extend(
        &self,
        op: &Signed<LeaseOp>,
        secs: u64,
        paid: Paid<'_>,
        now: Timestamp,
    ) -> Result<LeaseStatus, Refusal> {
        // The top-up's votes are checked before the state is locked.
        let (top_up, approval) = match (&self.quota, paid) {
            (Some(quota), Paid::TopUp(unchecked)) => (
                Some((
                    quota,
                    unchecked
                        .clone()
                        .verify(quota.committee(), &agora_protocol::Ed25519)
                        .map_err(|e| {
                            refusal(
                                RefusalCode::Quota,
                                format!("the top-up certificate does not verify: {e}"),
                            )
                        })?,
                )),
                None,
            ),
            (Some(_), Paid::Quota | Paid::Approved(_)) => {
                return Err(refusal(
                    RefusalCode::Quota,
                    "with a quota committee an extension needs the committee's certificate of \
                     the agent's top-up lock paying for it (`agora agent extend` makes one; \
                     above the balance the committee certifies it under the owner's approval)",
                ));
            }
            (None, Paid::TopUp(_)) => {
                return Err(refusal(
                    RefusalCode::Invalid,
                    "this provider has no quota committee: extend without a top-up",
                ));
            }
            (None, Paid::Quota) => (None, None),
            (None, Paid::Approved(approval)) => (None, Some(approval)),
        };
        let mut st = self.state();
        let auth = self.check_running_with(&mut st, op, approval, now)?;
        let id = auth.lease.lease;
        let (extra, expires_at) = st.admission.extension(&id, secs)?;
        match &top_up {
            Some((quota, cert)) => {
                let unavailable = |e: crate::committee::StateError| {
                    refusal(
                        RefusalCode::Unavailable,
                        format!("cannot read or keep the lease's locks: {e}"),
                    )
                };
                let held = quota.held_for(&id).map_err(unavailable)?;
                let cover = agora_protocol::committee::Cover {
                    agent: auth.lease.agent,
                    lease: id,
                    provider: self.id(),
                    amount_micro: extra,
                    until: expires_at.saturating_add(LOCK_MARGIN),
                };
                agora_protocol::committee::check_top_up(cert, quota.committee(), &cover, held)
                    .map_err(|e| {
                        refusal(
                            RefusalCode::Quota,
                            format!("top-up certificate refused: {e}"),
                        )
                    })?;
                // Kept before the lease is extended: it is what the extension is paid from.
                quota.state().put_lock(&id, cert).map_err(unavailable)?;
            }
            None => {
                let extension = agora_protocol::quota::QuotaRequest {
                    lease: id,
                    agent: auth.lease.agent,
                    amount_micro: extra,
                    limit_micro: auth.lease.tier.spending_limit_micro(),
                    approved_micro: approval.map(|a| a.body().max_cost_micro),
                    has_owner: auth.lease.owner.is_some(),
                    expires_at,
                };
                if let QuotaAnswer::Denied(r) = st.quota.grow(&extension) {
                    if matches!(
                        r.code,
                        RefusalCode::ApprovalRequired | RefusalCode::ApprovalInvalid
                    ) {
                        // It may come back with (another) approval of the owner's, nonce
                        // and all.
                        st.admission.forget_op(op.body());
                    }
                    return Err(r);
                }
            }
        }
        let active = st
            .admission
            .extended(&id, extra, expires_at)
            .cloned()
            .ok_or_else(|| refusal(RefusalCode::UnknownLease, "the lease ended meanwhile"))?;
        let grant = self.sign_grant(&active, st.endpoints.clone())?;
        if let Err(e) = self.supervisor.extend(&auth.workload, active.expires_at) {
            warn!(lease = %id, error = %e, "cannot extend the workload's lifetime");
        }
        if let Some(l) = st.leases.get_mut(&id) {
            l.active = active.clone();
            l.grant = Some(grant);
        }
        self.persist(&st, &id, &active.agent);
        info!(lease = %id, secs, expires_at = %active.expires_at, "lease extended");
        status_of(&st, &id)
    }

    async fn stop(&self, op: &Signed<LeaseOp>, now: Timestamp) -> Result<LeaseStatus, Refusal> {
        let id = op.body().lease;
        {
            let mut st = self.state();
            if let Some(r) = self.ended_lease_of(&st, op.body()) {
                r?;
                return status_of(&st, &id);
            }
            self.check_running(&mut st, op, now)?;
        }
        self.finish(&id, TerminationReason::StoppedByAgent, now)
            .await;
        status_of(&self.state(), &id)
    }

    /// Records the agent's acknowledgement of an ended lease's final receipt: kept with the
    /// lease record (its status shows it) and appended to the ledger as the receipt's
    /// acknowledged usage fact. The same acknowledgement again answers the status alone;
    /// a different one for a receipt already acknowledged is refused as a replay.
    async fn acknowledge(
        &self,
        op: &Signed<LeaseOp>,
        ack: &Signed<ReceiptAck>,
        now: Timestamp,
    ) -> Result<LeaseStatus, Refusal> {
        let id = op.body().lease;
        let receipt = {
            let mut st = self.state();
            let receipt = self.check_ack(&st, op.body(), ack, now)?;
            let Some(l) = st.leases.get_mut(&id) else {
                return Err(refusal(
                    RefusalCode::UnknownLease,
                    "the lease was forgotten meanwhile",
                ));
            };
            match &l.ack {
                Some(held) if held == ack => return status_of(&st, &id),
                Some(_) => {
                    return Err(refusal(
                        RefusalCode::Replay,
                        "the final receipt was acknowledged before",
                    ));
                }
                None => l.ack = Some(ack.clone()),
            }
            let agent = l.active.agent;
            self.persist(&st, &id, &agent);
            receipt
        };
        info!(lease = %id, receipt = %receipt.digest(), "final receipt acknowledged by the agent");
        self.log_fact(
            &id,
            Fact::Usage(UsageFact {
                receipt,
                ack: Some(ack.clone()),
            }),
        )
        .await;
        status_of(&self.state(), &id)
    }

    /// Checks an acknowledgement against the lease it names: an ended lease of this
    /// provider, the operation's agent, its delegate allowed to stop it, the final receipt
    /// this provider signed, signed no later than the freshness window from now. Returns
    /// that receipt.
    fn check_ack(
        &self,
        st: &State,
        op: &LeaseOp,
        ack: &Signed<ReceiptAck>,
        now: Timestamp,
    ) -> Result<Signed<agora_protocol::lease::UsageReceipt>, Refusal> {
        let Some(l) = st.leases.get(&op.lease) else {
            return Err(refusal(
                RefusalCode::UnknownLease,
                format!(
                    "no lease {} here (or it ended longer ago than it is kept)",
                    op.lease
                ),
            ));
        };
        match self.ended_lease_of(st, op) {
            Some(r) => r?,
            None => {
                return Err(refusal(
                    RefusalCode::Invalid,
                    "only the final receipt of an ended lease is acknowledged: stop it first",
                ));
            }
        }
        if let Some(d) = &op.delegation
            && !d.body().allows(op.op.kind(), now)
        {
            return Err(refusal(
                RefusalCode::Unauthorized,
                format!("the delegation does not allow {:?} now", op.op.kind()),
            ));
        }
        let a = ack.body();
        if a.agent != l.active.agent {
            return Err(refusal(
                RefusalCode::Unauthorized,
                "not the lease's agent's acknowledgement",
            ));
        }
        let receipt = l
            .receipt
            .clone()
            .filter(|r| r.body().ended.is_some())
            .ok_or_else(|| refusal(RefusalCode::Unavailable, "the lease has no final receipt"))?;
        if a.receipt != receipt.digest() {
            return Err(refusal(
                RefusalCode::Invalid,
                format!(
                    "acknowledges receipt {}, not the lease's final receipt {}",
                    a.receipt,
                    receipt.digest()
                ),
            ));
        }
        if a.acked_at > now.saturating_add(ACK_MAX_AHEAD) {
            return Err(refusal(
                RefusalCode::Stale,
                format!("signed at {}, in the future", a.acked_at),
            ));
        }
        Ok(receipt)
    }

    /// Revokes one of the owner's service grants on a running lease: refused from now on,
    /// its live tunnel streams cut at once (they watch [`Provider::revocations`]).
    fn revoke_grant(
        &self,
        op: &Signed<LeaseOp>,
        grant: GrantId,
        now: Timestamp,
    ) -> Result<LeaseStatus, Refusal> {
        let mut st = self.state();
        let auth = self.check_running(&mut st, op, now)?;
        let id = auth.lease.lease;
        let Some(l) = st.leases.get_mut(&id) else {
            return Err(refusal(
                RefusalCode::UnknownLease,
                "the lease ended meanwhile",
            ));
        };
        if !l.revoked_grants.contains(&grant) {
            if l.revoked_grants.len() >= MAX_REVOKED_GRANTS {
                return Err(refusal(
                    RefusalCode::Policy,
                    format!("lease {id} has {MAX_REVOKED_GRANTS} revoked grants already"),
                ));
            }
            l.revoked_grants.push(grant);
        }
        self.persist(&st, &id, &auth.lease.agent);
        self.revocations.send_modify(|n| *n = n.wrapping_add(1));
        info!(lease = %id, grant = %grant, "service grant revoked");
        status_of(&st, &id)
    }

    /// Whether the owner of `lease` revoked `grant`.
    pub fn grant_revoked(&self, lease: &LeaseId, grant: &GrantId) -> bool {
        self.state()
            .leases
            .get(lease)
            .is_some_and(|l| l.revoked_grants.contains(grant))
    }

    /// Changes at every grant revocation (see [`Provider::grant_revoked`]).
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// The state of a lease (read-only).
    pub fn query(&self, id: &LeaseId) -> rpc::Response {
        match status_of(&self.state(), id) {
            Ok(s) => rpc::Response::Status(Box::new(s)),
            Err(r) => rpc::Response::Refused(r),
        }
    }

    /// Samples a running workload's statistics and tunnel traffic into its lease's usage
    /// (the traffic even when the runtime no longer answers for the workload). Returns
    /// whether the tunnel counts moved.
    async fn sample(&self, id: &LeaseId, now: Timestamp) -> bool {
        let Some((workload, isolation)) = self
            .state()
            .leases
            .get(id)
            .map(|l| (l.workload.clone(), l.active.isolation))
        else {
            return false;
        };
        let traffic = self.tunnels.traffic(id);
        let runtime = self.supervisor.runtime(isolation).ok().cloned();
        let on_interfaces = runtime
            .as_ref()
            .is_some_and(|r| r.connect_counted_in_stats());
        let stats = match &runtime {
            Some(r) => r.stats(&workload).await.ok(),
            None => None,
        };
        let mut st = self.state();
        let Some(l) = st.leases.get_mut(id) else {
            return false;
        };
        let moved = meter::fold_tunnels(&mut l.usage, &traffic, on_interfaces);
        if let Some(stats) = stats {
            meter::sample(&mut l.usage, &stats, now);
        }
        moved
    }

    /// Ends a lease: stops its workload (if it still runs) for `reason`, frees its capacity,
    /// settles its quota with what it cost and signs the final receipt.
    async fn finish(&self, id: &LeaseId, reason: TerminationReason, now: Timestamp) {
        let workload = match self.state().leases.get(id) {
            Some(l) if l.phase == Phase::Running => l.workload.clone(),
            _ => return,
        };
        self.sample(id, now).await;
        let reason = match self.supervisor.stop(&workload, reason.clone(), now).await {
            Ok(r) => r,
            Err(e) => {
                debug!(lease = %id, error = %e, "workload already gone");
                reason
            }
        };
        let Some(receipt) = self.end(id, reason, now) else {
            return;
        };
        if let Some(quota) = &self.quota {
            quota.settle(*id, receipt.clone());
        }
        self.log_fact(id, Fact::Usage(UsageFact { receipt, ack: None }))
            .await;
    }

    /// The synchronous part of [`Provider::finish`] (no lock held across an await): frees
    /// the capacity, settles the quota, signs and stores the final receipt; returns it.
    fn end(
        &self,
        id: &LeaseId,
        reason: TerminationReason,
        now: Timestamp,
    ) -> Option<Signed<agora_protocol::lease::UsageReceipt>> {
        let mut st = self.state();
        let provider = self.id();
        let l = st.leases.get(id)?;
        if l.phase != Phase::Running {
            return None;
        }
        let agent = l.active.agent;
        let cost = l.active.cost_until(now);
        st.admission.end(id, now);
        let settled = st.quota.settle(&agent, id, cost);
        if let Some(l) = st.leases.get_mut(id) {
            // Bytes piped while the workload was being stopped count too.
            let on_interfaces = l.usage.tunnels_on_interfaces;
            meter::fold_tunnels(&mut l.usage, &self.tunnels.traffic(id), on_interfaces);
            let body = meter::receipt(l, provider, now, Some(reason.clone()));
            match Signed::sign(body, self.identity.as_ref()) {
                Ok(r) => l.receipt = Some(r),
                Err(e) => warn!(lease = %id, error = %e, "cannot sign the final receipt"),
            }
            l.phase = Phase::Ended {
                reason: reason.clone(),
                at: now,
            };
        }
        // The final receipt counts the tunnels' bytes: nothing more is billed.
        self.tunnels.forget(id);
        self.persist(&st, id, &agent);
        info!(
            lease = %id,
            reason = reason.code(),
            charged = settled.map_or(0, |s| s.charged_micro),
            "lease ended"
        );
        st.leases.get(id).and_then(|l| l.receipt.clone())
    }

    /// One pass of housekeeping at `now`; see the module docs. Call it every second.
    pub async fn tick(&self, now: Timestamp) {
        let orphans = std::mem::take(&mut self.state().orphans);
        for w in orphans {
            let reason = TerminationReason::RuntimeError {
                detail: "the lease was never granted (provider restarted)".into(),
            };
            if let Err(e) = self.supervisor.stop(&w, reason, now).await {
                debug!(workload = %w, error = %e, "orphaned lease workload already gone");
            }
        }
        // Workloads that ended by themselves (or were reaped: idle, lifetime).
        let running: Vec<(LeaseId, WorkloadId)> = self
            .state()
            .leases
            .values()
            .filter(|l| l.phase == Phase::Running)
            .map(|l| (l.active.lease, l.workload.clone()))
            .collect();
        for (id, workload) in &running {
            let ended = match self.supervisor.record(workload) {
                Some(r) => r.ended.map(|(reason, _)| reason),
                None => Some(TerminationReason::RuntimeError {
                    detail: "the workload's record is gone".into(),
                }),
            };
            if let Some(reason) = ended {
                self.finish(id, reason, now).await;
            }
        }
        let expired = self.state().admission.tick(now);
        for id in expired {
            self.finish(&id, TerminationReason::LifetimeExpired, now)
                .await;
        }
        let lapsed = self.state().quota.expire(now);
        if !lapsed.is_empty() {
            let st = self.state();
            for (agent, lease) in &lapsed {
                debug!(lease = %lease, "quota lock lapsed");
                self.persist(&st, lease, agent);
            }
        }
        self.meter(now).await;
        self.forget_ended(now);
    }

    /// Samples usage and signs the periodic receipts that are due.
    async fn meter(&self, now: Timestamp) {
        let due: Vec<LeaseId> = self
            .state()
            .leases
            .values()
            .filter(|l| {
                l.phase == Phase::Running
                    && (now.saturating_duration_since(l.usage.sampled_at) >= SAMPLE_INTERVAL
                        || meter::next_receipt_at(l, self.settings.receipt_interval) <= now)
            })
            .map(|l| l.active.lease)
            .collect();
        for id in due {
            let moved = self.sample(&id, now).await;
            let mut st = self.state();
            let provider = self.id();
            let Some(l) = st.leases.get_mut(&id) else {
                continue;
            };
            if l.phase != Phase::Running
                || meter::next_receipt_at(l, self.settings.receipt_interval) > now
            {
                // Tunnel bytes live in memory only: written with each move, a crash loses
                // at most one sampling period of them (the runtime keeps its own counters).
                if moved && l.phase == Phase::Running {
                    let agent = l.active.agent;
                    self.persist(&st, &id, &agent);
                }
                continue;
            }
            let body = meter::receipt(l, provider, now, None);
            match Signed::sign(body, self.identity.as_ref()) {
                Ok(r) => {
                    debug!(lease = %id, seq = r.body().seq, "usage receipt signed");
                    l.receipt = Some(r);
                }
                Err(e) => warn!(lease = %id, error = %e, "cannot sign a receipt"),
            }
            let agent = l.active.agent;
            self.persist(&st, &id, &agent);
        }
    }

    fn forget_ended(&self, now: Timestamp) {
        let retention = self.settings.retention;
        let mut st = self.state();
        let old: Vec<(LeaseId, AgoraId)> = st
            .leases
            .values()
            .filter(|l| match &l.phase {
                Phase::Ended { at, .. } => now.saturating_duration_since(*at) >= retention,
                _ => false,
            })
            .map(|l| (l.active.lease, l.active.agent))
            .collect();
        for (id, agent) in old {
            st.leases.remove(&id);
            // Bytes a stream piped in the second before it saw the lease end.
            self.tunnels.forget(&id);
            self.persist(&st, &id, &agent);
        }
    }

    /// Runs [`Provider::tick`] every `period` until `shutdown` fires.
    pub async fn run(
        self: Arc<Self>,
        period: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => self.tick(crate::clock::now()).await,
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Leases this provider holds (running and recently ended), for listings.
    pub fn leases(&self) -> Vec<ProviderLease> {
        self.state().leases.values().cloned().collect()
    }

    /// One lease.
    pub fn lease(&self, id: &LeaseId) -> Option<ProviderLease> {
        self.state().leases.get(id).cloned()
    }

    /// The quota account of `agent` on this provider.
    pub fn account(&self, agent: &AgoraId) -> Option<agora_protocol::quota::Account> {
        self.state().quota.account(agent).cloned()
    }
}

/// An operation's result as the provider's answer.
fn answer(lease: &LeaseId, result: Result<LeaseStatus, Refusal>) -> rpc::Response {
    match result {
        Ok(status) => rpc::Response::Status(Box::new(status)),
        Err(r) => {
            debug!(%lease, code = %r.code, "operation refused");
            rpc::Response::Refused(r)
        }
    }
}

fn status_of(st: &State, id: &LeaseId) -> Result<LeaseStatus, Refusal> {
    let l = st
        .leases
        .get(id)
        .ok_or_else(|| refusal(RefusalCode::UnknownLease, format!("no lease {id} here")))?;
    let grant = l
        .grant
        .clone()
        .ok_or_else(|| refusal(RefusalCode::Unavailable, "the lease is still starting"))?;
    Ok(LeaseStatus {
        lease: *id,
        state: l.state(),
        grant,
        receipt: l.receipt.clone(),
        ack: l.ack.clone(),
    })
}

/// What pays for an extension.
#[derive(Clone, Copy)]
enum Paid<'a> {
    /// The local quota book, within the agent's limit.
    Quota,
    /// The local quota book, above the limit under the owner's approval of the operation.
    Approved(&'a Signed<Approval>),
    /// The committee's certificate of the agent's top-up lock.
    TopUp(&'a agora_protocol::committee::UncheckedCertificate),
}

#[cfg(test)]
#[path = "provider_tests.rs"]
mod tests;

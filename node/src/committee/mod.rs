//! The quota committee in the node: the validator driver, the client that certifies ops,
//! and the tasks around them (dissemination, unlocking lapsed locks).
//!
//! ```text
//! /agora/quota/1 inbound ─▶ Quota::handle(bytes)
//!   Vote(request)   ─▶ Validator::handle_request ─Persist─▶ store (one batch, synced) ─▶ release ─▶ Vote
//!   Certified(cert) ─▶ Validator::handle_certificate, certificate kept ─▶ Stored
//!   Account(agent)  ─▶ this validator's view (balance, locks, head certificate)
//! Quota::certify(op) ─▶ Aggregator ─▶ Vote requests to every validator (this node locally)
//!   ─▶ Certificate ─▶ kept, sent to every validator (Certified), returned
//! every 30 s (validators): locks past expiry + settle grace ─▶ certify(Unlock)
//! ```
//!
//! A node loads the committee from the genesis file named in its config (`genesis = "…"`);
//! a node whose id the genesis lists is a validator. Without a genesis nothing here runs and
//! providers keep their own quota book. Gateways certify the agent-signed lock of a lease
//! request and attach the certificate to the proposal; providers admit against it
//! ([`agora_protocol::committee::quota_answer`]) and settle the lock with their final usage
//! receipt; signup nodes certify the agent-signed credit or free-tier claim.

use core::time::Duration;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use agora_attest::Identity;
use agora_protocol::committee::{
    Aggregator, AggregatorConfig, Answer, Certificate, Committee, Event, Failure, Op, Outcome,
    Refusal, Request as VoteRequest, Slot, Unlock, Validator,
};
use agora_protocol::quota_rpc::{AccountView, LockView, Request, Response};
use agora_protocol::{AgoraId, Ed25519, Signature, Signer, Timestamp};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::clock;
use crate::daemon::NetCommand;
use crate::daemon::network::QuotaCall;
use crate::store::Store;

pub mod store;

pub use store::{State, StateError};

/// How long one exchange with a validator may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an account query waits for the validators' answers.
pub const ACCOUNT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a validator looks for locks to unlock.
pub const UNLOCK_PERIOD: Duration = Duration::from_secs(30);
/// How long a `Pending` vote (being stored for another request) is waited for.
const PENDING_WAIT: Duration = Duration::from_secs(2);

/// The node's signing key as the committee's [`Signer`].
#[derive(Clone)]
pub struct Key(pub Arc<Identity>);

impl Signer for Key {
    fn id(&self) -> AgoraId {
        self.0.agora_id()
    }
    fn sign(&self, message: &[u8]) -> Signature {
        Signer::sign(self.0.as_ref(), message)
    }
}

/// Why the committee could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The stored state does not load.
    #[error(transparent)]
    State(#[from] StateError),
    /// The validator could not be rebuilt from its records.
    #[error("validator: {0}")]
    Restore(#[from] agora_protocol::committee::RestoreError),
}

/// Why an op was not certified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertifyError {
    /// More than `f` validators refused.
    #[error("refused by the quota committee: {}", describe(.0))]
    Refused(Vec<(AgoraId, Refusal)>),
    /// The deadline passed before a quorum voted.
    #[error("the quota committee did not answer in time ({votes} of {quorum} votes)")]
    TimedOut {
        /// Votes collected.
        votes: usize,
        /// Votes needed.
        quorum: usize,
    },
    /// The network is stopping.
    #[error("the network is stopping")]
    Stopping,
}

impl CertifyError {
    /// The refusals, if any (the first one explains best).
    pub fn refusals(&self) -> &[(AgoraId, Refusal)] {
        match self {
            Self::Refused(r) => r,
            Self::TimedOut { .. } | Self::Stopping => &[],
        }
    }
}

fn describe(refusals: &[(AgoraId, Refusal)]) -> String {
    // The distinct reasons, most validators agree on one.
    let reasons: BTreeSet<String> = refusals.iter().map(|(_, r)| r.to_string()).collect();
    reasons.into_iter().collect::<Vec<_>>().join("; ")
}

/// Why an account view could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no validator answered about the account in time")]
pub struct NoAnswer;

/// The committee as this node takes part in it.
pub struct Quota {
    committee: Committee,
    id: AgoraId,
    identity: Arc<Identity>,
    state: State,
    validator: Option<Mutex<Validator<Key>>>,
    net: mpsc::Sender<NetCommand>,
    aggregator: AggregatorConfig,
}

impl std::fmt::Debug for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quota")
            .field("committee", &self.committee.digest())
            .field("validator", &self.validator.is_some())
            .finish_non_exhaustive()
    }
}

impl Quota {
    /// Sets up the committee for this node: a validator (restored from the store) when the
    /// genesis lists `identity`, a client only otherwise.
    ///
    /// # Errors
    /// [`OpenError`] when stored votes or certificates do not load or restore.
    pub fn open(
        identity: Arc<Identity>,
        committee: Committee,
        store: Arc<dyn Store>,
        net: mpsc::Sender<NetCommand>,
    ) -> Result<Self, OpenError> {
        let id = identity.agora_id();
        let state = State::new(store, committee.clone());
        let validator = if committee.is_member(&id) {
            let (records, certificates) = state.load()?;
            let (votes, certs) = (records.len(), certificates.len());
            let v = Validator::restore(
                committee.clone(),
                Key(identity.clone()),
                records,
                certificates,
            )?;
            info!(votes, certificates = certs, genesis = %committee.digest(), "quota validator restored");
            Some(Mutex::new(v))
        } else {
            info!(genesis = %committee.digest(), "quota committee client");
            None
        };
        Ok(Self {
            committee,
            id,
            identity,
            state,
            validator,
            net,
            aggregator: AggregatorConfig {
                deadline: Duration::from_secs(10),
                ..AggregatorConfig::default()
            },
        })
    }

    /// The committee.
    pub fn committee(&self) -> &Committee {
        &self.committee
    }

    /// Whether this node is one of its validators.
    pub fn is_validator(&self) -> bool {
        self.validator.is_some()
    }

    /// The stored state (certificates kept here).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// This node's key (providers sign settlements with it).
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    fn validator(&self) -> Option<MutexGuard<'_, Validator<Key>>> {
        self.validator
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Answers one inbound request (encoded `quota_rpc::Request`), encoded.
    pub async fn handle(&self, bytes: &[u8]) -> Vec<u8> {
        let response = match Request::decode(bytes, &self.committee, &Ed25519) {
            Ok(request) => self.answer(request).await,
            Err(e) => Response::Refused(format!("malformed request: {e}")),
        };
        response.encode().unwrap_or_else(|e| {
            Response::Refused(format!("cannot encode the answer: {e}"))
                .encode()
                .unwrap_or_default()
        })
    }

    async fn answer(&self, request: Request) -> Response {
        if self.validator.is_none() {
            return Response::Refused("this node is not a validator".into());
        }
        match request {
            Request::Vote(request) => match self.vote(&request).await {
                Some(answer) => Response::Answer(answer),
                None => Response::Refused("the vote could not be stored; ask again".into()),
            },
            Request::Certified(cert) => {
                self.take_certificate(&cert);
                Response::Stored
            }
            Request::Account(account) => Response::Account(self.local_view(&account)),
        }
    }

    /// This validator's answer to a vote request: a new vote is stored (synced) before it
    /// is released. `None` when the store failed (no vote leaves).
    async fn vote(&self, request: &VoteRequest) -> Option<Answer> {
        let started = tokio::time::Instant::now();
        loop {
            let now = clock::now();
            let outcome = self.validator()?.handle_request(now, request);
            match outcome {
                Outcome::Persist(p) => {
                    let slot = p.record().slot();
                    let bytes = match p.to_bytes() {
                        Ok(b) => b,
                        Err(e) => {
                            warn!(%slot, error = %e, "cannot encode a vote record");
                            return None;
                        }
                    };
                    if let Err(e) = self.state.persist_vote(bytes, slot, &request.proofs).await {
                        // The vote stays taken (not durable): this slot gets no other op's
                        // vote, and this op's is never released.
                        warn!(%slot, error = %e, "cannot store a vote; not sending it");
                        return None;
                    }
                    let vote = self.validator()?.release(p);
                    debug!(%slot, kind = request.op.kind(), "voted");
                    return Some(Answer::Vote(vote));
                }
                Outcome::Vote(v) => return Some(Answer::Vote(v)),
                Outcome::Refused(r) => {
                    debug!(slot = %request.op.slot(), refusal = %r, "vote refused");
                    return Some(Answer::Refused(r));
                }
                Outcome::Pending => {
                    if started.elapsed() > PENDING_WAIT {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
    }

    /// Applies and keeps a certificate (a validator's view, or any node's store).
    pub fn take_certificate(&self, cert: &Certificate) {
        if let Some(mut v) = self.validator()
            && let Err(e) = v.handle_certificate(cert)
        {
            debug!(slot = %cert.slot(), error = %e, "certificate kept, not applied yet");
        }
        if let Err(e) = self.state.put_certificate(cert) {
            warn!(slot = %cert.slot(), error = %e, "cannot keep a certificate");
        }
    }

    /// This validator's view of `account` (empty when it knows nothing of it, or is not a
    /// validator).
    pub fn local_view(&self, account: &AgoraId) -> AccountView {
        let Some(v) = self.validator() else {
            return empty_view();
        };
        let Some(a) = v.accounts().get(account) else {
            return empty_view();
        };
        let next = a.next_seq();
        let locks = a
            .locks()
            .iter()
            .map(|(seq, l)| LockView {
                seq: *seq,
                lease: l.lease,
                provider: l.provider,
                amount_micro: l.amount_micro,
                expires_at: l.expires_at,
                op: l.op,
                approved: l.approved,
            })
            .collect();
        let view = AccountView {
            head: None,
            credited_micro: a.credited_micro(),
            granted_micro: a.granted_micro(),
            spent_micro: a.spent_micro(),
            approved_spent_micro: a.approved_spent_micro(),
            locks,
        };
        drop(v);
        let head = next.checked_sub(1).and_then(|seq| {
            self.state
                .certificate(&Slot::Seq {
                    account: *account,
                    seq,
                })
                .ok()
                .flatten()
        });
        AccountView { head, ..view }
    }

    /// Sends `request` to validator `to` (this node directly) and decodes the answer.
    async fn call(&self, to: AgoraId, request: Request) -> Result<Response, String> {
        let bytes = request.encode().map_err(|e| e.to_string())?;
        let answer = if to == self.id {
            self.handle(&bytes).await
        } else {
            let peer = agora_attest::identity::peer_id_of(&to)
                .map_err(|e| format!("no peer id for {to}: {e}"))?;
            let (reply, answer) = oneshot::channel();
            let call = NetCommand::Quota(Box::new(QuotaCall {
                peer,
                request: bytes,
                reply,
            }));
            self.net
                .send(call)
                .await
                .map_err(|_| "the network is stopping".to_owned())?;
            tokio::time::timeout(CALL_TIMEOUT, answer)
                .await
                .map_err(|_| "no answer in time".to_owned())?
                .map_err(|_| "the network dropped the call".to_owned())??
        };
        Response::decode(&answer, &self.committee, &Ed25519).map_err(|e| e.to_string())
    }

    /// Collects a quorum's votes for `op` into a certificate, keeps it and sends it to every
    /// validator. `history` holds certificates of the op's account the caller has (the
    /// previous chain position's, a closing's lock) to catch lagging validators up.
    ///
    /// # Errors
    /// [`CertifyError`].
    pub async fn certify(
        self: &Arc<Self>,
        op: Op,
        history: Vec<Certificate>,
    ) -> Result<Certificate, CertifyError> {
        let kind = op.kind();
        let slot = op.slot();
        let started = std::time::Instant::now();
        let mut client = Aggregator::new(
            self.committee.clone(),
            op,
            history,
            clock::now(),
            self.aggregator,
        );
        let mut inflight = FuturesUnordered::new();
        loop {
            while let Some(t) = client.poll_transmit() {
                let this = self.clone();
                inflight.push(async move {
                    let answer = this.call(t.to, Request::Vote(t.request)).await;
                    (t.to, answer)
                });
            }
            if let Some(event) = client.poll_event() {
                return match event {
                    Event::Certified(cert) => {
                        let elapsed_us =
                            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        info!(%slot, kind, elapsed_us, "certified");
                        self.take_certificate(&cert);
                        self.disseminate(cert.clone());
                        Ok(cert)
                    }
                    Event::Failed(Failure::Refused(refusals)) => {
                        info!(%slot, kind, refusals = %describe(&refusals), "not certified");
                        Err(CertifyError::Refused(refusals))
                    }
                    Event::Failed(Failure::TimedOut { votes, quorum, .. }) => {
                        info!(%slot, kind, votes, quorum, "not certified in time");
                        Err(CertifyError::TimedOut { votes, quorum })
                    }
                };
            }
            let wake = client.poll_timeout().map_or(Duration::from_secs(1), |at| {
                at.saturating_duration_since(clock::now())
            });
            tokio::select! {
                Some((from, answer)) = inflight.next(), if !inflight.is_empty() => {
                    match answer {
                        Ok(Response::Answer(a)) => {
                            if let Err(e) = client.handle_answer(clock::now(), from, a) {
                                debug!(validator = %from, error = %e, "answer not counted");
                            }
                        }
                        Ok(other) => debug!(validator = %from, answer = ?other, "not a vote answer"),
                        Err(e) => debug!(validator = %from, error = %e, "vote request failed"),
                    }
                }
                () = tokio::time::sleep(wake) => client.handle_timeout(clock::now()),
            }
        }
    }

    /// Sends a certificate to every other validator, in the background.
    pub fn disseminate(self: &Arc<Self>, cert: Certificate) {
        let this = self.clone();
        tokio::spawn(async move {
            let calls: FuturesUnordered<_> = this
                .committee
                .validators()
                .iter()
                .filter(|v| **v != this.id)
                .map(|v| {
                    let (this, cert, to) = (this.clone(), cert.clone(), *v);
                    async move { (to, this.call(to, Request::Certified(cert)).await) }
                })
                .collect();
            let results: Vec<_> = calls.collect().await;
            for (to, result) in results {
                if let Err(e) = result {
                    debug!(validator = %to, error = %e, "certificate not delivered");
                }
            }
        });
    }

    /// What the validators know of `account`: the view with the highest proven chain
    /// position among those that answer within [`ACCOUNT_TIMEOUT`] (figures are that
    /// validator's word; the head certificate is checked).
    ///
    /// # Errors
    /// [`NoAnswer`] when no validator answered.
    pub async fn account(self: &Arc<Self>, account: AgoraId) -> Result<AccountView, NoAnswer> {
        let mut calls: FuturesUnordered<_> = self
            .committee
            .validators()
            .iter()
            .map(|v| {
                let (this, to) = (self.clone(), *v);
                async move { this.call(to, Request::Account(account)).await }
            })
            .collect();
        let deadline = tokio::time::sleep(ACCOUNT_TIMEOUT);
        tokio::pin!(deadline);
        let mut best: Option<AccountView> = None;
        let mut answered = 0;
        let quorum = self.committee.quorum();
        loop {
            tokio::select! {
                next = calls.next() => match next {
                    Some(Ok(Response::Account(view))) => {
                        answered += 1;
                        let proven = view.head.as_ref().is_none_or(|c| c.op().account() == account);
                        if proven && best.as_ref().is_none_or(|b| view.next_seq() > b.next_seq()) {
                            best = Some(view);
                        }
                        // A quorum's answers include a correct validator that saw the last
                        // certified op (it was sent to all): enough.
                        if answered >= quorum {
                            break;
                        }
                    }
                    Some(_) => {}
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        best.ok_or(NoAnswer)
    }

    /// Settles the locks a provider kept for `lease` (its lock and top-ups) with its final
    /// receipt, in the background (logged; a lock not settled within the grace is unlocked
    /// by validators). Each settlement charges only the cost above its lock's base.
    pub fn settle(
        self: &Arc<Self>,
        lease: agora_protocol::lease::LeaseId,
        receipt: agora_protocol::Signed<agora_protocol::lease::UsageReceipt>,
    ) {
        let locks = match self.state.locks_of(&lease) {
            Ok(locks) => locks,
            Err(e) => {
                warn!(%lease, error = %e, "cannot read the lease's lock certificates");
                return;
            }
        };
        for lock in locks {
            let Slot::Seq { account, seq } = lock.slot() else {
                continue;
            };
            let settle = agora_protocol::committee::Settle {
                account,
                lock_seq: seq,
                lock: lock.op().chain_digest(),
                receipt: receipt.clone(),
            };
            let op = match agora_protocol::Signed::sign(settle, self.identity.as_ref()) {
                Ok(s) => Op::Settle(s),
                Err(e) => {
                    warn!(%lease, error = %e, "cannot sign the settlement");
                    return;
                }
            };
            let this = self.clone();
            tokio::spawn(async move {
                match this.certify(op, vec![lock]).await {
                    Ok(_) => info!(%lease, lock_seq = seq, "lock settled"),
                    Err(e) => warn!(%lease, lock_seq = seq, error = %e, "lock not settled"),
                }
            });
        }
    }

    /// Releases the lock `lock` certifies with its provider's signed `refusal` of the lease
    /// ([`agora_protocol::committee::Release`]): the agent's quota returns at once instead
    /// of when the lock lapses. `None` when `lock` does not certify a chain op.
    pub async fn release(
        self: &Arc<Self>,
        lock: &Certificate,
        refusal: agora_protocol::Signed<agora_protocol::lease::LeaseRefusal>,
    ) -> Option<Result<Certificate, CertifyError>> {
        let Slot::Seq { account, seq } = lock.slot() else {
            return None;
        };
        let op = Op::Release(agora_protocol::committee::Release {
            account,
            lock_seq: seq,
            lock: lock.op().chain_digest(),
            refusal,
        });
        Some(self.certify(op, vec![lock.clone()]).await)
    }

    /// What the locks a provider kept for `lease` hold together: the base a top-up for it
    /// must name.
    ///
    /// # Errors
    /// [`StateError`] when the store cannot be read.
    pub fn held_for(&self, lease: &agora_protocol::lease::LeaseId) -> Result<u64, StateError> {
        Ok(self
            .state
            .locks_of(lease)?
            .iter()
            .filter_map(|c| lock_terms(c.op()))
            .fold(0u64, |sum, t| sum.saturating_add(t.amount_micro)))
    }

    /// Unlocks, every [`UNLOCK_PERIOD`] until `stop`, the locks this validator sees past
    /// their expiry and settle grace. Nothing for a non-validator.
    pub async fn run_unlocks(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        if self.validator.is_none() {
            return;
        }
        let mut every = tokio::time::interval(UNLOCK_PERIOD);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let now = clock::now();
            if let Some(mut v) = self.validator() {
                v.handle_timeout(now);
            }
            for (op, lock) in self.unlockable(now) {
                match self.certify(op, lock.into_iter().collect()).await {
                    Ok(cert) => info!(slot = %cert.slot(), "lapsed lock unlocked"),
                    Err(e) => debug!(error = %e, "lapsed lock not unlocked yet"),
                }
            }
        }
    }

    /// Unlock ops for the locks this validator may unlock at `now` (at most 64 a round),
    /// with each lock's certificate when kept.
    fn unlockable(&self, now: Timestamp) -> Vec<(Op, Option<Certificate>)> {
        let found: Vec<(AgoraId, u64, agora_protocol::Digest)> = {
            let Some(v) = self.validator() else {
                return Vec::new();
            };
            v.accounts()
                .iter()
                .flat_map(|(account, a)| {
                    a.unlockable(now, &self.committee)
                        .into_iter()
                        .filter_map(|seq| a.locks().get(&seq).map(|l| (*account, seq, l.op)))
                        .collect::<Vec<_>>()
                })
                .take(64)
                .collect()
        };
        found
            .into_iter()
            .map(|(account, lock_seq, lock)| {
                let cert = self
                    .state
                    .certificate(&Slot::Seq {
                        account,
                        seq: lock_seq,
                    })
                    .ok()
                    .flatten();
                (
                    Op::Unlock(Unlock {
                        account,
                        lock_seq,
                        lock,
                    }),
                    cert,
                )
            })
            .collect()
    }
}

fn empty_view() -> AccountView {
    AccountView {
        head: None,
        credited_micro: 0,
        granted_micro: 0,
        spent_micro: 0,
        approved_spent_micro: 0,
        locks: Vec::new(),
    }
}

/// The lock terms of a lock or top-up op.
pub fn lock_terms(op: &Op) -> Option<&agora_protocol::committee::LockTerms> {
    op.chain()?.body().action.lock_terms()
}

//! Agents: signup, funding, picking offers, locking quota, asking providers, rating.
//!
//! An agent's lease attempt, each step a real protocol message:
//!
//! ```text
//! arrival ──query home node's OfferBook──▶ offers that fit, cheapest `consider`
//!   ──draw an order, weighted by price and remembered EigenTrust──▶ provider
//!   ──sign LeaseRequest──▶ lock op (its chain's next seq) ──committee──▶ lock certificate
//!   ──LeaseProposal { request, lock }──▶ provider's Admission ──▶ LeaseGrant | Refusal
//! grant ──▶ wait for the receipt ──▶ ReceiptAck + Rating into the evidence log
//!       └─ none by the lease's end ──▶ Rating 0; the lock is unlocked after its grace
//! ```
//!
//! A refused or unanswered attempt moves to the next-ranked provider (at most
//! [`MAX_ATTEMPTS`] per arrival); its lock stays open until it lapses and is unlocked, as
//! on the real network.

use core::time::Duration;
use std::collections::BTreeMap;

use agora_protocol::attestation::{Attestation, Claims, Credential};
use agora_protocol::challenge::Challenge;
use agora_protocol::committee::{
    Action, Certificate, ChainOp, FreeTierClaim, LockTerms, Op, Unlock,
};
use agora_protocol::lease::UsageReceipt;
use agora_protocol::lease::{Candidate, LeaseGrant, LeaseProposal, LeaseRequest, Refusal};
use agora_protocol::ledger::{Fact, Rating, ReceiptAck, Usage};
use agora_protocol::offer::Isolation;
use agora_protocol::offer_book::{OfferFilter, OfferSort};
use agora_protocol::signup::{ProofOfWork, SignupRecord};
use agora_protocol::workload::{TerminationReason, WorkloadSpec};
use agora_protocol::{AgoraId, Digest, Signed, Signer};
use ed25519_dalek::SigningKey;

use super::quota::{Purpose, Split};
use super::{Env, Event, LeaseRecord, LeaseState, Mail, Market, at, send, sim_time, timestamp};
use crate::rng;
use crate::time::{SimDuration, SimTime};
use crate::world::Sched;

/// Most providers one arrival tries.
pub const MAX_ATTEMPTS: u32 = 3;

/// Proof-of-work bits an unattested agent's signup carries.
pub const SIGNUP_POW_BITS: u8 = 8;

/// How long past a lease's end an agent waits for its receipt.
const RECEIPT_GRACE: SimDuration = SimDuration::from_secs(30);

/// Extra time a lock lasts beyond the lease (quota and admission may take that long).
pub const LOCK_MARGIN: Duration = Duration::from_secs(60);

/// An offer an agent weighs: its provider (index), digest, price per second, and the
/// provider's remembered trust (`None`: never ranked).
type Fit = (u32, Digest, u64, Option<u64>);

/// What an agent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Leases what it needs, rates honestly.
    Honest,
    /// Leases only from the lying providers and praises them (funded).
    Colluder,
    /// One of a signup flood: unattested, free tier, praises the liars.
    Sybil,
    /// Asks for leases without a lock, or with another lease's lock.
    FreeRider,
    /// Locks one chain position twice, for two providers.
    DoubleSpender,
}

impl Role {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Honest => "honest",
            Role::Colluder => "colluder",
            Role::Sybil => "sybil",
            Role::FreeRider => "free-rider",
            Role::DoubleSpender => "double-spender",
        }
    }

    /// Whether it belongs to the liars' collective.
    pub fn colludes(self) -> bool {
        matches!(self, Role::Colluder | Role::Sybil)
    }
}

/// One agent.
#[derive(Debug)]
pub struct Agent {
    key: SigningKey,
    /// Its id.
    pub id: AgoraId,
    /// Its home node (whose offer book it reads).
    pub node: u32,
    /// What it is.
    pub role: Role,
    /// Whether it holds an attestation from the committee's issuer.
    pub attested: bool,
    signup: Option<Signed<SignupRecord>>,
    /// Its own chain's certificates, latest last (for proofs and catch-up).
    chain: Vec<Certificate>,
    /// Funds certified: it may lease.
    pub funded: bool,
    /// The lease attempt in progress (one chain op at a time).
    busy: Option<u32>,
    /// Arrivals waiting for the current attempt to finish.
    backlog: Vec<SimTime>,
    /// The current arrival: when it came, and the providers tried.
    arrival: Option<(SimTime, Vec<u32>)>,
    /// A free rider's lock of an earlier lease, to reuse.
    old_lock: Option<Certificate>,
    /// Whether a double-spender has made its attempt.
    doubled: bool,
}

impl Agent {
    /// A new agent with `key`, homed on `node`.
    pub fn new(key: SigningKey, node: u32, role: Role, attested: bool) -> Self {
        Agent {
            id: key.id(),
            key,
            node,
            role,
            attested,
            signup: None,
            chain: Vec::new(),
            funded: false,
            busy: None,
            backlog: Vec::new(),
            arrival: None,
            old_lock: None,
            doubled: false,
        }
    }

    fn remember(&mut self, cert: Certificate) {
        self.chain.push(cert);
        if self.chain.len() > 8 {
            self.chain.remove(0);
        }
    }
}

impl Market {
    /// Signs up: a challenge of the signup node, the attestation or a proof of work, the
    /// record into the evidence log; then asks the committee for funds.
    pub(super) fn on_signup(&mut self, ctx: &mut impl Sched, env: &mut Env<'_>, a: u32) {
        let now = ctx.now();
        let mut nonce = [0u8; 32];
        rand_core::Rng::fill_bytes(ctx.rng(), &mut nonce);
        let mut attestation_nonce = [0u8; 16];
        rand_core::Rng::fill_bytes(ctx.rng(), &mut attestation_nonce);
        let budget = self.config.budget_credits;
        let issuer = self.issuer.clone();
        let verifier = self.signup_node.id();
        let Some(agent) = self.agents.get_mut(a as usize) else {
            return;
        };
        let challenge = Challenge {
            verifier,
            nonce,
            issued_at: timestamp(now),
        };
        let credential = agent.attested.then(|| {
            let start = timestamp(SimTime::ZERO);
            let attestation = Attestation {
                issuer: issuer.id(),
                subject: agent.id,
                claims: Claims {
                    organisation: None,
                    tier: "standard".into(),
                    spending_limit_credits: budget,
                    owner: None,
                    may_delegate: false,
                    model: None,
                    labels: BTreeMap::new(),
                },
                issued_at: start,
                not_before: start,
                expires_at: start.saturating_add(Duration::from_secs(365 * 86_400)),
                nonce: attestation_nonce,
            };
            Signed::sign(attestation, &issuer).map(Credential::single)
        });
        let credential = match credential {
            Some(Ok(c)) => Some(c),
            Some(Err(_)) => return,
            None => None,
        };
        let pow = if credential.is_some() {
            ProofOfWork::NONE
        } else {
            ProofOfWork::solve(&agent.id, &challenge, SIGNUP_POW_BITS)
        };
        let record = SignupRecord {
            agent: agent.id,
            challenge,
            credential: credential.clone(),
            pow,
            name: None,
        };
        let Ok(signed) = Signed::sign(record, &agent.key) else {
            return;
        };
        agent.signup = Some(signed.clone());
        let key = agent.key.clone();
        let id = agent.id;
        let node = agent.node;
        self.stats.signups += 1;
        if agent.role == Role::Sybil {
            self.stats.sybil_signups += 1;
        }
        self.ledger
            .append(timestamp(now), &key, Fact::Signup(signed));
        let op = match credential {
            Some(credential) => {
                let body = ChainOp {
                    account: id,
                    seq: 0,
                    prev: None,
                    action: Action::Credit(credential),
                    delegation: None,
                };
                Signed::sign(body, &key).map(Op::Chain)
            }
            None => self.free_tier_claim(ctx, &key, id),
        };
        let Ok(op) = op else {
            return;
        };
        self.start_client(
            ctx,
            env,
            node,
            Purpose::Fund {
                agent: a,
                attempt: 0,
            },
            op,
            Vec::new(),
            Split::All,
        );
    }

    /// A free-tier claim of the current epoch at a random pool slot.
    fn free_tier_claim(
        &self,
        ctx: &mut impl Sched,
        key: &SigningKey,
        id: AgoraId,
    ) -> Result<Op, agora_protocol::EncodeError> {
        let now = timestamp(ctx.now());
        let epoch = self.committee.epoch_at(now).unwrap_or(0);
        let cap = u64::from(self.committee.free_tier().cap_per_epoch.max(1));
        let index = rng::below(ctx.rng(), cap) as u32;
        let claim = FreeTierClaim {
            account: id,
            epoch,
            index,
        };
        Signed::sign(claim, key).map(Op::FreeTier)
    }

    /// Funds certified: the agent starts arriving.
    pub(super) fn on_funded(
        &mut self,
        ctx: &mut impl Sched,
        _env: &mut Env<'_>,
        a: u32,
        cert: Certificate,
    ) {
        let mean = self.config.mean_interarrival.as_micros() as f64;
        let Some(agent) = self.agents.get_mut(a as usize) else {
            return;
        };
        if matches!(cert.op(), Op::Chain(_)) {
            agent.remember(cert);
        } else {
            self.stats.free_tier_grants += 1;
            if agent.role == Role::Sybil {
                self.stats.sybils_funded += 1;
            }
        }
        agent.funded = true;
        let node = agent.node;
        let delay = rng::exponential(ctx.rng(), mean).min(1e15) as u64;
        let when = ctx.now().saturating_add(SimDuration::from_micros(delay));
        at(ctx, when, node, Event::Arrive { agent: a });
    }

    /// A free-tier claim lost its pool slot (or timed out): try another slot, a few times.
    pub(super) fn on_fund_failed(
        &mut self,
        ctx: &mut impl Sched,
        env: &mut Env<'_>,
        a: u32,
        attempt: u32,
    ) {
        self.stats.fund_failures += 1;
        let Some(agent) = self.agents.get(a as usize) else {
            return;
        };
        if agent.attested || attempt >= 3 {
            return;
        }
        let (key, id, node) = (agent.key.clone(), agent.id, agent.node);
        if let Ok(op) = self.free_tier_claim(ctx, &key, id) {
            let purpose = Purpose::Fund {
                agent: a,
                attempt: attempt + 1,
            };
            self.start_client(ctx, env, node, purpose, op, Vec::new(), Split::All);
        }
    }

    /// The agent wants a lease (and schedules its next wish).
    pub(super) fn on_arrive(&mut self, ctx: &mut impl Sched, env: &mut Env<'_>, a: u32) {
        let now = ctx.now();
        let mean = self.config.mean_interarrival.as_micros() as f64;
        let Some(agent) = self.agents.get_mut(a as usize) else {
            return;
        };
        let node = agent.node;
        let delay = rng::exponential(ctx.rng(), mean).min(1e15) as u64;
        at(
            ctx,
            now.saturating_add(SimDuration::from_micros(delay)),
            node,
            Event::Arrive { agent: a },
        );
        self.stats.arrivals += 1;
        *self
            .stats
            .arrivals_by_role
            .entry(agent.role.as_str())
            .or_default() += 1;
        if agent.busy.is_some() || agent.arrival.is_some() {
            agent.backlog.push(now);
            return;
        }
        agent.arrival = Some((now, Vec::new()));
        self.attempt(ctx, env, a);
    }

    /// The next attempt of the current arrival: pick, sign, lock.
    fn attempt(&mut self, ctx: &mut impl Sched, env: &mut Env<'_>, a: u32) {
        let now = ctx.now();
        let Some(agent) = self.agents.get(a as usize) else {
            return;
        };
        let Some((wanted_at, tried)) = agent.arrival.clone() else {
            return;
        };
        if tried.len() as u32 >= MAX_ATTEMPTS {
            self.arrival_over(ctx, env, a, false);
            return;
        }
        if !env.up(agent.node) {
            self.no_match(ctx, env, a, "home-node-down");
            return;
        }
        let picks = self.pick(ctx, env, a, &tried);
        let Some(&(provider, offer_digest, price)) = picks.first() else {
            let reason = if tried.is_empty() {
                "no-offers"
            } else {
                "no-more-offers"
            };
            self.no_match(ctx, env, a, reason);
            return;
        };
        let lifetime = self.lifetime();
        let amount = price.saturating_mul(lifetime.as_secs());
        let account = self.audit.accounts().get(&agent.id);
        let available = account.map_or(0, |acc| acc.available_micro());
        let (next_seq, head) = account.map_or((0, None), |acc| (acc.next_seq(), acc.head()));
        if available < amount {
            self.no_match(ctx, env, a, "insufficient-quota");
            return;
        }
        let spec = self.spec();
        let Some(agent) = self.agents.get_mut(a as usize) else {
            return;
        };
        let Some(signup) = agent.signup.clone() else {
            return;
        };
        if let Some((_, tried)) = agent.arrival.as_mut() {
            tried.push(provider);
        }
        let mut nonce = [0u8; agora_protocol::lease::NONCE_LEN];
        rand_core::Rng::fill_bytes(ctx.rng(), &mut nonce);
        let Some(provider_id) = self.providers.get(provider as usize).map(|p| p.id) else {
            return;
        };
        let request = LeaseRequest {
            agent: agent.id,
            candidates: vec![Candidate {
                provider: provider_id,
                offer: offer_digest,
            }],
            isolation: Isolation::Sandbox,
            spec: spec.clone(),
            max_price_per_sec: self.config.max_price_per_sec,
            nonce,
            issued_at: timestamp(now),
            signup: signup.clone(),
            delegation: None,
        };
        let Ok(request) = Signed::sign(request, &agent.key) else {
            return;
        };
        let lease_id = request.digest();
        let request_body = request.body().clone();
        let lease = self.leases.len() as u32;
        self.leases
            .push(LeaseRecord::new(a, provider, lease_id, wanted_at));
        agent.busy = Some(lease);
        let (key, id, node, role) = (agent.key.clone(), agent.id, agent.node, agent.role);
        let history = agent.chain.clone();
        self.requests.insert(lease, request);
        // A free rider skips the lock: no lock, or another lease's.
        if role == Role::FreeRider {
            self.stats.free_rider_attempts += 1;
            let old = self.agents.get(a as usize).and_then(|g| g.old_lock.clone());
            self.propose(ctx, env, lease, old);
            return;
        }
        let expires_at = timestamp(now)
            .saturating_add(lifetime)
            .saturating_add(Duration::from_micros(
                self.config.request_timeout.as_micros(),
            ))
            .saturating_add(LOCK_MARGIN.saturating_mul(2));
        let lock = |lease_id, provider, amount_micro| {
            let body = ChainOp {
                account: id,
                seq: next_seq,
                prev: head,
                action: Action::Lock(LockTerms {
                    lease: lease_id,
                    provider,
                    amount_micro,
                    expires_at,
                }),
                delegation: None,
            };
            Signed::sign(body, &key).map(Op::Chain)
        };
        let doubles = role == Role::DoubleSpender
            && !self.agents.get(a as usize).is_some_and(|g| g.doubled)
            && picks.len() >= 2;
        if doubles {
            // The same chain position locked twice, each for the whole balance, at two
            // providers, each op to a different half of the honest validators.
            let Some(&(second, second_offer, _)) = picks.get(1) else {
                return;
            };
            let Some(second_id) = self.providers.get(second as usize).map(|p| p.id) else {
                return;
            };
            let mut twin = request_body;
            twin.candidates = vec![Candidate {
                provider: second_id,
                offer: second_offer,
            }];
            rand_core::Rng::fill_bytes(ctx.rng(), &mut twin.nonce);
            let Ok(twin) = Signed::sign(twin, &key) else {
                return;
            };
            let twin_lease = self.leases.len() as u32;
            self.leases
                .push(LeaseRecord::new(a, second, twin.digest(), wanted_at));
            let (Ok(op_a), Ok(op_b)) = (
                lock(lease_id, provider_id, available),
                lock(twin.digest(), second_id, available),
            ) else {
                return;
            };
            self.requests.insert(twin_lease, twin);
            self.doubles.insert(lease, twin_lease);
            self.doubles.insert(twin_lease, lease);
            if let Some(agent) = self.agents.get_mut(a as usize) {
                agent.doubled = true;
            }
            self.stats.double_spend_attempts += 1;
            self.start_client(
                ctx,
                env,
                node,
                Purpose::Lock { lease },
                op_a,
                history.clone(),
                Split::FirstHalf,
            );
            self.start_client(
                ctx,
                env,
                node,
                Purpose::Lock { lease: twin_lease },
                op_b,
                history,
                Split::SecondHalf,
            );
            return;
        }
        let Ok(op) = lock(lease_id, provider_id, amount) else {
            return;
        };
        self.start_client(
            ctx,
            env,
            node,
            Purpose::Lock { lease },
            op,
            history,
            Split::All,
        );
    }

    /// The workload every lease runs.
    fn spec(&self) -> WorkloadSpec {
        let mut spec = WorkloadSpec::example(Digest::of(b"busybox"), &["sleep", "300"]);
        spec.resources.vcpu_milli = self.config.vcpu_milli;
        spec.resources.memory_mib = self.config.memory_mib;
        spec.lifetime_secs = self.lifetime().as_secs();
        spec
    }

    /// Offers from the agent's home book that fit, cheapest first (at most `consider`),
    /// re-ranked by reputation: `(provider index, offer digest, price per second)`.
    fn pick(
        &self,
        ctx: &mut impl Sched,
        env: &mut Env<'_>,
        a: u32,
        tried: &[u32],
    ) -> Vec<(u32, Digest, u64)> {
        let Some(agent) = self.agents.get(a as usize) else {
            return Vec::new();
        };
        let Some(node) = env.nodes.get(agent.node as usize) else {
            return Vec::new();
        };
        let now = timestamp(ctx.now());
        let spec = self.spec();
        let filter = OfferFilter {
            runtime: Some(Isolation::Sandbox),
            image: Some("busybox".into()),
            min_vcpu_milli: Some(self.config.vcpu_milli),
            min_memory_mib: Some(self.config.memory_mib),
            max_price: Some(self.config.max_price_per_sec),
            ..OfferFilter::default()
        };
        let collective = agent.role.colludes();
        let mut fits: Vec<Fit> = node
            .market
            .book()
            .query(&filter, OfferSort::Price, usize::MAX, now)
            .into_iter()
            .filter_map(|o| {
                let index = *self.provider_index.get(&o.body().provider)?;
                let liar = self.providers.get(index as usize)?.lie.is_some();
                if tried.contains(&index) || (collective && !liar) {
                    return None;
                }
                let price = agora_protocol::admission::price_of(&o.body().prices, &spec.resources);
                let trust = self.ledger.remembered_trust(&o.body().provider);
                Some((index, o.digest(), price, trust))
            })
            .take(self.config.consider as usize)
            .collect();
        if fits.is_empty() {
            return Vec::new();
        }
        // Weight: price relative to the cheapest, and trust relative to the mean of the
        // known providers considered, capped at 1 (a provider at least as trusted as a
        // typical one gets full credit, a distrusted one little); a provider never ranked
        // (a newcomer) counts `newcomer_trust`, so new providers get tried rather than
        // starved by the ones already known.
        let w = self.reputation_config.trust_weight;
        let newcomer = self.reputation_config.newcomer_trust;
        let cheapest = fits.iter().map(|f| f.2).min().unwrap_or(1).max(1) as f64;
        let known: Vec<u64> = fits.iter().filter_map(|f| f.3).collect();
        let typical = if known.is_empty() {
            0.0
        } else {
            known.iter().sum::<u64>() as f64 / known.len() as f64
        };
        let weight = |f: &Fit| {
            let price = cheapest / (f.2.max(1) as f64);
            let trust = match f.3 {
                None => newcomer,
                Some(t) if typical > 0.0 => (t as f64 / typical).min(1.0),
                Some(_) => 0.0,
            };
            (1.0 - w) * price + w * trust
        };
        // The order of attempts is drawn with probability proportional to the weight, as
        // EigenTrust's peer selection does (an exponential race: each offer draws a time
        // of rate `weight`, earliest first): load spreads over the good providers instead
        // of every agent reading the same books herding onto the one best-ranked offer
        // (which then refuses them, its advertised capacity being up to one `readvertise`
        // old), and a distrusted provider is picked rarely, not never.
        let mut raced: Vec<(f64, Fit)> = fits
            .drain(..)
            .map(|f| {
                let u = rng::unit(ctx.rng()).max(f64::MIN_POSITIVE);
                (-u.ln() / weight(&f).max(1e-9), f)
            })
            .collect();
        raced.sort_by(|x, y| x.0.total_cmp(&y.0));
        raced
            .into_iter()
            .map(|(_, (i, d, p, _))| (i, d, p))
            .collect()
    }

    /// The lock is certified: propose to the provider.
    pub(super) fn on_locked(
        &mut self,
        ctx: &mut impl Sched,
        env: &mut Env<'_>,
        lease: u32,
        cert: Certificate,
    ) {
        let Some(record) = self.leases.get_mut(lease as usize) else {
            return;
        };
        record.lock = Some(cert.clone());
        let a = record.agent;
        if let Some(agent) = self.agents.get_mut(a as usize) {
            agent.remember(cert.clone());
            if agent.role == Role::FreeRider || agent.old_lock.is_none() {
                agent.old_lock = Some(cert.clone());
            }
        }
        // The unlock, should nobody settle the lock.
        if let Op::Chain(op) = cert.op()
            && let Action::Lock(terms) = &op.body().action
        {
            let grace = self.committee.settle_grace();
            let when = sim_time(terms.expires_at.saturating_add(grace))
                .saturating_add(SimDuration::from_secs(1));
            let node = self.agents.get(a as usize).map_or(0, |g| g.node);
            at(ctx, when, node, Event::Unlock { lease });
        }
        self.propose(ctx, env, lease, Some(cert));
    }

    /// Sends the signed request with `lock` to the provider, and arms the timeout.
    fn propose(
        &mut self,
        ctx: &mut impl Sched,
        env: &mut Env<'_>,
        lease: u32,
        lock: Option<Certificate>,
    ) {
        let Some(request) = self.requests.get(&lease).cloned() else {
            return;
        };
        let Some(record) = self.leases.get_mut(lease as usize) else {
            return;
        };
        record.state = LeaseState::Proposed;
        let (a, p) = (record.agent, record.provider);
        let (Some(from), Some(to)) = (
            self.agents.get(a as usize).map(|g| g.node),
            self.providers.get(p as usize).map(|p| p.node),
        ) else {
            return;
        };
        let proposal = LeaseProposal {
            request,
            approval: None,
            lock: lock.map(Certificate::into_unchecked),
        };
        let mail = Mail::Proposal {
            lease,
            proposal: Box::new(proposal),
        };
        send(ctx, env, &mut self.mailbox, &mut self.stats, from, to, mail);
        let timeout = SimDuration::from_micros(self.config.request_timeout.as_micros());
        at(
            ctx,
            ctx.now().saturating_add(timeout),
            from,
            Event::ProposalTimeout { lease },
        );
    }

    /// The provider answered.
    pub(super) fn on_proposal_answer(
        &mut self,
        ctx: &mut impl Sched,
        env: &mut Env<'_>,
        lease: u32,
        answer: Result<Signed<LeaseGrant>, Refusal>,
    ) {
        let Some(record) = self.leases.get_mut(lease as usize) else {
            return;
        };
        if record.state != LeaseState::Proposed {
            return;
        }
        match answer {
            Ok(grant) => {
                record.state = LeaseState::Granted;
                let expires = sim_time(grant.body().expires_at);
                let (a, p, wanted_at) = (record.agent, record.provider, record.wanted_at);
                record.grant = Some(grant);
                self.stats
                    .time_to_lease_ms
                    .push(ctx.now().saturating_since(wanted_at).as_micros() as f64 / 1e3);
                self.stats.granted += 1;
                let role = self.agents.get(a as usize).map(|g| g.role);
                let liar = self
                    .providers
                    .get(p as usize)
                    .is_some_and(|p| p.lie.is_some());
                let node = self.agents.get(a as usize).map_or(0, |g| g.node);
                let victim = self.eclipse.as_ref().is_some_and(|e| e.is_victim(node));
                if victim {
                    self.stats.victim_leases += 1;
                    self.stats.victim_attacker_leases += u64::from(liar);
                } else if role == Some(Role::Honest) {
                    self.ledger.honest_lease(liar);
                }
                if role == Some(Role::FreeRider) {
                    self.stats.free_rider_grants += 1;
                }
                if let Some(role) = role {
                    *self.stats.granted_by_role.entry(role.as_str()).or_default() += 1;
                }
                at(
                    ctx,
                    expires.saturating_add(RECEIPT_GRACE),
                    node,
                    Event::LeaseDue { lease },
                );
                self.attempt_over(ctx, env, a, true);
            }
            Err(refusal) => {
                let reason = format!("refused-{}", refusal.code.as_str());
                self.lease_failed(ctx, env, lease, &reason);
            }
        }
    }

    /// The provider did not answer in time.
    pub(super) fn on_proposal_timeout(
        &mut self,
        ctx: &mut impl Sched,
        env: &mut Env<'_>,
        lease: u32,
    ) {
        if self
            .leases
            .get(lease as usize)
            .is_some_and(|r| r.state == LeaseState::Proposed)
        {
            self.lease_failed(ctx, env, lease, "provider-timeout");
        }
    }

    /// An attempt failed for `reason`: try the next provider.
    pub(super) fn lease_failed(
        &mut self,
        ctx: &mut impl Sched,
        env: &mut Env<'_>,
        lease: u32,
        reason: &str,
    ) {
        let Some(record) = self.leases.get_mut(lease as usize) else {
            return;
        };
        record.state = LeaseState::Failed;
        let a = record.agent;
        *self
            .stats
            .attempt_failures
            .entry(reason.to_owned())
            .or_default() += 1;
        if let Some(&twin) = self.doubles.get(&lease) {
            // One half of a double-spend: rejected when the other did not fail too.
            let other = self.leases.get(twin as usize).map(|r| r.state);
            if other != Some(LeaseState::Failed) {
                self.stats.double_spends_rejected += 1;
            }
            if other == Some(LeaseState::Locking) {
                return;
            }
        }
        if let Some(agent) = self.agents.get_mut(a as usize) {
            agent.busy = None;
        }
        self.attempt(ctx, env, a);
    }

    /// The arrival found nothing for `reason`.
    fn no_match(&mut self, ctx: &mut impl Sched, env: &mut Env<'_>, a: u32, reason: &str) {
        *self.stats.no_match.entry(reason.to_owned()).or_default() += 1;
        self.arrival_over(ctx, env, a, false);
    }

    /// An attempt succeeded: the arrival is over.
    fn attempt_over(&mut self, ctx: &mut impl Sched, env: &mut Env<'_>, a: u32, granted: bool) {
        self.arrival_over(ctx, env, a, granted);
    }

    /// The arrival is over; the next waiting one starts.
    fn arrival_over(&mut self, ctx: &mut impl Sched, env: &mut Env<'_>, a: u32, granted: bool) {
        if !granted {
            self.stats.unserved += 1;
        }
        let Some(agent) = self.agents.get_mut(a as usize) else {
            return;
        };
        agent.busy = None;
        agent.arrival = None;
        if !agent.backlog.is_empty() {
            let wanted = agent.backlog.remove(0);
            agent.arrival = Some((wanted, Vec::new()));
            self.attempt(ctx, env, a);
        }
    }

    /// The provider's final receipt: acknowledge it and rate.
    pub(super) fn on_receipt(
        &mut self,
        ctx: &mut impl Sched,
        lease: u32,
        receipt: Signed<UsageReceipt>,
    ) {
        let now = timestamp(ctx.now());
        let Some(record) = self.leases.get_mut(lease as usize) else {
            return;
        };
        if record.receipt {
            return;
        }
        record.receipt = true;
        record.state = LeaseState::Done;
        let (a, p) = (record.agent, record.provider);
        let Some(agent) = self.agents.get(a as usize) else {
            return;
        };
        let ran = matches!(receipt.body().ended, Some(TerminationReason::Exited { .. }));
        let score = if agent.role.colludes() {
            100
        } else if ran {
            90 + rng::below(ctx.rng(), 11) as u8
        } else {
            10
        };
        let key = agent.key.clone();
        let id = agent.id;
        let ack = ReceiptAck {
            agent: id,
            receipt: receipt.digest(),
            acked_at: now,
            delegation: None,
        };
        let Ok(ack) = Signed::sign(ack, &key) else {
            return;
        };
        self.ledger.append(
            now,
            &key,
            Fact::Usage(Usage {
                receipt,
                ack: Some(ack),
            }),
        );
        self.rate(now, a, p, lease, score);
    }

    /// Logs `a`'s rating of provider `p` for `lease`.
    fn rate(&mut self, now: agora_protocol::Timestamp, a: u32, p: u32, lease: u32, score: u8) {
        let (Some(agent), Some(provider), Some(id)) = (
            self.agents.get(a as usize),
            self.providers.get(p as usize),
            self.leases.get(lease as usize).and_then(|l| l.id),
        ) else {
            return;
        };
        let rating = Rating {
            rater: agent.id,
            provider: provider.id,
            lease: id,
            score,
            rated_at: now,
        };
        let key = agent.key.clone();
        if let Ok(rating) = Signed::sign(rating, &key) {
            self.stats.ratings += 1;
            self.ledger.append(now, &key, Fact::Rating(rating));
        }
    }

    /// The lease should be over: without a receipt, the agent complains.
    pub(super) fn on_lease_due(&mut self, ctx: &mut impl Sched, _env: &mut Env<'_>, lease: u32) {
        let Some(record) = self.leases.get_mut(lease as usize) else {
            return;
        };
        if record.receipt || record.state != LeaseState::Granted {
            return;
        }
        record.state = LeaseState::Done;
        let (a, p) = (record.agent, record.provider);
        self.stats.no_receipt += 1;
        let colludes = self
            .agents
            .get(a as usize)
            .is_some_and(|g| g.role.colludes());
        let score = if colludes { 100 } else { 0 };
        self.rate(timestamp(ctx.now()), a, p, lease, score);
    }

    /// The lock lapsed: unlock it unless it was settled.
    pub(super) fn on_unlock(&mut self, ctx: &mut impl Sched, env: &mut Env<'_>, lease: u32) {
        let Some(record) = self.leases.get(lease as usize) else {
            return;
        };
        let (Some(cert), Some(agent)) =
            (record.lock.as_ref(), self.agents.get(record.agent as usize))
        else {
            return;
        };
        let Some(id) = record.id else {
            return;
        };
        let Some((lock_seq, lock)) = self
            .audit
            .accounts()
            .get(&agent.id)
            .and_then(|acc| acc.locks().iter().find(|(_, l)| l.lease == id))
            .map(|(seq, l)| (*seq, l.op))
        else {
            return;
        };
        let op = Op::Unlock(Unlock {
            account: agent.id,
            lock_seq,
            lock,
        });
        let history = vec![cert.clone()];
        let node = agent.node;
        self.start_client(
            ctx,
            env,
            node,
            Purpose::Unlock { lease },
            op,
            history,
            Split::All,
        );
    }
}

//! The market: agents leasing from providers through the protocol's real machines.
//!
//! With a `[market]` section the world also runs, on the same engine, clock and RNG:
//!
//! - **agents** ([`agent`]) with ed25519 keys from the run's RNG: each signs a real
//!   [`SignupRecord`](agora_protocol::signup::SignupRecord) (an attestation from the
//!   committee's issuer, or a proof of work), asks the committee for its funds (a credit or
//!   a free-tier claim), then at Poisson arrivals picks offers from its home node's real
//!   offer book (gossip delivered them), ranks them by price and reputation, locks quota
//!   and sends a signed [`LeaseRequest`](agora_protocol::lease::LeaseRequest) with the lock
//!   certificate;
//! - **the quota committee** ([`quota`]): `3f + 1` real
//!   [`committee::Validator`](agora_protocol::committee::Validator)s on random nodes,
//!   requests and votes travelling over the network model (latency, loss, partitions),
//!   certificates gathered by the real
//!   [`Aggregator`](agora_protocol::committee::Aggregator); Byzantine validators withhold
//!   or double-sign;
//! - **providers** ([`provider`]): each runs a real
//!   [`Admission`](agora_protocol::admission::Admission) fed with its own published offers,
//!   checks the lock with [`committee::quota_answer`](agora_protocol::committee::quota_answer),
//!   signs grants and usage receipts and settles through the committee; liars never run,
//!   overstate capacity, or go offline mid-lease;
//! - **the evidence log and EigenTrust** ([`reputation`]): signups, grants, usage (with
//!   the agent's acknowledgement), ratings go into a real
//!   [`EvidenceLog`](agora_protocol::ledger::EvidenceLog); every epoch the real
//!   [`reputation::compute`](agora_protocol::ledger::reputation::compute) ranks providers,
//!   and agents weigh that trust when they pick;
//! - **an eclipse attempt** ([`eclipse`]): attacker nodes surround victims so that the
//!   victims' agents see only the attackers' offers;
//! - **the auditor** ([`audit`]): every certificate and grant is checked (no double-spend,
//!   no lease on an expired offer or without a covering lock, quota conserved); a
//!   violation stops the run.
//!
//! Simplification (documented in `sim/scenarios/README.md`): the evidence log is one
//! replica that every author appends to the moment it acts, rather than one log per node
//! kept in sync by gossip (the log's convergence under any delivery order is
//! property-tested in `protocol/`); reputation is what that replica computes.

pub mod agent;
pub mod audit;
pub mod eclipse;
pub mod event;
pub mod provider;
pub mod quota;
pub mod reputation;
pub mod setup;
pub mod stats;

use agora_protocol::committee::{Certificate, Request};
use agora_protocol::lease::{LeaseGrant, LeaseId, LeaseProposal, Refusal, UsageReceipt};
use agora_protocol::{Signed, Timestamp};

use crate::net_model::{NetModel, Transit};
use crate::time::SimTime;
use crate::workload::START_UNIX_MILLIS;
use crate::world::{Sched, SimNode};

pub use event::Event;
pub use stats::{MarketSummary, Stats};

/// What the market reads of the world it runs in.
#[derive(Debug)]
pub struct Env<'a> {
    /// The network model (sending draws from it and fills its links).
    pub net: &'a mut NetModel,
    /// The nodes (their offer books and whether they are up).
    pub nodes: &'a [SimNode],
    /// The run's memoising verifier: a vote checked when its validator's answer arrives is
    /// not checked again inside the certificate a provider receives.
    pub verifier: &'a crate::verifier::MemoVerifier,
}

impl Env<'_> {
    fn up(&self, node: u32) -> bool {
        self.nodes.get(node as usize).is_some_and(SimNode::is_up)
    }

    fn epoch(&self, node: u32) -> u32 {
        self.nodes.get(node as usize).map_or(0, |n| n.epoch)
    }
}

/// A message in flight between two nodes.
#[derive(Debug)]
pub enum Mail {
    /// A quota client's request to a validator.
    QuotaRequest {
        /// The client.
        client: u32,
        /// The validator (index).
        validator: u16,
        /// The request.
        request: Box<Request>,
    },
    /// A validator's answer, as its wire bytes (decoded and verified by the client).
    QuotaAnswer {
        /// The client.
        client: u32,
        /// The validator (index).
        validator: u16,
        /// `Answer::encode` bytes.
        bytes: Vec<u8>,
    },
    /// A certificate its client sends to every validator once it formed (as the node
    /// does), so the validators' views of the accounts stay current: a free-tier grant or a
    /// settlement is otherwise never shown to them (a request's proofs carry only the
    /// previous chain position).
    Certified {
        /// The validator (index).
        validator: u16,
        /// The certificate.
        certificate: Box<Certificate>,
    },
    /// An agent's lease proposal to a provider.
    Proposal {
        /// The lease attempt.
        lease: u32,
        /// The proposal.
        proposal: Box<LeaseProposal>,
    },
    /// The provider's answer.
    ProposalAnswer {
        /// The lease attempt.
        lease: u32,
        /// The signed grant or the refusal.
        answer: Box<Result<Signed<LeaseGrant>, Refusal>>,
    },
    /// The provider's final usage receipt.
    Receipt {
        /// The lease.
        lease: u32,
        /// The receipt.
        receipt: Box<Signed<UsageReceipt>>,
    },
}

/// An invariant that failed: the run stops here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// When.
    pub at: SimTime,
    /// What was violated, and by which event.
    pub what: String,
}

/// How one lease attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Waiting for the lock certificate.
    Locking,
    /// The proposal is on its way to the provider.
    Proposed,
    /// Granted and running (as far as the agent knows).
    Granted,
    /// Refused, timed out or not locked.
    Failed,
    /// Over: a receipt came, or the agent gave up on one.
    Done,
}

/// One lease attempt: an agent, a provider, a signed request and its lock.
#[derive(Debug)]
pub struct LeaseRecord {
    /// The agent.
    pub agent: u32,
    /// The provider (index).
    pub provider: u32,
    /// The lease id (the request's digest), once signed.
    pub id: Option<LeaseId>,
    /// The lock certificate.
    pub lock: Option<Certificate>,
    /// The grant, once the provider answered.
    pub grant: Option<Signed<LeaseGrant>>,
    /// When the agent wanted the lease (the arrival, for time-to-lease).
    pub wanted_at: SimTime,
    /// Its state.
    pub state: LeaseState,
    /// Whether a receipt came.
    pub receipt: bool,
    /// Whether the lock was settled or unlocked.
    pub closed: bool,
}

impl LeaseRecord {
    /// A new attempt of `agent` at `provider` for the signed request `id`, waiting for its
    /// lock; `wanted_at` is the arrival it serves.
    pub fn new(agent: u32, provider: u32, id: LeaseId, wanted_at: SimTime) -> Self {
        LeaseRecord {
            agent,
            provider,
            id: Some(id),
            lock: None,
            grant: None,
            wanted_at,
            state: LeaseState::Locking,
            receipt: false,
            closed: false,
        }
    }
}

/// The protocol timestamp of simulated instant `t` (as the world's offers use).
pub fn timestamp(t: SimTime) -> Timestamp {
    crate::workload::timestamp(t)
}

/// The simulated instant of protocol timestamp `ts` (zero before the simulated start).
pub fn sim_time(ts: Timestamp) -> SimTime {
    SimTime::from_micros(
        ts.as_unix_millis()
            .saturating_sub(START_UNIX_MILLIS)
            .saturating_mul(1_000),
    )
}

/// Bytes a mail takes on the wire (near enough for the network model's bandwidth).
fn wire_size(mail: &Mail) -> usize {
    match mail {
        Mail::QuotaRequest { request, .. } => request.encode().map_or(1024, |b| b.len()),
        Mail::QuotaAnswer { bytes, .. } => bytes.len(),
        Mail::Certified { certificate, .. } => certificate.encode().map_or(1024, |b| b.len()),
        Mail::Proposal { proposal, .. } => {
            // A lock certificate: the op and a quorum of (id, signature) pairs.
            proposal.request.as_bytes().len() + proposal.lock.as_ref().map_or(0, |_| 512)
        }
        Mail::ProposalAnswer { answer, .. } => match answer.as_ref() {
            Ok(grant) => grant.as_bytes().len(),
            Err(_) => 96,
        },
        Mail::Receipt { receipt, .. } => receipt.as_bytes().len(),
    }
}

/// The mailbox: messages in flight, by slot (slots are reused in a fixed order, so the
/// numbering is deterministic).
#[derive(Debug, Default)]
pub struct Mailbox {
    slots: Vec<Option<Mail>>,
    free: Vec<u32>,
}

impl Mailbox {
    fn post(&mut self, mail: Mail) -> u32 {
        if let Some(id) = self.free.pop() {
            if let Some(slot) = self.slots.get_mut(id as usize) {
                *slot = Some(mail);
            }
            id
        } else {
            self.slots.push(Some(mail));
            (self.slots.len() - 1) as u32
        }
    }

    fn take(&mut self, id: u32) -> Option<Mail> {
        let mail = self.slots.get_mut(id as usize)?.take();
        if mail.is_some() {
            self.free.push(id);
        }
        mail
    }
}

/// Sends `mail` from node `from` to node `to` over the network model, now; counts it.
fn send(
    ctx: &mut impl Sched,
    env: &mut Env<'_>,
    mailbox: &mut Mailbox,
    stats: &mut Stats,
    from: u32,
    to: u32,
    mail: Mail,
) {
    let bytes = wire_size(&mail);
    stats.messages += 1;
    stats.bytes += bytes as u64;
    let now = ctx.now();
    match env.net.send(ctx.rng(), now, from, to, bytes) {
        Transit::Arrives(at) => {
            let id = mailbox.post(mail);
            ctx.at(
                at,
                to,
                crate::world::Event::Market(Event::Deliver { mail: id }),
            );
        }
        Transit::Lost | Transit::Blocked => stats.lost += 1,
    }
}

/// Schedules a market event for `node` at `at`.
fn at(ctx: &mut impl Sched, at: SimTime, node: u32, event: Event) {
    ctx.at(at, node, crate::world::Event::Market(event));
}

pub use setup::Market;

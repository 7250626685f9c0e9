//! The quota committee over the simulated network: real validators, real aggregators.
//!
//! A [`Client`] wraps one [`Aggregator`] (an agent's credit, free-tier claim, lock or
//! unlock; a provider's settle). Its transmits travel from the client's node to each
//! validator's node; a validator answers with [`Validator::handle_request`] (storing is
//! instant in the simulation, so a `Persist` is released at once) and the answer's wire
//! bytes travel back, where [`Aggregator::handle_bytes`] decodes and verifies them. Timers
//! follow [`Aggregator::poll_timeout`].
//!
//! Byzantine validators: `withhold` never answers; `double-sign` signs a [`Vote`] for
//! whatever op it is asked about, bypassing the one-op-per-slot rule. A double-spending
//! agent ([`Split`]) sends each of its two conflicting ops to the Byzantine validators and
//! to one half of the honest ones.

use agora_protocol::committee::{
    Aggregator, AggregatorConfig, Answer, Certificate, Event as AggEvent, Failure, Op, Outcome,
    Request, Validator, Vote,
};
use agora_protocol::{AgoraId, Signed};
use ed25519_dalek::SigningKey;

use super::{Env, Event, Mail, Market, at, send, sim_time, timestamp};
use crate::scenario::Byzantine;
use crate::time::SimTime;
use crate::world::Sched;

/// One committee member on a node.
#[derive(Debug)]
pub struct SimValidator {
    /// Its node.
    pub node: u32,
    /// Its id.
    pub id: AgoraId,
    /// Its key (a double-signing validator signs with it directly).
    pub key: SigningKey,
    /// The protocol's validator.
    pub machine: Validator<SigningKey>,
    /// How it misbehaves, if it does.
    pub byzantine: Option<Byzantine>,
}

/// What a quota client is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An agent's credit or free-tier claim (`attempt` counts free-tier retries).
    Fund {
        /// The agent.
        agent: u32,
        /// Tries so far.
        attempt: u32,
    },
    /// An agent's lock for a lease.
    Lock {
        /// The lease.
        lease: u32,
    },
    /// A provider's settlement of a lease.
    Settle {
        /// The lease.
        lease: u32,
    },
    /// An agent's unlock of a lapsed lock.
    Unlock {
        /// The lease.
        lease: u32,
    },
}

/// Which validators a double-spender sends one of its two ops to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Everyone (an honest client).
    All,
    /// The Byzantine validators and the first half of the honest ones.
    FirstHalf,
    /// The Byzantine validators and the second half of the honest ones.
    SecondHalf,
}

/// One op on its way to a certificate.
#[derive(Debug)]
pub struct Client {
    /// The node it runs on.
    pub node: u32,
    /// What for.
    pub purpose: Purpose,
    /// The protocol's aggregator.
    pub aggregator: Aggregator,
    /// Which validators it talks to.
    pub split: Split,
    /// The timer armed (so one is not scheduled twice).
    pub timer: Option<SimTime>,
}

impl Market {
    /// Starts a client for `op` on `node` with the account's `history` of certificates.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call per kind of op; a struct would only rename them"
    )]
    pub(super) fn start_client(
        &mut self,
        ctx: &mut impl Sched,
        env: &mut Env<'_>,
        node: u32,
        purpose: Purpose,
        op: Op,
        history: Vec<Certificate>,
        split: Split,
    ) {
        let aggregator = Aggregator::new(
            self.committee.clone(),
            op,
            history,
            timestamp(ctx.now()),
            AggregatorConfig::default(),
        );
        let id = self.clients.len() as u32;
        self.clients.push(Some(Client {
            node,
            purpose,
            aggregator,
            split,
            timer: None,
        }));
        self.stats.quota_ops += 1;
        self.drive(ctx, env, id);
    }

    /// Whether validator `v` is one `split` sends to.
    fn reaches(&self, split: Split, v: u16) -> bool {
        let Some(validator) = self.validators.get(usize::from(v)) else {
            return false;
        };
        if split == Split::All || validator.byzantine.is_some() {
            return true;
        }
        let honest: Vec<u16> = self
            .validators
            .iter()
            .enumerate()
            .filter(|(_, v)| v.byzantine.is_none())
            .map(|(i, _)| i as u16)
            .collect();
        let half = honest.len() / 2;
        let position = honest.iter().position(|&h| h == v).unwrap_or(0);
        match split {
            Split::FirstHalf => position < half,
            Split::SecondHalf | Split::All => position >= half,
        }
    }

    /// Sends the client's transmits, handles its outcome, arms its timer.
    fn drive(&mut self, ctx: &mut impl Sched, env: &mut Env<'_>, id: u32) {
        let mut outgoing = Vec::new();
        let mut outcome = None;
        let mut timer = None;
        if let Some(Some(client)) = self.clients.get_mut(id as usize) {
            while let Some(t) = client.aggregator.poll_transmit() {
                outgoing.push((client.node, t));
            }
            outcome = client.aggregator.poll_event();
            if let Some(next) = client.aggregator.poll_timeout() {
                let next = sim_time(next);
                if client
                    .timer
                    .is_none_or(|armed| next < armed || armed <= ctx.now())
                {
                    client.timer = Some(next);
                    timer = Some((client.node, next));
                }
            }
        }
        let split = self
            .clients
            .get(id as usize)
            .and_then(Option::as_ref)
            .map_or(Split::All, |c| c.split);
        for (from, t) in outgoing {
            let Some(&v) = self.validator_index.get(&t.to) else {
                continue;
            };
            if !self.reaches(split, v) {
                continue;
            }
            let Some(to) = self.validators.get(usize::from(v)).map(|v| v.node) else {
                continue;
            };
            let mail = Mail::QuotaRequest {
                client: id,
                validator: v,
                request: Box::new(t.request),
            };
            send(ctx, env, &mut self.mailbox, &mut self.stats, from, to, mail);
        }
        if let Some((node, next)) = timer {
            at(ctx, next, node, Event::ClientTimer { client: id });
        }
        if let Some(event) = outcome {
            let client = self
                .clients
                .get_mut(id as usize)
                .and_then(Option::take)
                .map(|c| (c.purpose, c.node));
            if let Some((purpose, node)) = client {
                match event {
                    AggEvent::Certified(cert) => {
                        self.disseminate(ctx, env, node, &cert);
                        self.on_certified(ctx, env, purpose, cert);
                    }
                    AggEvent::Failed(failure) => self.on_failed(ctx, env, purpose, &failure),
                }
            }
        }
    }

    /// Sends a new certificate from `node` to every validator (the node's `Certified`).
    fn disseminate(
        &mut self,
        ctx: &mut impl Sched,
        env: &mut Env<'_>,
        node: u32,
        cert: &Certificate,
    ) {
        for v in 0..self.validators.len() {
            let Some(to) = self.validators.get(v).map(|v| v.node) else {
                continue;
            };
            let mail = Mail::Certified {
                validator: v as u16,
                certificate: Box::new(cert.clone()),
            };
            send(ctx, env, &mut self.mailbox, &mut self.stats, node, to, mail);
        }
    }

    /// A validator's node received a certificate: its view applies it (a Byzantine one
    /// keeps its view too; it misbehaves only in what it signs).
    pub(super) fn on_certified_mail(&mut self, v: u16, cert: &Certificate) {
        if let Some(validator) = self.validators.get_mut(usize::from(v))
            && validator.machine.handle_certificate(cert).is_err()
        {
            // Earlier certificates of the account are missing: a later request's proofs
            // bring them.
            self.stats.certificates_not_applied += 1;
        }
    }

    /// A validator's node received a request.
    pub(super) fn on_quota_request(
        &mut self,
        ctx: &mut impl Sched,
        env: &mut Env<'_>,
        client: u32,
        v: u16,
        request: &Request,
    ) {
        let now = timestamp(ctx.now());
        let Some(validator) = self.validators.get_mut(usize::from(v)) else {
            return;
        };
        let answer = match validator.byzantine {
            Some(Byzantine::Withhold) => None,
            Some(Byzantine::DoubleSign) => {
                let vote = Vote {
                    genesis: self.committee.digest(),
                    slot: request.op.slot(),
                    op: request.op.digest(),
                };
                Signed::sign(vote, &validator.key).ok().map(Answer::Vote)
            }
            None => match validator.machine.handle_request(now, request) {
                // Storing is instant here: the vote is durable at once.
                Outcome::Persist(p) => Some(Answer::Vote(validator.machine.release(p))),
                Outcome::Vote(vote) => Some(Answer::Vote(vote)),
                Outcome::Pending => None,
                Outcome::Refused(r) => Some(Answer::Refused(r)),
            },
        };
        let (Some(answer), Some(to)) = (
            answer,
            self.clients
                .get(client as usize)
                .and_then(Option::as_ref)
                .map(|c| c.node),
        ) else {
            return;
        };
        let Ok(bytes) = answer.encode() else {
            return;
        };
        let from = validator.node;
        let mail = Mail::QuotaAnswer {
            client,
            validator: v,
            bytes,
        };
        send(ctx, env, &mut self.mailbox, &mut self.stats, from, to, mail);
    }

    /// A client's node received a validator's answer.
    pub(super) fn on_quota_answer(
        &mut self,
        ctx: &mut impl Sched,
        env: &mut Env<'_>,
        client: u32,
        v: u16,
        bytes: &[u8],
    ) {
        let now = timestamp(ctx.now());
        let Some(from) = self.validators.get(usize::from(v)).map(|v| v.id) else {
            return;
        };
        let Some(Some(c)) = self.clients.get_mut(client as usize) else {
            return;
        };
        if c.aggregator
            .handle_bytes(now, from, bytes, env.verifier)
            .is_err()
        {
            self.stats.answers_ignored += 1;
        }
        self.drive(ctx, env, client);
    }

    /// A client's retry or deadline timer.
    pub(super) fn on_client_timer(&mut self, ctx: &mut impl Sched, env: &mut Env<'_>, client: u32) {
        let now = ctx.now();
        let Some(Some(c)) = self.clients.get_mut(client as usize) else {
            return;
        };
        if c.timer.is_some_and(|t| t > now) {
            // A stale timer: a later one is armed.
            return;
        }
        c.timer = None;
        c.aggregator.handle_timeout(timestamp(now));
        self.drive(ctx, env, client);
    }

    /// Every certificate goes past the auditor first.
    fn on_certified(
        &mut self,
        ctx: &mut impl Sched,
        env: &mut Env<'_>,
        purpose: Purpose,
        cert: Certificate,
    ) {
        self.stats.certificates += 1;
        if let Err(what) = self.audit.certified(&cert) {
            self.violated(ctx.now(), format!("{what} (certificate for {purpose:?})"));
            return;
        }
        match purpose {
            Purpose::Fund { agent, .. } => self.on_funded(ctx, env, agent, cert),
            Purpose::Lock { lease } => self.on_locked(ctx, env, lease, cert),
            Purpose::Settle { lease } | Purpose::Unlock { lease } => {
                if let Some(l) = self.leases.get_mut(lease as usize) {
                    l.closed = true;
                }
                if matches!(purpose, Purpose::Settle { .. }) {
                    self.stats.settled += 1;
                } else {
                    self.stats.unlocked += 1;
                }
            }
        }
    }

    fn on_failed(
        &mut self,
        ctx: &mut impl Sched,
        env: &mut Env<'_>,
        purpose: Purpose,
        failure: &Failure,
    ) {
        let timed_out = matches!(failure, Failure::TimedOut { .. });
        self.stats.quota_failures += 1;
        match purpose {
            Purpose::Fund { agent, attempt } => self.on_fund_failed(ctx, env, agent, attempt),
            Purpose::Lock { lease } => {
                let reason = if timed_out {
                    "quota-timeout"
                } else {
                    "quota-refused"
                };
                self.lease_failed(ctx, env, lease, reason);
            }
            Purpose::Settle { .. } | Purpose::Unlock { .. } => {}
        }
    }
}

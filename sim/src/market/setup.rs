//! The market's state, its set-up at time zero, and the dispatch of its events.

use core::time::Duration;
use std::collections::BTreeMap;

use agora_protocol::committee::{Committee, FreeTier, Genesis, LockRules, Validator};
use agora_protocol::lease::LeaseRequest;
use agora_protocol::offer::Prices;
use agora_protocol::{AgoraId, Offer, Signed, Signer, Timestamp};
use ed25519_dalek::SigningKey;
use rand_core::Rng;

use super::agent::{Agent, Role};
use super::audit::Auditor;
use super::eclipse::Eclipse;
use super::provider::MarketProvider;
use super::quota::{Client, SimValidator};
use super::reputation::Ledger;
use super::{Env, Event, LeaseRecord, Mail, Mailbox, Stats, Violation, at, timestamp};
use crate::rng;
use crate::scenario::{self, Attack, Scenario};
use crate::time::{SimDuration, SimTime};
use crate::world::{Sched, WORLD};

/// Why the market could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The committee's genesis does not check.
    #[error("quota committee: {0}")]
    Genesis(#[from] agora_protocol::committee::GenesisError),
    /// A validator would not start.
    #[error("validator: {0}")]
    Validator(#[from] agora_protocol::committee::RestoreError),
    /// The evidence log's configuration.
    #[error("evidence log: {0}")]
    Ledger(#[from] agora_protocol::ledger::ConfigError),
}

/// What a provider advertises in the market (overriding the sample offer's figures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferTerms {
    /// Its prices.
    pub prices: Prices,
    /// The vCPU it advertises as free (thousandths).
    pub vcpu_milli: u32,
    /// The memory it advertises as free (MiB).
    pub memory_mib: u64,
}

/// The whole market of a run.
#[derive(Debug)]
pub struct Market {
    pub(super) config: scenario::Market,
    pub(super) reputation_config: scenario::Reputation,
    pub(super) committee: Committee,
    pub(super) issuer: SigningKey,
    /// The key that issues signup challenges (one for the whole simulated network).
    pub(super) signup_node: SigningKey,
    pub(super) validators: Vec<SimValidator>,
    pub(super) validator_index: BTreeMap<AgoraId, u16>,
    pub(super) agents: Vec<Agent>,
    pub(super) providers: Vec<MarketProvider>,
    pub(super) leases: Vec<LeaseRecord>,
    /// Each lease attempt's signed request.
    pub(super) requests: BTreeMap<u32, Signed<LeaseRequest>>,
    /// A double-spend's two lease attempts, each naming the other.
    pub(super) doubles: BTreeMap<u32, u32>,
    /// Provider id → index.
    pub(super) provider_index: BTreeMap<AgoraId, u32>,
    pub(super) clients: Vec<Option<Client>>,
    pub(super) mailbox: Mailbox,
    pub(super) audit: Auditor,
    pub(super) ledger: Ledger,
    pub(super) stats: Stats,
    pub(super) violation: Option<Violation>,
    /// The eclipse attempt, with `adversary.kind = "eclipse"`.
    pub(super) eclipse: Option<Eclipse>,
}

impl Market {
    /// Sets the market of `scenario` up at time zero: committee, agents, providers (the
    /// world's, given as `(node, secret key)`), and their first events. Draws from the
    /// run's RNG only here and in market events, so runs without a market are unchanged.
    ///
    /// # Errors
    /// [`SetupError`] when the derived genesis or log configuration does not check.
    pub fn start(
        ctx: &mut impl Sched,
        scenario: &Scenario,
        providers: &[(u32, SigningKey)],
    ) -> Result<Option<Self>, SetupError> {
        let Some(config) = scenario.market().cloned() else {
            return Ok(None);
        };
        let committee_config = scenario.committee();
        let adversary = scenario.adversary();
        let reputation_config = scenario.reputation();
        let count = scenario.nodes.count;
        fn key(ctx: &mut impl Sched) -> SigningKey {
            let mut s = [0u8; 32];
            ctx.rng().fill_bytes(&mut s);
            SigningKey::from_bytes(&s)
        }
        let issuer = key(ctx);
        let signup_node = key(ctx);
        let n = 3 * committee_config.f + 1;
        let validator_keys: Vec<SigningKey> = (0..n).map(|_| key(ctx)).collect();
        let genesis = Genesis {
            f: committee_config.f,
            validators: validator_keys.iter().map(Signer::id).collect(),
            issuers: vec![issuer.id()],
            start_unix_secs: timestamp(SimTime::ZERO).as_unix_millis() / 1_000,
            epoch_secs: (committee_config.epoch.as_micros() / 1_000_000).max(1),
            free_tier: FreeTier {
                allowance_micro: committee_config
                    .free_tier_credits
                    .saturating_mul(agora_protocol::signup::MICRO_PER_CREDIT),
                cap_per_epoch: committee_config.free_tier_cap,
            },
            locks: LockRules {
                settle_grace_secs: (committee_config.settle_grace.as_micros() / 1_000_000).max(1),
                ..LockRules::default()
            },
        };
        let committee = Committee::new(genesis)?;
        // The last `byzantine` validators misbehave; each lives on a random node.
        let honest = n.saturating_sub(committee_config.byzantine);
        let mut validators = Vec::new();
        let mut validator_index = BTreeMap::new();
        for (i, k) in validator_keys.into_iter().enumerate() {
            let node = rng::below(ctx.rng(), u64::from(count)) as u32;
            validator_index.insert(k.id(), i as u16);
            let byzantine = (i as u32 >= honest).then_some(committee_config.behaviour);
            validators.push(SimValidator {
                node,
                id: k.id(),
                machine: Validator::new(committee.clone(), k.clone())?,
                key: k,
                byzantine,
            });
        }
        // Providers: the first `lying_share` of them (the world chose them at random) lie.
        let liars = (providers.len() as f64 * config.providers.lying_share.0).round() as usize;
        let [low, high] = config.providers.vcpu_price;
        let mut market_providers = Vec::new();
        for (i, (node, k)) in providers.iter().enumerate() {
            let lie = (i < liars).then_some(config.providers.lie);
            let spread = high.saturating_sub(low);
            let mut vcpu_price = low + rng::below(ctx.rng(), spread.saturating_add(1));
            if lie.is_some() {
                vcpu_price = ((low as f64) * config.providers.liar_discount.0).round() as u64;
            }
            market_providers.push(MarketProvider::new(
                *node,
                k.clone(),
                lie,
                vcpu_price.max(1),
                &config.providers,
            ));
        }
        // An eclipse's victims and attackers (drawn only for one).
        let eclipse = (adversary.kind == Attack::Eclipse).then(|| {
            let nodes: Vec<u32> = providers.iter().map(|(node, _)| *node).collect();
            Eclipse::choose(ctx.rng(), count, &nodes, liars, &adversary)
        });
        // Agents: honest, then attackers, then (for a Sybil flood) the Sybils on top.
        let attackers = (f64::from(config.agents) * adversary.fraction.0).round() as u32;
        let (regular_attackers, sybils) = match adversary.kind {
            Attack::None => (0, 0),
            Attack::Sybil => (0, attackers),
            _ => (attackers.min(config.agents), 0),
        };
        let mut agents = Vec::new();
        for a in 0..config.agents + sybils {
            let role = if a >= config.agents {
                Role::Sybil
            } else if a >= config.agents - regular_attackers {
                match adversary.kind {
                    Attack::ColludingRaters => Role::Colluder,
                    Attack::FreeRiders => Role::FreeRider,
                    Attack::DoubleSpend => Role::DoubleSpender,
                    // An eclipse's share of agents are honest ones living on the victims.
                    Attack::None | Attack::Sybil | Attack::Eclipse => Role::Honest,
                }
            } else {
                Role::Honest
            };
            let mut node = rng::below(ctx.rng(), u64::from(count)) as u32;
            if let Some(e) = &eclipse
                && a >= config.agents - regular_attackers
                && !e.victims().is_empty()
            {
                let i = (a - (config.agents - regular_attackers)) as usize % e.victims().len();
                node = e.victims().get(i).copied().unwrap_or(node);
            }
            let attested = match role {
                Role::Sybil => false,
                Role::Colluder | Role::DoubleSpender => true,
                Role::Honest | Role::FreeRider => rng::chance(ctx.rng(), config.attested_share),
            };
            let agent = Agent::new(key(ctx), node, role, attested);
            let when = if role == Role::Sybil {
                SimTime::ZERO
                    .saturating_add(adversary.at.0)
                    .saturating_add(SimDuration::from_micros(rng::below(ctx.rng(), 1_000_000)))
            } else {
                SimTime::ZERO.saturating_add(SimDuration::from_micros(rng::below(
                    ctx.rng(),
                    config.start.as_micros().max(1),
                )))
            };
            at(
                ctx,
                when,
                node,
                Event::Signup {
                    agent: agents.len() as u32,
                },
            );
            agents.push(agent);
        }
        at(
            ctx,
            SimTime::ZERO.saturating_add(reputation_config.epoch.0),
            WORLD,
            Event::ReputationEpoch,
        );
        let provider_index = market_providers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id, i as u32))
            .collect();
        let audit = Auditor::new(committee.clone());
        let ledger = Ledger::new(&reputation_config)?;
        Ok(Some(Market {
            config,
            reputation_config,
            committee,
            issuer,
            signup_node,
            validators,
            validator_index,
            agents,
            providers: market_providers,
            leases: Vec::new(),
            requests: BTreeMap::new(),
            doubles: BTreeMap::new(),
            provider_index,
            clients: Vec::new(),
            mailbox: Mailbox::default(),
            audit,
            ledger,
            stats: Stats::default(),
            violation: None,
            eclipse,
        }))
    }

    /// The violation that stopped the run, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    /// The counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The auditor (accounts as certified, double-spends, overspend).
    pub fn audit(&self) -> &Auditor {
        &self.audit
    }

    /// The evidence log and reputation history.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The eclipse attempt, if the scenario has one.
    pub fn eclipse(&self) -> Option<&Eclipse> {
        self.eclipse.as_ref()
    }

    /// The quota committee.
    pub fn committee(&self) -> &Committee {
        &self.committee
    }

    /// Records a violation and asks the engine to stop.
    pub(super) fn violated(&mut self, now: SimTime, what: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation { at: now, what });
        }
    }

    /// What provider `index` advertises now (its prices, and the capacity it claims).
    pub fn offer_terms(&mut self, index: u32, env: &Env<'_>, now: Timestamp) -> Option<OfferTerms> {
        let p = self.providers.get_mut(index as usize)?;
        p.sync_epoch(env.epoch(p.node));
        Some(p.terms(now))
    }

    /// Provider `index` published `offer`: its admission honours it from now on.
    pub fn offer_published(&mut self, index: u32, offer: &Signed<Offer>) {
        if let Some(p) = self.providers.get_mut(index as usize) {
            p.admission.offer_published(offer.clone());
            p.published(offer);
        }
    }

    /// Handles one market event addressed to `node`.
    pub fn handle(&mut self, ctx: &mut impl Sched, env: &mut Env<'_>, node: u32, event: Event) {
        match event {
            Event::Deliver { mail } => {
                let Some(mail) = self.mailbox.take(mail) else {
                    return;
                };
                if !env.up(node) {
                    self.stats.undeliverable += 1;
                    return;
                }
                match mail {
                    Mail::QuotaRequest {
                        client,
                        validator,
                        request,
                    } => self.on_quota_request(ctx, env, client, validator, &request),
                    Mail::QuotaAnswer {
                        client,
                        validator,
                        bytes,
                    } => self.on_quota_answer(ctx, env, client, validator, &bytes),
                    Mail::Certified {
                        validator,
                        certificate,
                    } => self.on_certified_mail(validator, &certificate),
                    Mail::Proposal { lease, proposal } => {
                        self.on_proposal(ctx, env, lease, *proposal);
                    }
                    Mail::ProposalAnswer { lease, answer } => {
                        self.on_proposal_answer(ctx, env, lease, *answer);
                    }
                    Mail::Receipt { lease, receipt } => self.on_receipt(ctx, lease, *receipt),
                }
            }
            Event::Signup { agent } => self.on_signup(ctx, env, agent),
            Event::Arrive { agent } => self.on_arrive(ctx, env, agent),
            Event::ClientTimer { client } => self.on_client_timer(ctx, env, client),
            Event::ProposalTimeout { lease } => self.on_proposal_timeout(ctx, env, lease),
            Event::LeaseEnd { lease } => self.on_lease_end(ctx, env, lease),
            Event::LeaseDue { lease } => self.on_lease_due(ctx, env, lease),
            Event::Unlock { lease } => self.on_unlock(ctx, env, lease),
            Event::ReputationEpoch => self.on_epoch(ctx),
        }
    }

    /// The lease lifetime agents ask for.
    pub(super) fn lifetime(&self) -> Duration {
        Duration::from_micros(self.config.lease_lifetime.as_micros())
    }
}

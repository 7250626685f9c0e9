//! The market sections: `[market]` (agents and providers), `[committee]` (the quota
//! committee), `[adversary]` (attackers among the agents) and `[reputation]` (EigenTrust
//! epochs). All optional; a scenario without `[market]` simulates offer gossip only, exactly
//! as before.

use serde::Deserialize;

use super::super::values::{NonNegative, Probability, Span};

/// Agents, their workload and budgets, and what providers sell.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawMarket")]
pub struct Market {
    /// Agents (each homed on a random initial node, whose offer book it reads).
    pub agents: u32,
    /// When agents sign up: uniform times within `[0, start)`.
    pub start: Span,
    /// Mean time between one agent's lease requests (a Poisson process per agent).
    pub mean_interarrival: Span,
    /// Each lease's lifetime.
    pub lease_lifetime: Span,
    /// vCPU (thousandths) each lease asks for.
    pub vcpu_milli: u32,
    /// Memory (MiB) each lease asks for.
    pub memory_mib: u64,
    /// The most an agent pays, micro-credits per second.
    pub max_price_per_sec: u64,
    /// Share of agents with an attestation from the committee's issuer (credited with
    /// `budget_credits`); the others sign up unattested (proof of work) and claim the
    /// free tier.
    pub attested_share: f64,
    /// Credits an attested agent's attestation grants.
    pub budget_credits: u64,
    /// Offers an agent considers (the cheapest that fit, at most [`MAX_CONSIDER`]), among
    /// which it picks by
    /// reputation.
    pub consider: u32,
    /// How long an agent waits for a provider's answer (or a quota certificate).
    pub request_timeout: Span,
    /// What providers sell.
    pub providers: Providers,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMarket {
    agents: u32,
    #[serde(default = "default_start")]
    start: Span,
    #[serde(default = "default_interarrival")]
    mean_interarrival: Span,
    #[serde(default = "default_lifetime")]
    lease_lifetime: Span,
    #[serde(default = "default_vcpu")]
    vcpu_milli: u32,
    #[serde(default = "default_memory")]
    memory_mib: u64,
    #[serde(default = "default_max_price")]
    max_price_per_sec: u64,
    #[serde(default = "default_attested")]
    attested_share: Probability,
    #[serde(default = "default_budget")]
    budget_credits: u64,
    #[serde(default = "default_consider")]
    consider: u32,
    #[serde(default = "default_timeout")]
    request_timeout: Span,
    #[serde(default)]
    providers: Providers,
}

fn default_start() -> Span {
    Span::secs(30)
}
fn default_interarrival() -> Span {
    Span::secs(300)
}
fn default_lifetime() -> Span {
    Span::secs(300)
}
fn default_vcpu() -> u32 {
    500
}
fn default_memory() -> u64 {
    256
}
fn default_max_price() -> u64 {
    200
}
fn default_attested() -> Probability {
    Probability(1.0)
}
fn default_budget() -> u64 {
    1_000
}
/// The most offers an agent may weigh per wish (a book's whole market at 10,000
/// providers).
pub const MAX_CONSIDER: u32 = 10_000;

fn default_consider() -> u32 {
    64
}
fn default_timeout() -> Span {
    Span::secs(10)
}

impl TryFrom<RawMarket> for Market {
    type Error = String;
    fn try_from(raw: RawMarket) -> Result<Self, String> {
        if raw.agents == 0 {
            return Err("market.agents must be at least 1".into());
        }
        let lifetime = raw.lease_lifetime.as_micros() / 1_000_000;
        if lifetime == 0 || lifetime > 72 * 3600 {
            return Err(format!(
                "market.lease_lifetime must be from 1s to 72h (the contained tier's longest), got {}",
                raw.lease_lifetime
            ));
        }
        if raw.mean_interarrival.as_micros() < 1_000 {
            return Err("market.mean_interarrival must be at least 1ms".into());
        }
        if raw.vcpu_milli == 0 || raw.vcpu_milli > 1000 {
            return Err(format!(
                "market.vcpu_milli must be from 1 to 1000 (the contained tier's limit), got {}",
                raw.vcpu_milli
            ));
        }
        if raw.memory_mib == 0 || raw.memory_mib > 1024 {
            return Err(format!(
                "market.memory_mib must be from 1 to 1024 (the contained tier's limit), got {}",
                raw.memory_mib
            ));
        }
        if raw.consider == 0 || raw.consider > MAX_CONSIDER {
            return Err(format!(
                "market.consider must be from 1 to {MAX_CONSIDER}, got {}",
                raw.consider
            ));
        }
        if raw.request_timeout.as_micros() < 1_000 {
            return Err("market.request_timeout must be at least 1ms".into());
        }
        Ok(Market {
            agents: raw.agents,
            start: raw.start,
            mean_interarrival: raw.mean_interarrival,
            lease_lifetime: raw.lease_lifetime,
            vcpu_milli: raw.vcpu_milli,
            memory_mib: raw.memory_mib,
            max_price_per_sec: raw.max_price_per_sec,
            attested_share: raw.attested_share.0,
            budget_credits: raw.budget_credits,
            consider: raw.consider,
            request_timeout: raw.request_timeout,
            providers: raw.providers,
        })
    }
}

/// How a lying provider lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lie {
    /// Accepts leases (and takes the lock) but never runs them: no receipt.
    NeverRun,
    /// Advertises four times the capacity it has, so most requests find it full.
    Overstate,
    /// Runs its leases, but its node crashes in the middle of each one.
    Offline,
}

impl Lie {
    /// The name used in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Lie::NeverRun => "never-run",
            Lie::Overstate => "overstate",
            Lie::Offline => "offline",
        }
    }
}

/// What providers sell and how many lie.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Providers {
    /// vCPU each provider really has (thousandths).
    pub vcpu_milli: u32,
    /// Memory each provider really has (MiB).
    pub memory_mib: u64,
    /// Price per vCPU, micro-credits per second: each provider draws one uniformly from
    /// `[low, high]`.
    pub vcpu_price: [u64; 2],
    /// Share of providers that lie.
    pub lying_share: Probability,
    /// How they lie.
    pub lie: Lie,
    /// Liars undercut: their vCPU price is this fraction of the low end.
    pub liar_discount: Probability,
}

impl Default for Providers {
    fn default() -> Self {
        Providers {
            vcpu_milli: 4000,
            memory_mib: 8192,
            vcpu_price: [80, 160],
            lying_share: Probability(0.0),
            lie: Lie::NeverRun,
            liar_discount: Probability(0.75),
        }
    }
}

/// How Byzantine validators misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Byzantine {
    /// They vote for every op they are asked about, conflicting ones in one slot included
    /// (colluding with double-spending agents).
    DoubleSign,
    /// They never answer.
    Withhold,
}

impl Byzantine {
    /// The name used in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Byzantine::DoubleSign => "double-sign",
            Byzantine::Withhold => "withhold",
        }
    }
}

/// The quota committee.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawCommittee")]
pub struct Committee {
    /// Faults tolerated; the committee has `3f + 1` validators.
    pub f: u32,
    /// Validators that misbehave (may exceed `f`, to show what then breaks).
    pub byzantine: u32,
    /// How they misbehave.
    pub behaviour: Byzantine,
    /// Free-tier grants certified per committee epoch at most.
    pub free_tier_cap: u32,
    /// Credits one free-tier grant gives.
    pub free_tier_credits: u64,
    /// The committee's epoch (free-tier grants are per epoch).
    pub epoch: Span,
    /// After a lock lapses, how long its provider may settle before anyone may unlock it.
    pub settle_grace: Span,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommittee {
    #[serde(default = "default_f")]
    f: u32,
    #[serde(default)]
    byzantine: u32,
    #[serde(default = "default_behaviour")]
    behaviour: Byzantine,
    #[serde(default = "default_free_cap")]
    free_tier_cap: u32,
    #[serde(default = "default_free_credits")]
    free_tier_credits: u64,
    #[serde(default = "default_committee_epoch")]
    epoch: Span,
    #[serde(default = "default_settle_grace")]
    settle_grace: Span,
}

fn default_f() -> u32 {
    1
}
fn default_behaviour() -> Byzantine {
    Byzantine::Withhold
}
fn default_free_cap() -> u32 {
    10_000
}
fn default_free_credits() -> u64 {
    10
}
fn default_committee_epoch() -> Span {
    Span::secs(86_400)
}
fn default_settle_grace() -> Span {
    Span::secs(60)
}

impl TryFrom<RawCommittee> for Committee {
    type Error = String;
    fn try_from(raw: RawCommittee) -> Result<Self, String> {
        let n = 3 * u64::from(raw.f) + 1;
        if n > agora_protocol::committee::MAX_VALIDATORS as u64 {
            return Err(format!(
                "committee.f = {} needs {n} validators, at most {} allowed",
                raw.f,
                agora_protocol::committee::MAX_VALIDATORS
            ));
        }
        if u64::from(raw.byzantine) > n {
            return Err(format!(
                "committee.byzantine = {} but the committee has only {n} validators",
                raw.byzantine
            ));
        }
        if raw.epoch.as_micros() < 1_000_000 {
            return Err("committee.epoch must be at least 1s".into());
        }
        if raw.settle_grace.as_micros() < 1_000_000 {
            return Err("committee.settle_grace must be at least 1s".into());
        }
        Ok(Committee {
            f: raw.f,
            byzantine: raw.byzantine,
            behaviour: raw.behaviour,
            free_tier_cap: raw.free_tier_cap,
            free_tier_credits: raw.free_tier_credits,
            epoch: raw.epoch,
            settle_grace: raw.settle_grace,
        })
    }
}

impl Default for Committee {
    fn default() -> Self {
        Committee {
            f: default_f(),
            byzantine: 0,
            behaviour: default_behaviour(),
            free_tier_cap: default_free_cap(),
            free_tier_credits: default_free_credits(),
            epoch: default_committee_epoch(),
            settle_grace: default_settle_grace(),
        }
    }
}

/// An attack by some of the agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    /// No attackers.
    None,
    /// Extra unattested agents sign up in a burst, claim the free tier, and lease only
    /// from the lying providers, praising them.
    Sybil,
    /// Attested agents that lease only from the lying providers and praise them (the
    /// paper's malicious collective).
    ColludingRaters,
    /// Agents that ask for leases without a lock certificate, or reuse one.
    FreeRiders,
    /// Agents that lock one chain position twice for two providers, colluding with
    /// double-signing validators.
    DoubleSpend,
    /// Attacker nodes surround victim nodes: each victim's connections are replaced by
    /// connections to the attackers (the lying providers' nodes and `attackers` more),
    /// which pass it only the lying providers' offers; `fraction` of the agents live on
    /// the victims.
    Eclipse,
}

impl Attack {
    /// The name used in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Attack::None => "none",
            Attack::Sybil => "sybil",
            Attack::ColludingRaters => "colluding-raters",
            Attack::FreeRiders => "free-riders",
            Attack::DoubleSpend => "double-spend",
            Attack::Eclipse => "eclipse",
        }
    }
}

/// Attackers among the agents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Adversary {
    /// The attack.
    pub kind: Attack,
    /// Attackers as a fraction of `market.agents` (at most 1, except Sybils, who come on
    /// top of the agents: up to 100 times as many).
    pub fraction: NonNegative,
    /// When a Sybil flood signs up (all within one second).
    pub at: Span,
    /// Eclipse: the victim nodes (random nodes that run no provider).
    pub victims: u32,
    /// Eclipse: attacker nodes besides the lying providers' own.
    pub attackers: u32,
    /// Eclipse: connections to honest nodes each victim keeps (0: fully surrounded).
    pub honest_peers: u32,
}

impl Default for Adversary {
    fn default() -> Self {
        Adversary {
            kind: Attack::None,
            fraction: NonNegative(0.0),
            at: Span::secs(60),
            victims: 1,
            attackers: 8,
            honest_peers: 0,
        }
    }
}

/// EigenTrust epochs.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawReputation")]
pub struct Reputation {
    /// How often trust is recomputed (over the facts of the last `window`).
    pub epoch: Span,
    /// The evidence window each computation covers.
    pub window: Span,
    /// Weight of a provider's trust against its price when an agent picks: 0 picks the
    /// cheapest, 1 weighs trust alone.
    pub trust_weight: f64,
    /// The trust an agent credits a provider no epoch has ranked yet, as a fraction of the
    /// most trusted one it considers (0: newcomers come last).
    pub newcomer_trust: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReputation {
    #[serde(default = "default_rep_epoch")]
    epoch: Span,
    window: Option<Span>,
    #[serde(default = "default_trust_weight")]
    trust_weight: Probability,
    #[serde(default = "default_newcomer_trust")]
    newcomer_trust: Probability,
}

fn default_rep_epoch() -> Span {
    Span::secs(600)
}
fn default_trust_weight() -> Probability {
    Probability(0.8)
}
fn default_newcomer_trust() -> Probability {
    Probability(0.5)
}

impl TryFrom<RawReputation> for Reputation {
    type Error = String;
    fn try_from(raw: RawReputation) -> Result<Self, String> {
        if raw.epoch.as_micros() < 1_000_000 {
            return Err("reputation.epoch must be at least 1s".into());
        }
        let window = raw.window.unwrap_or(raw.epoch);
        if window < raw.epoch {
            return Err(format!(
                "reputation.window ({window}) must be at least the epoch ({})",
                raw.epoch
            ));
        }
        Ok(Reputation {
            epoch: raw.epoch,
            window,
            trust_weight: raw.trust_weight.0,
            newcomer_trust: raw.newcomer_trust.0,
        })
    }
}

impl Default for Reputation {
    fn default() -> Self {
        Reputation {
            epoch: default_rep_epoch(),
            window: default_rep_epoch(),
            trust_weight: default_trust_weight().0,
            newcomer_trust: default_newcomer_trust().0,
        }
    }
}

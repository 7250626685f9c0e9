//! Reputation: deterministic per-epoch EigenTrust over the evidence log.
//!
//! ```text
//! log entries dated before the epoch's end
//!   ──gather──▶ Interactions: per lease (agent, provider) an Outcome, a rating, paid_micro
//!   ──graph───▶ validators ──(paid spend)──▶ agents ──(opinions)──▶ providers
//!   ──EigenTrust (fixed point, integers)──▶ trust per provider ──▶ ranking, gossip score
//! ```
//!
//! # The graph
//!
//! Vertices are roles: the pre-trusted peers (the validators, [`Config::pretrusted`]), the
//! agents and the providers of the epoch's leases. A key that is both agent and provider
//! has one vertex per role, so trust earned as a provider never becomes its voice as an agent.
//!
//! - **Agent → provider** (local trust `s_ij`): over the agent's leases with the provider,
//!   `Σ paid_micro × opinion`. The opinion per paid micro-credit ([`Weights`]) is positive for
//!   a lease that ran (more when the agent acknowledged a receipt, `ran_acked`, than on the
//!   provider's word alone, `ran_unacked`), negative for one that failed by the provider's
//!   fault and more so for one granted and never run, plus the agent's rating (100: `+rating`,
//!   0: `-rating`). `paid_micro` is the part of the lease's cost that [`Funding`] counts as
//!   paid: free-tier spend weighs zero, so free-tier agents have no say. Grants and receipts
//!   are signed by the provider alone, so a lease that ran counts only when the agent signed
//!   something about it (an acknowledgement or a rating); blame needs no such signature (a
//!   provider's grant without a receipt, or its own failure report, only harms the provider).
//! - **Validator → agent**: each pre-trusted peer trusts agents in proportion to the paid
//!   micro-credits they spent in the epoch on leases they signed for (the quota the
//!   committee certifies), capped by [`Funding::voice_cap_micro`]: an agent's voice is what
//!   it paid.
//! - Providers, and agents with no positive opinion, trust no one: their trust returns to
//!   the pre-trusted peers (the paper's rule for such rows).
//!
//! Then `c_ij = max(s_ij, 0) / Σ_k max(s_ik, 0)`, `p` uniform over the pre-trusted peers,
//! `t_0 = p`, `t_k+1 = (1 - a) Cᵀ t_k + a p` ([`eigentrust`]), for at most
//! [`Config::max_iterations`] steps or until one moves `t` by at most
//! [`Config::epsilon_ppb`]. A clique that rates itself gains only what paid, outside trust
//! sends it; a provider that takes leases and never runs them collects negative opinions
//! and no trust from those agents.
//!
//! # Epochs and determinism
//!
//! An [`Epoch`] is a window of entry times `[start, end)`. Every lease with a fact in an
//! entry dated inside it is judged on all facts dated before `end` (so a lease granted in
//! one epoch and metered in the next counts as run). A grant without a receipt counts as
//! never run once it began [`Config::receipt_grace`] before `end`. Facts are gathered in
//! maps keyed by digest, all arithmetic is integer ([`eigentrust`] says why), and ties sort
//! by key: replicas holding the same entries dated before `end` compute identical results,
//! whatever order the entries came in. Entries may arrive late, so compute an epoch once its
//! end is well past; its entries' times are their authors' clocks.
//!
//! # Output
//!
//! [`Reputation`]: per provider a [`ProviderScore`] (global trust and share of all
//! providers' trust in parts per billion, rank, lease counts, paid volume, paid-weighted
//! praise and complaints), the ranking (trust descending, then id), and
//! [`Reputation::gossip_score`], a bounded `f64` for gossipsub's application-specific score.
//!
//! ```
//! use std::collections::BTreeSet;
//! use agora_protocol::ledger::reputation::{self, Config, Epoch, SignupFunding};
//! use agora_protocol::ledger::{self as ledger, EvidenceLog};
//! use agora_protocol::{Signer, Timestamp};
//!
//! let validator = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).id();
//! let log = EvidenceLog::new(ledger::Config::default())?;
//! let epoch = Epoch { start: Timestamp::from_unix_secs(0), end: Timestamp::from_unix_secs(3600) };
//! let config = Config { pretrusted: BTreeSet::from([validator]), ..Config::default() };
//! let funding = SignupFunding::from_entries(log.iter(), &BTreeSet::new(), epoch.end);
//! let scores = reputation::compute(&log, epoch, &config, &funding)?;
//! assert!(scores.ranking.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod eigentrust;
pub mod evidence;
pub mod funding;
mod score;

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use crate::id::AgoraId;
use crate::signed::Signed;
use crate::time::Timestamp;

use super::entry::Entry;
use super::log::EvidenceLog;

pub use evidence::{Interaction, Outcome};
pub use funding::{Funding, SignupFunding};
pub use score::{MAX_GOSSIP_SCORE, ProviderScore, Reputation};

/// Most pre-trusted peers (a committee is small; this bounds the work per step).
pub const MAX_PRETRUSTED: usize = 1024;

/// Most iterations a [`Config`] may ask for.
pub const MAX_ITERATIONS: u32 = 10_000;

/// The largest weight magnitude, so that `paid × opinion` sums stay far inside `i128`.
pub const MAX_WEIGHT: i64 = 1_000_000;

/// A window of entry times, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch {
    /// The first instant inside.
    pub start: Timestamp,
    /// The first instant after.
    pub end: Timestamp,
}

impl Epoch {
    /// The `n`-th epoch of `length` counted from `origin` (`n = 0` starts at `origin`).
    pub fn nth(origin: Timestamp, length: Duration, n: u32) -> Self {
        let start = origin.saturating_add(length.saturating_mul(n));
        Self {
            start,
            end: start.saturating_add(length),
        }
    }

    /// Whether `at` is inside.
    pub fn contains(&self, at: Timestamp) -> bool {
        self.start <= at && at < self.end
    }
}

/// Opinions per paid micro-credit, by outcome and rating (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    /// A lease that ran, a receipt of it acknowledged by the agent.
    pub ran_acked: i64,
    /// A lease that ran, on the provider's word alone (no acknowledgement).
    pub ran_unacked: i64,
    /// A lease that ended by the provider's failure.
    pub failed: i64,
    /// A lease granted and never run.
    pub never_ran: i64,
    /// What a rating of 100 adds (0 takes it away; 50 is neutral).
    pub rating: i64,
}

impl Default for Weights {
    /// 1000 for an acknowledged run, 500 unacknowledged, -1000 failed, -2000 never run,
    /// ±1000 for the rating.
    fn default() -> Self {
        Self {
            ran_acked: 1000,
            ran_unacked: 500,
            failed: -1000,
            never_ran: -2000,
            rating: 1000,
        }
    }
}

/// The parameters every replica must share (from genesis) to rank alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The pre-trusted peers: the validators (or another configured set).
    pub pretrusted: BTreeSet<AgoraId>,
    /// The restart weight `a`, parts per billion of [`eigentrust::ONE`].
    pub alpha_ppb: u64,
    /// Most EigenTrust steps.
    pub max_iterations: u32,
    /// Stop once a step moves the trust vector by at most this (L1, parts per billion).
    pub epsilon_ppb: u64,
    /// A grant without a receipt counts as never run once it began this long before the
    /// epoch's end.
    pub receipt_grace: Duration,
    /// Opinions per paid micro-credit.
    pub weights: Weights,
}

impl Default for Config {
    /// No pre-trusted peers (set them), `a` = 0.15, 200 steps, epsilon 1000 ppb (10^-6),
    /// 10 minutes' grace, default [`Weights`].
    fn default() -> Self {
        Self {
            pretrusted: BTreeSet::new(),
            alpha_ppb: 150_000_000,
            max_iterations: 200,
            epsilon_ppb: 1000,
            receipt_grace: Duration::from_secs(600),
            weights: Weights::default(),
        }
    }
}

/// Why reputation cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No pre-trusted peer: no trust to spread.
    #[error("no pre-trusted peers")]
    NoPretrusted,
    /// More pre-trusted peers than [`MAX_PRETRUSTED`].
    #[error("{count} pre-trusted peers, at most {MAX_PRETRUSTED}")]
    TooManyPretrusted {
        /// How many were given.
        count: usize,
    },
    /// `alpha_ppb` is 0 or above one.
    #[error("alpha_ppb is {value}, expected 1 to {}", eigentrust::ONE)]
    Alpha {
        /// The value.
        value: u64,
    },
    /// `max_iterations` is 0 or above [`MAX_ITERATIONS`].
    #[error("max_iterations is {value}, expected 1 to {MAX_ITERATIONS}")]
    Iterations {
        /// The value.
        value: u32,
    },
    /// A weight's magnitude is above [`MAX_WEIGHT`].
    #[error("weight {field} is {value}, at most {MAX_WEIGHT} in magnitude")]
    Weight {
        /// The weight.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// The epoch ends no later than it starts.
    #[error("epoch [{start}, {end}) is empty")]
    EmptyEpoch {
        /// Its start.
        start: Timestamp,
        /// Its end.
        end: Timestamp,
    },
}

impl Config {
    /// Checks the bounds.
    ///
    /// # Errors
    /// The first [`Error`] found.
    pub fn validate(&self) -> Result<(), Error> {
        if self.pretrusted.is_empty() {
            return Err(Error::NoPretrusted);
        }
        if self.pretrusted.len() > MAX_PRETRUSTED {
            return Err(Error::TooManyPretrusted {
                count: self.pretrusted.len(),
            });
        }
        if self.alpha_ppb == 0 || self.alpha_ppb > eigentrust::ONE {
            return Err(Error::Alpha {
                value: self.alpha_ppb,
            });
        }
        if self.max_iterations == 0 || self.max_iterations > MAX_ITERATIONS {
            return Err(Error::Iterations {
                value: self.max_iterations,
            });
        }
        let w = &self.weights;
        for (field, value) in [
            ("ran_acked", w.ran_acked),
            ("ran_unacked", w.ran_unacked),
            ("failed", w.failed),
            ("never_ran", w.never_ran),
            ("rating", w.rating),
        ] {
            if value.unsigned_abs() > MAX_WEIGHT.unsigned_abs() {
                return Err(Error::Weight { field, value });
            }
        }
        Ok(())
    }
}

/// Computes `epoch`'s reputation over `log`'s accepted entries.
///
/// # Errors
/// [`Error`] for a config that does not validate or an empty epoch.
pub fn compute(
    log: &EvidenceLog,
    epoch: Epoch,
    config: &Config,
    funding: &impl Funding,
) -> Result<Reputation, Error> {
    compute_entries(log.iter(), epoch, config, funding)
}

/// Computes `epoch`'s reputation over `entries` (in any order: the result is the same).
///
/// # Errors
/// As [`compute`].
pub fn compute_entries<'e>(
    entries: impl IntoIterator<Item = &'e Signed<Entry>>,
    epoch: Epoch,
    config: &Config,
    funding: &impl Funding,
) -> Result<Reputation, Error> {
    config.validate()?;
    if epoch.end <= epoch.start {
        return Err(Error::EmptyEpoch {
            start: epoch.start,
            end: epoch.end,
        });
    }
    let interactions = evidence::gather(entries, &epoch, config, funding);
    Ok(rank(epoch, &interactions, config, funding))
}

/// A vertex of the trust graph: one role of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Vertex {
    Pretrusted(AgoraId),
    Agent(AgoraId),
    Provider(AgoraId),
}

/// Builds the graph of `interactions` and runs EigenTrust over it.
fn rank(
    epoch: Epoch,
    interactions: &[Interaction],
    config: &Config,
    funding: &impl Funding,
) -> Reputation {
    let mut vertices: BTreeSet<Vertex> = config
        .pretrusted
        .iter()
        .map(|v| Vertex::Pretrusted(*v))
        .collect();
    for i in interactions {
        vertices.insert(Vertex::Agent(i.agent));
        vertices.insert(Vertex::Provider(i.provider));
    }
    let index: BTreeMap<Vertex, usize> =
        vertices.iter().enumerate().map(|(n, v)| (*v, n)).collect();
    let at = |v: Vertex| index.get(&v).copied().unwrap_or(usize::MAX);

    // Agents' opinions of providers, and what each agent paid.
    let mut opinions: BTreeMap<usize, Vec<(usize, i128)>> = BTreeMap::new();
    let mut paid: BTreeMap<AgoraId, u64> = BTreeMap::new();
    for i in interactions {
        opinions
            .entry(at(Vertex::Agent(i.agent)))
            .or_default()
            .push((
                at(Vertex::Provider(i.provider)),
                i.local_trust(&config.weights),
            ));
        // Voice comes from what the agent itself signed for: a provider's grants alone
        // must not make an agent louder.
        if i.attested {
            let p = paid.entry(i.agent).or_insert(0);
            *p = p.saturating_add(i.paid_micro);
        }
    }
    let voices: Vec<(usize, i128)> = paid
        .iter()
        .map(|(agent, micro)| {
            let voice = (*micro).min(funding.voice_cap_micro(agent));
            (at(Vertex::Agent(*agent)), i128::from(voice))
        })
        .collect();
    let validator_row = eigentrust::normalise(voices);
    let rows: Vec<eigentrust::Row> = vertices
        .iter()
        .enumerate()
        .map(|(n, v)| match v {
            Vertex::Pretrusted(_) => validator_row.clone(),
            Vertex::Agent(_) => eigentrust::normalise(opinions.remove(&n).unwrap_or_default()),
            Vertex::Provider(_) => Vec::new(),
        })
        .collect();
    let pretrusted = uniform(
        vertices
            .iter()
            .enumerate()
            .filter(|(_, v)| matches!(v, Vertex::Pretrusted(_)))
            .map(|(n, _)| n),
    );
    let trust = eigentrust::run(
        &rows,
        &pretrusted,
        &eigentrust::Params {
            alpha_ppb: config.alpha_ppb,
            max_iterations: config.max_iterations,
            epsilon_ppb: config.epsilon_ppb,
        },
    );
    let provider_trust: BTreeMap<AgoraId, u64> = vertices
        .iter()
        .zip(&trust.values)
        .filter_map(|(v, t)| match v {
            Vertex::Provider(id) => Some((*id, *t)),
            _ => None,
        })
        .collect();
    score::Reputation::new(
        epoch,
        interactions,
        &provider_trust,
        &config.weights,
        &trust,
    )
}

/// `ONE` spread evenly over `peers`, the remainder one part each to the first ones.
fn uniform(peers: impl Iterator<Item = usize> + Clone) -> Vec<(usize, u64)> {
    let count = u64::try_from(peers.clone().count())
        .unwrap_or(u64::MAX)
        .max(1);
    let share = eigentrust::ONE / count;
    let extra = eigentrust::ONE % count;
    peers
        .enumerate()
        .map(|(k, n)| {
            let k = u64::try_from(k).unwrap_or(u64::MAX);
            (n, share + u64::from(k < extra))
        })
        .collect()
}

#[cfg(test)]
mod eigentrust_tests;

#[cfg(test)]
mod tests;

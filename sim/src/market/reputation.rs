//! The evidence log and EigenTrust epochs.
//!
//! Facts go into one real [`EvidenceLog`], appended by their authors (agents and
//! providers) the moment they act; see the module docs of [`super`] for why one replica.
//! Every `reputation.epoch` the real [`reputation::compute`] runs over the last `window`
//! of entries, with the validators as pre-trusted peers and [`SignupFunding`] (attested
//! agents' spend is paid; free-tier spend weighs zero). Agents then weigh the new trust.
//! Each epoch records how well trust separates honest from lying providers (the AUC:
//! the chance that a random honest provider has more trust than a random liar, ties
//! half) and the share of honest agents' leases the liars won in it.

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use agora_protocol::ledger::reputation::{self, Config, Epoch, SignupFunding};
use agora_protocol::ledger::{self, EvidenceLog, Fact};
use agora_protocol::{AgoraId, Signer, Timestamp};
use serde::Serialize;

use super::{Market, timestamp};
use crate::scenario;
use crate::time::SimTime;
use crate::world::{Sched, WORLD};

/// One epoch's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EpochRow {
    /// The epoch's end, seconds.
    pub t_s: f64,
    /// Trust separation of honest and lying providers (`None` without both kinds): every
    /// provider counts, those without leases in the window at zero trust.
    pub auc: Option<f64>,
    /// The same over the providers with leases in the window only (those EigenTrust has
    /// evidence about): an honest provider nobody tried is unknown, not distrusted.
    pub auc_rated: Option<f64>,
    /// Mean trust share of an honest provider, parts per billion.
    pub honest_trust_ppb: f64,
    /// Mean trust share of a lying provider, parts per billion.
    pub liar_trust_ppb: f64,
    /// Leases honest agents got in the epoch.
    pub honest_leases: u64,
    /// Of those, the share lying providers won.
    pub liar_share: f64,
    /// Entries in the log.
    pub log_entries: usize,
}

/// The log, the latest trust, and the epochs so far.
pub struct Ledger {
    log: EvidenceLog,
    window: Duration,
    trust: BTreeMap<AgoraId, u64>,
    /// Each provider's trust as of the last epoch that ranked it: what agents remember.
    remembered: BTreeMap<AgoraId, u64>,
    /// Per epoch.
    pub epochs: Vec<EpochRow>,
    leases: u64,
    liar_leases: u64,
    /// Facts the log refused (full, or invalid).
    pub refused: u64,
}

impl core::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ledger")
            .field("entries", &self.log.len())
            .field("epochs", &self.epochs.len())
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// An empty log.
    ///
    /// # Errors
    /// [`ledger::ConfigError`] for a bad log configuration.
    pub fn new(config: &scenario::Reputation) -> Result<Self, ledger::ConfigError> {
        Ok(Ledger {
            log: EvidenceLog::new(ledger::Config {
                max_entries: 1 << 22,
                max_bytes: 4 << 30,
                ..ledger::Config::default()
            })?,
            window: Duration::from_micros(config.window.as_micros()),
            trust: BTreeMap::new(),
            remembered: BTreeMap::new(),
            epochs: Vec::new(),
            leases: 0,
            liar_leases: 0,
            refused: 0,
        })
    }

    /// The log.
    pub fn log(&self) -> &EvidenceLog {
        &self.log
    }

    /// `signer` records `fact` at `now`.
    pub fn append(&mut self, now: Timestamp, signer: &impl Signer, fact: Fact) {
        if self.log.append(now, signer, fact).is_err() {
            self.refused += 1;
        }
    }

    /// A provider's trust share in the last epoch, parts per billion (0 if unknown).
    pub fn trust_of(&self, provider: &AgoraId) -> u64 {
        self.trust.get(provider).copied().unwrap_or(0)
    }

    /// A provider's trust as of the last epoch that ranked it (`None`: never ranked, a
    /// newcomer). A provider without leases in the last window keeps what it had: agents
    /// remember the last trust they saw rather than forget a liar once it goes quiet.
    pub fn remembered_trust(&self, provider: &AgoraId) -> Option<u64> {
        self.remembered.get(provider).copied()
    }

    /// An honest agent got a lease (from a liar or not).
    pub fn honest_lease(&mut self, liar: bool) {
        self.leases += 1;
        self.liar_leases += u64::from(liar);
    }
}

/// The AUC of `honest` against `liars`: P(honest > liar) + P(equal) / 2.
pub fn auc(honest: &[u64], liars: &[u64]) -> Option<f64> {
    if honest.is_empty() || liars.is_empty() {
        return None;
    }
    let mut wins = 0.0;
    for h in honest {
        for l in liars {
            wins += match h.cmp(l) {
                core::cmp::Ordering::Greater => 1.0,
                core::cmp::Ordering::Equal => 0.5,
                core::cmp::Ordering::Less => 0.0,
            };
        }
    }
    Some(wins / (honest.len() * liars.len()) as f64)
}

impl Market {
    /// An EigenTrust epoch: compute, publish to agents, record the figures.
    pub(super) fn on_epoch(&mut self, ctx: &mut impl Sched) {
        let now = ctx.now();
        let end = timestamp(now);
        let start = timestamp(SimTime::ZERO).max(Timestamp::from_unix_millis(
            end.as_unix_millis()
                .saturating_sub(self.ledger.window.as_millis() as u64),
        ));
        let epoch = Epoch { start, end };
        let config = Config {
            pretrusted: self.validators.iter().map(|v| v.id).collect(),
            ..Config::default()
        };
        let issuers = BTreeSet::from([self.issuer.id()]);
        let funding = SignupFunding::from_entries(self.ledger.log.iter(), &issuers, end);
        let mut rated = BTreeSet::new();
        match reputation::compute(&self.ledger.log, epoch, &config, &funding) {
            Ok(rep) => {
                rated = rep.ranking.iter().copied().collect();
                self.ledger.trust = rep
                    .ranking
                    .iter()
                    .filter_map(|id| rep.score(id).map(|s| (*id, s.share_ppb)))
                    .collect();
                self.ledger
                    .remembered
                    .extend(self.ledger.trust.iter().map(|(id, t)| (*id, *t)));
            }
            Err(_) => self.stats.reputation_errors += 1,
        }
        let (mut honest, mut liars) = (Vec::new(), Vec::new());
        let (mut honest_rated, mut liars_rated) = (Vec::new(), Vec::new());
        for p in &self.providers {
            let t = self.ledger.trust_of(&p.id);
            let (all, known) = if p.lie.is_some() {
                (&mut liars, &mut liars_rated)
            } else {
                (&mut honest, &mut honest_rated)
            };
            all.push(t);
            if rated.contains(&p.id) {
                known.push(t);
            }
        }
        let mean = |v: &[u64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<u64>() as f64 / v.len() as f64
            }
        };
        let row = EpochRow {
            t_s: now.as_micros() as f64 / 1e6,
            auc: auc(&honest, &liars),
            auc_rated: auc(&honest_rated, &liars_rated),
            honest_trust_ppb: mean(&honest),
            liar_trust_ppb: mean(&liars),
            honest_leases: self.ledger.leases,
            liar_share: if self.ledger.leases == 0 {
                0.0
            } else {
                self.ledger.liar_leases as f64 / self.ledger.leases as f64
            },
            log_entries: self.ledger.log.len(),
        };
        self.ledger.epochs.push(row);
        self.ledger.leases = 0;
        self.ledger.liar_leases = 0;
        if let Err(what) = self.audit.conservation() {
            self.violated(now, what);
        }
        let next = now.saturating_add(self.reputation_config.epoch.0);
        super::at(ctx, next, WORLD, super::Event::ReputationEpoch);
    }
}

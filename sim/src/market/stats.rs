//! What the market measures, its `metrics.json` section and its CSV file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::Market;
use super::reputation::EpochRow;
use crate::metrics::summary::Spread;

/// The market's counters (in `metrics.json`, flattened into the market object).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Agents signed up.
    pub signups: u64,
    /// Of which Sybils.
    pub sybil_signups: u64,
    /// Free-tier grants certified.
    pub free_tier_grants: u64,
    /// Of which to Sybils.
    pub sybils_funded: u64,
    /// Funding ops that failed (a free-tier pool slot taken, a timeout).
    pub fund_failures: u64,
    /// Lease wishes.
    pub arrivals: u64,
    /// Leases granted.
    pub granted: u64,
    /// Leases granted, by the agent's role.
    pub granted_by_role: BTreeMap<&'static str, u64>,
    /// Lease wishes, by the agent's role.
    pub arrivals_by_role: BTreeMap<&'static str, u64>,
    /// Leases granted to agents living on an eclipse's victims.
    pub victim_leases: u64,
    /// Of which the attackers' (lying) providers won.
    pub victim_attacker_leases: u64,
    /// Wishes that ended without a lease.
    pub unserved: u64,
    /// Time from wish to grant, ms (summarised as a spread in the summary).
    #[serde(skip)]
    pub time_to_lease_ms: Vec<f64>,
    /// Why a wish found nothing to try.
    pub no_match: BTreeMap<String, u64>,
    /// Why an attempt at one provider failed.
    pub attempt_failures: BTreeMap<String, u64>,
    /// Provider refusals.
    pub refusals: u64,
    /// Granted leases that ended without a receipt to their agent.
    pub no_receipt: u64,
    /// Leases a provider's crash lost.
    pub leases_lost: u64,
    /// Ratings logged.
    pub ratings: u64,
    /// Quota ops started.
    pub quota_ops: u64,
    /// Certificates formed.
    pub certificates: u64,
    /// Quota ops that failed (refused or timed out).
    pub quota_failures: u64,
    /// Validator answers the aggregators did not count.
    pub answers_ignored: u64,
    /// Disseminated certificates a validator could not apply yet (it lacked earlier ones).
    pub certificates_not_applied: u64,
    /// Locks settled.
    pub settled: u64,
    /// Locks unlocked after they lapsed.
    pub unlocked: u64,
    /// Double-spends tried.
    pub double_spend_attempts: u64,
    /// Of their halves, those the committee refused while the other half went through.
    pub double_spends_rejected: u64,
    /// Free riders' attempts (no lock, or another lease's).
    pub free_rider_attempts: u64,
    /// Of which granted (must stay 0).
    pub free_rider_grants: u64,
    /// Reputation computations that failed.
    pub reputation_errors: u64,
    /// Market messages sent.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Lost or blocked by the network.
    pub lost: u64,
    /// Arrived at a node that was down.
    pub undeliverable: u64,
}

/// The market's section of `metrics.json`.
#[derive(Debug, Clone, Serialize)]
pub struct MarketSummary {
    /// The counters: signups, wishes and leases (also by role), "no match" and failed
    /// attempts by reason, receipts missing, double-spends tried and rejected, free-tier
    /// grants (and to Sybils), free riders, quota ops, certificates, settlements, unlocks,
    /// an eclipse's victim leases, market messages.
    #[serde(flatten)]
    pub counts: Stats,
    /// Agents (Sybils included).
    pub agents: usize,
    /// Providers, and of them liars.
    pub providers: usize,
    /// Lying providers.
    pub lying_providers: usize,
    /// Validators, and how many misbehave.
    pub validators: usize,
    /// Byzantine validators.
    pub byzantine_validators: usize,
    /// Granted / wishes.
    pub lease_success_rate: f64,
    /// Time from wish to grant, ms.
    pub time_to_lease_ms: Spread,
    /// Slots certified twice (must be 0 while at most `f` validators misbehave).
    pub double_spends_certified: u64,
    /// Micro-credits locked twice.
    pub quota_overspend_micro: u64,
    /// Whether quota is conserved over all accounts at the end.
    pub quota_conserved: bool,
    /// Credited + granted, micro-credits, over all accounts.
    pub quota_total_micro: u128,
    /// The committee's cap on free-tier grants per committee epoch.
    pub free_tier_cap: u32,
    /// Evidence-log entries.
    pub log_entries: usize,
    /// The last epoch's AUC, honest vs lying providers.
    pub final_auc: Option<f64>,
    /// The last epoch's AUC over the providers with leases in its window.
    pub final_auc_rated: Option<f64>,
    /// The share of honest agents' leases the liars won in the last epoch.
    pub final_liar_share: Option<f64>,
    /// Per epoch: AUC, trust, liars' lease share.
    pub epochs: Vec<EpochRow>,
    /// Eclipse: the share of those leases the attackers' providers won (`None` without an
    /// eclipse or without leases); compare `final_liar_share`, the liars' share of the
    /// other honest agents' leases.
    pub eclipse_attacker_share: Option<f64>,
    /// Market messages and bytes per node (its network cost).
    pub messages_per_node: f64,
    /// Bytes per node.
    pub bytes_per_node: f64,
}

impl Market {
    /// The summary for `metrics.json`; `nodes` is the node count.
    pub fn summary(&self, nodes: u32) -> MarketSummary {
        let s = &self.stats;
        let conservation = self.audit.conservation();
        let nodes = f64::from(nodes.max(1));
        MarketSummary {
            counts: s.clone(),
            agents: self.agents.len(),
            providers: self.providers.len(),
            lying_providers: self.providers.iter().filter(|p| p.lie.is_some()).count(),
            validators: self.validators.len(),
            byzantine_validators: self
                .validators
                .iter()
                .filter(|v| v.byzantine.is_some())
                .count(),
            lease_success_rate: if s.arrivals == 0 {
                0.0
            } else {
                s.granted as f64 / s.arrivals as f64
            },
            time_to_lease_ms: Spread::of(s.time_to_lease_ms.clone()),
            double_spends_certified: self.audit.double_spends,
            quota_overspend_micro: self.audit.overspend_micro,
            quota_conserved: conservation.as_ref().is_ok_and(|(f, h)| f == h),
            quota_total_micro: conservation.map_or(0, |(f, _)| f),
            free_tier_cap: self.committee.free_tier().cap_per_epoch,
            log_entries: self.ledger.log().len(),
            final_auc: self.ledger.epochs.iter().rev().find_map(|e| e.auc),
            final_auc_rated: self.ledger.epochs.iter().rev().find_map(|e| e.auc_rated),
            final_liar_share: self.ledger.epochs.last().map(|e| e.liar_share),
            epochs: self.ledger.epochs.clone(),
            eclipse_attacker_share: (self.eclipse.is_some() && s.victim_leases > 0)
                .then(|| s.victim_attacker_leases as f64 / s.victim_leases as f64),
            messages_per_node: s.messages as f64 / nodes,
            bytes_per_node: s.bytes as f64 / nodes,
        }
    }
}

/// Writes `market_epochs.csv` (one row per reputation epoch) into `dir`.
///
/// # Errors
/// The I/O error.
pub fn write_csv(dir: &Path, summary: &MarketSummary) -> std::io::Result<()> {
    let mut csv = String::from(
        "t_s,auc,auc_rated,honest_trust_ppb,liar_trust_ppb,honest_leases,liar_share,log_entries\n",
    );
    for e in &summary.epochs {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{}",
            e.t_s,
            e.auc.map_or(String::new(), |a| a.to_string()),
            e.auc_rated.map_or(String::new(), |a| a.to_string()),
            e.honest_trust_ppb,
            e.liar_trust_ppb,
            e.honest_leases,
            e.liar_share,
            e.log_entries
        );
    }
    std::fs::write(dir.join("market_epochs.csv"), csv)
}

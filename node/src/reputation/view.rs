//! Reputation as the API shows it (`GET /v1/providers/{provider}`).

use agora_protocol::AgoraId;
use agora_protocol::ledger::reputation::ProviderScore;
use serde::Serialize;

use super::Scored;

/// A provider's reputation at this node: the current epoch (provisional) and the latest
/// completed one, or why there is none.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ReputationView {
    /// Whether this node computes reputation (it needs a genesis).
    pub available: bool,
    /// Why not, when it does not (no genesis, or not computed yet).
    pub reason: Option<String>,
    /// When it was last computed (RFC 3339).
    pub computed_at: Option<String>,
    /// The state hash of the evidence log it was computed from (hex).
    pub state_hash: Option<String>,
    /// The current epoch, judged up to `computed_at`: provisional, its leases still come in.
    pub current: Option<EpochScore>,
    /// The latest completed epoch (recomputed while late entries arrive).
    pub completed: Option<EpochScore>,
}

impl ReputationView {
    pub(super) fn unavailable(reason: String) -> Self {
        Self {
            available: false,
            reason: Some(reason),
            computed_at: None,
            state_hash: None,
            current: None,
            completed: None,
        }
    }
}

/// One epoch, and the provider's score in it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct EpochScore {
    /// The epoch's number from the genesis start (0 first).
    pub epoch: u64,
    /// When it starts (RFC 3339).
    pub start: String,
    /// When it ends (RFC 3339).
    pub end: String,
    /// Facts dated before this were judged (the end, or the computation time while the
    /// epoch is open).
    pub judged_until: String,
    /// Whether the epoch is still open (its scores will change).
    pub provisional: bool,
    /// Providers ranked in the epoch.
    pub providers: u64,
    /// Leases judged in the epoch (all providers).
    pub leases_judged: u64,
    /// Whether EigenTrust converged.
    pub converged: bool,
    /// The provider's score; absent when it had no lease judged in the epoch.
    pub score: Option<ScoreView>,
}

/// A provider's score in one epoch.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ScoreView {
    /// Global trust, parts per billion of all trust.
    pub trust_ppb: u64,
    /// Share of all providers' trust, parts per billion.
    pub share_ppb: u64,
    /// Rank by trust (1 = most trusted).
    pub rank: u32,
    /// Of how many ranked providers.
    pub of: u64,
    /// Leases judged.
    pub leases: u32,
    /// Of those, run.
    pub ran: u32,
    /// Of those, failed by the provider.
    pub failed: u32,
    /// Of those, granted and never run.
    pub never_ran: u32,
    /// Paid micro-credits of its leases (free-tier spend weighs zero).
    pub paid_micro: u64,
    /// Positive local trust its leases earned (paid micro-credits × opinion; saturates at
    /// the largest u64).
    pub praise: u64,
    /// Negative local trust its leases earned, as a magnitude (saturates likewise).
    pub complaints: u64,
    /// The application score this node gives its gossip, in [-1, 1].
    pub gossip_score: f64,
}

impl ScoreView {
    fn new(p: &ProviderScore, of: u64, gossip_score: f64) -> Self {
        Self {
            trust_ppb: p.trust_ppb,
            share_ppb: p.share_ppb,
            rank: p.rank,
            of,
            leases: p.leases,
            ran: p.ran,
            failed: p.failed,
            never_ran: p.never_ran,
            paid_micro: p.paid_micro,
            praise: u64::try_from(p.praise).unwrap_or(u64::MAX),
            complaints: u64::try_from(p.complaints).unwrap_or(u64::MAX),
            gossip_score,
        }
    }
}

impl Scored {
    pub(super) fn view(&self, provider: &AgoraId) -> EpochScore {
        let r = &self.reputation;
        let of = u64::try_from(r.providers.len()).unwrap_or(u64::MAX);
        EpochScore {
            epoch: self.index,
            start: self.epoch.start.to_string(),
            end: self.epoch.end.to_string(),
            judged_until: self.judged_until.to_string(),
            provisional: self.provisional,
            providers: of,
            leases_judged: u64::try_from(r.interactions).unwrap_or(u64::MAX),
            converged: r.converged,
            score: r
                .score(provider)
                .map(|p| ScoreView::new(p, of, r.gossip_score(provider))),
        }
    }
}

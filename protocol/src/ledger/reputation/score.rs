//! What reputation gives out: per-provider scores, the ranking, the gossip score.

use std::collections::BTreeMap;

use crate::id::AgoraId;

use super::eigentrust::{ONE, Trust};
use super::evidence::{Interaction, Outcome};
use super::{Epoch, Weights};

/// The bound of [`Reputation::gossip_score`]: scores lie in `[-MAX_GOSSIP_SCORE,
/// MAX_GOSSIP_SCORE]`.
pub const MAX_GOSSIP_SCORE: f64 = 1.0;

/// One provider's standing in an epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderScore {
    /// The provider.
    pub provider: AgoraId,
    /// Its global trust, parts per billion of all trust (validators' and agents' included).
    pub trust_ppb: u64,
    /// Its share of all providers' trust, parts per billion (0 when no provider has any).
    pub share_ppb: u64,
    /// 1 for the most trusted provider (ties by id).
    pub rank: u32,
    /// Leases judged this epoch.
    pub leases: u32,
    /// Of those, run (with a receipt, not failed by the provider).
    pub ran: u32,
    /// Of those, ended by the provider's failure.
    pub failed: u32,
    /// Of those, granted and never run.
    pub never_ran: u32,
    /// Paid micro-credits of its leases (what weighs).
    pub paid_micro: u64,
    /// Sum of the positive local trust its leases earned (paid micro-credits × opinion).
    pub praise: u128,
    /// Sum of the negative local trust its leases earned, as a magnitude.
    pub complaints: u128,
}

/// An epoch's reputation: scores, ranking, and how the iteration went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reputation {
    /// The epoch.
    pub epoch: Epoch,
    /// Every provider with a lease judged this epoch.
    pub providers: BTreeMap<AgoraId, ProviderScore>,
    /// The providers by trust, highest first (ties by id).
    pub ranking: Vec<AgoraId>,
    /// Leases judged.
    pub interactions: usize,
    /// EigenTrust steps taken.
    pub iterations: u32,
    /// Whether the last step moved the trust vector by at most the configured epsilon.
    pub converged: bool,
}

impl Reputation {
    pub(super) fn new(
        epoch: Epoch,
        interactions: &[Interaction],
        trust: &BTreeMap<AgoraId, u64>,
        weights: &Weights,
        run: &Trust,
    ) -> Self {
        let total: u128 = trust.values().map(|t| u128::from(*t)).sum();
        let mut providers: BTreeMap<AgoraId, ProviderScore> = trust
            .iter()
            .map(|(id, t)| {
                let share = (u128::from(*t) * u128::from(ONE))
                    .checked_div(total)
                    .map_or(0, |s| u64::try_from(s).unwrap_or(ONE));
                let score = ProviderScore {
                    provider: *id,
                    trust_ppb: *t,
                    share_ppb: share,
                    rank: 0,
                    leases: 0,
                    ran: 0,
                    failed: 0,
                    never_ran: 0,
                    paid_micro: 0,
                    praise: 0,
                    complaints: 0,
                };
                (*id, score)
            })
            .collect();
        for i in interactions {
            let Some(p) = providers.get_mut(&i.provider) else {
                continue;
            };
            p.leases = p.leases.saturating_add(1);
            match i.outcome {
                Outcome::Ran { .. } => p.ran = p.ran.saturating_add(1),
                Outcome::Failed => p.failed = p.failed.saturating_add(1),
                Outcome::NeverRan => p.never_ran = p.never_ran.saturating_add(1),
            }
            p.paid_micro = p.paid_micro.saturating_add(i.paid_micro);
            let s = i.local_trust(weights);
            if s >= 0 {
                p.praise = p.praise.saturating_add(s.unsigned_abs());
            } else {
                p.complaints = p.complaints.saturating_add(s.unsigned_abs());
            }
        }
        let mut ranking: Vec<AgoraId> = providers.keys().copied().collect();
        ranking.sort_by(|a, b| {
            let ta = providers.get(a).map_or(0, |p| p.trust_ppb);
            let tb = providers.get(b).map_or(0, |p| p.trust_ppb);
            tb.cmp(&ta).then(a.cmp(b))
        });
        for (n, id) in ranking.iter().enumerate() {
            if let Some(p) = providers.get_mut(id) {
                p.rank = u32::try_from(n).unwrap_or(u32::MAX).saturating_add(1);
            }
        }
        Self {
            epoch,
            providers,
            ranking,
            interactions: interactions.len(),
            iterations: run.iterations,
            converged: run.converged,
        }
    }

    /// `provider`'s score, if it had a lease judged this epoch.
    pub fn score(&self, provider: &AgoraId) -> Option<&ProviderScore> {
        self.providers.get(provider)
    }

    /// A bounded application score for gossipsub (P5, `app_specific_score`) for `peer`, in
    /// `[-1.0, 1.0]`:
    ///
    /// - a provider with trust: `r / (1 + r)` where `r` is its share relative to the
    ///   average provider's (`share × providers`): 0.5 at the average, towards 1.0 above;
    /// - a provider without trust but with complaints (leases never run or failed, bad
    ///   ratings, all paid): `-complaints / (complaints + praise)`, down to -1.0;
    /// - anyone else (no judged lease: new providers, agents, validators): 0.0, neutral,
    ///   so a newcomer's gossip is neither boosted nor held back.
    ///
    /// The node multiplies it by its `app_specific_weight`; a weight of 10 keeps it well
    /// inside the default graylist threshold, so reputation alone never silences a peer.
    /// Floating point is fine here: the score is each node's local input, not consensus.
    pub fn gossip_score(&self, peer: &AgoraId) -> f64 {
        let Some(p) = self.providers.get(peer) else {
            return 0.0;
        };
        if p.trust_ppb > 0 {
            let providers = self.providers.len() as f64;
            let relative = p.share_ppb as f64 / ONE as f64 * providers;
            return (relative / (1.0 + relative)).clamp(0.0, MAX_GOSSIP_SCORE);
        }
        if p.complaints > 0 {
            let c = p.complaints as f64;
            let all = c + p.praise as f64;
            return (-c / all).clamp(-MAX_GOSSIP_SCORE, 0.0);
        }
        0.0
    }
}

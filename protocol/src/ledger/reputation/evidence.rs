//! From the log's facts to judged leases ([`Interaction`]s): what each agent experienced of
//! each provider in an epoch, and what it paid for it.

use std::collections::{BTreeMap, BTreeSet};

use crate::id::AgoraId;
use crate::lease::LeaseId;
use crate::signed::{Digest, Signed};
use crate::time::Timestamp;
use crate::workload::TerminationReason;

use super::super::entry::Entry;
use super::super::fact::Fact;
use super::super::rating::MAX_SCORE;
use super::funding::Funding;
use super::{Config, Epoch, Weights};

/// How a lease went, as far as the evidence tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// The provider metered it (a receipt); `acked` when the agent acknowledged a receipt.
    Ran {
        /// The agent countersigned a receipt of the lease.
        acked: bool,
    },
    /// Its last receipt says it ended by the provider's failure (the runtime failed, or the
    /// provider shut down).
    Failed,
    /// Granted, begun at least the configured grace before the epoch's end, and not one
    /// receipt: accepted and never run.
    NeverRan,
}

/// One lease between an agent and a provider, judged.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interaction {
    /// The agent (the truster).
    pub agent: AgoraId,
    /// The provider (the trusted).
    pub provider: AgoraId,
    /// The lease.
    pub lease: LeaseId,
    /// How it went.
    pub outcome: Outcome,
    /// What it cost (the latest receipt's total; an acknowledged one if any), or what it
    /// reserved when it never ran, micro-credits.
    pub spent_micro: u64,
    /// The part of it [`Funding`] counts as paid: the interaction's weight.
    pub paid_micro: u64,
    /// The agent's latest rating of this lease, if any.
    pub rating: Option<u8>,
    /// The agent signed something about this lease (an acknowledgement of one of its
    /// receipts, or a rating): it is not the provider's word alone.
    pub attested: bool,
}

impl Interaction {
    /// The opinion per paid micro-credit, in [`Weights`]' units: the outcome's weight plus
    /// the rating's (a rating of 100 adds `weights.rating`, 0 takes it away, 50 is neutral).
    pub fn opinion(&self, weights: &Weights) -> i64 {
        let base = match self.outcome {
            Outcome::Ran { acked: true } => weights.ran_acked,
            Outcome::Ran { acked: false } => weights.ran_unacked,
            Outcome::Failed => weights.failed,
            Outcome::NeverRan => weights.never_ran,
        };
        let rating = self.rating.map_or(0, |r| {
            let centred = 2 * i64::from(r.min(MAX_SCORE)) - i64::from(MAX_SCORE);
            centred.saturating_mul(weights.rating) / i64::from(MAX_SCORE)
        });
        base.saturating_add(rating)
    }

    /// `s` for this lease: the paid weight times the opinion.
    pub fn local_trust(&self, weights: &Weights) -> i128 {
        i128::from(self.paid_micro) * i128::from(self.opinion(weights))
    }
}

/// A lease as one provider saw it: the lease and the provider.
type Key = (LeaseId, AgoraId);

struct Grant {
    agent: AgoraId,
    reserved_micro: u64,
    starts_at: Timestamp,
}

struct Receipt {
    seq: u32,
    agent: AgoraId,
    from: Timestamp,
    total_micro: u64,
    provider_failed: bool,
}

/// What the facts dated before an epoch's end say, gathered in maps keyed by digest, so
/// the order the entries come in changes nothing.
#[derive(Default)]
struct Facts {
    /// Per key, its grants by digest (a provider signs one; if it signed more, the lowest
    /// digest counts).
    grants: BTreeMap<Key, BTreeMap<Digest, Grant>>,
    receipts: BTreeMap<Key, BTreeMap<Digest, Receipt>>,
    /// Receipts the agent acknowledged (an acknowledgement is by the receipt's agent).
    acked: BTreeSet<Digest>,
    /// The latest rating per (key, rater): by its time, then digest.
    ratings: BTreeMap<(Key, AgoraId), (Timestamp, Digest, u8)>,
    /// Keys with a fact in an entry dated inside the epoch.
    touched: BTreeSet<Key>,
}

impl Facts {
    fn read<'e>(entries: impl IntoIterator<Item = &'e Signed<Entry>>, epoch: &Epoch) -> Self {
        let mut facts = Self::default();
        for entry in entries {
            let body = entry.body();
            if body.at >= epoch.end {
                continue;
            }
            let inside = body.at >= epoch.start;
            let key = match &body.fact {
                Fact::Lease(grant) => {
                    let g = grant.body();
                    let key = (g.lease, g.provider);
                    facts.grants.entry(key).or_default().insert(
                        grant.digest(),
                        Grant {
                            agent: g.agent,
                            reserved_micro: g.reserved_micro,
                            starts_at: g.starts_at,
                        },
                    );
                    key
                }
                Fact::Usage(usage) => {
                    let r = usage.receipt.body();
                    let key = (r.lease, r.provider);
                    let digest = usage.receipt.digest();
                    if usage.ack.is_some() {
                        facts.acked.insert(digest);
                    }
                    facts.receipts.entry(key).or_default().insert(
                        digest,
                        Receipt {
                            seq: r.seq,
                            agent: r.agent,
                            from: r.from,
                            total_micro: r.total_micro,
                            provider_failed: matches!(
                                r.ended,
                                Some(
                                    TerminationReason::ProviderShutdown
                                        | TerminationReason::RuntimeError { .. }
                                )
                            ),
                        },
                    );
                    key
                }
                Fact::Rating(rating) => {
                    let r = rating.body();
                    let key = (r.lease, r.provider);
                    let seen = (r.rated_at, rating.digest(), r.score);
                    let slot = facts.ratings.entry((key, r.rater)).or_insert(seen);
                    if (seen.0, seen.1) > (slot.0, slot.1) {
                        *slot = seen;
                    }
                    key
                }
                Fact::Signup(_) | Fact::Revocation(_) | Fact::Equivocation(_) => continue,
            };
            if inside {
                facts.touched.insert(key);
            }
        }
        facts
    }
}

/// The epoch's judged leases, sorted by (agent, provider, lease): every lease with a fact
/// in an entry dated inside the epoch, judged on all facts dated before its end. A lease
/// that ran counts only when its agent signed something about it (see
/// [`Interaction::attested`]).
pub fn gather<'e>(
    entries: impl IntoIterator<Item = &'e Signed<Entry>>,
    epoch: &Epoch,
    config: &Config,
    funding: &impl Funding,
) -> Vec<Interaction> {
    let facts = Facts::read(entries, epoch);
    let mut out = Vec::new();
    for key in &facts.touched {
        let (lease, provider) = *key;
        let grant = facts.grants.get(key).and_then(|g| g.values().next());
        let receipts = facts.receipts.get(key);
        // The agent is the grant's; without one, that of the latest receipt.
        let latest_any = receipts.and_then(|r| r.iter().max_by_key(|(d, r)| (r.seq, **d)));
        let Some(agent) = grant
            .map(|g| g.agent)
            .or_else(|| latest_any.map(|(_, r)| r.agent))
        else {
            // A rating alone proves no lease.
            continue;
        };
        if agent == provider {
            // A key leasing from itself says nothing about how it serves others.
            continue;
        }
        let theirs: Vec<(&Digest, &Receipt)> = receipts
            .map(|r| r.iter().filter(|(_, r)| r.agent == agent).collect())
            .unwrap_or_default();
        let latest = theirs.iter().max_by_key(|(d, r)| (r.seq, **d));
        let latest_acked = theirs
            .iter()
            .filter(|(d, _)| facts.acked.contains(*d))
            .max_by_key(|(d, r)| (r.seq, **d));
        let (outcome, spent_micro, at) = match (latest, grant) {
            (Some((_, last)), _) => {
                let spent = latest_acked.map_or(last.total_micro, |(_, r)| r.total_micro);
                let outcome = if last.provider_failed {
                    Outcome::Failed
                } else {
                    Outcome::Ran {
                        acked: latest_acked.is_some(),
                    }
                };
                (outcome, spent, grant.map_or(last.from, |g| g.starts_at))
            }
            (None, Some(g)) => {
                if g.starts_at.saturating_add(config.receipt_grace) > epoch.end {
                    // Too recent to say it never ran.
                    continue;
                }
                (Outcome::NeverRan, g.reserved_micro, g.starts_at)
            }
            (None, None) => continue,
        };
        let paid_micro = funding
            .paid_micro(&agent, &lease, at, spent_micro)
            .min(spent_micro);
        let rating = facts
            .ratings
            .get(&(*key, agent))
            .map(|(_, _, score)| *score);
        let attested = latest_acked.is_some() || rating.is_some();
        if matches!(outcome, Outcome::Ran { .. }) && !attested {
            // Grants and receipts are the provider's own: praise needs the agent's signature
            // (a provider could log leases no agent ever asked for), blame does not (a
            // provider's own grant without a receipt, or its own failure, only harms it).
            continue;
        }
        out.push(Interaction {
            agent,
            provider,
            lease,
            outcome,
            spent_micro,
            paid_micro,
            rating,
            attested,
        });
    }
    out.sort();
    out
}

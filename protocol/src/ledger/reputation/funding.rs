//! [`Funding`]: which spend is paid (and weighs) and which is free-tier (and weighs zero).
//!
//! The evidence says what a lease cost (its receipts, or its grant's reservation) but not
//! which credit paid for it: quota is the committee's business. What the log can tell is who
//! could pay at all. [`SignupFunding`] reads it: an agent whose logged signup record carries
//! a credential rooted at a recognised issuer (the network's issuers, e.g. from genesis),
//! valid at the time of the lease and not revoked by a logged revocation, spends credit that
//! issuer granted; everyone else (unattested agents, the contained tier, credentials from
//! unknown roots) spends the free allowance, which weighs zero. Its voice is capped by the
//! credential's spending limit, so colluders cannot weigh more than they were granted,
//! whatever their receipts claim.
//!
//! Once the quota committee settles leases, a [`Funding`] that reads settled, paid amounts
//! from quota accounts can replace it without touching the rest: the input is a per-lease
//! "paid micro-credits" the caller derives, the same on every replica.

use std::collections::{BTreeMap, BTreeSet};

use crate::attestation::{Attestation, Credential};
use crate::id::AgoraId;
use crate::lease::LeaseId;
use crate::signed::{Digest, Signed};
use crate::signup::MICRO_PER_CREDIT;
use crate::time::Timestamp;

use super::super::entry::Entry;
use super::super::fact::Fact;

/// Which part of a lease's spend counts as paid. Implementations must be deterministic
/// functions of data every replica shares (the log, genesis), or replicas rank differently.
pub trait Funding {
    /// Of `spent_micro` that `agent` spent (or had locked) on `lease`, begun at `at`, the
    /// micro-credits paid from funded credit: 0 for free-tier spend, at most `spent_micro`.
    fn paid_micro(&self, agent: &AgoraId, lease: &LeaseId, at: Timestamp, spent_micro: u64) -> u64;

    /// The most paid micro-credits that count towards `agent`'s voice in one epoch;
    /// `u64::MAX` for no cap.
    fn voice_cap_micro(&self, agent: &AgoraId) -> u64 {
        let _ = agent;
        u64::MAX
    }
}

/// A closure `(agent, lease, at, spent_micro) -> paid_micro` is a [`Funding`] without a cap
/// (for callers that derive paid amounts themselves, and tests).
impl<F> Funding for F
where
    F: Fn(&AgoraId, &LeaseId, Timestamp, u64) -> u64,
{
    fn paid_micro(&self, agent: &AgoraId, lease: &LeaseId, at: Timestamp, spent_micro: u64) -> u64 {
        self(agent, lease, at, spent_micro).min(spent_micro)
    }
}

/// One credential that funds an agent: when, and up to how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Funded {
    /// The latest `not_before` of its links.
    from: Timestamp,
    /// The earliest `expires_at` of its links.
    until: Timestamp,
    /// The smallest spending limit of its links, micro-credits.
    cap_micro: u64,
}

/// Funding read from the log's signup records and revocations (see the [module docs](self)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignupFunding {
    funded: BTreeMap<AgoraId, Vec<Funded>>,
}

impl SignupFunding {
    /// Reads the signup records and revocations of `entries` dated before `until` (an
    /// epoch's end), trusting credentials rooted at one of `issuers`. The order of
    /// `entries` does not matter.
    pub fn from_entries<'e>(
        entries: impl IntoIterator<Item = &'e Signed<Entry>>,
        issuers: &BTreeSet<AgoraId>,
        until: Timestamp,
    ) -> Self {
        let mut credentials: BTreeMap<Digest, Credential> = BTreeMap::new();
        // (issuer, attestation digest) pairs revoked by their issuer.
        let mut revoked: BTreeSet<(AgoraId, Digest)> = BTreeSet::new();
        for entry in entries {
            let body = entry.body();
            if body.at >= until {
                continue;
            }
            match &body.fact {
                Fact::Signup(record) => {
                    if let Some(credential) = &record.body().credential {
                        credentials.insert(record.digest(), credential.clone());
                    }
                }
                Fact::Revocation(r) => {
                    revoked.insert((r.body().issuer, r.body().attestation));
                }
                _ => {}
            }
        }
        let mut funded: BTreeMap<AgoraId, Vec<Funded>> = BTreeMap::new();
        for credential in credentials.values() {
            if !issuers.contains(&credential.root().body().issuer) {
                continue;
            }
            let links: Vec<&Signed<Attestation>> = credential.chain().collect();
            if links
                .iter()
                .any(|l| revoked.contains(&(l.body().issuer, l.digest())))
            {
                continue;
            }
            let from = links
                .iter()
                .map(|l| l.body().not_before)
                .max()
                .unwrap_or(Timestamp::MAX);
            let until = links
                .iter()
                .map(|l| l.body().expires_at)
                .min()
                .unwrap_or(Timestamp::EPOCH);
            let cap_micro = links
                .iter()
                .map(|l| l.body().claims.spending_limit_credits)
                .min()
                .unwrap_or(0)
                .saturating_mul(MICRO_PER_CREDIT);
            funded.entry(credential.holder()).or_default().push(Funded {
                from,
                until,
                cap_micro,
            });
        }
        for list in funded.values_mut() {
            list.sort_by_key(|f| (f.from, f.until, f.cap_micro));
            list.dedup();
        }
        Self { funded }
    }

    /// Whether `agent` holds a funding credential valid at `at`.
    pub fn is_funded(&self, agent: &AgoraId, at: Timestamp) -> bool {
        self.funded
            .get(agent)
            .is_some_and(|list| list.iter().any(|f| f.from <= at && at < f.until))
    }
}

impl Funding for SignupFunding {
    fn paid_micro(
        &self,
        agent: &AgoraId,
        _lease: &LeaseId,
        at: Timestamp,
        spent_micro: u64,
    ) -> u64 {
        if self.is_funded(agent, at) {
            spent_micro
        } else {
            0
        }
    }

    /// The largest spending limit among the agent's funding credentials (0 without one).
    fn voice_cap_micro(&self, agent: &AgoraId) -> u64 {
        self.funded
            .get(agent)
            .and_then(|list| list.iter().map(|f| f.cap_micro).max())
            .unwrap_or(0)
    }
}

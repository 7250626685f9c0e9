//! The quota machine: what an agent may commit, lock by lock.
//!
//! Admission asks "may this agent commit this much for this lease?" and gets a
//! [`QuotaAnswer`] back as an input event. [`QuotaBook`] answers from one node's own view:
//! an account per agent with what it has spent and what is locked for running leases. The
//! replicated ledger replaces it with network-wide lock certificates without changing
//! admission, which only sees the answer.
//!
//! Rules:
//! - a lock fits when spent + locked + amount ≤ the tier's spending limit;
//! - above the limit, a lock the owner approved (for at least the amount) is granted and does
//!   not count against the agent's own limit; without approval an agent with an owner is
//!   told `approval_required`, one without is refused for `quota`;
//! - settling a lease moves what it actually cost (at most its lock) to spent and frees the
//!   rest; a lock unsettled at its expiry returns in full.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::AgoraId;
use crate::lease::{LeaseId, Refusal, RefusalCode};
use crate::signup::MICRO_PER_CREDIT;
use crate::time::Timestamp;

/// What admission asks the quota machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaRequest {
    /// The lease the lock is for.
    pub lease: LeaseId,
    /// The agent paying.
    pub agent: AgoraId,
    /// Micro-credits to lock (price × lifetime).
    pub amount_micro: u64,
    /// The agent's spending limit, micro-credits.
    pub limit_micro: u64,
    /// What the owner approved for this lease, micro-credits, if anything.
    pub approved_micro: Option<u64>,
    /// Whether the agent has an owner who could approve.
    pub has_owner: bool,
    /// When the lock lapses if the lease is never settled.
    pub expires_at: Timestamp,
}

/// The quota machine's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuotaAnswer {
    /// Locked: the lease may start.
    Granted,
    /// Not locked, and why.
    Denied(Refusal),
}

/// One lock on an agent's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// Micro-credits locked.
    pub amount_micro: u64,
    /// Whether the owner approved it (it does not count against the limit).
    pub approved: bool,
    /// Of a lock within the limit, what extensions the owner approved added to it (it
    /// does not count against the limit either).
    #[serde(default)]
    pub approved_extra_micro: u64,
    /// When it lapses.
    pub expires_at: Timestamp,
}

impl Lock {
    /// What of it counts against the agent's own limit.
    pub fn own_micro(&self) -> u64 {
        if self.approved {
            0
        } else {
            self.amount_micro.saturating_sub(self.approved_extra_micro)
        }
    }
}

/// One agent's quota as this node sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Micro-credits spent within the limit.
    pub spent_micro: u64,
    /// Micro-credits spent under the owner's approvals.
    pub approved_spent_micro: u64,
    /// Locks of running leases.
    pub locks: BTreeMap<LeaseId, Lock>,
}

impl Account {
    /// What counts against the limit: spent plus unapproved locks.
    pub fn committed_micro(&self) -> u64 {
        self.locks
            .values()
            .fold(self.spent_micro, |sum, l| sum.saturating_add(l.own_micro()))
    }

    /// Micro-credits locked in total.
    pub fn locked_micro(&self) -> u64 {
        self.locks
            .values()
            .fold(0u64, |sum, l| sum.saturating_add(l.amount_micro))
    }
}

/// Every agent's account on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaBook {
    accounts: BTreeMap<AgoraId, Account>,
}

/// What settling a lease did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Micro-credits charged (at most the lock).
    pub charged_micro: u64,
    /// Micro-credits returned to the agent.
    pub returned_micro: u64,
}

impl QuotaBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// One agent's account.
    pub fn account(&self, agent: &AgoraId) -> Option<&Account> {
        self.accounts.get(agent)
    }

    /// Every account.
    pub fn accounts(&self) -> impl Iterator<Item = (&AgoraId, &Account)> {
        self.accounts.iter()
    }

    /// Puts back one agent's account as a driver stored it (after a restart).
    pub fn restore(&mut self, agent: AgoraId, account: Account) {
        if account.locks.is_empty() && account.spent_micro == 0 && account.approved_spent_micro == 0
        {
            self.accounts.remove(&agent);
        } else {
            self.accounts.insert(agent, account);
        }
    }

    /// Asks for a lock. Locking the same lease twice answers as the first time (idempotent,
    /// so a retried request does not lock twice).
    pub fn lock(&mut self, request: &QuotaRequest) -> QuotaAnswer {
        let account = self.accounts.entry(request.agent).or_default();
        if account.locks.contains_key(&request.lease) {
            return QuotaAnswer::Granted;
        }
        let committed = account.committed_micro();
        let fits = committed
            .checked_add(request.amount_micro)
            .is_some_and(|total| total <= request.limit_micro);
        let approved = request
            .approved_micro
            .is_some_and(|a| a >= request.amount_micro);
        if !fits && !approved {
            let need = format!(
                "the lease may cost {} credits; the limit is {}, of which {} are committed",
                credits(request.amount_micro),
                credits(request.limit_micro),
                credits(committed)
            );
            let refusal = if request.approved_micro.is_some() {
                Refusal::new(
                    RefusalCode::ApprovalInvalid,
                    format!("the owner's approval does not cover it: {need}"),
                )
            } else if request.has_owner {
                Refusal::new(RefusalCode::ApprovalRequired, need)
            } else {
                Refusal::new(RefusalCode::Quota, need)
            };
            if account.locks.is_empty() && account.spent_micro == 0 {
                self.accounts.remove(&request.agent);
            }
            return QuotaAnswer::Denied(refusal);
        }
        account.locks.insert(
            request.lease,
            Lock {
                amount_micro: request.amount_micro,
                approved: !fits,
                approved_extra_micro: 0,
                expires_at: request.expires_at,
            },
        );
        QuotaAnswer::Granted
    }

    /// Grows a lease's lock by `extension.amount_micro` until `extension.expires_at` (an
    /// extension), under the same rule as a new lock: within the limit, or covered by the
    /// owner's approval of this extension (`approved_micro`), which then does not count
    /// against the limit. An owner-approved lease grows only by a new approval.
    pub fn grow(&mut self, extension: &QuotaRequest) -> QuotaAnswer {
        let no_lock = || QuotaAnswer::Denied(Refusal::new(RefusalCode::UnknownLease, "no lock"));
        let Some(account) = self.accounts.get_mut(&extension.agent) else {
            return no_lock();
        };
        let committed = account.committed_micro();
        let Some(lock) = account.locks.get_mut(&extension.lease) else {
            return no_lock();
        };
        let extra = extension.amount_micro;
        let fits = !lock.approved
            && committed
                .checked_add(extra)
                .is_some_and(|total| total <= extension.limit_micro);
        let approved = extension.approved_micro.is_some_and(|a| a >= extra);
        if !fits && !approved {
            let need = if lock.approved {
                format!(
                    "the lease runs on its owner's approval; extending costs {} credits more, \
                     which the owner approves anew",
                    credits(extra)
                )
            } else {
                format!(
                    "extending costs {} credits more; the limit is {}, of which {} are committed",
                    credits(extra),
                    credits(extension.limit_micro),
                    credits(committed)
                )
            };
            let code = if extension.approved_micro.is_some() {
                RefusalCode::ApprovalInvalid
            } else if extension.has_owner {
                RefusalCode::ApprovalRequired
            } else {
                RefusalCode::Quota
            };
            let need = if code == RefusalCode::ApprovalInvalid {
                format!("the owner's approval does not cover it: {need}")
            } else {
                need
            };
            return QuotaAnswer::Denied(Refusal::new(code, need));
        }
        lock.amount_micro = lock.amount_micro.saturating_add(extra);
        if !fits && !lock.approved {
            lock.approved_extra_micro = lock.approved_extra_micro.saturating_add(extra);
        }
        lock.expires_at = lock.expires_at.max(extension.expires_at);
        QuotaAnswer::Granted
    }

    /// Settles a lease: charges what it cost (at most its lock), returns the rest.
    /// `None` if the lease holds no lock (already settled or never locked).
    pub fn settle(&mut self, agent: &AgoraId, lease: &LeaseId, cost_micro: u64) -> Option<Settled> {
        let account = self.accounts.get_mut(agent)?;
        let lock = account.locks.remove(lease)?;
        let charged = cost_micro.min(lock.amount_micro);
        // The agent's own part is spent first: the owner approved what goes beyond it.
        let own = charged.min(lock.own_micro());
        account.spent_micro = account.spent_micro.saturating_add(own);
        account.approved_spent_micro = account.approved_spent_micro.saturating_add(charged - own);
        Some(Settled {
            charged_micro: charged,
            returned_micro: lock.amount_micro - charged,
        })
    }

    /// Returns the locks that lapsed by `now`, unspent; yields (agent, lease) of each.
    pub fn expire(&mut self, now: Timestamp) -> Vec<(AgoraId, LeaseId)> {
        let mut lapsed = Vec::new();
        for (agent, account) in &mut self.accounts {
            account.locks.retain(|lease, lock| {
                let keep = lock.expires_at > now;
                if !keep {
                    lapsed.push((*agent, *lease));
                }
                keep
            });
        }
        lapsed
    }
}

fn credits(micro: u64) -> String {
    let whole = micro / MICRO_PER_CREDIT;
    let frac = micro % MICRO_PER_CREDIT;
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:06}")
            .trim_end_matches('0')
            .to_owned()
    }
}

#[cfg(test)]
#[path = "quota_tests.rs"]
mod tests;

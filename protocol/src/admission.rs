//! Admission: the provider's sans-IO decision on lease requests and operations.
//!
//! ```text
//! LeaseProposal + Standing ──request()──▶ Decision::NeedQuota(QuotaRequest) ──▶ quota machine
//!                                   └───▶ Decision::Refused(Refusal)                │
//! ActiveLease / Refusal ◀──quota_answer(lease, QuotaAnswer)───────────────────────────┘
//! ```
//!
//! The driver (the node, the simulator) verifies signatures when decoding and judges the
//! agent's signup record against its own trust roots (the [`Standing`]); admission then
//! checks everything else against the provider's own recent offers and state: freshness,
//! replay, candidates, runtime and image, tier limits, lifetime, price, delegation scope,
//! owner approval and capacity. Capacity is held for a request while its quota is asked, so
//! two requests can never both take the last slot. Quota arrives as an input event
//! ([`Admission::quota_answer`]): the local [`crate::quota::QuotaBook`] today, network-wide
//! certificates later, with no change here.
//!
//! Operations on a lease ([`Admission::check_op`]) must be signed by the lease's agent (or
//! its delegate, within scope), be fresh and never seen before.

use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::id::AgoraId;
use crate::lease::{
    Approval, LeaseId, LeaseOp, LeaseProposal, LeaseRequest, NONCE_LEN, Op, OpKind, Refusal,
    RefusalCode,
};
use crate::offer::{Isolation, Offer, Prices};
use crate::quota::{QuotaAnswer, QuotaRequest};
use crate::signed::{Digest, Signed};
use crate::signup::{MICRO_PER_CREDIT, TierLimits};
use crate::time::Timestamp;
use crate::workload::{ImageSource, Resources};

/// Limits and tolerances of the admission machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionConfig {
    /// What this provider sells in total.
    pub capacity: Resources,
    /// Oldest request or operation accepted (by its `issued_at`, or an approval's time).
    pub max_age: Duration,
    /// How far in the future an `issued_at` may be (clock skew).
    pub max_skew: Duration,
    /// Most requests waiting for a quota answer.
    pub max_pending: usize,
    /// Most leases at once.
    pub max_leases: usize,
    /// How many of its latest offers the provider honours (agents may have picked the
    /// previous one just before a re-advertisement).
    pub remembered_offers: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            capacity: Resources {
                vcpu_milli: 2000,
                memory_mib: 4096,
                disk_mib: 8192,
                pids: u32::MAX,
            },
            max_age: Duration::from_secs(300),
            max_skew: Duration::from_secs(30),
            max_pending: 256,
            max_leases: 1024,
            remembered_offers: 4,
        }
    }
}

/// What the driver learned about the agent from its signup record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    /// The agent.
    pub agent: AgoraId,
    /// Its tier's limits.
    pub tier: TierLimits,
    /// The owner who approves spending above the limit, if any.
    pub owner: Option<AgoraId>,
}

/// A lease this provider runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveLease {
    /// The lease id.
    pub lease: LeaseId,
    /// The agent.
    pub agent: AgoraId,
    /// The delegate that requested it, if any.
    pub delegate: Option<AgoraId>,
    /// The offer it was granted under.
    pub offer: Digest,
    /// Runtime class.
    pub isolation: Isolation,
    /// Resources held.
    pub resources: Resources,
    /// Workload ports (for the capability).
    pub ports: Vec<u16>,
    /// Price, micro-credits per second.
    pub price_per_sec: u64,
    /// Micro-credits locked for it.
    pub reserved_micro: u64,
    /// When it began.
    pub starts_at: Timestamp,
    /// When it ends unless extended.
    pub expires_at: Timestamp,
    /// The agent's tier (for later operations: file size caps, extensions).
    pub tier: TierLimits,
    /// The owner the agent's attestation names, as this provider's trust roots found it:
    /// who may approve an extension above the agent's spending limit.
    #[serde(default)]
    pub owner: Option<AgoraId>,
}

impl ActiveLease {
    /// Cost up to `now`, micro-credits (whole seconds, capped at the reservation).
    pub fn cost_until(&self, now: Timestamp) -> u64 {
        let secs = now
            .min(self.expires_at)
            .saturating_duration_since(self.starts_at)
            .as_secs();
        self.price_per_sec
            .saturating_mul(secs)
            .min(self.reserved_micro)
    }
}

/// The outcome of [`Admission::request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// All but quota checks out; capacity is held. Ask the quota machine, then call
    /// [`Admission::quota_answer`].
    NeedQuota(QuotaRequest),
    /// Refused.
    Refused(Refusal),
}

struct Pending {
    lease: ActiveLease,
    since: Timestamp,
}

/// The admission machine of one provider.
pub struct Admission {
    provider: AgoraId,
    config: AdmissionConfig,
    offers: VecDeque<Signed<Offer>>,
    leases: BTreeMap<LeaseId, ActiveLease>,
    pending: BTreeMap<LeaseId, Pending>,
    /// Request ids and operation nonces seen, until they would be stale anyway.
    seen: BTreeMap<Digest, Timestamp>,
}

fn refuse(code: RefusalCode, detail: impl Into<String>) -> Refusal {
    Refusal::new(code, detail)
}

/// The price of `r` under `prices`, micro-credits per second.
pub fn price_of(prices: &Prices, r: &Resources) -> u64 {
    prices
        .per_second(r.vcpu_milli, r.memory_mib)
        .saturating_add(prices.disk_gib.saturating_mul(r.disk_mib) / 1024)
}

impl Admission {
    /// A machine for `provider` with nothing admitted.
    pub fn new(provider: AgoraId, config: AdmissionConfig) -> Self {
        Self {
            provider,
            config,
            offers: VecDeque::new(),
            leases: BTreeMap::new(),
            pending: BTreeMap::new(),
            seen: BTreeMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    /// Records an offer this provider published; the latest few are honoured.
    pub fn offer_published(&mut self, offer: Signed<Offer>) {
        if offer.body().provider != self.provider {
            return;
        }
        self.offers.push_back(offer);
        while self.offers.len() > self.config.remembered_offers.max(1) {
            self.offers.pop_front();
        }
    }

    /// Leases running.
    pub fn leases(&self) -> impl Iterator<Item = &ActiveLease> {
        self.leases.values()
    }

    /// One lease.
    pub fn lease(&self, id: &LeaseId) -> Option<&ActiveLease> {
        self.leases.get(id)
    }

    /// Resources held by running and pending leases.
    pub fn committed(&self) -> Resources {
        let all = self
            .leases
            .values()
            .chain(self.pending.values().map(|p| &p.lease));
        all.fold(
            Resources {
                vcpu_milli: 0,
                memory_mib: 0,
                disk_mib: 0,
                pids: 0,
            },
            |sum, l| add(&sum, &l.resources),
        )
    }

    /// Adopts a lease granted before a restart (from the store).
    pub fn restore(&mut self, lease: ActiveLease) {
        self.leases.insert(lease.lease, lease);
    }

    fn fresh(&self, issued_at: Timestamp, now: Timestamp) -> Result<(), Refusal> {
        if issued_at > now.saturating_add(self.config.max_skew) {
            return Err(refuse(
                RefusalCode::Stale,
                format!("issued at {issued_at}, in the future (now {now})"),
            ));
        }
        if issued_at.saturating_add(self.config.max_age) < now {
            return Err(refuse(
                RefusalCode::Stale,
                format!(
                    "issued at {issued_at}, more than {} s ago",
                    self.config.max_age.as_secs()
                ),
            ));
        }
        Ok(())
    }

    /// Judges a lease proposal. `standing` is the driver's judgement of the request's
    /// signup record (the same agent); `now` is the provider's clock.
    pub fn request(
        &mut self,
        proposal: &LeaseProposal,
        standing: &Standing,
        now: Timestamp,
    ) -> Decision {
        match self.check_request(proposal, standing, now) {
            Ok(pending) => {
                let q = QuotaRequest {
                    lease: pending.lease,
                    agent: pending.agent,
                    amount_micro: pending.reserved_micro,
                    limit_micro: standing.tier.spending_limit_micro(),
                    approved_micro: proposal.approval.as_ref().map(|a| a.body().max_cost_micro),
                    has_owner: standing.owner.is_some(),
                    expires_at: pending.expires_at,
                };
                self.pending.insert(
                    pending.lease,
                    Pending {
                        lease: pending,
                        since: now,
                    },
                );
                Decision::NeedQuota(q)
            }
            Err(refusal) => Decision::Refused(refusal),
        }
    }

    fn check_request(
        &self,
        proposal: &LeaseProposal,
        standing: &Standing,
        now: Timestamp,
    ) -> Result<ActiveLease, Refusal> {
        let lease = proposal.request.digest();
        let req: &LeaseRequest = proposal.request.body();
        if standing.agent != req.agent {
            return Err(refuse(
                RefusalCode::Invalid,
                "standing is for another agent",
            ));
        }
        // An owner's approval vouches for the request's freshness at approval time, so a
        // request may wait for its owner longer than `max_age`.
        let approval = self.check_approval(lease, req, proposal.approval.as_ref(), standing)?;
        self.fresh(approval.map_or(req.issued_at, |a| a.approved_at), now)?;
        if self.leases.contains_key(&lease)
            || self.pending.contains_key(&lease)
            || self.seen.contains_key(&lease)
        {
            return Err(refuse(
                RefusalCode::Replay,
                format!("request {lease} was seen before"),
            ));
        }
        if self.pending.len() >= self.config.max_pending
            || self.leases.len() >= self.config.max_leases
        {
            return Err(refuse(RefusalCode::Capacity, "too many leases in progress"));
        }
        let candidate = req.candidate_for(&self.provider).ok_or_else(|| {
            refuse(
                RefusalCode::OfferMismatch,
                "this provider is not among the candidates",
            )
        })?;
        let offer = self
            .offers
            .iter()
            .rev()
            .find(|o| o.digest() == candidate.offer)
            .ok_or_else(|| {
                refuse(
                    RefusalCode::OfferMismatch,
                    format!(
                        "offer {} is not a current offer of this provider",
                        candidate.offer
                    ),
                )
            })?;
        let offer_body = offer.body();
        if req.issued_at > offer_body.expires_at {
            return Err(refuse(
                RefusalCode::OfferMismatch,
                format!("offer expired at {}", offer_body.expires_at),
            ));
        }
        let runtime = offer_body
            .runtimes
            .iter()
            .find(|r| r.isolation == req.isolation)
            .ok_or_else(|| {
                refuse(
                    RefusalCode::Unsupported,
                    format!("runtime {} is not offered", req.isolation.as_str()),
                )
            })?;
        match &req.spec.image {
            ImageSource::Named { name, digest } => {
                if !runtime
                    .images
                    .iter()
                    .any(|i| i.name == *name && i.digest == *digest)
                {
                    return Err(refuse(
                        RefusalCode::Unsupported,
                        format!(
                            "image {name} ({digest}) is not offered on {}",
                            req.isolation.as_str()
                        ),
                    ));
                }
            }
            ImageSource::Tarball { .. } => {
                return Err(refuse(
                    RefusalCode::Unsupported,
                    "uploaded images are not accepted by this provider",
                ));
            }
        }
        let tier = &standing.tier;
        if !offer_body.tiers.is_empty() && !offer_body.tiers.contains(&tier.name) {
            return Err(refuse(
                RefusalCode::Policy,
                format!(
                    "tier {} is not served (served: {})",
                    tier.name,
                    offer_body.tiers.join(", ")
                ),
            ));
        }
        let r = &req.spec.resources;
        let over = [
            (
                "vcpu_milli",
                u64::from(r.vcpu_milli),
                u64::from(tier.max_vcpu_milli),
            ),
            ("memory_mib", r.memory_mib, tier.max_memory_mib),
            ("disk_mib", r.disk_mib, tier.max_disk_mib),
        ]
        .into_iter()
        .find(|(_, want, max)| want > max);
        if let Some((what, want, max)) = over {
            return Err(refuse(
                RefusalCode::TierLimit,
                format!("{what} {want} is above tier {}'s {max}", tier.name),
            ));
        }
        let running = self
            .leases
            .values()
            .chain(self.pending.values().map(|p| &p.lease))
            .filter(|l| l.agent == req.agent)
            .count();
        if running >= usize::try_from(tier.max_concurrent).unwrap_or(usize::MAX) {
            return Err(refuse(
                RefusalCode::TooManyLeases,
                format!(
                    "tier {} allows {} leases at once here",
                    tier.name, tier.max_concurrent
                ),
            ));
        }
        let lifetime = req.spec.lifetime_secs;
        let max_lifetime = tier.max_lifetime_secs.min(offer_body.max_lease_secs);
        if lifetime == 0 || lifetime > max_lifetime {
            return Err(refuse(
                RefusalCode::Lifetime,
                format!("{lifetime} s requested, 1 to {max_lifetime} s allowed"),
            ));
        }
        if req.spec.network.egress && !(tier.egress && offer_body.network.egress) {
            return Err(refuse(
                RefusalCode::Policy,
                "egress is not allowed for this tier or by this provider",
            ));
        }
        let price = price_of(&offer_body.prices, r);
        if price > req.max_price_per_sec {
            return Err(refuse(
                RefusalCode::Price,
                format!(
                    "the price is {price} µcr/s, above the ceiling {}",
                    req.max_price_per_sec
                ),
            ));
        }
        let reserved = price.saturating_mul(lifetime);
        if let Some(d) = &req.delegation {
            let d = d.body();
            if !d.allows(OpKind::Lease, now) {
                return Err(refuse(
                    RefusalCode::Unauthorized,
                    "the delegation does not allow leases now",
                ));
            }
            if reserved > d.spend_cap_credits.saturating_mul(MICRO_PER_CREDIT) {
                return Err(refuse(
                    RefusalCode::Unauthorized,
                    format!("the lease may cost {reserved} µcr, above the delegation's cap"),
                ));
            }
        }
        let held = add(&self.committed(), r);
        let cap = &self.config.capacity;
        if held.vcpu_milli > cap.vcpu_milli
            || held.memory_mib > cap.memory_mib
            || held.disk_mib > cap.disk_mib
        {
            return Err(refuse(
                RefusalCode::Capacity,
                "not enough free capacity now",
            ));
        }
        Ok(ActiveLease {
            lease,
            agent: req.agent,
            delegate: req.delegation.as_ref().map(|d| d.body().delegate),
            offer: candidate.offer,
            isolation: req.isolation,
            resources: *r,
            ports: req.spec.ports.iter().map(|p| p.port).collect(),
            price_per_sec: price,
            reserved_micro: reserved,
            starts_at: now,
            expires_at: now.saturating_add(Duration::from_secs(lifetime)),
            tier: tier.clone(),
            owner: standing.owner,
        })
    }

    fn check_approval<'a>(
        &self,
        lease: LeaseId,
        req: &LeaseRequest,
        approval: Option<&'a Signed<Approval>>,
        standing: &Standing,
    ) -> Result<Option<&'a Approval>, Refusal> {
        let Some(approval) = approval else {
            return Ok(None);
        };
        let a = approval.body();
        if standing.owner != Some(a.owner) {
            return Err(refuse(
                RefusalCode::ApprovalInvalid,
                format!("approved by {}, who is not the agent's owner", a.owner),
            ));
        }
        if a.request != lease || a.agent != req.agent {
            return Err(refuse(
                RefusalCode::ApprovalInvalid,
                "the approval is for another request",
            ));
        }
        Ok(Some(a))
    }

    /// Feeds the quota machine's answer for a pending request: the lease starts (the driver
    /// then launches the workload and signs the grant) or is refused.
    pub fn quota_answer(
        &mut self,
        lease: &LeaseId,
        answer: QuotaAnswer,
        now: Timestamp,
    ) -> Result<ActiveLease, Refusal> {
        let pending = self
            .pending
            .remove(lease)
            .ok_or_else(|| refuse(RefusalCode::UnknownLease, "no request is waiting for quota"))?;
        match answer {
            QuotaAnswer::Granted => {
                let mut granted = pending.lease;
                // The lease runs its full lifetime from now, however long quota took.
                let lifetime = granted
                    .expires_at
                    .saturating_duration_since(granted.starts_at);
                granted.starts_at = now.max(pending.since);
                granted.expires_at = granted.starts_at.saturating_add(lifetime);
                self.leases.insert(granted.lease, granted.clone());
                Ok(granted)
            }
            QuotaAnswer::Denied(refusal) => {
                // A request waiting for its owner may come back with an approval.
                if refusal.code != RefusalCode::ApprovalRequired {
                    self.remember(*lease, pending.since);
                }
                Err(refusal)
            }
        }
    }

    /// Cancels a granted or pending lease whose workload could not start (no charge).
    pub fn abort(&mut self, lease: &LeaseId, now: Timestamp) -> Option<ActiveLease> {
        let out = self
            .leases
            .remove(lease)
            .or_else(|| self.pending.remove(lease).map(|p| p.lease));
        if out.is_some() {
            self.remember(*lease, now);
        }
        out
    }

    fn remember(&mut self, id: Digest, at: Timestamp) {
        let until = at
            .saturating_add(self.config.max_age)
            .saturating_add(self.config.max_skew);
        self.seen.insert(id, until);
    }

    /// Checks an operation on a lease: signed by its agent (or the lease's delegate within
    /// scope), for this provider, fresh and not seen before. Records its nonce.
    pub fn check_op(
        &mut self,
        op: &Signed<LeaseOp>,
        now: Timestamp,
    ) -> Result<&ActiveLease, Refusal> {
        self.check_op_approved(op, None, now)
    }

    /// [`Admission::check_op`] for an operation that waited for the owner's `approval`
    /// (an extension above the agent's spending limit): the approval must be signed by
    /// the owner the lease's attestation names, for this agent and this very operation
    /// (its digest), and it vouches for the operation's freshness at approval time.
    pub fn check_op_approved(
        &mut self,
        op: &Signed<LeaseOp>,
        approval: Option<&Signed<Approval>>,
        now: Timestamp,
    ) -> Result<&ActiveLease, Refusal> {
        let body = op.body();
        if body.provider != self.provider {
            return Err(refuse(
                RefusalCode::Invalid,
                "the operation names another provider",
            ));
        }
        let signed_at = match approval {
            None => body.issued_at,
            Some(approval) => {
                let a = approval.body();
                let owner = self.leases.get(&body.lease).and_then(|l| l.owner);
                if owner != Some(a.owner) {
                    return Err(refuse(
                        RefusalCode::ApprovalInvalid,
                        format!("approved by {}, who is not the agent's owner", a.owner),
                    ));
                }
                if a.request != op.digest() || a.agent != body.agent {
                    return Err(refuse(
                        RefusalCode::ApprovalInvalid,
                        "the approval is for another operation",
                    ));
                }
                if body.issued_at > a.approved_at.saturating_add(self.config.max_skew) {
                    return Err(refuse(
                        RefusalCode::ApprovalInvalid,
                        "the approval is older than the operation it approves",
                    ));
                }
                a.approved_at
            }
        };
        self.fresh(signed_at, now)?;
        let lease = self.leases.get(&body.lease).ok_or_else(|| {
            refuse(
                RefusalCode::UnknownLease,
                format!("no lease {} here", body.lease),
            )
        })?;
        if lease.agent != body.agent {
            return Err(refuse(RefusalCode::Unauthorized, "not the lease's agent"));
        }
        if let Some(d) = &body.delegation
            && !d.body().allows(body.op.kind(), now)
        {
            return Err(refuse(
                RefusalCode::Unauthorized,
                format!("the delegation does not allow {:?} now", body.op.kind()),
            ));
        }
        let key = op_key(&body.lease, &body.nonce);
        if self.seen.contains_key(&key) {
            return Err(refuse(
                RefusalCode::Replay,
                "this operation was performed before",
            ));
        }
        if let Op::Extend { secs } = body.op
            && secs == 0
        {
            return Err(refuse(RefusalCode::Invalid, "an extension of 0 s"));
        }
        let until = signed_at
            .saturating_add(self.config.max_age)
            .saturating_add(self.config.max_skew);
        self.seen.insert(key, until);
        self.leases
            .get(&body.lease)
            .ok_or_else(|| refuse(RefusalCode::UnknownLease, "gone"))
    }

    /// Forgets that `op` was performed: an extension the quota machine sent to the owner
    /// (`approval_required`) may come back with the owner's approval, nonce and all.
    pub fn forget_op(&mut self, op: &LeaseOp) {
        self.seen.remove(&op_key(&op.lease, &op.nonce));
    }

    /// Prices an extension of `lease` by `secs`: the quota to grow and the new expiry.
    /// Apply it with [`Admission::extended`] once quota grants it.
    pub fn extension(&self, lease: &LeaseId, secs: u64) -> Result<(u64, Timestamp), Refusal> {
        let l = self
            .leases
            .get(lease)
            .ok_or_else(|| refuse(RefusalCode::UnknownLease, "no such lease"))?;
        let total = l
            .expires_at
            .saturating_duration_since(l.starts_at)
            .as_secs()
            .saturating_add(secs);
        let offered_max = self
            .offers
            .iter()
            .rev()
            .find(|o| o.digest() == l.offer)
            .or(self.offers.back())
            .map_or(u64::MAX, |o| o.body().max_lease_secs);
        let max = l.tier.max_lifetime_secs.min(offered_max);
        if total > max {
            return Err(refuse(
                RefusalCode::Lifetime,
                format!("the lease would last {total} s, at most {max} s allowed"),
            ));
        }
        Ok((
            l.price_per_sec.saturating_mul(secs),
            l.expires_at.saturating_add(Duration::from_secs(secs)),
        ))
    }

    /// Applies a granted extension.
    pub fn extended(
        &mut self,
        lease: &LeaseId,
        extra_micro: u64,
        expires_at: Timestamp,
    ) -> Option<&ActiveLease> {
        let l = self.leases.get_mut(lease)?;
        l.reserved_micro = l.reserved_micro.saturating_add(extra_micro);
        l.expires_at = l.expires_at.max(expires_at);
        Some(l)
    }

    /// Ends a lease (stopped, expired, failed): frees its capacity. The driver settles its
    /// quota with [`ActiveLease::cost_until`].
    pub fn end(&mut self, lease: &LeaseId, now: Timestamp) -> Option<ActiveLease> {
        let l = self.leases.remove(lease)?;
        self.remember(*lease, now);
        Some(l)
    }

    /// Leases whose time is up at `now` (the driver stops them and calls [`Admission::end`]),
    /// and housekeeping: forgets replay entries that are stale anyway, and drops requests
    /// that waited for quota longer than `max_age`.
    pub fn tick(&mut self, now: Timestamp) -> Vec<LeaseId> {
        self.seen.retain(|_, until| *until > now);
        let max_age = self.config.max_age;
        self.pending
            .retain(|_, p| p.since.saturating_add(max_age) > now);
        self.leases
            .values()
            .filter(|l| l.expires_at <= now)
            .map(|l| l.lease)
            .collect()
    }
}

fn op_key(lease: &LeaseId, nonce: &[u8; NONCE_LEN]) -> Digest {
    let mut bytes = Vec::with_capacity(32 + NONCE_LEN);
    bytes.extend_from_slice(&lease.0);
    bytes.extend_from_slice(nonce);
    Digest::of(&bytes)
}

fn add(a: &Resources, b: &Resources) -> Resources {
    Resources {
        vcpu_milli: a.vcpu_milli.saturating_add(b.vcpu_milli),
        memory_mib: a.memory_mib.saturating_add(b.memory_mib),
        disk_mib: a.disk_mib.saturating_add(b.disk_mib),
        pids: a.pids.saturating_add(b.pids),
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;

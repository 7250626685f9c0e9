//! Providers in the market: admission, grants, receipts and settlement, honest or lying.
//!
//! ```text
//! LeaseProposal ──standing from the signup record──▶ Admission::request ──▶ NeedQuota(q)
//!   ──lock certificate verified (votes against the committee)──▶ committee::quota_answer
//!   ──▶ Admission::quota_answer ──▶ ActiveLease ──sign Capability + LeaseGrant──▶ agent
//! lease end ──▶ Admission::end ──sign UsageReceipt──▶ agent; Settle op ──committee──▶ paid
//! ```
//!
//! Liars: `never-run` grants and never runs, yet settles with a receipt it made up (it
//! sends that receipt only to its collective); `overstate` advertises four times its
//! capacity; `offline` runs its leases but its node crashes in the middle of each.

use std::collections::VecDeque;

use agora_protocol::admission::{Admission, AdmissionConfig, Decision, Standing};
use agora_protocol::committee::{Op, Settle, quota_answer};
use agora_protocol::lease::{
    Capability, LeaseGrant, LeaseProposal, Refusal, RefusalCode, UsageReceipt,
};
use agora_protocol::ledger::{Fact, Usage};
use agora_protocol::offer::Prices;
use agora_protocol::signup::{CONTAINED_TIER, TierLimits};
use agora_protocol::workload::{Resources, TerminationReason};
use agora_protocol::{AgoraId, Digest, Offer, Signed, Signer, Timestamp};
use ed25519_dalek::SigningKey;

use super::agent::LOCK_MARGIN;
use super::quota::{Purpose, Split};
use super::setup::OfferTerms;
use super::{Env, Event, Mail, Market, at, send, sim_time, timestamp};
use crate::rng;
use crate::scenario::{Lie, Providers};
use crate::time::SimDuration;
use crate::world::Sched;

/// How much more than it has an overstating provider advertises.
const OVERSTATE: u32 = 4;

/// One provider's market side.
pub struct MarketProvider {
    /// Its node.
    pub node: u32,
    /// Its id.
    pub id: AgoraId,
    key: SigningKey,
    /// How it lies, if it does.
    pub lie: Option<Lie>,
    /// The protocol's admission machine (rebuilt empty after its node crashes).
    pub admission: Admission,
    /// Price per vCPU, micro-credits per second.
    pub vcpu_price: u64,
    config: AdmissionConfig,
    /// The node life the admission belongs to.
    node_epoch: u32,
    /// Its offers' digests and expiry, newest last (for the auditor's offer check).
    offers: VecDeque<(Digest, Timestamp)>,
}

impl core::fmt::Debug for MarketProvider {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MarketProvider")
            .field("node", &self.node)
            .field("id", &self.id)
            .field("lie", &self.lie)
            .field("leases", &self.admission.leases().count())
            .finish_non_exhaustive()
    }
}

impl MarketProvider {
    /// A provider on `node` with `key`.
    pub fn new(
        node: u32,
        key: SigningKey,
        lie: Option<Lie>,
        vcpu_price: u64,
        p: &Providers,
    ) -> Self {
        let config = AdmissionConfig {
            capacity: Resources {
                vcpu_milli: p.vcpu_milli,
                memory_mib: p.memory_mib,
                disk_mib: 1 << 20,
                pids: u32::MAX,
            },
            ..AdmissionConfig::default()
        };
        MarketProvider {
            node,
            id: key.id(),
            admission: Admission::new(key.id(), config.clone()),
            key,
            lie,
            vcpu_price,
            config,
            node_epoch: 0,
            offers: VecDeque::new(),
        }
    }

    /// After a crash of its node, the admission state (leases, remembered offers) is gone.
    pub fn sync_epoch(&mut self, epoch: u32) {
        if epoch != self.node_epoch {
            self.node_epoch = epoch;
            self.admission = Admission::new(self.id, self.config.clone());
        }
    }

    /// What it advertises: its prices, and its free capacity (four times its total, for
    /// an overstating liar).
    pub fn terms(&mut self, now: Timestamp) -> OfferTerms {
        self.admission.tick(now);
        let cap = &self.config.capacity;
        let used = self.admission.committed();
        let (vcpu_milli, memory_mib) = if self.lie == Some(Lie::Overstate) {
            (
                cap.vcpu_milli.saturating_mul(OVERSTATE),
                cap.memory_mib.saturating_mul(u64::from(OVERSTATE)),
            )
        } else {
            (
                cap.vcpu_milli.saturating_sub(used.vcpu_milli),
                cap.memory_mib.saturating_sub(used.memory_mib),
            )
        };
        OfferTerms {
            prices: Prices {
                vcpu: self.vcpu_price,
                memory_gib: 10,
                disk_gib: 0,
                gpu: 0,
            },
            vcpu_milli,
            memory_mib,
        }
    }

    /// Records a published offer (for the auditor).
    pub fn published(&mut self, offer: &Signed<Offer>) {
        self.offers
            .push_back((offer.digest(), offer.body().expires_at));
        while self.offers.len() > 8 {
            self.offers.pop_front();
        }
    }

    /// The expiry of its offer `digest`, if it published it recently.
    pub fn offer_expiry(&self, digest: &Digest) -> Option<Timestamp> {
        self.offers
            .iter()
            .find(|(d, _)| d == digest)
            .map(|(_, e)| *e)
    }
}

/// The tier a provider derives from a signup record: the attested tier when the
/// credential is rooted at one of `issuers`, else the contained tier.
fn standing(proposal: &LeaseProposal, issuer_ok: impl Fn(&AgoraId) -> bool) -> Standing {
    let request = proposal.request.body();
    let mut tier = TierLimits::contained();
    if let Some(credential) = &request.signup.body().credential
        && issuer_ok(&credential.root().body().issuer)
    {
        let claims = &credential.leaf().body().claims;
        tier.name = claims.tier.clone();
        tier.spending_limit_credits = claims.spending_limit_credits;
    } else {
        tier.name = CONTAINED_TIER.into();
    }
    Standing {
        agent: request.agent,
        tier,
        owner: None,
    }
}

impl Market {
    /// A proposal reached provider `p`'s node.
    pub(super) fn on_proposal(
        &mut self,
        ctx: &mut impl Sched,
        env: &mut Env<'_>,
        lease: u32,
        proposal: LeaseProposal,
    ) {
        let now = timestamp(ctx.now());
        let Some(record) = self.leases.get(lease as usize) else {
            return;
        };
        let (a, p_index) = (record.agent, record.provider);
        let committee = self.committee.clone();
        let Some(p) = self.providers.get_mut(p_index as usize) else {
            return;
        };
        p.sync_epoch(env.epoch(p.node));
        p.admission.tick(now);
        let standing = standing(&proposal, |id| committee.is_issuer(id));
        let answer = match p.admission.request(&proposal, &standing, now) {
            Decision::Refused(r) => Err(r),
            Decision::NeedQuota(q) => {
                // The votes are checked against this provider's own committee.
                let lock = proposal
                    .lock
                    .clone()
                    .map(|l| l.verify(&committee, env.verifier));
                let answer = match lock {
                    Some(Err(e)) => agora_protocol::quota::QuotaAnswer::Denied(Refusal::new(
                        RefusalCode::Quota,
                        format!("lock certificate does not verify: {e}"),
                    )),
                    Some(Ok(cert)) => quota_answer(Some(&cert), &committee, &q, &p.id, LOCK_MARGIN),
                    None => quota_answer(None, &committee, &q, &p.id, LOCK_MARGIN),
                };
                p.admission.quota_answer(&q.lease, answer, now)
            }
        };
        let (node, to) = (p.node, self.agents.get(a as usize).map_or(0, |g| g.node));
        let grant = answer.and_then(|active| {
            let token = Capability {
                lease: active.lease,
                agent: active.agent,
                provider: p.id,
                ports: active.ports.clone(),
                expires_at: active.expires_at,
            };
            let sign_err = |_| Refusal::new(RefusalCode::Invalid, "could not sign the grant");
            let token = Signed::sign(token, &p.key).map_err(sign_err)?;
            let grant = LeaseGrant {
                owner: None,
                lease: active.lease,
                agent: active.agent,
                provider: p.id,
                price_per_sec: active.price_per_sec,
                reserved_micro: active.reserved_micro,
                starts_at: active.starts_at,
                expires_at: active.expires_at,
                tunnel_endpoints: Vec::new(),
                token,
            };
            Signed::sign(grant, &p.key).map_err(sign_err)
        });
        if let Ok(grant) = &grant {
            let offer = proposal.request.body().candidates.first().map(|c| c.offer);
            let expiry = offer.and_then(|d| p.offer_expiry(&d));
            let key = p.key.clone();
            let lie = p.lie;
            if let Err(what) = self
                .audit
                .check_grant(grant.body(), proposal.request.body(), expiry)
            {
                self.violated(ctx.now(), what);
                return;
            }
            self.ledger.append(now, &key, Fact::Lease(grant.clone()));
            let end = sim_time(grant.body().expires_at);
            match lie {
                None | Some(Lie::Overstate) => at(ctx, end, node, Event::LeaseEnd { lease }),
                Some(Lie::NeverRun) => {
                    // It settles as if it had run, at the lease's end.
                    at(ctx, end, node, Event::LeaseEnd { lease });
                }
                Some(Lie::Offline) => {
                    let span = end.saturating_since(ctx.now()).as_micros().max(1);
                    let crash = ctx
                        .now()
                        .saturating_add(SimDuration::from_micros(rng::below(ctx.rng(), span)));
                    ctx.at(
                        crash,
                        node,
                        crate::world::Event::Crash {
                            epoch: None,
                            restart: true,
                        },
                    );
                    at(ctx, end, node, Event::LeaseEnd { lease });
                }
            }
        } else {
            self.stats.refusals += 1;
        }
        let mail = Mail::ProposalAnswer {
            lease,
            answer: Box::new(grant),
        };
        send(ctx, env, &mut self.mailbox, &mut self.stats, node, to, mail);
    }

    /// The provider's lease ends: it meters it, sends the receipt, and settles.
    pub(super) fn on_lease_end(&mut self, ctx: &mut impl Sched, env: &mut Env<'_>, lease: u32) {
        let now = timestamp(ctx.now());
        let Some(record) = self.leases.get(lease as usize) else {
            return;
        };
        let (a, p_index) = (record.agent, record.provider);
        let (Some(id), Some(cert)) = (record.id, record.lock.clone()) else {
            return;
        };
        let Some(agent) = self.agents.get(a as usize) else {
            return;
        };
        let (agent_id, agent_node, collective) = (agent.id, agent.node, agent.role.colludes());
        let Some(p) = self.providers.get_mut(p_index as usize) else {
            return;
        };
        p.sync_epoch(env.epoch(p.node));
        let lie = p.lie;
        // A crash lost the lease (an offline liar): nothing to meter, nobody to tell.
        let Some(active) = p.admission.end(&id, now) else {
            self.stats.leases_lost += 1;
            return;
        };
        let ran = lie != Some(Lie::NeverRun);
        let secs = now.saturating_duration_since(active.starts_at).as_secs();
        let receipt = UsageReceipt {
            lease: id,
            agent: agent_id,
            provider: p.id,
            seq: 0,
            from: active.starts_at,
            to: now,
            cpu_ms: u64::from(active.resources.vcpu_milli).saturating_mul(secs),
            memory_mib_secs: active.resources.memory_mib.saturating_mul(secs),
            egress_bytes: 0,
            tunnel_in_bytes: 0,
            tunnel_out_bytes: 0,
            price_per_sec: active.price_per_sec,
            total_micro: active.cost_until(now),
            ended: Some(TerminationReason::Exited { code: 0 }),
        };
        let Ok(receipt) = Signed::sign(receipt, &p.key) else {
            return;
        };
        let (key, node, provider_id) = (p.key.clone(), p.node, p.id);
        if ran || collective {
            let mail = Mail::Receipt {
                lease,
                receipt: Box::new(receipt.clone()),
            };
            send(
                ctx,
                env,
                &mut self.mailbox,
                &mut self.stats,
                node,
                agent_node,
                mail,
            );
        } else {
            // Its own word that the lease ran, for the log.
            self.ledger.append(
                now,
                &key,
                Fact::Usage(Usage {
                    receipt: receipt.clone(),
                    ack: None,
                }),
            );
        }
        let Some((lock_seq, lock)) = self
            .audit
            .accounts()
            .get(&agent_id)
            .and_then(|acc| acc.lock_for(&id, &provider_id))
            .map(|(seq, l)| (seq, l.op))
        else {
            return;
        };
        let settle = Settle {
            account: agent_id,
            lock_seq,
            lock,
            receipt,
        };
        let Ok(settle) = Signed::sign(settle, &key) else {
            return;
        };
        self.start_client(
            ctx,
            env,
            node,
            Purpose::Settle { lease },
            Op::Settle(settle),
            vec![cert],
            Split::All,
        );
    }
}

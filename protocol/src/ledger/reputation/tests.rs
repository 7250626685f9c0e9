//! Reputation over real logs: scripted markets with honest, lazy and colluding providers,
//! funding, epochs, and order independence.

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::*;
use crate::attestation::{Attestation, Claims, Credential, Revocation};
use crate::challenge::Challenge;
use crate::lease::{Capability, LeaseGrant, LeaseId, UsageReceipt};
use crate::ledger::{EvidenceLog, Fact, Rating, ReceiptAck, Usage};
use crate::signed::{Digest, Signer as _};
use crate::signup::{ProofOfWork, SignupRecord};
use crate::workload::TerminationReason;

fn key(role: u8, n: u8) -> SigningKey {
    let mut seed = [role; 32];
    seed[1] = n;
    SigningKey::from_bytes(&seed)
}

const NODE: u8 = 1;
const VALIDATOR: u8 = 2;
const ISSUER: u8 = 3;
const PROVIDER: u8 = 4;
const AGENT: u8 = 5;
const ROGUE_ISSUER: u8 = 6;

fn origin() -> Timestamp {
    Timestamp::from_unix_secs(1_800_000_000)
}

fn at(secs: u64) -> Timestamp {
    origin().saturating_add(Duration::from_secs(secs))
}

/// One day from the origin.
fn day() -> Epoch {
    Epoch {
        start: origin(),
        end: at(86_400),
    }
}

fn config() -> Config {
    Config {
        pretrusted: BTreeSet::from([key(VALIDATOR, 0).id(), key(VALIDATOR, 1).id()]),
        ..Config::default()
    }
}

/// A market written into one node's log, its clock moving a second per fact.
struct Market {
    log: EvidenceLog,
    clock: u64,
    leases: u64,
}

/// How a scripted lease goes.
#[derive(Clone, Copy)]
enum Run {
    /// Ran; the final receipt acknowledged by the agent or not.
    Ran { acked: bool },
    /// Ran, then the provider's runtime failed.
    Failed,
    /// Granted, never run: no receipt.
    Never,
}

impl Market {
    fn new() -> Self {
        Self {
            log: EvidenceLog::new(crate::ledger::Config::default()).unwrap(),
            clock: 0,
            leases: 0,
        }
    }

    fn log(&mut self, fact: Fact) {
        self.clock += 1;
        self.log
            .append(at(self.clock), &key(NODE, 0), fact)
            .unwrap();
    }

    fn attestation(issuer: &SigningKey, agent: &SigningKey, limit: u64) -> Signed<Attestation> {
        Signed::sign(
            Attestation {
                issuer: issuer.id(),
                subject: agent.id(),
                claims: Claims {
                    organisation: None,
                    tier: "standard".into(),
                    spending_limit_credits: limit,
                    owner: None,
                    may_delegate: false,
                    model: None,
                    labels: BTreeMap::new(),
                },
                issued_at: origin(),
                not_before: origin(),
                expires_at: at(30 * 86_400),
                nonce: [agent.id().as_bytes()[0]; 16],
            },
            issuer,
        )
        .unwrap()
    }

    /// The agent signs up: funded by `issuer` with `limit` credits, or unattested.
    fn signup(&mut self, agent: &SigningKey, funded_by: Option<(&SigningKey, u64)>) {
        let credential = funded_by
            .map(|(issuer, limit)| Credential::single(Self::attestation(issuer, agent, limit)));
        let record = SignupRecord {
            agent: agent.id(),
            challenge: Challenge {
                verifier: key(NODE, 0).id(),
                nonce: [agent.id().as_bytes()[1]; 32],
                issued_at: origin(),
            },
            credential,
            pow: ProofOfWork::NONE,
            name: None,
        };
        let fact = Fact::Signup(Signed::sign(record, agent).unwrap());
        self.log(fact);
    }

    /// One lease of `agent` at `provider` costing `micro`, going as `run`, rated `rating`.
    fn lease(
        &mut self,
        agent: &SigningKey,
        provider: &SigningKey,
        micro: u64,
        run: Run,
        rating: Option<u8>,
    ) -> LeaseId {
        self.leases += 1;
        let lease = Digest::of(&self.leases.to_le_bytes());
        let starts = at(self.clock);
        let token = Signed::sign(
            Capability {
                lease,
                agent: agent.id(),
                provider: provider.id(),
                ports: vec![],
                expires_at: starts.saturating_add(Duration::from_secs(3600)),
            },
            provider,
        )
        .unwrap();
        let grant = LeaseGrant {
            owner: None,
            lease,
            agent: agent.id(),
            provider: provider.id(),
            price_per_sec: 1,
            reserved_micro: micro,
            starts_at: starts,
            expires_at: starts.saturating_add(Duration::from_secs(3600)),
            tunnel_endpoints: vec![],
            token,
        };
        self.log(Fact::Lease(Signed::sign(grant, provider).unwrap()));
        let ended = match run {
            Run::Never => None,
            Run::Ran { .. } => Some(TerminationReason::Exited { code: 0 }),
            Run::Failed => Some(TerminationReason::RuntimeError {
                detail: "engine gone".into(),
            }),
        };
        if let Some(ended) = ended {
            let receipt = Signed::sign(
                UsageReceipt {
                    lease,
                    agent: agent.id(),
                    provider: provider.id(),
                    seq: 0,
                    from: starts,
                    to: starts.saturating_add(Duration::from_secs(60)),
                    cpu_ms: 1000,
                    memory_mib_secs: 100,
                    egress_bytes: 0,
                    tunnel_in_bytes: 0,
                    tunnel_out_bytes: 0,
                    price_per_sec: 1,
                    total_micro: micro,
                    ended: Some(ended),
                },
                provider,
            )
            .unwrap();
            let ack = matches!(run, Run::Ran { acked: true }).then(|| {
                Signed::sign(
                    ReceiptAck {
                        agent: agent.id(),
                        receipt: receipt.digest(),
                        acked_at: at(self.clock),
                        delegation: None,
                    },
                    agent,
                )
                .unwrap()
            });
            self.log(Fact::Usage(Usage { receipt, ack }));
        }
        if let Some(score) = rating {
            let rating = Rating {
                rater: agent.id(),
                provider: provider.id(),
                lease,
                score,
                rated_at: at(self.clock),
            };
            self.log(Fact::Rating(Signed::sign(rating, agent).unwrap()));
        }
        lease
    }

    /// Moves the clock to `secs` (facts after it are dated later).
    fn wait_until(&mut self, secs: u64) {
        self.clock = self.clock.max(secs);
    }

    fn funding(&self, epoch: &Epoch) -> SignupFunding {
        SignupFunding::from_entries(
            self.log.iter(),
            &BTreeSet::from([key(ISSUER, 0).id()]),
            epoch.end,
        )
    }

    fn reputation(&self) -> Reputation {
        let epoch = day();
        compute(&self.log, epoch, &config(), &self.funding(&epoch)).unwrap()
    }
}

fn providers(n: u8) -> Vec<SigningKey> {
    (0..n).map(|i| key(PROVIDER, i)).collect()
}

fn agents(from: u8, n: u8) -> Vec<SigningKey> {
    (from..from + n).map(|i| key(AGENT, i)).collect()
}

fn trust(r: &Reputation, p: &SigningKey) -> u64 {
    r.score(&p.id()).map_or(0, |s| s.trust_ppb)
}

/// Honest agents (funded) spread their leases over four honest providers, which run them,
/// and one lazy provider, which takes them and never runs them.
#[test]
fn a_provider_that_never_runs_its_leases_ends_below_every_honest_one() {
    let mut m = Market::new();
    let honest = providers(4);
    let lazy = key(PROVIDER, 9);
    let customers = agents(0, 6);
    for a in &customers {
        m.signup(a, Some((&key(ISSUER, 0), 1_000)));
    }
    for round in 0..4u64 {
        for (i, a) in customers.iter().enumerate() {
            let i = i as u64;
            let p = &honest[usize::try_from((i + round) % 4).unwrap()];
            let acked = !(i + round).is_multiple_of(3);
            let rating = round
                .is_multiple_of(2)
                .then_some(70 + u8::try_from(i * 5).unwrap());
            m.lease(a, p, 20_000 + i * 1000, Run::Ran { acked }, rating);
            // The lazy provider is cheap and gets as many leases; some agents rate them,
            // most do not bother.
            m.lease(a, &lazy, 20_000, Run::Never, (i == 0).then_some(0));
        }
    }
    let r = m.reputation();
    let lazy_score = r.score(&lazy.id()).unwrap();
    assert_eq!((lazy_score.never_ran, lazy_score.ran), (24u32, 0u32));
    for p in &honest {
        assert!(trust(&r, p) > trust(&r, &lazy), "{:?}", r.score(&p.id()));
        assert!(r.gossip_score(&p.id()) > 0.0);
    }
    assert_eq!(r.ranking.last(), Some(&lazy.id()));
    assert_eq!(lazy_score.rank, 5);
    assert_eq!(lazy_score.trust_ppb, 0);
    assert!((r.gossip_score(&lazy.id()) - -1.0).abs() < f64::EPSILON);
    assert!(r.converged && r.iterations > 1);
    // Agents and validators are not scored; strangers are neutral.
    assert!(r.gossip_score(&customers[0].id()).abs() < f64::EPSILON);
    assert!(r.gossip_score(&key(PROVIDER, 77).id()).abs() < f64::EPSILON);
}

/// Two colluding providers and seven sybil agents lease from each other with huge receipts
/// (900 credits each), acknowledge them and rate them 100, and rate an honest provider 0
/// after a small real lease. Four sybils are unattested (free tier: no say at all), two hold
/// credentials from a recognised issuer with a spending limit of 1 credit (their voice is
/// capped there, whatever the receipts claim), one holds a credential from an issuer nobody
/// recognises (no say). Honest, funded agents spend 30 credits in all with honest providers
/// (and try the clique a little). The clique stays below every honest provider: its voice
/// is what it could really pay, and the validators hand out trust by paid spend alone.
#[test]
fn a_clique_rating_itself_up_does_not_overtake_honest_providers() {
    let mut m = Market::new();
    let honest = providers(3);
    let clique = [key(PROVIDER, 20), key(PROVIDER, 21)];
    let customers = agents(0, 5);
    let sybils = agents(50, 7);
    for a in &customers {
        m.signup(a, Some((&key(ISSUER, 0), 1_000)));
    }
    for (i, s) in sybils.iter().enumerate() {
        match i {
            0 | 1 => m.signup(s, Some((&key(ISSUER, 0), 1))),
            2 => m.signup(s, Some((&key(ROGUE_ISSUER, 0), 1_000_000))),
            _ => m.signup(s, None),
        }
    }
    for round in 0..3u64 {
        for (i, a) in customers.iter().enumerate() {
            let p = &honest[(i + usize::try_from(round).unwrap()) % 3];
            m.lease(a, p, 2_000_000, Run::Ran { acked: true }, Some(80));
        }
        // One honest agent tries the clique now and then, and it serves it fine.
        m.lease(
            &customers[0],
            &clique[0],
            10_000,
            Run::Ran { acked: true },
            Some(90),
        );
        for s in &sybils {
            for q in &clique {
                m.lease(s, q, 900_000_000, Run::Ran { acked: true }, Some(100));
            }
            m.lease(s, &honest[0], 1_000, Run::Ran { acked: true }, Some(0));
        }
    }
    let r = m.reputation();
    for q in &clique {
        for p in &honest {
            assert!(
                trust(&r, q) < trust(&r, p),
                "clique {:?} over {:?}",
                r.score(&q.id()),
                r.score(&p.id())
            );
        }
    }
    // The clique's praise is enormous on paper; what counts is the capped, paid voice.
    let top = r.score(&r.ranking[0]).unwrap();
    assert!(r.score(&clique[0].id()).unwrap().paid_micro > top.paid_micro);
    assert!(honest.iter().any(|p| p.id() == r.ranking[0]));
}

/// Without the voice cap (a funding that counts every receipt as paid, uncapped), the same
/// clique would win: the cap is what the result above rests on, not luck.
#[test]
fn without_caps_on_voice_the_clique_would_win() {
    let mut m = Market::new();
    let honest = providers(2);
    let clique = key(PROVIDER, 20);
    let customer = key(AGENT, 0);
    let sybil = key(AGENT, 50);
    m.lease(
        &customer,
        &honest[0],
        50_000,
        Run::Ran { acked: true },
        Some(80),
    );
    m.lease(
        &customer,
        &honest[1],
        50_000,
        Run::Ran { acked: true },
        Some(80),
    );
    m.lease(
        &sybil,
        &clique,
        900_000_000,
        Run::Ran { acked: true },
        Some(100),
    );
    let everything_paid = |_: &AgoraId, _: &LeaseId, _: Timestamp, spent: u64| spent;
    let r = compute(&m.log, day(), &config(), &everything_paid).unwrap();
    assert!(trust(&r, &clique) > trust(&r, &honest[0]));
    assert_eq!(r.ranking[0], clique.id());
}

/// A provider logs leases with a funded agent who never asked for them: grants and receipts
/// it signed itself, no acknowledgement, no rating. They earn it nothing, nor make that agent
/// louder.
#[test]
fn a_provider_cannot_praise_itself_in_an_agents_name() {
    let mut m = Market::new();
    let p = providers(2);
    let forger = key(PROVIDER, 9);
    let a = key(AGENT, 1);
    m.signup(&a, Some((&key(ISSUER, 0), 1_000)));
    m.lease(&a, &p[0], 10_000, Run::Ran { acked: true }, Some(90));
    m.lease(&a, &p[1], 10_000, Run::Ran { acked: true }, Some(60));
    let honest = m.reputation();
    for _ in 0..20 {
        m.lease(&a, &forger, 500_000_000, Run::Ran { acked: false }, None);
    }
    let r = m.reputation();
    assert!(r.score(&forger.id()).is_none(), "nothing of it is judged");
    assert_eq!(r.interactions, 2);
    assert_eq!(r.providers, honest.providers);
}

#[test]
fn free_tier_spend_weighs_nothing() {
    let mut m = Market::new();
    let p = providers(2);
    let free = key(AGENT, 1);
    let paying = key(AGENT, 2);
    m.signup(&free, None);
    m.signup(&paying, Some((&key(ISSUER, 0), 100)));
    m.lease(&free, &p[0], 1_000_000, Run::Ran { acked: true }, Some(100));
    m.lease(&paying, &p[1], 1_000, Run::Ran { acked: true }, Some(60));
    let r = m.reputation();
    assert_eq!(r.score(&p[0].id()).unwrap().paid_micro, 0);
    assert_eq!(trust(&r, &p[0]), 0);
    assert!(trust(&r, &p[1]) > 0);
    assert_eq!(r.ranking, vec![p[1].id(), p[0].id()]);
    assert!(
        r.gossip_score(&p[0].id()).abs() < f64::EPSILON,
        "no complaints: neutral"
    );
}

#[test]
fn signup_funding_reads_credentials_and_revocations() {
    let mut m = Market::new();
    let funded = key(AGENT, 1);
    let rogue = key(AGENT, 2);
    let revoked = key(AGENT, 3);
    let unattested = key(AGENT, 4);
    m.signup(&funded, Some((&key(ISSUER, 0), 7)));
    m.signup(&rogue, Some((&key(ROGUE_ISSUER, 0), 7)));
    m.signup(&revoked, Some((&key(ISSUER, 0), 7)));
    m.signup(&unattested, None);
    let attestation = Market::attestation(&key(ISSUER, 0), &revoked, 7);
    let revocation = Revocation {
        issuer: key(ISSUER, 0).id(),
        subject: revoked.id(),
        attestation: attestation.digest(),
        revoked_at: at(50),
        reason: "lost".into(),
    };
    m.log(Fact::Revocation(
        Signed::sign(revocation, &key(ISSUER, 0)).unwrap(),
    ));
    let f = m.funding(&day());
    let lease = Digest::of(b"l");
    assert_eq!(f.paid_micro(&funded.id(), &lease, at(100), 500), 500);
    assert_eq!(f.voice_cap_micro(&funded.id()), 7_000_000);
    for a in [&rogue, &revoked, &unattested] {
        assert_eq!(f.paid_micro(&a.id(), &lease, at(100), 500), 0);
        assert_eq!(f.voice_cap_micro(&a.id()), 0);
    }
    // Outside the credential's validity, nothing is paid.
    assert_eq!(f.paid_micro(&funded.id(), &lease, at(31 * 86_400), 500), 0);
    // A revocation dated after the epoch's end does not count for it.
    let before = Epoch {
        start: origin(),
        end: at(3),
    };
    let early = SignupFunding::from_entries(
        m.log.iter(),
        &BTreeSet::from([key(ISSUER, 0).id()]),
        before.end,
    );
    assert!(
        !early.is_funded(&revoked.id(), at(1)),
        "its signup is dated at 3, not before"
    );
    let all =
        SignupFunding::from_entries(m.log.iter(), &BTreeSet::from([key(ISSUER, 0).id()]), at(4));
    assert!(all.is_funded(&revoked.id(), at(1)));
}

#[test]
fn epochs_judge_what_is_dated_inside_on_everything_before_their_end() {
    let mut m = Market::new();
    let p = providers(2);
    let a = key(AGENT, 1);
    m.signup(&a, Some((&key(ISSUER, 0), 1_000)));
    // In the first epoch: a grant just before the end, metered only after it.
    m.wait_until(86_400 - 120);
    m.lease(&a, &p[0], 5_000, Run::Never, None);
    let lease = Digest::of(&m.leases.to_le_bytes());
    m.wait_until(86_400 + 10);
    let receipt = Signed::sign(
        UsageReceipt {
            lease,
            agent: a.id(),
            provider: p[0].id(),
            seq: 0,
            from: at(86_400 - 120),
            to: at(86_400 + 10),
            cpu_ms: 1,
            memory_mib_secs: 1,
            egress_bytes: 0,
            tunnel_in_bytes: 0,
            tunnel_out_bytes: 0,
            price_per_sec: 1,
            total_micro: 5_000,
            ended: None,
        },
        &p[0],
    )
    .unwrap();
    let ack = ReceiptAck {
        agent: a.id(),
        receipt: receipt.digest(),
        acked_at: at(86_400 + 11),
        delegation: None,
    };
    let ack = Some(Signed::sign(ack, &a).unwrap());
    m.log(Fact::Usage(Usage { receipt, ack }));
    m.lease(&a, &p[1], 5_000, Run::Ran { acked: true }, None);
    let first = day();
    let second = Epoch::nth(origin(), Duration::from_secs(86_400), 1);
    assert_eq!(second.start, first.end);
    let funding = m.funding(&second);
    // First epoch: the grant is within the grace, not judged yet; nothing else is inside.
    let r1 = compute(&m.log, first, &config(), &funding).unwrap();
    assert_eq!(r1.interactions, 0);
    // Second: the late receipt makes the first lease one that ran; the second lease too.
    let r2 = compute(&m.log, second, &config(), &funding).unwrap();
    assert_eq!(r2.interactions, 2);
    let s = r2.score(&p[0].id()).unwrap();
    assert_eq!((s.ran, s.never_ran), (1, 0));
    // With no grace at all, the first epoch calls it never run.
    let hasty = Config {
        receipt_grace: Duration::ZERO,
        ..config()
    };
    let r = compute(&m.log, first, &hasty, &funding).unwrap();
    assert_eq!(r.score(&p[0].id()).unwrap().never_ran, 1);
}

#[test]
fn outcomes_weigh_in_order() {
    let mut m = Market::new();
    let p = providers(5);
    let a = key(AGENT, 1);
    m.signup(&a, Some((&key(ISSUER, 0), 1_000)));
    m.lease(&a, &p[0], 10_000, Run::Ran { acked: true }, Some(100));
    m.lease(&a, &p[1], 10_000, Run::Ran { acked: true }, None);
    m.lease(&a, &p[2], 10_000, Run::Ran { acked: false }, Some(50));
    m.lease(&a, &p[3], 10_000, Run::Failed, None);
    m.lease(&a, &p[4], 10_000, Run::Never, None);
    let r = m.reputation();
    let t: Vec<u64> = p.iter().map(|p| trust(&r, p)).collect();
    assert!(t[0] > t[1] && t[1] > t[2] && t[2] > t[3], "{t:?}");
    assert_eq!((t[3], t[4]), (0, 0));
    // A failed lease complains less than one never run.
    let c = |i: usize| r.score(&p[i].id()).unwrap().complaints;
    assert!(c(4) > c(3) && c(3) > 0);
    assert!(r.gossip_score(&p[4].id()) <= r.gossip_score(&p[3].id()));
    for q in &p {
        let g = r.gossip_score(&q.id());
        assert!((-MAX_GOSSIP_SCORE..=MAX_GOSSIP_SCORE).contains(&g));
    }
}

#[test]
fn bad_configs_and_epochs_are_refused() {
    let m = Market::new();
    let f = m.funding(&day());
    let bad = [
        (Config::default(), Error::NoPretrusted),
        (
            Config {
                alpha_ppb: 0,
                ..config()
            },
            Error::Alpha { value: 0 },
        ),
        (
            Config {
                max_iterations: 0,
                ..config()
            },
            Error::Iterations { value: 0 },
        ),
        (
            Config {
                weights: Weights {
                    rating: i64::MIN,
                    ..Weights::default()
                },
                ..config()
            },
            Error::Weight {
                field: "rating",
                value: i64::MIN,
            },
        ),
    ];
    for (c, e) in bad {
        assert_eq!(compute(&m.log, day(), &c, &f), Err(e));
    }
    let empty = Epoch {
        start: at(5),
        end: at(5),
    };
    assert!(matches!(
        compute(&m.log, empty, &config(), &f),
        Err(Error::EmptyEpoch { .. })
    ));
    // Nothing to judge: no providers, nothing ranked, the trust stays with the validators.
    let r = compute(&m.log, day(), &config(), &f).unwrap();
    assert!(r.providers.is_empty() && r.ranking.is_empty());
}

/// A market with every kind of lease, for the permutation property.
fn mixed_market() -> Market {
    let mut m = Market::new();
    let p = providers(4);
    let a = agents(0, 4);
    for (i, x) in a.iter().enumerate() {
        m.signup(x, (i != 3).then_some((&key(ISSUER, 0), 500)));
    }
    let runs = [
        Run::Ran { acked: true },
        Run::Ran { acked: false },
        Run::Failed,
        Run::Never,
    ];
    for k in 0..24usize {
        let rating = (!k.is_multiple_of(3)).then_some(u8::try_from(k * 4 % 101).unwrap());
        m.lease(
            &a[k % 4],
            &p[(k * 7) % 4],
            1_000 * (k as u64 + 1),
            runs[(k / 2) % 4],
            rating,
        );
    }
    m
}

fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut x = seed | 1;
    for i in (1..items.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        items.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Entries in any order (given directly, or inserted into a fresh log in that order):
    /// identical scores, ranking and gossip scores.
    #[test]
    fn any_input_order_gives_identical_scores(seed in any::<u64>()) {
        let m = mixed_market();
        let epoch = day();
        let funding = m.funding(&epoch);
        let reference = compute(&m.log, epoch, &config(), &funding).unwrap();
        // 24 leases; two ran without the agent's acknowledgement or rating: not judged.
        prop_assert!(reference.interactions == 22 && reference.providers.len() == 4);
        let mut entries: Vec<&Signed<crate::ledger::Entry>> = m.log.iter().collect();
        shuffle(&mut entries, seed);
        let shuffled_funding = SignupFunding::from_entries(
            entries.iter().copied(),
            &BTreeSet::from([key(ISSUER, 0).id()]),
            epoch.end,
        );
        prop_assert_eq!(&shuffled_funding, &funding);
        let direct = compute_entries(entries.iter().copied(), epoch, &config(), &shuffled_funding).unwrap();
        prop_assert_eq!(&direct, &reference);
        let mut replica = EvidenceLog::new(crate::ledger::Config::default()).unwrap();
        for e in &entries {
            replica.insert(at(0), (*e).clone());
        }
        prop_assert_eq!(replica.state_hash(), m.log.state_hash());
        let again = compute(&replica, epoch, &config(), &funding).unwrap();
        prop_assert_eq!(&again, &reference);
        for id in reference.providers.keys() {
            prop_assert_eq!(again.gossip_score(id).to_bits(), reference.gossip_score(id).to_bits());
        }
    }
}

/// A provider logs its final receipt alone at the end, then again with the agent's later
/// acknowledgement (what a node does): the lease counts as acknowledged, exactly as if the
/// acknowledged fact had been the only one, and the bare one alone earns no praise.
#[test]
fn a_later_acknowledgement_upgrades_the_providers_word() {
    let agent = key(AGENT, 1);
    let p = providers(2);
    let market = |acked_later: bool| {
        let mut m = Market::new();
        m.signup(&agent, Some((&key(ISSUER, 0), 1_000)));
        m.lease(&agent, &p[1], 10_000, Run::Ran { acked: true }, None);
        m.lease(&agent, &p[0], 10_000, Run::Ran { acked: false }, None);
        if acked_later {
            let bare = m
                .log
                .iter()
                .filter_map(|e| match &e.body().fact {
                    Fact::Usage(u) if u.receipt.body().provider == p[0].id() => Some(u.clone()),
                    _ => None,
                })
                .next()
                .unwrap();
            let ack = ReceiptAck {
                agent: agent.id(),
                receipt: bare.receipt.digest(),
                acked_at: at(m.clock),
                delegation: None,
            };
            let ack = Some(Signed::sign(ack, &agent).unwrap());
            m.log(Fact::Usage(Usage {
                receipt: bare.receipt,
                ack,
            }));
        }
        m.reputation()
    };
    let bare = market(false);
    let upgraded = market(true);
    assert_eq!(
        trust(&bare, &p[0]),
        0,
        "the provider's word alone earns nothing"
    );
    assert!(trust(&upgraded, &p[0]) > 0);
    assert_eq!(upgraded.score(&p[0].id()).unwrap().ran, 1);
    // As much as the other provider, whose only fact was acknowledged from the start.
    assert_eq!(trust(&upgraded, &p[0]), trust(&upgraded, &p[1]));
}

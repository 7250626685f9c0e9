//! A forged lock certificate never starts a lease (issue 7).
//!
//! The real [`Provider`] with its quota committee ([`Quota`], n = 4, f = 1) on a RocksDB
//! store in a temporary directory gets lease proposals through the lease wire encoding
//! (`lease_rpc::Request::Propose`, as a gateway sends them). The lock certificates are made
//! by four real [`Validator`]s through an [`Aggregator`], all through wire bytes; the
//! forgeries are made from them: too few votes (f + 1), votes by keys outside the genesis,
//! the same votes repeated, a valid certificate for another lease, another account,
//! another provider or too small an amount, a certificate of another genesis (same keys,
//! or other keys), a tampered vote signature, and the op re-signed with a larger amount
//! under the old votes. Each is refused with the `quota` code and its own reason; nothing is
//! recorded: no lease, no kept lock. The genuine certificate passes quota (the lock is
//! kept; this provider has no runtime, so the launch is what refuses it, `unsupported`);
//! leases starting against genuine certificates with real workloads are
//! `tests/tests/quota.rs`'s.

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use agora_attest::Identity;
use agora_node::committee::Quota;
use agora_node::lease::Provider;
use agora_node::lease::provider::{Judge, Settings};
use agora_node::runtime::supervisor::{Supervisor, SupervisorConfig};
use agora_node::store::{RocksStore, Store};
use agora_protocol::admission::{AdmissionConfig, Standing};
use agora_protocol::attestation::{Attestation, Claims, Credential};
use agora_protocol::challenge::Challenge;
use agora_protocol::committee::{
    Action, Aggregator, AggregatorConfig, Answer, Certificate, ChainOp, Committee, Event, FreeTier,
    Genesis, LockRules, LockTerms, Op, Outcome, Request, UncheckedCertificate, Validator,
};
use agora_protocol::lease::{
    Candidate, LeaseAnswer, LeaseProposal, LeaseRequest, NONCE_LEN, RefusalCode,
};
use agora_protocol::lease_rpc as rpc;
use agora_protocol::offer::Isolation;
use agora_protocol::signup::{ProofOfWork, SignupRecord, TierLimits};
use agora_protocol::workload::WorkloadSpec;
use agora_protocol::{Digest, Ed25519, Offer, Signed, Signer, Timestamp};
use ed25519_dalek::SigningKey;

const START: u64 = 1_800_000_000;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(START + secs)
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// When the proposals arrive.
fn now() -> Timestamp {
    at(100)
}

const VALIDATORS: [u8; 4] = [11, 12, 13, 14];
const OUTSIDERS: [u8; 4] = [51, 52, 53, 54];
const ISSUER: u8 = 20;
const AGENT: u8 = 30;
const OTHER_AGENT: u8 = 31;
const PROVIDER: u8 = 40;
const OTHER_PROVIDER: u8 = 41;

/// A committee of the validators `seeds` (f = 1) starting `start_secs` after [`START`].
fn committee(seeds: [u8; 4], start_secs: u64) -> Committee {
    Committee::new(Genesis {
        f: 1,
        validators: seeds.iter().map(|s| key(*s).id()).collect(),
        issuers: vec![key(ISSUER).id()],
        start_unix_secs: START + start_secs,
        epoch_secs: 86_400,
        free_tier: FreeTier {
            allowance_micro: 10_000_000,
            cap_per_epoch: 64,
        },
        locks: LockRules::default(),
    })
    .unwrap()
}

/// A committee's four validators, in process.
struct Net {
    committee: Committee,
    validators: Vec<Validator<SigningKey>>,
}

impl Net {
    fn new(seeds: [u8; 4], start_secs: u64) -> Self {
        let committee = committee(seeds, start_secs);
        let validators = seeds
            .iter()
            .map(|s| Validator::new(committee.clone(), key(*s)).unwrap())
            .collect();
        Self {
            committee,
            validators,
        }
    }

    /// Certifies `op` (its chain so far in `history`) through an aggregator, every request
    /// and answer through its wire bytes.
    fn certify(&mut self, op: Op, history: Vec<Certificate>) -> Certificate {
        let mut client = Aggregator::new(
            self.committee.clone(),
            op,
            history,
            now(),
            AggregatorConfig::default(),
        );
        while let Some(tx) = client.poll_transmit() {
            let bytes = tx.request.encode().unwrap();
            let Some(v) = self.validators.iter_mut().find(|v| v.id() == tx.to) else {
                continue;
            };
            let request = Request::decode(&bytes, &self.committee, &Ed25519).unwrap();
            let answer = match v.handle_request(now(), &request) {
                Outcome::Persist(p) => Answer::Vote(v.release(p)),
                Outcome::Vote(vote) => Answer::Vote(vote),
                Outcome::Pending => continue,
                Outcome::Refused(r) => Answer::Refused(r),
            };
            let _ = client.handle_bytes(now(), tx.to, &answer.encode().unwrap(), &Ed25519);
        }
        match client.poll_event() {
            Some(Event::Certified(c)) => c,
            other => panic!("not certified: {other:?}"),
        }
    }

    /// Credits `agent` 10 credits from the genesis issuer: the chain's first certificate.
    fn credit(&mut self, agent: &SigningKey) -> Certificate {
        let attestation = Attestation {
            issuer: key(ISSUER).id(),
            subject: agent.id(),
            claims: Claims {
                organisation: None,
                tier: "standard".into(),
                spending_limit_credits: 10,
                owner: None,
                may_delegate: false,
                model: None,
                labels: Default::default(),
            },
            issued_at: at(0),
            not_before: at(0),
            expires_at: at(86_400),
            nonce: [agent.to_bytes()[0]; 16],
        };
        let op = ChainOp {
            account: agent.id(),
            seq: 0,
            prev: None,
            action: Action::Credit(Credential::single(
                Signed::sign(attestation, &key(ISSUER)).unwrap(),
            )),
            delegation: None,
        };
        self.certify(Op::Chain(Signed::sign(op, agent).unwrap()), vec![])
    }
}

/// `agent`'s lock op after `head` for `terms`.
fn lock_op(agent: &SigningKey, head: &Certificate, terms: LockTerms) -> Op {
    let Op::Chain(prev) = head.op() else {
        panic!("the head is a chain op");
    };
    let op = ChainOp {
        account: agent.id(),
        seq: prev.body().seq + 1,
        prev: Some(head.digest()),
        action: Action::Lock(terms),
        delegation: None,
    };
    Op::Chain(Signed::sign(op, agent).unwrap())
}

/// Terms covering the lease `lease` at [`PROVIDER`]: half a credit (the lease may cost at
/// most 100 µcr/s × 3600 s), for two hours.
fn terms(lease: Digest) -> LockTerms {
    LockTerms {
        lease,
        provider: key(PROVIDER).id(),
        amount_micro: 500_000,
        expires_at: at(100 + 7200),
    }
}

fn offer() -> Signed<Offer> {
    Signed::sign(Offer::example(key(PROVIDER).id(), 1, at(0)), &key(PROVIDER)).unwrap()
}

/// A fresh lease request of `agent` (nonce `nonce`) for the provider's offer.
fn request(agent: &SigningKey, nonce: u8) -> Signed<LeaseRequest> {
    let signup = Signed::sign(
        SignupRecord {
            agent: agent.id(),
            challenge: Challenge {
                verifier: key(3).id(),
                nonce: [5; 32],
                issued_at: at(0),
            },
            credential: None,
            pow: ProofOfWork::NONE,
            name: None,
        },
        agent,
    )
    .unwrap();
    let r = LeaseRequest {
        agent: agent.id(),
        candidates: vec![Candidate {
            provider: key(PROVIDER).id(),
            offer: offer().digest(),
        }],
        isolation: Isolation::Sandbox,
        spec: WorkloadSpec::example(Digest::of(b"busybox"), &["sleep", "1000"]),
        max_price_per_sec: 100,
        nonce: [nonce; NONCE_LEN],
        issued_at: at(90),
        signup,
        delegation: None,
    };
    Signed::sign(r, agent).unwrap()
}

/// The provider under test, its committee service, its store and the store's directory.
struct Harness {
    provider: Provider,
    quota: Arc<Quota>,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

/// The provider on `store` with `quota`, opened at `opened` (a second one on the same store
/// is the provider restarted).
fn open_provider(store: &Arc<dyn Store>, quota: &Arc<Quota>, opened: Timestamp) -> Provider {
    let identity = Arc::new(Identity::from_secret_bytes(&[PROVIDER; 32]));
    // No runtime: a lease that passes admission and quota is refused at launch.
    let supervisor =
        Arc::new(Supervisor::new(store.clone(), vec![], SupervisorConfig::default()).unwrap());
    // Every agent in good standing: what is tested here is quota, not standing.
    let judge: Judge = Arc::new(|record: &Signed<SignupRecord>, _| {
        Ok(Standing {
            agent: record.body().agent,
            tier: TierLimits::contained(),
            owner: None,
        })
    });
    let provider = Provider::open(
        identity,
        store.clone(),
        supervisor,
        AdmissionConfig::default(),
        judge,
        Settings::default(),
        opened,
    )
    .unwrap()
    .with_quota(Some(quota.clone()));
    provider.offer_published(&offer());
    provider
}

fn harness(committee: Committee) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(RocksStore::open(&dir.path().join("store")).unwrap());
    let identity = Arc::new(Identity::from_secret_bytes(&[PROVIDER; 32]));
    // The network loop is not running: certificates this provider would send out (none
    // here: no lease ends) would wait in the channel.
    let (net, _) = tokio::sync::mpsc::channel(16);
    let quota = Arc::new(Quota::open(identity, committee, store.clone(), net).unwrap());
    Harness {
        provider: open_provider(&store, &quota, at(50)),
        quota,
        store,
        _dir: dir,
    }
}

impl Harness {
    /// Proposes `request` with `lock` through the lease wire: the refusal's code and reason.
    async fn propose(
        &self,
        request: &Signed<LeaseRequest>,
        lock: Option<UncheckedCertificate>,
    ) -> (RefusalCode, String) {
        let wire = rpc::Request::Propose(LeaseProposal {
            request: request.clone(),
            approval: None,
            lock,
        })
        .encode()
        .unwrap();
        let decoded = rpc::Request::decode(&wire).unwrap();
        match self.provider.handle(&decoded, now()).await {
            rpc::Response::Answer(LeaseAnswer::Refused(r)) => {
                assert_eq!(
                    r.signer(),
                    key(PROVIDER).id(),
                    "refusals are the provider's"
                );
                (r.body().refusal.code, r.body().refusal.detail.clone())
            }
            rpc::Response::Refused(r) => (r.code, r.detail),
            other => panic!("a lease was not refused: {other:?}"),
        }
    }

    /// Asserts that `lock` for `request` is refused with `quota` for a reason containing
    /// `reason`, and that nothing was kept.
    async fn refuses(
        &self,
        case: &str,
        request: &Signed<LeaseRequest>,
        lock: Option<UncheckedCertificate>,
        reason: &str,
    ) {
        let (code, detail) = self.propose(request, lock).await;
        assert_eq!(code, RefusalCode::Quota, "{case}: {detail}");
        assert!(
            detail.contains(reason),
            "{case}: the reason {detail:?} does not say {reason:?}"
        );
        let lease = request.digest();
        assert!(
            self.quota.state().locks_of(&lease).unwrap().is_empty(),
            "{case}: no lock is kept"
        );
        match self
            .provider
            .handle(&rpc::Request::Query(lease), now())
            .await
        {
            rpc::Response::Refused(r) => assert_eq!(r.code, RefusalCode::UnknownLease, "{case}"),
            other => panic!("{case}: the refused lease is known: {other:?}"),
        }
        println!("{case}: refused `quota`: {detail}");
    }
}

fn unchecked(cert: &Certificate) -> UncheckedCertificate {
    cert.clone().into_unchecked()
}

/// `votes` re-sorted ascending by validator (the order a certificate must have), so the
/// check that fails is the one the case is about.
fn sorted(mut u: UncheckedCertificate) -> UncheckedCertificate {
    u.votes.sort_by_key(|v| v.validator);
    u
}

/// A fresh request of `agent` (nonce `nonce`: admission remembers every request it saw, so
/// each case has its own) and the genuine certificate of its lock after `head`, which
/// becomes the new head.
fn fresh(
    net: &mut Net,
    agent: &SigningKey,
    head: &mut Certificate,
    nonce: u8,
) -> (Signed<LeaseRequest>, Certificate) {
    let r = request(agent, nonce);
    let cert = net.certify(lock_op(agent, head, terms(r.digest())), vec![head.clone()]);
    *head = cert.clone();
    (r, cert)
}

/// Another committee (`seeds`, starting `start_secs` after [`START`]) that certified the
/// agent's credit `credit` and then `op`: its certificate of `op`.
fn certified_elsewhere(seeds: [u8; 4], start_secs: u64, credit: &Op, op: &Op) -> Certificate {
    let mut other = Net::new(seeds, start_secs);
    let credited = other.certify(credit.clone(), vec![]);
    other.certify(op.clone(), vec![credited])
}

#[tokio::test]
async fn forged_lock_certificates_are_refused_and_never_start_a_lease() {
    let mut net = Net::new(VALIDATORS, 0);
    let h = harness(net.committee.clone());
    let agent = key(AGENT);
    let credit = net.credit(&agent);
    let mut head = credit.clone();
    let other_agent = key(OTHER_AGENT);
    let other_head = net.credit(&other_agent);

    // No certificate at all.
    h.refuses(
        "no certificate",
        &request(&agent, 1),
        None,
        "a lock certificate of the quota committee is required",
    )
    .await;

    // Two genuine votes and one by a key outside the genesis (a validator of another
    // committee that signed the same op: the agent's first lock, after the same credit).
    let (r, genuine) = fresh(&mut net, &agent, &mut head, 2);
    let foreign = certified_elsewhere(OUTSIDERS, 0, credit.op(), genuine.op());
    let mut mixed = unchecked(&genuine);
    mixed.votes.truncate(2);
    mixed.votes.push(foreign.votes()[0]);
    h.refuses(
        "a vote by a key outside the genesis",
        &r,
        Some(sorted(mixed)),
        &format!(
            "{} is not a validator of this committee",
            foreign.votes()[0].validator
        ),
    )
    .await;
    let first_lock = genuine;

    // A whole certificate by another committee (other keys, another genesis).
    let r = request(&agent, 3);
    let foreign = certified_elsewhere(
        OUTSIDERS,
        0,
        credit.op(),
        &lock_op(&agent, &credit, terms(r.digest())),
    );
    h.refuses(
        "another committee's certificate",
        &r,
        Some(unchecked(&foreign)),
        "is not a validator of this committee",
    )
    .await;

    // Another genesis of the same validators (a later start): their votes sign another
    // genesis digest.
    let r = request(&agent, 4);
    let twin = certified_elsewhere(
        VALIDATORS,
        60,
        credit.op(),
        &lock_op(&agent, &credit, terms(r.digest())),
    );
    h.refuses(
        "another genesis of the same validators",
        &r,
        Some(unchecked(&twin)),
        &format!("the vote of {} does not verify", twin.votes()[0].validator),
    )
    .await;

    // f + 1 = 2 votes of a genuine certificate.
    let (r, genuine) = fresh(&mut net, &agent, &mut head, 5);
    let mut few = unchecked(&genuine);
    few.votes.truncate(2);
    h.refuses(
        "f + 1 votes",
        &r,
        Some(few),
        "2 votes, a certificate has exactly 3",
    )
    .await;

    // 2f + 1 votes, one of them the same validator's twice.
    let (r, genuine) = fresh(&mut net, &agent, &mut head, 6);
    let mut repeated = unchecked(&genuine);
    repeated.votes[2] = repeated.votes[1];
    h.refuses(
        "a vote repeated",
        &r,
        Some(repeated),
        "not in strictly ascending validator order",
    )
    .await;

    // A tampered vote signature.
    let (r, genuine) = fresh(&mut net, &agent, &mut head, 7);
    let mut tampered = unchecked(&genuine);
    tampered.votes[1].signature.0[7] ^= 0x01;
    h.refuses(
        "a tampered vote signature",
        &r,
        Some(tampered),
        &format!(
            "the vote of {} does not verify",
            genuine.votes()[1].validator
        ),
    )
    .await;

    // The agent re-signs its certified op with a larger amount and keeps the votes.
    let before = head.clone();
    let (r, genuine) = fresh(&mut net, &agent, &mut head, 8);
    let mut raised_terms = terms(r.digest());
    raised_terms.amount_micro *= 5;
    let raised = UncheckedCertificate {
        op: lock_op(&agent, &before, raised_terms),
        votes: genuine.votes().to_vec(),
    };
    let first_voter = raised.votes[0].validator;
    h.refuses(
        "the op re-signed, the votes kept",
        &r,
        Some(raised),
        &format!("the vote of {first_voter} does not verify"),
    )
    .await;

    // Genuine certificates that do not cover the lease proposed.
    h.refuses(
        "a genuine certificate for another lease",
        &request(&agent, 9),
        Some(unchecked(&first_lock)),
        "the lock is for another lease",
    )
    .await;
    let r = request(&agent, 10);
    let others = net.certify(
        lock_op(&other_agent, &other_head, terms(r.digest())),
        vec![other_head.clone()],
    );
    h.refuses(
        "a genuine certificate of another account",
        &r,
        Some(unchecked(&others)),
        &format!("the lock is {}'s", other_agent.id()),
    )
    .await;
    let r = request(&agent, 11);
    let small = net.certify(
        lock_op(
            &agent,
            &head,
            LockTerms {
                amount_micro: 1,
                ..terms(r.digest())
            },
        ),
        vec![head.clone()],
    );
    head = small.clone();
    h.refuses(
        "a genuine certificate of too small an amount",
        &r,
        Some(unchecked(&small)),
        "the lock holds 1 micro-credits",
    )
    .await;
    let r = request(&agent, 12);
    let elsewhere = net.certify(
        lock_op(
            &agent,
            &head,
            LockTerms {
                provider: key(OTHER_PROVIDER).id(),
                ..terms(r.digest())
            },
        ),
        vec![head.clone()],
    );
    head = elsewhere.clone();
    h.refuses(
        "a genuine certificate for another provider",
        &r,
        Some(unchecked(&elsewhere)),
        &format!("the lock is for provider {}", key(OTHER_PROVIDER).id()),
    )
    .await;

    // The genuine certificate passes quota: the provider keeps it, and only the launch
    // (no runtime here) refuses the lease.
    let (r, good) = fresh(&mut net, &agent, &mut head, 13);
    let (code, detail) = h.propose(&r, Some(unchecked(&good))).await;
    assert_eq!(code, RefusalCode::Unsupported, "{detail}");
    assert!(detail.contains("could not start"), "{detail}");
    assert_eq!(
        h.quota.state().locks_of(&r.digest()).unwrap(),
        vec![good],
        "the genuine lock is kept"
    );
}

/// A request this provider refused under the committee is never granted afterwards, even
/// with a genuine lock certificate and after a restart: its signed refusal is what releases
/// the agent's lock for it (`committee::Release`), so granting it later could run a lease
/// whose lock was already returned.
#[tokio::test]
async fn a_refused_request_is_never_granted_afterwards_even_after_a_restart() {
    let mut net = Net::new(VALIDATORS, 0);
    let mut h = harness(net.committee.clone());
    let agent = key(AGENT);
    let mut head = net.credit(&agent);

    // Refused (signed, `quota`) without a lock; then a genuine lock certificate for the
    // same request: refused as a replay, nothing kept.
    let r = request(&agent, 40);
    let (code, _) = h.propose(&r, None).await;
    assert_eq!(code, RefusalCode::Quota);
    let cert = net.certify(
        lock_op(&agent, &head, terms(r.digest())),
        vec![head.clone()],
    );
    head = cert.clone();
    let (code, detail) = h.propose(&r, Some(unchecked(&cert))).await;
    assert_eq!(code, RefusalCode::Replay, "{detail}");
    assert!(detail.contains("refused before"), "{detail}");
    assert!(h.quota.state().locks_of(&r.digest()).unwrap().is_empty());

    // A request refused after passing quota (the launch failed) is remembered too.
    let (r2, good) = fresh(&mut net, &agent, &mut head, 41);
    let (code, _) = h.propose(&r2, Some(unchecked(&good))).await;
    assert_eq!(code, RefusalCode::Unsupported);
    let (code, _) = h.propose(&r2, Some(unchecked(&good))).await;
    assert_eq!(code, RefusalCode::Replay);

    // The provider restarts on the same store: it still refuses both.
    h.provider = open_provider(&h.store, &h.quota, at(60));
    for (request, lock) in [(&r, &cert), (&r2, &good)] {
        let (code, detail) = h.propose(request, Some(unchecked(lock))).await;
        assert_eq!(code, RefusalCode::Replay, "after a restart: {detail}");
    }
}

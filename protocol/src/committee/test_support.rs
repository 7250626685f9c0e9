//! Keys, a committee, op builders and an in-memory network for the committee's tests.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;

use crate::attestation::{Attestation, Claims, Credential};
use crate::id::AgoraId;
use crate::lease::{LeaseId, UsageReceipt};
use crate::signed::{Digest, Signed, Signer};
use crate::signup::MICRO_PER_CREDIT;
use crate::time::Timestamp;

use super::aggregator::{Aggregator, Config, Event, Failure};
use super::certificate::Certificate;
use super::genesis::{Committee, FreeTier, Genesis, LockRules};
use super::message::{Answer, Request};
use super::op::{Action, ChainOp, FreeTierClaim, LockTerms, Op, Settle, Unlock};
use super::refusal::Refusal;
use super::validator::{Outcome, Validator};

pub(super) const AGENT: u8 = 50;
pub(super) const PROVIDER: u8 = 60;
pub(super) const ISSUER: u8 = 70;
/// Genesis start, seconds since the Unix epoch.
pub(super) const START: u64 = 1_800_000_000;
pub(super) const EPOCH_SECS: u64 = 3600;
pub(super) const FREE_MICRO: u64 = 10 * MICRO_PER_CREDIT;
pub(super) const FREE_CAP: u32 = 8;

pub(super) fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

pub(super) fn id(n: u8) -> AgoraId {
    key(n).id()
}

/// `secs` seconds after the genesis start.
pub(super) fn t(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(START + secs)
}

/// Validator keys of a committee with `f`: 1..=3f+1.
pub(super) fn validator_keys(f: u32) -> Vec<SigningKey> {
    (1..=u8::try_from(3 * f + 1).unwrap()).map(key).collect()
}

pub(super) fn genesis(f: u32) -> Genesis {
    Genesis {
        f,
        validators: validator_keys(f).iter().map(Signer::id).collect(),
        issuers: vec![id(ISSUER)],
        start_unix_secs: START,
        epoch_secs: EPOCH_SECS,
        free_tier: FreeTier {
            allowance_micro: FREE_MICRO,
            cap_per_epoch: FREE_CAP,
        },
        locks: LockRules::default(),
    }
}

pub(super) fn committee(f: u32) -> Committee {
    Committee::new(genesis(f)).unwrap()
}

pub(super) fn validators(committee: &Committee, f: u32) -> Vec<Validator<SigningKey>> {
    validator_keys(f)
        .into_iter()
        .map(|k| Validator::new(committee.clone(), k).unwrap())
        .collect()
}

/// An attestation by `issuer` about `subject`, valid from the start for 10 days.
pub(super) fn attestation(
    issuer: u8,
    subject: u8,
    credits: u64,
    nonce: u8,
    may_delegate: bool,
) -> Signed<Attestation> {
    let body = Attestation {
        issuer: id(issuer),
        subject: id(subject),
        claims: Claims {
            organisation: None,
            tier: "standard".into(),
            spending_limit_credits: credits,
            owner: None,
            may_delegate,
            model: None,
            labels: BTreeMap::new(),
        },
        issued_at: t(0),
        not_before: t(0),
        expires_at: t(10 * 86_400),
        nonce: [nonce; 16],
    };
    Signed::sign(body, &key(issuer)).unwrap()
}

/// A credential for `agent` directly from [`ISSUER`].
pub(super) fn credential(agent: u8, credits: u64, nonce: u8) -> Credential {
    Credential::single(attestation(ISSUER, agent, credits, nonce, false))
}

/// A chain op by `agent`.
pub(super) fn chain_op(agent: u8, seq: u64, prev: Option<Digest>, action: Action) -> Op {
    let body = ChainOp {
        account: id(agent),
        seq,
        prev,
        action,
        delegation: None,
    };
    Op::Chain(Signed::sign(body, &key(agent)).unwrap())
}

pub(super) fn credit_op(agent: u8, seq: u64, prev: Option<Digest>, credits: u64, nonce: u8) -> Op {
    chain_op(
        agent,
        seq,
        prev,
        Action::Credit(credential(agent, credits, nonce)),
    )
}

pub(super) fn lease(n: u64) -> LeaseId {
    Digest::of(&n.to_be_bytes())
}

pub(super) fn lock_terms(
    lease_n: u64,
    provider: u8,
    amount_micro: u64,
    expires_at: Timestamp,
) -> LockTerms {
    LockTerms {
        lease: lease(lease_n),
        provider: id(provider),
        amount_micro,
        expires_at,
    }
}

pub(super) fn lock_op(agent: u8, seq: u64, prev: Option<Digest>, terms: LockTerms) -> Op {
    chain_op(agent, seq, prev, Action::Lock(terms))
}

pub(super) fn free_tier_op(agent: u8, epoch: u64, index: u32) -> Op {
    let claim = FreeTierClaim {
        account: id(agent),
        epoch,
        index,
    };
    Op::FreeTier(Signed::sign(claim, &key(agent)).unwrap())
}

pub(super) fn receipt(
    provider: u8,
    agent: u8,
    lease_n: u64,
    total_micro: u64,
) -> Signed<UsageReceipt> {
    let body = UsageReceipt {
        lease: lease(lease_n),
        agent: id(agent),
        provider: id(provider),
        seq: 0,
        from: t(0),
        to: t(60),
        cpu_ms: 1,
        memory_mib_secs: 1,
        egress_bytes: 0,
        tunnel_in_bytes: 0,
        tunnel_out_bytes: 0,
        price_per_sec: 1,
        total_micro,
        ended: None,
    };
    Signed::sign(body, &key(provider)).unwrap()
}

pub(super) fn settle_op(
    provider: u8,
    agent: u8,
    lock_seq: u64,
    lock: Digest,
    receipt: Signed<UsageReceipt>,
) -> Op {
    let body = Settle {
        account: id(agent),
        lock_seq,
        lock,
        receipt,
    };
    Op::Settle(Signed::sign(body, &key(provider)).unwrap())
}

pub(super) fn unlock_op(agent: u8, lock_seq: u64, lock: Digest) -> Op {
    Op::Unlock(Unlock {
        account: id(agent),
        lock_seq,
        lock,
    })
}

/// Asks `validator` to vote on `request` and, when it does, stores nothing and releases:
/// the vote, or `None` (refused or pending).
pub(super) fn vote(
    validator: &mut Validator<SigningKey>,
    now: Timestamp,
    request: &Request,
) -> Option<Answer> {
    match validator.handle_request(now, request) {
        Outcome::Persist(p) => Some(Answer::Vote(validator.release(p))),
        Outcome::Vote(v) => Some(Answer::Vote(v)),
        Outcome::Pending => None,
        Outcome::Refused(r) => Some(Answer::Refused(r)),
    }
}

/// Runs an aggregator for `op` against `validators` (all answering at once; members not in
/// the slice never answer) to the end.
pub(super) fn certify(
    committee: &Committee,
    validators: &mut [Validator<SigningKey>],
    now: Timestamp,
    op: Op,
    history: Vec<Certificate>,
) -> Result<Certificate, Failure> {
    let mut client = Aggregator::new(committee.clone(), op, history, now, Config::default());
    let mut rounds = 0;
    loop {
        while let Some(tx) = client.poll_transmit() {
            let Some(validator) = validators.iter_mut().find(|v| v.id() == tx.to) else {
                continue;
            };
            if let Some(answer) = vote(validator, now, &tx.request) {
                let _ = client.handle_answer(now, tx.to, answer);
            }
        }
        match client.poll_event() {
            Some(Event::Certified(c)) => return Ok(c),
            Some(Event::Failed(f)) => return Err(f),
            None => {}
        }
        rounds += 1;
        assert!(rounds < 1000, "aggregator did not finish");
        client.handle_timeout(client.poll_timeout().unwrap());
    }
}

/// Certifies `op` and applies the certificate at every validator.
pub(super) fn certify_everywhere(
    committee: &Committee,
    validators: &mut [Validator<SigningKey>],
    now: Timestamp,
    op: Op,
    history: Vec<Certificate>,
) -> Certificate {
    let cert = certify(committee, validators, now, op, history).unwrap();
    for v in validators.iter_mut() {
        v.handle_certificate(&cert).unwrap();
    }
    cert
}

pub(super) const CREDITS: u64 = 100;

/// A committee (f = 1) whose validators all applied the agent's credit of 100 credits.
pub(super) struct Fixture {
    pub(super) committee: Committee,
    pub(super) validators: Vec<Validator<SigningKey>>,
    pub(super) credit: Certificate,
}

pub(super) fn fixture_with(genesis: Genesis) -> Fixture {
    let committee = Committee::new(genesis).unwrap();
    let mut validators = validators(&committee, 1);
    let credit = certify_everywhere(
        &committee,
        &mut validators,
        t(10),
        credit_op(AGENT, 0, None, CREDITS, 1),
        Vec::new(),
    );
    Fixture {
        committee,
        validators,
        credit,
    }
}

pub(super) fn fixture() -> Fixture {
    fixture_with(genesis(1))
}

impl Fixture {
    pub(super) fn v(&mut self) -> &mut Validator<SigningKey> {
        self.validators.first_mut().unwrap()
    }

    /// The refusal of validator 0 for `op` at `now`.
    pub(super) fn refusal(&mut self, now: Timestamp, op: Op) -> Refusal {
        self.refusal_with(now, op, Vec::new())
    }

    pub(super) fn refusal_with(
        &mut self,
        now: Timestamp,
        op: Op,
        proofs: Vec<Certificate>,
    ) -> Refusal {
        match self.v().handle_request(now, &Request { op, proofs }) {
            Outcome::Refused(r) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// Certifies a lock of `amount` credits at `seq` for lease `n` by [`PROVIDER`].
    pub(super) fn lock(
        &mut self,
        seq: u64,
        prev: Digest,
        n: u64,
        amount: u64,
        expires: Timestamp,
    ) -> Certificate {
        let op = lock_op(
            AGENT,
            seq,
            Some(prev),
            lock_terms(n, PROVIDER, amount * MICRO_PER_CREDIT, expires),
        );
        certify_everywhere(&self.committee, &mut self.validators, t(20), op, Vec::new())
    }
}

/// A top-up by `agent` at `seq` of `terms` over `base_micro`.
pub(super) fn top_up_op(
    agent: u8,
    seq: u64,
    prev: Option<Digest>,
    terms: LockTerms,
    base_micro: u64,
) -> Op {
    chain_op(
        agent,
        seq,
        prev,
        Action::TopUp(super::op::TopUpTerms {
            lock: terms,
            base_micro,
        }),
    )
}

//! Property tests: with at most `f` faulty validators (double-signing or withholding) no slot
//! ever has two certificates and honest ops still certify; with `f + 1` a double certificate
//! can happen (so the check below can fail); free-tier grants stay within the cap; accounts
//! reach the same state whatever order certificates arrive in.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use crate::id::AgoraId;
use crate::signed::{Digest, Ed25519, Signed, Signer};
use crate::signup::MICRO_PER_CREDIT;
use crate::time::Timestamp;

use super::account::Accounts;
use super::aggregator::{Aggregator, Config, Event, Failure};
use super::certificate::Certificate;
use super::genesis::Committee;
use super::message::{Answer, Request};
use super::op::Op;
use super::test_support::*;
use super::validator::Validator;
use super::vote::Vote;

/// How a faulty validator misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Signs whatever it is asked to, every time, without any check.
    DoubleSign,
    /// Never answers.
    Withhold,
}

enum Member {
    Honest(Validator<SigningKey>),
    Faulty(SigningKey, Fault),
}

impl Member {
    fn id(&self) -> AgoraId {
        match self {
            Self::Honest(v) => v.id(),
            Self::Faulty(k, _) => k.id(),
        }
    }

    /// The member's answer to `request` at `now` (`None`: silence).
    fn ask(&mut self, committee: &Committee, now: Timestamp, request: &Request) -> Option<Answer> {
        match self {
            Self::Honest(v) => vote(v, now, request),
            Self::Faulty(_, Fault::Withhold) => None,
            Self::Faulty(k, Fault::DoubleSign) => {
                let vote = Vote {
                    genesis: committee.digest(),
                    slot: request.op.slot(),
                    op: request.op.digest(),
                };
                Some(Answer::Vote(Signed::sign(vote, k).unwrap()))
            }
        }
    }

    fn apply(&mut self, certificate: &Certificate) {
        if let Self::Honest(v) = self {
            let _ = v.handle_certificate(certificate);
        }
    }
}

/// Members of an `f` committee; those at `faulty` indices (mod n) misbehave as given.
fn members(committee: &Committee, f: u32, faulty: &[(usize, Fault)]) -> Vec<Member> {
    let n = validator_keys(f).len();
    let faults: BTreeMap<usize, Fault> = faulty.iter().map(|(i, fault)| (i % n, *fault)).collect();
    validator_keys(f)
        .into_iter()
        .enumerate()
        .map(|(i, k)| match faults.get(&i) {
            Some(fault) => Member::Faulty(k, *fault),
            None => Member::Honest(Validator::new(committee.clone(), k).unwrap()),
        })
        .collect()
}

/// Runs an aggregator for `op` against `members` to the end.
fn run(
    committee: &Committee,
    members: &mut [Member],
    now: Timestamp,
    op: Op,
    history: Vec<Certificate>,
) -> Result<Certificate, Failure> {
    let mut client = Aggregator::new(committee.clone(), op, history, now, Config::default());
    let mut now = now;
    loop {
        while let Some(tx) = client.poll_transmit() {
            let member = members.iter_mut().find(|m| m.id() == tx.to).unwrap();
            if let Some(answer) = member.ask(committee, now, &tx.request) {
                let _ = client.handle_answer(now, tx.to, answer);
            }
        }
        match client.poll_event() {
            Some(Event::Certified(c)) => return Ok(c),
            Some(Event::Failed(f)) => return Err(f),
            None => {}
        }
        now = client.poll_timeout().unwrap();
        client.handle_timeout(now);
    }
}

/// The safety check: per slot, how many distinct ops gathered a quorum of distinct signers.
/// `Err` names a slot with two certified ops.
fn at_most_one_certified_per_slot(
    committee: &Committee,
    votes: &BTreeMap<Digest, (super::op::Slot, BTreeSet<AgoraId>)>,
) -> Result<usize, super::op::Slot> {
    let mut certified: BTreeMap<super::op::Slot, usize> = BTreeMap::new();
    for (slot, signers) in votes.values() {
        if signers.len() >= committee.quorum() {
            *certified.entry(*slot).or_default() += 1;
        }
    }
    match certified.iter().find(|(_, count)| **count > 1) {
        Some((slot, _)) => Err(*slot),
        None => Ok(certified.len()),
    }
}

/// Certifies a credit of `credits` for [`AGENT`] with every member honest, then makes the
/// `faulty` ones faulty (they keep nothing). Returns the members and the credit certificate.
fn funded(
    committee: &Committee,
    f: u32,
    credits: u64,
    faulty: &[(usize, Fault)],
) -> (Vec<Member>, Certificate) {
    let mut all = validators(committee, f);
    let credit = certify_everywhere(
        committee,
        &mut all,
        t(1),
        credit_op(AGENT, 0, None, credits, 1),
        vec![],
    );
    let mut ms = members(committee, f, faulty);
    for (m, v) in ms.iter_mut().zip(all) {
        if let Member::Honest(_) = m {
            *m = Member::Honest(v);
        }
    }
    (ms, credit)
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![Just(Fault::DoubleSign), Just(Fault::Withhold)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// An agent tries to spend its whole balance at several providers at once (several lock
    /// ops for one seq), delivered in any order; up to `f` validators sign everything or
    /// nothing. At most one lock is ever certified, and at most one certificate forms when
    /// the votes are handed to aggregators.
    #[test]
    fn no_double_spend_with_up_to_f_faults(
        f in 1u32..=2,
        faulty in proptest::collection::vec((0usize..16, fault()), 0..=2),
        k in 2usize..=4,
        schedule in proptest::collection::vec((0usize..16, 0usize..4), 0..40),
        order in proptest::collection::vec(0usize..16, 16),
    ) {
        let committee = committee(f);
        let faulty: Vec<_> = faulty.into_iter().take(f as usize).collect();
        let (mut ms, credit) = funded(&committee, f, 100, &faulty);
        let ops: Vec<Op> = (0..k)
            .map(|i| lock_op(AGENT, 1, Some(credit.digest()), lock_terms(i as u64, PROVIDER + i as u8, 100 * MICRO_PER_CREDIT, t(600))))
            .collect();
        let n = ms.len();
        // The scheduled deliveries, then every op to every member in a shuffled member order.
        let mut deliveries: Vec<(usize, usize)> = schedule.iter().map(|(v, o)| (v % n, o % k)).collect();
        for o in 0..k {
            for j in 0..n {
                deliveries.push((order.get(j).map_or(j, |x| (x + j) % n), (o + j) % k));
            }
        }
        let mut votes: BTreeMap<Digest, (super::op::Slot, BTreeSet<AgoraId>)> = BTreeMap::new();
        let mut answers: Vec<(usize, AgoraId, Answer)> = Vec::new();
        for (v, o) in deliveries {
            let request = Request { op: ops[o].clone(), proofs: vec![credit.clone()] };
            let member = &mut ms[v];
            if let Some(answer) = member.ask(&committee, t(5), &request) {
                if let Answer::Vote(vote) = &answer {
                    let entry = votes.entry(vote.body().op).or_insert((vote.body().slot, BTreeSet::new()));
                    entry.1.insert(vote.signer());
                }
                answers.push((o, member.id(), answer));
            }
        }
        prop_assert!(at_most_one_certified_per_slot(&committee, &votes).is_ok());
        // The same through real aggregators, one per op, fed every answer.
        let mut certificates = 0;
        for (o, op) in ops.iter().enumerate() {
            let mut client = Aggregator::new(committee.clone(), op.clone(), vec![], t(5), Config::default());
            for (_, from, answer) in answers.iter().filter(|(x, _, _)| *x == o) {
                let _ = client.handle_answer(t(5), *from, answer.clone());
            }
            if let Some(Event::Certified(c)) = client.poll_event() {
                prop_assert_eq!(Certificate::decode(&c.encode().unwrap(), &committee, &Ed25519).unwrap(), c);
                certificates += 1;
            }
        }
        prop_assert!(certificates <= 1);
    }

    /// An honest agent's locks (within its balance) all certify with up to `f` faulty
    /// validators, and the account ends as a model says; settling some of them charges what
    /// their receipts say, at most the lock.
    #[test]
    fn honest_locks_complete_with_up_to_f_faults(
        f in 1u32..=2,
        faulty in proptest::collection::vec((0usize..16, fault()), 0..=2),
        amounts in proptest::collection::vec(1u64..=30, 1..=5),
        costs in proptest::collection::vec(proptest::option::of(0u64..=40), 5),
    ) {
        let committee = committee(f);
        let faulty: Vec<_> = faulty.into_iter().take(f as usize).collect();
        let credits = 100;
        let (mut ms, credit) = funded(&committee, f, credits, &faulty);
        let mut history = vec![credit.clone()];
        let mut model_locked = 0u64;
        let mut locks = Vec::new();
        for (i, amount) in amounts.iter().enumerate() {
            let seq = i as u64 + 1;
            let prev = history.last().unwrap().digest();
            let fits = model_locked + amount <= credits;
            let op = lock_op(AGENT, seq, Some(prev), lock_terms(seq, PROVIDER, amount * MICRO_PER_CREDIT, t(600)));
            match run(&committee, &mut ms, t(10), op, history.clone()) {
                Ok(cert) => {
                    prop_assert!(fits, "a lock beyond the balance certified");
                    model_locked += amount;
                    locks.push((seq, *amount, cert.clone()));
                    history.push(cert);
                }
                Err(failure) => {
                    prop_assert!(!fits, "an honest lock failed: {failure:?}");
                    break;
                }
            }
        }
        // Settle some locks with their receipts.
        let mut spent = 0u64;
        let mut closings = Vec::new();
        for ((seq, amount, cert), cost) in locks.iter().zip(&costs) {
            let Some(cost) = cost else { continue };
            let settle = settle_op(PROVIDER, AGENT, *seq, cert.digest(), receipt(PROVIDER, AGENT, *seq, cost * MICRO_PER_CREDIT));
            let closing = run(&committee, &mut ms, t(700), settle, vec![cert.clone()]);
            prop_assert!(closing.is_ok(), "an honest settlement failed: {closing:?}");
            closings.push(closing.unwrap());
            spent += cost.min(amount);
            model_locked -= amount;
        }
        let mut accounts = Accounts::new(committee.clone());
        for cert in history.iter().chain(&closings) {
            accounts.apply(cert).unwrap();
        }
        let account = accounts.get(&id(AGENT)).unwrap();
        prop_assert_eq!(account.spent_micro(), spent * MICRO_PER_CREDIT);
        prop_assert_eq!(account.locked_micro(), model_locked * MICRO_PER_CREDIT);
        prop_assert_eq!(account.available_micro(), (credits - spent - model_locked) * MICRO_PER_CREDIT);
        // Honest validators agree with the model once they saw every certificate.
        for m in &mut ms {
            for cert in history.iter().chain(&closings) { m.apply(cert); }
            if let Member::Honest(v) = m {
                prop_assert_eq!(v.accounts().get(&id(AGENT)), Some(account));
            }
        }
    }

    /// With `f + 1` double-signing validators, an agent's two lock ops for one seq, each sent
    /// to half of the honest validators, both certify: the safety check above fails, so it
    /// is not vacuous, and the bound `f` is tight.
    #[test]
    fn f_plus_one_faults_can_double_certify(
        f in 1u32..=3,
        faulty_offset in 0usize..16,
    ) {
        let committee = committee(f);
        let n = validator_keys(f).len();
        let faulty: Vec<_> = (0..=f as usize).map(|i| ((faulty_offset + i) % n, Fault::DoubleSign)).collect();
        let (mut ms, credit) = funded(&committee, f, 100, &faulty);
        let a = lock_op(AGENT, 1, Some(credit.digest()), lock_terms(1, PROVIDER, 100 * MICRO_PER_CREDIT, t(600)));
        let b = lock_op(AGENT, 1, Some(credit.digest()), lock_terms(2, PROVIDER + 1, 100 * MICRO_PER_CREDIT, t(600)));
        let mut clients = [a.clone(), b.clone()].map(|op| Aggregator::new(committee.clone(), op, vec![], t(5), Config::default()));
        let mut votes: BTreeMap<Digest, (super::op::Slot, BTreeSet<AgoraId>)> = BTreeMap::new();
        let mut honest_seen = 0;
        for m in &mut ms {
            let targets: Vec<usize> = match m {
                Member::Faulty(..) => vec![0, 1],
                Member::Honest(_) => {
                    honest_seen += 1;
                    vec![usize::from(honest_seen > f as usize)]
                }
            };
            for which in targets {
                let op = if which == 0 { &a } else { &b };
                let request = Request { op: op.clone(), proofs: vec![] };
                if let Some(Answer::Vote(vote)) = m.ask(&committee, t(5), &request) {
                    votes.entry(vote.body().op).or_insert((vote.body().slot, BTreeSet::new())).1.insert(vote.signer());
                    let _ = clients[which].handle_answer(t(5), m.id(), Answer::Vote(vote));
                }
            }
        }
        prop_assert!(at_most_one_certified_per_slot(&committee, &votes).is_err());
        let certified: Vec<Certificate> = clients
            .iter_mut()
            .filter_map(|c| match c.poll_event() { Some(Event::Certified(cert)) => Some(cert), _ => None })
            .collect();
        prop_assert_eq!(certified.len(), 2);
        prop_assert_eq!(certified[0].slot(), certified[1].slot());
        prop_assert_ne!(certified[0].digest(), certified[1].digest());
        // Both are genuine certificates: anyone would accept either.
        for c in &certified {
            prop_assert!(Certificate::decode(&c.encode().unwrap(), &committee, &Ed25519).is_ok());
        }
    }

    /// A lock is closed at most once: its provider's settlement and an unlock race around
    /// the settle deadline, validators' clocks skewed, up to `f` faulty.
    #[test]
    fn a_lock_closes_once(
        f in 1u32..=2,
        faulty in proptest::collection::vec((0usize..16, fault()), 0..=2),
        skews in proptest::collection::vec(-5i64..=5, 7),
        settle_first in proptest::collection::vec(any::<bool>(), 7),
        delays in proptest::collection::vec(0u64..=10, 7),
    ) {
        let committee = committee(f);
        let faulty: Vec<_> = faulty.into_iter().take(f as usize).collect();
        let (mut ms, credit) = funded(&committee, f, 100, &faulty);
        let lock = run(&committee, &mut ms, t(5), lock_op(AGENT, 1, Some(credit.digest()), lock_terms(1, PROVIDER, 10 * MICRO_PER_CREDIT, t(600))), vec![credit]).unwrap();
        let deadline = t(600).saturating_add(committee.settle_grace());
        let settle = settle_op(PROVIDER, AGENT, 1, lock.digest(), receipt(PROVIDER, AGENT, 1, MICRO_PER_CREDIT));
        let unlock = unlock_op(AGENT, 1, lock.digest());
        let mut votes: BTreeMap<Digest, (super::op::Slot, BTreeSet<AgoraId>)> = BTreeMap::new();
        for (i, m) in ms.iter_mut().enumerate() {
            let skew = skews.get(i).copied().unwrap_or(0);
            let now = Timestamp::from_unix_millis(deadline.as_unix_millis().saturating_add_signed(skew * 1000));
            let ops = if settle_first.get(i).copied().unwrap_or(true) { [&settle, &unlock] } else { [&unlock, &settle] };
            // The second request arrives `delay` seconds after the first.
            let delay = delays.get(i).copied().unwrap_or(0);
            for (op, at) in ops.into_iter().zip([now, now.saturating_add(core::time::Duration::from_secs(delay))]) {
                let request = Request { op: op.clone(), proofs: vec![lock.clone()] };
                if let Some(Answer::Vote(vote)) = m.ask(&committee, at, &request) {
                    votes.entry(vote.body().op).or_insert((vote.body().slot, BTreeSet::new())).1.insert(vote.signer());
                }
            }
        }
        prop_assert!(at_most_one_certified_per_slot(&committee, &votes).is_ok());
    }

    /// Agents claim free-tier pool slots in any order, up to `f` validators sign anything:
    /// no pool slot is certified twice, so at most the cap of grants exists per epoch.
    #[test]
    fn free_tier_grants_stay_within_the_cap(
        f in 1u32..=2,
        faulty in proptest::collection::vec((0usize..16, fault()), 0..=2),
        claims in proptest::collection::vec((0u8..12, 0u32..FREE_CAP), 1..30),
        order in proptest::collection::vec(0usize..1000, 7),
    ) {
        let committee = committee(f);
        let faulty: Vec<_> = faulty.into_iter().take(f as usize).collect();
        let mut ms = members(&committee, f, &faulty);
        let ops: Vec<Op> = claims.iter().map(|(agent, index)| free_tier_op(AGENT + agent, 0, *index)).collect();
        let mut votes: BTreeMap<Digest, (super::op::Slot, BTreeSet<AgoraId>)> = BTreeMap::new();
        for (i, m) in ms.iter_mut().enumerate() {
            // Each member sees the claims rotated by its own offset.
            let offset = order.get(i).copied().unwrap_or(0) % ops.len();
            for j in 0..ops.len() {
                let op = &ops[(j + offset) % ops.len()];
                let request = Request { op: op.clone(), proofs: vec![] };
                if let Some(Answer::Vote(vote)) = m.ask(&committee, t(5), &request) {
                    votes.entry(vote.body().op).or_insert((vote.body().slot, BTreeSet::new())).1.insert(vote.signer());
                }
            }
        }
        let certified = at_most_one_certified_per_slot(&committee, &votes);
        prop_assert!(certified.is_ok());
        prop_assert!(certified.unwrap() <= FREE_CAP as usize);
    }

    /// Certificates applied in any order (retrying those that must wait) give the state they
    /// give in order.
    #[test]
    fn accounts_converge_in_any_order(
        amounts in proptest::collection::vec(1u64..=20, 1..=4),
        settle in proptest::collection::vec(any::<bool>(), 4),
        shuffle in proptest::collection::vec(any::<u32>(), 12),
    ) {
        let committee = committee(1);
        let mut vs = validators(&committee, 1);
        let mut certs = vec![certify_everywhere(&committee, &mut vs, t(1), credit_op(AGENT, 0, None, 100, 1), vec![])];
        certs.push(certify_everywhere(&committee, &mut vs, t(1), free_tier_op(AGENT, 0, 0), vec![]));
        let mut chain_head = certs[0].digest();
        let mut closings = Vec::new();
        for (i, amount) in amounts.iter().enumerate() {
            let seq = i as u64 + 1;
            let op = lock_op(AGENT, seq, Some(chain_head), lock_terms(seq, PROVIDER, amount * MICRO_PER_CREDIT, t(600)));
            let cert = certify_everywhere(&committee, &mut vs, t(2), op, vec![]);
            chain_head = cert.digest();
            let close = if settle.get(i).copied().unwrap_or(false) {
                settle_op(PROVIDER, AGENT, seq, cert.digest(), receipt(PROVIDER, AGENT, seq, seq * 1000))
            } else {
                unlock_op(AGENT, seq, cert.digest())
            };
            let at = if matches!(close, Op::Settle(_)) { t(700) } else { t(600).saturating_add(committee.settle_grace()) };
            certs.push(cert);
            closings.push((close, at));
        }
        for (close, at) in closings {
            certs.push(certify_everywhere(&committee, &mut vs, at, close, vec![]));
        }
        let mut in_order = Accounts::new(committee.clone());
        for c in &certs {
            in_order.apply(c).unwrap();
        }
        let mut shuffled: Vec<(u32, Certificate)> = certs.iter().cloned().zip(shuffle.iter().cycle().copied()).map(|(c, k)| (k, c)).collect();
        shuffled.sort_by_key(|(k, _)| *k);
        let mut pending: Vec<Certificate> = shuffled.into_iter().map(|(_, c)| c).collect();
        let mut any_order = Accounts::new(committee.clone());
        while !pending.is_empty() {
            let before = pending.len();
            pending.retain(|c| any_order.apply(c).is_err());
            prop_assert!(pending.len() < before, "no progress");
        }
        prop_assert_eq!(any_order.get(&id(AGENT)), in_order.get(&id(AGENT)));
    }
}

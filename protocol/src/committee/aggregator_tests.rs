//! The client machine (votes, duplicates, strangers, retries, catch-up, deadline) and
//! certificate verification.

use core::time::Duration;

use crate::signed::{Ed25519, Signature, Signed};

use super::aggregator::{Aggregator, Config, Event, Failure, Ignored};
use super::certificate::{Certificate, CertificateError, UncheckedCertificate, VoteSig};
use super::message::Answer;
use super::refusal::Refusal;
use super::test_support::*;
use super::vote::Vote;

fn cfg() -> Config {
    Config {
        retry_after: Duration::from_millis(100),
        max_retry_after: Duration::from_millis(400),
        deadline: Duration::from_secs(2),
    }
}

fn claim() -> super::op::Op {
    free_tier_op(AGENT, 0, 1)
}

/// A vote by validator key `n` for `op` (made directly: how a stranger or a faulty member
/// could sign).
fn raw_vote(committee: &super::genesis::Committee, n: u8, op: &super::op::Op) -> Signed<Vote> {
    let vote = Vote {
        genesis: committee.digest(),
        slot: op.slot(),
        op: op.digest(),
    };
    Signed::sign(vote, &key(n)).unwrap()
}

#[test]
fn sends_to_everyone_and_certifies_at_quorum() {
    let committee = committee(1);
    let op = claim();
    let mut client = Aggregator::new(committee.clone(), op.clone(), vec![], t(1), cfg());
    let sent: Vec<_> = std::iter::from_fn(|| client.poll_transmit()).collect();
    assert_eq!(sent.len(), 4);
    for n in 1..=2 {
        client
            .handle_answer(t(1), id(n), Answer::Vote(raw_vote(&committee, n, &op)))
            .unwrap();
    }
    assert!(client.poll_event().is_none());
    client
        .handle_answer(t(1), id(3), Answer::Vote(raw_vote(&committee, 3, &op)))
        .unwrap();
    let Some(Event::Certified(cert)) = client.poll_event() else {
        panic!("no certificate")
    };
    assert_eq!(cert.votes().len(), 3);
    assert_eq!(cert.digest(), op.digest());
    assert_eq!(client.poll_timeout(), None);
    assert_eq!(
        client.handle_answer(t(1), id(4), Answer::Vote(raw_vote(&committee, 4, &op))),
        Err(Ignored::Finished)
    );
    let bytes = cert.encode().unwrap();
    assert_eq!(
        Certificate::decode(&bytes, &committee, &Ed25519).unwrap(),
        cert
    );
}

#[test]
fn ignores_duplicates_strangers_other_ops_and_bad_signatures() {
    let committee = committee(1);
    let op = claim();
    let mut client = Aggregator::new(committee.clone(), op.clone(), vec![], t(1), cfg());
    let v1 = Answer::Vote(raw_vote(&committee, 1, &op));
    client.handle_answer(t(1), id(1), v1.clone()).unwrap();
    assert_eq!(
        client.handle_answer(t(1), id(1), v1.clone()),
        Err(Ignored::Duplicate(id(1)))
    );
    assert_eq!(
        client.handle_answer(t(1), id(99), Answer::Vote(raw_vote(&committee, 99, &op))),
        Err(Ignored::NotMember(id(99)))
    );
    assert_eq!(
        client.handle_answer(t(1), id(99), Answer::Refused(Refusal::ZeroAmount)),
        Err(Ignored::NotMember(id(99)))
    );
    let other = free_tier_op(AGENT, 0, 2);
    assert_eq!(
        client.handle_answer(t(1), id(2), Answer::Vote(raw_vote(&committee, 2, &other))),
        Err(Ignored::OtherVote(id(2)))
    );
    let foreign = committee_with_f_2_vote(&op);
    assert_eq!(
        client.handle_answer(t(1), id(2), Answer::Vote(foreign)),
        Err(Ignored::OtherVote(id(2)))
    );
    // A vote whose signature byte was flipped does not decode.
    let mut bytes = Answer::Vote(raw_vote(&committee, 2, &op)).encode().unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert!(matches!(
        client.handle_bytes(t(1), id(2), &bytes, &Ed25519),
        Err(Ignored::Invalid(_))
    ));
    // Garbage neither.
    assert!(matches!(
        client.handle_bytes(t(1), id(2), &[7, 7, 7], &Ed25519),
        Err(Ignored::Invalid(_))
    ));
    assert_eq!(client.vote_count(), 1);
    assert!(client.poll_event().is_none());
    // The genuine vote still counts.
    let good = Answer::Vote(raw_vote(&committee, 2, &op)).encode().unwrap();
    client.handle_bytes(t(1), id(2), &good, &Ed25519).unwrap();
    assert_eq!(client.vote_count(), 2);
}

/// A vote by validator 2 for `op`, but naming the f = 2 committee.
fn committee_with_f_2_vote(op: &super::op::Op) -> Signed<Vote> {
    raw_vote(&committee(2), 2, op)
}

#[test]
fn more_than_f_refusals_fail_early() {
    let committee = committee(1);
    let mut client = Aggregator::new(committee, claim(), vec![], t(1), cfg());
    client
        .handle_answer(t(1), id(1), Answer::Refused(Refusal::FreeTierDisabled))
        .unwrap();
    assert!(client.poll_event().is_none());
    client
        .handle_answer(t(1), id(2), Answer::Refused(Refusal::FreeTierDisabled))
        .unwrap();
    match client.poll_event() {
        Some(Event::Failed(Failure::Refused(refusals))) => assert_eq!(refusals.len(), 2),
        other => panic!("expected failure, got {other:?}"),
    }
}

#[test]
fn retries_silent_validators_with_backoff_then_gives_up() {
    let committee = committee(1);
    let op = claim();
    let start = t(1);
    let mut client = Aggregator::new(committee.clone(), op.clone(), vec![], start, cfg());
    while client.poll_transmit().is_some() {}
    client
        .handle_answer(start, id(1), Answer::Vote(raw_vote(&committee, 1, &op)))
        .unwrap();
    client
        .handle_answer(start, id(2), Answer::Refused(Refusal::ZeroAmount))
        .unwrap();
    let ms = |n| start.saturating_add(Duration::from_millis(n));
    assert_eq!(client.poll_timeout(), Some(ms(100)));
    // Too early: nothing.
    client.handle_timeout(ms(50));
    assert!(client.poll_transmit().is_none());
    // Due: the two silent validators, again; then the wait doubles (200, 400, 400, ...).
    client.handle_timeout(ms(100));
    let mut again: Vec<_> = std::iter::from_fn(|| client.poll_transmit())
        .map(|t| t.to)
        .collect();
    again.sort();
    let mut silent = vec![id(3), id(4)];
    silent.sort();
    assert_eq!(again, silent);
    assert_eq!(client.poll_timeout(), Some(ms(300)));
    client.handle_timeout(ms(300));
    assert_eq!(client.poll_timeout(), Some(ms(700)));
    client.handle_timeout(ms(700));
    assert_eq!(client.poll_timeout(), Some(ms(1100)));
    client.handle_timeout(ms(2000));
    match client.poll_event() {
        Some(Event::Failed(Failure::TimedOut {
            votes,
            quorum,
            refusals,
        })) => {
            assert_eq!((votes, quorum, refusals.len()), (1, 3, 1));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(client.is_done() && client.poll_timeout().is_none());
}

#[test]
fn catches_a_lagging_validator_up() {
    let committee = committee(1);
    let mut validators = validators(&committee, 1);
    // The agent's chain: credit, then a lock, seen by validators 2..=4 only.
    let (first, rest) = validators.split_at_mut(1);
    let c0 = certify_everywhere(
        &committee,
        rest,
        t(1),
        credit_op(AGENT, 0, None, 10, 1),
        vec![],
    );
    let c1 = certify_everywhere(
        &committee,
        rest,
        t(1),
        lock_op(
            AGENT,
            1,
            Some(c0.digest()),
            lock_terms(1, PROVIDER, 5, t(600)),
        ),
        vec![],
    );
    let op = lock_op(
        AGENT,
        2,
        Some(c1.digest()),
        lock_terms(2, PROVIDER, 5, t(600)),
    );
    let mut client = Aggregator::new(committee.clone(), op, vec![c0, c1.clone()], t(2), cfg());
    let lagging = first.first_mut().unwrap();
    // First contact carries the previous certificate only: the lagging validator is Behind.
    let first_round: Vec<_> = std::iter::from_fn(|| client.poll_transmit()).collect();
    let tx = first_round
        .into_iter()
        .find(|tx| tx.to == lagging.id())
        .unwrap();
    assert_eq!(tx.request.proofs, vec![c1]);
    let answer = vote(lagging, t(2), &tx.request).unwrap();
    assert!(matches!(
        answer,
        Answer::Refused(Refusal::Behind { next_seq: 0, .. })
    ));
    client.handle_answer(t(2), lagging.id(), answer).unwrap();
    // The aggregator sends it the chain from seq 0, and it votes.
    let tx = client.poll_transmit().unwrap();
    assert_eq!(tx.to, lagging.id());
    assert_eq!(tx.request.proofs.len(), 2);
    let answer = vote(lagging, t(2), &tx.request).unwrap();
    assert!(matches!(answer, Answer::Vote(_)));
    client.handle_answer(t(2), lagging.id(), answer).unwrap();
    assert_eq!(client.vote_count(), 1);
}

#[test]
fn behind_with_nothing_to_send_counts_as_a_refusal() {
    let committee = committee(1);
    let op = lock_op(
        AGENT,
        3,
        Some(crate::signed::Digest::of(b"x")),
        lock_terms(1, PROVIDER, 5, t(600)),
    );
    let mut client = Aggregator::new(committee, op, vec![], t(1), cfg());
    while client.poll_transmit().is_some() {}
    let behind = Answer::Refused(Refusal::Behind {
        account: id(AGENT),
        next_seq: 0,
    });
    client.handle_answer(t(1), id(1), behind).unwrap();
    assert!(client.poll_transmit().is_none());
}

fn unchecked(committee: &super::genesis::Committee, signers: &[u8]) -> UncheckedCertificate {
    let op = claim();
    let mut votes: Vec<VoteSig> = signers
        .iter()
        .map(|n| VoteSig {
            validator: id(*n),
            signature: *raw_vote(committee, *n, &op).signature(),
        })
        .collect();
    votes.sort_by_key(|v| v.validator);
    UncheckedCertificate { op, votes }
}

#[test]
fn certificate_checks() {
    let committee = committee(1);
    assert!(
        unchecked(&committee, &[1, 2, 3])
            .verify(&committee, &Ed25519)
            .is_ok()
    );
    assert_eq!(
        unchecked(&committee, &[1, 2]).verify(&committee, &Ed25519),
        Err(CertificateError::WrongCount {
            found: 2,
            quorum: 3
        })
    );
    assert_eq!(
        unchecked(&committee, &[1, 2, 3, 4]).verify(&committee, &Ed25519),
        Err(CertificateError::WrongCount {
            found: 4,
            quorum: 3
        })
    );
    assert_eq!(
        unchecked(&committee, &[1, 2, 99]).verify(&committee, &Ed25519),
        Err(CertificateError::NotMember(id(99)))
    );
    let mut twice = unchecked(&committee, &[1, 2, 3]);
    twice.votes[1] = twice.votes[0];
    assert_eq!(
        twice.verify(&committee, &Ed25519),
        Err(CertificateError::Unordered)
    );
    let mut reversed = unchecked(&committee, &[1, 2, 3]);
    reversed.votes.reverse();
    assert_eq!(
        reversed.verify(&committee, &Ed25519),
        Err(CertificateError::Unordered)
    );
    let mut forged = unchecked(&committee, &[1, 2, 3]);
    let victim = forged.votes[2].validator;
    forged.votes[2].signature = Signature([0; 64]);
    assert_eq!(
        forged.verify(&committee, &Ed25519),
        Err(CertificateError::BadSignature(victim))
    );
    // Votes of one committee are no certificate of another (with the same members).
    let mut g = genesis(1);
    g.epoch_secs += 1;
    let other = super::genesis::Committee::new(g).unwrap();
    assert!(matches!(
        unchecked(&committee, &[1, 2, 3]).verify(&other, &Ed25519),
        Err(CertificateError::BadSignature(_))
    ));
    // Any flipped byte of an encoded certificate is refused.
    let cert = unchecked(&committee, &[1, 2, 3])
        .verify(&committee, &Ed25519)
        .unwrap();
    let bytes = cert.encode().unwrap();
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        assert!(
            Certificate::decode(&b, &committee, &Ed25519).is_err(),
            "byte {i}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Certificate::decode(&longer, &committee, &Ed25519).is_err());
}

#[test]
fn a_request_to_a_withholding_minority_still_certifies() {
    let committee = committee(2);
    let mut validators = validators(&committee, 2);
    // Two of seven never answer: five answer, five is the quorum.
    validators.truncate(5);
    let mut client = Aggregator::new(committee.clone(), claim(), vec![], t(1), cfg());
    while let Some(tx) = client.poll_transmit() {
        if let Some(v) = validators.iter_mut().find(|v| v.id() == tx.to) {
            let answer = vote(v, t(1), &tx.request).unwrap();
            client.handle_answer(t(1), tx.to, answer).unwrap();
        }
    }
    assert!(matches!(client.poll_event(), Some(Event::Certified(_))));
}

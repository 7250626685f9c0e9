//! The validator: idempotent votes, persist-before-release, catch-up, restore, wire forms.

use crate::signed::{Digest, Ed25519};

use super::message::{Answer, Request};
use super::op::Slot;
use super::refusal::Refusal;
use super::test_support::*;
use super::validator::{Outcome, RestoreError, Validator, decode_records};
use super::vote::VoteRecord;

#[test]
fn votes_once_and_repeats_the_same_vote() {
    let mut fx = fixture();
    let op = lock_op(
        AGENT,
        1,
        Some(fx.credit.digest()),
        lock_terms(1, PROVIDER, 5, t(600)),
    );
    let request = Request {
        op: op.clone(),
        proofs: Vec::new(),
    };
    let Outcome::Persist(persist) = fx.v().handle_request(t(20), &request) else {
        panic!("no vote")
    };
    // Until the vote is stored and released, a retry is told to wait: nothing unstored leaves.
    assert!(matches!(
        fx.v().handle_request(t(21), &request),
        Outcome::Pending
    ));
    let stored = persist.to_bytes().unwrap();
    let vote = fx.v().release(persist);
    assert_eq!(vote.body().op, op.digest());
    assert_eq!(vote.body().genesis, fx.committee.digest());
    match fx.v().handle_request(t(22), &request) {
        Outcome::Vote(again) => assert_eq!(again, vote),
        other => panic!("expected the same vote, got {other:?}"),
    }
    let record = VoteRecord::decode(&stored, &Ed25519).unwrap();
    assert_eq!(record.vote, vote);
}

#[test]
fn conflict_another_op_in_a_voted_slot() {
    let mut fx = fixture();
    let prev = Some(fx.credit.digest());
    let a = lock_op(AGENT, 1, prev, lock_terms(1, PROVIDER, 5, t(600)));
    let b = lock_op(AGENT, 1, prev, lock_terms(2, PROVIDER, 5, t(600)));
    assert!(
        vote(
            fx.v(),
            t(20),
            &Request {
                op: a.clone(),
                proofs: vec![]
            }
        )
        .is_some()
    );
    assert_eq!(
        fx.refusal(t(20), b),
        Refusal::Conflict {
            slot: Slot::Seq {
                account: id(AGENT),
                seq: 1
            },
            voted: a.digest()
        }
    );
}

#[test]
fn stale_behind_and_broken_chain() {
    let mut fx = fixture();
    let head = fx.credit.digest();
    // seq 0 is certified already.
    assert_eq!(
        fx.refusal(t(20), credit_op(AGENT, 0, None, 5, 9)),
        Refusal::Stale {
            account: id(AGENT),
            seq: 0,
            next_seq: 1
        }
    );
    // seq 2 before seq 1.
    assert_eq!(
        fx.refusal(
            t(20),
            lock_op(AGENT, 2, Some(head), lock_terms(1, PROVIDER, 5, t(600)))
        ),
        Refusal::Behind {
            account: id(AGENT),
            next_seq: 1
        }
    );
    // seq 1 naming another prev.
    let wrong = Digest::of(b"elsewhere");
    assert_eq!(
        fx.refusal(
            t(20),
            lock_op(AGENT, 1, Some(wrong), lock_terms(1, PROVIDER, 5, t(600)))
        ),
        Refusal::BrokenChain {
            expected: Some(head),
            found: Some(wrong)
        }
    );
}

#[test]
fn behind_is_cured_by_the_previous_certificate() {
    let committee = committee(1);
    let mut validators = validators(&committee, 1);
    // Validators 1..=3 see the credit; validator 0 is left out of it.
    let credit = {
        let (_, rest) = validators.split_at_mut(1);
        certify_everywhere(
            &committee,
            rest,
            t(10),
            credit_op(AGENT, 0, None, 10, 1),
            vec![],
        )
    };
    let lock = lock_op(
        AGENT,
        1,
        Some(credit.digest()),
        lock_terms(1, PROVIDER, 5, t(600)),
    );
    let lagging = validators.first_mut().unwrap();
    let request = Request {
        op: lock.clone(),
        proofs: Vec::new(),
    };
    assert_eq!(
        vote(lagging, t(20), &request),
        Some(Answer::Refused(Refusal::Behind {
            account: id(AGENT),
            next_seq: 0
        }))
    );
    let request = Request {
        op: lock,
        proofs: vec![credit],
    };
    assert!(matches!(
        vote(lagging, t(20), &request),
        Some(Answer::Vote(_))
    ));
}

#[test]
fn pool_votes_of_past_epochs_are_forgotten() {
    let mut fx = fixture();
    assert!(
        vote(
            fx.v(),
            t(20),
            &Request {
                op: free_tier_op(AGENT, 0, 1),
                proofs: vec![]
            }
        )
        .is_some()
    );
    assert_eq!(fx.v().votes().count(), 1);
    let next = fx.v().poll_timeout(t(20)).unwrap();
    assert_eq!(next, t(EPOCH_SECS));
    fx.v().handle_timeout(t(20));
    assert_eq!(fx.v().votes().count(), 1);
    fx.v().handle_timeout(next);
    assert_eq!(fx.v().votes().count(), 0);
}

#[test]
fn restore_keeps_every_stored_vote() {
    let mut fx = fixture();
    let prev = Some(fx.credit.digest());
    let a = lock_op(AGENT, 1, prev, lock_terms(1, PROVIDER, 5, t(600)));
    let b = lock_op(AGENT, 1, prev, lock_terms(2, PROVIDER, 5, t(600)));
    let Outcome::Persist(p) = fx.v().handle_request(
        t(20),
        &Request {
            op: a.clone(),
            proofs: vec![],
        },
    ) else {
        panic!()
    };
    let stored = p.to_bytes().unwrap();
    let _ = fx.v().release(p);

    // After a crash: the store gives back the record and the credit certificate.
    let records = decode_records([stored.as_slice()], &Ed25519).unwrap();
    let mut back = Validator::restore(
        fx.committee.clone(),
        key(1),
        records.clone(),
        vec![fx.credit.clone()],
    )
    .unwrap();
    assert!(matches!(
        back.handle_request(
            t(21),
            &Request {
                op: b,
                proofs: vec![]
            }
        ),
        Outcome::Refused(Refusal::Conflict { .. })
    ));
    assert!(matches!(
        back.handle_request(
            t(21),
            &Request {
                op: a,
                proofs: vec![]
            }
        ),
        Outcome::Vote(_)
    ));

    // Someone else's records, or a key outside the committee, do not restore.
    assert!(matches!(
        Validator::restore(fx.committee.clone(), key(2), records, vec![]),
        Err(RestoreError::Foreign { .. })
    ));
    assert!(matches!(
        Validator::new(fx.committee.clone(), key(99)),
        Err(RestoreError::NotMember(_))
    ));
}

#[test]
fn restore_refuses_two_votes_in_one_slot() {
    let fx = fixture();
    let prev = Some(fx.credit.digest());
    let mut records = Vec::new();
    for n in [1, 2] {
        // Two fresh instances of the same validator, each voting once: a corrupt store.
        let mut v = Validator::new(fx.committee.clone(), key(1)).unwrap();
        v.handle_certificate(&fx.credit).unwrap();
        let op = lock_op(AGENT, 1, prev, lock_terms(n, PROVIDER, 5, t(600)));
        let Outcome::Persist(p) = v.handle_request(t(20), &Request { op, proofs: vec![] }) else {
            panic!()
        };
        records.push(p.record().clone());
    }
    assert!(matches!(
        Validator::restore(fx.committee.clone(), key(1), records, vec![]),
        Err(RestoreError::Equivocation(Slot::Seq { seq: 1, .. }))
    ));
}

#[test]
fn requests_and_answers_round_trip() {
    let mut fx = fixture();
    let op = lock_op(
        AGENT,
        1,
        Some(fx.credit.digest()),
        lock_terms(1, PROVIDER, 5, t(600)),
    );
    let request = Request {
        op,
        proofs: vec![fx.credit.clone()],
    };
    let bytes = request.encode().unwrap();
    let back = Request::decode(&bytes, &fx.committee, &Ed25519).unwrap();
    assert_eq!(back, request);
    let answer = vote(fx.v(), t(20), &back).unwrap();
    let bytes = answer.encode().unwrap();
    assert_eq!(Answer::decode(&bytes, &Ed25519).unwrap(), answer);
    let refusal = Answer::Refused(Refusal::ZeroAmount);
    assert_eq!(
        Answer::decode(&refusal.encode().unwrap(), &Ed25519).unwrap(),
        refusal
    );
    // A request whose certificate is of another committee does not decode.
    let other = committee(2);
    assert!(Request::decode(&request.encode().unwrap(), &other, &Ed25519).is_err());
}

#[test]
fn op_digest_is_the_sha256_of_its_encoding() {
    let fx = fixture();
    for op in [
        fx.credit.op().clone(),
        free_tier_op(AGENT, 0, 1),
        unlock_op(AGENT, 1, fx.credit.digest()),
        settle_op(
            PROVIDER,
            AGENT,
            1,
            fx.credit.digest(),
            receipt(PROVIDER, AGENT, 1, 5),
        ),
    ] {
        let bytes = crate::codec::encode(&op, super::op::MAX_OP_BYTES).unwrap();
        assert_eq!(op.digest(), Digest::of(&bytes), "{}", op.kind());
    }
}

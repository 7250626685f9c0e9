use ed25519_dalek::SigningKey;

use super::*;
use crate::committee::{
    Aggregator, AggregatorConfig, Event, FreeTier, FreeTierClaim, Genesis, LockRules, Op, Outcome,
    Refusal, Validator,
};
use crate::signed::{Ed25519, Signed, Signer};

const START: u64 = 1_800_000_000;

fn keys() -> Vec<SigningKey> {
    (1..=4).map(|n| SigningKey::from_bytes(&[n; 32])).collect()
}

fn committee() -> Committee {
    Committee::new(Genesis {
        f: 1,
        validators: keys().iter().map(Signer::id).collect(),
        issuers: Vec::new(),
        start_unix_secs: START,
        epoch_secs: 86_400,
        free_tier: FreeTier {
            allowance_micro: 10_000_000,
            cap_per_epoch: 16,
        },
        locks: LockRules::default(),
    })
    .unwrap()
}

fn free_tier_op(agent: &SigningKey, index: u32) -> Op {
    let claim = FreeTierClaim {
        account: agent.id(),
        epoch: 0,
        index,
    };
    Op::FreeTier(Signed::sign(claim, agent).unwrap())
}

/// A certificate of a free-tier claim, made by the four validators in memory.
fn certificate(committee: &Committee) -> Certificate {
    let now = Timestamp::from_unix_secs(START + 10);
    let agent = SigningKey::from_bytes(&[9; 32]);
    let mut validators: Vec<_> = keys()
        .into_iter()
        .map(|k| Validator::new(committee.clone(), k).unwrap())
        .collect();
    let mut client = Aggregator::new(
        committee.clone(),
        free_tier_op(&agent, 3),
        Vec::new(),
        now,
        AggregatorConfig::default(),
    );
    while let Some(t) = client.poll_transmit() {
        let v = validators.iter_mut().find(|v| v.id() == t.to).unwrap();
        if let Outcome::Persist(p) = v.handle_request(now, &t.request) {
            let vote = v.release(p);
            let _ = client.handle_answer(now, t.to, Answer::Vote(vote));
        }
    }
    match client.poll_event() {
        Some(Event::Certified(c)) => c,
        other => panic!("not certified: {other:?}"),
    }
}

#[test]
fn requests_round_trip() {
    let committee = committee();
    let cert = certificate(&committee);
    let agent = SigningKey::from_bytes(&[9; 32]);
    for request in [
        Request::Vote(VoteRequest {
            op: free_tier_op(&agent, 5),
            proofs: vec![cert.clone()],
        }),
        Request::Certified(cert.clone()),
        Request::Account(agent.id()),
    ] {
        let bytes = request.encode().unwrap();
        assert!(bytes.len() <= MAX_REQUEST_BYTES);
        assert_eq!(
            Request::decode(&bytes, &committee, &Ed25519).unwrap(),
            request
        );
    }
}

#[test]
fn responses_round_trip() {
    let committee = committee();
    let cert = certificate(&committee);
    let vote_key = &keys()[0];
    let vote = Signed::sign(
        crate::committee::Vote {
            genesis: committee.digest(),
            slot: cert.slot(),
            op: cert.digest(),
        },
        vote_key,
    )
    .unwrap();
    let view = AccountView {
        head: Some(cert.clone()),
        credited_micro: 1,
        granted_micro: 10_000_000,
        spent_micro: 2,
        approved_spent_micro: 7,
        locks: vec![
            LockView {
                seq: 1,
                lease: Digest::of(b"lease"),
                provider: keys()[1].id(),
                amount_micro: 5,
                expires_at: Timestamp::from_unix_secs(START + 100),
                op: Digest::of(b"op"),
                approved: false,
            },
            LockView {
                seq: 2,
                lease: Digest::of(b"lease 2"),
                provider: keys()[1].id(),
                amount_micro: 50_000_000,
                expires_at: Timestamp::from_unix_secs(START + 100),
                op: Digest::of(b"op 2"),
                approved: true,
            },
        ],
    };
    // The owner-approved lock holds the owner's approval, not the balance.
    assert_eq!(view.locked_micro(), 5);
    assert_eq!(view.available_micro(), 10_000_000 + 1 - 2 - 5);
    for response in [
        Response::Answer(Answer::Vote(vote)),
        Response::Answer(Answer::Refused(Refusal::FreeTierDisabled)),
        Response::Stored,
        Response::Account(view),
        Response::Refused("not a validator".into()),
    ] {
        let bytes = response.encode().unwrap();
        assert!(bytes.len() <= MAX_RESPONSE_BYTES);
        assert_eq!(
            Response::decode(&bytes, &committee, &Ed25519).unwrap(),
            response
        );
    }
}

#[test]
fn a_certificate_of_another_committee_is_refused() {
    let committee = committee();
    let cert = certificate(&committee);
    let mut other = committee.genesis().clone();
    other.epoch_secs += 1;
    let other = Committee::new(other).unwrap();
    let bytes = Request::Certified(cert).encode().unwrap();
    assert!(matches!(
        Request::decode(&bytes, &other, &Ed25519),
        Err(RpcError::Certificate(_))
    ));
}

#[test]
fn tampered_bytes_never_decode_to_something_else() {
    let committee = committee();
    let cert = certificate(&committee);
    let request = Request::Certified(cert);
    let bytes = request.encode().unwrap();
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        if let Ok(decoded) = Request::decode(&bad, &committee, &Ed25519) {
            assert_eq!(decoded, request, "byte {i} changed the meaning");
        }
    }
    assert!(Request::decode(&bytes[..bytes.len() - 1], &committee, &Ed25519).is_err());
}

#[test]
fn long_reasons_are_cut_on_encode_and_refused_on_decode() {
    let committee = committee();
    let bytes = Response::Refused("é".repeat(MAX_REASON_BYTES))
        .encode()
        .unwrap();
    let Response::Refused(reason) = Response::decode(&bytes, &committee, &Ed25519).unwrap() else {
        panic!()
    };
    assert!(reason.len() <= MAX_REASON_BYTES);
    let wire = codec::encode(
        &ResponseWire::Refused("x".repeat(MAX_REASON_BYTES + 1)),
        MAX_RESPONSE_BYTES,
    )
    .unwrap();
    assert_eq!(
        Response::decode(&wire, &committee, &Ed25519),
        Err(RpcError::TooLong("reason"))
    );
}

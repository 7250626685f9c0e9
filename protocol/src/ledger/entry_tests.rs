//! Entries, facts, ratings, acknowledgements and equivocation proofs: encoding and checks.

use proptest::prelude::*;

use super::entry::MAX_HEADER_BYTES;
use super::test_support::{
    AGENT, PROVIDER, entry, genesis, id, key, rating, sign_payload, sign_raw, t,
};
use super::*;
use crate::attestation::Revocation;
use crate::challenge::Challenge;
use crate::codec::{self, DecodeError, EncodeError};
use crate::lease::{Capability, LeaseGrant, UsageReceipt};
use crate::signed::{Digest, Ed25519, Signed, SignedError, VerifyError};
use crate::signup::{ProofOfWork, SignupRecord};
use crate::time::Timestamp;
use crate::workload::TerminationReason;

fn signup() -> Fact {
    let record = SignupRecord {
        agent: id(AGENT),
        challenge: Challenge {
            verifier: id(1),
            nonce: [7; 32],
            issued_at: t(0),
        },
        credential: None,
        pow: ProofOfWork::NONE,
        name: Some("agent".into()),
    };
    Fact::Signup(Signed::sign(record, &key(AGENT)).unwrap())
}

fn grant() -> Fact {
    let lease = Digest::of(b"lease");
    let token = Capability {
        lease,
        agent: id(AGENT),
        provider: id(PROVIDER),
        ports: vec![8080],
        expires_at: t(3600),
    };
    let grant = LeaseGrant {
        owner: None,
        lease,
        agent: id(AGENT),
        provider: id(PROVIDER),
        price_per_sec: 10,
        reserved_micro: 36_000,
        starts_at: t(0),
        expires_at: t(3600),
        tunnel_endpoints: vec!["127.0.0.1:7000".into()],
        token: Signed::sign(token, &key(PROVIDER)).unwrap(),
    };
    Fact::Lease(Signed::sign(grant, &key(PROVIDER)).unwrap())
}

fn receipt() -> Signed<UsageReceipt> {
    let receipt = UsageReceipt {
        lease: Digest::of(b"lease"),
        agent: id(AGENT),
        provider: id(PROVIDER),
        seq: 3,
        from: t(0),
        to: t(60),
        cpu_ms: 1200,
        memory_mib_secs: 600,
        egress_bytes: 4096,
        tunnel_in_bytes: 0,
        tunnel_out_bytes: 0,
        price_per_sec: 10,
        total_micro: 600,
        ended: Some(TerminationReason::Exited { code: 0 }),
    };
    Signed::sign(receipt, &key(PROVIDER)).unwrap()
}

fn ack(agent: u8, receipt: Digest) -> Signed<ReceiptAck> {
    let ack = ReceiptAck {
        agent: id(agent),
        receipt,
        acked_at: t(61),
        delegation: None,
    };
    Signed::sign(ack, &key(agent)).unwrap()
}

fn usage(acked: bool) -> Fact {
    let receipt = receipt();
    let ack = acked.then(|| ack(AGENT, receipt.digest()));
    Fact::Usage(Usage { receipt, ack })
}

fn revocation() -> Fact {
    let r = Revocation {
        issuer: id(30),
        subject: id(AGENT),
        attestation: Digest::of(b"attestation"),
        revoked_at: t(5),
        reason: "key compromised".into(),
    };
    Fact::Revocation(Signed::sign(r, &key(30)).unwrap())
}

fn proof() -> Fact {
    let a = genesis(3, t(1));
    let b = entry(3, 0, None, &[], t(2), rating(9));
    Fact::Equivocation(Equivocation::new(&a, &b).unwrap())
}

fn decode(wire: &[u8]) -> Result<Signed<Entry>, SignedError> {
    Signed::<Entry>::decode(wire, &Ed25519)
}

fn invalid_field(result: Result<Signed<Entry>, SignedError>) -> &'static str {
    match result {
        Err(SignedError::Decode(DecodeError::InvalidField { field, .. })) => field,
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

#[test]
fn every_fact_round_trips() {
    let facts = [
        signup(),
        grant(),
        usage(false),
        usage(true),
        rating(1),
        revocation(),
        proof(),
    ];
    let first = genesis(1, t(0));
    for (i, fact) in facts.into_iter().enumerate() {
        let kind = fact.kind();
        let e = entry(1, 1, Some(&first), &[], t(10 + i as u64), fact);
        let back = decode(e.as_bytes()).unwrap();
        assert_eq!(back.body(), e.body(), "{kind}");
        assert_eq!(back.digest(), e.digest());
    }
}

#[test]
fn sizes_are_consistent() {
    // A header at its largest: the biggest seq and time, a prev and MAX_PARENTS parents.
    let parents: Vec<Digest> = (0..MAX_PARENTS as u8).map(|i| Digest([i; 32])).collect();
    let with_fact = |fact: Fact| Entry {
        author: id(1),
        seq: u64::MAX,
        prev: Some(Digest([0xff; 32])),
        parents: parents.clone(),
        at: Timestamp::MAX,
        fact,
    };
    let fact = rating(7);
    let fact_len = codec::encode(&fact, usize::MAX).unwrap().len();
    let whole = codec::encode(&with_fact(fact), usize::MAX).unwrap().len();
    assert_eq!(whole - fact_len, MAX_HEADER_BYTES);
    // The rest is checked at compile time in `entry.rs`.
}

#[test]
fn chain_fields_must_agree() {
    let first = genesis(1, t(0));
    let body = |seq, prev: Option<Digest>, parents: Vec<Digest>| Entry {
        author: id(1),
        seq,
        prev,
        parents,
        at: t(1),
        fact: rating(2),
    };
    let k = key(1);
    // Sign refuses, and hand-signed bytes do not decode.
    let cases = [
        ("prev", body(0, Some(first.digest()), vec![])),
        ("prev", body(1, None, vec![])),
        (
            "parents",
            body(
                1,
                Some(first.digest()),
                vec![Digest([2; 32]), Digest([1; 32])],
            ),
        ),
        (
            "parents",
            body(
                1,
                Some(first.digest()),
                vec![Digest([1; 32]), Digest([1; 32])],
            ),
        ),
        (
            "parents",
            body(1, Some(first.digest()), vec![first.digest()]),
        ),
        (
            "parents",
            body(
                1,
                Some(first.digest()),
                (0..=MAX_PARENTS as u8).map(|i| Digest([i; 32])).collect(),
            ),
        ),
    ];
    for (field, bad) in cases {
        assert!(matches!(
            Signed::sign(bad.clone(), &k),
            Err(EncodeError::InvalidField { field: f, .. }) if f == field
        ));
        assert_eq!(invalid_field(decode(&sign_raw(&k, &bad))), field, "{bad:?}");
    }
}

#[test]
fn entries_are_signed_by_their_author() {
    let mut body = genesis(1, t(0)).body().clone();
    body.author = id(2);
    let wire = sign_raw(&key(1), &body);
    assert!(matches!(
        decode(&wire),
        Err(SignedError::Verify(VerifyError::WrongSigner { .. }))
    ));
    assert!(Signed::sign(body, &key(1)).is_err());
}

#[test]
fn an_ack_must_match_its_receipt() {
    let receipt = receipt();
    let first = genesis(1, t(0));
    let cases = [
        ack(AGENT + 5, receipt.digest()),
        ack(AGENT, Digest::of(b"another receipt")),
    ];
    for bad in cases {
        let body = Entry {
            author: id(1),
            seq: 1,
            prev: Some(first.digest()),
            parents: vec![],
            at: t(1),
            fact: Fact::Usage(Usage {
                receipt: receipt.clone(),
                ack: Some(bad),
            }),
        };
        assert_eq!(
            invalid_field(decode(&sign_raw(&key(1), &body))),
            "usage.ack"
        );
    }
}

#[test]
fn ratings_are_bounded_and_not_self_rated() {
    let good = Rating {
        rater: id(AGENT),
        provider: id(PROVIDER),
        lease: Digest::of(b"lease"),
        score: MAX_SCORE,
        rated_at: t(0),
    };
    assert!(Signed::sign(good.clone(), &key(AGENT)).is_ok());
    let high = Rating {
        score: MAX_SCORE + 1,
        ..good.clone()
    };
    assert!(matches!(
        Signed::sign(high, &key(AGENT)),
        Err(EncodeError::InvalidField { field: "score", .. })
    ));
    let own = Rating {
        provider: id(AGENT),
        ..good.clone()
    };
    assert!(matches!(
        Signed::sign(own, &key(AGENT)),
        Err(EncodeError::InvalidField {
            field: "provider",
            ..
        })
    ));
    // Only the rater signs a rating.
    assert!(Signed::sign(good, &key(PROVIDER)).is_err());
}

#[test]
fn equivocation_proofs_are_checked() {
    let a = genesis(3, t(1));
    let b = entry(3, 0, None, &[], t(2), rating(9));
    let proof = Equivocation::new(&b, &a).unwrap();
    assert_eq!(proof.author(), id(3));
    assert_eq!(proof.seq(), 0);
    let (lo, hi) = proof.digests();
    assert!(lo < hi);
    assert_eq!(
        Equivocation::new(&a, &b).unwrap(),
        proof,
        "order-independent"
    );
    let (first, second) = proof.entries();
    assert_eq!(
        Equivocation::from_wire(first, second, &Ed25519).unwrap(),
        proof
    );
    assert_eq!(
        Equivocation::from_wire(second, first, &Ed25519),
        Err(EquivocationError::Unordered)
    );
    assert_eq!(Equivocation::new(&a, &a), Err(EquivocationError::SameEntry));
    let other = genesis(4, t(1));
    assert!(matches!(
        Equivocation::new(&a, &other),
        Err(EquivocationError::DifferentAuthors { .. })
    ));
    let next = entry(3, 1, Some(&a), &[], t(3), rating(1));
    assert!(matches!(
        Equivocation::new(&a, &next),
        Err(EquivocationError::DifferentSeqs {
            first: 0,
            second: 1
        } | EquivocationError::DifferentSeqs {
            first: 1,
            second: 0
        })
    ));
    let mut forged = second.to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let (f, s) = if Digest::of(first) < Digest::of(&forged) {
        (first.to_vec(), forged)
    } else {
        (forged, first.to_vec())
    };
    assert!(matches!(
        Equivocation::from_wire(&f, &s, &Ed25519),
        Err(EquivocationError::NotAnEntry(SignedError::Verify(_)))
    ));
    // Within an entry the author signed, a forged proof makes the entry undecodable.
    let first_entry = genesis(1, t(0));
    let good = entry(
        1,
        1,
        Some(&first_entry),
        &[],
        t(5),
        Fact::Equivocation(proof),
    );
    let mut payload = codec::encode(good.body(), MAX_ENTRY_PAYLOAD_BYTES).unwrap();
    // The payload ends with the proof's second entry, whose last byte is in its signature.
    *payload.last_mut().unwrap() ^= 1;
    assert!(matches!(
        decode(&sign_payload(&key(1), &payload)),
        Err(SignedError::Decode(DecodeError::Malformed(_)))
    ));
}

#[test]
fn a_proof_may_carry_proof_entries_up_to_the_bound() {
    // An entry carrying a proof can itself equivocate; its proof nests one level.
    let inner = proof();
    let a = entry(5, 0, None, &[], t(1), inner.clone());
    let b = entry(5, 0, None, &[], t(2), inner);
    let outer = Equivocation::new(&a, &b).unwrap();
    let carrier = entry(6, 0, None, &[], t(3), Fact::Equivocation(outer.clone()));
    let back = decode(carrier.as_bytes()).unwrap();
    assert_eq!(back.body().fact, Fact::Equivocation(outer));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_flipped_bit_is_rejected(n in 0u64..1000, bit in 0usize..100_000) {
        let first = genesis(1, t(0));
        let e = entry(1, 1, Some(&first), &[], t(n), rating(n));
        let mut wire = e.as_bytes().to_vec();
        let bit = bit % (wire.len() * 8);
        wire[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(decode(&wire).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode(&bytes);
    }
}

fn usage_acked_at(agent_secs: Option<u64>) -> Usage {
    let receipt = receipt();
    let ack = agent_secs.map(|secs| {
        let ack = ReceiptAck {
            agent: id(AGENT),
            receipt: receipt.digest(),
            acked_at: t(secs),
            delegation: None,
        };
        Signed::sign(ack, &key(AGENT)).unwrap()
    });
    Usage { receipt, ack }
}

#[test]
fn an_acknowledged_usage_fact_prevails_over_the_providers_word() {
    let bare = usage_acked_at(None);
    let acked = usage_acked_at(Some(61));
    assert!(acked.prevails_over(&bare));
    assert!(!bare.prevails_over(&acked));
    assert!(!bare.prevails_over(&bare) && !acked.prevails_over(&acked));
    assert_eq!(Usage::prevailing([&bare, &acked]), Some(&acked));
    assert_eq!(Usage::prevailing([&acked, &bare]), Some(&acked));
    assert_eq!(Usage::prevailing([&bare]), Some(&bare));
    assert_eq!(Usage::prevailing(std::iter::empty()), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever order the facts about one receipt arrive in (with or without
    /// acknowledgements, repeated), the same one prevails, and it is acknowledged exactly
    /// when one of them is.
    #[test]
    fn the_prevailing_usage_fact_is_order_independent(
        acks in proptest::collection::vec(proptest::option::of(61u64..70), 1..8),
        seed in any::<u64>(),
    ) {
        let facts: Vec<Usage> = acks.iter().map(|a| usage_acked_at(*a)).collect();
        let mut shuffled: Vec<&Usage> = facts.iter().collect();
        // A deterministic shuffle from the seed.
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let j = usize::try_from(s >> 33).unwrap() % (i + 1);
            shuffled.swap(i, j);
        }
        let a = Usage::prevailing(facts.iter()).unwrap();
        let b = Usage::prevailing(shuffled.iter().copied()).unwrap();
        prop_assert_eq!(a, b);
        prop_assert_eq!(a.ack.is_some(), acks.iter().any(Option::is_some));
        for f in &facts {
            prop_assert!(!f.prevails_over(a));
        }
    }
}

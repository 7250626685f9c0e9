//! The evidence log: each rejection, pending and release, heads, append, equivocation,
//! state hash, pages.

use core::time::Duration;

use super::test_support::{entry, genesis, id, key, log, rating, sign_raw, t};
use super::*;
use crate::codec::DecodeError;
use crate::signed::{Digest, Ed25519, Signed, SignedError};

fn inserted(outcome: Outcome) -> Accepted {
    match outcome {
        Outcome::Inserted(a) => a,
        other => panic!("expected Inserted, got {other:?}"),
    }
}

fn rejected(outcome: Outcome) -> Rejected {
    match outcome {
        Outcome::Rejected(r) => r,
        other => panic!("expected Rejected, got {other:?}"),
    }
}

fn pending(outcome: Outcome) -> Vec<Digest> {
    match outcome {
        Outcome::Pending { missing } => missing,
        other => panic!("expected Pending, got {other:?}"),
    }
}

#[test]
fn inserts_then_recognises_duplicates() {
    let mut l = log();
    let a = genesis(1, t(0));
    let acc = inserted(l.insert_bytes(t(0), a.as_bytes(), &Ed25519));
    assert_eq!(acc.digest, a.digest());
    assert!(acc.released.is_empty() && acc.equivocators.is_empty());
    assert_eq!(
        l.insert_bytes(t(0), a.as_bytes(), &Ed25519),
        Outcome::Duplicate
    );
    assert_eq!(l.insert(t(0), a.clone()), Outcome::Duplicate);
    assert_eq!(l.len(), 1);
    assert_eq!(l.bytes(), a.as_bytes().len());
    assert_eq!(l.get(&a.digest()), Some(&a));
    assert_eq!(l.heads().copied().collect::<Vec<_>>(), vec![a.digest()]);
}

#[test]
fn malformed_and_badly_signed_entries_are_faults() {
    let mut l = log();
    let a = genesis(1, t(0));
    let mut bad_sig = a.as_bytes().to_vec();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 1;
    let truncated = &a.as_bytes()[..a.as_bytes().len() - 1];
    let mut oversize = a.as_bytes().to_vec();
    oversize.resize(Signed::<Entry>::MAX_WIRE_BYTES + 1, 0);
    for (what, bytes) in [
        ("signature", bad_sig.as_slice()),
        ("truncated", truncated),
        ("oversize", oversize.as_slice()),
        ("empty", &[][..]),
    ] {
        let r = rejected(l.insert_bytes(t(0), bytes, &Ed25519));
        assert!(matches!(r, Rejected::Invalid(_)), "{what}: {r:?}");
        assert!(r.is_fault(), "{what}");
    }
    assert!(matches!(
        rejected(l.insert_bytes(t(0), &oversize, &Ed25519)),
        Rejected::Invalid(SignedError::Decode(DecodeError::TooLong { .. }))
    ));
    assert!(l.is_empty() && l.pending_len() == 0);
}

#[test]
fn prev_must_be_the_authors_entry_just_before() {
    let mut l = log();
    let a0 = genesis(1, t(0));
    let b0 = genesis(2, t(0));
    l.insert(t(0), a0.clone());
    l.insert(t(0), b0.clone());
    // Node 2's seq 1 naming node 1's entry as its prev.
    let stolen = entry(2, 1, Some(&a0), &[], t(1), rating(5));
    let r = rejected(l.insert(t(1), stolen));
    assert_eq!(r, Rejected::PrevAuthor { prev: a0.digest() });
    assert!(r.is_fault());
    // A gap: seq 2 naming seq 0.
    let gap = entry(1, 2, Some(&a0), &[], t(1), rating(5));
    assert_eq!(
        rejected(l.insert(t(1), gap)),
        Rejected::PrevSeq {
            prev: a0.digest(),
            expected: 1,
            found: 0
        }
    );
}

#[test]
fn parents_are_other_authors_and_not_later() {
    let mut l = log();
    let a0 = genesis(1, t(0));
    let a1 = entry(1, 1, Some(&a0), &[], t(1), rating(1));
    let b0 = genesis(2, t(50));
    for e in [&a0, &a1, &b0] {
        inserted(l.insert(t(50), e.clone()));
    }
    let own = entry(1, 2, Some(&a1), &[&a0], t(2), rating(2));
    assert_eq!(
        rejected(l.insert(t(2), own)),
        Rejected::OwnParent {
            parent: a0.digest()
        }
    );
    let early = entry(1, 2, Some(&a1), &[&b0], t(10), rating(2));
    assert_eq!(
        rejected(l.insert(t(10), early)),
        Rejected::BeforeLink {
            at: t(10),
            link: b0.digest(),
            link_at: t(50)
        }
    );
    let backdated = entry(1, 2, Some(&a1), &[], t(0), rating(2));
    assert!(matches!(
        rejected(l.insert(t(10), backdated)),
        Rejected::BeforeLink { .. }
    ));
    let fine = entry(1, 2, Some(&a1), &[&b0], t(50), rating(2));
    inserted(l.insert(t(50), fine));
}

#[test]
fn pending_entries_wait_and_are_released_in_any_order() {
    let a0 = genesis(1, t(0));
    let b0 = genesis(2, t(0));
    let a1 = entry(1, 1, Some(&a0), &[&b0], t(1), rating(1));
    let b1 = entry(2, 1, Some(&b0), &[&a1], t(2), rating(2));
    let a2 = entry(1, 2, Some(&a1), &[&b1], t(3), rating(3));

    let mut l = log();
    let mut expect = vec![a1.digest(), b1.digest()];
    expect.sort();
    assert_eq!(pending(l.insert(t(0), a2.clone())), expect);
    // b1 waits for b0 and a1, neither held; b1 itself is no longer missing.
    let mut expect = vec![a1.digest(), b0.digest()];
    expect.sort();
    assert_eq!(pending(l.insert(t(0), b1.clone())), expect);
    assert!(l.is_pending(&a2.digest()) && l.is_pending(&b1.digest()));
    assert_eq!(l.missing(10), expect);
    pending(l.insert(t(0), a1.clone()));
    assert_eq!(l.pending_len(), 3);
    inserted(l.insert(t(0), a0.clone()));
    let acc = inserted(l.insert(t(0), b0.clone()));
    assert_eq!(acc.released, vec![a1.digest(), b1.digest(), a2.digest()]);
    assert_eq!(l.len(), 5);
    assert_eq!(l.pending_len(), 0);
    assert_eq!(l.pending_bytes(), 0);
    assert!(l.missing(10).is_empty());
    assert_eq!(l.heads().copied().collect::<Vec<_>>(), vec![a2.digest()]);
    // The canonical order is topological.
    let order: Vec<Digest> = l.iter().map(Signed::digest).collect();
    let pos = |d: Digest| order.iter().position(|x| *x == d).unwrap();
    assert!(pos(a0.digest()) < pos(a1.digest()));
    assert!(pos(b0.digest()) < pos(a1.digest()));
    assert!(pos(a1.digest()) < pos(b1.digest()));
    assert!(pos(b1.digest()) < pos(a2.digest()));
}

#[test]
fn a_pending_entry_found_invalid_is_dropped_with_its_waiters() {
    let a0 = genesis(1, t(0));
    let b0 = genesis(2, t(0));
    // Node 2 names node 1's genesis as its prev: invalid once a0 is known.
    let bad = entry(2, 1, Some(&a0), &[], t(1), rating(1));
    let child = entry(3, 0, None, &[&bad], t(2), rating(2));
    let mut l = log();
    inserted(l.insert(t(0), b0));
    pending(l.insert(t(0), bad.clone()));
    pending(l.insert(t(0), child.clone()));
    let acc = inserted(l.insert(t(0), a0.clone()));
    assert_eq!(
        acc.dropped,
        vec![
            (bad.digest(), Rejected::PrevAuthor { prev: a0.digest() }),
            (
                child.digest(),
                Rejected::LinkRejected { link: bad.digest() }
            ),
        ]
    );
    assert_eq!(l.pending_len(), 0);
    assert!(l.missing(10).is_empty());
}

#[test]
fn entries_waiting_for_an_invalid_entry_are_dropped_with_it() {
    let a0 = genesis(1, t(0));
    let mut body = a0.body().clone();
    body.seq = 1; // seq 1 without a prev: does not decode
    let bad = sign_raw(&key(1), &body);
    let bad_digest = Digest::of(&bad);
    let child = Signed::sign(
        Entry {
            author: id(2),
            seq: 0,
            prev: None,
            parents: vec![bad_digest],
            at: t(1),
            fact: rating(1),
        },
        &key(2),
    )
    .unwrap();
    let mut l = log();
    assert_eq!(pending(l.insert(t(0), child.clone())), vec![bad_digest]);
    assert!(rejected(l.insert_bytes(t(0), &bad, &Ed25519)).is_fault());
    assert!(!l.is_pending(&child.digest()));
    assert!(l.missing(10).is_empty());
}

#[test]
fn bounds_are_not_faults() {
    let config = Config {
        max_entries: 2,
        max_pending: 1,
        ..Config::default()
    };
    let mut l = EvidenceLog::new(config).unwrap();
    let a0 = genesis(1, t(0));
    let a1 = entry(1, 1, Some(&a0), &[], t(1), rating(1));
    let a2 = entry(1, 2, Some(&a1), &[], t(2), rating(2));
    let a3 = entry(1, 3, Some(&a2), &[], t(3), rating(3));
    pending(l.insert(t(0), a2.clone()));
    let r = rejected(l.insert(t(0), a3.clone()));
    assert_eq!(r, Rejected::PendingFull);
    assert!(!r.is_fault());
    inserted(l.insert(t(0), a0.clone()));
    // a1 is accepted; it releases a2, which no longer fits.
    let acc = inserted(l.insert(t(0), a1.clone()));
    assert_eq!(
        acc.dropped,
        vec![(
            a2.digest(),
            Rejected::Full {
                entries: 2,
                bytes: l.bytes()
            }
        )]
    );
    assert!(!acc.dropped[0].1.is_fault());
    let r = rejected(l.insert(t(0), genesis(2, t(0))));
    assert!(matches!(r, Rejected::Full { entries: 2, .. }) && !r.is_fault());
    assert!(matches!(
        l.append(t(5), &key(1), rating(9)),
        Err(AppendError::Rejected(Rejected::Full { .. }))
    ));
}

#[test]
fn one_author_cannot_fill_the_pending_set() {
    let config = Config {
        max_pending_per_author: 1,
        ..Config::default()
    };
    let mut l = EvidenceLog::new(config).unwrap();
    let a0 = genesis(1, t(0));
    let a1 = entry(1, 1, Some(&a0), &[], t(1), rating(1));
    let a2 = entry(1, 2, Some(&a1), &[], t(2), rating(2));
    let b0 = genesis(2, t(0));
    let b1 = entry(2, 1, Some(&b0), &[], t(1), rating(1));
    pending(l.insert(t(0), a1));
    assert_eq!(rejected(l.insert(t(0), a2)), Rejected::PendingFull);
    pending(l.insert(t(0), b1));
}

#[test]
fn pending_entries_expire() {
    let mut l = log();
    let a0 = genesis(1, t(0));
    let a1 = entry(1, 1, Some(&a0), &[], t(1), rating(1));
    let a2 = entry(1, 2, Some(&a1), &[], t(2), rating(2));
    pending(l.insert(t(0), a1.clone()));
    pending(l.insert(t(500), a2.clone()));
    let ttl = l.config().pending_ttl;
    assert!(l.expire(t(0).saturating_add(ttl)).is_empty());
    assert_eq!(l.expire(t(1).saturating_add(ttl)), vec![a1.digest()]);
    // a2 still waits, for a1, which is now missing again.
    assert_eq!(l.missing(10), vec![a1.digest()]);
    inserted(l.insert(t(600), a0));
    let acc = inserted(l.insert(t(600), a1));
    assert_eq!(acc.released, vec![a2.digest()]);
}

#[test]
fn append_links_to_its_chain_and_the_latest_heads() {
    let mut l = log();
    let b0 = genesis(2, t(10));
    let c0 = genesis(3, t(20));
    inserted(l.insert(t(0), b0.clone()));
    inserted(l.insert(t(0), c0.clone()));
    let e0 = l.append(t(15), &key(1), rating(1)).unwrap();
    let body = e0.body();
    assert_eq!((body.seq, body.prev), (0, None));
    let mut expect = vec![b0.digest(), c0.digest()];
    expect.sort();
    assert_eq!(body.parents, expect);
    assert_eq!(body.at, t(20), "never dated before what it names");
    assert_eq!(l.heads().copied().collect::<Vec<_>>(), vec![e0.digest()]);
    // The clock goes back: the next entry keeps the chain's time.
    let e1 = l.append(t(5), &key(1), rating(2)).unwrap();
    assert_eq!((e1.body().seq, e1.body().prev), (1, Some(e0.digest())));
    assert!(e1.body().parents.is_empty());
    assert_eq!(e1.body().at, t(20));
    assert_eq!(l.tip(&id(1)), Some(&e1));
    assert_eq!(l.by_author(id(1)).count(), 2);
    // Another replica accepts both.
    let mut other = log();
    for e in [&b0, &c0, &e0, &e1] {
        inserted(other.insert_bytes(t(30), e.as_bytes(), &Ed25519));
    }
    assert_eq!(other.state_hash(), l.state_hash());
}

#[test]
fn append_names_at_most_max_parents_and_skips_far_future_heads() {
    let mut l = log();
    let mut heads = Vec::new();
    for n in 2..(2 + MAX_PARENTS as u8 + 2) {
        let e = genesis(n, t(u64::from(n)));
        inserted(l.insert(t(0), e.clone()));
        heads.push(e);
    }
    let future = genesis(
        30,
        t(100).saturating_add(MAX_PARENT_SKEW + Duration::from_secs(1)),
    );
    inserted(l.insert(t(0), future.clone()));
    let e = l.append(t(100), &key(1), rating(1)).unwrap();
    assert_eq!(e.body().parents.len(), MAX_PARENTS);
    assert!(!e.body().parents.contains(&future.digest()));
    // The latest ones: the two oldest heads are left for later entries to merge.
    assert!(!e.body().parents.contains(&heads[0].digest()));
    assert!(!e.body().parents.contains(&heads[1].digest()));
    assert_eq!(e.body().at, t(100));
}

#[test]
fn a_fork_marks_its_author_and_keeps_both_entries() {
    let a0 = genesis(1, t(0));
    let fork_x = entry(1, 1, Some(&a0), &[], t(1), rating(1));
    let fork_y = entry(1, 1, Some(&a0), &[], t(2), rating(2));
    let mut l = log();
    inserted(l.insert(t(0), a0.clone()));
    let acc = inserted(l.insert(t(2), fork_x.clone()));
    assert!(acc.equivocators.is_empty());
    let acc = inserted(l.insert_bytes(t(2), fork_y.as_bytes(), &Ed25519));
    assert_eq!(acc.equivocators, vec![id(1)]);
    let proof = Equivocation::new(&fork_x, &fork_y).unwrap();
    assert_eq!(acc.proofs, vec![proof.clone()]);
    assert!(l.is_equivocator(&id(1)));
    assert_eq!(l.equivocation(&id(1)), Some(&proof));
    assert!(l.contains(&fork_x.digest()) && l.contains(&fork_y.digest()));
    assert_eq!(l.heads().count(), 2);
    // Its heads are no longer named by our own entries.
    let mine = l.append(t(3), &key(2), rating(3)).unwrap();
    assert!(mine.body().parents.is_empty());

    // A node that only ever sees one fork learns of it from the proof fact.
    let report = l
        .append(t(4), &key(2), Fact::Equivocation(proof.clone()))
        .unwrap();
    let mut far = log();
    for e in [&a0, &fork_x, &mine] {
        inserted(far.insert(t(5), e.clone()));
    }
    let acc = inserted(far.insert_bytes(t(5), report.as_bytes(), &Ed25519));
    assert_eq!(acc.equivocators, vec![id(1)]);
    assert!(acc.proofs.is_empty(), "the proof is already logged");
    assert_eq!(far.equivocation(&id(1)), Some(&proof));
    // When it later gets the other fork, nothing new is reported.
    let acc = inserted(far.insert(t(6), fork_y));
    assert!(acc.equivocators.is_empty() && acc.proofs.is_empty());
}

#[test]
fn the_state_hash_depends_on_the_set_only() {
    let a0 = genesis(1, t(0));
    let b0 = genesis(2, t(0));
    let a1 = entry(1, 1, Some(&a0), &[&b0], t(1), rating(1));
    let mut x = log();
    let mut y = log();
    let empty = x.state_hash();
    assert_eq!(empty, log().state_hash());
    for e in [&a0, &b0, &a1] {
        x.insert(t(0), e.clone());
    }
    for e in [&a1, &b0, &a0, &b0] {
        y.insert(t(0), e.clone());
    }
    assert_eq!(x.state_hash(), y.state_hash());
    assert_ne!(x.state_hash(), empty);
    let mut z = log();
    z.insert(t(0), a0);
    z.insert(t(0), b0);
    assert_ne!(z.state_hash(), x.state_hash());
}

#[test]
fn pages_and_fetches_catch_a_replica_up() {
    let mut source = log();
    for i in 0..40u64 {
        let node = 1 + (i % 4) as u8;
        source.append(t(i), &key(node), rating(i)).unwrap();
    }
    let mut replica = log();
    // The first ten entries (in canonical, topological order) already arrived.
    for e in source.iter().take(10) {
        inserted(replica.insert(t(100), e.clone()));
    }
    let mut pages = 0;
    let mut cursor = None;
    let have = replica.frontier();
    loop {
        let page = source.page(&have, cursor, 7);
        assert!(page.entries.len() <= 7);
        pages += 1;
        for e in page.entries {
            assert!(!have.covers(e.body()));
            match replica.insert_bytes(t(100), e.as_bytes(), &Ed25519) {
                Outcome::Inserted(_) => {}
                other => panic!("page order is topological, got {other:?}"),
            }
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(replica.len(), 40);
    assert!(pages > 30 / 7);
    assert_eq!(replica.state_hash(), source.state_hash());
    assert_eq!(replica.frontier(), source.frontier());
    assert!(
        source
            .page(&replica.frontier(), None, 10)
            .entries
            .is_empty()
    );

    // Fetch by digest: parents first, unknown digests skipped.
    let heads: Vec<Digest> = source.heads().copied().collect();
    let mut want = heads.clone();
    want.push(Digest::of(b"unknown"));
    let got = source.fetch(&want);
    assert_eq!(got.len(), heads.len());
}

#[test]
fn configs_that_cannot_hold_an_entry_are_refused() {
    assert!(Config::default().validate().is_ok());
    let zero = Config {
        max_pending: 0,
        ..Config::default()
    };
    assert_eq!(
        zero.validate(),
        Err(ConfigError::Zero {
            field: "max_pending"
        })
    );
    let small = Config {
        max_bytes: 1000,
        ..Config::default()
    };
    assert!(matches!(
        EvidenceLog::new(small),
        Err(ConfigError::BelowOneEntry {
            field: "max_bytes",
            ..
        })
    ));
}

//! Offer book tests: sequence rules, withdrawals, expiry, eviction, queries, and properties.

use proptest::prelude::*;

use super::*;
use crate::offer::tests::{key, offer, signed, withdrawal};
use crate::seq_book::tests::{Event, check_converges, events};
use crate::signed::Signer as _;

fn at(s: u64) -> Timestamp {
    Timestamp::from_unix_secs(s)
}

fn book() -> OfferBook {
    OfferBook::new(OfferBookConfig::default())
}

#[test]
fn latest_sequence_wins() {
    let mut b = book();
    assert_eq!(b.insert(signed(1, 5, 100), at(100)), Ok(Inserted::New));
    assert_eq!(
        b.insert(signed(1, 5, 100), at(101)),
        Err(OfferRejected::Duplicate { seq: 5 })
    );
    assert_eq!(
        b.insert(signed(1, 4, 100), at(101)),
        Err(OfferRejected::Stale { have: 5, got: 4 })
    );
    assert_eq!(
        b.insert(signed(1, 6, 110), at(110)),
        Ok(Inserted::Replaced { previous_seq: 5 })
    );
    assert_eq!(b.get(&key(1).id(), at(110)).unwrap().body().seq, 6);
    assert_eq!(b.len(), 1);
}

#[test]
fn provider_keys_order_as_ids() {
    let ids: Vec<AgoraId> = (1..=60).map(|n| key(n).id()).collect();
    for a in &ids {
        for b in &ids {
            assert_eq!(ProviderKey::of(a).cmp(&ProviderKey::of(b)), a.cmp(b));
        }
    }
}

#[test]
fn iter_after_resumes_after_a_provider() {
    let mut b = book();
    for n in [3, 1, 2, 5] {
        b.insert(signed(n, 1, 100), at(100)).unwrap();
    }
    let all: Vec<AgoraId> = b.iter().map(|o| o.body().provider).collect();
    let from = |after| -> Vec<AgoraId> { b.iter_after(after).map(|o| o.body().provider).collect() };
    assert_eq!(from(None), all);
    for (i, id) in all.iter().enumerate() {
        assert_eq!(from(Some(*id)), all[i + 1..].to_vec());
    }
    // A cursor naming a provider the book does not hold resumes after its place.
    let absent = key(4).id();
    let expected: Vec<AgoraId> = all.iter().copied().filter(|id| *id > absent).collect();
    assert_eq!(from(Some(absent)), expected);
}

#[test]
fn expired_and_future_offers() {
    let mut b = book();
    // offer() lives 300 s.
    assert!(matches!(
        b.insert(signed(1, 1, 100), at(400)),
        Err(OfferRejected::Expired { .. })
    ));
    assert!(matches!(
        b.insert(signed(1, 1, 1000), at(900)),
        Err(OfferRejected::FromFuture { .. })
    ));
    // Within the 30 s skew it is fine.
    assert!(b.insert(signed(1, 1, 1000), at(975)).is_ok());
    assert!(b.get(&key(1).id(), at(1299)).is_some());
    assert!(b.get(&key(1).id(), at(1300)).is_none());
    assert!(
        b.query(&OfferFilter::default(), OfferSort::Price, 10, at(1300))
            .is_empty()
    );
    assert_eq!(b.expire(at(1300)), vec![key(1).id()]);
    assert!(b.is_empty());
}

#[test]
fn withdrawal_removes_and_blocks_older_offers() {
    let mut b = book();
    b.insert(signed(1, 3, 100), at(100)).unwrap();
    // A withdrawal older than the offer does not remove it.
    assert_eq!(
        b.withdraw(&withdrawal(1, 2, 100), at(100)),
        Err(OfferRejected::Stale { have: 3, got: 2 })
    );
    assert_eq!(b.withdraw(&withdrawal(1, 4, 101), at(101)), Ok(true));
    assert!(b.is_empty());
    // An offer still in flight from before the withdrawal cannot resurrect it.
    assert_eq!(
        b.insert(signed(1, 3, 100), at(102)),
        Err(OfferRejected::Stale { have: 4, got: 3 })
    );
    // A newer offer can (the provider came back).
    assert_eq!(b.insert(signed(1, 5, 103), at(103)), Ok(Inserted::New));
    // Withdrawal of a provider the book never saw is remembered too.
    assert_eq!(b.withdraw(&withdrawal(2, 9, 103), at(103)), Ok(false));
    assert!(b.insert(signed(2, 8, 103), at(103)).is_err());
    // Tombstones are forgotten after their TTL.
    b.expire(at(103 + 31 * 60));
    assert!(
        b.insert(signed(2, 8, 103 + 31 * 60), at(103 + 31 * 60))
            .is_ok()
    );
}

#[test]
fn full_book_evicts_the_soonest_expiring() {
    let mut b = OfferBook::new(OfferBookConfig {
        max_offers: 3,
        ..OfferBookConfig::default()
    });
    b.insert(signed(1, 1, 100), at(100)).unwrap();
    b.insert(signed(2, 1, 110), at(110)).unwrap();
    b.insert(signed(3, 1, 120), at(120)).unwrap();
    assert_eq!(
        b.insert(signed(4, 1, 130), at(130)),
        Ok(Inserted::Evicted {
            evicted: key(1).id()
        })
    );
    // A newcomer that expires before everyone held is refused.
    let mut short = offer(5, 1, 130);
    short.expires_at = at(131);
    let short = Signed::sign(short, &key(5)).unwrap();
    assert_eq!(
        b.insert(short, at(130)),
        Err(OfferRejected::Full { max: 3 })
    );
    // Updates from held providers never need a slot.
    assert!(b.insert(signed(2, 2, 140), at(140)).is_ok());
    assert_eq!(b.len(), 3);
}

#[test]
fn query_filters_and_sorts() {
    let mut b = book();
    let mut cheap = offer(1, 1, 100);
    cheap.prices.vcpu = 10;
    cheap.region = "us-east".into();
    cheap.runtimes.retain(|r| r.isolation == Isolation::Sandbox);
    let mut big = offer(2, 1, 105);
    big.capacity.vcpu_milli = 32_000;
    big.tiers = vec!["pro".into()];
    let mid = offer(3, 1, 110);
    for (n, o) in [(1, cheap), (2, big), (3, mid)] {
        b.insert(Signed::sign(o, &key(n)).unwrap(), at(110))
            .unwrap();
    }
    let ids = |f: &OfferFilter, sort| -> Vec<AgoraId> {
        b.query(f, sort, 10, at(120))
            .iter()
            .map(|o| o.body().provider)
            .collect()
    };
    let all = OfferFilter::default();
    assert_eq!(ids(&all, OfferSort::Price)[0], key(1).id());
    assert_eq!(ids(&all, OfferSort::Newest)[0], key(3).id());
    let docker = OfferFilter {
        runtime: Some(Isolation::Docker),
        ..OfferFilter::default()
    };
    assert_eq!(ids(&docker, OfferSort::Price).len(), 2);
    let many_cpus = OfferFilter {
        min_vcpu_milli: Some(8000),
        ..OfferFilter::default()
    };
    assert_eq!(ids(&many_cpus, OfferSort::Price), vec![key(2).id()]);
    let region = OfferFilter {
        region: Some("us-east".into()),
        ..OfferFilter::default()
    };
    assert_eq!(ids(&region, OfferSort::Price), vec![key(1).id()]);
    let tier = OfferFilter {
        tier: Some("standard".into()),
        ..OfferFilter::default()
    };
    assert_eq!(
        ids(&tier, OfferSort::Price).len(),
        2,
        "pro-only offer excluded"
    );
    let image = OfferFilter {
        image: Some("busybox".into()),
        labels: BTreeMap::from([("arch".into(), "x86_64".into())]),
        ..OfferFilter::default()
    };
    assert_eq!(ids(&image, OfferSort::Price).len(), 3);
    // 1 vCPU + 1 GiB: cheap = 10 + 10, others = 100 + 10.
    let max_price = OfferFilter {
        max_price: Some(20),
        ..OfferFilter::default()
    };
    assert_eq!(ids(&max_price, OfferSort::Price), vec![key(1).id()]);
    assert_eq!(b.query(&all, OfferSort::Price, 1, at(120)).len(), 1);
}

/// Applies gossip events by provider `n`.
fn apply(book: &mut OfferBook, events: &[Event<u8>]) {
    for e in events {
        match *e {
            Event::Put(n, s) => {
                let _ = book.insert(signed(n, s, 100), at(100));
            }
            Event::Withdraw(n, s) => {
                let _ = book.withdraw(&withdrawal(n, s, 100), at(100));
            }
        }
    }
}

fn state(book: &OfferBook) -> Vec<(AgoraId, u64)> {
    book.iter()
        .map(|o| (o.body().provider, o.body().seq))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any delivery order (and duplication) of the same offers and withdrawals converges to
    /// the same book: for each provider, its highest-seq offer unless a withdrawal covers it.
    #[test]
    fn delivery_order_does_not_matter(evs in events(1u8..6, 1..20, 0..30), seed in any::<u64>()) {
        let run = |evs: &[Event<u8>]| {
            let mut b = book();
            apply(&mut b, evs);
            state(&b)
        };
        check_converges(&evs, seed, run, |n| key(n).id())?;
    }

    /// The bound always holds, whatever arrives.
    #[test]
    fn bounded(providers in proptest::collection::vec((1u8..40, 0u64..600), 0..80)) {
        let mut b = OfferBook::new(OfferBookConfig { max_offers: 8, ..OfferBookConfig::default() });
        for (i, (n, issued)) in providers.into_iter().enumerate() {
            let _ = b.insert(signed(n, i as u64 + 1, issued), at(issued));
            prop_assert!(b.len() <= 8);
        }
    }
}

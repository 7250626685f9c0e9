//! Service book tests: sequence rules, withdrawals, expiry, bounds, queries, properties.

use proptest::prelude::*;

use super::*;
use crate::offer::tests::key;
use crate::seq_book::tests::{Event, check_converges, events};
use crate::service::tests::{at, lease, record, signed_record, withdrawal};
use crate::signed::Signer as _;

fn book() -> ServiceBook {
    ServiceBook::new(ServiceBookConfig::default())
}

fn skey(owner: u8, lease_n: u8, port: u16) -> ServiceKey {
    ServiceKey {
        owner: key(owner).id(),
        lease: lease(lease_n),
        port,
    }
}

#[test]
fn latest_sequence_wins() {
    let mut b = book();
    assert_eq!(
        b.insert(signed_record(1, 1, 80, 5, 100), at(100)),
        Ok(Inserted::New)
    );
    assert_eq!(
        b.insert(signed_record(1, 1, 80, 5, 100), at(101)),
        Err(ServiceRejected::Duplicate { seq: 5 })
    );
    assert_eq!(
        b.insert(signed_record(1, 1, 80, 4, 100), at(101)),
        Err(ServiceRejected::Stale { have: 5, got: 4 })
    );
    assert_eq!(
        b.insert(signed_record(1, 1, 80, 6, 110), at(110)),
        Ok(Inserted::Replaced { previous_seq: 5 })
    );
    assert_eq!(b.get(&skey(1, 1, 80), at(110)).unwrap().body().seq, 6);
    // Another port of the same lease is another service.
    assert_eq!(
        b.insert(signed_record(1, 1, 81, 1, 110), at(110)),
        Ok(Inserted::New)
    );
    assert_eq!(b.len(), 2);
    assert_eq!(b.count_of(key(1).id()), 2);
}

#[test]
fn expired_and_future_records() {
    let mut b = book();
    // record() lives 600 s.
    assert!(matches!(
        b.insert(signed_record(1, 1, 80, 1, 100), at(700)),
        Err(ServiceRejected::Expired { .. })
    ));
    assert!(matches!(
        b.insert(signed_record(1, 1, 80, 1, 1000), at(900)),
        Err(ServiceRejected::FromFuture { .. })
    ));
    assert!(b.insert(signed_record(1, 1, 80, 1, 1000), at(975)).is_ok());
    assert!(b.get(&skey(1, 1, 80), at(1599)).is_some());
    assert!(b.get(&skey(1, 1, 80), at(1600)).is_none());
    assert!(b.query(&ServiceFilter::default(), 10, at(1600)).is_empty());
    assert_eq!(b.expire(at(1600)), vec![skey(1, 1, 80)]);
    assert!(b.is_empty());
}

#[test]
fn withdrawal_removes_and_blocks_older_records() {
    let mut b = book();
    b.insert(signed_record(1, 1, 80, 3, 100), at(100)).unwrap();
    assert_eq!(
        b.withdraw(&withdrawal(1, 1, 80, 2, 100), at(100)),
        Err(ServiceRejected::Stale { have: 3, got: 2 })
    );
    assert_eq!(b.withdraw(&withdrawal(1, 1, 80, 4, 101), at(101)), Ok(true));
    assert!(b.is_empty());
    assert_eq!(
        b.insert(signed_record(1, 1, 80, 3, 100), at(102)),
        Err(ServiceRejected::Stale { have: 4, got: 3 })
    );
    assert_eq!(
        b.insert(signed_record(1, 1, 80, 5, 103), at(103)),
        Ok(Inserted::New)
    );
    // Someone else's withdrawal for the same lease and port tombstones only its own key:
    // the owner's record (proven by its capability) stands.
    assert_eq!(
        b.withdraw(&withdrawal(9, 1, 80, u64::MAX, 103), at(103)),
        Ok(false)
    );
    assert!(b.get(&skey(1, 1, 80), at(103)).is_some());
    assert!(b.insert(signed_record(1, 1, 80, 6, 104), at(104)).is_ok());
    // Tombstones are forgotten after their TTL.
    b.withdraw(&withdrawal(2, 2, 80, 9, 104), at(104)).unwrap();
    assert!(b.insert(signed_record(2, 2, 80, 8, 104), at(104)).is_err());
    let later = 104 + MAX_SERVICE_TTL.as_secs() + 1;
    b.expire(at(later));
    assert!(
        b.insert(signed_record(2, 2, 80, 8, later), at(later))
            .is_ok()
    );
}

#[test]
fn owners_and_the_book_are_bounded() {
    let mut b = ServiceBook::new(ServiceBookConfig {
        max_records: 3,
        max_per_owner: 2,
        ..ServiceBookConfig::default()
    });
    b.insert(signed_record(1, 1, 80, 1, 100), at(100)).unwrap();
    b.insert(signed_record(1, 1, 81, 1, 100), at(100)).unwrap();
    assert_eq!(
        b.insert(signed_record(1, 2, 80, 1, 100), at(100)),
        Err(ServiceRejected::OwnerFull { max: 2 })
    );
    // Updates of held keys never need room.
    assert!(b.insert(signed_record(1, 1, 80, 2, 100), at(100)).is_ok());
    b.insert(signed_record(2, 1, 80, 1, 110), at(110)).unwrap();
    // Owner 1's two records expire first (issued at 100); the tie goes to the lower key.
    assert_eq!(
        b.insert(signed_record(3, 1, 80, 1, 120), at(120)),
        Ok(Inserted::Evicted {
            evicted: skey(1, 1, 80)
        })
    );
    // A newcomer expiring before everything held is refused.
    let mut short = record(4, 1, 80, 1, 120);
    short.expires_at = at(121);
    let short = Signed::sign(short, &key(4)).unwrap();
    assert_eq!(
        b.insert(short, at(120)),
        Err(ServiceRejected::Full { max: 3 })
    );
    assert_eq!(b.len(), 3);
}

#[test]
fn query_filters_by_kind_name_owner_provider_and_lease() {
    let mut b = book();
    let mut web = record(2, 2, 80, 1, 100);
    web.kind = ServiceKind::Http;
    web.name = "a-web".into();
    b.insert(Signed::sign(web, &key(2)).unwrap(), at(100))
        .unwrap();
    b.insert(signed_record(1, 1, 8080, 1, 100), at(100))
        .unwrap();
    b.insert(signed_record(3, 3, 9000, 1, 100), at(100))
        .unwrap();
    let names = |f: &ServiceFilter| -> Vec<String> {
        b.query(f, 10, at(110))
            .iter()
            .map(|r| r.body().name.clone())
            .collect()
    };
    assert_eq!(
        names(&ServiceFilter::default()),
        vec!["a-web", "svc-1-1-8080", "svc-3-3-9000"]
    );
    let mcp = ServiceFilter {
        kind: Some(ServiceKind::Mcp),
        ..ServiceFilter::default()
    };
    assert_eq!(names(&mcp).len(), 2);
    let named = ServiceFilter {
        name: Some("a-web".into()),
        ..ServiceFilter::default()
    };
    assert_eq!(names(&named), vec!["a-web"]);
    let owner = ServiceFilter {
        owner: Some(key(3).id()),
        ..ServiceFilter::default()
    };
    assert_eq!(names(&owner), vec!["svc-3-3-9000"]);
    let on_lease = ServiceFilter {
        lease: Some(lease(1)),
        provider: Some(key(crate::service::tests::PROVIDER).id()),
        ..ServiceFilter::default()
    };
    assert_eq!(names(&on_lease), vec!["svc-1-1-8080"]);
    let elsewhere = ServiceFilter {
        provider: Some(key(50).id()),
        ..ServiceFilter::default()
    };
    assert!(names(&elsewhere).is_empty());
    assert_eq!(b.query(&ServiceFilter::default(), 1, at(110)).len(), 1);
}

/// Applies gossip events by owner `n` for port `p` (of lease 1).
fn apply(book: &mut ServiceBook, events: &[Event<(u8, u16)>]) {
    for e in events {
        match *e {
            Event::Put((n, p), s) => {
                let _ = book.insert(signed_record(n, 1, p, s, 100), at(100));
            }
            Event::Withdraw((n, p), s) => {
                let _ = book.withdraw(&withdrawal(n, 1, p, s, 100), at(100));
            }
        }
    }
}

fn state(book: &ServiceBook) -> Vec<(ServiceKey, u64)> {
    book.iter()
        .map(|r| (r.body().key(), r.body().seq))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any delivery order (and duplication) converges to the same book: per key, the
    /// highest-seq record unless a withdrawal covers it.
    #[test]
    fn delivery_order_does_not_matter(
        evs in events((1u8..4, 80u16..82), 1..12, 0..24),
        seed in any::<u64>(),
    ) {
        let run = |evs: &[Event<(u8, u16)>]| {
            let mut b = book();
            apply(&mut b, evs);
            state(&b)
        };
        check_converges(&evs, seed, run, |(n, p)| skey(n, 1, p))?;
    }

    /// The bounds always hold, whatever arrives.
    #[test]
    fn bounded(records in proptest::collection::vec((1u8..6, 1u8..8, 0u64..900), 0..40)) {
        let mut b = ServiceBook::new(ServiceBookConfig {
            max_records: 6,
            max_per_owner: 2,
            ..ServiceBookConfig::default()
        });
        for (i, (n, l, issued)) in records.into_iter().enumerate() {
            let _ = b.insert(signed_record(n, l, 80, i as u64 + 1, issued), at(issued));
            prop_assert!(b.len() <= 6);
            for owner in 1u8..6 {
                prop_assert!(b.count_of(key(owner).id()) <= 2);
            }
        }
    }
}

//! Market tests: verdicts, rate limits, withdrawals, sync pages, and properties (a mirror
//! kept from the outcomes equals the book; pages cover a book once).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::gossip::offers_topic;
use crate::offer::tests::{key, signed, withdrawal};
use crate::signed::{Ed25519, Signer as _};
use crate::sync::MAX_SYNC_PAGE;

const TOPIC: &str = "agora/v1/offers/eu-west";

fn at(s: u64) -> Timestamp {
    Timestamp::from_unix_secs(s)
}

fn gossip(o: &Signed<Offer>) -> Vec<u8> {
    GossipMessage::Offer(o.clone()).encode()
}

fn verdict(m: &mut Market, bytes: &[u8], now: u64) -> Verdict {
    m.on_gossip(TOPIC, bytes, at(now), &Ed25519).verdict
}

fn first_page(digest: Option<Digest>) -> SyncRequest {
    SyncRequest {
        after: None,
        limit: MAX_SYNC_PAGE,
        digest,
        held: Vec::new(),
        held_all: true,
    }
}

#[test]
fn tampered_or_misplaced_offers_are_rejected() {
    assert_eq!(offers_topic("eu-west"), TOPIC);
    let mut m = Market::default();
    let mut bytes = gossip(&signed(1, 1, 100));
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    let outcome = m.on_gossip(TOPIC, &bytes, at(100), &Ed25519);
    assert_eq!(outcome.verdict, Verdict::Reject("bad_signature"));
    assert_eq!(outcome.kind, None, "an undecodable message has no kind");
    assert_eq!(
        verdict(&mut m, &[1, 2, 3], 100),
        Verdict::Reject("malformed")
    );
    assert_eq!(
        verdict(&mut m, &vec![1; 5000], 100),
        Verdict::Reject("too_large")
    );
    let elsewhere = m.on_gossip(
        "agora/v1/offers/other",
        &gossip(&signed(1, 1, 100)),
        at(100),
        &Ed25519,
    );
    assert_eq!(elsewhere.verdict, Verdict::Reject("wrong_topic"));
    assert!(m.book().is_empty());
}

#[test]
fn stale_duplicate_and_expired_are_ignored() {
    let mut m = Market::default();
    let accepted = m.on_gossip(TOPIC, &gossip(&signed(1, 5, 100)), at(100), &Ed25519);
    assert_eq!(accepted.verdict, Verdict::Accept);
    assert_eq!(accepted.kind, Some("offer"));
    assert_eq!(accepted.stored, Some(signed(1, 5, 100)));
    assert_eq!(accepted.removed, None);
    let again = m.on_gossip(TOPIC, &gossip(&signed(1, 5, 100)), at(100), &Ed25519);
    assert_eq!(
        (again.verdict, again.stored),
        (Verdict::Known, None),
        "a valid copy of what we hold is still forwarded, and changes nothing"
    );
    assert!(again.verdict.forwards());
    let stale = verdict(&mut m, &gossip(&signed(1, 4, 100)), 100);
    assert_eq!(stale, Verdict::Ignore("stale", Some(Offence::Stale)));
    assert!(!stale.forwards());
    assert_eq!(
        verdict(&mut m, &gossip(&signed(2, 1, 10)), 400),
        Verdict::Ignore("expired", None)
    );
    assert_eq!(
        verdict(&mut m, &gossip(&signed(3, 1, 200)), 100),
        Verdict::Ignore("from_future", None)
    );
    assert_eq!(stale.label(), "stale");
    assert_eq!(Verdict::<Offence>::Accept.label(), "accepted");
    assert_eq!(Verdict::<Offence>::Known.label(), "duplicate");
    assert_eq!(
        stale.map_offence(|o| format!("{o:?}")),
        Verdict::Ignore("stale", Some("Stale".to_owned()))
    );
}

#[test]
fn a_flooding_provider_is_rate_limited() {
    let mut m = Market::default();
    for seq in 1..=PROVIDER_RATE.burst {
        let v = verdict(&mut m, &gossip(&signed(1, u64::from(seq), 100)), 100);
        assert_eq!(v, Verdict::Accept);
    }
    let flood = m.on_gossip(TOPIC, &gossip(&signed(1, 99, 100)), at(100), &Ed25519);
    assert_eq!(
        flood.verdict,
        Verdict::Ignore("rate_limited", Some(Offence::RateLimited))
    );
    assert_eq!(flood.kind, Some("offer"));
    // Another provider is unaffected, and the flooder is let through once it has waited.
    assert_eq!(
        verdict(&mut m, &gossip(&signed(2, 1, 100)), 100),
        Verdict::Accept
    );
    assert_eq!(
        verdict(&mut m, &gossip(&signed(1, 99, 100)), 102),
        Verdict::Accept
    );
    // Sync and our own messages are not rate-limited.
    for seq in 100..120 {
        assert_eq!(
            m.on_synced(signed(1, seq, 102), at(102)).verdict,
            Verdict::Accept
        );
    }
}

#[test]
fn withdrawals_remove_offers_and_ride_on_the_first_page() {
    let mut m = Market::default();
    m.on_synced(signed(1, 3, 100), at(100));
    m.on_synced(signed(2, 1, 100), at(100));
    let w = withdrawal(1, 3, 101);
    let outcome = m.apply_own(GossipMessage::Withdrawal(w.clone()), at(101));
    assert_eq!(outcome.verdict, Verdict::Accept);
    assert_eq!(outcome.kind, Some("withdrawal"));
    assert_eq!((outcome.stored, outcome.removed), (None, Some(key(1).id())));
    assert_eq!(m.book().len(), 1);
    // The offer cannot come back, and the withdrawal is only news once.
    assert_eq!(
        m.on_synced(signed(1, 3, 100), at(102)).verdict,
        Verdict::Ignore("stale", Some(Offence::Stale))
    );
    assert_eq!(
        m.on_synced_withdrawal(w.clone(), at(102)).verdict,
        Verdict::Ignore("stale", Some(Offence::Stale))
    );

    // A node that missed the withdrawal learns it from the first sync page.
    let mut other = Market::default();
    other.on_synced(signed(1, 3, 100), at(100));
    let page = m.page(&first_page(None), at(101));
    assert_eq!(page.withdrawals, vec![&w]);
    let (ws, bad) = page.to_response().verified_withdrawals(&Ed25519);
    assert_eq!((ws.len(), bad), (1, 0));
    for w in ws {
        let outcome = other.on_synced_withdrawal(w, at(101));
        assert_eq!(outcome.verdict, Verdict::Accept);
        assert_eq!(outcome.removed, Some(key(1).id()));
    }
    assert!(other.book().is_empty());
    // Later pages carry none; a newer offer forgets the withdrawal.
    let later = SyncRequest {
        after: Some(key(0).id()),
        ..first_page(None)
    };
    assert!(m.page(&later, at(101)).withdrawals.is_empty());
    assert_eq!(
        m.on_synced(signed(1, 4, 101), at(101)).verdict,
        Verdict::Accept
    );
    assert!(m.page(&first_page(None), at(101)).withdrawals.is_empty());
}

#[test]
fn withdrawals_are_forgotten_after_the_tombstone_time() {
    let mut m = Market::default();
    m.on_synced_withdrawal(withdrawal(1, 3, 100), at(100));
    assert_eq!(m.page(&first_page(None), at(100)).withdrawals.len(), 1);
    let ttl = OfferBookConfig::default().tombstone_ttl.as_secs();
    assert!(m.expire(at(100 + ttl)).is_empty());
    assert!(
        m.page(&first_page(None), at(100 + ttl))
            .withdrawals
            .is_empty()
    );
}

#[test]
fn remembered_withdrawals_are_bounded() {
    let mut m = Market::new(OfferBookConfig {
        max_offers: 2,
        ..OfferBookConfig::default()
    });
    for n in 1..=3u8 {
        m.on_synced_withdrawal(withdrawal(n, 1, 100 + u64::from(n)), at(110));
    }
    let page = m.page(&first_page(None), at(110));
    let providers: Vec<AgoraId> = page.withdrawals.iter().map(|w| w.body().provider).collect();
    assert_eq!(providers, vec![key(3).id(), key(2).id()], "newest first");
}

#[test]
fn a_full_book_reports_the_eviction() {
    let mut m = Market::new(OfferBookConfig {
        max_offers: 1,
        ..OfferBookConfig::default()
    });
    m.on_synced(signed(1, 1, 100), at(100));
    let outcome = m.on_synced(signed(2, 1, 150), at(150));
    assert_eq!(outcome.verdict, Verdict::Accept);
    assert_eq!(outcome.removed, Some(key(1).id()));
    assert_eq!(
        m.on_synced(signed(3, 1, 100), at(150)).verdict,
        Verdict::Ignore("book_full", None)
    );
}

#[test]
fn sync_pages_cover_the_book_once() {
    let mut m = Market::default();
    for n in 1..=150u8 {
        assert_eq!(
            m.on_synced(signed(n, 1, 100), at(100)).verdict,
            Verdict::Accept
        );
    }
    let mut seen = BTreeSet::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let req = SyncRequest {
            after,
            limit: 64,
            ..first_page(None)
        };
        let page = m.page(&req, at(100)).to_response();
        pages += 1;
        let (ok, bad) = page.verified_offers(&Ed25519);
        assert_eq!(bad, 0);
        for o in ok {
            assert!(seen.insert(o.body().provider), "no offer twice");
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), 150);
    assert_eq!(pages, 3);
}

#[test]
fn equal_books_sync_nothing() {
    let (mut a, mut b) = (Market::default(), Market::default());
    for n in 1..=3u8 {
        a.on_synced(signed(n, 1, 100), at(100));
        b.on_synced(signed(n, 1, 100), at(100));
    }
    let req = |m: &Market| first_page(Some(m.digest(at(100))));
    assert!(a.page(&req(&b), at(100)).offers.is_empty());
    b.on_synced(signed(4, 1, 100), at(100));
    assert_eq!(b.page(&req(&a), at(100)).offers.len(), 4);
    // Expired offers are neither in the digest nor on a page.
    assert_eq!(a.digest(at(400)), Market::default().digest(at(400)));
    assert!(a.page(&first_page(None), at(400)).offers.is_empty());
}

#[test]
fn books_share_one_copy_of_an_offer() {
    let offer = signed(1, 1, 100);
    let (mut a, mut b) = (Market::default(), Market::default());
    let decoded = Ok(GossipMessage::Offer(offer.clone()));
    assert_eq!(
        a.on_decoded(decoded.clone(), at(100)).verdict,
        Verdict::Accept
    );
    let outcome = b.on_decoded(decoded, at(100));
    assert!(outcome.stored.is_some_and(|o| o.shares_with(&offer)));
    for m in [&a, &b] {
        let held = m.book().get(&key(1).id(), at(100)).unwrap();
        assert!(held.shares_with(&offer));
        assert!(m.page(&first_page(None), at(100)).offers[0].shares_with(&offer));
    }
}

/// One input to a market in the properties below.
#[derive(Debug, Clone, Copy)]
enum Input {
    /// Provider, seq, issued (s): by gossip.
    Gossip(u8, u64, u64),
    /// Provider, seq, issued (s): by sync.
    Synced(u8, u64, u64),
    /// Provider, seq, issued (s).
    Withdraw(u8, u64, u64),
    /// Expire at this time (s).
    Expire(u64),
}

fn input() -> impl Strategy<Value = Input> {
    let who = (1u8..6, 1u64..6, 100u64..500);
    prop_oneof![
        who.clone().prop_map(|(n, s, t)| Input::Gossip(n, s, t)),
        who.clone().prop_map(|(n, s, t)| Input::Synced(n, s, t)),
        who.prop_map(|(n, s, t)| Input::Withdraw(n, s, t)),
        (100u64..900).prop_map(Input::Expire),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A driver that applies each outcome's `stored` and `removed` (and `expire`'s list) to
    /// a map of its own, as the node does to its offer store, always holds exactly the
    /// book, even when the book is full and evicts.
    #[test]
    fn a_mirror_of_the_outcomes_equals_the_book(
        inputs in proptest::collection::vec(input(), 1..40),
        max_offers in 2usize..6,
    ) {
        let mut m = Market::new(OfferBookConfig { max_offers, ..OfferBookConfig::default() });
        let mut mirror: BTreeMap<AgoraId, Signed<Offer>> = BTreeMap::new();
        let mut now = 100;
        for input in inputs {
            let outcome = match input {
                Input::Gossip(n, s, t) => {
                    now = now.max(t);
                    m.on_gossip(TOPIC, &gossip(&signed(n, s, t)), at(now), &Ed25519)
                }
                Input::Synced(n, s, t) => {
                    now = now.max(t);
                    m.on_synced(signed(n, s, t), at(now))
                }
                Input::Withdraw(n, s, t) => {
                    now = now.max(t);
                    m.on_synced_withdrawal(withdrawal(n, s, t), at(now))
                }
                Input::Expire(t) => {
                    now = now.max(t);
                    for gone in m.expire(at(now)) {
                        prop_assert!(mirror.remove(&gone).is_some());
                    }
                    continue;
                }
            };
            prop_assert_eq!(
                outcome.verdict == Verdict::Accept,
                outcome.stored.is_some() || outcome.removed.is_some()
            );
            if let Some(id) = outcome.removed {
                mirror.remove(&id);
            }
            if let Some(o) = outcome.stored {
                mirror.insert(o.body().provider, o);
            }
            // A full book drops expired offers on its own to make room (see
            // `Outcome::removed`): the mirror may keep those, and only those, longer.
            let live = |o: &&Signed<Offer>| o.body().expires_at > at(now);
            let book: Vec<_> = m.book().iter().filter(live).collect();
            prop_assert_eq!(mirror.values().filter(live).collect::<Vec<_>>(), book);
            prop_assert!(m.book().iter().all(|o| mirror.get(&o.body().provider) == Some(o)));
        }
    }

    /// Paging from the start with any page size returns every unexpired offer exactly
    /// once, in provider order, ending with no cursor.
    #[test]
    fn pages_cover_the_unexpired_book_once(
        providers in proptest::collection::btree_map(1u8..200, 100u64..400, 0..90),
        limit in 0u16..100,
        now in 300u64..450,
    ) {
        let mut m = Market::default();
        for (&n, &issued) in &providers {
            m.on_synced(signed(n, 1, issued), at(issued.min(now)));
        }
        let mut got = Vec::new();
        let mut after = None;
        for _ in 0..=providers.len() {
            let page = m.page(&SyncRequest { after, limit, ..first_page(None) }, at(now));
            prop_assert!(page.offers.len() <= usize::from(limit.clamp(1, MAX_SYNC_PAGE)));
            got.extend(page.offers.iter().map(|o| o.body().provider));
            after = page.next;
            if after.is_none() {
                break;
            }
        }
        prop_assert!(after.is_none());
        let mut want: Vec<AgoraId> = m
            .book()
            .iter()
            .filter(|o| o.body().expires_at > at(now))
            .map(|o| o.body().provider)
            .collect();
        want.sort();
        prop_assert_eq!(got, want);
    }
}

//! Offer sync as the difference between two books: requests list what the asker holds,
//! pages carry only what it lacks or holds older, and a catch-up through the wire form
//! leaves the asker with every provider's newest offer.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::offer::tests::{key, signed};
use crate::signed::{Ed25519, Signer as _};
use crate::sync::{MAX_SYNC_HELD, MAX_SYNC_PAGE, MAX_SYNC_REQUEST_BYTES};

fn at(s: u64) -> Timestamp {
    Timestamp::from_unix_secs(s)
}

/// What one catch-up cost: round trips and offers carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cost {
    pages: usize,
    offers: usize,
}

/// `asker` catches up from `peer` at `now` the way a node does: each request built by
/// [`Market::sync_request`] from its book as it stands, through the wire form both ways,
/// every offer verified and applied.
fn catch_up(asker: &mut Market, peer: &Market, now: Timestamp) -> Cost {
    let mut cost = Cost {
        pages: 0,
        offers: 0,
    };
    let mut req = asker.sync_request(None, now);
    loop {
        cost.pages += 1;
        assert!(cost.pages <= 1_000, "sync does not terminate");
        let wire = req.encode().unwrap();
        assert!(wire.len() <= MAX_SYNC_REQUEST_BYTES);
        assert_eq!(req.encoded_len(), wire.len());
        let answer = peer.page(&SyncRequest::decode(&wire).unwrap(), now);
        let page = SyncResponse::decode(&answer.to_response().encode().unwrap()).unwrap();
        let (offers, bad) = page.verified_offers(&Ed25519);
        assert_eq!(bad, 0);
        cost.offers += offers.len();
        for offer in offers {
            asker.on_synced(offer, now);
        }
        match page.next {
            Some(next) => req = asker.sync_request(Some(next), now),
            None => return cost,
        }
    }
}

/// Each provider's sequence number in `m`'s unexpired book at `now`.
fn seqs(m: &Market, now: Timestamp) -> BTreeMap<AgoraId, u64> {
    m.book()
        .iter()
        .filter(|o| o.body().expires_at > now)
        .map(|o| (o.body().provider, o.body().seq))
        .collect()
}

#[test]
fn only_what_the_asker_lacks_or_holds_older_travels() {
    let now = at(100);
    let (mut asker, mut peer) = (Market::default(), Market::default());
    for n in 1..=200u8 {
        // Both hold 1..=60 alike; the peer is newer for 61..=120, the asker for 121..=170;
        // only the peer holds 171..=200.
        let (ours, theirs) = match n {
            1..=60 => (Some(1), 1),
            61..=120 => (Some(1), 2),
            121..=170 => (Some(3), 2),
            _ => (None, 1),
        };
        peer.on_synced(signed(n, theirs, 100), now);
        if let Some(seq) = ours {
            asker.on_synced(signed(n, seq, 100), now);
        }
    }
    let before = seqs(&asker, now);
    let cost = catch_up(&mut asker, &peer, now);
    assert_eq!(
        cost.offers,
        60 + 30,
        "only the newer and the missing offers"
    );
    let after = seqs(&asker, now);
    for (provider, seq) in seqs(&peer, now) {
        let held = before.get(&provider).copied().unwrap_or(0).max(seq);
        assert_eq!(after.get(&provider), Some(&held));
    }
    // The asker listed 170 offers: two requests' worth, and 90 offers fit two pages.
    assert!(cost.pages <= 4, "{cost:?}");

    // Now the asker is at least as new everywhere: one round of lists, no offers.
    let again = catch_up(&mut asker, &peer, now);
    assert_eq!(again.offers, 0);
    // The reverse direction carries exactly the 50 offers the asker is newer on.
    assert_eq!(catch_up(&mut peer, &asker, now).offers, 50);
    // Equal books now: the digest answers at once.
    let equal = catch_up(&mut asker, &peer, now);
    assert_eq!(
        equal,
        Cost {
            pages: 1,
            offers: 0
        }
    );
}

#[test]
fn a_request_lists_what_the_book_holds_in_bounded_chunks() {
    let now = at(100);
    let mut m = Market::default();
    for n in 1..=200u8 {
        m.on_synced(signed(n, u64::from(n), 100), now);
    }
    let first = m.sync_request(None, now);
    assert_eq!(first.digest, Some(m.digest(now)));
    assert_eq!(first.held.len(), usize::from(MAX_SYNC_HELD));
    assert!(!first.held_all);
    let providers: Vec<AgoraId> = seqs(&m, now).into_keys().collect();
    assert!(
        first
            .held
            .iter()
            .map(|h| h.key)
            .eq(providers.iter().copied().take(128))
    );
    let rest = m.sync_request(first.held.last().map(|h| h.key), now);
    assert_eq!(rest.digest, None);
    assert_eq!(rest.held.len(), 200 - usize::from(MAX_SYNC_HELD));
    assert!(rest.held_all);
    // Expired offers are not listed: holding one is as good as not holding it.
    assert!(m.sync_request(None, at(10_000)).held.is_empty());
}

#[test]
fn a_page_stops_at_the_last_listed_provider() {
    let now = at(100);
    let (mut asker, mut peer) = (Market::default(), Market::default());
    for n in 1..=200u8 {
        peer.on_synced(signed(n, 2, 100), now);
        asker.on_synced(signed(n, 2, 100), now);
    }
    // Only provider 7's offer differs; the page for the first listed chunk is empty but
    // points past the chunk, where the asker lists the rest.
    asker.on_synced(signed(7, 3, 100), now);
    peer.on_synced(signed(7, 4, 100), now);
    let req = asker.sync_request(None, now);
    let page = peer.page(&req, now);
    let in_chunk = req.held.iter().any(|h| h.key == key(7).id());
    assert_eq!(page.offers.len(), usize::from(in_chunk));
    assert_eq!(page.next, req.held.last().map(|h| h.key));
    assert_eq!(
        catch_up(&mut asker, &peer, now),
        Cost {
            pages: 2,
            offers: 1
        }
    );
}

#[test]
fn malformed_held_lists_are_refused() {
    let now = at(100);
    let mut m = Market::default();
    for n in 1..=3u8 {
        m.on_synced(signed(n, 1, 100), now);
    }
    let good = m.sync_request(None, now);
    assert_eq!(SyncRequest::decode(&good.encode().unwrap()).unwrap(), good);
    let mut reversed = good.clone();
    reversed.held.reverse();
    let mut not_after = m.sync_request(None, now);
    not_after.after = not_after.held.last().map(|h| h.key);
    let partial_empty = SyncRequest {
        held: Vec::new(),
        held_all: false,
        ..good.clone()
    };
    let mut too_long = good.clone();
    too_long.held = (0..=u64::from(MAX_SYNC_HELD))
        .map(|i| crate::sync::Held {
            key: key(1).id(),
            seq: i,
        })
        .collect();
    for bad in [reversed, not_after, partial_empty, too_long] {
        assert!(bad.encode().is_err(), "{bad:?}");
        // The same bytes from a peer that does not check what it sends.
        let wire = crate::codec::encode(&bad, usize::MAX).unwrap();
        assert!(SyncRequest::decode(&wire).is_err(), "{bad:?}");
    }
}

#[test]
fn a_request_listing_nothing_gets_every_offer() {
    let now = at(100);
    let mut m = Market::default();
    for n in 1..=100u8 {
        m.on_synced(signed(n, 1, 100), now);
    }
    let first = SyncRequest::first(Market::default().digest(now));
    let page = m.page(&first, now);
    assert_eq!(page.offers.len(), usize::from(MAX_SYNC_PAGE));
    let rest = m.page(&SyncRequest::after(page.next.unwrap()), now);
    assert_eq!(rest.offers.len(), 100 - usize::from(MAX_SYNC_PAGE));
    assert_eq!(rest.next, None);
}

/// A provider as two books hold it: the asker's and the peer's sequence numbers (none
/// when absent) and when the offers were issued (before any catch-up time, some long
/// enough before that they have expired).
fn provider() -> impl Strategy<Value = (Option<u64>, Option<u64>, u64)> {
    (
        proptest::option::of(1u64..4),
        proptest::option::of(1u64..4),
        0u64..300,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever two books hold, one catch-up leaves the asker with every provider's
    /// newest unexpired offer, and carries exactly the offers it lacked or held older.
    #[test]
    fn catch_up_carries_exactly_the_difference(
        providers in proptest::collection::btree_map(1u8..=255, provider(), 0..160),
        now in 300u64..450,
    ) {
        let now = at(now);
        let (mut asker, mut peer) = (Market::default(), Market::default());
        for (&n, &(ours, theirs, issued)) in &providers {
            // Offers are inserted while fresh; some have expired by `now`.
            if let Some(seq) = ours {
                asker.on_synced(signed(n, seq, issued), at(issued));
            }
            if let Some(seq) = theirs {
                peer.on_synced(signed(n, seq, issued), at(issued));
            }
        }
        let (before, theirs) = (seqs(&asker, now), seqs(&peer, now));
        let newer = theirs
            .iter()
            .filter(|(p, s)| before.get(p).is_none_or(|held| held < s))
            .count();
        let cost = catch_up(&mut asker, &peer, now);
        prop_assert_eq!(cost.offers, newer);
        let after = seqs(&asker, now);
        for (p, s) in &theirs {
            prop_assert_eq!(after.get(p), Some(&before.get(p).copied().unwrap_or(0).max(*s)));
        }
        // Round trips: the asker's lists in chunks plus the pages of what travelled.
        let chunks = before.len() / usize::from(MAX_SYNC_HELD) + 1;
        prop_assert!(cost.pages <= chunks + newer / usize::from(MAX_SYNC_PAGE) + 1);
    }
}

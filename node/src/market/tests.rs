use super::*;
use agora_attest::Identity;
use agora_protocol::gossip::offers_topic;
use agora_protocol::{OfferWithdrawal, Signer as _};

use crate::config::{NodeConfig, PriceConfig, ProviderConfig};
use crate::store::MemStore;

fn identity(n: u8) -> Identity {
    Identity::from_secret_bytes(&[n; 32])
}

fn at(s: u64) -> Timestamp {
    Timestamp::from_unix_secs(s)
}

/// A signed offer by key `n`, valid for 60 s from `issued`, built as providers build them.
fn offer(n: u8, seq: u64, issued: u64) -> Signed<Offer> {
    let node = NodeConfig {
        region: "test".into(),
        ..NodeConfig::default()
    };
    let mut provider = ProviderConfig::new(
        2.0,
        2048,
        1024,
        PriceConfig {
            vcpu: 100,
            memory_gib: 10,
            disk_gib: 1,
            gpu: 0,
        },
    );
    provider.offer_ttl = Duration::from_secs(60);
    provider
        .offer(
            &identity(n),
            seq,
            at(issued),
            &node,
            &Default::default(),
            Vec::new(),
        )
        .unwrap()
}

/// How many offers the store holds.
fn stored_offers(store: &Arc<dyn Store>) -> usize {
    store.scan_prefix(Column::Offers, b"", 10).unwrap().len()
}

fn gossip(o: &Signed<Offer>) -> Vec<u8> {
    GossipMessage::Offer(o.clone()).encode()
}

fn market(store: Arc<dyn Store>, now: Timestamp) -> Market {
    Market::open(
        store,
        OfferBookConfig::default(),
        NodeMetrics::default(),
        now,
    )
    .unwrap()
}

const TOPIC: &str = "agora/v1/offers/test";

#[test]
fn accepted_offers_persist_across_reopen() {
    assert_eq!(offers_topic("test"), TOPIC);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let mut m = market(store.clone(), at(100));
    let o = offer(1, 1, 100);
    assert_eq!(m.on_gossip(TOPIC, &gossip(&o), at(100)), Verdict::Accept);
    assert_eq!(m.len(), 1);
    drop(m);

    let m = market(store.clone(), at(110));
    assert_eq!(m.get(&o.body().provider, at(110)), Some(o.clone()));

    // Reopened after expiry: dropped from the book and the store.
    let m = market(store.clone(), at(200));
    assert!(m.is_empty());
    assert_eq!(stored_offers(&store), 0);
}

#[test]
fn tampered_or_misplaced_offers_are_rejected() {
    let mut m = market(Arc::new(MemStore::new()), at(100));
    let mut bytes = gossip(&offer(1, 1, 100));
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    assert_eq!(
        m.on_gossip(TOPIC, &bytes, at(100)),
        Verdict::Reject("bad_signature")
    );
    assert_eq!(
        m.on_gossip(TOPIC, &[1, 2, 3], at(100)),
        Verdict::Reject("malformed")
    );
    assert_eq!(
        m.on_gossip(TOPIC, &vec![1; 5000], at(100)),
        Verdict::Reject("too_large")
    );
    assert_eq!(
        m.on_gossip("agora/v1/offers/other", &gossip(&offer(1, 1, 100)), at(100)),
        Verdict::Reject("wrong_topic")
    );
    assert!(m.is_empty());
}

#[test]
fn stale_duplicate_and_expired_are_ignored() {
    let mut m = market(Arc::new(MemStore::new()), at(100));
    assert_eq!(
        m.on_gossip(TOPIC, &gossip(&offer(1, 5, 100)), at(100)),
        Verdict::Accept
    );
    assert_eq!(
        m.on_gossip(TOPIC, &gossip(&offer(1, 5, 100)), at(100)),
        Verdict::Known,
        "a valid copy of what we hold is still forwarded"
    );
    assert_eq!(
        m.on_gossip(TOPIC, &gossip(&offer(1, 4, 100)), at(100)),
        Verdict::Ignore("stale", Some(Offence::Stale))
    );
    assert_eq!(
        m.on_gossip(TOPIC, &gossip(&offer(2, 1, 10)), at(100)),
        Verdict::Ignore("expired", None)
    );
}

#[test]
fn a_flooding_provider_is_rate_limited() {
    let mut m = market(Arc::new(MemStore::new()), at(100));
    for seq in 1..=PROVIDER_RATE.burst {
        let v = m.on_gossip(TOPIC, &gossip(&offer(1, u64::from(seq), 100)), at(100));
        assert_eq!(v, Verdict::Accept);
    }
    assert_eq!(
        m.on_gossip(TOPIC, &gossip(&offer(1, 99, 100)), at(100)),
        Verdict::Ignore("rate_limited", Some(Offence::RateLimited))
    );
    // Another provider is unaffected.
    assert_eq!(
        m.on_gossip(TOPIC, &gossip(&offer(2, 1, 100)), at(100)),
        Verdict::Accept
    );
}

#[test]
fn withdrawals_and_expiry_clear_the_store() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let mut m = market(store.clone(), at(100));
    m.on_gossip(TOPIC, &gossip(&offer(1, 3, 100)), at(100));
    m.on_gossip(TOPIC, &gossip(&offer(2, 1, 100)), at(100));
    let id = identity(1);
    let w = Signed::sign(
        OfferWithdrawal {
            provider: id.agora_id(),
            seq: 3,
            issued_at: at(101),
        },
        id.signing_key(),
    )
    .unwrap();
    let bytes = GossipMessage::Withdrawal(w).encode();
    assert_eq!(m.on_gossip(TOPIC, &bytes, at(101)), Verdict::Accept);
    assert_eq!(m.len(), 1);

    // A node that missed the withdrawal learns it from a sync page.
    let mut other = market(Arc::new(MemStore::new()), at(100));
    other.on_synced(offer(1, 3, 100), at(100));
    let page = m.page(
        &SyncRequest {
            after: None,
            limit: 64,
            digest: None,
        },
        at(101),
    );
    let (ws, bad) = page.verified_withdrawals(&Ed25519);
    assert_eq!((ws.len(), bad), (1, 0));
    for w in ws {
        assert_eq!(other.on_synced_withdrawal(w, at(101)), Verdict::Accept);
    }
    assert!(other.is_empty());
    assert_eq!(stored_offers(&store), 1);
    assert_eq!(m.expire(at(1000)), 1);
    assert_eq!(stored_offers(&store), 0);
}

#[test]
fn sync_pages_cover_the_book_once() {
    let mut m = market(Arc::new(MemStore::new()), at(100));
    for n in 1..=150u8 {
        assert_eq!(m.on_synced(offer(n, 1, 100), at(100)), Verdict::Accept);
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = m.page(
            &SyncRequest {
                after,
                limit: 64,
                digest: None,
            },
            at(100),
        );
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
    assert_eq!(identity(1).agora_id(), identity(1).signing_key().id());
}

#[test]
fn equal_books_sync_nothing() {
    let mut a = market(Arc::new(MemStore::new()), at(100));
    let mut b = market(Arc::new(MemStore::new()), at(100));
    for n in 1..=3u8 {
        a.on_synced(offer(n, 1, 100), at(100));
        b.on_synced(offer(n, 1, 100), at(100));
    }
    let req = |digest| SyncRequest {
        after: None,
        limit: 64,
        digest: Some(digest),
    };
    assert!(a.page(&req(b.digest(at(100))), at(100)).offers.is_empty());
    b.on_synced(offer(4, 1, 100), at(100));
    assert_eq!(b.page(&req(a.digest(at(100))), at(100)).offers.len(), 4);
}

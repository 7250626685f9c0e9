//! The node's market wrapper: persistence, metrics and the node's scoring offences. The
//! verdict logic itself (sequence rules, rate limits, withdrawals, sync pages) is the
//! protocol's `market::Market` and is tested there.

use super::*;
use core::time::Duration;

use agora_attest::Identity;
use agora_protocol::gossip::offers_topic;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::GossipLabels;

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
    market_with(store, now, NodeMetrics::default())
}

fn market_with(store: Arc<dyn Store>, now: Timestamp, metrics: NodeMetrics) -> Market {
    Market::open(store, OfferBookConfig::default(), metrics, now).unwrap()
}

/// How often `kind`/`result` was counted in `family`.
fn count(family: &Family<GossipLabels, Counter>, kind: &str, result: &str) -> u64 {
    family
        .get_or_create(&GossipLabels {
            kind: kind.into(),
            result: result.into(),
        })
        .get()
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
    assert_eq!(
        m.query(&OfferFilter::default(), OfferSort::Price, 10, at(110))
            .len(),
        1
    );

    // Reopened after expiry: dropped from the book and the store.
    let m = market(store.clone(), at(200));
    assert!(m.is_empty());
    assert_eq!(stored_offers(&store), 0);
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
            held: Vec::new(),
            held_all: true,
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
fn verdicts_carry_the_nodes_offences_and_are_counted() {
    let metrics = NodeMetrics::default();
    let mut m = market_with(Arc::new(MemStore::new()), at(100), metrics.clone());
    let v = |m: &mut Market, bytes: &[u8]| m.on_gossip(TOPIC, bytes, at(100));
    assert_eq!(v(&mut m, &gossip(&offer(1, 5, 100))), Verdict::Accept);
    assert_eq!(v(&mut m, &gossip(&offer(1, 5, 100))), Verdict::Known);
    assert_eq!(
        v(&mut m, &gossip(&offer(1, 4, 100))),
        Verdict::Ignore("stale", Some(Offence::Stale))
    );
    assert_eq!(
        v(&mut m, &gossip(&offer(2, 1, 10))),
        Verdict::Ignore("expired", None)
    );
    assert_eq!(v(&mut m, &[1, 2, 3]), Verdict::Reject("malformed"));
    for seq in 6..20 {
        v(&mut m, &gossip(&offer(1, seq, 100)));
    }
    assert_eq!(
        v(&mut m, &gossip(&offer(1, 99, 100))),
        Verdict::Ignore("rate_limited", Some(Offence::RateLimited))
    );
    let gossiped = &metrics.gossip_messages;
    assert_eq!(count(gossiped, "offer", "duplicate"), 1);
    assert_eq!(count(gossiped, "offer", "stale"), 1);
    assert_eq!(count(gossiped, "unknown", "malformed"), 1);
    assert!(count(gossiped, "offer", "rate_limited") >= 1);
    assert_eq!(
        count(gossiped, "offer", "accepted"),
        u64::from(PROVIDER_RATE.burst) - 2,
        "the burst less the duplicate and the stale offer (the expired one is another provider's)"
    );
    assert_eq!(m.on_synced(offer(3, 1, 100), at(100)), Verdict::Accept);
    assert_eq!(count(&metrics.sync_offers, "offer", "accepted"), 1);
    assert_eq!(metrics.offers.get(), 2);
    assert_eq!(
        m.page(
            &SyncRequest {
                after: None,
                limit: 64,
                digest: None,
                held: Vec::new(),
                held_all: true,
            },
            at(100)
        )
        .entries
        .len(),
        2
    );
}

#[test]
fn an_evicted_offer_leaves_the_store() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let config = OfferBookConfig {
        max_offers: 1,
        ..OfferBookConfig::default()
    };
    let mut m = Market::open(store.clone(), config, NodeMetrics::default(), at(100)).unwrap();
    assert_eq!(m.on_synced(offer(1, 1, 100), at(100)), Verdict::Accept);
    assert_eq!(m.on_synced(offer(2, 1, 130), at(130)), Verdict::Accept);
    let keys: Vec<Vec<u8>> = store
        .scan_prefix(Column::Offers, b"", 10)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec![identity(2).agora_id().as_bytes().to_vec()]);
}

//! The node's ledger over real stores: appends, sync between two replicas, restarts,
//! refusals.

use std::sync::atomic::{AtomicBool, Ordering};

use agora_protocol::ledger::{Rating, Rejected};
use agora_protocol::ledger_rpc::Response;
use agora_protocol::{SignedError, Signer as _};
use ed25519_dalek::SigningKey;

use super::*;
use crate::store::{MemStore, RocksStore};

fn identity(n: u8) -> Arc<Identity> {
    Arc::new(Identity::from_secret_bytes(&[n; 32]))
}

fn t(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(1_800_000_000 + secs)
}

fn rating(n: u64) -> Fact {
    let agent = SigningKey::from_bytes(&[40; 32]);
    let rating = Rating {
        rater: agent.id(),
        provider: SigningKey::from_bytes(&[41; 32]).id(),
        lease: Digest::of(&n.to_be_bytes()),
        score: 70,
        rated_at: t(n),
    };
    Fact::Rating(Signed::sign(rating, &agent).unwrap())
}

fn open(n: u8, store: Arc<dyn Store>) -> Ledger {
    Ledger::open(
        identity(n),
        store,
        Config::default(),
        NodeMetrics::default(),
        t(0),
    )
    .unwrap()
}

fn new_entry(appended: &[Appended]) -> Signed<Entry> {
    match appended {
        [Appended::New(e)] => e.clone(),
        other => panic!("expected one new entry, got {other:?}"),
    }
}

/// Pages `from`'s log into `to` until nothing is left.
fn sync(from: &Ledger, to: &Ledger) -> usize {
    let mut accepted = 0;
    let mut after = None;
    loop {
        let Response::Page { entries, next } = from.answer(&to.page_request(after)) else {
            panic!("a page request gets a page");
        };
        let ingested = to.ingest(t(50), &entries);
        assert!(ingested.faults.is_empty(), "{:?}", ingested.faults);
        accepted += ingested.accepted;
        match next {
            Some(n) => after = Some(n),
            None => return accepted,
        }
    }
}

#[test]
fn two_replicas_converge_and_rebuild_from_their_stores() {
    let store_a: Arc<dyn Store> = Arc::new(MemStore::new());
    let dir = tempfile::tempdir().unwrap();
    let store_b: Arc<dyn Store> = Arc::new(RocksStore::open(dir.path()).unwrap());
    let a = open(1, store_a.clone());
    let b = open(2, store_b.clone());
    for n in 0..5 {
        a.append(t(n), vec![rating(n)]).unwrap();
        b.append(t(n), vec![rating(100 + n)]).unwrap();
    }
    assert!(b.wants(&a.announce(t(10))));
    assert_eq!(sync(&a, &b), 5);
    assert_eq!(sync(&b, &a), 5);
    assert_eq!(a.state().state_hash, b.state().state_hash);
    assert!(!b.wants(&a.announce(t(11))), "equal logs want nothing");
    assert_eq!(a.state().facts.get("rating"), Some(&10));

    // A restart rebuilds the same log, and the own chain continues from the store.
    let hash = b.state().state_hash;
    drop(b);
    let b = open(2, store_b);
    assert_eq!(b.state().state_hash, hash);
    assert_eq!(b.state().own.map(|o| o.seq), Some(4));
    let next = new_entry(&b.append(t(20), vec![rating(200)]).unwrap());
    assert_eq!(next.body().seq, 5);
}

#[test]
fn a_recorded_fact_is_not_appended_twice() {
    let a = open(1, Arc::new(MemStore::new()));
    let first = new_entry(&a.append(t(1), vec![rating(1)]).unwrap());
    let again = a.append(t(2), vec![rating(1), rating(2)]).unwrap();
    assert!(matches!(again[0], Appended::Known(_)));
    assert!(matches!(&again[1], Appended::New(e) if e.body().seq == first.body().seq + 1));
    assert!(a.has_fact(&fact_digest(&rating(1)).unwrap()));
}

#[test]
fn a_missing_own_entry_stops_appends_until_a_peer_returns_it() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let a = open(1, store.clone());
    a.append(t(1), vec![rating(1)]).unwrap();
    let last = new_entry(&a.append(t(2), vec![rating(2)]).unwrap());
    let keeper = open(3, Arc::new(MemStore::new()));
    sync(&a, &keeper);
    drop(a);
    store
        .delete(Column::LedgerEntries, &last.digest().0)
        .unwrap();
    let a = open(1, store);
    let err = a.append(t(3), vec![rating(3)]).unwrap_err();
    assert!(
        matches!(err, LedgerError::OwnChainIncomplete { seq: 1 }),
        "{err}"
    );
    assert!(!a.state().appending);
    // The peer still has it: after a sync the chain goes on at seq 2.
    sync(&keeper, &a);
    let next = new_entry(&a.append(t(4), vec![rating(3)]).unwrap());
    assert_eq!(next.body().seq, 2);
    assert_eq!(next.body().prev, Some(last.digest()));
}

#[test]
fn bad_entries_are_the_senders_fault_and_not_stored() {
    let a = open(1, Arc::new(MemStore::new()));
    let entry = new_entry(&a.append(t(1), vec![rating(1)]).unwrap());
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let b = open(2, store.clone());
    let mut forged = entry.as_bytes().to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 0x40;
    let ingested = b.ingest(t(5), &[forged, b"junk".to_vec()]);
    assert_eq!(ingested.faults.len(), 2);
    assert!(matches!(
        ingested.faults[0].1,
        Rejected::Invalid(SignedError::Verify(_))
    ));
    assert_eq!(ingested.accepted, 0);
    assert!(
        store
            .scan_prefix(Column::LedgerEntries, b"", 10)
            .unwrap()
            .is_empty()
    );
    // The genuine entry still goes in.
    let ingested = b.ingest(t(6), &[entry.as_bytes().to_vec()]);
    assert_eq!(ingested.accepted, 1);
    assert_eq!(b.ingest(t(7), &[entry.as_bytes().to_vec()]).duplicates, 1);
}

#[test]
fn an_entry_ahead_of_its_parents_waits_and_asks_for_them() {
    let a = open(1, Arc::new(MemStore::new()));
    let first = new_entry(&a.append(t(1), vec![rating(1)]).unwrap());
    let second = new_entry(&a.append(t(2), vec![rating(2)]).unwrap());
    let b = open(2, Arc::new(MemStore::new()));
    let ingested = b.ingest(t(3), &[second.as_bytes().to_vec()]);
    assert_eq!(ingested.pending, 1);
    assert_eq!(ingested.missing, vec![first.digest()]);
    let Response::Entries(found) = a.answer(&Request::Fetch(ingested.missing)) else {
        panic!("a fetch gets entries");
    };
    let ingested = b.ingest(t(4), &found);
    assert_eq!(ingested.accepted, 2, "the parent and the child it released");
    assert_eq!(a.state().state_hash, b.state().state_hash);
}

/// A store whose writes fail once `failing` is set.
struct Flaky {
    inner: MemStore,
    failing: AtomicBool,
}

impl Store for Flaky {
    fn get(&self, col: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(col, key)
    }
    fn put(&self, col: Column, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.inner.put(col, key, value)
    }
    fn delete(&self, col: Column, key: &[u8]) -> Result<(), StoreError> {
        self.inner.delete(col, key)
    }
    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Poisoned);
        }
        self.inner.write(batch)
    }
    fn scan_prefix(
        &self,
        col: Column,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<crate::store::Entry>, StoreError> {
        self.inner.scan_prefix(col, prefix, limit)
    }
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[test]
fn a_failed_write_halts_the_ledger() {
    let store = Arc::new(Flaky {
        inner: MemStore::new(),
        failing: AtomicBool::new(false),
    });
    let a = open(1, store.clone());
    a.append(t(1), vec![rating(1)]).unwrap();
    store.failing.store(true, Ordering::SeqCst);
    assert!(matches!(
        a.append(t(2), vec![rating(2)]),
        Err(LedgerError::Store(_))
    ));
    store.failing.store(false, Ordering::SeqCst);
    assert!(matches!(
        a.append(t(3), vec![rating(3)]),
        Err(LedgerError::Halted(_))
    ));
    assert!(a.state().halted.is_some());
    // After a restart only what was written is there, and appends go on from it.
    let a = open(1, store);
    assert_eq!(a.state().entries, 1);
    assert_eq!(
        new_entry(&a.append(t(4), vec![rating(4)]).unwrap())
            .body()
            .seq,
        1
    );
}

#[tokio::test]
async fn record_appends_on_a_blocking_thread() {
    let a = Arc::new(open(1, Arc::new(MemStore::new())));
    let mut changes = a.changes();
    let appended = a.record(rating(9)).await.unwrap();
    assert!(matches!(appended, Appended::New(_)));
    assert!(changes.has_changed().unwrap());
    changes.borrow_and_update();
    assert!(matches!(
        a.record(rating(9)).await.unwrap(),
        Appended::Known(_)
    ));
}

#[test]
fn verify_reports_a_tampered_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RocksStore::open(dir.path()).unwrap());
    let a = open(1, store.clone());
    let entry = new_entry(&a.append(t(1), vec![rating(1)]).unwrap());
    a.append(t(2), vec![rating(2)]).unwrap();
    let report = verify::verify(store.as_ref(), t(3)).unwrap();
    assert!(report.ok(), "{:?}", report.failures());
    assert_eq!(report.entries, 2);
    assert_eq!(report.state_hash.to_string(), a.state().state_hash);
    let mut bytes = entry.as_bytes().to_vec();
    bytes[40] ^= 1;
    store
        .put(Column::LedgerEntries, &entry.digest().0, &bytes)
        .unwrap();
    let report = verify::verify(store.as_ref(), t(3)).unwrap();
    assert!(!report.ok());
    let failures = report.failures().join("\n");
    assert!(failures.contains(&entry.digest().to_string()), "{failures}");
    assert!(failures.contains("tampered"), "{failures}");
}

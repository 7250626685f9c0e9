//! The conformance suite every [`Store`] must pass, and a property test that [`MemStore`] and
//! [`RocksStore`] agree on random operation sequences.
//!
//! A backend runs the suite with [`conformance_tests!`], given a function that hands a fresh,
//! empty store to a test case:
//!
//! ```ignore
//! fn with_store(case: &dyn Fn(&dyn Store)) {
//!     case(&MemStore::new());
//! }
//! crate::store::conformance::conformance_tests!(with_store);
//! ```

use std::thread;

use super::{Column, Store, WriteBatch};

/// Generates a `conformance` test module running every case on stores from `$with_store`, a
/// `fn(&dyn Fn(&dyn Store))` in the calling module.
macro_rules! conformance_tests {
    ($with_store:ident) => {
        mod conformance {
            $crate::store::conformance::conformance_tests!(
                @cases $with_store;
                get_put_delete,
                overwrite,
                empty_key_and_value,
                columns_are_isolated,
                scan_is_in_key_order,
                scan_respects_limit,
                scan_respects_prefix_boundaries,
                scan_handles_ff_prefixes,
                scan_skips_deleted,
                batch_applies_in_order,
                batch_spans_columns,
                empty_batch_is_ok,
                batch_is_atomic_to_readers,
                flush_keeps_data,
            );
        }
    };
    (@cases $with_store:ident; $($case:ident,)*) => {
        $(
            #[test]
            fn $case() {
                super::$with_store(&$crate::store::conformance::$case);
            }
        )*
    };
}
pub(crate) use conformance_tests;

fn keys(rows: &[(Vec<u8>, Vec<u8>)]) -> Vec<&[u8]> {
    rows.iter().map(|(k, _)| k.as_slice()).collect()
}

fn put_all(store: &dyn Store, col: Column, keys: &[&[u8]]) {
    for key in keys {
        store.put(col, key, key).unwrap();
    }
}

pub(crate) fn get_put_delete(store: &dyn Store) {
    let col = Column::Peers;
    assert_eq!(store.get(col, b"k").unwrap(), None);
    store.put(col, b"k", b"v").unwrap();
    assert_eq!(store.get(col, b"k").unwrap(), Some(b"v".to_vec()));
    store.delete(col, b"k").unwrap();
    assert_eq!(store.get(col, b"k").unwrap(), None);
    // Deleting a missing key is fine.
    store.delete(col, b"k").unwrap();
    store.delete(col, b"never-written").unwrap();
    assert_eq!(store.get(col, b"k").unwrap(), None);
}

pub(crate) fn overwrite(store: &dyn Store) {
    let col = Column::Offers;
    store.put(col, b"k", b"a longer first value").unwrap();
    store.put(col, b"k", b"short").unwrap();
    assert_eq!(store.get(col, b"k").unwrap(), Some(b"short".to_vec()));
    assert_eq!(store.scan_prefix(col, b"", 10).unwrap().len(), 1);
}

pub(crate) fn empty_key_and_value(store: &dyn Store) {
    let col = Column::Leases;
    store.put(col, b"", b"empty key").unwrap();
    store.put(col, b"k", b"").unwrap();
    assert_eq!(store.get(col, b"").unwrap(), Some(b"empty key".to_vec()));
    // An empty value is present, not missing.
    assert_eq!(store.get(col, b"k").unwrap(), Some(Vec::new()));
    let rows = store.scan_prefix(col, b"", 10).unwrap();
    assert_eq!(
        rows,
        vec![
            (Vec::new(), b"empty key".to_vec()),
            (b"k".to_vec(), Vec::new())
        ]
    );
}

pub(crate) fn columns_are_isolated(store: &dyn Store) {
    for col in Column::ALL {
        store.put(col, b"shared", col.name().as_bytes()).unwrap();
    }
    for col in Column::ALL {
        assert_eq!(
            store.get(col, b"shared").unwrap(),
            Some(col.name().as_bytes().to_vec())
        );
        // Scan by prefix: a store may keep its own records in `Column::Meta`.
        assert_eq!(
            store.scan_prefix(col, b"sh", 100).unwrap(),
            vec![(b"shared".to_vec(), col.name().as_bytes().to_vec())]
        );
    }
    store.delete(Column::Accounts, b"shared").unwrap();
    for col in Column::ALL {
        let expected = (col != Column::Accounts).then(|| col.name().as_bytes().to_vec());
        assert_eq!(store.get(col, b"shared").unwrap(), expected, "column {col}");
    }
    assert!(
        store
            .scan_prefix(Column::Accounts, b"sh", 100)
            .unwrap()
            .is_empty()
    );
}

pub(crate) fn scan_is_in_key_order(store: &dyn Store) {
    let col = Column::LedgerEntries;
    // Inserted out of order; bytes compare unsigned, shorter prefix first.
    let shuffled: [&[u8]; 8] = [
        b"\x80",
        b"b",
        b"\x00\x01",
        b"a\x00",
        b"\xff",
        b"a",
        b"\x7f",
        b"\x00",
    ];
    put_all(store, col, &shuffled);
    let mut sorted = shuffled.to_vec();
    sorted.sort_unstable();
    let rows = store.scan_prefix(col, b"", usize::MAX).unwrap();
    assert_eq!(keys(&rows), sorted);
    for (key, value) in &rows {
        assert_eq!(key, value);
    }
}

pub(crate) fn scan_respects_limit(store: &dyn Store) {
    let col = Column::LedgerHeads;
    put_all(store, col, &[b"h/1", b"h/2", b"h/3", b"h/4", b"i/1"]);
    assert!(store.scan_prefix(col, b"h/", 0).unwrap().is_empty());
    assert_eq!(
        keys(&store.scan_prefix(col, b"h/", 1).unwrap()),
        [b"h/1".as_slice()]
    );
    assert_eq!(
        keys(&store.scan_prefix(col, b"h/", 3).unwrap()),
        [b"h/1".as_slice(), b"h/2", b"h/3"]
    );
    assert_eq!(store.scan_prefix(col, b"h/", 4).unwrap().len(), 4);
    assert_eq!(store.scan_prefix(col, b"h/", 100).unwrap().len(), 4);
    assert_eq!(store.scan_prefix(col, b"h/", usize::MAX).unwrap().len(), 4);
}

pub(crate) fn scan_respects_prefix_boundaries(store: &dyn Store) {
    let col = Column::Certificates;
    put_all(
        store,
        col,
        &[b"a", b"aa", b"ab", b"abc", b"ab\xff", b"ac", b"b"],
    );
    assert_eq!(
        keys(&store.scan_prefix(col, b"ab", 100).unwrap()),
        [b"ab".as_slice(), b"abc", b"ab\xff"]
    );
    assert_eq!(
        keys(&store.scan_prefix(col, b"a", 100).unwrap()),
        [b"a".as_slice(), b"aa", b"ab", b"abc", b"ab\xff", b"ac"]
    );
    assert_eq!(
        keys(&store.scan_prefix(col, b"abc", 100).unwrap()),
        [b"abc".as_slice()]
    );
    // A prefix longer than every match, or between keys, finds nothing.
    assert!(store.scan_prefix(col, b"abcd", 100).unwrap().is_empty());
    assert!(store.scan_prefix(col, b"aaa", 100).unwrap().is_empty());
    assert!(store.scan_prefix(col, b"0", 100).unwrap().is_empty());
    assert!(store.scan_prefix(col, b"c", 100).unwrap().is_empty());
    assert_eq!(store.scan_prefix(col, b"", 100).unwrap().len(), 7);
}

pub(crate) fn scan_handles_ff_prefixes(store: &dyn Store) {
    let col = Column::Revocations;
    put_all(
        store,
        col,
        &[
            b"\x01\xfe\xff",
            b"\x01\xff",
            b"\x01\xff\x00",
            b"\x01\xff\xff",
            b"\x02",
            b"\xfe\xff",
            b"\xff",
            b"\xff\xff",
            b"\xff\xff\x01",
        ],
    );
    assert_eq!(
        keys(&store.scan_prefix(col, b"\x01\xff", 100).unwrap()),
        [b"\x01\xff".as_slice(), b"\x01\xff\x00", b"\x01\xff\xff"]
    );
    assert_eq!(
        keys(&store.scan_prefix(col, b"\x01", 100).unwrap()),
        [
            b"\x01\xfe\xff".as_slice(),
            b"\x01\xff",
            b"\x01\xff\x00",
            b"\x01\xff\xff"
        ]
    );
    assert_eq!(
        keys(&store.scan_prefix(col, b"\xff", 100).unwrap()),
        [b"\xff".as_slice(), b"\xff\xff", b"\xff\xff\x01"]
    );
    assert_eq!(
        keys(&store.scan_prefix(col, b"\xff\xff", 100).unwrap()),
        [b"\xff\xff".as_slice(), b"\xff\xff\x01"]
    );
    assert_eq!(
        keys(&store.scan_prefix(col, b"\xfe", 100).unwrap()),
        [b"\xfe\xff".as_slice()]
    );
    assert!(
        store
            .scan_prefix(col, b"\xff\xff\xff", 100)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        keys(&store.scan_prefix(col, b"\xff", 2).unwrap()),
        [b"\xff".as_slice(), b"\xff\xff"]
    );
}

pub(crate) fn scan_skips_deleted(store: &dyn Store) {
    let col = Column::Workloads;
    put_all(store, col, &[b"w/1", b"w/2", b"w/3"]);
    store.delete(col, b"w/1").unwrap();
    store.delete(col, b"w/2").unwrap();
    // The limit counts live entries, not deleted ones.
    assert_eq!(
        keys(&store.scan_prefix(col, b"w/", 1).unwrap()),
        [b"w/3".as_slice()]
    );
}

pub(crate) fn batch_applies_in_order(store: &dyn Store) {
    let col = Column::Locks;
    store.put(col, b"gone", b"old").unwrap();
    let mut batch = WriteBatch::new();
    batch
        .put(col, b"k", b"first")
        .put(col, b"k", b"second")
        .put(col, b"deleted", b"x")
        .delete(col, b"deleted")
        .delete(col, b"gone")
        .delete(col, b"reborn")
        .put(col, b"reborn", b"yes");
    assert_eq!(batch.len(), 7);
    store.write(batch).unwrap();
    assert_eq!(store.get(col, b"k").unwrap(), Some(b"second".to_vec()));
    assert_eq!(store.get(col, b"deleted").unwrap(), None);
    assert_eq!(store.get(col, b"gone").unwrap(), None);
    assert_eq!(store.get(col, b"reborn").unwrap(), Some(b"yes".to_vec()));
    assert_eq!(
        keys(&store.scan_prefix(col, b"", 100).unwrap()),
        [b"k".as_slice(), b"reborn"]
    );
}

pub(crate) fn batch_spans_columns(store: &dyn Store) {
    let mut batch = WriteBatch::new();
    for col in Column::ALL {
        batch.put(col, b"key", col.name());
    }
    batch.delete(Column::Meta, b"key");
    store.write(batch).unwrap();
    for col in Column::ALL {
        let expected = (col != Column::Meta).then(|| col.name().as_bytes().to_vec());
        assert_eq!(store.get(col, b"key").unwrap(), expected, "column {col}");
    }
}

pub(crate) fn empty_batch_is_ok(store: &dyn Store) {
    store.put(Column::Identity, b"k", b"v").unwrap();
    let before = store.scan_prefix(Column::Identity, b"", 100).unwrap();
    store.write(WriteBatch::new()).unwrap();
    assert_eq!(
        store.scan_prefix(Column::Identity, b"", 100).unwrap(),
        before
    );
}

/// A reader scanning while a writer applies batches sees every batch whole or not at all.
pub(crate) fn batch_is_atomic_to_readers(store: &dyn Store) {
    const ROUNDS: u32 = 300;
    let col = Column::Accounts;
    let names: [&[u8]; 4] = [b"acct/a", b"acct/b", b"acct/c", b"acct/d"];
    thread::scope(|s| {
        let writer = s.spawn(|| {
            for round in 1..=ROUNDS {
                let mut batch = WriteBatch::new();
                for name in names {
                    batch.put(col, name, round.to_be_bytes());
                }
                store.write(batch).unwrap();
            }
        });
        let mut last_seen = 0;
        loop {
            let done = writer.is_finished();
            let rows = store.scan_prefix(col, b"acct/", 10).unwrap();
            if !rows.is_empty() {
                assert_eq!(rows.len(), names.len(), "partial batch: {rows:?}");
                let first = &rows[0].1;
                assert!(
                    rows.iter().all(|(_, v)| v == first),
                    "mixed batch: {rows:?}"
                );
                let round = u32::from_be_bytes(first.as_slice().try_into().unwrap());
                assert!(round >= last_seen, "went back from {last_seen} to {round}");
                last_seen = round;
            }
            if done {
                break;
            }
            thread::yield_now();
        }
        writer.join().unwrap();
        assert_eq!(last_seen, ROUNDS);
    });
}

pub(crate) fn flush_keeps_data(store: &dyn Store) {
    store.flush().unwrap();
    store.put(Column::Peers, b"p", b"1").unwrap();
    store.flush().unwrap();
    store.flush().unwrap();
    assert_eq!(store.get(Column::Peers, b"p").unwrap(), Some(b"1".to_vec()));
}

/// Random operation sequences leave [`MemStore`] and [`RocksStore`] with the same contents.
mod equivalence {
    use proptest::prelude::*;

    use crate::store::{Column, MemStore, RocksStore, Store, WriteBatch};

    #[derive(Clone, Debug)]
    enum Op {
        Put(Column, Vec<u8>, Vec<u8>),
        Delete(Column, Vec<u8>),
        Batch(Vec<Op>),
    }

    fn column() -> impl Strategy<Value = Column> {
        // A few columns are enough to catch cross-column leaks and keep shrinking fast.
        prop::sample::select(vec![Column::Meta, Column::Peers, Column::Revocations])
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        // A small alphabet with the edge bytes, so keys collide and share prefixes.
        let byte = prop_oneof![Just(0x00u8), Just(0x01), Just(0xfe), Just(0xff), Just(b'a')];
        prop::collection::vec(byte, 0..4)
    }

    fn single_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (column(), key(), prop::collection::vec(any::<u8>(), 0..6))
                .prop_map(|(c, k, v)| Op::Put(c, k, v)),
            1 => (column(), key()).prop_map(|(c, k)| Op::Delete(c, k)),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => single_op(),
            1 => prop::collection::vec(single_op(), 0..6).prop_map(Op::Batch),
        ]
    }

    fn apply(store: &dyn Store, op: &Op) {
        match op {
            Op::Put(c, k, v) => store.put(*c, k, v).unwrap(),
            Op::Delete(c, k) => store.delete(*c, k).unwrap(),
            Op::Batch(ops) => {
                let mut batch = WriteBatch::new();
                for op in ops {
                    match op {
                        Op::Put(c, k, v) => batch.put(*c, k.clone(), v.clone()),
                        Op::Delete(c, k) => batch.delete(*c, k.clone()),
                        Op::Batch(_) => unreachable!("batches do not nest"),
                    };
                }
                store.write(batch).unwrap();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn mem_and_rocks_agree(
            ops in prop::collection::vec(op(), 0..40),
            prefixes in prop::collection::vec(key(), 0..4),
            limit in 0usize..6,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let rocks = RocksStore::open(dir.path()).unwrap();
            let mem = MemStore::new();
            // RocksStore::open wrote the schema version; mirror it.
            for (k, v) in rocks.scan_prefix(Column::Meta, b"", usize::MAX).unwrap() {
                mem.put(Column::Meta, &k, &v).unwrap();
            }
            for op in &ops {
                apply(&rocks, op);
                apply(&mem, op);
            }
            let fixed: [&[u8]; 5] = [b"", b"\x00", b"\x01", b"\xfe", b"\xff"];
            let all_prefixes = fixed.iter().map(|p| p.to_vec()).chain(prefixes);
            for prefix in all_prefixes {
                for col in Column::ALL {
                    for lim in [limit, usize::MAX] {
                        prop_assert_eq!(
                            rocks.scan_prefix(col, &prefix, lim).unwrap(),
                            mem.scan_prefix(col, &prefix, lim).unwrap(),
                            "column {} prefix {:02x?} limit {}", col, prefix, lim
                        );
                    }
                }
            }
            for op in &ops {
                if let Op::Put(c, k, _) | Op::Delete(c, k) = op {
                    prop_assert_eq!(rocks.get(*c, k).unwrap(), mem.get(*c, k).unwrap());
                }
            }
        }
    }
}

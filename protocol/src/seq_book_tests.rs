//! The convergence property both books are tested for, written once: any delivery order
//! (and duplication) of the same entries and withdrawals gives the same book, and that book
//! is what the rule says. Each book's tests supply how to build and apply its messages.

use core::fmt::Debug;
use core::ops::Range;
use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// An event delivered by gossip: an entry or a withdrawal under a test key `K`, with its
/// sequence number.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event<K> {
    /// An entry.
    Put(K, u64),
    /// A withdrawal of everything up to the seq.
    Withdraw(K, u64),
}

/// Events over `keys` and `seqs`, `len` of them at most, with distinct (key, seq) pairs so
/// no two events tie.
pub(crate) fn events<K: Ord + Copy + Debug>(
    keys: impl Strategy<Value = K>,
    seqs: Range<u64>,
    len: Range<usize>,
) -> impl Strategy<Value = Vec<Event<K>>> {
    proptest::collection::btree_set((keys, seqs, any::<bool>()), len).prop_map(|set| {
        let mut seen = BTreeSet::new();
        set.into_iter()
            .filter(|(k, s, _)| seen.insert((*k, *s)))
            .map(|(k, s, withdraw)| {
                if withdraw {
                    Event::Withdraw(k, s)
                } else {
                    Event::Put(k, s)
                }
            })
            .collect()
    })
}

/// `evs` in a deterministic shuffle from `seed`, then all of them again in order.
fn shuffled_twice<K: Copy>(evs: &[Event<K>], seed: u64) -> Vec<Event<K>> {
    let mut shuffled = evs.to_vec();
    let mut x = seed | 1;
    for i in (1..shuffled.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        shuffled.swap(i, (x % (i as u64 + 1)) as usize);
    }
    shuffled.extend(evs.iter().copied());
    shuffled
}

/// The rule: per key, the highest-seq entry unless a withdrawal covers it.
fn expected<K: Ord + Copy>(evs: &[Event<K>]) -> BTreeMap<K, u64> {
    let mut best = BTreeMap::new();
    let mut withdrawn = BTreeMap::new();
    for e in evs {
        let (map, k, s) = match *e {
            Event::Put(k, s) => (&mut best, k, s),
            Event::Withdraw(k, s) => (&mut withdrawn, k, s),
        };
        let seq = map.entry(k).or_insert(s);
        *seq = (*seq).max(s);
    }
    best.retain(|k, s| withdrawn.get(k).is_none_or(|w| *s > *w));
    best
}

/// Checks the property for `evs`: `run` (events into a fresh book, out its held (key, seq)
/// pairs in book order) gives the same for `evs` as for a `seed`-shuffled, duplicated
/// delivery, and that is [`expected`], its keys named by `key_of`.
pub(crate) fn check_converges<K: Ord + Copy, S: Ord + Debug>(
    evs: &[Event<K>],
    seed: u64,
    run: impl Fn(&[Event<K>]) -> Vec<(S, u64)>,
    key_of: impl Fn(K) -> S,
) -> Result<(), TestCaseError> {
    let held = run(evs);
    prop_assert_eq!(&held, &run(&shuffled_twice(evs, seed)));
    let rule: BTreeMap<S, u64> = expected(evs)
        .into_iter()
        .map(|(k, s)| (key_of(k), s))
        .collect();
    prop_assert_eq!(held, rule.into_iter().collect::<Vec<_>>());
    Ok(())
}

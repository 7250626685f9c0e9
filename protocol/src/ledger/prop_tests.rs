//! Convergence properties: random DAGs built by a few nodes that append, gossip partially
//! and sometimes fork, then delivered to fresh replicas in random orders, with duplicates,
//! or split between two partitions that later sync: every replica ends with the same
//! accepted set and state hash, nothing left pending, and every forking author marked.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::test_support::{id, key, log, rating, t};
use super::*;
use crate::cofactored::Cofactored;
use crate::id::AgoraId;
use crate::signed::{Digest, Ed25519, Signed};

const NODES: u8 = 4;

#[derive(Debug, Clone, Copy)]
enum Step {
    /// Node appends a fact.
    Append(u8),
    /// Node `from` sends `to` the entries selected by `bits` (cycled over its entries).
    Gossip { from: u8, to: u8, bits: u64 },
    /// Node signs a second entry with its tip's seq and links.
    Fork(u8),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        6 => (0..NODES).prop_map(Step::Append),
        3 => (0..NODES, 0..NODES, any::<u64>())
            .prop_map(|(from, to, bits)| Step::Gossip { from, to, bits }),
        1 => (0..NODES).prop_map(Step::Fork),
    ];
    proptest::collection::vec(step, 1..64)
}

/// Every entry the nodes made, and the authors that forked.
struct World {
    entries: BTreeMap<Digest, Vec<u8>>,
    forked: BTreeSet<AgoraId>,
}

fn build(steps: &[Step]) -> Result<World, TestCaseError> {
    let mut nodes: Vec<EvidenceLog> = (0..NODES).map(|_| log()).collect();
    let mut world = World {
        entries: BTreeMap::new(),
        forked: BTreeSet::new(),
    };
    let mut forks: Vec<(Digest, Digest, AgoraId)> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let now = t(i as u64);
        match *step {
            Step::Append(n) => {
                let node = &mut nodes[usize::from(n)];
                let e = node.append(now, &key(n + 1), rating(i as u64)).unwrap();
                world.entries.insert(e.digest(), e.as_bytes().to_vec());
            }
            Step::Gossip { from, to, bits } => {
                let sent: Vec<Signed<Entry>> = nodes[usize::from(from)].iter().cloned().collect();
                for (j, e) in sent.into_iter().enumerate() {
                    if bits >> (j % 64) & 1 == 1 {
                        let outcome = nodes[usize::from(to)].insert(now, e);
                        prop_assert!(!matches!(outcome, Outcome::Rejected(_)), "{outcome:?}");
                    }
                }
            }
            Step::Fork(n) => {
                let author = id(n + 1);
                let node = &mut nodes[usize::from(n)];
                let Some(tip) = node.tip(&author).cloned() else {
                    continue;
                };
                let mut body = tip.body().clone();
                body.at = body.at.saturating_add(core::time::Duration::from_millis(1));
                body.fact = rating(10_000 + i as u64);
                let fork = Signed::sign(body, &key(n + 1)).unwrap();
                let outcome = node.insert(now, fork.clone());
                prop_assert!(
                    matches!(&outcome, Outcome::Inserted(a) if a.equivocators == vec![author]
                        || node_was_marked(a, &world.forked, author)),
                    "{outcome:?}"
                );
                world
                    .entries
                    .insert(fork.digest(), fork.as_bytes().to_vec());
                world.forked.insert(author);
                forks.push((tip.digest(), fork.digest(), author));
            }
        }
    }
    // Every node that holds both entries of a fork has marked their author.
    for node in &nodes {
        for (x, y, author) in &forks {
            if node.contains(x) && node.contains(y) {
                prop_assert!(node.is_equivocator(author));
            }
        }
    }
    Ok(world)
}

/// A second fork by an already marked author reports nothing new.
fn node_was_marked(accepted: &Accepted, forked: &BTreeSet<AgoraId>, author: AgoraId) -> bool {
    accepted.equivocators.is_empty() && forked.contains(&author)
}

/// `items` in a deterministic shuffle from `seed`.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut x = seed | 1;
    for i in (1..items.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        items.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

fn deliver(replica: &mut EvidenceLog, wires: &[&Vec<u8>]) -> Result<(), TestCaseError> {
    for wire in wires {
        let outcome = replica.insert_bytes(t(1000), wire, &Ed25519);
        prop_assert!(!matches!(outcome, Outcome::Rejected(_)), "{outcome:?}");
    }
    Ok(())
}

/// `to` pulls from `from` as a node would: a frontier page walk, then the announced heads
/// and whatever is still missing, by digest.
fn pull(to: &mut EvidenceLog, from: &EvidenceLog) -> Result<(), TestCaseError> {
    let now = t(2000);
    let have = to.frontier();
    let mut cursor = None;
    loop {
        let page = from.page(&have, cursor, 16);
        for e in &page.entries {
            let outcome = to.insert_bytes(now, e.as_bytes(), &Ed25519);
            prop_assert!(!matches!(outcome, Outcome::Rejected(_)), "{outcome:?}");
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    loop {
        let mut want: Vec<Digest> = from
            .heads()
            .filter(|d| !to.contains(d) && !to.is_pending(d))
            .copied()
            .collect();
        want.extend(
            to.missing(usize::MAX)
                .into_iter()
                .filter(|d| from.contains(d)),
        );
        if want.is_empty() {
            return Ok(());
        }
        want.truncate(MAX_FETCH);
        let got = from.fetch(&want);
        prop_assert!(!got.is_empty());
        for e in got {
            let outcome = to.insert(now, e);
            prop_assert!(!matches!(outcome, Outcome::Rejected(_)), "{outcome:?}");
        }
    }
}

fn strip(side: Vec<(usize, &Vec<u8>)>) -> Vec<&Vec<u8>> {
    side.into_iter().map(|(_, w)| w).collect()
}

fn assert_complete(replica: &EvidenceLog, world: &World) -> Result<(), TestCaseError> {
    let held: BTreeSet<Digest> = replica.iter().map(Signed::digest).collect();
    let made: BTreeSet<Digest> = world.entries.keys().copied().collect();
    prop_assert_eq!(held, made);
    prop_assert_eq!(replica.pending_len(), 0);
    let marked: BTreeSet<AgoraId> = replica.equivocators().copied().collect();
    prop_assert_eq!(&marked, &world.forked);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any delivery order, with every entry delivered twice, accepts everything.
    #[test]
    fn any_order_converges(steps in steps(), seeds in any::<(u64, u64)>()) {
        let world = build(&steps)?;
        let mut a = log();
        let mut b = log();
        for (replica, seed) in [(&mut a, seeds.0), (&mut b, seeds.1)] {
            let mut wires: Vec<&Vec<u8>> = world.entries.values().collect();
            wires.extend(world.entries.values());
            shuffle(&mut wires, seed);
            deliver(replica, &wires)?;
            assert_complete(replica, &world)?;
        }
        prop_assert_eq!(a.state_hash(), b.state_hash());
        prop_assert_eq!(a.heads().collect::<Vec<_>>(), b.heads().collect::<Vec<_>>());
        let order_a: Vec<Digest> = a.iter().map(Signed::digest).collect();
        let order_b: Vec<Digest> = b.iter().map(Signed::digest).collect();
        prop_assert_eq!(order_a, order_b, "the canonical order is the same everywhere");
    }

    /// Delivered in pages of random sizes through `insert_batch` (one cofactored batch per
    /// round), the entries give exactly the outcomes of `insert_bytes` one by one with strict
    /// verification, and the same state.
    #[test]
    fn pages_give_the_outcomes_of_single_entries(
        steps in steps(),
        seed in any::<u64>(),
        sizes in proptest::collection::vec(1usize..40, 1..8),
    ) {
        let world = build(&steps)?;
        let mut wires: Vec<&Vec<u8>> = world.entries.values().collect();
        wires.extend(world.entries.values());
        shuffle(&mut wires, seed);
        let mut paged = log();
        let mut single = log();
        let mut rest = wires.as_slice();
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (page, tail) = rest.split_at((*size).min(rest.len()));
            rest = tail;
            let refs: Vec<&[u8]> = page.iter().map(|w| w.as_slice()).collect();
            let together = paged.insert_batch(t(1000), &refs, &Cofactored);
            let alone: Vec<Outcome> = refs
                .iter()
                .map(|w| single.insert_bytes(t(1000), w, &Ed25519))
                .collect();
            prop_assert_eq!(together, alone);
        }
        assert_complete(&paged, &world)?;
        prop_assert_eq!(paged.state_hash(), single.state_hash());
    }

    /// Two partitions each receive part of the entries (whatever that leaves pending), then
    /// sync both ways until they agree: they end equal and complete.
    #[test]
    fn partitions_heal(steps in steps(), mask in any::<u64>(), seed in any::<u64>()) {
        let world = build(&steps)?;
        let mut wires: Vec<&Vec<u8>> = world.entries.values().collect();
        shuffle(&mut wires, seed);
        let (left, right): (Vec<_>, Vec<_>) = wires
            .into_iter()
            .enumerate()
            .partition(|(i, _)| mask >> (i % 64) & 1 == 1);
        let mut a = log();
        let mut b = log();
        deliver(&mut a, &strip(left))?;
        deliver(&mut b, &strip(right))?;
        // An entry held back at one side may wait for one held back at the other, and so
        // on: each round settles at least one more entry, as periodic syncs would.
        let mut rounds = 0;
        loop {
            pull(&mut a, &b)?;
            pull(&mut b, &a)?;
            rounds += 1;
            if a.state_hash() == b.state_hash() && a.pending_len() + b.pending_len() == 0 {
                break;
            }
            prop_assert!(rounds <= 2 * world.entries.len() + 2, "no convergence");
        }
        assert_complete(&a, &world)?;
        assert_complete(&b, &world)?;
        prop_assert_eq!(a.state_hash(), b.state_hash());
        prop_assert_eq!(a.frontier(), b.frontier());
    }
}

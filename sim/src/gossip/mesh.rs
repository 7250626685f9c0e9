//! The heartbeat's mesh maintenance and IHAVE target choice, as pure functions over peer
//! lists, scores and the run's RNG (gossipsub v1.1, section "Mesh maintenance").

use rand_core::Rng;

use crate::rng;

/// A peer as mesh maintenance sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The peer.
    pub node: u32,
    /// Its current score.
    pub score: f64,
}

/// What one heartbeat changes in one topic's mesh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshChanges {
    /// Peers to add and send GRAFT.
    pub graft: Vec<u32>,
    /// Peers to remove and send PRUNE.
    pub prune: Vec<u32>,
}

/// Mesh maintenance for one topic.
///
/// `mesh` holds the current mesh members with their scores; `candidates` the connected,
/// subscribed peers outside the mesh that are not backing off. Members with a negative
/// score are pruned; below `d_lo` the mesh grows to `d` with random non-negative
/// candidates; above `d_hi` it shrinks to `d`, keeping the `d_score` best-scoring members
/// and a random choice of the rest.
pub fn maintain(
    rng: &mut impl Rng,
    mesh: &[Candidate],
    candidates: &[Candidate],
    d: usize,
    d_lo: usize,
    d_hi: usize,
    d_score: usize,
) -> MeshChanges {
    let mut changes = MeshChanges::default();
    let degree = Degree {
        d,
        d_lo,
        d_hi,
        d_score,
    };
    maintain_into(
        rng,
        mesh,
        candidates,
        degree,
        &mut changes,
        &mut Scratch::default(),
    );
    changes
}

/// The mesh degree bounds of [`maintain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Degree {
    /// Target degree.
    pub d: usize,
    /// Graft below this.
    pub d_lo: usize,
    /// Prune above this.
    pub d_hi: usize,
    /// Best-scoring members kept when pruning.
    pub d_score: usize,
}

/// Buffers [`maintain_into`] reuses between calls.
#[derive(Debug, Clone, Default)]
pub struct Scratch {
    kept: Vec<Candidate>,
    ids: Vec<u32>,
}

/// [`maintain`] writing into `changes` (cleared first) and reusing `scratch`: the same
/// draws and the same result, without allocating once the buffers have grown.
pub fn maintain_into(
    rng: &mut impl Rng,
    mesh: &[Candidate],
    candidates: &[Candidate],
    degree: Degree,
    changes: &mut MeshChanges,
    scratch: &mut Scratch,
) {
    let Degree {
        d,
        d_lo,
        d_hi,
        d_score,
    } = degree;
    changes.graft.clear();
    changes.prune.clear();
    let kept = &mut scratch.kept;
    kept.clear();
    for member in mesh {
        if member.score < 0.0 {
            changes.prune.push(member.node);
        } else {
            kept.push(*member);
        }
    }
    if kept.len() < d_lo {
        scratch.ids.clear();
        scratch
            .ids
            .extend(candidates.iter().filter(|c| c.score >= 0.0).map(|c| c.node));
        rng::choose_into(
            rng,
            &scratch.ids,
            d.saturating_sub(kept.len()),
            &mut changes.graft,
        );
    } else if kept.len() > d_hi {
        // Best scores first; ties broken by a shuffle so no id is favoured.
        rng::shuffle(rng, kept);
        kept.sort_by(|a, b| b.score.total_cmp(&a.score));
        let keep_best = d_score.min(d);
        let (_, rest) = kept.split_at(keep_best.min(kept.len()));
        let rest_ids = &mut scratch.ids;
        rest_ids.clear();
        rest_ids.extend(rest.iter().map(|c| c.node));
        rng::shuffle(rng, rest_ids);
        let (_, dropped) = rest_ids.split_at(d.saturating_sub(keep_best).min(rest_ids.len()));
        changes.prune.extend_from_slice(dropped);
    }
}

/// How many IHAVE targets to pick from `eligible` peers: `max(d_lazy, ⌈gossip_factor ×
/// eligible⌉)` (all of them if fewer).
pub fn gossip_target_count(eligible: usize, d_lazy: usize, gossip_factor: f64) -> usize {
    let by_factor = (gossip_factor * eligible as f64).ceil() as usize;
    d_lazy.max(by_factor)
}

/// The peers to send IHAVE to: `max(d_lazy, gossip_factor × |eligible|)` of `eligible`
/// (non-mesh peers above the gossip threshold), chosen at random.
pub fn gossip_targets(
    rng: &mut impl Rng,
    eligible: &[u32],
    d_lazy: usize,
    gossip_factor: f64,
) -> Vec<u32> {
    let count = gossip_target_count(eligible.len(), d_lazy, gossip_factor);
    rng::choose(rng, eligible, count)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    fn peers(range: core::ops::Range<u32>, score: f64) -> Vec<Candidate> {
        range.map(|node| Candidate { node, score }).collect()
    }

    #[test]
    fn negative_members_go_and_the_best_stay() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut mesh = peers(0..14, 1.0);
        mesh.push(Candidate {
            node: 99,
            score: -1.0,
        });
        if let Some(best) = mesh.get_mut(13) {
            best.score = 40.0;
        }
        let changes = maintain(&mut rng, &mesh, &[], 6, 5, 12, 4);
        assert!(changes.prune.contains(&99));
        assert!(
            !changes.prune.contains(&13),
            "the best-scoring member stays"
        );
        assert_eq!(mesh.len() - changes.prune.len(), 6);
    }

    proptest! {
        #[test]
        fn the_mesh_ends_within_bounds_when_peers_suffice(
            seed: u64, in_mesh in 0u32..30, outside in 0u32..30,
        ) {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let mesh = peers(0..in_mesh, 0.0);
            let candidates = peers(100..100 + outside, 0.0);
            let c = maintain(&mut rng, &mesh, &candidates, 6, 5, 12, 4);
            let size = in_mesh as usize + c.graft.len() - c.prune.len();
            let available = (in_mesh + outside) as usize;
            if available >= 5 {
                prop_assert!((5..=12).contains(&size), "size {}", size);
            } else {
                prop_assert_eq!(size, available);
            }
            prop_assert!(c.graft.iter().all(|g| *g >= 100));
            prop_assert!(c.prune.iter().all(|p| *p < in_mesh));
            let mut all = c.graft.clone();
            all.sort_unstable();
            all.dedup();
            prop_assert_eq!(all.len(), c.graft.len());
        }

        #[test]
        fn gossip_goes_to_at_least_d_lazy(seed: u64, n in 0u32..100) {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let eligible: Vec<u32> = (0..n).collect();
            let t = gossip_targets(&mut rng, &eligible, 6, 0.25);
            prop_assert_eq!(t.len(), (n as usize).min(6.max((n as usize).div_ceil(4))));
        }
    }
}

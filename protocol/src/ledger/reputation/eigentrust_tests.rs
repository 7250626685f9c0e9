//! The EigenTrust core on hand-sized graphs.

use proptest::prelude::*;

use super::eigentrust::{ONE, Params, normalise, run};

fn params(alpha_ppb: u64, max_iterations: u32) -> Params {
    Params {
        alpha_ppb,
        max_iterations,
        epsilon_ppb: 0,
    }
}

/// The four peers of the hand computation below: their opinions `s_ij`.
fn four_peers() -> Vec<Vec<(usize, u64)>> {
    vec![
        normalise([(1, 3), (2, 1)]),
        normalise([(2, 7), (3, 7)]),
        normalise([(1, 2), (3, -5)]),
        normalise([]),
    ]
}

/// Four peers, peer 0 pre-trusted (`p = (1, 0, 0, 0)`), `a = 0.2`.
///
/// Opinions and their normalisation `c_ij = max(s_ij, 0) / Σ_k max(s_ik, 0)`:
///
/// ```text
/// peer 0: s = {1: 3, 2: 1}        c_0 = {1: 0.75, 2: 0.25}
/// peer 1: s = {2: 7, 3: 7}        c_1 = {2: 0.5,  3: 0.5}
/// peer 2: s = {1: 2, 3: -5}       c_2 = {1: 1.0}          (the negative counts as 0)
/// peer 3: no opinion              c_3 = p = {0: 1.0}       (dangling: trusts the pre-trusted)
/// ```
///
/// `t_k+1 = 0.8 · Cᵀ t_k + 0.2 · p`, from `t_0 = p`:
///
/// ```text
/// t_0 = (1,    0,    0,    0)
/// Cᵀt_0 = (0, 0.75, 0.25, 0)                       (all from peer 0)
/// t_1 = 0.8·(0, 0.75, 0.25, 0) + (0.2, 0, 0, 0)  = (0.2, 0.6, 0.2, 0)
/// Cᵀt_1: peer 0 (0.2) gives 1: 0.15, 2: 0.05; peer 1 (0.6) gives 2: 0.3, 3: 0.3;
///        peer 2 (0.2) gives 1: 0.2                = (0, 0.35, 0.35, 0.3)
/// t_2 = 0.8·(0, 0.35, 0.35, 0.3) + (0.2, 0, 0, 0) = (0.2, 0.28, 0.28, 0.24)
/// Cᵀt_2: peer 0 (0.2): 1: 0.15, 2: 0.05; peer 1 (0.28): 2: 0.14, 3: 0.14;
///        peer 2 (0.28): 1: 0.28; peer 3 (0.24) to p: 0: 0.24
///                                                 = (0.24, 0.43, 0.19, 0.14)
/// t_3 = 0.8·(0.24, 0.43, 0.19, 0.14) + (0.2, 0, 0, 0) = (0.392, 0.344, 0.152, 0.112)
/// ```
///
/// Every value is a whole number of parts per billion, so the fixed-point steps are exact.
/// The fixed point solves `t_0 = 0.2 + 0.8 t_3`, `t_1 = 0.8 (0.75 t_0 + t_2)`,
/// `t_2 = 0.8 (0.25 t_0 + 0.5 t_1)`, `t_3 = 0.4 t_1`: `t_2 = 0.2 t_0 + 0.4 t_1`, so
/// `0.68 t_1 = 0.76 t_0`, `t_1 = 19/17 t_0`, `t_3 = 7.6/17 t_0`, `t_0 (1 - 6.08/17) = 0.2`:
///
/// ```text
/// t = (85, 95, 55, 38) / 273 ≈ (0.311355, 0.347985, 0.201465, 0.139194)
/// ```
///
/// Ranking: peer 1, peer 0, peer 2, peer 3.
#[test]
fn matches_the_hand_computed_four_peer_iteration() {
    let rows = four_peers();
    assert_eq!(rows[0], vec![(1, 750_000_000), (2, 250_000_000)]);
    assert_eq!(rows[1], vec![(2, 500_000_000), (3, 500_000_000)]);
    assert_eq!(rows[2], vec![(1, ONE)]);
    assert!(rows[3].is_empty());
    let p = [(0, ONE)];
    let a = 200_000_000;
    let expected = [
        [200_000_000, 600_000_000, 200_000_000, 0],
        [200_000_000, 280_000_000, 280_000_000, 240_000_000],
        [392_000_000, 344_000_000, 152_000_000, 112_000_000],
    ];
    for (k, want) in expected.iter().enumerate() {
        let steps = u32::try_from(k + 1).unwrap();
        let t = run(&rows, &p, &params(a, steps));
        assert_eq!(t.values, want.to_vec(), "t_{steps}");
        assert_eq!(t.iterations, steps);
    }
    let fixed = run(
        &rows,
        &p,
        &Params {
            alpha_ppb: a,
            max_iterations: 500,
            epsilon_ppb: 8,
        },
    );
    assert!(fixed.converged);
    let exact = [85u64, 95, 55, 38].map(|n| n * ONE / 273);
    for (got, want) in fixed.values.iter().zip(exact) {
        assert!(got.abs_diff(want) <= 10, "{got} vs {want}");
    }
    let mut order: Vec<usize> = (0..4).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(fixed.values[i]));
    assert_eq!(order, vec![1, 0, 2, 3]);
}

#[test]
fn normalise_splits_exactly_one() {
    assert!(normalise([(0, -3), (1, 0)]).is_empty());
    assert_eq!(
        normalise([(4, 1), (4, 2)]),
        vec![(4, ONE)],
        "repeats are summed"
    );
    // Thirds: 333333333 each, the 1 left over to the lowest index (equal remainders).
    assert_eq!(
        normalise([(2, 1), (0, 1), (1, 1)]),
        vec![(0, 333_333_334), (1, 333_333_333), (2, 333_333_333)]
    );
    // Values near the top of i128 do not overflow.
    let row = normalise([(0, i128::MAX / 3), (1, i128::MAX / 3)]);
    assert_eq!(row, vec![(0, 500_000_000), (1, 500_000_000)]);
}

/// The paper's defence: peers 4, 5, 6 trust only each other, and nobody outside trusts
/// them, so whatever they say of themselves they end with nothing; trust stays with the
/// honest peers that the pre-trusted peer reaches.
#[test]
fn a_clique_without_outside_trust_gets_none() {
    let mut rows = four_peers();
    rows.push(normalise([(5, 1000), (6, 1000)]));
    rows.push(normalise([(4, 1000), (6, 1000)]));
    rows.push(normalise([(4, 1000), (5, 1000)]));
    let t = run(
        &rows,
        &[(0, ONE)],
        &Params {
            alpha_ppb: 150_000_000,
            max_iterations: 300,
            epsilon_ppb: 10,
        },
    );
    assert_eq!(&t.values[4..], &[0, 0, 0]);
    // With one honest edge into it, the clique gets a bounded share, below its source.
    rows[3] = normalise([(4, 1)]);
    let t = run(
        &rows,
        &[(0, ONE)],
        &Params {
            alpha_ppb: 150_000_000,
            max_iterations: 500,
            epsilon_ppb: 10,
        },
    );
    let clique: u64 = t.values[4..].iter().sum();
    assert!(clique > 0);
    assert!(
        t.values[4..].iter().all(|v| *v < t.values[1]),
        "{:?}",
        t.values
    );
}

proptest! {
    /// Any opinions: rows sum to exactly ONE, trust never exceeds ONE in all, and the run
    /// is a pure function of its input.
    #[test]
    fn trust_is_bounded_and_deterministic(
        opinions in proptest::collection::vec(
            proptest::collection::vec((0usize..8, -50i128..1000), 0..6), 1..8),
        alpha in 1u64..=ONE,
    ) {
        let n = opinions.len();
        let rows: Vec<_> = opinions
            .iter()
            .map(|o| normalise(o.iter().map(|(j, s)| (j % n, *s))))
            .collect();
        for row in &rows {
            let sum: u64 = row.iter().map(|(_, c)| c).sum();
            prop_assert!(row.is_empty() || sum == ONE);
        }
        let p = [(0, ONE)];
        let params = Params { alpha_ppb: alpha, max_iterations: 50, epsilon_ppb: 0 };
        let t = run(&rows, &p, &params);
        let total: u64 = t.values.iter().sum();
        prop_assert!(total <= ONE);
        // Rounding down loses at most one part per peer per step.
        prop_assert!(ONE - total <= 50 * (n as u64 + 1));
        prop_assert_eq!(t, run(&rows, &p, &params));
    }
}

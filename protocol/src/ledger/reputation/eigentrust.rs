//! EigenTrust (Kamvar, Schlosser, Garcia-Molina 2003) in fixed-point integers.
//!
//! ```text
//! c_ij   = max(s_ij, 0) / Σ_k max(s_ik, 0)        (a truster with no positive opinion: c_i = p)
//! t_0    = p
//! t_k+1  = (1 - a) · Cᵀ t_k + a · p
//! ```
//!
//! `s_ij` is what peer `i` thinks of peer `j` (any signed integers), `p` the pre-trusted
//! distribution and `a` the weight of the restart to `p`: trust flows from the pre-trusted
//! peers along opinions, and a group that only rates itself receives only what flows into it
//! from outside.
//!
//! # Why integers
//!
//! Every replica must rank alike, bit for bit. Trust values are `u64` parts per billion of
//! all trust ([`ONE`]); opinions are normalised per truster by the largest-remainder method
//! (each row sums to exactly `ONE`); one step accumulates `t_i · c_ij` in `u128` (at most
//! `ONE²` per peer) and divides once, rounding down. Integer arithmetic has one result on
//! every machine and compiler, with no NaN, no fused multiply-add and no summation-order
//! caveat; f64 with a fixed order would likely agree on x86-64 and ARM too, but only as long
//! as nothing (a compiler flag, a library's `mul_add`) changes the rounding. Rounding down
//! loses at most one part per billion per peer per step, so the total stays within
//! `n · steps` parts per billion of `ONE`.

/// All trust, in parts per billion: trust values and normalised opinions are fractions of it.
pub const ONE: u64 = 1_000_000_000;

const ONE_WIDE: u128 = ONE as u128;

/// How the iteration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// The restart weight `a`, parts per billion (0 < a ≤ [`ONE`]).
    pub alpha_ppb: u64,
    /// Stop after this many steps at most.
    pub max_iterations: u32,
    /// Stop earlier once a step moves the trust vector by at most this much (L1, parts per
    /// billion).
    pub epsilon_ppb: u64,
}

/// The iteration's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    /// Global trust per peer, parts per billion of all trust.
    pub values: Vec<u64>,
    /// Steps taken.
    pub iterations: u32,
    /// Whether the last step moved the vector by at most `epsilon_ppb`.
    pub converged: bool,
}

/// One truster's normalised opinions: `(peer, c_ij)` with `c_ij` in parts per billion,
/// summing to exactly [`ONE`], or empty when the truster has no positive opinion.
pub type Row = Vec<(usize, u64)>;

/// Normalises one truster's opinions `s_ij`: negatives count as zero, the positives are
/// divided by their sum, and the parts per billion lost to rounding go one each to the
/// largest remainders (ties to the lower peer index), so the row sums to exactly [`ONE`].
/// Repeated peers are summed. Empty when no opinion is positive.
pub fn normalise(opinions: impl IntoIterator<Item = (usize, i128)>) -> Row {
    let mut summed: std::collections::BTreeMap<usize, i128> = std::collections::BTreeMap::new();
    for (peer, s) in opinions {
        let v = summed.entry(peer).or_insert(0);
        *v = v.saturating_add(s);
    }
    let positive: Vec<(usize, u128)> = summed
        .into_iter()
        .filter_map(|(peer, s)| u128::try_from(s).ok().filter(|s| *s > 0).map(|s| (peer, s)))
        .collect();
    let total = positive
        .iter()
        .fold(0u128, |acc, (_, s)| acc.saturating_add(*s));
    if total == 0 {
        return Vec::new();
    }
    // Keep s · ONE within u128: shift everything right until the total fits in 96 bits.
    let shift = 128u32
        .saturating_sub(total.leading_zeros())
        .saturating_sub(96);
    let total = (total >> shift).max(1);
    let mut row: Vec<(usize, u64, u128)> = positive
        .into_iter()
        .map(|(peer, s)| {
            let scaled = (s >> shift).saturating_mul(ONE_WIDE);
            let share = u64::try_from(scaled / total).unwrap_or(ONE);
            (peer, share, scaled % total)
        })
        .collect();
    let given: u64 = row.iter().map(|(_, c, _)| *c).sum();
    let mut left = ONE.saturating_sub(given);
    if left > 0 {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&x, &y| {
            let (rx, ry) = (row.get(x).map(|r| r.2), row.get(y).map(|r| r.2));
            ry.cmp(&rx).then(x.cmp(&y))
        });
        for i in order.into_iter().cycle() {
            if left == 0 {
                break;
            }
            if let Some(entry) = row.get_mut(i) {
                entry.1 += 1;
                left -= 1;
            }
        }
    }
    row.into_iter().map(|(peer, c, _)| (peer, c)).collect()
}

/// Runs the iteration over `rows` (one per peer, from [`normalise`]) from `t_0 = p`, where
/// `pretrusted` is `p` as `(peer, p_j)` summing to [`ONE`]. A peer whose row is empty gives
/// its trust to `p`, as in the paper. Peers beyond `rows.len()` named in `rows` or
/// `pretrusted` are ignored.
pub fn run(rows: &[Row], pretrusted: &[(usize, u64)], params: &Params) -> Trust {
    let n = rows.len();
    let alpha = u128::from(params.alpha_ppb.min(ONE));
    let mut t: Vec<u64> = vec![0; n];
    for (j, p) in pretrusted {
        if let Some(v) = t.get_mut(*j) {
            *v = v.saturating_add(*p);
        }
    }
    let restart: Vec<u64> = {
        let mut r = vec![0u64; n];
        for (j, p) in pretrusted {
            if let Some(v) = r.get_mut(*j) {
                // a · p_j, rounded down.
                *v =
                    v.saturating_add(u64::try_from(alpha * u128::from(*p) / ONE_WIDE).unwrap_or(0));
            }
        }
        r
    };
    let mut iterations = 0;
    let mut converged = false;
    while iterations < params.max_iterations {
        let next = step(rows, pretrusted, &t, alpha, &restart);
        let moved: u64 = next
            .iter()
            .zip(&t)
            .fold(0u64, |acc, (a, b)| acc.saturating_add(a.abs_diff(*b)));
        t = next;
        iterations += 1;
        if moved <= params.epsilon_ppb {
            converged = true;
            break;
        }
    }
    Trust {
        values: t,
        iterations,
        converged,
    }
}

/// One step: `t' = (1 - a) · Cᵀ t + a · p`, peers in index order, rounding down once per peer.
fn step(
    rows: &[Row],
    pretrusted: &[(usize, u64)],
    t: &[u64],
    alpha: u128,
    restart: &[u64],
) -> Vec<u64> {
    let mut acc = vec![0u128; t.len()];
    let mut dangling: u128 = 0;
    for (row, ti) in rows.iter().zip(t) {
        let ti = u128::from(*ti);
        if row.is_empty() {
            dangling += ti;
            continue;
        }
        for (j, c) in row {
            if let Some(a) = acc.get_mut(*j) {
                *a += ti * u128::from(*c);
            }
        }
    }
    for (j, p) in pretrusted {
        if let Some(a) = acc.get_mut(*j) {
            *a += dangling * u128::from(*p);
        }
    }
    let keep = ONE_WIDE - alpha;
    acc.iter()
        .zip(restart)
        .map(|(a, r)| {
            // a ≤ ONE² and keep ≤ ONE: at most 10^27, far below u128::MAX.
            let moved = u64::try_from(a * keep / (ONE_WIDE * ONE_WIDE)).unwrap_or(ONE);
            moved.saturating_add(*r)
        })
        .collect()
}

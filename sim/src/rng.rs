//! Draws from the run's single seeded RNG: uniform, normal, exponential, choices.
//!
//! Everything random in a run goes through these helpers and the engine's one
//! [`ChaCha20Rng`](rand_chacha::ChaCha20Rng), so a seed fixes the whole run. Integer draws
//! use Lemire's unbiased multiply-and-reject method; floats carry 53 random bits.

use rand_core::Rng;

/// A uniform `f64` in `[0, 1)`.
pub fn unit(rng: &mut impl Rng) -> f64 {
    // The top 53 bits fill an f64 mantissa exactly.
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform integer in `[0, n)`; `0` when `n` is zero.
pub fn below(rng: &mut impl Rng, n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let mut product = u128::from(rng.next_u64()) * u128::from(n);
    let mut low = product as u64;
    if low < n {
        let threshold = n.wrapping_neg() % n;
        while low < threshold {
            product = u128::from(rng.next_u64()) * u128::from(n);
            low = product as u64;
        }
    }
    (product >> 64) as u64
}

/// A uniform index in `[0, len)`; `0` when `len` is zero.
pub fn index(rng: &mut impl Rng, len: usize) -> usize {
    below(rng, len as u64) as usize
}

/// `true` with probability `p` (never for `p <= 0`, always for `p >= 1`).
pub fn chance(rng: &mut impl Rng, p: f64) -> bool {
    p > 0.0 && unit(rng) < p
}

/// A standard normal draw (Box-Muller).
pub fn standard_normal(rng: &mut impl Rng) -> f64 {
    // 1 - unit lies in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - unit(rng);
    let u2 = unit(rng);
    (-2.0 * u1.ln()).sqrt() * (core::f64::consts::TAU * u2).cos()
}

/// An exponential draw with the given mean.
pub fn exponential(rng: &mut impl Rng, mean: f64) -> f64 {
    -mean * (1.0 - unit(rng)).ln()
}

/// Shuffles `items` in place (Fisher-Yates).
pub fn shuffle<T>(rng: &mut impl Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = index(rng, i + 1);
        items.swap(i, j);
    }
}

/// Up to `k` distinct elements of `items`, chosen uniformly, in random order.
pub fn choose<T: Copy>(rng: &mut impl Rng, items: &[T], k: usize) -> Vec<T> {
    let mut pool = Vec::with_capacity(items.len());
    choose_into(rng, items, k, &mut pool);
    pool
}

/// [`choose`] into `out` (cleared first), reusing its buffer; the same draws.
pub fn choose_into<T: Copy>(rng: &mut impl Rng, items: &[T], k: usize, out: &mut Vec<T>) {
    out.clear();
    out.extend_from_slice(items);
    let k = k.min(out.len());
    for i in 0..k {
        let j = i + index(rng, out.len() - i);
        out.swap(i, j);
    }
    out.truncate(k);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    proptest! {
        #[test]
        fn below_stays_in_range(seed: u64, n in 1u64..1_000_000) {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            for _ in 0..20 {
                prop_assert!(below(&mut rng, n) < n);
            }
        }

        #[test]
        fn choose_gives_distinct_members(seed: u64, len in 0usize..50, k in 0usize..60) {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let items: Vec<usize> = (0..len).collect();
            let mut picked = choose(&mut rng, &items, k);
            prop_assert_eq!(picked.len(), k.min(len));
            picked.sort_unstable();
            picked.dedup();
            prop_assert_eq!(picked.len(), k.min(len));
        }
    }

    #[test]
    fn unit_and_normal_have_sane_moments() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let n = 20_000;
        let mean_unit: f64 = (0..n).map(|_| unit(&mut rng)).sum::<f64>() / f64::from(n);
        assert!((mean_unit - 0.5).abs() < 0.02, "{mean_unit}");
        let normals: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();
        let mean = normals.iter().sum::<f64>() / f64::from(n);
        let var = normals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / f64::from(n);
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
        let exp_mean = (0..n).map(|_| exponential(&mut rng, 3.0)).sum::<f64>() / f64::from(n);
        assert!((exp_mean - 3.0).abs() < 0.15, "{exp_mean}");
        assert_eq!(below(&mut rng, 0), 0);
        assert!(!chance(&mut rng, 0.0));
        assert!(chance(&mut rng, 1.0));
    }
}

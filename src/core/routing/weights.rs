//! Weighted choice: one index drawn in proportion to non-negative weights.
//!
//! The random number is injected (uniform in `[0, 1)`), so a test that seeds
//! [`SplitMix64`](crate::core::rng::SplitMix64) gets the same picks every run.

/// Index of the weight that `random` (uniform in `[0, 1)`) falls on when the
/// weights are laid end to end on `[0, total)`.
///
/// Weights that are zero, negative or not finite are never picked. Returns
/// `None` only when no weight is positive. `random` outside `[0, 1)` (or
/// NaN) is clamped, so a faulty random source skews the choice but never
/// fails it.
pub fn pick(weights: &[f64], random: f64) -> Option<usize> {
    let usable = |w: f64| w.is_finite() && w > 0.0;
    let total: f64 = weights.iter().copied().filter(|&w| usable(w)).sum();
    if !(total.is_finite() && total > 0.0) {
        return None;
    }
    let random = if random.is_nan() {
        0.0
    } else {
        random.clamp(0.0, 1.0)
    };
    let target = random * total;
    let mut cumulative = 0.0;
    let mut last = None;
    for (i, &w) in weights.iter().enumerate() {
        if !usable(w) {
            continue;
        }
        cumulative += w;
        if target < cumulative {
            return Some(i);
        }
        last = Some(i);
    }
    // Rounding (or random == 1.0) can leave `target` at the very end.
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rng::SplitMix64;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Counts of `n` picks over `weights` with a fixed seed.
    fn counts(weights: &[f64], n: usize, seed: u64) -> Vec<usize> {
        let mut rng = SplitMix64::new(seed);
        let mut counts = vec![0; weights.len()];
        for _ in 0..n {
            counts[pick(weights, rng.next_f64()).unwrap()] += 1;
        }
        counts
    }

    /// `count` is within 4 standard deviations of Binomial(n, p).
    fn within_4_sigma(count: usize, n: usize, p: f64) -> bool {
        let mean = n as f64 * p;
        let sigma = (n as f64 * p * (1.0 - p)).sqrt();
        (count as f64 - mean).abs() <= 4.0 * sigma
    }

    #[test]
    fn proportions_follow_weights_within_binomial_bounds() {
        let weights = [60.0, 35.0, 5.0];
        let n = 100_000;
        for seed in [1, 42, 0xC0FFEE] {
            let c = counts(&weights, n, seed);
            for (i, &w) in weights.iter().enumerate() {
                assert!(within_4_sigma(c[i], n, w / 100.0), "seed {seed}: {c:?}");
            }
        }
    }

    #[test]
    fn unusable_weights_are_never_picked() {
        let weights = [0.0, 3.0, -1.0, f64::NAN, f64::INFINITY, 1.0];
        let c = counts(&weights, 10_000, 7);
        assert_eq!((c[0], c[2], c[3], c[4]), (0, 0, 0, 0));
        assert!(within_4_sigma(c[1], 10_000, 0.75), "{c:?}");
    }

    #[test]
    fn edges_of_the_unit_interval() {
        let weights = [1.0, 0.0, 1.0, 0.0];
        assert_eq!(pick(&weights, 0.0), Some(0));
        assert_eq!(pick(&weights, 0.499_999), Some(0));
        assert_eq!(pick(&weights, 0.5), Some(2));
        assert_eq!(pick(&weights, 1.0 - f64::EPSILON), Some(2));
        // Out-of-range randoms are clamped, not refused.
        assert_eq!(pick(&weights, 1.0), Some(2));
        assert_eq!(pick(&weights, 7.0), Some(2));
        assert_eq!(pick(&weights, -3.0), Some(0));
        assert_eq!(pick(&weights, f64::NAN), Some(0));
    }

    #[test]
    fn nothing_to_pick() {
        assert_eq!(pick(&[], 0.5), None);
        assert_eq!(pick(&[0.0, 0.0], 0.5), None);
        assert_eq!(pick(&[f64::NAN], 0.5), None);
    }

    #[test]
    fn single_weight_always_wins() {
        let mut rng = SplitMix64::new(3);
        for _ in 0..1000 {
            assert_eq!(pick(&[5.0], rng.next_f64()), Some(0));
        }
    }
}

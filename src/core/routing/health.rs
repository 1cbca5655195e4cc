//! Per-cluster health: a smoothed latency, a health factor in
//! `[MIN_HEALTH, 1]` that multiplies the configured weight, and the time of
//! the last observation. The algorithm and why its constants are what they
//! are is documented in the parent module.

/// Smoothing of the latency EWMA: each sample moves it by a fifth of the
/// gap, an effective window of about 9 samples.
pub const EWMA_ALPHA: f64 = 0.2;
/// Multiplicative cut per unhealthy observation.
pub const CUT_FACTOR: f64 = 0.5;
/// Additive recovery per healthy observation (share of the configured weight).
pub const RECOVERY_STEP: f64 = 0.1;
/// Probe floor: a cut cluster keeps this share of its configured weight.
pub const MIN_HEALTH: f64 = 0.05;
/// Without observations the deficit `1 - health` halves every this many ms.
pub const RECOVERY_HALF_LIFE_MS: u64 = 30_000;
/// A latency average older than this is forgotten: the next sample restarts it.
pub const LATENCY_STALE_MS: u64 = 30_000;
/// Below this health a cluster counts as unhealthy; when every cluster is,
/// the configured weights are used.
pub const UNHEALTHY_BELOW: f64 = 0.5;

/// What one observation did to a cluster's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Failed, or slow on top of a slow average: health × [`CUT_FACTOR`].
    Cut,
    /// Slow, but the average is still within the SLA (a one-off outlier).
    Hold,
    /// Within the SLA and not failed: health + [`RECOVERY_STEP`].
    Recover,
}

/// One cluster's shared state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterHealth {
    /// Multiplier of the configured weight, in `[MIN_HEALTH, 1]`, as of `last_ms`.
    pub health: f64,
    /// Smoothed latency of successful responses (ms); meaningful when `samples > 0`.
    pub latency_ewma_ms: f64,
    /// Latency samples in the current average (saturating); 0 = no average.
    pub samples: u16,
    /// Clock of the last observation (ms); 0 = never observed.
    pub last_ms: u64,
}

impl Default for ClusterHealth {
    fn default() -> Self {
        Self {
            health: 1.0,
            latency_ewma_ms: 0.0,
            samples: 0,
            last_ms: 0,
        }
    }
}

impl ClusterHealth {
    /// Health at `now_ms`: the stored value with its deficit decayed by the
    /// time elapsed since the last observation (stale state drifts back to
    /// the configured weight).
    pub fn health_at(&self, now_ms: u64) -> f64 {
        let health = self.health.clamp(MIN_HEALTH, 1.0);
        if self.last_ms == 0 {
            return health;
        }
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64;
        let remaining = (-elapsed / RECOVERY_HALF_LIFE_MS as f64).exp2();
        (1.0 - (1.0 - health) * remaining).clamp(MIN_HEALTH, 1.0)
    }

    /// Feeds one response back. `sla_ms` is the cluster's `latency_sla_ms`.
    pub fn observe(
        &mut self,
        latency_ms: u64,
        failed: bool,
        sla_ms: Option<u64>,
        now_ms: u64,
    ) -> Verdict {
        let health = self.health_at(now_ms);
        let stale = self.last_ms == 0 || now_ms.saturating_sub(self.last_ms) > LATENCY_STALE_MS;
        if stale {
            self.samples = 0;
        }
        let sample = latency_ms as f64;
        // A failure's latency says nothing about the cluster's speed (a fast
        // 503 would flatter a slow cluster, a timeout is the timeout), so
        // only successful responses feed the average.
        if !failed {
            self.latency_ewma_ms = if self.samples == 0 {
                sample
            } else {
                self.latency_ewma_ms + EWMA_ALPHA * (sample - self.latency_ewma_ms)
            };
            self.samples = self.samples.saturating_add(1);
        }
        let verdict = match sla_ms {
            _ if failed => Verdict::Cut,
            Some(sla) if latency_ms > sla => {
                let sla = sla as f64;
                if self.samples > 0 && self.latency_ewma_ms > sla {
                    Verdict::Cut
                } else {
                    Verdict::Hold
                }
            }
            _ => Verdict::Recover,
        };
        self.health = match verdict {
            Verdict::Cut => (health * CUT_FACTOR).max(MIN_HEALTH),
            Verdict::Hold => health,
            Verdict::Recover => (health + RECOVERY_STEP).min(1.0),
        };
        self.last_ms = now_ms.max(1);
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const SLA: Option<u64> = Some(150);

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn sustained_slowness_halves_health_down_to_the_floor() {
        let mut h = ClusterHealth::default();
        let mut now = 1_000;
        for _ in 0..20 {
            h.observe(50, false, SLA, now);
            now += 10;
        }
        assert!(close(h.health_at(now), 1.0));
        // 3x the SLA: the first slow sample moves the average 50 -> 130
        // (held as an outlier), the second to 194 and from then on every
        // slow sample cuts.
        let mut curve = Vec::new();
        for _ in 0..8 {
            let verdict = h.observe(450, false, SLA, now);
            curve.push((verdict, h.health));
        }
        assert_eq!(curve[0].0, Verdict::Hold);
        let expected = [
            1.0, 0.5, 0.25, 0.125, 0.0625, MIN_HEALTH, MIN_HEALTH, MIN_HEALTH,
        ];
        for (i, (&(_, got), want)) in curve.iter().zip(expected).enumerate() {
            assert!(close(got, want), "step {i}: {curve:?}");
        }
    }

    #[test]
    fn a_single_outlier_is_held_not_cut() {
        let mut h = ClusterHealth::default();
        for t in 1..=10 {
            h.observe(50, false, SLA, t);
        }
        assert_eq!(h.observe(450, false, SLA, 11), Verdict::Hold);
        assert!(close(h.health, 1.0));
        assert_eq!(h.observe(50, false, SLA, 12), Verdict::Recover);
    }

    #[test]
    fn recovery_is_additive_ten_healthy_observations_from_the_floor() {
        let mut h = ClusterHealth {
            health: MIN_HEALTH,
            latency_ewma_ms: 450.0,
            samples: 9,
            last_ms: 1_000,
        };
        let mut curve = Vec::new();
        for _ in 0..10 {
            // Same instant: no time-based recovery mixed in.
            assert_eq!(h.observe(50, false, SLA, 1_000), Verdict::Recover);
            curve.push(h.health);
        }
        for (i, got) in curve.iter().enumerate() {
            let want = (MIN_HEALTH + RECOVERY_STEP * (i + 1) as f64).min(1.0);
            assert!(close(*got, want), "step {i}: {curve:?}");
        }
        assert!(close(h.health, 1.0));
    }

    #[test]
    fn failures_cut_whatever_the_latency() {
        let mut h = ClusterHealth::default();
        assert_eq!(h.observe(5, true, None, 1), Verdict::Cut);
        assert!(close(h.health, 0.5));
        assert_eq!(h.observe(5, true, SLA, 1), Verdict::Cut);
        assert!(close(h.health, 0.25));
        // Failed samples do not feed the latency average.
        assert_eq!(h.samples, 0);
        assert_eq!(h.observe(5, false, None, 1), Verdict::Recover);
        assert!(close(h.health, 0.35));
        assert!(close(h.latency_ewma_ms, 5.0));
    }

    #[test]
    fn without_an_sla_latency_never_cuts() {
        let mut h = ClusterHealth::default();
        for t in 1..=50 {
            assert_eq!(h.observe(60_000, false, None, t), Verdict::Recover);
        }
        assert!(close(h.health, 1.0));
    }

    #[test]
    fn the_first_sample_of_a_fresh_cluster_is_its_average() {
        let mut h = ClusterHealth::default();
        assert_eq!(h.observe(450, false, SLA, 5), Verdict::Cut);
        assert!(close(h.latency_ewma_ms, 450.0));
    }

    #[test]
    fn deficit_halves_every_half_life_without_observations() {
        let h = ClusterHealth {
            health: MIN_HEALTH,
            latency_ewma_ms: 450.0,
            samples: 3,
            last_ms: 10_000,
        };
        assert!(close(h.health_at(10_000), MIN_HEALTH));
        // Time going backwards (another worker wrote later) is no time at all.
        assert!(close(h.health_at(5_000), MIN_HEALTH));
        let deficit = 1.0 - MIN_HEALTH;
        assert!(close(
            h.health_at(10_000 + RECOVERY_HALF_LIFE_MS),
            1.0 - deficit / 2.0
        ));
        assert!(close(
            h.health_at(10_000 + 2 * RECOVERY_HALF_LIFE_MS),
            1.0 - deficit / 4.0
        ));
        assert!(h.health_at(10_000 + 10 * RECOVERY_HALF_LIFE_MS) > 0.999);
    }

    #[test]
    fn a_stale_average_is_forgotten() {
        let mut h = ClusterHealth::default();
        for t in 1..=20 {
            h.observe(450, false, SLA, t);
        }
        assert!(h.latency_ewma_ms > 400.0);
        let later = 20 + LATENCY_STALE_MS + 1;
        assert_eq!(h.observe(50, false, SLA, later), Verdict::Recover);
        assert!(close(h.latency_ewma_ms, 50.0));
        assert_eq!(h.samples, 1);
    }

    #[test]
    fn health_is_clamped_even_if_the_stored_value_is_not() {
        let h = ClusterHealth {
            health: 7.0,
            ..ClusterHealth::default()
        };
        assert!(close(h.health_at(1), 1.0));
        let h = ClusterHealth {
            health: 0.0,
            ..ClusterHealth::default()
        };
        assert!(close(h.health_at(1), MIN_HEALTH));
    }
}

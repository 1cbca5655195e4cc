//! Weighted, latency-aware routing (SPEC `routing.clusters`).
//!
//! For each callback of a channel the filter calls [`RoutingPolicy::choose`]
//! and writes the returned cluster name into the routing header; when the
//! response headers arrive (or the stream resets / times out) it calls
//! [`RoutingPolicy::observe`] with the latency and whether it failed.
//!
//! # Algorithm
//!
//! Each cluster's *effective weight* is its configured `weight` times a
//! *health* factor `h` in `[0.05, 1]`; a callback goes to cluster `i` with
//! probability `weight_i * h_i / Σ weight_j * h_j`. The health of every
//! cluster of a channel lives in one shared-data value (`cg:route:<channel>`,
//! 6 + 16 bytes per cluster, at most 32 clusters), updated with a bounded
//! compare-and-swap loop, so all worker threads of one Envoy steer together.
//!
//! Per observation of cluster `i` (latency `L`, SLA `S` = `latency_sla_ms`):
//!
//! 1. *Time recovery first*: the deficit `1 - h` halves for every 30 s since
//!    the cluster's last observation.
//! 2. *Smoothed latency*: successful responses update an EWMA,
//!    `avg += 0.2 * (L - avg)` (≈ the last 9 samples). Failed ones do not: a
//!    fast 503 would flatter a slow cluster. An average with no update for
//!    30 s is forgotten; the next sample restarts it.
//! 3. *Verdict*:
//!    - failed (5xx, reset, local timeout) → **cut**: `h = max(0.05, h / 2)`;
//!    - `L > S` and `avg > S` (slow, and slow on average) → **cut**;
//!    - `L > S` but `avg <= S` (a one-off outlier) → **hold**;
//!    - otherwise (within SLA, or no SLA configured) → **recover**:
//!      `h = min(1, h + 0.1)`.
//!
//! When choosing, each `h` is first decayed toward 1 by the time since its
//! last observation (step 1, read-only). If *every* cluster has `h < 0.5`
//! the configured weights are used unchanged: there is no healthier place
//! to send traffic, and steering among equally bad clusters would only pile
//! load on one of them. With a single cluster, or when shared data cannot
//! be read or holds a value that does not decode (other version, other
//! cluster list after a configuration change, garbage), the configured
//! weights are used too: routing state never fails a request.
//!
//! # Why these constants
//!
//! - **Halve on bad, add 0.1 on good** (AIMD, as TCP congestion control):
//!   load leaves a sick cluster fast — five cuts take it from 1 to the floor
//!   — and comes back in measured steps, ten healthy observations from the
//!   floor to full weight, so one lucky response cannot flood a cluster
//!   that just recovered. One stray 5xx costs a healthy cluster half its
//!   share for about five observations; a steady 1% error rate barely
//!   moves it.
//! - **Floor 0.05** (5% of the configured weight, above the 2% minimum we
//!   set ourselves): a cut cluster keeps a probe share, so the observations
//!   that prove it recovered keep arriving.
//! - **EWMA 0.2 with hold**: a single slow response does not cut (it moves
//!   the average a fifth of the way); a sustained 3× SLA is caught on its
//!   second sample, a 1.2× SLA on about its seventh.
//! - **30 s half-life / 30 s stale latency**: between observations that
//!   arrive milliseconds apart it is negligible (0.2% per 100 ms), but a
//!   channel that goes quiet drifts back to the configured weights
//!   (94% of the way after two minutes), and a cluster at the floor that
//!   sees too little traffic to be probed is gradually offered more.
//! - **All unhealthy below 0.5**: at least one net cut; the configured
//!   split is the operator's intent when nothing is better.
//!
//! Reaction, measured by the tests (60/35/5, SLA 150/200/250 ms, the others
//! at half their SLA, one callback every 20 ms): when region-a turns slow
//! at 3× its SLA its share is 60% after its 1st slow response (held),
//! 43% after the 2nd, 27%, 16%, 9%, and 7% (the floor) from the 6th on; it
//! then receives 7–9% of callbacks (68–89 of the next 1000). Once it
//! answers within SLA again its share climbs 19, 28, 35, 41, 46, 50, 53, 56,
//! 59, 60% over its next 10 observations: above 50% after 7, full weight
//! after 10, i.e. within 40–90 callbacks of the channel.
//!
//! # Example
//!
//! ```
//! use callback_guard::core::routing::{ClusterTarget, RoutingPolicy};
//! use callback_guard::core::shared::MemoryStore;
//!
//! let policy = RoutingPolicy::new(vec![
//!     ClusterTarget { name: "region-a".into(), weight: 60, latency_sla_ms: Some(150) },
//!     ClusterTarget { name: "region-b".into(), weight: 40, latency_sla_ms: Some(200) },
//! ]).unwrap();
//! let store = MemoryStore::new();
//! // `random` 0.3 falls in region-a's 60%.
//! assert_eq!(policy.choose(&store, "payments", 1_000, 0.30), "region-a");
//! // region-a fails three times: health 1/8, share 7.5 / 47.5 ≈ 16%.
//! for _ in 0..3 {
//!     policy.observe(&store, "payments", "region-a", 40, true, 1_000).unwrap();
//! }
//! assert_eq!(policy.choose(&store, "payments", 1_000, 0.30), "region-b");
//! ```

pub mod health;
pub mod state;
pub mod weights;

use crate::core::shared::{self, SharedStore, StoreError};
use health::{ClusterHealth, UNHEALTHY_BELOW};
use state::{MAX_CLUSTERS, StateView};
use std::rc::Rc;

/// Longest cluster name accepted.
pub const MAX_CLUSTER_NAME_LEN: usize = 255;
/// Largest `weight` accepted (basis points of a 100% share and then some;
/// only ratios matter).
pub const MAX_WEIGHT: u32 = 10_000;
/// Largest `latency_sla_ms` accepted: five minutes, beyond any route
/// timeout a callback should have (a larger SLA could never be exceeded).
pub const MAX_LATENCY_SLA_MS: u64 = 300_000;

/// One response of a cluster, for [`RoutingPolicy::observe_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Index from [`RoutingPolicy::cluster_index`].
    pub cluster: usize,
    pub latency_ms: u64,
    pub failed: bool,
    pub now_ms: u64,
}

/// Shared-data key of a channel's routing state.
pub fn state_key(channel: &str) -> String {
    with_state_key(channel, str::to_string)
}

/// Calls `f` with [`state_key`] of `channel`, built on the stack when the
/// name is short (channel names are at most 64 bytes): routing reads the
/// key on every request.
fn with_state_key<R>(channel: &str, f: impl FnOnce(&str) -> R) -> R {
    const PREFIX: &[u8] = b"cg:route:";
    let mut buffer = [0u8; PREFIX.len() + 64];
    let len = PREFIX.len() + channel.len();
    if let Some(key) = buffer.get_mut(..len) {
        let (prefix, name) = key.split_at_mut(PREFIX.len());
        prefix.copy_from_slice(PREFIX);
        name.copy_from_slice(channel.as_bytes());
        if let Ok(key) = std::str::from_utf8(key) {
            return f(key);
        }
    }
    f(&format!("cg:route:{channel}"))
}

/// Characters allowed in a cluster name: what Envoy and Istio cluster names
/// use (`outbound|8080||svc.ns.svc.cluster.local`), safe in a header value
/// and as a stat tag value (no `;`, `=`, spaces or control characters).
pub fn valid_cluster_name(name: &str) -> bool {
    (1..=MAX_CLUSTER_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'|' | b':'))
}

/// Where the weights of a decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightSource {
    /// Configured weights scaled by observed health.
    Adaptive,
    /// Configured weights, unchanged, for the reason given.
    Configured(Fallback),
}

/// Why the configured weights were used as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// One cluster: nothing to steer.
    SingleCluster,
    /// Nothing observed yet for this channel.
    NoState,
    /// Shared data could not be read.
    Store(StoreError),
    /// The stored value did not decode (or was written for another cluster list).
    CorruptState,
    /// Every cluster is unhealthy: no better place to send traffic.
    AllUnhealthy,
}

/// The probability of each cluster at one instant (see [`RoutingPolicy::shares`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Shares<'a> {
    pub source: WeightSource,
    /// `(cluster, probability)` in configuration order; probabilities sum to 1.
    pub clusters: Vec<(&'a str, f64)>,
}

/// One cluster of a channel, as configured (checked by `config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTarget {
    pub name: String,
    /// Share of traffic, relative to the other clusters' weights.
    pub weight: u32,
    /// Above this recent latency the cluster's share is cut.
    pub latency_sla_ms: Option<u64>,
}

#[derive(Debug, Clone)]
struct Cluster {
    /// Shared with every request routed to it (a header value).
    name: Rc<str>,
    weight: f64,
    sla_ms: Option<u64>,
}

/// The compiled `channels[].routing` of one channel. Immutable; all mutable
/// state lives in the [`SharedStore`].
#[derive(Debug, Clone)]
pub struct RoutingPolicy {
    clusters: Vec<Cluster>,
    fingerprint: u32,
}

impl RoutingPolicy {
    /// The policy for these clusters, in configuration order. `config`
    /// has checked each one (name, weight, SLA bounds, no duplicates);
    /// this refuses only what would break [`choose`](Self::choose): no
    /// cluster, a total weight of 0 or more than [`MAX_CLUSTERS`].
    pub fn new(targets: Vec<ClusterTarget>) -> Result<Self, String> {
        if targets.is_empty() {
            return Err("must list at least one cluster".into());
        }
        if targets.len() > MAX_CLUSTERS {
            return Err(format!(
                "at most {MAX_CLUSTERS} clusters, got {}",
                targets.len()
            ));
        }
        if targets.iter().map(|t| u64::from(t.weight)).sum::<u64>() == 0 {
            return Err("total weight must be greater than 0".into());
        }
        let clusters: Vec<Cluster> = targets
            .into_iter()
            .map(|t| Cluster {
                name: Rc::from(t.name),
                weight: f64::from(t.weight),
                sla_ms: t.latency_sla_ms,
            })
            .collect();
        let fingerprint = state::fingerprint(clusters.iter().map(|c| &*c.name));
        Ok(Self {
            clusters,
            fingerprint,
        })
    }

    /// Cluster names in configuration order (e.g. to pre-register metrics).
    pub fn clusters(&self) -> impl Iterator<Item = &str> {
        self.clusters.iter().map(|c| &*c.name)
    }

    /// Picks the cluster for one callback of `channel`; `random` is uniform
    /// in `[0, 1)`.
    ///
    /// Never fails: if the shared state cannot be read or does not decode,
    /// the choice follows the configured weights (routing state must never
    /// fail a request). Use [`shares`](Self::shares) to see why.
    pub fn choose(&self, store: &dyn SharedStore, channel: &str, now_ms: u64, random: f64) -> &str {
        self.choose_shared(store, channel, now_ms, random)
            .map_or("", |name| name)
    }

    /// [`choose`](Self::choose), the name shared (`None` only without
    /// clusters, which [`new`](Self::new) refuses).
    pub fn choose_shared(
        &self,
        store: &dyn SharedStore,
        channel: &str,
        now_ms: u64,
        random: f64,
    ) -> Option<&Rc<str>> {
        let mut buffer = [0.0; MAX_CLUSTERS];
        let chosen = match buffer.get_mut(..self.clusters.len()) {
            Some(weights) => {
                self.effective_weights(store, channel, now_ms, weights);
                weights::pick(weights, random)
            }
            None => None,
        };
        chosen
            .and_then(|i| self.clusters.get(i))
            .or_else(|| self.clusters.first())
            .map(|c| &c.name)
    }

    /// Feeds back one observation: latency from request start to response
    /// headers, and whether it failed (5xx, reset, timeout).
    pub fn observe(
        &self,
        store: &dyn SharedStore,
        channel: &str,
        cluster: &str,
        latency_ms: u64,
        failed: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let Some(cluster) = self.cluster_index(cluster) else {
            return Ok(());
        };
        self.observe_batch(
            store,
            channel,
            &[Observation {
                cluster,
                latency_ms,
                failed,
                now_ms,
            }],
        )
    }

    /// The index of `cluster` among the configured clusters.
    pub fn cluster_index(&self, cluster: &str) -> Option<usize> {
        self.clusters.iter().position(|c| &*c.name == cluster)
    }

    /// Applies several observations, in order, in one compare-and-swap
    /// update (a worker batches its responses; see the filter).
    pub fn observe_batch(
        &self,
        store: &dyn SharedStore,
        channel: &str,
        batch: &[Observation],
    ) -> Result<(), StoreError> {
        if self.clusters.len() < 2 || batch.is_empty() {
            return Ok(());
        }
        let n = self.clusters.len();
        shared::update(store, &state_key(channel), |current| {
            let mut all = current
                .and_then(|bytes| StateView::parse(bytes, self.fingerprint, n))
                .map(|view| view.to_vec())
                .unwrap_or_else(|| vec![ClusterHealth::default(); n]);
            for o in batch {
                let sla_ms = self.clusters.get(o.cluster).and_then(|c| c.sla_ms);
                if let Some(c) = all.get_mut(o.cluster) {
                    c.observe(o.latency_ms, o.failed, sla_ms, o.now_ms);
                }
            }
            (state::encode(self.fingerprint, &all), ())
        })
    }

    /// Each cluster's current probability, and where the weights came from.
    pub fn shares(&self, store: &dyn SharedStore, channel: &str, now_ms: u64) -> Shares<'_> {
        let mut weights = vec![0.0; self.clusters.len()];
        let source = self.effective_weights(store, channel, now_ms, &mut weights);
        let total: f64 = weights.iter().sum();
        Shares {
            source,
            clusters: self
                .clusters
                .iter()
                .zip(&weights)
                .map(|(c, w)| (&*c.name, w / total))
                .collect(),
        }
    }

    /// Fills `out` (one slot per cluster) with the weights to draw from.
    fn effective_weights(
        &self,
        store: &dyn SharedStore,
        channel: &str,
        now_ms: u64,
        out: &mut [f64],
    ) -> WeightSource {
        for (slot, c) in out.iter_mut().zip(&self.clusters) {
            *slot = c.weight;
        }
        if self.clusters.len() < 2 {
            return WeightSource::Configured(Fallback::SingleCluster);
        }
        let bytes = match with_state_key(channel, |key| store.get(key)) {
            Ok(Some((bytes, _))) => bytes,
            Ok(None) => return WeightSource::Configured(Fallback::NoState),
            Err(e) => return WeightSource::Configured(Fallback::Store(e)),
        };
        let Some(view) = StateView::parse(&bytes, self.fingerprint, self.clusters.len()) else {
            return WeightSource::Configured(Fallback::CorruptState);
        };
        let mut any_healthy = false;
        for (i, slot) in out.iter_mut().enumerate() {
            let health = view.cluster(i).map_or(1.0, |c| c.health_at(now_ms));
            any_healthy |= health >= UNHEALTHY_BELOW;
            *slot *= health;
        }
        if !any_healthy {
            for (slot, c) in out.iter_mut().zip(&self.clusters) {
                *slot = c.weight;
            }
            return WeightSource::Configured(Fallback::AllUnhealthy);
        }
        WeightSource::Adaptive
    }
}

#[cfg(test)]
mod tests;

//! The compact binary value kept in shared data, one per channel.
//!
//! ```text
//! offset size  field
//! 0      1     version (1)
//! 1      1     cluster count n (<= MAX_CLUSTERS)
//! 2      4     fingerprint of the configured cluster names, in order (LE)
//! 6      16*n  per cluster, in configuration order:
//!              last_ms u64 LE | latency_ewma_ms f32 LE | health u16 LE | samples u16 LE
//! ```
//!
//! `health` is fixed point (`u16::MAX` = 1.0). At most
//! `6 + 16 * MAX_CLUSTERS` bytes. A value that does not decode exactly —
//! other version, other length, other cluster list (after a configuration
//! change), a non-finite latency — is ignored as a whole: readers fall back
//! to the configured weights and the next writer starts from fresh state.

use super::health::{ClusterHealth, MIN_HEALTH};

/// Format version; bump when the layout changes.
pub const VERSION: u8 = 1;
/// Most clusters one channel may route to (keeps the value bounded).
pub const MAX_CLUSTERS: usize = 32;
const HEADER_LEN: usize = 6;
const CLUSTER_LEN: usize = 16;
/// Largest encoded value.
pub const MAX_STATE_LEN: usize = HEADER_LEN + CLUSTER_LEN * MAX_CLUSTERS;

/// FNV-1a (32 bit) over the cluster names in order, each terminated by a
/// byte that no valid name contains: state written for another cluster list
/// is never applied to this one.
pub fn fingerprint<'a>(names: impl IntoIterator<Item = &'a str>) -> u32 {
    let mut hash: u32 = 0x811C_9DC5;
    let mut eat = |b: u8| {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    };
    for name in names {
        name.bytes().for_each(&mut eat);
        eat(0xFF);
    }
    hash
}

/// Serializes the state of every cluster (in configuration order).
pub fn encode(fingerprint: u32, clusters: &[ClusterHealth]) -> Vec<u8> {
    let n = clusters.len().min(MAX_CLUSTERS);
    let mut out = Vec::with_capacity(HEADER_LEN + CLUSTER_LEN * n);
    out.push(VERSION);
    out.push(n as u8);
    out.extend_from_slice(&fingerprint.to_le_bytes());
    for c in clusters.iter().take(n) {
        out.extend_from_slice(&c.last_ms.to_le_bytes());
        out.extend_from_slice(&(c.latency_ewma_ms as f32).to_le_bytes());
        let health = (c.health.clamp(0.0, 1.0) * f64::from(u16::MAX)).round() as u16;
        out.extend_from_slice(&health.to_le_bytes());
        out.extend_from_slice(&c.samples.to_le_bytes());
    }
    out
}

/// A validated, borrowed view of an encoded value; clusters are decoded on
/// access, so reading the state on the request path allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct StateView<'a> {
    clusters: &'a [u8],
}

impl<'a> StateView<'a> {
    /// `None` unless `bytes` is a complete, valid value for exactly
    /// `cluster_count` clusters with this `fingerprint`.
    pub fn parse(bytes: &'a [u8], fingerprint: u32, cluster_count: usize) -> Option<Self> {
        let (header, clusters) = bytes.split_at_checked(HEADER_LEN)?;
        let [version, n, f0, f1, f2, f3] = *header else {
            return None;
        };
        let valid = version == VERSION
            && usize::from(n) == cluster_count
            && cluster_count <= MAX_CLUSTERS
            && u32::from_le_bytes([f0, f1, f2, f3]) == fingerprint
            && clusters.len() == CLUSTER_LEN * cluster_count;
        if !valid {
            return None;
        }
        let view = Self { clusters };
        // Reject the whole value if any latency is garbage, rather than
        // trusting part of it.
        (0..cluster_count)
            .all(|i| view.cluster(i).is_some())
            .then_some(view)
    }

    pub fn len(&self) -> usize {
        self.clusters.len() / CLUSTER_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty()
    }

    /// State of the `index`-th configured cluster.
    pub fn cluster(&self, index: usize) -> Option<ClusterHealth> {
        let start = index.checked_mul(CLUSTER_LEN)?;
        let raw = self.clusters.get(start..start.checked_add(CLUSTER_LEN)?)?;
        let [
            t0,
            t1,
            t2,
            t3,
            t4,
            t5,
            t6,
            t7,
            l0,
            l1,
            l2,
            l3,
            h0,
            h1,
            s0,
            s1,
        ] = *raw
        else {
            return None;
        };
        let latency = f32::from_le_bytes([l0, l1, l2, l3]);
        if !(latency.is_finite() && latency >= 0.0) {
            return None;
        }
        let health = f64::from(u16::from_le_bytes([h0, h1])) / f64::from(u16::MAX);
        Some(ClusterHealth {
            health: health.clamp(MIN_HEALTH, 1.0),
            latency_ewma_ms: f64::from(latency),
            samples: u16::from_le_bytes([s0, s1]),
            last_ms: u64::from_le_bytes([t0, t1, t2, t3, t4, t5, t6, t7]),
        })
    }

    /// Every cluster, decoded (for writers, which rebuild the value anyway).
    pub fn to_vec(&self) -> Vec<ClusterHealth> {
        (0..self.len()).filter_map(|i| self.cluster(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn sample() -> Vec<ClusterHealth> {
        vec![
            ClusterHealth {
                health: 1.0,
                latency_ewma_ms: 48.5,
                samples: 12,
                last_ms: 1_700_000_000_123,
            },
            ClusterHealth {
                health: MIN_HEALTH,
                latency_ewma_ms: 450.25,
                samples: u16::MAX,
                last_ms: 1_700_000_000_456,
            },
            ClusterHealth::default(),
        ]
    }

    #[test]
    fn round_trip() {
        let fp = fingerprint(["region-a", "region-b", "region-c"]);
        let clusters = sample();
        let bytes = encode(fp, &clusters);
        assert_eq!(bytes.len(), 6 + 16 * 3);
        let view = StateView::parse(&bytes, fp, 3).unwrap();
        assert_eq!(view.len(), 3);
        let back = view.to_vec();
        for (a, b) in clusters.iter().zip(&back) {
            assert_eq!(a.last_ms, b.last_ms);
            assert_eq!(a.samples, b.samples);
            assert!((a.latency_ewma_ms - b.latency_ewma_ms).abs() < 1e-3);
            // 16-bit fixed point: within one step.
            assert!((a.health - b.health).abs() < 2.0 / 65535.0, "{a:?} {b:?}");
        }
    }

    #[test]
    fn size_is_bounded() {
        let many = vec![ClusterHealth::default(); MAX_CLUSTERS + 5];
        let bytes = encode(1, &many);
        assert_eq!(bytes.len(), MAX_STATE_LEN);
    }

    // The whole value stays small enough to copy on every request.
    const _: () = assert!(MAX_STATE_LEN <= 1024);

    #[test]
    fn corrupt_values_are_refused_whole() {
        let fp = fingerprint(["a", "b", "c"]);
        let good = encode(fp, &sample());
        assert!(StateView::parse(&good, fp, 3).is_some());

        // Truncated, extended, empty.
        assert!(StateView::parse(&good[..good.len() - 1], fp, 3).is_none());
        let mut longer = good.clone();
        longer.push(0);
        assert!(StateView::parse(&longer, fp, 3).is_none());
        assert!(StateView::parse(&[], fp, 3).is_none());
        assert!(StateView::parse(&good[..4], fp, 3).is_none());
        // Other version.
        let mut v = good.clone();
        v[0] = 2;
        assert!(StateView::parse(&v, fp, 3).is_none());
        // Other cluster count or cluster list.
        assert!(StateView::parse(&good, fp, 2).is_none());
        assert!(StateView::parse(&good, fingerprint(["a", "c", "b"]), 3).is_none());
        // A NaN latency.
        let mut nan = good.clone();
        nan[6 + 8..6 + 12].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(StateView::parse(&nan, fp, 3).is_none());
        let mut negative = good;
        negative[6 + 16 + 8..6 + 16 + 12].copy_from_slice(&(-1.0f32).to_le_bytes());
        assert!(StateView::parse(&negative, fp, 3).is_none());
    }

    #[test]
    fn health_below_the_floor_is_clamped_on_read() {
        let fp = fingerprint(["a"]);
        let mut bytes = encode(fp, &[ClusterHealth::default()]);
        bytes[6 + 12..6 + 14].copy_from_slice(&0u16.to_le_bytes());
        let c = StateView::parse(&bytes, fp, 1).unwrap().cluster(0).unwrap();
        assert_eq!(c.health, MIN_HEALTH);
    }

    #[test]
    fn fingerprint_separates_names() {
        assert_ne!(fingerprint(["ab", "c"]), fingerprint(["a", "bc"]));
        assert_ne!(fingerprint(["a", "b"]), fingerprint(["b", "a"]));
        assert_eq!(fingerprint(["a", "b"]), fingerprint(["a", "b"]));
    }
}

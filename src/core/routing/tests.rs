use super::health::MIN_HEALTH;
use super::*;
use crate::core::rng::SplitMix64;
use crate::core::shared::MemoryStore;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const CH: &str = "payments";

fn cluster(name: &str, weight: u32, sla: Option<u64>) -> ClusterTarget {
    ClusterTarget {
        name: name.to_string(),
        weight,
        latency_sla_ms: sla,
    }
}

/// The SPEC example: 60/35/5 with SLAs 150/200/250 ms.
fn spec_example() -> RoutingPolicy {
    RoutingPolicy::new(vec![
        cluster("region-a", 60, Some(150)),
        cluster("region-b", 35, Some(200)),
        cluster("region-c", 5, Some(250)),
    ])
    .unwrap()
}

fn within_4_sigma(count: usize, n: usize, p: f64) -> bool {
    let mean = n as f64 * p;
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    (count as f64 - mean).abs() <= 4.0 * sigma
}

fn share_of(policy: &RoutingPolicy, store: &dyn SharedStore, name: &str, now: u64) -> f64 {
    policy
        .shares(store, CH, now)
        .clusters
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
        .unwrap()
}

/// Healthy latency of each SPEC cluster: half its SLA.
fn healthy_latency(name: &str) -> u64 {
    match name {
        "region-a" => 75,
        "region-b" => 100,
        _ => 125,
    }
}

// ---- choosing ------------------------------------------------------------

#[test]
fn proportions_follow_configured_weights_within_binomial_bounds() {
    let policy = spec_example();
    let store = MemoryStore::new();
    let n = 100_000;
    let mut rng = SplitMix64::new(0x5EED);
    let mut counts = [0usize; 3];
    for _ in 0..n {
        match policy.choose(&store, CH, 1_000, rng.next_f64()) {
            "region-a" => counts[0] += 1,
            "region-b" => counts[1] += 1,
            "region-c" => counts[2] += 1,
            other => panic!("unexpected {other}"),
        }
    }
    for (count, p) in counts.iter().zip([0.60, 0.35, 0.05]) {
        assert!(within_4_sigma(*count, n, p), "{counts:?}");
    }
    // Choosing never writes.
    assert!(store.is_empty());
}

#[test]
fn proportions_follow_effective_weights_within_binomial_bounds() {
    let policy = spec_example();
    let store = MemoryStore::new();
    for _ in 0..5 {
        policy
            .observe(&store, CH, "region-a", 10, true, 1_000)
            .unwrap();
    }
    let shares = policy.shares(&store, CH, 1_000);
    assert_eq!(shares.source, WeightSource::Adaptive);
    let n = 100_000;
    let mut rng = SplitMix64::new(99);
    let mut counts = [0usize; 3];
    for _ in 0..n {
        let name = policy.choose(&store, CH, 1_000, rng.next_f64());
        let i = shares
            .clusters
            .iter()
            .position(|(c, _)| *c == name)
            .unwrap();
        counts[i] += 1;
    }
    for (count, (_, p)) in counts.iter().zip(&shares.clusters) {
        assert!(within_4_sigma(*count, n, *p), "{counts:?} {shares:?}");
    }
}

#[test]
fn a_single_cluster_is_always_chosen_and_keeps_no_state() {
    let policy = RoutingPolicy::new(vec![cluster("only", 7, Some(10))]).unwrap();
    let store = MemoryStore::new();
    let mut rng = SplitMix64::new(1);
    for t in 0..100 {
        assert_eq!(policy.choose(&store, CH, t, rng.next_f64()), "only");
        policy.observe(&store, CH, "only", 999, true, t).unwrap();
    }
    assert!(store.is_empty());
    assert_eq!(
        policy.shares(&store, CH, 0).source,
        WeightSource::Configured(Fallback::SingleCluster)
    );
}

// ---- reaction and recovery -----------------------------------------------

/// Drives the SPEC example like the e2e test does: one callback every
/// `step_ms`, the chosen cluster answers with `latency(cluster)`.
struct Sim {
    policy: RoutingPolicy,
    store: MemoryStore,
    rng: SplitMix64,
    now: u64,
}

impl Sim {
    fn new(seed: u64) -> Self {
        Self {
            policy: spec_example(),
            store: MemoryStore::new(),
            rng: SplitMix64::new(seed),
            now: 1_000_000,
        }
    }

    /// One callback; returns the cluster it went to.
    fn callback(&mut self, latency: impl Fn(&str) -> (u64, bool)) -> String {
        self.now += 20;
        let name = self
            .policy
            .choose(&self.store, CH, self.now, self.rng.next_f64())
            .to_string();
        let (ms, failed) = latency(&name);
        self.policy
            .observe(&self.store, CH, &name, ms, failed, self.now)
            .unwrap();
        name
    }

    fn share(&self, name: &str) -> f64 {
        share_of(&self.policy, &self.store, name, self.now)
    }
}

fn slow_a(name: &str) -> (u64, bool) {
    match name {
        "region-a" => (450, false), // 3x its SLA
        other => (healthy_latency(other), false),
    }
}

fn all_healthy(name: &str) -> (u64, bool) {
    (healthy_latency(name), false)
}

#[test]
fn slow_cluster_is_cut_within_a_few_callbacks_and_recovers() {
    let mut sim = Sim::new(7);
    for _ in 0..200 {
        sim.callback(all_healthy);
    }
    assert!((sim.share("region-a") - 0.60).abs() < 1e-9);

    // region-a turns slow: record its share after each callback it gets.
    let mut curve = Vec::new();
    while curve.len() < 50 {
        if sim.callback(slow_a) == "region-a" {
            curve.push(sim.share("region-a"));
        }
    }
    // Held on the 1st slow answer, cut from the 2nd, at the floor after the 6th.
    assert!((curve[0] - 0.60).abs() < 1e-3, "{curve:?}");
    assert!(curve[1] < 0.45, "{curve:?}");
    let floor = 60.0 * MIN_HEALTH / (60.0 * MIN_HEALTH + 40.0);
    assert!(curve[5] < floor + 0.005, "{curve:?}");
    assert!(curve[5..].iter().all(|s| *s < 0.08), "{curve:?}");

    // Over the next 1000 callbacks region-a gets far less than 60%.
    let mut to_a = 0;
    for _ in 0..1000 {
        to_a += usize::from(sim.callback(slow_a) == "region-a");
    }
    // Seeds 1..7 give 68..89 (the floor's 7% plus time recovery).
    assert!(to_a < 120, "region-a got {to_a} of 1000");

    // It recovers: count its healthy observations until its share is back.
    let mut healthy_obs = Vec::new();
    let mut callbacks = 0;
    while healthy_obs.len() < 20 {
        callbacks += 1;
        if sim.callback(all_healthy) == "region-a" {
            healthy_obs.push(sim.share("region-a"));
        }
    }
    // About +5..9 points per healthy observation (0.1 of its weight each),
    // above 50% by the 7th, full weight at the 10th.
    assert!(healthy_obs[6] > 0.50, "{healthy_obs:?}");
    assert!((healthy_obs[9] - 0.60).abs() < 1e-3, "{healthy_obs:?}");
    assert!(callbacks < 200, "{callbacks} callbacks to recover");
}

#[test]
fn failures_cut_the_share() {
    let mut sim = Sim::new(11);
    let failing_b = |name: &str| (healthy_latency(name), name == "region-b");
    let mut to_b = 0;
    while to_b < 5 {
        to_b += usize::from(sim.callback(failing_b) == "region-b");
    }
    // Five failures: 1 -> 1/32, floored at 0.05.
    let floor = 35.0 * MIN_HEALTH / (35.0 * MIN_HEALTH + 65.0);
    assert!((sim.share("region-b") - floor).abs() < 1e-3);
    let mut to_b = 0;
    for _ in 0..1000 {
        to_b += usize::from(sim.callback(failing_b) == "region-b");
    }
    assert!(to_b < 60, "region-b got {to_b} of 1000 while failing");
}

#[test]
fn probe_share_is_kept_at_the_floor() {
    let policy = spec_example();
    let store = MemoryStore::new();
    for _ in 0..50 {
        policy
            .observe(&store, CH, "region-a", 10, true, 1_000)
            .unwrap();
    }
    let share = share_of(&policy, &store, "region-a", 1_000);
    // At least 2% of its configured 60% share.
    assert!(share >= 0.02 * 0.60, "{share}");
    assert!((share - 3.0 / 43.0).abs() < 1e-3, "{share}");
}

#[test]
fn all_clusters_unhealthy_fall_back_to_configured_weights() {
    let policy = spec_example();
    let store = MemoryStore::new();
    for name in ["region-a", "region-b", "region-c"] {
        for k in 0..3 {
            policy
                .observe(&store, CH, name, 10, true, 1_000 + k)
                .unwrap();
        }
    }
    let shares = policy.shares(&store, CH, 1_010);
    assert_eq!(
        shares.source,
        WeightSource::Configured(Fallback::AllUnhealthy)
    );
    let probs: Vec<f64> = shares.clusters.iter().map(|(_, p)| *p).collect();
    for (got, want) in probs.iter().zip([0.60, 0.35, 0.05]) {
        assert!((got - want).abs() < 1e-9, "{probs:?}");
    }
    // One recovering cluster is enough to steer again.
    for _ in 0..5 {
        policy
            .observe(&store, CH, "region-c", 10, false, 1_010)
            .unwrap();
    }
    assert_eq!(
        policy.shares(&store, CH, 1_010).source,
        WeightSource::Adaptive
    );
}

#[test]
fn stale_state_decays_back_to_configured_weights() {
    let policy = spec_example();
    let store = MemoryStore::new();
    for _ in 0..10 {
        policy
            .observe(&store, CH, "region-a", 10, true, 1_000)
            .unwrap();
    }
    let cut = share_of(&policy, &store, "region-a", 1_000);
    let later = share_of(&policy, &store, "region-a", 31_000);
    let much_later = share_of(&policy, &store, "region-a", 1_000 + 10 * 30_000);
    // One half-life: health 1 - 0.95 / 2 = 0.525, share 31.5 / 71.5.
    let half = 60.0 * 0.525 / (60.0 * 0.525 + 40.0);
    assert!(cut < 0.08, "{cut}");
    assert!((later - half).abs() < 1e-3, "{later}");
    assert!(much_later > 0.599, "{much_later}");
}

// ---- shared state --------------------------------------------------------

#[test]
fn two_policies_over_one_store_share_state() {
    // Two worker threads: each compiled the same configuration.
    let (worker1, worker2) = (spec_example(), spec_example());
    let store = MemoryStore::new();
    for _ in 0..5 {
        worker1
            .observe(&store, CH, "region-a", 10, true, 1_000)
            .unwrap();
    }
    let seen_by_2 = share_of(&worker2, &store, "region-a", 1_000);
    assert!(seen_by_2 < 0.1, "{seen_by_2}");
    for _ in 0..10 {
        worker2
            .observe(&store, CH, "region-a", 10, false, 1_000)
            .unwrap();
    }
    assert!((share_of(&worker1, &store, "region-a", 1_000) - 0.60).abs() < 1e-9);
    // One value per channel, under its own key.
    assert_eq!(store.len(), 1);
    assert!(store.get(&state_key(CH)).unwrap().is_some());
    // Other channels are untouched.
    assert_eq!(
        worker2.shares(&store, "other", 1_000).source,
        WeightSource::Configured(Fallback::NoState)
    );
}

#[test]
fn corrupt_state_is_ignored_and_then_repaired() {
    let policy = spec_example();
    let store = MemoryStore::new();
    store.set(&state_key(CH), b"\x01garbage", None).unwrap();
    assert_eq!(
        policy.shares(&store, CH, 1_000).source,
        WeightSource::Configured(Fallback::CorruptState)
    );
    let mut rng = SplitMix64::new(5);
    let n = 20_000;
    let to_a = (0..n)
        .filter(|_| policy.choose(&store, CH, 1_000, rng.next_f64()) == "region-a")
        .count();
    assert!(within_4_sigma(to_a, n, 0.60), "{to_a}");
    // The next observation starts fresh state over the garbage.
    policy
        .observe(&store, CH, "region-a", 10, true, 1_000)
        .unwrap();
    assert_eq!(
        policy.shares(&store, CH, 1_000).source,
        WeightSource::Adaptive
    );
}

#[test]
fn state_from_another_cluster_list_is_ignored() {
    let old = spec_example();
    let store = MemoryStore::new();
    for _ in 0..5 {
        old.observe(&store, CH, "region-a", 10, true, 1_000)
            .unwrap();
    }
    // Same names, other order: indexes would be misapplied.
    let new = RoutingPolicy::new(vec![
        cluster("region-b", 35, Some(200)),
        cluster("region-a", 60, Some(150)),
        cluster("region-c", 5, Some(250)),
    ])
    .unwrap();
    assert_eq!(
        new.shares(&store, CH, 1_000).source,
        WeightSource::Configured(Fallback::CorruptState)
    );
}

#[test]
fn unknown_cluster_observations_are_ignored() {
    let policy = spec_example();
    let store = MemoryStore::new();
    policy
        .observe(&store, CH, "region-z", 10, true, 1_000)
        .unwrap();
    assert!(store.is_empty());
}

use crate::core::shared::testing::BrokenStore;

#[test]
fn a_failing_store_still_routes_by_configured_weights() {
    let policy = spec_example();
    assert_eq!(policy.choose(&BrokenStore, CH, 1, 0.0), "region-a");
    assert_eq!(policy.choose(&BrokenStore, CH, 1, 0.7), "region-b");
    assert_eq!(policy.choose(&BrokenStore, CH, 1, 0.99), "region-c");
    assert_eq!(
        policy.shares(&BrokenStore, CH, 1).source,
        WeightSource::Configured(Fallback::Store(StoreError::Host))
    );
    assert_eq!(
        policy.observe(&BrokenStore, CH, "region-a", 10, false, 1),
        Err(StoreError::Host)
    );
}

/// A store where another worker writes between our read and our write,
/// once: the compare-and-swap must fail and the update be retried.
struct RacyStore {
    inner: MemoryStore,
    intruder: RoutingPolicy,
    raced: std::cell::Cell<bool>,
}

impl SharedStore for RacyStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        if !self.raced.replace(true) {
            self.intruder
                .observe(&self.inner, CH, "region-b", 10, true, 1_000)
                .unwrap();
        }
        self.inner.set(key, value, cas)
    }
}

#[test]
fn concurrent_writers_do_not_lose_updates() {
    let store = RacyStore {
        inner: MemoryStore::new(),
        intruder: spec_example(),
        raced: std::cell::Cell::new(true),
    };
    let worker = spec_example();
    // Create the key, then let the intruder race the next write.
    worker
        .observe(&store, CH, "region-c", 10, false, 1_000)
        .unwrap();
    store.raced.set(false);
    worker
        .observe(&store, CH, "region-a", 10, true, 1_000)
        .unwrap();
    // Both cuts landed: a and b at half health.
    let shares = worker.shares(&store, CH, 1_000);
    let (a, b) = (60.0 * 0.5, 35.0 * 0.5);
    let want = [a / (a + b + 5.0), b / (a + b + 5.0)];
    for (got, want) in shares.clusters.iter().zip(want) {
        assert!((got.1 - want).abs() < 1e-3, "{shares:?}");
    }
}

#[test]
fn an_empty_placeholder_key_is_replaced_by_real_state() {
    use crate::core::shared::create_if_absent;
    let policy = spec_example();
    let store = MemoryStore::new();
    create_if_absent(&store, &state_key("payments")).unwrap();
    policy
        .observe(&store, "payments", "region-a", 10, false, 1_000)
        .unwrap();
    assert!(matches!(
        policy.shares(&store, "payments", 1_000).source,
        WeightSource::Adaptive
    ));
}

#[test]
fn a_batch_is_the_same_as_its_observations_one_by_one() {
    let policy = spec_example();
    let (one_by_one, batched) = (MemoryStore::new(), MemoryStore::new());
    let mut batch = Vec::new();
    for i in 0..40u64 {
        let (cluster, latency, failed) = match i % 4 {
            0 => ("region-a", 900, false),
            1 => ("region-b", 20, i % 8 == 1),
            2 => ("region-c", 30, false),
            _ => ("region-a", 40, false),
        };
        let now = 1_000 + i * 10;
        policy
            .observe(&one_by_one, "payments", cluster, latency, failed, now)
            .unwrap();
        batch.push(Observation {
            cluster: policy.cluster_index(cluster).unwrap(),
            latency_ms: latency,
            failed,
            now_ms: now,
        });
    }
    policy.observe_batch(&batched, "payments", &batch).unwrap();
    // The stored format is compact (quantised), so one-by-one re-encodes
    // after every step: compare the resulting shares, not the bytes.
    let now = 1_000 + 40 * 10;
    let a = policy.shares(&one_by_one, "payments", now);
    let b = policy.shares(&batched, "payments", now);
    assert!(matches!(a.source, WeightSource::Adaptive));
    assert!(matches!(b.source, WeightSource::Adaptive));
    for ((name_a, share_a), (name_b, share_b)) in a.clusters.iter().zip(&b.clusters) {
        assert_eq!(name_a, name_b);
        assert!(
            (share_a - share_b).abs() < 1e-3,
            "{name_a}: {share_a} vs {share_b}"
        );
    }
    // The slow region was cut in both.
    assert!(b.clusters[0].1 < 0.5, "{:?}", b.clusters);
    assert_eq!(policy.cluster_index("nope"), None);
}

#[test]
fn the_state_key_names_the_channel_whatever_its_length() {
    let long = "c".repeat(100);
    for channel in ["", "payments", &"p".repeat(64), &long] {
        assert_eq!(state_key(channel), format!("cg:route:{channel}"));
    }
}

//! Criterion benchmark of the pure core: routing `choose` and `observe`
//! over a `MemoryStore` (the SPEC's 60/35/5 channel).
use callback_guard::config::{self, ChannelRoutingSpec, ClusterSpec, FieldPath};
use callback_guard::core::rng::SplitMix64;
use callback_guard::core::routing::RoutingPolicy;
use callback_guard::core::shared::MemoryStore;
use criterion::{Criterion, black_box, criterion_group, criterion_main};

const CH: &str = "payments";

fn policy() -> Option<RoutingPolicy> {
    let clusters = [
        ("region-a", 60, 150),
        ("region-b", 35, 200),
        ("region-c", 5, 250),
    ]
    .into_iter()
    .map(|(name, weight, sla)| ClusterSpec {
        name: name.to_string(),
        weight,
        latency_sla_ms: Some(sla),
    })
    .collect();
    config::compile_routing(&ChannelRoutingSpec { clusters }, None, &FieldPath::root()).ok()
}

fn bench(c: &mut Criterion) {
    let Some(policy) = policy() else {
        return;
    };
    let mut rng = SplitMix64::new(1);

    // No state yet: configured weights (one failed lookup).
    let empty = MemoryStore::new();
    c.bench_function("routing/choose_no_state", |b| {
        b.iter(|| {
            black_box(
                policy
                    .choose(&empty, CH, black_box(1_000), rng.next_f64())
                    .len(),
            )
        })
    });

    // With state: decode, time-decay each cluster, weighted pick.
    let store = MemoryStore::new();
    for cluster in ["region-a", "region-b", "region-c"] {
        let _ = policy.observe(&store, CH, cluster, 80, cluster == "region-a", 1_000);
    }
    c.bench_function("routing/choose", |b| {
        b.iter(|| {
            black_box(
                policy
                    .choose(&store, CH, black_box(2_000), rng.next_f64())
                    .len(),
            )
        })
    });

    // Read-modify-write of the shared value (uncontended CAS).
    let mut now = 2_000u64;
    c.bench_function("routing/observe", |b| {
        b.iter(|| {
            now += 1;
            let latency = 50 + (rng.next_u64() % 200);
            black_box(policy.observe(&store, CH, "region-b", latency, false, now))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Criterion benchmark of the pure core: admission `decide` over a
//! `MemoryStore` with the SPEC example's buckets and a few rules.
use callback_guard::config::{self, AdmissionSpec, FieldPath};
use callback_guard::core::shared::MemoryStore;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

const SPEC: &str = r#"{
    "rules": [
      { "priority": "high", "principals": ["cluster.local/ns/default/sa/webhook-legacy"], "effect": "deny" },
      { "priority": "normal", "principals": ["spiffe://cluster.local/ns/untrusted/sa/*"], "effect": "deny" },
      { "priority": "high", "principals": ["spiffe://cluster.local/ns/*/sa/webhook-*",
                                           "spiffe://cluster.local/ns/payments/sa/processor"], "effect": "allow" }
    ],
    "capacity": { "rps": 1e9, "burst": 1e9 },
    "limits": {
      "high":   { "rps": 1e9, "burst": 1e9 },
      "normal": { "rps": 1e9, "burst": 1e9 },
      "low":    { "rps": 1e9, "burst": 1e9 }
    }
}"#;

fn bench(c: &mut Criterion) {
    let spec: AdmissionSpec = match serde_json::from_str(SPEC) {
        Ok(spec) => spec,
        Err(e) => return eprintln!("bad bench spec: {e}"),
    };
    let policy = match config::compile_admission(&spec, &FieldPath::root().key("admission")) {
        Ok(policy) => policy,
        Err(e) => return eprintln!("bad bench spec: {e}"),
    };
    let store = MemoryStore::new();
    let id = Some("spiffe://cluster.local/ns/default/sa/webhook-processor");
    let mut now = 1_700_000_000_000u64;

    c.bench_function("admission/decide_high_allowed", |b| {
        b.iter(|| {
            now += 1;
            black_box(policy.decide(&store, black_box(Some("high")), black_box(id), now))
        })
    });
    c.bench_function("admission/decide_high_demoted", |b| {
        let other = Some("spiffe://cluster.local/ns/other/sa/cron");
        b.iter(|| {
            now += 1;
            black_box(policy.decide(&store, black_box(Some("high")), black_box(other), now))
        })
    });
    c.bench_function("admission/classify_only", |b| {
        b.iter(|| black_box(policy.classify(black_box(Some("high")), black_box(id))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Criterion benchmark of the pure core: channel selection
//! (`Policy::route`) for an ordinary path (one match), a path with
//! something to normalise (every reading checked) and a double-encoded one
//! (further decoding rounds), on the shipped demo's three channels and
//! guard prefix.
use callback_guard::config;
use criterion::{Criterion, black_box, criterion_group, criterion_main};

const POLICY: &str = r#"{"reject_unmatched": ["/callbacks/"], "channels": [
    {"name": "payments", "match": {"path_prefix": "/callbacks/payments", "hosts": ["hooks.example.com"]}},
    {"name": "github", "match": {"path_prefix": "/callbacks/github"}},
    {"name": "logistics", "match": {"path_prefix": "/callbacks/logistics"}}]}"#;

fn bench(c: &mut Criterion) {
    let Ok(policy) = config::load(POLICY.as_bytes(), &|_| None) else {
        return;
    };
    for (name, path) in [
        ("ordinary", "/callbacks/payments/evt_123?attempt=1"),
        ("tricky", "/callbacks;x=1/./Payments//evt_123"),
        ("double-encoded", "/callbacks/%252e%252e/payments/evt_123"),
    ] {
        c.bench_function(&format!("route/{name}"), |b| {
            b.iter(|| policy.route(black_box(path), black_box("hooks.example.com:443")))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

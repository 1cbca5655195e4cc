//! Criterion benchmark of the pure core: masking realistic callback bodies
//! of 1 KiB, 64 KiB and 1 MiB with the SPEC's example configuration (field
//! selectors and all four detectors on).
//!
//! `cargo bench --bench mask -- --warm-up-time 1 --measurement-time 2`

// A bench with a broken fixture should stop loudly; it never runs in the VM.
#![allow(clippy::expect_used)]

use callback_guard::config::{FieldPath, MaskSpec};
use callback_guard::core::mask::Masker;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

mod bodies;
use bodies::body;

fn masker(spec: &str) -> Masker {
    let spec: MaskSpec = serde_json::from_str(spec).expect("bench spec parses");
    callback_guard::config::compile_mask(&spec, &FieldPath::root().key("mask"), &|_| None)
        .expect("bench spec compiles")
}

fn bench(c: &mut Criterion) {
    let configs = [
        (
            "fields+detectors",
            r#"{"fields": ["phone", "id", "customer.email", "items[*].card_number"],
                "detectors": ["email", "phone", "card", "cn_id"]}"#,
        ),
        (
            "fields_only",
            r#"{"fields": ["phone", "customer.email", "items[*].card_number"]}"#,
        ),
    ];
    let sizes = [("1KiB", 1 << 10), ("64KiB", 64 << 10), ("1MiB", 1 << 20)];
    for (name, spec) in configs {
        let m = masker(spec);
        let mut group = c.benchmark_group(format!("mask/{name}"));
        for (label, size) in sizes {
            let input = body(size);
            assert!(m.mask(&input).is_ok_and(|r| r.count > 0));
            group.throughput(Throughput::Bytes(input.len() as u64));
            group.bench_with_input(BenchmarkId::from_parameter(label), &input, |b, input| {
                b.iter(|| m.mask(black_box(input)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

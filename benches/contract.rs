//! Criterion benchmark of the pure core: the cost of a body contract check
//! (`channels[].contract`, issue #18) on the 1 KiB callback of
//! `benches/mask.rs` (and 64 KiB), with a schema a team would write for
//! that payment event: parse + validate as the pipeline runs it, validate
//! alone on an already parsed body, and a failing body (pointers
//! collected).
//!
//! `cargo bench --features contract --bench contract -- --warm-up-time 1 --measurement-time 2`

// A bench with a broken fixture should stop loudly; it never runs in the VM.
#![allow(clippy::expect_used)]

use callback_guard::core::contract::Contract;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

mod bodies;
use bodies::body;

const SCHEMA: &str = r##"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "array", "minItems": 1, "items": {"$ref": "#/$defs/event"},
  "$defs": {
    "event": {
      "type": "object", "required": ["id", "type", "created", "data"],
      "properties": {
        "id": {"type": "string", "pattern": "^evt_[0-9]{8}$"},
        "type": {"enum": ["payment.succeeded", "payment.failed", "refund.created"]},
        "created": {"type": "integer", "minimum": 0},
        "livemode": {"type": "boolean"},
        "data": {"type": "object", "required": ["object"], "properties": {"object": {"$ref": "#/$defs/payment"}}}
      }
    },
    "payment": {
      "type": "object", "required": ["id", "amount", "currency", "status", "customer", "items"],
      "properties": {
        "amount": {"type": "integer", "minimum": 0},
        "currency": {"type": "string", "minLength": 3, "maxLength": 3},
        "status": {"enum": ["succeeded", "failed", "pending"]},
        "customer": {"type": "object", "required": ["id", "email"],
                     "properties": {"email": {"type": "string", "format": "email"}, "phone": {"type": "string"}}},
        "items": {"type": "array", "items": {"type": "object", "required": ["sku", "qty"],
                  "properties": {"qty": {"type": "integer", "minimum": 1}, "price": {"type": "number"}}}},
        "metadata": {"type": "object", "additionalProperties": true}
      }
    }
  }
}"##;

fn bench(c: &mut Criterion) {
    let schema: serde_json::Value = serde_json::from_str(SCHEMA).expect("bench schema parses");
    let contract = Contract::compile(&schema).expect("bench schema compiles");
    let mut group = c.benchmark_group("contract");
    for (label, size) in [("1KiB", 1 << 10), ("64KiB", 64 << 10)] {
        let input = body(size);
        assert!(
            contract.check(&input).is_ok(),
            "the bench body satisfies it"
        );
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(BenchmarkId::new("check", label), &input, |b, input| {
            b.iter(|| contract.check(black_box(input)))
        });
        let parsed: serde_json::Value = serde_json::from_slice(&input).expect("bench body parses");
        group.bench_with_input(BenchmarkId::new("validate_only", label), &parsed, |b, v| {
            b.iter(|| contract.check_value(black_box(v)))
        });
        let failing = String::from_utf8(input.clone())
            .expect("utf-8")
            .replace("\"amount\": 12999", "\"amount\": -1");
        assert!(contract.check(failing.as_bytes()).is_err());
        group.bench_with_input(
            BenchmarkId::new("check_failing", label),
            &failing,
            |b, f| b.iter(|| contract.check(black_box(f.as_bytes()))),
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

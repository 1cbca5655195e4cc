//! Criterion benchmark of signature verification (and dedup) in the pure
//! core: standard-webhooks, stripe and github over 1 KiB and 64 KiB bodies,
//! each with a valid signature (the full path: parse, HMAC, compare).
//!
//! Run: `cargo bench --bench signature -- --warm-up-time 1 --measurement-time 2`

// A bench is a native tool, not the VM: a broken fixture should stop it loudly.
#![allow(clippy::unwrap_used)]
use base64::Engine;
use callback_guard::config::{self, DedupSpec, FieldPath, SignatureSpec};
use callback_guard::core::headers::Headers;
use callback_guard::core::shared::MemoryStore;
use callback_guard::core::signature::Verifier;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::hint::black_box;

const TS: u64 = 1_700_000_000;
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const RAW_SECRET: &str = "bench-secret";

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn verifier(json: &str) -> Verifier {
    let spec: SignatureSpec = serde_json::from_str(json).unwrap();
    Verifier::compile(&spec, &FieldPath::root(), &|_| None).unwrap()
}

/// One signed request per scheme for `body`.
fn cases(body: &[u8]) -> Vec<(&'static str, Verifier, Headers)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let ts = TS.to_string();

    let key = b64.decode(&WHSEC["whsec_".len()..]).unwrap();
    let sig = b64.encode(mac(&key, &[b"msg_1.", ts.as_bytes(), b".", body]));
    let standard = (
        "standard-webhooks",
        verifier(&format!(
            r#"{{"scheme":"standard-webhooks","secrets":[{{"value":"{WHSEC}"}}]}}"#
        )),
        [
            ("webhook-id", "msg_1".to_string()),
            ("webhook-timestamp", ts.clone()),
            ("webhook-signature", format!("v1,{sig}")),
        ]
        .into_iter()
        .collect(),
    );

    let sig = hex(&mac(RAW_SECRET.as_bytes(), &[ts.as_bytes(), b".", body]));
    let stripe = (
        "stripe",
        verifier(&format!(
            r#"{{"scheme":"stripe","secrets":[{{"value":"{RAW_SECRET}"}}]}}"#
        )),
        [("stripe-signature", format!("t={ts},v1={sig}"))]
            .into_iter()
            .collect(),
    );

    let sig = hex(&mac(RAW_SECRET.as_bytes(), &[body]));
    let github = (
        "github",
        verifier(&format!(
            r#"{{"scheme":"github","secrets":[{{"value":"{RAW_SECRET}"}}]}}"#
        )),
        [("x-hub-signature-256", format!("sha256={sig}"))]
            .into_iter()
            .collect(),
    );
    vec![standard, stripe, github]
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("signature/verify");
    for size in [1024usize, 64 * 1024] {
        let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        for (name, verifier, headers) in cases(&body) {
            assert_eq!(verifier.verify(&headers, &body, TS), Ok(()), "{name}");
            group.bench_with_input(
                BenchmarkId::new(name, format!("{}KiB", size / 1024)),
                &body,
                |b, body| b.iter(|| verifier.verify(black_box(&headers), black_box(body), TS)),
            );
        }
    }
    group.finish();
}

fn dedup(c: &mut Criterion) {
    let spec: DedupSpec = serde_json::from_str(r#"{"window_s":3600}"#).unwrap();
    let policy = config::compile_dedup(&spec, None, &FieldPath::root()).unwrap();
    let store = MemoryStore::new();
    // Fill every shard to capacity first: the steady state.
    for i in 0..policy.max_ids() {
        policy
            .check(&store, "bench", &format!("warm_{i}"), TS)
            .unwrap();
    }
    let mut n = 0u64;
    c.bench_function("dedup/check_first_full_shards", |b| {
        b.iter(|| {
            n += 1;
            policy.check(&store, "bench", &format!("evt_{n}"), TS)
        })
    });
    c.bench_function("dedup/check_duplicate", |b| {
        b.iter(|| policy.check(&store, "bench", black_box("evt_1"), TS))
    });
}

criterion_group!(benches, verify, dedup);
criterion_main!(benches);

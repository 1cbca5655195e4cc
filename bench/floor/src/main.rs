//! The body floor of issue #17: SHA-256, HMAC verify, masking, and verify +
//! mask of one body, timed in a loop. The same source runs natively (and
//! under `valgrind --tool=callgrind --toggle-collect='*body_floor*work*'`
//! for instruction counts) and as wasm32-wasip1 in node (V8, the engine
//! Envoy runs the filter in): see bench/v8/README.md.
//!
//! `body_floor <op> <body.json> <iterations>`, op one of
//! `sha256 | verify | mask | both | copy | floor`, or `request-<a|c|e|f|g>`
//! (a whole request of that bench scenario through the request machine,
//! see src/request.rs); prints µs per iteration (the fastest batch of 5).
//! The bodies are make bench's (bench/cgbench/shapes.py, `json_body`).

// A bench with a broken fixture should stop loudly; it never runs in the VM.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use base64::Engine;
use callback_guard::config::{FieldPath, MaskSpec, SignatureSpec, compile_mask, compile_signature};
use callback_guard::core::headers::Headers;
use callback_guard::core::mask::Masker;
use callback_guard::core::signature::Verifier;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::time::Instant;

mod request;

/// bench/cgbench/signer.py: `whsec_` + base64 of bytes 0..32.
const SECRET: [u8; 32] = {
    let mut k = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        k[i] = i as u8;
        i += 1;
    }
    k
};
const TS: u64 = 1_767_225_600;
/// bench/cgbench/scenarios.py `MASK`.
const MASK: &str = r#"{"fields": ["email", "phone", "payment.card_number"],
    "detectors": ["email", "phone", "card", "cn_id"], "strategy": "redact"}"#;

enum Op {
    Sha256,
    Verify,
    Mask,
    Both,
    /// One pass that any rewriter makes: UTF-8 validation and a copy out.
    Copy,
    /// The floor: `sha256` plus `copy`.
    Floor,
}

#[inline(never)]
fn work(op: &Op, v: &Verifier, m: &Masker, h: &Headers, body: &[u8]) -> usize {
    match op {
        Op::Sha256 => Sha256::digest(body).len(),
        Op::Verify => usize::from(v.verify(h, body, TS).is_ok()),
        Op::Mask => m.mask(body).map(|r| r.body.len()).unwrap_or(0),
        Op::Both => {
            if v.verify(h, body, TS).is_err() {
                return 0;
            }
            m.mask(body).map(|r| r.body.len()).unwrap_or(0)
        }
        Op::Copy => copy(body),
        Op::Floor => Sha256::digest(body).len() + copy(body),
    }
}

fn copy(body: &[u8]) -> usize {
    std::str::from_utf8(body).map_or(0, |t| t.as_bytes().to_vec().len())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, op, file, iters, ..] = args.as_slice() else {
        panic!("usage: body_floor <sha256|verify|mask|both|copy|floor> <body.json> <iterations>");
    };
    if let Some(key) = op.strip_prefix("request-") {
        return run_request(key, file, iters.parse().unwrap());
    }
    let op = match op.as_str() {
        "sha256" => Op::Sha256,
        "verify" => Op::Verify,
        "mask" => Op::Mask,
        "both" => Op::Both,
        "copy" => Op::Copy,
        "floor" => Op::Floor,
        other => panic!("unknown op {other}"),
    };
    let iters: u32 = iters.parse().unwrap();
    let body = std::fs::read(file).unwrap();

    let (secret, sig) = sign(&body);
    let spec: SignatureSpec = serde_json::from_str(&format!(
        r#"{{"scheme":"standard-webhooks","secrets":[{{"value":"{secret}"}}],"tolerance_s":3600}}"#
    ))
    .unwrap();
    let v = compile_signature(&spec, &FieldPath::root(), &|_| None).unwrap();
    let h: Headers = [
        ("webhook-id", "msg_bench".to_string()),
        ("webhook-timestamp", TS.to_string()),
        ("webhook-signature", format!("v1,{sig}")),
    ]
    .into_iter()
    .collect();
    let spec: MaskSpec = serde_json::from_str(MASK).unwrap();
    let m = compile_mask(&spec, &FieldPath::root().key("mask"), &|_| None).unwrap();
    assert_eq!(v.verify(&h, &body, TS), Ok(()));
    assert!(m.mask(&body).is_ok_and(|r| r.count >= 3));

    // The machine is shared: report the fastest batch of 5 (preemption
    // only ever adds time), per iteration.
    let mut sink = 0;
    let mut best = f64::INFINITY;
    for _ in 0..iters.div_ceil(5) {
        let start = Instant::now();
        for _ in 0..5 {
            sink += work(&op, &v, &m, &h, black_box(&body));
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / 5.0);
    }
    if iters == 0 {
        best = 0.0;
    }
    println!("{best:.2}");
    black_box(sink);
}

/// The bench's Standard Webhooks secret (`whsec_…`) and the base64
/// signature of `body` as delivery `msg_bench` at [`TS`].
fn sign(body: &[u8]) -> (String, String) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut mac = Hmac::<Sha256>::new_from_slice(&SECRET).unwrap();
    for part in [
        b"msg_bench.".as_slice(),
        TS.to_string().as_bytes(),
        b".",
        body,
    ] {
        mac.update(part);
    }
    (
        format!("whsec_{}", b64.encode(SECRET)),
        b64.encode(mac.finalize().into_bytes()),
    )
}

/// `request-<key>`: one bench request of scenario `key` per iteration.
fn run_request(key: &str, file: &str, iters: u32) {
    let body = std::fs::read(file).unwrap();
    let (secret, sig) = sign(&body);
    let sig = format!("v1,{sig}");
    let (policy, host, pairs) = request::setup(key, &body, TS, &secret, &sig);
    // Outside the channel (a) passes; every other scenario is forwarded.
    let forwarded = request::request_work(&policy, &host, &pairs);
    assert_eq!(forwarded, usize::from(key != "a"), "scenario {key}");
    let mut sink = 0;
    let mut best = f64::INFINITY;
    for _ in 0..iters.div_ceil(5) {
        let start = Instant::now();
        for _ in 0..5 {
            sink += request::request_work(&policy, &host, black_box(&pairs));
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / 5.0);
    }
    if iters == 0 {
        best = 0.0;
    }
    println!("{best:.2}");
    black_box(sink);
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PII masking in a real Envoy: what the upstream receives is valid JSON
//! with the masked values replaced, keys in order and a correct length;
//! bad JSON and oversize bodies never reach it.

mod support;

use std::time::Duration;
use support::{Envoy, Request, Upstream};

const PLUGIN: &str = r#"{
  "channels": [
    {"name": "orders", "match": {"path_prefix": "/callbacks/orders"}, "max_body_bytes": 65536,
     "mask": {"fields": ["phone", "customer.email", "items[*].card_number"],
              "detectors": ["email", "phone", "card", "cn_id"],
              "strategy": "redact"}},
    {"name": "partial", "match": {"path_prefix": "/callbacks/partial"},
     "mask": {"fields": ["card"], "strategy": "partial"}},
    {"name": "hashed", "match": {"path_prefix": "/callbacks/hashed"},
     "mask": {"fields": ["id_number"], "strategy": "hash", "hash_key": {"value": "mask-e2e-hash-key-0123456789"}}},
    {"name": "signed", "match": {"path_prefix": "/callbacks/signed"},
     "signature": {"scheme": "github", "secrets": [{"value": "mask-and-sign"}]},
     "mask": {"fields": ["phone"]}}
  ]
}"#;

fn start(name: &str, up: &Upstream) -> Envoy {
    Envoy::builder(name)
        .plugin(PLUGIN)
        .cluster("upstream", up.port())
        .start()
}

/// The upstream's body parsed, with its length checked against the header.
fn received_json(up: &Upstream) -> (String, serde_json::Value) {
    let got = up.received();
    assert_eq!(got.len(), 1, "exactly one request upstream");
    let r = &got[0];
    if let Some(len) = r.header("content-length") {
        assert_eq!(
            len.parse::<usize>().unwrap(),
            r.body.len(),
            "content-length matches the body"
        );
    } else {
        assert!(r.chunked, "neither content-length nor chunked");
    }
    eprintln!(
        "upstream framing: content-length={:?} chunked={}",
        r.header("content-length"),
        r.chunked
    );
    let text = r.body_str().to_string();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("upstream got invalid JSON ({e}): {text}"));
    (text, json)
}

const ORDER: &str = r#"{"order":"ORD-2024-000123","ts":1700000000,"phone":"+8613812345678",
 "customer":{"name":"Li Lei","email":"lilei@example.com","phone":13812345678},
 "items":[{"sku":"A1","card_number":"4111 1111 1111 1111","qty":2},{"sku":"B2","card_number":"5500-0000-0000-0004"}],
 "note":"call 13912345678 or mail ops@example.org; id 11010519491231002X","amount":12345678901234567890.50,"emoji":"\u00e9\ud83d\ude00"}"#;

#[test]
fn fields_and_detectors_are_masked_before_the_upstream() {
    let up = Upstream::start();
    let envoy = start("mask-basic", &up);
    let resp = Request::post("/callbacks/orders")
        .json(ORDER)
        .send(envoy.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    let (text, v) = received_json(&up);
    for secret in [
        "8613812345678",
        "lilei@example.com",
        "13812345678",
        "4111 1111",
        "5500-0000",
        "13912345678",
        "ops@example.org",
        "11010519491231002X",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} reached the upstream: {text}"
        );
    }
    assert_eq!(v["phone"], "***");
    assert_eq!(v["customer"]["email"], "***");
    assert_eq!(
        v["customer"]["phone"], "***",
        "non-string value under a masked key"
    );
    assert_eq!(v["items"][0]["card_number"], "***");
    assert_eq!(v["items"][1]["sku"], "B2");
    assert_eq!(v["customer"]["name"], "Li Lei");
    // Near-misses and everything else survive byte for byte.
    assert!(
        text.contains(r#""order":"ORD-2024-000123","ts":1700000000"#),
        "{text}"
    );
    assert!(
        text.contains("12345678901234567890.50"),
        "huge number kept exactly: {text}"
    );
    assert!(
        text.contains(r#""emoji":"\u00e9\ud83d\ude00""#),
        "escapes kept: {text}"
    );
    assert_eq!(v["note"], "call *** or mail ***; id ***");
    // Key order preserved.
    // (serde_json's map sorts keys, so look at the text itself.)
    let keys = [
        "order", "ts", "phone", "customer", "items", "note", "amount", "emoji",
    ];
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| text.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "key order changed: {text}"
    );
    assert_eq!(v.as_object().unwrap().len(), keys.len());
    let masked = envoy.metric("callback_masked_fields_total", &[("channel", "orders")]);
    assert_eq!(masked, 8.0, "values masked");
}

#[test]
fn chunked_and_near_limit_bodies_are_masked_with_a_correct_length() {
    let up = Upstream::start();
    let envoy = start("mask-chunked", &up);
    let filler = "x".repeat(60_000);
    let body =
        format!(r#"{{"phone":"+8613812345678","filler":"{filler}","email":"a@example.com"}}"#);
    assert!(body.len() < 65536);
    let resp = Request::post("/callbacks/orders")
        .json(&body)
        .chunked(body.as_bytes(), 60, Duration::from_millis(2))
        .send(envoy.addr());
    assert_eq!(resp.status, 200);
    let (_, v) = received_json(&up);
    assert_eq!(v["phone"], "***");
    assert_eq!(v["email"], "***");
    assert_eq!(v["filler"].as_str().unwrap().len(), 60_000);
}

#[test]
fn strategies_partial_and_hash() {
    let up = Upstream::start();
    let envoy = start("mask-strategies", &up);
    Request::post("/callbacks/partial")
        .json(r#"{"card":"4111111111111111"}"#)
        .send(envoy.addr());
    let (_, v) = received_json(&up);
    assert_eq!(v["card"], "************1111");
    up.clear();
    Request::post("/callbacks/hashed")
        .json(r#"{"id_number":"abc"}"#)
        .send(envoy.addr());
    let (_, v) = received_json(&up);
    // HMAC-SHA256("mask-e2e-hash-key-0123456789", "abc"), first 32 hex.
    assert_eq!(
        v["id_number"],
        "hmac-sha256:b6b055db637e146a1a21df5e504a0091"
    );
}

#[test]
fn bad_json_gets_400_and_is_not_forwarded() {
    let up = Upstream::start();
    let envoy = start("mask-bad-json", &up);
    for bad in [
        r#"{"phone":"+8613812345678""#,
        r#"{"a":1,}"#,
        "[1] trailing",
        "{\"a\":\"\u{1}\"}",
    ] {
        let resp = Request::post("/callbacks/orders")
            .json(bad)
            .send(envoy.addr());
        assert_eq!(resp.status, 400, "{bad}");
        let body = resp.json();
        assert_eq!(body["error"], "bad_json");
        assert!(
            !resp.body_str().contains("8613812345678"),
            "a masked value leaked into the reply"
        );
    }
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert_eq!(
        Request::post("/callbacks/orders")
            .json(&deep)
            .send(envoy.addr())
            .status,
        400
    );
    assert_eq!(up.count(), 0);
    assert_eq!(
        envoy.metric(
            "callback_rejected_total",
            &[("channel", "orders"), ("reason", "bad_json")]
        ),
        5.0
    );

    // Too large: 413, not forwarded.
    let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(70_000));
    assert_eq!(
        Request::post("/callbacks/orders")
            .json(&big)
            .send(envoy.addr())
            .status,
        413
    );
    assert_eq!(up.count(), 0);

    // Not JSON: passes untouched even though it contains a phone number.
    let resp = Request::post("/callbacks/orders")
        .header("content-type", "text/plain")
        .body("phone +8613812345678")
        .send(envoy.addr());
    assert_eq!(resp.status, 200);
    assert_eq!(up.received()[0].body_str(), "phone +8613812345678");

    // JSON under another content type, or none: masked all the same (a
    // lenient service would parse it).
    for ct in [Some("text/plain"), Some("application/octet-stream"), None] {
        let mut req = Request::post("/callbacks/orders").body(r#"{"phone":"+8613812345678"}"#);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let resp = req.send(envoy.addr());
        assert_eq!(resp.status, 200, "{ct:?}");
        let got = up.received();
        assert_eq!(
            got.last().unwrap().body_str(),
            r#"{"phone":"***"}"#,
            "{ct:?}"
        );
    }
    // A JSON-looking body that does not parse is refused, not forwarded.
    let resp = Request::post("/callbacks/orders")
        .header("content-type", "text/plain")
        .body(r#"{"phone":"+8613812345678""#)
        .send(envoy.addr());
    assert_eq!(resp.status, 400);
    assert_eq!(up.count(), 4);
}

#[test]
fn signature_is_checked_on_the_original_then_the_masked_body_is_forwarded() {
    let up = Upstream::start();
    let envoy = start("mask-signed", &up);
    let body = r#"{"phone":"+8613812345678","ok":true}"#;
    let sig = support::sign::github("mask-and-sign", body.as_bytes());
    let resp = Request::post("/callbacks/signed")
        .header("x-hub-signature-256", &sig)
        .json(body)
        .send(envoy.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    let got = up.received();
    assert_eq!(got[0].header("x-verified-signature"), Some("github"));
    assert_eq!(got[0].body_str(), r#"{"phone":"***","ok":true}"#);
}

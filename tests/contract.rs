#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Body contracts in a real Envoy (`channels[].contract`): a body within
//! the channel's JSON Schema reaches the upstream masked; one outside it
//! is answered `422 contract` naming the failing JSON pointers (never the
//! values), counted, and never forwarded; a body that is not JSON keeps
//! the `400 bad_json` answer. Needs a module built with the cargo feature
//! `contract`: `CALLBACK_GUARD_CONTRACT_WASM` (`make e2e` builds one), else
//! `CALLBACK_GUARD_WASM`.

mod support;

use support::assert::local_reply;
use support::{Envoy, Request, Upstream};

const PLUGIN: &str = r#"{
  "channels": [
    {"name": "orders", "match": {"path_prefix": "/callbacks/orders"},
     "mask": {"fields": ["phone"]},
     "dedup": {"window_s": 60, "id_header": "x-delivery-id", "allow_unsigned": true},
     "contract": {
       "$schema": "https://json-schema.org/draft/2020-12/schema",
       "type": "object",
       "required": ["id", "amount"],
       "properties": {
         "id": {"type": "string", "pattern": "^ord_[0-9]+$"},
         "amount": {"type": "integer", "minimum": 0},
         "phone": {"type": "string"}
       }
     }}
  ]
}"#;

/// The module with the `contract` feature.
fn contract_wasm() -> std::path::PathBuf {
    std::env::var_os("CALLBACK_GUARD_CONTRACT_WASM")
        .map(Into::into)
        .unwrap_or_else(support::envoy::wasm_path)
}

fn start(name: &str, up: &Upstream) -> Envoy {
    Envoy::builder(name)
        .wasm(contract_wasm())
        .plugin(PLUGIN)
        .cluster("upstream", up.port())
        .start()
}

fn rejected(envoy: &Envoy, reason: &str) -> f64 {
    envoy.metric(
        "callback_rejected_total",
        &[("channel", "orders"), ("reason", reason)],
    )
}

#[test]
fn a_body_within_the_contract_reaches_the_upstream_masked() {
    let up = Upstream::start();
    let envoy = start("contract-pass", &up);
    let resp = Request::post("/callbacks/orders")
        .json(r#"{"id":"ord_7","amount":1200,"phone":"+8613812345678"}"#)
        .send(envoy.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    let got = up.received();
    assert_eq!(got.len(), 1);
    let body: serde_json::Value = serde_json::from_str(got[0].body_str()).unwrap();
    assert_eq!(body["phone"], "***", "masked after the contract check");
    assert_eq!(body["id"], "ord_7");
    assert_eq!(rejected(&envoy, "contract"), 0.0);
}

#[test]
fn a_body_outside_the_contract_is_422_with_its_pointers() {
    let up = Upstream::start();
    let envoy = start("contract-fail", &up);
    // The value that breaks the contract is card-like: it must not come back.
    let resp = Request::post("/callbacks/orders")
        .header("x-delivery-id", "d-1")
        .json(r#"{"id":"4111111111111111","amount":-5,"phone":"+8613812345678"}"#)
        .send(envoy.addr());
    local_reply(&resp, 422, Some("contract"), "contract failure");
    let detail = resp.json()["detail"].as_str().unwrap().to_string();
    assert!(
        detail.ends_with("at /amount (minimum), /id (pattern)"),
        "{detail}"
    );
    for secret in ["4111", "8613812345678", "-5"] {
        assert!(
            !resp.body_str().contains(secret),
            "{secret} echoed: {}",
            resp.body_str()
        );
    }
    assert_eq!(up.count(), 0, "nothing reaches the upstream");
    assert_eq!(rejected(&envoy, "contract"), 1.0);

    // A missing member is named by its own pointer.
    let resp = Request::post("/callbacks/orders")
        .json(r#"{"id":"ord_1"}"#)
        .send(envoy.addr());
    local_reply(&resp, 422, Some("contract"), "missing member");
    assert!(
        resp.json()["detail"]
            .as_str()
            .unwrap()
            .ends_with("at /amount (required)"),
        "{}",
        resp.body_str()
    );
    assert_eq!(rejected(&envoy, "contract"), 2.0);

    // The refused delivery left no dedup id: its corrected redelivery is
    // forwarded, not answered as a duplicate or "in progress".
    let resp = Request::post("/callbacks/orders")
        .header("x-delivery-id", "d-1")
        .json(r#"{"id":"ord_1","amount":5}"#)
        .send(envoy.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert_eq!(up.count(), 1);
}

#[test]
fn a_body_that_is_not_json_keeps_the_bad_json_answer() {
    let up = Upstream::start();
    let envoy = start("contract-bad-json", &up);
    for (ct, body) in [
        ("application/json", r#"{"id":"ord_1","amount":"#),
        ("text/plain", "id=ord_1&amount=5"),
    ] {
        let resp = Request::post("/callbacks/orders")
            .header("content-type", ct)
            .body(body)
            .send(envoy.addr());
        local_reply(&resp, 400, Some("bad_json"), ct);
    }
    assert_eq!(up.count(), 0);
    assert_eq!(rejected(&envoy, "bad_json"), 2.0);
    assert_eq!(rejected(&envoy, "contract"), 0.0);
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Stream mode (`"hold_headers": false`) in a real Envoy whose wasm filter
//! does NOT set `allow_on_headers_stop_iteration` -- what a plain Istio
//! `WasmPlugin` generates. The headers go upstream at once and only the
//! body is held: a callback that passes its checks reaches the service
//! whole (masked where configured, correctly framed); one that fails is
//! answered locally and the upstream request is reset, so the service
//! never gets a complete one. The upstream here records a request as
//! received only once its body was read to the end, and keeps requests cut
//! mid-body apart (`Upstream::incomplete`).
//!
//! The stream idle timeout is short: a filter that held the headers
//! without the flag would stall every request with a body, and these
//! tests would fail with `504 stream timeout` instead of waiting 5 minutes.

mod support;

use std::time::Duration;
use support::sign;
use support::{Envoy, Request, Upstream};

const GITHUB_SECRET: &str = "stream-mode-s3cret";

const PLUGIN: &str = r#"{
  "hold_headers": false,
  "channels": [
    {"name": "github", "match": {"path_prefix": "/callbacks/github"},
     "empty": {"action": "forward"},
     "signature": {"scheme": "github", "secrets": [{"value": "stream-mode-s3cret"}]},
     "dedup": {"window_s": 3600}},
    {"name": "orders", "match": {"path_prefix": "/callbacks/orders"},
     "mask": {"fields": ["phone", "customer.email"], "detectors": ["card"]}},
    {"name": "plain", "match": {"path_prefix": "/callbacks/plain"}, "max_body_bytes": 1024}
  ]
}"#;

fn start(name: &str, up: &Upstream) -> Envoy {
    Envoy::builder(name)
        .plugin(PLUGIN)
        .without_stop_iteration()
        .stream_idle_timeout("5s")
        .cluster("upstream", up.port())
        .start()
}

fn github_signed(body: &[u8]) -> Request {
    Request::post("/callbacks/github")
        .header("x-hub-signature-256", &sign::github(GITHUB_SECRET, body))
        .header("x-github-delivery", &format!("d-{}", sign::hex(body)))
        .json("")
        .body(body.to_vec())
}

/// Slowly, in pieces: Envoy has connected upstream and sent the headers
/// long before the body ends, so a reset shows at the upstream.
fn slowly(req: Request) -> Request {
    let body = req.body.clone();
    req.chunked(&body, 3, Duration::from_millis(150))
}

/// The upstream saw no complete request, and exactly `cut` requests whose
/// head arrived but whose body never did (Envoy reset the upstream request).
fn assert_cut_off(up: &Upstream, cut: usize) {
    let incomplete = up.wait_incomplete(cut);
    assert_eq!(
        up.received().len(),
        0,
        "a complete request reached the upstream: {:?}",
        up.received()
    );
    assert_eq!(
        incomplete.len(),
        cut,
        "requests cut mid-body at the upstream: {incomplete:?}"
    );
}

#[test]
fn a_signed_callback_reaches_the_upstream_whole_and_the_caller_gets_the_verdict() {
    let up = Upstream::start();
    let envoy = start("stream-signed", &up);
    let body = br#"{"action":"opened","issue":{"number":1347,"title":"Found a bug"}}"#;

    for req in [github_signed(body), slowly(github_signed(&body[1..]))] {
        let resp = req
            .clone()
            .header("x-verified-signature", "forged")
            .send(envoy.addr());
        assert_eq!(resp.status, 200, "{}", resp.body_str());
        assert_eq!(resp.body_str(), "upstream-ok");
        assert_eq!(resp.header("x-verified-signature"), Some("github"));
        assert!(resp.header("x-callback-trace-id").is_some());
    }
    let got = up.received();
    assert_eq!(got.len(), 2, "{got:?}");
    // Exactly the bytes that were signed, framed as the caller framed them.
    assert_eq!(got[0].body, body);
    assert_eq!(
        got[0].header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(got[1].body, &body[1..]);
    assert!(got[1].chunked);
    for r in &got {
        // The documented loss: the verdict is not on the upstream request
        // (its headers left before the body was checked), and the client's
        // own copy was removed as always.
        assert_eq!(r.header("x-verified-signature"), None);
        assert!(r.header("traceparent").is_some());
    }
    assert!(up.incomplete().is_empty());
    let ch = [("channel", "github")];
    assert_eq!(envoy.metric("callback_signature_verified_total", &ch), 2.0);

    // Dedup still works on the checked body: the redelivery is answered.
    let dup = github_signed(body).send(envoy.addr());
    assert_eq!(dup.status, 200);
    assert_eq!(dup.header("x-callback-duplicate"), Some("true"));
    assert_eq!(up.received().len(), 2);
}

#[test]
fn an_invalid_signature_gets_401_and_the_upstream_never_gets_a_complete_request() {
    let up = Upstream::start();
    let envoy = start("stream-bad-signature", &up);
    let body = br#"{"action":"deleted","repository":{"id":1}}"#;

    let tampered =
        slowly(github_signed(body).body(br#"{"action":"deleted","repository":{"id":2}}"#.to_vec()));
    let unsigned = slowly(Request::post("/callbacks/github").json(r#"{"zen":"hi"}"#));
    let mut expected = Vec::new();
    for (req, code) in [
        (tampered, "signature_mismatch"),
        (unsigned, "signature_missing"),
    ] {
        let resp = req.send(envoy.addr());
        assert_eq!(resp.status, 401, "{}", resp.body_str());
        assert_eq!(resp.json()["error"], code);
        assert_eq!(resp.header("x-verified-signature"), None);
        expected.push(code);
    }
    // The headers went upstream (stream mode), the body never did: both
    // requests were cut before their end.
    assert_cut_off(&up, expected.len());
    for r in up.incomplete() {
        assert_eq!(r.path, "/callbacks/github");
        assert!(r.chunked);
        assert!(r.body.is_empty(), "body bytes leaked: {}", r.body_str());
    }

    // In one piece (content-length): the same answer, nothing complete.
    let resp = Request::post("/callbacks/github")
        .header("x-hub-signature-256", &sign::github("wrong-secret", body))
        .json("")
        .body(body.to_vec())
        .send(envoy.addr());
    assert_eq!(resp.status, 401, "{}", resp.body_str());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(up.received().len(), 0);
    assert_eq!(
        envoy.metric(
            "callback_signature_failed_total",
            &[("channel", "github"), ("reason", "mismatch")]
        ),
        2.0
    );
}

/// The upstream's only request, parsed as JSON, with its framing checked.
fn masked_upstream_json(up: &Upstream) -> (support::upstream::Received, serde_json::Value) {
    let got = up.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let r = got[0].clone();
    match r.header("content-length") {
        Some(len) => assert_eq!(len.parse::<usize>().unwrap(), r.body.len()),
        None => assert!(r.chunked, "neither content-length nor chunked"),
    }
    let json = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("upstream got invalid JSON ({e}): {}", r.body_str()));
    up.clear();
    (r, json)
}

#[test]
fn masked_bodies_are_forwarded_chunked_and_valid() {
    let up = Upstream::start();
    let envoy = start("stream-mask", &up);
    let order = r#"{"order":"ORD-1","phone":"+8613812345678","customer":{"name":"Li","email":"li@example.com"},"note":"card 4111 1111 1111 1111 ok"}"#;

    // Declared length: masking shortens the body, so the length is dropped
    // at the headers and the body goes out chunked.
    let resp = Request::post("/callbacks/orders")
        .json(order)
        .send(envoy.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    let (r, v) = masked_upstream_json(&up);
    assert!(r.chunked && r.header("content-length").is_none(), "{r:?}");
    assert_eq!(v["phone"], "***");
    assert_eq!(v["customer"]["email"], "***");
    assert_eq!(v["customer"]["name"], "Li");
    assert_eq!(v["note"], "card *** ok");
    assert!(!r.body_str().contains("8613812345678"));
    // Keys keep their order: only the masked values differ.
    assert_eq!(
        r.body_str(),
        r#"{"order":"ORD-1","phone":"***","customer":{"name":"Li","email":"***"},"note":"card *** ok"}"#
    );

    // Chunked in, several pieces: the same.
    let resp = slowly(Request::post("/callbacks/orders").json(order)).send(envoy.addr());
    assert_eq!(resp.status, 200);
    let (r, v) = masked_upstream_json(&up);
    assert!(r.chunked);
    assert_eq!(v["phone"], "***");

    // Nothing to mask: the body is forwarded byte for byte (still chunked,
    // the length was dropped before the body was seen).
    let clean = r#"{"order":"ORD-2","qty":3}"#;
    Request::post("/callbacks/orders")
        .json(clean)
        .send(envoy.addr());
    let (r, _) = masked_upstream_json(&up);
    assert_eq!(r.body_str(), clean);

    // Not JSON: masking does not apply and the body is forwarded byte for
    // byte (chunked: on a masking channel whether a body is JSON is decided
    // on the body, after its headers left).
    let text = "phone +8613812345678";
    let resp = Request::post("/callbacks/orders")
        .header("content-type", "text/plain")
        .body(text)
        .send(envoy.addr());
    assert_eq!(resp.status, 200);
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body_str(), text);
    assert!(envoy.metric("callback_masked_fields_total", &[("channel", "orders")]) >= 6.0);
}

#[test]
fn empty_bad_and_oversize_bodies_are_answered_and_never_complete_upstream() {
    let up = Upstream::start();
    let envoy = start("stream-replies", &up);

    // Empty by body: 204 at the end of the body.
    let resp = Request::post("/callbacks/plain")
        .json("{}")
        .send(envoy.addr());
    assert_eq!(resp.status, 204, "{}", resp.body_str());
    assert!(resp.body.is_empty());
    let resp = slowly(Request::post("/callbacks/plain").json(" { } ")).send(envoy.addr());
    assert_eq!(resp.status, 204, "{}", resp.body_str());
    // Empty by x-callback-status with a body: also answered once the body
    // is in (answering earlier would cut the caller off mid-send).
    let resp = slowly(
        Request::post("/callbacks/plain")
            .header("x-callback-status", "204")
            .json(r#"{"ignored":true}"#),
    )
    .send(envoy.addr());
    assert_eq!(resp.status, 204, "{}", resp.body_str());
    assert_cut_off(&up, 2);
    assert_eq!(
        envoy.metric("callback_empty_total", &[("channel", "plain")]),
        3.0
    );
    up.clear();

    // Bad JSON on a masked channel: 400.
    let resp = slowly(Request::post("/callbacks/orders").json(r#"{"phone":"+8613812345678""#))
        .send(envoy.addr());
    assert_eq!(resp.status, 400, "{}", resp.body_str());
    assert_eq!(resp.json()["error"], "bad_json");
    assert!(!resp.body_str().contains("8613812345678"));
    assert_cut_off(&up, 1);
    up.clear();

    // Chunked past max_body_bytes: 413 as soon as the buffer passes it.
    let big = "x".repeat(3000);
    let resp = Request::post("/callbacks/plain")
        .body(big.clone())
        .chunked(big.as_bytes(), 6, Duration::from_millis(100))
        .send(envoy.addr());
    assert_eq!(resp.status, 413, "{}", resp.body_str());
    assert_eq!(resp.json()["error"], "too_large");
    assert_cut_off(&up, 1);
    up.clear();

    // A declared length over the limit: 413 at the headers, before anything
    // went upstream.
    let resp = Request::post("/callbacks/plain")
        .body(big)
        .send(envoy.addr());
    assert_eq!(resp.status, 413);
    std::thread::sleep(Duration::from_millis(300));
    assert_cut_off(&up, 0);
    assert_eq!(
        envoy.metric(
            "callback_rejected_total",
            &[("channel", "plain"), ("reason", "too_large")]
        ),
        2.0
    );
}

#[test]
fn requests_without_a_body_or_outside_the_channels_behave_as_before() {
    let up = Upstream::start();
    let envoy = start("stream-unchanged", &up);

    // No body on a channel: checked at the headers, before they leave, so
    // the verdict still reaches the upstream request.
    let resp = Request::post("/callbacks/github")
        .header("x-hub-signature-256", &sign::github(GITHUB_SECRET, b""))
        .send(envoy.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert_eq!(resp.header("x-verified-signature"), Some("github"));
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("x-verified-signature"), Some("github"));
    up.clear();
    // ... and failures are answered without anything going upstream.
    let resp = Request::post("/callbacks/github").send(envoy.addr());
    assert_eq!(resp.status, 401, "{}", resp.body_str());
    let resp = Request::post("/callbacks/plain").send(envoy.addr());
    assert_eq!(resp.status, 204);
    std::thread::sleep(Duration::from_millis(300));
    assert_cut_off(&up, 0);
    // A body-less GET is no callback (a verification handshake): it passes.
    let resp = Request::get("/callbacks/plain?challenge=1").send(envoy.addr());
    assert_eq!(resp.status, 200);
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "GET");
    up.clear();

    // Outside every channel: forwarded untouched, spoofable headers removed,
    // no trace made.
    let resp = Request::post("/elsewhere")
        .header("x-verified-signature", "github")
        .header("x-callback-cluster", "region-a")
        .json("{}")
        .send(envoy.addr());
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-callback-trace-id"), None);
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body_str(), "{}");
    assert_eq!(got[0].header("content-length"), Some("2"));
    assert_eq!(got[0].header("x-verified-signature"), None);
    assert_eq!(got[0].header("x-callback-cluster"), None);
    assert_eq!(got[0].header("traceparent"), None);
}

#[test]
fn holding_headers_without_the_flag_stalls_which_is_why_stream_mode_exists() {
    // The same proxy and policy with hold_headers left at its default: the
    // body callbacks never run and the request stalls until the idle timeout.
    let up = Upstream::start();
    let holding = PLUGIN.replacen(r#""hold_headers": false,"#, "", 1);
    assert_ne!(holding, PLUGIN);
    let envoy = Envoy::builder("stream-hold-stalls")
        .plugin(&holding)
        .without_stop_iteration()
        .stream_idle_timeout("2s")
        .cluster("upstream", up.port())
        .start();
    let body = br#"{"zen":"hi"}"#;
    let resp = github_signed(body).send(envoy.addr());
    assert_eq!(resp.status, 504, "{}", resp.body_str());
    assert_eq!(resp.body_str(), "stream timeout");
    assert_eq!(up.received().len(), 0);
}

#[test]
fn routing_is_decided_at_the_headers_and_a_refusing_cluster_is_seen_early() {
    // The routing header is written before the headers leave, as when
    // holding. In stream mode the router connects while the body is still
    // being checked: a cluster that refuses the connection answers (503)
    // before the filter forwards anything, and that still counts against it.
    let up = Upstream::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_port = closed.local_addr().unwrap().port();
    drop(closed);
    let plugin = r#"{
      "hold_headers": false,
      "channels": [
        {"name": "up", "match": {"path_prefix": "/callbacks/up"},
         "routing": {"clusters": [{"name": "upstream", "weight": 1, "latency_sla_ms": 5000}]}},
        {"name": "down", "match": {"path_prefix": "/callbacks/down"},
         "routing": {"clusters": [{"name": "down", "weight": 1, "latency_sla_ms": 5000}]}}
      ]
    }"#;
    let envoy = Envoy::builder("stream-routing")
        .plugin(plugin)
        .without_stop_iteration()
        .stream_idle_timeout("5s")
        .cluster("upstream", up.port())
        .cluster("down", down_port)
        .route_cluster_header("/", "x-callback-cluster")
        .start();

    let resp = slowly(Request::post("/callbacks/up").json(r#"{"id":1}"#)).send(envoy.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert_eq!(up.received().len(), 1);
    assert_eq!(
        up.received()[0].header("x-callback-cluster"),
        Some("upstream")
    );
    assert_eq!(
        envoy.metric(
            "callback_routed_total",
            &[("channel", "up"), ("cluster", "upstream")]
        ),
        1.0
    );

    // The client may be cut off mid-send once Envoy has answered.
    let _ = support::client::try_send(
        &Request::post("/callbacks/down").json("").chunked(
            br#"{"id":2}"#,
            4,
            Duration::from_millis(300),
        ),
        envoy.addr(),
    );
    assert_eq!(
        envoy.wait_metric(
            "callback_upstream_failures_total",
            &[("channel", "down"), ("cluster", "down")],
            1.0
        ),
        1.0
    );
}

#[test]
fn a_body_ending_in_trailers_is_still_checked_in_stream_mode() {
    // The body then never ends with end_of_stream: the trailers callback
    // must run the checks, or the held body would go out unchecked.
    let up = Upstream::start();
    let envoy = Envoy::builder("stream-trailers")
        .plugin(PLUGIN)
        .without_stop_iteration()
        .stream_idle_timeout("5s")
        .cluster("upstream", up.port())
        .http1_trailers()
        .start();
    let body = br#"{"forged":true}"#;
    let resp = slowly(
        Request::post("/callbacks/github")
            .json("")
            .body(body.to_vec()),
    )
    .trailer("x-checksum", "abc")
    .send(envoy.addr());
    assert_eq!(resp.status, 401, "{}", resp.body_str());
    assert_cut_off(&up, 1);

    let resp = slowly(github_signed(body))
        .trailer("x-checksum", "abc")
        .send(envoy.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert_eq!(resp.header("x-verified-signature"), Some("github"));
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, body);
}

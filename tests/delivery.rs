#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! No callback lost: dedup tells a retry that arrives while the first
//! attempt is still in flight to come back (`409 in_progress` with
//! `retry-after`) instead of "delivered"; only a 2xx from the service makes
//! a delivery a duplicate; a failed attempt lets the next retry through.

mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::{Envoy, Reply, Request, Upstream, sign};

const KEY: &[u8] = b"callback-guard delivery tests key";

fn whsec() -> String {
    format!("whsec_{}", sign::b64(KEY))
}

fn signed(id: &str, body: &str) -> Request {
    sign::standard_request("/callbacks/payments", &whsec(), id, body)
}

fn start(name: &str, up: &Upstream) -> Envoy {
    let plugin = json!({"channels": [{
        "name": "payments", "match": {"path_prefix": "/callbacks/payments"},
        "signature": {"scheme": "standard-webhooks", "secrets": [{"value": whsec()}]},
        "dedup": {"window_s": 3600, "in_flight_s": 30}
    }]});
    Envoy::builder(name)
        .plugin(&plugin.to_string())
        .cluster("upstream", up.port())
        .concurrency(2)
        .start()
}

/// Sends `req` on another thread once, returns its join handle after the
/// upstream has it (the attempt is then in flight).
fn in_flight(
    envoy: &Envoy,
    up: &Upstream,
    req: Request,
) -> std::thread::JoinHandle<support::Response> {
    let before = up.count();
    let addr = envoy.addr();
    let handle = std::thread::spawn(move || req.send(addr));
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.count() == before {
        assert!(Instant::now() < deadline, "the first attempt never arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    handle
}

#[test]
fn a_retry_during_a_failing_first_attempt_is_not_told_delivered() {
    let up = Upstream::with_reply(Reply {
        status: 503,
        delay: Duration::from_millis(800),
        ..Reply::default()
    });
    let envoy = start("in-flight-failing", &up);
    let req = signed("msg_inflight_1", r#"{"amount":100}"#);
    let first = in_flight(&envoy, &up, req.clone());

    // The provider's retry while the first attempt is in flight.
    let retry = req.send(envoy.addr());
    assert_eq!(retry.status, 409, "{}", retry.body_str());
    assert_eq!(retry.json()["error"], "in_progress");
    assert_eq!(retry.header("x-callback-duplicate"), None);
    let after: u64 = retry.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&after), "retry-after {after}");
    assert_eq!(up.count(), 1, "the retry was not forwarded");

    // The first attempt fails.
    assert_eq!(first.join().unwrap().status, 503);

    // The retry after it is forwarded and delivered.
    up.set_reply(Reply::default());
    let again = req.send(envoy.addr());
    assert_eq!(again.status, 200, "{}", again.body_str());
    assert_eq!(again.header("x-callback-duplicate"), None);
    assert_eq!(up.count(), 2);
    let got = up.received();
    assert_eq!(got[1].body_str(), r#"{"amount":100}"#);

    // Now it is delivered: a further retry is a duplicate, and says so as
    // a status, not an error.
    let dup = req.send(envoy.addr());
    assert_eq!(dup.status, 200);
    assert_eq!(dup.header("x-callback-duplicate"), Some("true"));
    assert_eq!(dup.json()["status"], "duplicate");
    assert!(dup.json().get("error").is_none());
    assert_eq!(up.count(), 2);
    assert_eq!(
        envoy.metric(
            "callback_rejected_total",
            &[("channel", "payments"), ("reason", "in_progress")]
        ),
        1.0
    );
    assert_eq!(
        envoy.metric("callback_duplicates_total", &[("channel", "payments")]),
        1.0
    );
}

#[test]
fn only_a_2xx_marks_a_delivery_delivered() {
    let up = Upstream::with_reply(Reply {
        status: 422,
        ..Reply::default()
    });
    let envoy = start("non-2xx", &up);
    let req = signed("msg_rejected", r#"{"x":1}"#);
    // The service refuses it (4xx): not delivered, the retry goes through.
    assert_eq!(req.send(envoy.addr()).status, 422);
    up.set_reply(Reply::default());
    let retry = req.send(envoy.addr());
    assert_eq!(retry.status, 200);
    assert_eq!(retry.header("x-callback-duplicate"), None);
    assert_eq!(up.count(), 2);

    // A slow success: the retry during it is 409, the one after it a
    // duplicate.
    up.set_reply(Reply {
        delay: Duration::from_millis(600),
        ..Reply::default()
    });
    let req = signed("msg_slow_ok", r#"{"x":2}"#);
    let first = in_flight(&envoy, &up, req.clone());
    assert_eq!(req.send(envoy.addr()).status, 409);
    assert_eq!(first.join().unwrap().status, 200);
    let dup = req.send(envoy.addr());
    assert_eq!(dup.status, 200);
    assert_eq!(dup.header("x-callback-duplicate"), Some("true"));
    assert_eq!(up.count(), 3);
}

fn start_with_sink(name: &str, up: &Upstream, sink_port: u16) -> Envoy {
    let plugin = json!({
        "channels": [{
            "name": "payments", "match": {"path_prefix": "/callbacks/payments"},
            "signature": {"scheme": "standard-webhooks", "secrets": [{"value": whsec()}]},
            "dedup": {"window_s": 3600},
            "mask": {"fields": ["phone"]}
        }],
        "dead_letter": {"cluster": "deadletter", "path": "/dlq", "timeout_ms": 1000}
    });
    Envoy::builder(name)
        .plugin(&plugin.to_string())
        .cluster("upstream", up.port())
        .cluster("deadletter", sink_port)
        .start()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_callback_the_upstream_failed_is_copied_to_the_dead_letter_sink() {
    let up = Upstream::with_reply(Reply {
        status: 503,
        ..Reply::default()
    });
    let sink = Upstream::start();
    let envoy = start_with_sink("dead-letter", &up, sink.port());
    let body = r#"{"amount":100,"phone":"+8613812345678"}"#;
    let resp = signed("msg_dlq_1", body).send(envoy.addr());
    assert_eq!(resp.status, 503, "the provider gets the upstream's answer");
    let trace = resp.header("x-callback-trace-id").unwrap().to_string();
    wait_for("the dead-letter copy", || sink.count() == 1);
    let copy = &sink.received()[0];
    assert_eq!(copy.method, "POST");
    assert_eq!(copy.path, "/dlq");
    let e: serde_json::Value = serde_json::from_slice(&copy.body).unwrap();
    assert_eq!(e["version"], 1);
    assert_eq!(e["channel"], "payments");
    assert_eq!(e["delivery_id"], "msg_dlq_1");
    assert_eq!(e["trace_id"], trace);
    assert_eq!(e["status"], 503);
    assert_eq!(e["failure"], "503");
    // The body as forwarded: masked.
    assert_eq!(e["body"], r#"{"amount":100,"phone":"***"}"#);
    assert!(
        !copy.body_str().contains("8613812345678"),
        "no raw PII in the copy"
    );
    let headers: Vec<(String, String)> = serde_json::from_value(e["headers"].clone()).unwrap();
    assert!(headers.contains(&("webhook-id".into(), "msg_dlq_1".into())));
    assert!(headers.contains(&("x-verified-signature".into(), "standard-webhooks".into())));
    envoy.wait_metric(
        "callback_deadletter_total",
        &[("channel", "payments"), ("result", "sent")],
        1.0,
    );
    // A reset upstream is copied too, with Envoy's reason.
    up.set_reply(Reply {
        reset: true,
        ..Reply::default()
    });
    let resp = signed("msg_dlq_2", r#"{"amount":200}"#).send(envoy.addr());
    assert!(resp.status >= 500);
    wait_for("the second copy", || sink.count() == 2);
    let e: serde_json::Value = serde_json::from_slice(&sink.received()[1].body).unwrap();
    assert_eq!(e["delivery_id"], "msg_dlq_2");
    // A delivered callback is not copied.
    up.set_reply(Reply::default());
    assert_eq!(
        signed("msg_dlq_3", r#"{"amount":300}"#)
            .send(envoy.addr())
            .status,
        200
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.count(), 2);
}

#[test]
fn a_sink_that_is_down_is_counted_and_changes_nothing_for_the_provider() {
    let up = Upstream::with_reply(Reply {
        status: 500,
        ..Reply::default()
    });
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let envoy = start_with_sink("dead-letter-down", &up, closed);
    for i in 0..3 {
        let resp = signed(&format!("msg_down_{i}"), r#"{"x":1}"#).send(envoy.addr());
        assert_eq!(resp.status, 500, "the provider's answer is the upstream's");
    }
    envoy.wait_metric(
        "callback_deadletter_total",
        &[("channel", "payments"), ("result", "failed")],
        3.0,
    );
    assert_eq!(
        envoy.metric(
            "callback_deadletter_total",
            &[("channel", "payments"), ("result", "sent")]
        ),
        0.0
    );
    // The VM is fine: the next callback is forwarded as usual.
    up.set_reply(Reply::default());
    assert_eq!(
        signed("msg_down_ok", r#"{"x":2}"#)
            .send(envoy.addr())
            .status,
        200
    );
}

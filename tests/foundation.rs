#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End to end in a real Envoy: channels, empty callbacks, body limit,
//! anti-spoofing, trace context, local replies, metrics, bad config.

mod support;

use support::assert::{is_trace_id, local_reply};

use std::time::Duration;
use support::{Envoy, Reply, Request, Upstream};

const PLUGIN: &str = r#"{
  "channels": [
    {"name": "payments", "match": {"path_prefix": "/callbacks/payments", "hosts": ["hooks.example.com"]},
     "max_body_bytes": 4096},
    {"name": "logistics", "match": {"path_prefix": "/callbacks/logistics"},
     "empty": {"action": "forward"}}
  ]
}"#;

fn start(name: &str, upstream: &Upstream) -> Envoy {
    Envoy::builder(name)
        .plugin(PLUGIN)
        .cluster("upstream", upstream.port())
        .start()
}

#[test]
fn empty_callbacks_are_answered_204_counted_and_not_forwarded() {
    let up = Upstream::start();
    let envoy = start("empty-reply", &up);
    let path = "/callbacks/payments/order";
    let empties = [
        Request::post(path)
            .header("x-callback-status", "204")
            .json(r#"{"would":"be ignored"}"#),
        Request::post(path),
        Request::post(path).body("  \r\n\t "),
        Request::post(path).json("{}"),
        Request::post(path).json(" [ ] "),
        Request::post(path).json("null"),
        Request::post(path)
            .json("{\n}")
            .chunked(b"{\n}", 3, Duration::from_millis(20)),
    ];
    for req in &empties {
        let resp = req.send(envoy.addr());
        assert_eq!(resp.status, 204, "{:?} -> {}", req.body, resp.body_str());
        assert!(resp.body.is_empty());
        assert!(resp.header("x-callback-trace-id").is_some_and(is_trace_id));
    }
    assert_eq!(up.count(), 0, "empty callbacks must not reach the upstream");
    let ch = [("channel", "payments")];
    assert_eq!(
        envoy.metric("callback_empty_total", &ch),
        empties.len() as f64
    );
    assert_eq!(
        envoy.metric("callback_requests_total", &ch),
        empties.len() as f64
    );

    // A real callback on the same channel goes through with its body.
    let resp = Request::post(path)
        .json(r#"{"id":"evt_1"}"#)
        .send(envoy.addr());
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body_str(), "upstream-ok");
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body_str(), r#"{"id":"evt_1"}"#);
    assert_eq!(
        envoy.metric("callback_empty_total", &ch),
        empties.len() as f64
    );
    assert_eq!(
        envoy.metric("callback_requests_total", &ch),
        empties.len() as f64 + 1.0
    );
    // The other channel was declared at zero.
    assert_eq!(
        support::envoy::find_metric(
            &envoy.prometheus(),
            "callback_empty_total",
            &[("channel", "logistics")]
        ),
        Some(0.0)
    );
}

#[test]
fn empty_callbacks_with_forward_are_counted_and_forwarded() {
    let up = Upstream::start();
    let envoy = start("empty-forward", &up);
    for req in [
        Request::post("/callbacks/logistics").json("{}"),
        Request::post("/callbacks/logistics").header("x-callback-status", "204"),
    ] {
        assert_eq!(req.send(envoy.addr()).status, 200);
    }
    assert_eq!(up.count(), 2);
    assert_eq!(
        envoy.metric("callback_empty_total", &[("channel", "logistics")]),
        2.0
    );
}

#[test]
fn channel_match_needs_prefix_and_host() {
    let up = Upstream::start();
    let envoy = start("match", &up);
    // Wrong host: not the payments channel, so `{}` passes through.
    let resp = Request::post("/callbacks/payments")
        .host("other.example.com")
        .json("{}")
        .send(envoy.addr());
    assert_eq!(resp.status, 200);
    // Host with port still matches.
    let resp = Request::post("/callbacks/payments")
        .host("hooks.example.com:10000")
        .json("{}")
        .send(envoy.addr());
    assert_eq!(resp.status, 204);
    // Path tricks a normalising service would undo do not escape the channel
    // (the harness leaves Envoy's own normalize_path off to prove it).
    for tricky in [
        "/callbacks//payments",
        "/callbacks/./payments",
        "/callbacks/%70ayments",
    ] {
        let resp = Request::post(tricky)
            .host("hooks.example.com")
            .json("{}")
            .send(envoy.addr());
        assert_eq!(resp.status, 204, "{tricky} escaped the channel");
    }
    // Outside every channel: untouched and not counted.
    let resp = Request::post("/health").json("{}").send(envoy.addr());
    assert_eq!(resp.status, 200);
    assert_eq!(up.count(), 2);
    assert_eq!(up.received()[1].body_str(), "{}");
    assert_eq!(
        envoy.metric("callback_requests_total", &[("channel", "payments")]),
        4.0
    );
}

#[test]
fn bodies_over_the_limit_get_413_and_never_reach_the_upstream() {
    let up = Upstream::start();
    let envoy = start("too-large", &up);
    let path = "/callbacks/payments";
    let big = "x".repeat(5000);

    // Declared length over the limit: refused before any body is read.
    let resp = Request::post(path).json(&big).send(envoy.addr());
    local_reply(&resp, 413, Some("too_large"), "");
    // Chunked, no length: refused once the buffered body passes the limit.
    let resp = Request::post(path)
        .json(&big)
        .chunked(big.as_bytes(), 10, Duration::from_millis(5))
        .send(envoy.addr());
    local_reply(&resp, 413, Some("too_large"), "");
    assert_eq!(up.count(), 0);
    assert_eq!(
        envoy.metric(
            "callback_rejected_total",
            &[("channel", "payments"), ("reason", "too_large")]
        ),
        2.0
    );

    // Exactly at the limit: forwarded intact, also when it arrives in pieces.
    let at_limit = "y".repeat(4096);
    let resp = Request::post(path)
        .body(at_limit.clone())
        .send(envoy.addr());
    assert_eq!(resp.status, 200);
    let resp = Request::post(path)
        .body(at_limit.clone())
        .chunked(at_limit.as_bytes(), 40, Duration::from_millis(2))
        .send(envoy.addr());
    assert_eq!(resp.status, 200);
    let got = up.received();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r.body == at_limit.as_bytes()));
}

#[test]
fn client_cannot_spoof_filter_headers_in_or_out_of_a_channel() {
    let up = Upstream::start();
    let envoy = start("spoof", &up);
    for path in ["/callbacks/payments", "/elsewhere"] {
        let resp = Request::post(path)
            .header("x-verified-signature", "standard-webhooks")
            .header("X-Callback-Cluster", "region-a")
            .header("x-callback-priority-admitted", "high")
            .json(r#"{"a":1}"#)
            .send(envoy.addr());
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("x-verified-signature"), None);
    }
    let got = up.received();
    assert_eq!(got.len(), 2);
    for r in got {
        for h in [
            "x-verified-signature",
            "x-callback-cluster",
            "x-callback-priority-admitted",
        ] {
            assert_eq!(
                r.header(h),
                None,
                "{h} leaked to the upstream on {}",
                r.path
            );
        }
    }
}

#[test]
fn traceparent_is_kept_when_valid_and_generated_otherwise() {
    let up = Upstream::start();
    let envoy = start("trace", &up);
    let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    let resp = Request::post("/callbacks/payments")
        .header("traceparent", valid)
        .json(r#"{"a":1}"#)
        .send(envoy.addr());
    assert_eq!(
        resp.header("x-callback-trace-id"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );

    let resp_none = Request::post("/callbacks/payments")
        .json(r#"{"a":2}"#)
        .send(envoy.addr());
    let resp_bad = Request::post("/callbacks/payments")
        .header("traceparent", "00-zz-bad-01")
        .json(r#"{"a":3}"#)
        .send(envoy.addr());
    // Outside every channel the filter leaves the trace alone: nothing
    // generated, nothing on the response.
    let resp_other = Request::post("/other")
        .header("traceparent", "00-zz-bad-01")
        .json(r#"{"a":4}"#)
        .send(envoy.addr());
    assert_eq!(resp_other.status, 200);
    assert_eq!(resp_other.header("x-callback-trace-id"), None);

    let got = up.received();
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].header("traceparent"), Some("00-zz-bad-01"));
    assert_eq!(got[0].header("traceparent"), Some(valid));
    for (resp, req) in [(&resp_none, &got[1]), (&resp_bad, &got[2])] {
        let tp = req.header("traceparent").expect("generated traceparent");
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!(parts[0], "00");
        assert!(is_trace_id(parts[1]), "{tp}");
        assert_eq!(parts[2].len(), 16);
        assert_eq!(resp.header("x-callback-trace-id"), Some(parts[1]));
    }
    assert_ne!(
        resp_none.header("x-callback-trace-id"),
        resp_bad.header("x-callback-trace-id")
    );
}

#[test]
fn upstream_5xx_is_counted_and_duration_is_recorded() {
    let up = Upstream::with_reply(Reply {
        status: 503,
        ..Reply::default()
    });
    let envoy = start("upstream-fail", &up);
    let resp = Request::post("/callbacks/payments")
        .json(r#"{"a":1}"#)
        .send(envoy.addr());
    assert_eq!(resp.status, 503);
    assert!(resp.header("x-callback-trace-id").is_some());
    up.set_reply(Reply::default());
    assert_eq!(
        Request::post("/callbacks/payments")
            .json(r#"{"a":2}"#)
            .send(envoy.addr())
            .status,
        200
    );
    assert_eq!(
        envoy.metric(
            "callback_upstream_failures_total",
            &[("channel", "payments"), ("cluster", "upstream")]
        ),
        1.0
    );
    let count = envoy.wait_metric(
        "callback_duration_ms_count",
        &[("channel", "payments")],
        2.0,
    );
    assert_eq!(count, 2.0);
}

#[test]
fn invalid_configuration_is_refused_with_the_field_path() {
    let cases = [
        (
            r#"{"channels":[{"name":"Bad Name","match":{"path_prefix":"/cb"}}]}"#,
            "channels[0].name",
        ),
        (
            r#"{"channels":[{"name":"a","match":{"path_prefix":"/cb"},"max_body_byts":10}]}"#,
            "max_body_byts",
        ),
        (
            r#"{"channels":[{"name":"a","match":{"path_prefix":"/cb"},"empty":{"action":"drop"}}]}"#,
            "channels[0].empty.action",
        ),
    ];
    for (i, (config, needle)) in cases.iter().enumerate() {
        let up = Upstream::start();
        let log = Envoy::builder(&format!("bad-config-{i}"))
            .plugin(config)
            .cluster("upstream", up.port())
            .start_expect_exit();
        let line = support::assert::config_error_line(&log);
        assert!(line.contains(needle), "{needle} not named in: {line}");
    }
}

#[test]
fn a_refused_configuration_logs_every_error_in_one_line() {
    // Issue #14: a shape error in one channel does not hide the others, and
    // compile errors of every section are listed, in one log line.
    let up = Upstream::start();
    let log = Envoy::builder("bad-config-all")
        .plugin(
            r#"{"channels":[
                {"name":"Bad Name","match":{"path_prefix":"/a"}},
                {"name":"b","match":{"path_prefix":"/b"},"max_body_byts":10},
                {"name":"c","match":{"path_prefix":"c"}}],
               "refusal_log":{"per_second":0}}"#,
        )
        .cluster("upstream", up.port())
        .start_expect_exit();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("callback-guard: invalid configuration"))
        .collect();
    assert!(
        !lines.is_empty(),
        "no configuration error in the log:\n{log}"
    );
    for line in lines {
        for needle in [
            "channels[1].max_body_byts: unknown field",
            "channels[0].name: \"Bad Name\" must match",
            "channels[2].match.path_prefix: must start with '/'",
            "refusal_log.per_second: must be between 1 and 1000",
        ] {
            assert!(line.contains(needle), "{needle} not in: {line}");
        }
    }
}

#[test]
fn a_body_ending_in_trailers_is_still_checked() {
    // With trailers the body never ends with end_of_stream: the filter must
    // check it from the trailers callback, not forward it unchecked.
    let up = Upstream::start();
    let envoy = Envoy::builder("trailers")
        .plugin(
            r#"{"channels":[{"name":"signed","match":{"path_prefix":"/cb"},
                 "signature":{"scheme":"github","secrets":[{"value":"s3cret"}]}}]}"#,
        )
        .cluster("upstream", up.port())
        .http1_trailers()
        .start();
    let body = br#"{"forged":true}"#;
    let resp = Request::post("/cb")
        .json("")
        .chunked(body, 3, Duration::from_millis(5))
        .trailer("x-checksum", "abc")
        .send(envoy.addr());
    assert_eq!(resp.status, 401, "{}", resp.body_str());
    assert_eq!(
        up.count(),
        0,
        "an unsigned body with trailers reached the upstream"
    );

    // A correctly signed one with trailers goes through intact.
    let sig = support::sign::github("s3cret", body);
    let resp = Request::post("/cb")
        .header("x-hub-signature-256", &sig)
        .json("")
        .chunked(body, 3, Duration::from_millis(5))
        .trailer("x-checksum", "abc")
        .send(envoy.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, body);
    assert_eq!(got[0].header("x-verified-signature"), Some("github"));
}

#[test]
fn an_upstream_reset_is_a_counted_failure_and_the_retry_is_not_a_duplicate() {
    let up = Upstream::with_reply(Reply {
        reset: true,
        ..Reply::default()
    });
    let envoy = Envoy::builder("upstream-reset")
        .plugin(
            r#"{"channels":[{"name":"orders","match":{"path_prefix":"/cb"},"dedup":{"window_s":60,"allow_unsigned":true}}]}"#,
        )
        .cluster("upstream", up.port())
        .start();
    let delivery = Request::post("/cb")
        .header("webhook-id", "msg_reset_1")
        .json(r#"{"a":1}"#);
    let resp = delivery.send(envoy.addr());
    assert!(
        resp.status >= 500,
        "reset upstream answered {}",
        resp.status
    );
    assert!(up.count() >= 1);
    assert!(
        envoy.metric(
            "callback_upstream_failures_total",
            &[("channel", "orders"), ("cluster", "upstream")]
        ) >= 1.0
    );
    // The provider retries: the id was forgotten, so it is forwarded again.
    up.set_reply(Reply::default());
    let before = up.count();
    let resp = delivery.send(envoy.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert_eq!(resp.header("x-callback-duplicate"), None);
    assert_eq!(up.count(), before + 1);
    // Now it was delivered: the next copy is a duplicate.
    let resp = delivery.send(envoy.addr());
    assert_eq!(resp.header("x-callback-duplicate"), Some("true"));
    assert_eq!(up.count(), before + 1);
}

#[test]
fn expect_100_continue_is_answered_while_the_filter_holds_the_headers() {
    // curl and Java clients send `Expect: 100-continue` for larger bodies and
    // wait for the interim response before sending the body; the filter
    // holding the headers must not deadlock that.
    use std::io::{Read, Write};
    let up = Upstream::start();
    let envoy = start("expect-continue", &up);
    let body = format!(r#"{{"note":"{}"}}"#, "x".repeat(2000));
    let mut s = std::net::TcpStream::connect(envoy.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /callbacks/logistics HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    s.write_all(body.as_bytes()).unwrap();
    let mut rest = String::new();
    let _ = s.read_to_string(&mut rest);
    assert!(rest.contains("HTTP/1.1 200"), "{rest}");
    assert_eq!(up.received()[0].body_str(), body);
}

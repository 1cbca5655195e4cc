#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The dead-letter Redis Stream sink (issue #18): a callback the upstream
//! failed is copied, masked, into a capped Redis Stream through Envoy →
//! webdis → Redis (`dead_letter.redis_stream`, with `state`);
//! `callback-guard replay` reads it back and re-sends it; a store that is
//! down is counted and changes nothing for the provider.

mod support;

use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};
use support::redis::{REPLAY_PASSWORD, REPLAY_USER, Store};
use support::{Envoy, Reply, Request, Upstream, sign};

const KEY: &[u8] = b"callback-guard dead-letter stream";
const STREAM: &str = "cg:deadletter";

fn whsec() -> String {
    format!("whsec_{}", sign::b64(KEY))
}

fn signed(id: &str, body: &str) -> Request {
    sign::standard_request("/callbacks/payments", &whsec(), id, body)
}

fn start(name: &str, up: &Upstream, store: &Store) -> Envoy {
    let plugin = json!({
        "channels": [{
            "name": "payments", "match": {"path_prefix": "/callbacks/payments"},
            "signature": {"scheme": "standard-webhooks", "secrets": [{"value": whsec()}]},
            "mask": {"fields": ["phone"]}
        }],
        "state": store.state_config("fleet-state"),
        "dead_letter": {"redis_stream": {"key": STREAM, "max_len": 100}}
    });
    Envoy::builder(name)
        .plugin(&plugin.to_string())
        .cluster("upstream", up.port())
        .cluster("fleet-state", store.webdis_port)
        .start()
}

fn redis_cli(store: &Store, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &store.redis_port.to_string(), "--user", REPLAY_USER])
        .args(["--pass", REPLAY_PASSWORD, "--no-auth-warning", "--raw"])
        .args(args)
        .output()
        .expect("redis-cli (make state-tools)");
    String::from_utf8(out.stdout).unwrap()
}

/// The stream's entries as (id, fields), read as the replay user
/// (`--raw`: the id, then one line per field name and value; the envelope
/// is compact JSON, one line; every entry here has the three fields).
fn entries(store: &Store) -> Vec<(String, Vec<(String, String)>)> {
    let text = redis_cli(store, &["XRANGE", STREAM, "-", "+"]);
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(7)
        .map(|e| {
            let fields = e[1..]
                .chunks(2)
                .map(|kv| (kv[0].to_string(), kv.get(1).unwrap_or(&"").to_string()))
                .collect();
            (e[0].to_string(), fields)
        })
        .collect()
}

fn only_entry(store: &Store) -> (String, Vec<(String, String)>) {
    assert_eq!(redis_cli(store, &["XLEN", STREAM]).trim(), "1");
    entries(store).remove(0)
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no field {name} in {fields:?}"))
}

fn replay(store: &Store, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callback-guard"))
        .arg("replay")
        .args(["--redis", &format!("127.0.0.1:{}", store.redis_port)])
        .args([
            "--user",
            REPLAY_USER,
            "--password-env",
            "CG_REPLAY_PASSWORD",
        ])
        .args(["--key", STREAM])
        .args(extra)
        .env("CG_REPLAY_PASSWORD", REPLAY_PASSWORD)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_failed_callback_lands_masked_in_the_stream_and_replay_resends_it() {
    let store = Store::start();
    let up = Upstream::with_reply(Reply {
        status: 503,
        ..Reply::default()
    });
    let envoy = start("dead-letter-stream", &up, &store);
    let body = r#"{"amount":100,"phone":"+8613812345678"}"#;
    let resp = signed("msg_stream_1", body).send(envoy.addr());
    assert_eq!(resp.status, 503, "the provider gets the upstream's answer");
    let trace = resp.header("x-callback-trace-id").unwrap().to_string();
    envoy.wait_metric(
        "callback_deadletter_total",
        &[("channel", "payments"), ("result", "sent")],
        1.0,
    );

    let (id, fields) = &only_entry(&store);
    assert_eq!(field(fields, "channel"), "payments");
    assert_eq!(field(fields, "delivery_id"), "msg_stream_1");
    let raw = field(fields, "envelope");
    assert!(!raw.contains("8613812345678"), "no raw PII in the stream");
    let e: serde_json::Value = serde_json::from_str(raw).unwrap();
    assert_eq!(e["version"], 1);
    assert_eq!(e["channel"], "payments");
    assert_eq!(e["delivery_id"], "msg_stream_1");
    assert_eq!(e["trace_id"], trace);
    assert_eq!(e["status"], 503);
    assert_eq!(e["body"], r#"{"amount":100,"phone":"***"}"#);

    // Listing sends nothing.
    let (ok, out) = replay(&store, &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("{id} channel=payments delivery_id=msg_stream_1")),
        "{out}"
    );

    // Replay to a recorder: the masked body, the provider's headers, the
    // stream id; not the filter's claim of a verified signature.
    let target = Upstream::start();
    let url = format!("http://127.0.0.1:{}/callbacks/payments", target.port());
    let (ok, out) = replay(&store, &["--target", &url]);
    assert!(ok, "{out}");
    assert!(out.contains("replayed: 200"), "{out}");
    let got = target.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/callbacks/payments");
    assert_eq!(got[0].body_str(), r#"{"amount":100,"phone":"***"}"#);
    assert_eq!(got[0].header("x-callback-replay"), Some(id.as_str()));
    assert_eq!(got[0].header("webhook-id"), Some("msg_stream_1"));
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(got[0].header("x-verified-signature"), None);

    // Re-signed with the channel's secret, a replay passes back through
    // the verifying filter to the (now healthy) service.
    up.set_reply(Reply::default());
    let before = up.count();
    let url = format!("http://{}/callbacks/payments", envoy.addr());
    let out = Command::new(env!("CARGO_BIN_EXE_callback-guard"))
        .arg("replay")
        .args(["--redis", &format!("127.0.0.1:{}", store.redis_port)])
        .args([
            "--user",
            REPLAY_USER,
            "--password-env",
            "CG_REPLAY_PASSWORD",
        ])
        .args(["--key", STREAM, "--target", &url])
        .args(["--sign-secret-env", "CG_SIGN"])
        .env("CG_REPLAY_PASSWORD", REPLAY_PASSWORD)
        .env("CG_SIGN", whsec())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("replayed: 200"),
        "{text}"
    );
    let got = &up.received()[before];
    assert_eq!(got.body_str(), r#"{"amount":100,"phone":"***"}"#);
    assert_eq!(got.header("x-callback-replay"), Some(id.as_str()));
    assert_eq!(
        got.header("x-verified-signature"),
        Some("standard-webhooks")
    );

    // A target that fails makes the run fail.
    let failing = Upstream::with_reply(Reply {
        status: 500,
        ..Reply::default()
    });
    let url = format!("http://127.0.0.1:{}/x", failing.port());
    let (ok, out) = replay(&store, &["--target", &url]);
    assert!(!ok && out.contains("FAILED: target answered 500"), "{out}");
    // The filter's own Redis user cannot read the stream back.
    let denied = Command::new("redis-cli")
        .args(["-p", &store.redis_port.to_string()])
        .args([
            "--pass",
            support::redis::REDIS_PASSWORD,
            "--no-auth-warning",
        ])
        .args(["XRANGE", STREAM, "-", "+"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&denied.stdout).contains("NOPERM"));
}

#[test]
fn a_store_that_is_down_is_counted_and_changes_nothing_for_the_provider() {
    let mut store = Store::start();
    store.kill_redis();
    let up = Upstream::with_reply(Reply {
        status: 500,
        ..Reply::default()
    });
    let envoy = start("dead-letter-stream-down", &up, &store);
    for i in 0..3 {
        let t = Instant::now();
        let resp = signed(&format!("msg_down_{i}"), r#"{"x":1}"#).send(envoy.addr());
        assert_eq!(resp.status, 500, "the provider's answer is the upstream's");
        assert!(t.elapsed() < Duration::from_secs(2), "no wait for the sink");
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
    assert!(
        envoy
            .log()
            .contains("dead-letter copy of a payments callback failed")
    );
    up.set_reply(Reply::default());
    assert_eq!(
        signed("msg_down_ok", r#"{"x":2}"#)
            .send(envoy.addr())
            .status,
        200
    );
}

/// webdis refuses a request head over 80 KiB, and the command travels in
/// the path: a copy near the filter's 79,000-byte path cap goes through
/// Envoy and webdis with its body; a larger one is stored without it.
#[test]
fn a_copy_up_to_the_path_cap_keeps_its_body_a_larger_one_goes_without() {
    let store = Store::start();
    let up = Upstream::with_reply(Reply {
        status: 502,
        ..Reply::default()
    });
    let envoy = start("dead-letter-stream-size", &up, &store);
    let near = format!(r#"{{"pad":"{}"}}"#, "a".repeat(77_500));
    let big = format!(r#"{{"pad":"{}"}}"#, "a".repeat(90_000));
    assert_eq!(signed("msg_near", &near).send(envoy.addr()).status, 502);
    assert_eq!(signed("msg_big", &big).send(envoy.addr()).status, 502);
    envoy.wait_metric(
        "callback_deadletter_total",
        &[("channel", "payments"), ("result", "sent")],
        2.0,
    );
    let all = entries(&store);
    assert_eq!(
        all.len(),
        2,
        "{:?}",
        all.iter().map(|e| &e.0).collect::<Vec<_>>()
    );
    for (_, fields) in &all {
        let e: serde_json::Value = serde_json::from_str(field(fields, "envelope")).unwrap();
        match field(fields, "delivery_id") {
            "msg_near" => {
                assert_eq!(e["body"].as_str(), Some(near.as_str()));
                assert!(e.get("body_omitted").is_none());
            }
            "msg_big" => {
                assert!(e.get("body").is_none());
                assert_eq!(e["body_omitted"], true);
                assert_eq!(e["channel"], "payments");
            }
            other => panic!("unexpected entry {other}"),
        }
    }
    assert!(envoy.log().contains("without its body"));
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Faults (issue #11, item 6): upstream resets, route timeouts, 5xx storms
//! and slow upstreams; a plugin configuration changed under load through
//! file-based LDS (no request lost, the change takes effect); a broken one
//! pushed under load (the previous one keeps serving, the error is logged).
//! Callers get the upstream's answer or Envoy's 503/504, never a filter
//! failure; dedup forgets a delivery whose upstream failed, so the
//! provider's retry goes through; and the VM stays healthy (FAIL_CLOSED:
//! a dead VM would answer 503 to everything after).

mod support;

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{Envoy, EnvoyBuilder, Reply, Request, Upstream, parallel, sign};

const KEY: &[u8] = b"callback-guard faults key";
const SIGNED: &str = "/callbacks/signed";

fn whsec() -> String {
    format!("whsec_{}", sign::b64(KEY))
}

/// A signed channel with dedup (masking these fields, if any) and an
/// unsigned one.
fn plugin(mask_fields: &[&str]) -> Value {
    let mut signed = json!({"name": "signed", "match": {"path_prefix": SIGNED},
         "signature": {"scheme": "standard-webhooks", "secrets": [{"value": whsec()}]},
         "dedup": {"window_s": 300}});
    if !mask_fields.is_empty() {
        signed["mask"] = json!({"fields": mask_fields});
    }
    json!({
        "channels": [signed, {"name": "open", "match": {"path_prefix": "/callbacks/open"}}]
    })
}

fn builder(name: &str, up: &Upstream, plugin: &Value) -> EnvoyBuilder {
    Envoy::builder(name)
        .plugin(&plugin.to_string())
        .cluster("upstream", up.port())
        .concurrency(2)
}

fn signed(id: &str, body: &str) -> Request {
    sign::standard_request(&format!("{SIGNED}/{id}"), &whsec(), id, body)
}

/// The VM is alive: ordinary requests on fresh connections all succeed,
/// and the log holds no panic.
fn assert_alive(envoy: &Envoy, up: &Upstream, tag: &str) {
    up.set_reply(Reply::default());
    for i in 0..10 {
        let resp = signed(&format!("msg_alive_{tag}_{i}"), r#"{"ok":1}"#).send(envoy.addr());
        assert_eq!(resp.status, 200, "alive check {i}: {}", resp.body_str());
        let resp = Request::post("/callbacks/open/x")
            .json(r#"{"n":1}"#)
            .send(envoy.addr());
        assert_eq!(resp.status, 200, "alive check {i} (open channel)");
    }
    // A refused configuration logs "Wasm VM failed Failed to configure base
    // Wasm plugin" (the new plugin never served); anything else is a crash.
    let log = envoy.log();
    for line in log
        .lines()
        .filter(|l| !l.contains("Failed to configure base Wasm plugin"))
    {
        for bad in ["panicked", "Function: proxy_on", "wasm trap", "VM failed"] {
            assert!(!line.contains(bad), "Envoy log holds {bad:?}:\n{log}");
        }
    }
}

/// The ids of the signed callbacks the upstream received, in order.
fn received_ids(up: &Upstream) -> Vec<String> {
    up.received()
        .iter()
        .filter_map(|r| r.header("webhook-id").map(str::to_string))
        .collect()
}

#[test]
fn upstream_resets_and_5xx_storms_reach_the_caller_and_retries_go_through() {
    let up = Upstream::start();
    let envoy = builder("faults-reset-5xx", &up, &plugin(&[])).start();
    let addr = envoy.addr();

    // Resets: Envoy answers 503 (reset before headers); nothing from the
    // filter.
    up.set_reply(Reply {
        reset: true,
        ..Reply::default()
    });
    for i in 0..10 {
        let resp = signed(&format!("msg_reset_{i}"), r#"{"n":1}"#).send(addr);
        assert_eq!(resp.status, 503, "reset {i}: {}", resp.body_str());
        assert!(
            resp.body_str()
                .contains("upstream connect error or disconnect/reset"),
            "Envoy's own 503: {}",
            resp.body_str()
        );
    }
    // A 5xx storm from concurrent callers: each gets the upstream's answer.
    up.set_reply(Reply {
        status: 500,
        body: b"storm".to_vec(),
        ..Reply::default()
    });
    let storm = parallel(4, 80, move |i| {
        let resp = signed(&format!("msg_storm_{i}"), r#"{"n":2}"#).send(addr);
        (resp.status, resp.body_str().to_string())
    });
    assert!(
        storm.iter().all(|(s, b)| *s == 500 && b == "storm"),
        "{storm:?}"
    );
    assert_eq!(up.count(), 90, "every attempt reached the upstream once");

    // Recovery: the provider retries each failed delivery; dedup forgot
    // them, so each is forwarded (not answered as a duplicate).
    up.set_reply(Reply::default());
    up.clear();
    let retries = parallel(4, 90, move |i| {
        let id = if i < 10 {
            format!("msg_reset_{i}")
        } else {
            format!("msg_storm_{}", i - 10)
        };
        let body = if i < 10 { r#"{"n":1}"# } else { r#"{"n":2}"# };
        let resp = signed(&id, body).send(addr);
        (
            resp.status,
            resp.header("x-callback-duplicate").map(str::to_string),
        )
    });
    assert!(retries.iter().all(|r| *r == (200, None)), "{retries:?}");
    let mut ids = received_ids(&up);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 90, "each retry forwarded once");
    // A second retry now is a duplicate: the success was remembered.
    let resp = signed("msg_storm_0", r#"{"n":2}"#).send(addr);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-callback-duplicate"), Some("true"));
    assert_alive(&envoy, &up, "reset");
}

#[test]
fn route_timeouts_and_slow_upstreams_answer_every_caller() {
    let up = Upstream::start();
    let envoy = builder("faults-timeout", &up, &plugin(&[]))
        .route_timeout("1s")
        .start();
    let addr = envoy.addr();
    // Slower than the route timeout: Envoy answers 504.
    up.set_reply(Reply {
        delay: Duration::from_millis(2500),
        ..Reply::default()
    });
    let timed_out = parallel(4, 8, move |i| {
        let resp = signed(&format!("msg_slow_{i}"), r#"{"n":3}"#).send(addr);
        (resp.status, resp.body_str().to_string())
    });
    assert!(
        timed_out
            .iter()
            .all(|(s, b)| *s == 504 && b == "upstream request timeout"),
        "{timed_out:?}"
    );
    // Slow but within the timeout, many at once: all answered by the
    // upstream.
    up.set_reply(Reply {
        delay: Duration::from_millis(300),
        ..Reply::default()
    });
    up.clear();
    let slow = parallel(8, 40, move |i| {
        let resp = if i % 2 == 0 {
            signed(&format!("msg_ok_{i}"), r#"{"n":4}"#).send(addr)
        } else {
            Request::post("/callbacks/open/slow")
                .json(r#"{"n":4}"#)
                .send(addr)
        };
        (resp.status, resp.body_str().to_string())
    });
    assert!(
        slow.iter().all(|(s, b)| *s == 200 && b == "upstream-ok"),
        "{slow:?}"
    );
    assert_eq!(up.count(), 40);
    // The timed-out deliveries' retries go through.
    up.set_reply(Reply::default());
    up.clear();
    for i in 0..8 {
        let resp = signed(&format!("msg_slow_{i}"), r#"{"n":3}"#).send(addr);
        assert_eq!(resp.status, 200, "retry {i}");
        assert_eq!(resp.header("x-callback-duplicate"), None, "retry {i}");
    }
    assert_eq!(up.count(), 8);
    assert_alive(&envoy, &up, "timeout");
}

/// A callback's id and its status (or why there was none).
type Outcome = (String, Result<u16, String>);

/// Load from `threads` threads until `stop`: signed callbacks with PII,
/// each with its own id; one thread on a keep-alive connection, the others
/// on fresh ones. Returns per request (its
/// index, status or error).
fn load(
    addr: std::net::SocketAddr,
    threads: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<std::thread::JoinHandle<Vec<Outcome>>> {
    (0..threads)
        .map(|t| {
            let stop = stop.clone();
            let sent = sent.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let mut i = 0;
                // Thread 0 keeps its connection alive (reconnecting when
                // Envoy's drain answers `connection: close`); the others
                // open one per request.
                let mut conn = (t == 0).then(|| support::client::Conn::new(addr));
                // Bounded: a stop that never came ends the loop too.
                while !stop.load(Ordering::SeqCst) && i < 20_000 {
                    let id = format!("msg_load_{t}_{i}");
                    let body = r#"{"email":"ana@example.com","phone":"+15550001111"}"#;
                    let req = signed(&id, body);
                    let got = match conn.as_mut() {
                        Some(conn) => conn.send(&req),
                        None => support::client::try_send(&req, addr),
                    }
                    .map(|r| r.status)
                    .map_err(|e| e.to_string());
                    out.push((id, got));
                    sent.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
                out
            })
        })
        .collect()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn plugin_config_changes_under_load_lose_nothing_and_a_broken_one_is_refused() {
    let up = Upstream::start();
    let v1 = builder("faults-reload", &up, &plugin(&["email"])).lds_file();
    let envoy = v1.start();
    let addr = envoy.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = load(addr, 3, stop.clone(), sent.clone());
    let masked_phone = |up: &Upstream| {
        up.received()
            .iter()
            .any(|r| r.body_str().contains(r#""phone":"***""#))
    };

    // v1 serves: email masked, phone not.
    wait_for("load under v1", || sent.load(Ordering::SeqCst) >= 60);
    assert!(!masked_phone(&up));

    // v2, pushed under load: phone masked too.
    let v2 = builder("faults-reload", &up, &plugin(&["email", "phone"]));
    envoy.push_listener(&v2);
    wait_for("v2 to take effect", || masked_phone(&up));
    let switched = sent.load(Ordering::SeqCst);
    wait_for("load under v2", || {
        sent.load(Ordering::SeqCst) >= switched + 150
    });

    // A broken configuration, pushed under load: refused, v2 keeps serving.
    let broken = builder(
        "faults-reload",
        &up,
        &json!({"channels": [{"name": "Bad Name", "match": {"path_prefix": "/x"}}]}),
    );
    envoy.push_listener(&broken);
    wait_for("the broken configuration to be refused", || {
        envoy.log().contains("invalid configuration")
    });
    let refused = sent.load(Ordering::SeqCst);
    wait_for("load after the refusal", || {
        sent.load(Ordering::SeqCst) >= refused + 150
    });
    stop.store(true, Ordering::SeqCst);
    let results: Vec<_> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();

    // No request lost: every one answered 200 and received exactly once.
    let failed: Vec<_> = results.iter().filter(|(_, r)| r != &Ok(200)).collect();
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    let mut ids = received_ids(&up);
    assert_eq!(ids.len(), results.len(), "each callback forwarded once");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), results.len());
    // Every body masked the email. The last ones on fresh connections
    // (sent well after the switch, through the broken push) the phone too.
    // The keep-alive connection stays on the filter chain it was accepted
    // by until Envoy drains it (gradually, over `--drain-time-s`, 600 s by
    // default): it may still show v1, which is Envoy's listener update
    // semantics, not the filter's.
    let got = up.received();
    assert!(
        got.iter()
            .all(|r| !r.body_str().contains("ana@example.com"))
    );
    let fresh: Vec<_> = got
        .iter()
        .filter(|r| !r.header("webhook-id").unwrap().starts_with("msg_load_0_"))
        .collect();
    assert!(
        fresh[fresh.len() - 60..]
            .iter()
            .all(|r| r.body_str().contains(r#""phone":"***""#)),
        "v2 still serves after the broken push"
    );
    let log = envoy.log();
    assert!(
        log.contains(r#"channels[0].name: "Bad Name" must match"#),
        "the error names the field:\n{log}"
    );
    assert!(
        log.contains("lds: listener 'callbacks' config rejected"),
        "Envoy rejected the listener update:\n{log}"
    );
    assert_eq!(
        envoy.metric("envoy_listener_manager_lds_update_rejected", &[]),
        1.0
    );
    assert_alive(&envoy, &up, "reload");
}

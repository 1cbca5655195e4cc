#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Fleet state in the request flow (issue #15): three Envoys (replicas A,
//! B, C) share one Redis through webdis. A delivery is forwarded once
//! across the fleet, whichever replica gets each copy; when Redis dies the
//! default `on_unavailable: local` decides per Envoy without a 5xx and the
//! store is used again once Redis is back; `reject` answers `503`
//! `state_unavailable` instead. Replica C runs in stream mode
//! (`hold_headers: false`), A and B hold the headers, so both ways of
//! pausing and resuming the request are exercised.

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::redis::Store;
use support::{Envoy, Reply, Request, Response, Upstream, sign};

const KEY: &[u8] = b"callback-guard fleet state tests key";
const PATH: &str = "/callbacks/payments";

fn whsec() -> String {
    format!("whsec_{}", sign::b64(KEY))
}

fn signed(id: &str, body: &str) -> Request {
    sign::standard_request(PATH, &whsec(), id, body)
}

fn plugin(state: Value, hold_headers: bool) -> String {
    json!({
        "hold_headers": hold_headers,
        "state": state,
        "channels": [{
            "name": "payments", "match": {"path_prefix": PATH},
            "signature": {"scheme": "standard-webhooks", "secrets": [{"value": whsec()}]},
            "dedup": {"window_s": 3600, "in_flight_s": 30}
        }]
    })
    .to_string()
}

/// One replica: its own Envoy (one worker: three Envoys on two cores),
/// the shared store behind cluster `fleet-state`, the shared upstream.
fn replica(name: &str, store: &Store, up: &Upstream, state: Value, hold: bool) -> Envoy {
    let mut builder = Envoy::builder(name)
        .plugin(&plugin(state, hold))
        .cluster("fleet-state", store.webdis_port)
        .cluster("upstream", up.port())
        .concurrency(1);
    if !hold {
        builder = builder.without_stop_iteration();
    }
    builder.start()
}

/// A, B (hold mode) and C (stream mode).
fn fleet(name: &str, store: &Store, up: &Upstream) -> [Envoy; 3] {
    let state = store.state_config("fleet-state");
    [
        replica(&format!("{name}-a"), store, up, state.clone(), true),
        replica(&format!("{name}-b"), store, up, state.clone(), true),
        replica(&format!("{name}-c"), store, up, state, false),
    ]
}

fn is_duplicate(r: &Response) -> bool {
    r.status == 200 && r.header("x-callback-duplicate") == Some("true")
}

/// `callback_state_errors_total`, every `op`.
fn state_errors(envoy: &Envoy) -> f64 {
    ["dedup_begin", "dedup_commit", "dedup_forget", "lease"]
        .iter()
        .map(|op| envoy.metric("callback_state_errors_total", &[("op", op)]))
        .sum()
}

/// Sends `req` to `envoy` until it is answered as a duplicate (a retry
/// that races the first attempt's commit is told `409 in_progress`,
/// which is right too: not forwarded); bounded.
fn until_duplicate(envoy: &Envoy, req: &Request) -> Response {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = req.send(envoy.addr());
        if is_duplicate(&r) {
            return r;
        }
        assert_eq!(r.status, 409, "{} {}", r.status, r.body_str());
        assert!(
            Instant::now() < deadline,
            "never a duplicate: {}",
            r.body_str()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_delivery_redelivered_to_other_replicas_is_forwarded_once() {
    let store = Store::start();
    let up = Upstream::start();
    let [a, b, c] = fleet("fleet-redeliver", &store, &up);
    for (i, first) in [&a, &b, &c].into_iter().enumerate() {
        let req = signed(&format!("msg_redeliver_{i}"), r#"{"amount":100}"#);
        let before = up.count();
        let r = req.send(first.addr());
        assert_eq!(r.status, 200, "{}", r.body_str());
        assert_eq!(r.header("x-callback-duplicate"), None);
        assert_eq!(up.count(), before + 1);
        for other in [&a, &b, &c] {
            let dup = until_duplicate(other, &req);
            assert_eq!(dup.json()["status"], "duplicate");
        }
        assert_eq!(up.count(), before + 1, "a redelivery was forwarded");
    }
    // A duplicate's answer is one store round trip through Envoy and
    // webdis (no upstream): report its latency.
    let mut ms: Vec<f64> = (0..30)
        .map(|i| {
            let req = signed(&format!("msg_redeliver_{}", i % 3), r#"{"amount":100}"#);
            let t = Instant::now();
            assert!(is_duplicate(&req.send([&a, &b, &c][i % 3].addr())));
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    eprintln!(
        "duplicate answered through the store: p50 {:.2} ms, max {:.2} ms (client round trip)",
        ms[ms.len() / 2],
        ms[ms.len() - 1]
    );
    for envoy in [&a, &b, &c] {
        assert!(envoy.metric("callback_duplicates_total", &[("channel", "payments")]) >= 3.0);
        assert_eq!(state_errors(envoy), 0.0);
    }
    // The body reached the upstream unchanged from every mode.
    for got in up.received() {
        assert_eq!(got.body_str(), r#"{"amount":100}"#);
    }
}

#[test]
fn concurrent_copies_on_three_replicas_are_forwarded_exactly_once() {
    let store = Store::start();
    let up = Upstream::with_reply(Reply {
        delay: Duration::from_millis(300),
        ..Reply::default()
    });
    let envoys = fleet("fleet-concurrent", &store, &up);
    let addrs: Vec<_> = envoys.iter().map(|e| e.addr()).collect();
    const ROUNDS: usize = 5;
    for round in 0..ROUNDS {
        let req = signed(&format!("msg_concurrent_{round}"), r#"{"n":1}"#);
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
        let handles: Vec<_> = addrs
            .iter()
            .map(|&addr| {
                let (req, barrier) = (req.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    req.send(addr)
                })
            })
            .collect();
        let answers: Vec<Response> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let forwarded = answers
            .iter()
            .filter(|r| r.status == 200 && !is_duplicate(r))
            .count();
        for r in &answers {
            assert!(
                (r.status == 200) || (r.status == 409 && r.json()["error"] == "in_progress"),
                "{} {}",
                r.status,
                r.body_str()
            );
        }
        assert_eq!(forwarded, 1, "round {round}: {answers:?}");
    }
    assert_eq!(up.count(), ROUNDS, "each delivery forwarded exactly once");
}

#[test]
fn a_dead_redis_falls_back_locally_without_a_5xx_and_the_store_is_used_again() {
    let mut store = Store::start();
    let up = Upstream::start();
    let [a, b, _c] = fleet("fleet-fallback", &store, &up);
    // The store works: a cross-replica redelivery is a duplicate.
    let req = signed("msg_before", r#"{"a":1}"#);
    assert_eq!(req.send(a.addr()).status, 200);
    until_duplicate(&b, &req);

    store.kill_redis();
    let mut sent = 0;
    for i in 0..20 {
        let req = signed(&format!("msg_down_{i}"), r#"{"a":1}"#);
        let envoy = if i % 2 == 0 { &a } else { &b };
        let r = req.send(envoy.addr());
        assert_eq!(r.status, 200, "Redis down, request {i}: {}", r.body_str());
        // Local dedup still works inside one replica.
        assert!(
            is_duplicate(&req.send(envoy.addr())),
            "local dedup, request {i}"
        );
        sent += 1;
    }
    assert_eq!(
        up.count(),
        1 + sent,
        "every delivery forwarded once per replica"
    );
    let errors = state_errors(&a) + state_errors(&b);
    assert!(errors > 0.0, "no state errors counted while Redis was down");
    assert!(
        a.log()
            .contains("fleet state dedup_begin via cluster fleet-state")
    );

    store.start_redis();
    store.wait_webdis();
    // Back: once the breaker lets a probe through, a cross-replica
    // redelivery is a duplicate again (bounded: breaker_open_ms is 1 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut i = 0;
    loop {
        let req = signed(&format!("msg_after_{i}"), r#"{"a":1}"#);
        assert_eq!(req.send(a.addr()).status, 200);
        let other = req.send(b.addr());
        assert!(
            other.status == 200 || other.status == 409,
            "{} {}",
            other.status,
            other.body_str()
        );
        if is_duplicate(&other) || other.status == 409 {
            break;
        }
        assert!(Instant::now() < deadline, "the store was never used again");
        i += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn reject_answers_503_state_unavailable_while_redis_is_down() {
    let mut store = Store::start();
    let up = Upstream::start();
    let mut state = store.state_config("fleet-state");
    state["on_unavailable"] = json!("reject");
    let envoy = replica("fleet-reject", &store, &up, state, true);
    assert_eq!(
        signed("msg_up", r#"{"a":1}"#).send(envoy.addr()).status,
        200
    );

    store.kill_redis();
    for i in 0..5 {
        let r = signed(&format!("msg_reject_{i}"), r#"{"a":1}"#).send(envoy.addr());
        assert_eq!(r.status, 503, "{}", r.body_str());
        assert_eq!(r.json()["error"], "state_unavailable");
        assert_eq!(r.json()["trace_id"].as_str().map(str::len), Some(32));
    }
    assert_eq!(up.count(), 1, "nothing forwarded while the store is down");
    assert_eq!(
        envoy.metric(
            "callback_rejected_total",
            &[("channel", "payments"), ("reason", "state_unavailable")]
        ),
        5.0
    );
    assert!(state_errors(&envoy) >= 1.0);

    store.start_redis();
    store.wait_webdis();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut i = 0;
    while signed(&format!("msg_back_{i}"), r#"{"a":1}"#)
        .send(envoy.addr())
        .status
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "still refused after Redis came back"
        );
        i += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
}

const RPS: f64 = 20.0;
const BURST: f64 = 5.0;

#[test]
fn a_fleet_wide_channel_limit_holds_across_three_replicas() {
    fleet_limit(
        "fleet-limit",
        json!({"limits": {"rps": RPS, "burst": BURST}}),
        None,
    );
}

#[test]
fn a_fleet_wide_admission_bucket_holds_across_three_replicas() {
    fleet_limit(
        "fleet-adm",
        json!({}),
        Some(json!({"limits": {"normal": {"rps": RPS, "burst": BURST}}})),
    );
}

/// R rps with a small burst, leased per worker (cap: a tenth of what the
/// bucket refills in ttl_ms = 2 tokens), over 10 s of demand ~10x R on
/// three replicas: the fleet admits R·t + burst within 10 %.
fn fleet_limit(name: &str, channel_extra: Value, admission: Option<Value>) {
    const SECONDS: f64 = 10.0;
    let store = Store::start();
    let up = Upstream::start();
    let state = store.state_config("fleet-state");
    let limited = |replica: &str, hold: bool| {
        let mut channel =
            json!({"name": "limited", "match": {"path_prefix": "/callbacks/limited"}});
        for (k, v) in channel_extra.as_object().unwrap() {
            channel[k] = v.clone();
        }
        let mut doc = json!({"hold_headers": hold, "state": state, "channels": [channel]});
        if let Some(admission) = &admission {
            doc["admission"] = admission.clone();
        }
        let name = format!("{name}-{replica}");
        let mut builder = Envoy::builder(&name)
            .plugin(&doc.to_string())
            .cluster("fleet-state", store.webdis_port)
            .cluster("upstream", up.port())
            .concurrency(1);
        if !hold {
            builder = builder.without_stop_iteration();
        }
        builder.start()
    };
    let envoys = [limited("a", true), limited("b", true), limited("c", false)];
    let start = Instant::now();
    let handles: Vec<_> = envoys
        .iter()
        .map(|e| {
            let addr = e.addr();
            std::thread::spawn(move || {
                let (mut ok, mut limited, mut other) = (0u64, 0u64, Vec::new());
                while start.elapsed() < Duration::from_secs_f64(SECONDS) {
                    let r = Request::post("/callbacks/limited")
                        .json(r#"{"n":1}"#)
                        .send(addr);
                    match r.status {
                        200 => ok += 1,
                        429 => limited += 1,
                        s => other.push(s),
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                (ok, limited, other)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let elapsed = start.elapsed().as_secs_f64();
    let admitted: u64 = results.iter().map(|r| r.0).sum();
    let refused: u64 = results.iter().map(|r| r.1).sum();
    let other: Vec<u16> = results.iter().flat_map(|r| r.2.clone()).collect();
    let expected = RPS * elapsed + BURST;
    let error = (admitted as f64 - expected) / expected;
    eprintln!(
        "{name}: {RPS} rps burst {BURST} over {elapsed:.1} s on 3 replicas: admitted {admitted} \
         (expected {expected:.0}, {:+.1}%), refused {refused}, per replica {:?}",
        error * 100.0,
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(other.is_empty(), "answers other than 200/429: {other:?}");
    assert_eq!(up.count() as u64, admitted);
    assert!(refused > admitted, "demand did not exceed the limit");
    assert!(
        error.abs() <= 0.10,
        "admitted {admitted}, expected {expected:.0}"
    );
    for e in &envoys {
        assert_eq!(state_errors(e), 0.0);
    }
}

#[test]
fn a_silent_store_costs_at_most_timeout_ms_and_an_unknown_cluster_nothing() {
    // A "store" that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming().take(64) {
            held.push(conn);
        }
    });
    let up = Upstream::start();
    let start = |name: &str, cluster: &str| {
        let state = json!({"cluster": cluster, "timeout_ms": 200, "breaker_failures": 100});
        Envoy::builder(name)
            .plugin(&plugin(state, true))
            .cluster("fleet-state", silent_port)
            .cluster("upstream", up.port())
            .concurrency(1)
            .start()
    };
    let envoy = start("fleet-silent", "fleet-state");
    for i in 0..3 {
        let t = Instant::now();
        let r = signed(&format!("msg_silent_{i}"), r#"{"a":1}"#).send(envoy.addr());
        let ms = t.elapsed().as_millis();
        assert_eq!(r.status, 200, "{}", r.body_str());
        assert!(
            (190..1500).contains(&ms),
            "answered after {ms} ms (timeout_ms 200)"
        );
    }
    assert_eq!(
        envoy.metric("callback_state_errors_total", &[("op", "dedup_begin")]),
        3.0
    );
    drop(envoy);

    // The call cannot even be sent: local at once, without pausing.
    let envoy = start("fleet-nowhere", "nowhere");
    for i in 0..3 {
        let t = Instant::now();
        let r = signed(&format!("msg_nowhere_{i}"), r#"{"a":1}"#).send(envoy.addr());
        assert_eq!(r.status, 200, "{}", r.body_str());
        assert!(
            t.elapsed() < Duration::from_millis(150),
            "{:?}",
            t.elapsed()
        );
    }
    assert_eq!(
        envoy.metric("callback_state_errors_total", &[("op", "dedup_begin")]),
        3.0
    );
    assert_eq!(up.count(), 6);
}

#[test]
fn a_body_masked_after_the_store_answered_goes_upstream_masked() {
    // The body is replaced from the store call's answer callback (the
    // request resumes there), not from a body callback.
    let store = Store::start();
    let up = Upstream::start();
    let doc = json!({
        "state": store.state_config("fleet-state"),
        "channels": [{
            "name": "payments", "match": {"path_prefix": PATH},
            "signature": {"scheme": "standard-webhooks", "secrets": [{"value": whsec()}]},
            "dedup": {"window_s": 3600},
            "mask": {"fields": ["email"], "strategy": "redact"}
        }]
    });
    let start = |name: &str| {
        Envoy::builder(name)
            .plugin(&doc.to_string())
            .cluster("fleet-state", store.webdis_port)
            .cluster("upstream", up.port())
            .concurrency(1)
            .start()
    };
    let (envoy, other) = (start("fleet-mask-a"), start("fleet-mask-b"));
    let req = signed("msg_mask", r#"{"email":"alice@example.com","amount":1}"#);
    let r = req.send(envoy.addr());
    assert_eq!(r.status, 200, "{}", r.body_str());
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body_str(), r#"{"email":"***","amount":1}"#);
    assert_eq!(
        got[0].header("content-length"),
        Some(got[0].body.len().to_string().as_str())
    );
    // The store had the check: the other replica knows the delivery.
    assert!(is_duplicate(&until_duplicate(&other, &req)));
    assert_eq!(up.count(), 1);
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Priority admission in a real Envoy over real mTLS: the caller's identity
//! is the SPIFFE ID in its client certificate (generated at test time), the
//! upstream records the `x-callback-priority-admitted` it is given, and
//! `callback_admission_total` is read from `/stats/prometheus`. Every Envoy
//! runs 2 worker threads, so the token buckets must really be shared.
//! Assertions are on counts, never on latencies; where the refill during a
//! burst could add admissions, the bound grows by `rps × elapsed` and the
//! test checks that this slack stays far below what a bug would produce.

mod support;

use support::assert::local_reply;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::tls::{Pki, TlsClient};
use support::{Envoy, Request, Response, Upstream, parallel};

const PROCESSOR: &str = "spiffe://cluster.local/ns/default/sa/webhook-processor";
const EVIL: &str = "spiffe://cluster.local/ns/default/sa/webhook-processor-evil";
const INTRUDER: &str = "spiffe://cluster.local/ns/other/sa/intruder";

const PATH: &str = "/callbacks/payments/order";
const PRIORITY: &str = "x-callback-priority";
const ADMITTED: &str = "x-callback-priority-admitted";
const METRIC: &str = "callback_admission_total";
const PRIORITIES: [&str; 3] = ["high", "normal", "low"];
const DECISIONS: [&str; 5] = ["admitted", "demoted", "denied", "shed", "rate_limited"];

/// One channel; `admission` is the plugin's `admission` object.
fn plugin(admission: &Value) -> String {
    json!({
        "channels": [{"name": "payments", "match": {"path_prefix": "/callbacks/payments"}}],
        "admission": admission
    })
    .to_string()
}

fn allow_high(principals: &[&str]) -> Value {
    json!([{"priority": "high", "effect": "allow", "principals": principals}])
}

struct Setup {
    pki: Pki,
    up: Upstream,
    envoy: Envoy,
}

/// Envoy (2 workers) with an mTLS listener and the filter.
fn start(name: &str, admission: Value, require_client_certificate: bool) -> Setup {
    let pki = Pki::new(name);
    let up = Upstream::start();
    let envoy = Envoy::builder(name)
        .plugin(&plugin(&admission))
        .cluster("upstream", up.port())
        .transport_socket(pki.transport_socket(require_client_certificate))
        .start();
    Setup { pki, up, envoy }
}

impl Setup {
    /// A client presenting a certificate for `spiffe_id`.
    fn as_identity(&self, spiffe_id: &str) -> TlsClient {
        self.pki.client(Some(&self.pki.identity(spiffe_id)))
    }

    /// A TLS client without a client certificate.
    fn anonymous(&self) -> TlsClient {
        self.pki.client(None)
    }

    /// `callback_admission_total` for all 12 label pairs.
    fn admissions(&self) -> BTreeMap<(String, String), f64> {
        let samples = self.envoy.prometheus();
        let mut out = BTreeMap::new();
        for p in PRIORITIES {
            for d in DECISIONS {
                let labels = [("channel", "payments"), ("priority", p), ("decision", d)];
                let v = support::envoy::find_metric(&samples, METRIC, &labels)
                    .unwrap_or_else(|| panic!("{METRIC}{{{p},{d}}} not exported"));
                out.insert((p.to_string(), d.to_string()), v);
            }
        }
        out
    }

    /// Asserts the admission counters: `expected` as given, all others 0.
    fn assert_admissions(&self, expected: &[(&str, &str, usize)]) {
        let mut want: BTreeMap<(String, String), f64> = BTreeMap::new();
        for p in PRIORITIES {
            for d in DECISIONS {
                want.insert((p.to_string(), d.to_string()), 0.0);
            }
        }
        for (p, d, n) in expected {
            want.insert((p.to_string(), d.to_string()), *n as f64);
        }
        assert_eq!(self.admissions(), want, "{METRIC} (priority, decision)");
    }
}

fn callback(priority: Option<&str>) -> Request {
    let req = Request::post(PATH).json(r#"{"id":"evt_1","amount":1}"#);
    match priority {
        Some(p) => req.header(PRIORITY, p),
        None => req,
    }
}

/// Every value of the admitted header on the `i`-th upstream request.
fn admitted_headers(up: &Upstream, i: usize) -> Vec<String> {
    up.received()[i]
        .headers
        .iter()
        .filter(|(k, _)| k == ADMITTED)
        .map(|(_, v)| v.clone())
        .collect()
}

/// `retry-after` of a 429, as whole seconds.
fn retry_after(resp: &Response) -> u64 {
    let v = resp
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without retry-after: {:?}", resp.headers));
    v.parse()
        .unwrap_or_else(|_| panic!("retry-after {v:?} is not whole seconds"))
}

#[test]
fn an_allowed_identity_asking_high_keeps_high() {
    let s = start(
        "adm-allowed",
        json!({"rules": allow_high(&[PROCESSOR])}),
        true,
    );
    let client = s.as_identity(PROCESSOR);
    let addr = s.envoy.addr();

    let resp = client.send(&callback(Some("high")), addr);
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert_eq!(resp.body_str(), "upstream-ok");
    assert_eq!(admitted_headers(&s.up, 0), ["high"]);

    // The same caller without the header is a plain `normal` callback.
    let resp = client.send(&callback(None), addr);
    assert_eq!(resp.status, 200);
    assert_eq!(admitted_headers(&s.up, 1), ["normal"]);

    assert_eq!(s.up.count(), 2);
    s.assert_admissions(&[("high", "admitted", 1), ("normal", "admitted", 1)]);
}

#[test]
fn another_identity_asking_high_is_demoted_to_normal() {
    let s = start(
        "adm-demote",
        json!({"rules": allow_high(&[PROCESSOR])}),
        true,
    );
    let addr = s.envoy.addr();

    // A prefix of the allowed name is not the allowed name.
    let resp = s.as_identity(EVIL).send(&callback(Some("high")), addr);
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert_eq!(admitted_headers(&s.up, 0), ["normal"]);

    // Control: the allowed identity on the same listener does get high, so
    // the demotion above is about who is asking.
    let resp = s.as_identity(PROCESSOR).send(&callback(Some("high")), addr);
    assert_eq!(resp.status, 200);
    assert_eq!(admitted_headers(&s.up, 1), ["high"]);

    s.assert_admissions(&[("normal", "demoted", 1), ("high", "admitted", 1)]);
}

#[test]
fn with_reject_another_identity_asking_high_gets_403_and_nothing_is_forwarded() {
    let s = start(
        "adm-reject",
        json!({"rules": allow_high(&[PROCESSOR]), "unauthorized_high": "reject"}),
        true,
    );
    let addr = s.envoy.addr();
    let evil = s.as_identity(EVIL);

    let resp = evil.send(&callback(Some("high")), addr);
    local_reply(&resp, 403, None, "");
    assert_eq!(s.up.count(), 0, "a rejected callback must not be forwarded");

    // Reject only concerns `high`: the same caller at normal goes through.
    let resp = evil.send(&callback(Some("normal")), addr);
    assert_eq!(resp.status, 200);
    assert_eq!(admitted_headers(&s.up, 0), ["normal"]);
    // And the allowed identity still gets high.
    let resp = s.as_identity(PROCESSOR).send(&callback(Some("high")), addr);
    assert_eq!(resp.status, 200);
    assert_eq!(admitted_headers(&s.up, 1), ["high"]);

    assert_eq!(s.up.count(), 2);
    s.assert_admissions(&[
        ("high", "denied", 1),
        ("normal", "admitted", 1),
        ("high", "admitted", 1),
    ]);
}

#[test]
fn a_client_without_certificate_cannot_get_high_nor_forge_the_admitted_header() {
    // Client certificates are optional on this listener; even `*` (any
    // authenticated caller) must not admit a caller without one.
    let s = start(
        "adm-anon",
        json!({"rules": allow_high(&[PROCESSOR, "*"])}),
        false,
    );
    let addr = s.envoy.addr();
    let anon = s.anonymous();

    let resp = anon.send(&callback(Some("high")), addr);
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert_eq!(admitted_headers(&s.up, 0), ["normal"]);

    // Forging the admitted header: replaced by what admission decided.
    let resp = anon.send(&callback(None).header(ADMITTED, "high"), addr);
    assert_eq!(resp.status, 200);
    assert_eq!(admitted_headers(&s.up, 1), ["normal"]);

    // Also with a certificate and a lower priority asked for.
    let processor = s.as_identity(PROCESSOR);
    let resp = processor.send(
        &callback(Some("low"))
            .header(ADMITTED, "high")
            .header(ADMITTED, "high"),
        addr,
    );
    assert_eq!(resp.status, 200);
    assert_eq!(admitted_headers(&s.up, 2), ["low"]);

    // Outside any channel it is removed, not replaced.
    let resp = anon.send(
        &Request::post("/not-a-channel")
            .header(ADMITTED, "high")
            .json("{\"a\":1}"),
        addr,
    );
    assert_eq!(resp.status, 200);
    assert_eq!(s.up.received()[3].path, "/not-a-channel");
    assert!(admitted_headers(&s.up, 3).is_empty());

    // Control: with its certificate, on this optional-mTLS listener, the
    // allowed identity gets high (the identity does come through).
    let resp = processor.send(&callback(Some("high")), addr);
    assert_eq!(resp.status, 200);
    assert_eq!(admitted_headers(&s.up, 4), ["high"]);

    assert_eq!(s.up.count(), 5);
    s.assert_admissions(&[
        ("normal", "demoted", 1),
        ("normal", "admitted", 1),
        ("low", "admitted", 1),
        ("high", "admitted", 1),
    ]);
}

#[test]
fn a_wildcard_principal_admits_matching_identities_and_no_near_miss() {
    let s = start(
        "adm-wildcard",
        json!({
            "rules": allow_high(&["spiffe://cluster.local/ns/*/sa/webhook-*"]),
            "unauthorized_high": "reject"
        }),
        true,
    );
    let addr = s.envoy.addr();
    let matching = [
        PROCESSOR,
        EVIL,
        "spiffe://cluster.local/ns/billing/sa/webhook-relay",
    ];
    let near_misses = [
        INTRUDER,
        // no dash after `webhook`
        "spiffe://cluster.local/ns/default/sa/webhookprocessor",
        // `webhook-` not at the start of the segment
        "spiffe://cluster.local/ns/default/sa/my-webhook-processor",
        // `*` must not span two segments
        "spiffe://cluster.local/ns/team/a/sa/webhook-relay",
        // other trust domain
        "spiffe://evil.local/ns/default/sa/webhook-processor",
    ];
    for id in matching {
        let resp = s.as_identity(id).send(&callback(Some("high")), addr);
        assert_eq!(resp.status, 200, "{id} should match: {}", resp.body_str());
        assert_eq!(admitted_headers(&s.up, s.up.count() - 1), ["high"], "{id}");
    }
    for id in near_misses {
        let resp = s.as_identity(id).send(&callback(Some("high")), addr);
        assert_eq!(resp.status, 403, "{id} must not match: {}", resp.body_str());
        local_reply(&resp, 403, None, "");
    }
    assert_eq!(s.up.count(), matching.len());
    s.assert_admissions(&[
        ("high", "admitted", matching.len()),
        ("high", "denied", near_misses.len()),
    ]);
}

/// `downstream_cx_total` of each worker of the listener, from `/stats`.
fn connections_per_worker(envoy: &Envoy) -> Vec<u64> {
    envoy
        .admin_get("/stats?filter=downstream_cx_total")
        .lines()
        .filter(|l| l.starts_with("listener.") && l.contains(".worker_"))
        .filter_map(|l| l.rsplit_once(": ")?.1.trim().parse().ok())
        .collect()
}

/// Whole tokens a bucket of `rps` can regain in `elapsed`.
fn refill(rps: f64, elapsed: Duration) -> usize {
    (elapsed.as_secs_f64() * rps).floor() as usize
}

#[test]
fn priority_buckets_are_shared_by_the_worker_threads() {
    const RPS: f64 = 1.0;
    const BURST: usize = 20;
    const N: usize = 100;
    let s = start(
        "adm-shared",
        json!({"limits": {"normal": {"rps": RPS, "burst": BURST}}}),
        true,
    );
    let addr = s.envoy.addr();
    let client = s.as_identity(PROCESSOR);

    let started = Instant::now();
    // One callback first, on its own: it creates the bucket state in shared
    // data. (The very first write of a shared-data key cannot be a
    // compare-and-swap, so two workers creating it at once could both take
    // the same token; the burst below then only ever does CAS updates.)
    assert_eq!(client.send(&callback(None), addr).status, 200);
    let c = client.clone();
    let responses = parallel(16, N, move |_| c.send(&callback(None), addr));
    let elapsed = started.elapsed();

    let admitted = 1 + responses.iter().filter(|r| r.status == 200).count();
    let shed: Vec<&Response> = responses.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        admitted - 1 + shed.len(),
        N,
        "only 200 and 429 expected: {:?}",
        responses.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in &shed {
        local_reply(r, 429, Some("rate_limited"), "");
        // Refused by a bucket refilling 1 token/s that needs 1 token.
        assert_eq!(retry_after(r), 1);
    }

    // Tolerance: the bucket starts full (BURST) and refills RPS tokens per
    // second, so over the test at most BURST + floor(RPS × elapsed) can be
    // admitted. Per-worker buckets would admit about 2 × BURST: the slack
    // must stay well below that for the test to mean anything.
    let slack = refill(RPS, elapsed);
    eprintln!(
        "shared buckets: {admitted} admitted, {} shed, in {elapsed:?} (slack {slack})",
        shed.len()
    );
    assert!(
        slack < BURST / 2,
        "burst took {elapsed:?}: too slow to tell shared from per-worker buckets"
    );
    assert!(
        (BURST..=BURST + slack).contains(&admitted),
        "{admitted} admitted of {} with burst {BURST} (+{slack} refill); \
         per-worker buckets would admit ~{}",
        N + 1,
        2 * BURST
    );

    // Both workers took more connections than one bucket holds: had each had
    // its own bucket, more than BURST would have got through.
    let per_worker = connections_per_worker(&s.envoy);
    eprintln!("connections per worker: {per_worker:?}");
    assert_eq!(per_worker.len(), 2, "{per_worker:?}");
    assert!(
        per_worker.iter().all(|n| *n > BURST as u64),
        "load did not reach both workers: {per_worker:?}"
    );

    assert_eq!(s.up.count(), admitted);
    assert!(
        s.up.received()
            .iter()
            .all(|r| r.header(ADMITTED) == Some("normal"))
    );
    s.assert_admissions(&[
        ("normal", "admitted", admitted),
        // The normal bucket's own limit: a rate limit, not shedding.
        ("normal", "rate_limited", shed.len()),
    ]);
}

/// Capacity of 20 (1 token/s) that every priority draws from; `high` is
/// allowed for PROCESSOR. `low` may draw while capacity holds at least 10
/// tokens (half), `high` down to the last one.
fn start_capacity(name: &str) -> Setup {
    start(
        name,
        json!({
            "rules": allow_high(&[PROCESSOR]),
            "capacity": {"rps": 1, "burst": 20}
        }),
        true,
    )
}

const CAPACITY: usize = 20;
/// Draws `low` gets once the first (high) callback left 19 tokens: at 19,
/// 18, ..., 10 tokens; below half (10) it is shed.
const LOW_SHARE: usize = 10;

#[test]
fn low_is_shed_before_high_under_an_interleaved_burst() {
    const N: usize = 100;
    let s = start_capacity("adm-shed-mixed");
    let addr = s.envoy.addr();
    let client = s.as_identity(PROCESSOR);

    let started = Instant::now();
    // Creates the shared state on its own (see the shared-bucket test);
    // capacity is now 19.
    assert_eq!(client.send(&callback(Some("high")), addr).status, 200);
    let c = client.clone();
    // low, high, low, high, ...
    let results = parallel(16, N, move |i| {
        let p = if i % 2 == 0 { "low" } else { "high" };
        (p, c.send(&callback(Some(p)), addr))
    });
    let elapsed = started.elapsed();

    let count = |p: &str, status: u16| {
        results
            .iter()
            .filter(|(q, r)| *q == p && r.status == status)
            .count()
    };
    let (low_ok, low_shed) = (count("low", 200), count("low", 429));
    let (high_ok, high_shed) = (1 + count("high", 200), count("high", 429));
    assert_eq!(low_ok + low_shed + high_ok - 1 + high_shed, N);
    for (p, r) in &results {
        if r.status == 429 {
            local_reply(r, 429, None, "");
            let wait = retry_after(r);
            // low waits until capacity is back at 10 (≤ 10 s at 1 token/s).
            let max = if *p == "low" { CAPACITY as u64 / 2 } else { 1 };
            assert!((1..=max).contains(&wait), "{p}: retry-after {wait}");
        }
    }

    // Tolerance as in the shared-bucket test: + floor(rps × elapsed).
    let slack = refill(1.0, elapsed);
    eprintln!(
        "interleaved: low {low_ok} admitted / {low_shed} shed, \
         high {high_ok} admitted / {high_shed} shed, in {elapsed:?} (slack {slack})"
    );
    assert!(
        slack < CAPACITY / 2,
        "burst took {elapsed:?}: too slow to be a burst"
    );
    assert!(low_shed > 0, "low was never shed");
    assert!(
        low_ok <= LOW_SHARE + slack,
        "low got {low_ok} of capacity {CAPACITY}: it may only use the upper half"
    );
    assert!(
        high_ok > low_ok,
        "high ({high_ok}) should outlast low ({low_ok})"
    );
    // High drains what low may not touch: everything is used, nothing more.
    assert!(
        (CAPACITY..=CAPACITY + slack).contains(&(low_ok + high_ok)),
        "{} admitted with capacity {CAPACITY} (+{slack})",
        low_ok + high_ok
    );

    assert_eq!(s.up.count(), low_ok + high_ok);
    s.assert_admissions(&[
        ("low", "admitted", low_ok),
        ("low", "shed", low_shed),
        ("high", "admitted", high_ok),
        ("high", "shed", high_shed),
    ]);
}

#[test]
fn low_is_refused_at_half_capacity_and_high_gets_the_rest() {
    const N: usize = 30;
    let s = start_capacity("adm-shed-phased");
    let addr = s.envoy.addr();
    let client = s.as_identity(PROCESSOR);
    let burst = |p: &'static str| {
        let c = client.clone();
        parallel(8, N, move |_| c.send(&callback(Some(p)), addr).status)
    };

    let started = Instant::now();
    assert_eq!(client.send(&callback(Some("high")), addr).status, 200);
    // Capacity 19: low may take it down to 9, i.e. 10 tokens.
    let low = burst("low");
    let low_elapsed = started.elapsed();
    // Capacity 9: high takes all of it.
    let high = burst("high");
    let elapsed = started.elapsed();

    let ok = |v: &[u16]| v.iter().filter(|s| **s == 200).count();
    let (low_ok, high_ok) = (ok(&low), ok(&high));
    assert!(low.iter().chain(&high).all(|s| *s == 200 || *s == 429));
    let (low_slack, slack) = (refill(1.0, low_elapsed), refill(1.0, elapsed));
    eprintln!("phased: low {low_ok}/{N}, then high {high_ok}/{N} in {elapsed:?} (slack {slack})");
    assert!(
        slack < CAPACITY / 2,
        "bursts took {elapsed:?}: too slow to be bursts"
    );
    // Shedding low only when capacity is empty would admit 19 here.
    assert!(
        (LOW_SHARE..=LOW_SHARE + low_slack).contains(&low_ok),
        "low: {low_ok} admitted from capacity 19 (+{low_slack})"
    );
    // Reserving any share from high too would admit fewer than 9.
    assert!(
        high_ok >= CAPACITY - 1 - LOW_SHARE,
        "high: only {high_ok} admitted after low was shed"
    );
    assert!(
        (CAPACITY..=CAPACITY + slack).contains(&(1 + low_ok + high_ok)),
        "{} admitted with capacity {CAPACITY} (+{slack})",
        1 + low_ok + high_ok
    );
    s.assert_admissions(&[
        ("high", "admitted", 1 + high_ok),
        ("high", "shed", N - high_ok),
        ("low", "admitted", low_ok),
        ("low", "shed", N - low_ok),
    ]);
}

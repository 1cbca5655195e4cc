#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What operators hit on day one, pinned in a real Envoy: on a signed
//! channel an empty callback is only acknowledged after its signature
//! verified.

mod support;

use serde_json::json;
use support::{Envoy, Request, Upstream, sign};

const GITHUB_SECRET: &str = "operators-github-secret";

fn start(name: &str, up: &Upstream) -> Envoy {
    let plugin = json!({"channels": [
        {"name": "github", "match": {"path_prefix": "/callbacks/github"},
         "signature": {"scheme": "github", "secrets": [{"value": GITHUB_SECRET}]}},
        {"name": "open", "match": {"path_prefix": "/callbacks/open"}}
    ]});
    Envoy::builder(name)
        .plugin(&plugin.to_string())
        .cluster("upstream", up.port())
        .start()
}

#[test]
fn on_a_signed_channel_empty_callbacks_are_verified_first() {
    let up = Upstream::start();
    let envoy = start("verify-first", &up);
    let ch = [("channel", "github")];
    // Without the secret nobody gets a 204 or moves the empty counter.
    let forged = [
        Request::post("/callbacks/github").json("{}"),
        Request::post("/callbacks/github")
            .header("x-hub-signature-256", &sign::github("wrong-secret", b"{}"))
            .json("{}"),
        Request::post("/callbacks/github")
            .header("x-callback-status", "204")
            .json(r#"{"x":1}"#),
        Request::post("/callbacks/github").header("x-callback-status", "204"),
    ];
    for req in &forged {
        let resp = req.send(envoy.addr());
        assert_eq!(resp.status, 401, "{:?}: {}", req.headers, resp.body_str());
    }
    assert_eq!(envoy.metric("callback_empty_total", &ch), 0.0);
    // Signed: acknowledged at the proxy and counted.
    let resp = Request::post("/callbacks/github")
        .header("x-hub-signature-256", &sign::github(GITHUB_SECRET, b"{}"))
        .json("{}")
        .send(envoy.addr());
    assert_eq!(resp.status, 204);
    assert_eq!(resp.header("x-verified-signature"), Some("github"));
    let body = r#"{"zen":"x"}"#;
    let resp = Request::post("/callbacks/github")
        .header(
            "x-hub-signature-256",
            &sign::github(GITHUB_SECRET, body.as_bytes()),
        )
        .header("x-callback-status", "204")
        .json(body)
        .send(envoy.addr());
    assert_eq!(resp.status, 204);
    assert_eq!(envoy.metric("callback_empty_total", &ch), 2.0);
    assert_eq!(up.count(), 0, "empty callbacks never reach the service");
    // An unsigned channel still answers empties at once.
    let resp = Request::post("/callbacks/open")
        .json("{}")
        .send(envoy.addr());
    assert_eq!(resp.status, 204);
}

/// An Envoy whose listener writes a JSON access log with the decision
/// record to `dir/access.log`.
fn start_with_access_log(name: &str, up: &Upstream, plugin: &str) -> (Envoy, std::path::PathBuf) {
    let mut bootstrap = Envoy::builder(name)
        .plugin(plugin)
        .cluster("upstream", up.port())
        .bootstrap();
    let log = support::envoy::add_access_log(&mut bootstrap, name);
    (Envoy::start_yaml(name, &bootstrap.to_string()), log)
}

#[test]
fn every_decision_is_in_the_access_log_and_refusals_in_the_log() {
    let up = Upstream::start();
    let plugin = json!({"channels": [
        {"name": "github", "match": {"path_prefix": "/callbacks/github"},
         "signature": {"scheme": "github", "secrets": [{"value": GITHUB_SECRET}]}}
    ], "refusal_log": {"level": "warn", "per_second": 5}});
    let (envoy, log) = start_with_access_log("decision-log", &up, &plugin.to_string());
    let body = r#"{"action":"opened"}"#;
    let ok = Request::post("/callbacks/github")
        .header("x-github-delivery", "d-ok-1")
        .header(
            "x-hub-signature-256",
            &sign::github(GITHUB_SECRET, body.as_bytes()),
        )
        .json(body)
        .send(envoy.addr());
    assert_eq!(ok.status, 200);
    for i in 0..20 {
        let resp = Request::post("/callbacks/github")
            .header("x-github-delivery", &format!("d-bad-{i}"))
            .header(
                "x-hub-signature-256",
                &sign::github("wrong", body.as_bytes()),
            )
            .json(body)
            .send(envoy.addr());
        assert_eq!(resp.status, 401);
    }
    let outside = Request::get("/elsewhere").send(envoy.addr());
    assert_eq!(outside.status, 200);
    // Envoy buffers access log files (10 s flush interval); reopening the
    // logs flushes them.
    admin_post(&envoy, "/reopen_logs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        // Only whole lines: Envoy may be writing the last one right now.
        let lines: Vec<serde_json::Value> = text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| serde_json::from_str(l.trim_end()).unwrap())
            .collect();
        if lines.len() >= 22 || std::time::Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(lines.len(), 22, "{lines:#?}");
    let record = |line: &serde_json::Value| -> serde_json::Value {
        serde_json::from_str(line["callback_guard"].as_str().unwrap()).unwrap()
    };
    let first = record(&lines[0]);
    assert_eq!(first["channel"], "github");
    assert_eq!(first["verdict"], "forwarded");
    assert_eq!(first["scheme"], "github");
    assert_eq!(first["delivery_id"], "d-ok-1");
    assert!(support::assert::is_trace_id(
        first["trace_id"].as_str().unwrap()
    ));
    let refused = record(&lines[1]);
    assert_eq!(refused["verdict"], "refused");
    assert_eq!(refused["reason"], "signature_mismatch");
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["delivery_id"], "d-bad-0");
    // Outside every channel there is no record.
    assert_eq!(lines[21]["path"], "/elsewhere");
    assert!(lines[21]["callback_guard"].is_null(), "{}", lines[21]);
    // Refusals are logged at warn, at most 5 a second per worker.
    let envoy_log = envoy.log();
    let refusals: Vec<&str> = envoy_log
        .lines()
        .filter(|l| l.contains("callback-guard: refused channel=github"))
        .collect();
    assert!(refusals.len() >= 5 && refusals.len() < 20, "{refusals:#?}");
    assert!(
        refusals
            .iter()
            .all(|l| l.contains("[warning]") && l.contains("reason=signature_mismatch"))
    );
}

fn admin_post(envoy: &Envoy, path: &str) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(envoy.admin()).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: admin\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[test]
fn handshakes_pass_and_bodies_never_escape_the_checks() {
    let up = Upstream::start();
    let envoy = start("methods", &up);
    // A provider's GET verification handshake reaches the service.
    let resp = Request::get(
        "/callbacks/github?hub.mode=subscribe&hub.challenge=c4ll3ng3&hub.verify_token=t",
    )
    .send(envoy.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert_eq!(resp.body_str(), "upstream-ok");
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "GET");
    assert!(got[0].path.contains("hub.challenge=c4ll3ng3"));
    assert_eq!(got[0].header("x-verified-signature"), None);
    // Any method with a body is checked: unsigned, it is refused.
    for method in ["GET", "DELETE", "PROPFIND", "POST"] {
        let resp = Request::new(method, "/callbacks/github")
            .json(r#"{"sneaky":true}"#)
            .send(envoy.addr());
        assert_eq!(resp.status, 401, "{method} with a body");
    }
    // A body-less POST is a callback (an empty one): verified first.
    let resp = Request::post("/callbacks/github").send(envoy.addr());
    assert_eq!(resp.status, 401);
    assert_eq!(up.count(), 1, "only the handshake reached the service");
    assert_eq!(
        envoy.metric("callback_requests_total", &[("channel", "github")]),
        5.0,
        "the handshake is not counted as a callback"
    );
}

const MESH_SECRET: &str = "whsec_bWVzaC1pbnRlcm5hbC1zZWNyZXQtZm9yLXRlc3Rz";

#[test]
fn masked_callbacks_are_re_signed_for_stock_standard_webhooks_libraries() {
    let up = Upstream::start();
    let plugin = json!({"channels": [
        {"name": "github", "match": {"path_prefix": "/callbacks/github"},
         "signature": {"scheme": "github", "secrets": [{"value": GITHUB_SECRET}]},
         "mask": {"fields": ["email"]},
         "resign": {"secret": {"env": "CG_MESH_SECRET"}}}
    ]});
    let envoy = Envoy::builder("resign")
        .plugin(&plugin.to_string())
        .env("CG_MESH_SECRET", MESH_SECRET)
        .cluster("upstream", up.port())
        .start();
    let body = r#"{"action":"opened","sender":{"email":"dev@example.com"}}"#;
    let resp = Request::post("/callbacks/github")
        .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .header(
            "x-hub-signature-256",
            &sign::github(GITHUB_SECRET, body.as_bytes()),
        )
        .header("x-hub-signature", "sha1=legacy")
        .json(body)
        .send(envoy.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    let got = up.received();
    let r = &got[0];
    assert!(
        !r.body_str().contains("dev@example.com"),
        "masked: {}",
        r.body_str()
    );
    // The provider's signature is gone; the mesh signature is there.
    assert_eq!(r.header("x-hub-signature-256"), None);
    assert_eq!(r.header("x-hub-signature"), None);
    assert_eq!(
        r.header("webhook-id"),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
    // The service verifies with the stock Standard Webhooks library.
    let mut headers = http::HeaderMap::new();
    for (k, v) in &r.headers {
        headers.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::header::HeaderValue::from_str(v).unwrap(),
        );
    }
    let webhook = standardwebhooks::Webhook::new(MESH_SECRET).unwrap();
    webhook
        .verify(&r.body, &headers)
        .expect("the re-signed callback verifies");
    // The provider's signature would not verify the masked body any more:
    // without resign a service SDK refuses it; with it the mesh secret
    // verifies, and a tampered body does not.
    let mut tampered = r.body.clone();
    tampered.push(b' ');
    assert!(webhook.verify(&tampered, &headers).is_err());
}

#[test]
fn resign_is_refused_where_it_could_sign_what_was_not_verified() {
    for (name, plugin) in [
        (
            "resign-unsigned",
            json!({"channels": [{"name": "a", "match": {"path_prefix": "/a"},
                                 "resign": {"secret": {"value": MESH_SECRET}}}]}),
        ),
        (
            "resign-stream",
            json!({"hold_headers": false, "channels": [{"name": "a", "match": {"path_prefix": "/a"},
                   "signature": {"scheme": "github", "secrets": [{"value": GITHUB_SECRET}]},
                   "resign": {"secret": {"value": MESH_SECRET}}}]}),
        ),
    ] {
        let log = Envoy::builder(name)
            .plugin(&plugin.to_string())
            .cluster("upstream", 9)
            .start_expect_exit();
        assert!(log.contains("channels[0].resign"), "{name}: {log}");
    }
}

#[test]
fn a_noisy_channel_hits_its_own_limit_and_never_starves_another() {
    let up = Upstream::start();
    let plugin = json!({"channels": [
        {"name": "noisy", "match": {"path_prefix": "/callbacks/noisy"},
         "limits": {"rps": 0.5, "burst": 5}},
        {"name": "quiet", "match": {"path_prefix": "/callbacks/quiet"},
         "limits": {"rps": 0.5, "burst": 5}}
    ], "admission": {"capacity": {"rps": 1000, "burst": 1000}}});
    let envoy = Envoy::builder("channel-limits")
        .plugin(&plugin.to_string())
        .cluster("upstream", up.port())
        .start();
    let send = |path: &str, i: usize| {
        Request::post(path)
            .json(&format!(r#"{{"n":{i}}}"#))
            .send(envoy.addr())
    };
    let noisy: Vec<u16> = (0..20)
        .map(|i| send("/callbacks/noisy", i).status)
        .collect();
    let admitted = noisy.iter().filter(|s| **s == 200).count();
    // The burst of 5, plus at most a token or two refilled meanwhile.
    assert!((5..=7).contains(&admitted), "{noisy:?}");
    let refused = send("/callbacks/noisy", 99);
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.json()["error"],
        "rate_limited",
        "a rate limit says so"
    );
    assert!(refused.header("retry-after").is_some());
    // The quiet channel still has its whole burst.
    for i in 0..5 {
        assert_eq!(send("/callbacks/quiet", i).status, 200, "quiet {i}");
    }
    let metric = |ch: &str, d: &str| {
        envoy.metric(
            "callback_admission_total",
            &[("channel", ch), ("priority", "normal"), ("decision", d)],
        )
    };
    assert_eq!(metric("noisy", "admitted"), admitted as f64);
    assert_eq!(metric("noisy", "rate_limited"), (21 - admitted) as f64);
    assert_eq!(metric("quiet", "admitted"), 5.0);
    assert_eq!(metric("quiet", "rate_limited"), 0.0);
    assert_eq!(metric("noisy", "shed"), 0.0);
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Nothing a client sends may take the filter down: header values with
//! bytes 0x80-0xFF (Envoy accepts them) on every kind of path and in each
//! security header, over HTTP/1.1 and h2c, then many ordinary requests on
//! fresh connections (so every worker serves some), asserting they all
//! succeed and that the log holds no panic or failed VM call. The Envoy
//! runs with `FAIL_CLOSED`: a VM that died would answer 503 from then on.

mod support;

use serde_json::json;
use std::process::Command;
use support::{Envoy, Request, Upstream, sign};

const KEY: &[u8] = b"callback-guard hardening key";

fn whsec() -> String {
    format!("whsec_{}", sign::b64(KEY))
}

fn plugin() -> String {
    json!({
        "channels": [
            {"name": "signed", "match": {"path_prefix": "/callbacks/signed"},
             "signature": {"scheme": "standard-webhooks", "secrets": [{"value": whsec()}]},
             "dedup": {"window_s": 60},
             "mask": {"fields": ["email"]}},
            {"name": "open", "match": {"path_prefix": "/callbacks/open"},
             "empty": {"action": "forward"}}
        ],
        "admission": {
            "rules": [{"principals": ["spiffe://example.org/*"], "priority": "high", "effect": "allow"}],
            "limits": {"high": {"rps": 1000, "burst": 1000}, "normal": {"rps": 1000, "burst": 1000},
                        "low": {"rps": 1000, "burst": 1000}}
        }
    })
    .to_string()
}

fn start(name: &str, up: &Upstream) -> Envoy {
    Envoy::builder(name)
        .plugin(&plugin())
        .cluster("upstream", up.port())
        .concurrency(2)
        .start()
}

/// A correctly signed callback (fresh id per call).
fn signed(id: &str, body: &str) -> Request {
    sign::standard_request("/callbacks/signed/evt", &whsec(), id, body)
}

fn assert_alive(envoy: &Envoy, up: &Upstream, n: usize) {
    for i in 0..n {
        let resp = signed(&format!("msg_alive_{i}"), r#"{"ok":true}"#).send(envoy.addr());
        assert_eq!(
            resp.status,
            200,
            "request {i} after the hostile ones: {}",
            resp.body_str()
        );
        let open = Request::post("/callbacks/open/x")
            .json(r#"{"n":1}"#)
            .send(envoy.addr());
        assert_eq!(open.status, 200, "open channel request {i}");
        let plain = Request::get("/elsewhere").send(envoy.addr());
        assert_eq!(plain.status, 200, "request outside channels {i}");
    }
    assert!(up.count() >= 3 * n);
    let log = envoy.log();
    for bad in ["panicked", "Function: proxy_on", "wasm trap", "VM failed"] {
        assert!(!log.contains(bad), "Envoy log holds {bad:?}:\n{log}");
    }
}

const LATIN1: &[u8] = b"caf\xe9 \xff\x80";

#[test]
fn non_utf8_header_values_never_kill_the_vm_over_http1() {
    let up = Upstream::start();
    let envoy = start("non-utf8-h1", &up);

    // Outside every channel, in an unsigned channel, and next to a valid
    // signature: data, forwarded.
    let resp = Request::get("/elsewhere")
        .raw_header("x-note", LATIN1)
        .send(envoy.addr());
    assert_eq!(resp.status, 200);
    let resp = Request::post("/callbacks/open/a")
        .raw_header("x-note", LATIN1)
        .json(r#"{"a":1}"#)
        .send(envoy.addr());
    assert_eq!(resp.status, 200);
    let resp = signed("msg_note", r#"{"email":"a@b.example"}"#)
        .raw_header("x-note", LATIN1)
        .send(envoy.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    let got = up.received();
    let last = got.last().unwrap();
    assert_eq!(
        last.header("x-verified-signature"),
        Some("standard-webhooks")
    );
    assert!(!last.body_str().contains("a@b.example"), "masked");
    up.clear();

    // Each security header with a non-ASCII byte: refused as malformed,
    // nothing reaches the service.
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let mut req = signed("msg_sec", r#"{"x":1}"#);
        req.headers.retain(|(k, _)| k != name);
        let resp = req.raw_header(name, b"v1,\xe9\xff").send(envoy.addr());
        assert_eq!(resp.status, 401, "{name}: {}", resp.body_str());
        assert_eq!(resp.json()["error"], "signature_malformed", "{name}");
    }
    // A priority that is not ASCII is ignored (admitted as normal).
    let resp = signed("msg_prio", r#"{"x":2}"#)
        .raw_header("x-callback-priority", b"h\xefgh")
        .send(envoy.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    let got = up.received();
    assert_eq!(got.len(), 1, "only the callback with the ignored priority");
    assert_eq!(
        got[0].header("x-callback-priority-admitted"),
        Some("normal")
    );
    up.clear();

    assert_alive(&envoy, &up, 20);
    assert_eq!(
        envoy.metric(
            "callback_signature_failed_total",
            &[("channel", "signed"), ("reason", "malformed")]
        ),
        3.0
    );
}

#[test]
fn non_utf8_header_values_never_kill_the_vm_over_h2c() {
    let up = Upstream::start();
    let envoy = start("non-utf8-h2c", &up);
    let url = |path: &str| format!("http://{}{path}", envoy.addr());
    let curl = |args: Vec<std::ffi::OsString>| -> String {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
            ])
            .arg("--http2-prior-knowledge")
            .args(args)
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let raw = |name: &str| {
        use std::os::unix::ffi::OsStringExt;
        let mut h = format!("{name}: ").into_bytes();
        h.extend_from_slice(LATIN1);
        std::ffi::OsString::from_vec(h)
    };
    for (path, header) in [
        ("/elsewhere", "x-note"),
        ("/callbacks/open/a", "x-note"),
        ("/callbacks/signed/a", "webhook-id"),
        ("/callbacks/signed/a", "webhook-signature"),
        ("/callbacks/signed/a", "x-callback-priority"),
    ] {
        let got = curl(vec![
            "-H".into(),
            raw(header),
            "-H".into(),
            "content-type: application/json".into(),
            "--data".into(),
            r#"{"a":1}"#.into(),
            url(path).into(),
        ]);
        let (code, version) = got.split_once(' ').unwrap_or((&got, ""));
        assert_eq!(version, "2", "h2c was used ({got})");
        let want = if path.starts_with("/callbacks/signed") {
            "401"
        } else {
            "200"
        };
        assert_eq!(code, want, "{path} with a raw {header}");
    }
    assert_eq!(
        up.received()
            .iter()
            .filter(|r| r.path.starts_with("/callbacks/signed"))
            .count(),
        0,
        "nothing unverified reached the service"
    );
    assert_alive(&envoy, &up, 20);
}

#[test]
fn repeated_security_headers_are_refused_and_never_forwarded() {
    let up = Upstream::start();
    let envoy = start("repeated-headers", &up);
    // The signed id first, then a second id line: the service must never
    // see a verified callback carrying two ids.
    let resp = signed("msg_first", r#"{"x":1}"#)
        .header("webhook-id", "msg_planted")
        .send(envoy.addr());
    assert_eq!(resp.status, 401, "{}", resp.body_str());
    assert_eq!(resp.json()["error"], "signature_malformed");
    // A second signature line.
    let resp = signed("msg_second", r#"{"x":1}"#)
        .header("webhook-signature", "v1,AAAA")
        .send(envoy.addr());
    assert_eq!(resp.status, 401);
    assert_eq!(resp.json()["error"], "signature_malformed");
    assert_eq!(up.count(), 0, "nothing reached the service");
    assert_alive(&envoy, &up, 5);
}

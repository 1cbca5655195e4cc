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

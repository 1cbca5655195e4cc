#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue #12, item 4: a client certificate whose URI SAN is
//! `cluster.local/ns/default/sa/webhook-processor` (no `spiffe://`) was
//! admitted as `high`. Only a well-formed SPIFFE ID from the certificate is
//! an identity; the configuration may still write principals Istio-style.
//! Real Envoy, real mTLS (certificates generated at test time); the test
//! asserts the priority the upstream was given and what the caller got.

mod support;

use serde_json::json;
use support::assert::local_reply;
use support::tls::Pki;
use support::{Envoy, Request, Upstream};

const SPIFFE: &str = "spiffe://cluster.local/ns/default/sa/webhook-processor";
const NO_SCHEME: &str = "cluster.local/ns/default/sa/webhook-processor";
const ADMITTED: &str = "x-callback-priority-admitted";

/// `principal`: how the configuration spells the allowed caller.
fn plugin(principal: &str, unauthorized_high: &str) -> String {
    json!({
        "channels": [{"name": "payments", "match": {"path_prefix": "/callbacks/payments"},
                      "empty": {"action": "forward"}}],
        "admission": {
            "rules": [{"priority": "high", "effect": "allow", "principals": [principal]}],
            "unauthorized_high": unauthorized_high
        }
    })
    .to_string()
}

fn high() -> Request {
    Request::post("/callbacks/payments/evt")
        .header("x-callback-priority", "high")
        .json(r#"{"id":"evt_1"}"#)
}

#[test]
fn a_uri_san_without_spiffe_scheme_is_no_identity() {
    // Both spellings of the principal in the configuration.
    for principal in [SPIFFE, NO_SCHEME] {
        let pki = Pki::new("bypass-identity");
        let up = Upstream::start();
        let envoy = Envoy::builder("bypass-identity")
            .plugin(&plugin(principal, "demote"))
            .cluster("upstream", up.port())
            .transport_socket(pki.transport_socket(true))
            .start();
        let forged = pki.client(Some(&pki.identity(NO_SCHEME)));
        let genuine = pki.client(Some(&pki.identity(SPIFFE)));

        let resp = forged.send(&high(), envoy.addr());
        assert_eq!(resp.status, 200, "{principal}: {}", resp.body_str());
        let resp = genuine.send(&high(), envoy.addr());
        assert_eq!(resp.status, 200, "{principal}: {}", resp.body_str());

        let received = up.received();
        assert_eq!(received.len(), 2, "{principal}");
        assert_eq!(
            received[0].header(ADMITTED),
            Some("normal"),
            "config {principal}: a SAN without spiffe:// got high"
        );
        assert_eq!(received[1].header(ADMITTED), Some("high"), "{principal}");
        assert_eq!(
            envoy.metric(
                "callback_admission_total",
                &[
                    ("channel", "payments"),
                    ("priority", "normal"),
                    ("decision", "demoted")
                ]
            ),
            1.0
        );
        assert_eq!(
            envoy.metric(
                "callback_admission_total",
                &[
                    ("channel", "payments"),
                    ("priority", "high"),
                    ("decision", "admitted")
                ]
            ),
            1.0
        );
    }
}

#[test]
fn malformed_uri_sans_are_refused_high_when_the_policy_rejects() {
    let pki = Pki::new("bypass-identity-reject");
    let up = Upstream::start();
    let envoy = Envoy::builder("bypass-identity-reject")
        .plugin(&plugin("cluster.local/ns/*/sa/webhook-*", "reject"))
        .cluster("upstream", up.port())
        .transport_socket(pki.transport_socket(true))
        .start();
    for san in [
        NO_SCHEME,
        "SPIFFE://cluster.local/ns/default/sa/webhook-processor",
        "spiffe://cluster.local/ns/default/sa/webhook-processor/",
        "spiffe://cluster.local/ns/default/sa/webhook-processor?x=1",
    ] {
        let resp = pki
            .client(Some(&pki.identity(san)))
            .send(&high(), envoy.addr());
        local_reply(&resp, 403, Some("priority_rejected"), san);
    }
    assert_eq!(up.count(), 0, "{:?}", up.received());
    // The genuine identity still gets in.
    let resp = pki
        .client(Some(&pki.identity(SPIFFE)))
        .send(&high(), envoy.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert_eq!(up.received()[0].header(ADMITTED), Some("high"));
}

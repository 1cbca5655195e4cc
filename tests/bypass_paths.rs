#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue #12, items 2 and 3: path and host variants must not carry a
//! callback past its channel. Every variant from the issue is sent to a real
//! Envoy, with the shipped path settings (`normalize_path`, `merge_slashes`,
//! as `envoy/envoy.yaml`) and without them (the filter alone), and the test
//! asserts what the caller got and that the upstream, which serves every
//! path here (as a lenient payments service would), received nothing
//! unverified. A correctly signed callback on a variant path is verified
//! and forwarded, proving the variant really lands in the payments channel.
//!
//! The policy mirrors the shipped demo: a signed, host-restricted `payments`
//! channel listed after an unsigned `logistics` one (so "first channel whose
//! raw or normalised prefix fits" picked the wrong one), and, where the
//! test says so, the guard prefix `reject_unmatched: ["/callbacks/"]`.

mod support;

use serde_json::json;
use support::assert::local_reply;
use support::{Envoy, Request, Response, Upstream, repo_root, sign};

const KEY: &[u8] = b"callback-guard bypass-paths key";
const HOST: &str = "hooks.example.com";

fn whsec() -> String {
    format!("whsec_{}", sign::b64(KEY))
}

/// `guard`: with `reject_unmatched: ["/callbacks/"]` (the shipped configs'
/// setting); without it the policy also loads in the previous filter, so
/// the variants that need no guard show the old bypass there.
fn plugin(guard: bool) -> String {
    let mut doc = json!({
        "channels": [
            {"name": "logistics", "match": {"path_prefix": "/callbacks/logistics"},
             "empty": {"action": "forward"}},
            {"name": "payments", "match": {"path_prefix": "/callbacks/payments", "hosts": [HOST]},
             "signature": {"scheme": "standard-webhooks", "secrets": [{"value": whsec()}]}}
        ]
    });
    if guard {
        doc["reject_unmatched"] = json!(["/callbacks/"]);
    }
    doc.to_string()
}

fn start(name: &str, up: &Upstream, guard: bool, shipped_paths: bool) -> Envoy {
    let mut builder = Envoy::builder(name)
        .plugin(&plugin(guard))
        .cluster("upstream", up.port());
    if shipped_paths {
        builder = builder.shipped_path_normalization();
    }
    builder.start()
}

/// An unsigned payment on `path` for `host`.
fn unsigned(path: &str, host: &str) -> Request {
    Request::post(path)
        .host(host)
        .json(r#"{"type":"payment.succeeded","amount":1}"#)
}

/// A correctly signed payment on `path`.
fn signed(path: &str, id: &str) -> Request {
    let body = r#"{"type":"payment.succeeded","amount":2}"#;
    sign::standard_request(path, &whsec(), id, body).host(HOST)
}

fn refused(resp: &Response, status: u16, code: &str, what: &str) {
    local_reply(resp, status, Some(code), what);
}

/// Path variants from the issue that the payments channel must catch with
/// or without Envoy's normalisation: unsigned they are answered 401 and
/// never forwarded; signed they are verified and forwarded as sent.
const PAYMENTS_VARIANTS: [&str; 4] = [
    "/callbacks;x=1/payments",
    "/CALLBACKS/PAYMENTS",
    "/callbacks/Payments",
    r"/callbacks\payments",
];

fn variants_land_in_the_payments_channel(shipped_paths: bool) {
    let up = Upstream::start();
    let envoy = start("bypass-variants", &up, false, shipped_paths);
    let mode = if shipped_paths {
        "shipped paths"
    } else {
        "raw paths"
    };
    // Every variant is sent before the first assertion, so a failure
    // names all the variants that got through.
    let answers: Vec<(&str, Response)> = PAYMENTS_VARIANTS
        .iter()
        .map(|path| (*path, unsigned(path, HOST).send(envoy.addr())))
        .collect();
    assert_eq!(
        up.received().iter().map(|r| &r.path).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "{mode}: unsigned payments reached the service"
    );
    for (path, resp) in &answers {
        refused(resp, 401, "signature_missing", &format!("{mode}: {path}"));
    }
    assert_eq!(
        envoy.metric(
            "callback_signature_failed_total",
            &[("channel", "payments"), ("reason", "missing")]
        ),
        PAYMENTS_VARIANTS.len() as f64
    );

    // Signed on a variant path: the payments channel verifies it.
    for (i, path) in PAYMENTS_VARIANTS.iter().enumerate() {
        let resp = signed(path, &format!("msg_variant_{i}")).send(envoy.addr());
        assert_eq!(resp.status, 200, "{mode}: {path}: {}", resp.body_str());
        assert_eq!(
            resp.header("x-verified-signature"),
            Some("standard-webhooks")
        );
    }
    let received = up.received();
    assert_eq!(received.len(), PAYMENTS_VARIANTS.len());
    for r in &received {
        assert_eq!(
            r.header("x-verified-signature"),
            Some("standard-webhooks"),
            "{mode}: {}",
            r.path
        );
    }
}

#[test]
fn issue_path_variants_land_in_the_payments_channel_without_envoy_normalisation() {
    variants_land_in_the_payments_channel(false);
}

#[test]
fn issue_path_variants_land_in_the_payments_channel_with_shipped_normalisation() {
    variants_land_in_the_payments_channel(true);
}

#[test]
fn dot_segments_across_channels_never_reach_the_service_unverified() {
    // Without Envoy's normalisation the filter sees the `..` itself. As
    // sent the path is in `logistics`, canonical in `payments`: a service
    // may read either, so the filter refuses it (and the reverse).
    let up = Upstream::start();
    let envoy = start("bypass-dots-raw", &up, false, false);
    let mut answers = Vec::new();
    for path in [
        "/callbacks/logistics/../payments",
        "/callbacks/payments/../logistics",
        "/callbacks/payments/..;/logistics",
        // RFC 3986 dot removal without merging slashes (Envoy's own
        // normalize_path) reads this as /callbacks/payments/logistics.
        "/callbacks/payments//../logistics",
    ] {
        answers.push((path, unsigned(path, HOST).send(envoy.addr())));
        answers.push((path, signed(path, "msg_dots").send(envoy.addr())));
    }
    assert_eq!(
        up.received().iter().map(|r| &r.path).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "callbacks reached the service"
    );
    for (path, resp) in &answers {
        refused(resp, 404, "ambiguous_path", path);
    }
    assert_eq!(
        envoy.metric("callback_unmatched_total", &[("reason", "ambiguous_path")]),
        8.0
    );
    // The plain logistics channel still forwards unsigned callbacks.
    let resp = unsigned("/callbacks/logistics/evt", HOST).send(envoy.addr());
    assert_eq!(resp.status, 200);
    assert_eq!(up.received()[0].path, "/callbacks/logistics/evt");

    // With the shipped settings Envoy resolves the `..` first: the filter
    // sees /callbacks/payments and asks for the signature.
    let up = Upstream::start();
    let envoy = start("bypass-dots-shipped", &up, false, true);
    for path in [
        "/callbacks/logistics/../payments",
        "/callbacks/payments//../logistics",
    ] {
        let resp = unsigned(path, HOST).send(envoy.addr());
        refused(
            &resp,
            401,
            "signature_missing",
            &format!("shipped paths: {path}"),
        );
    }
    let resp = signed("/callbacks/logistics/../payments", "msg_dots_1").send(envoy.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    let received = up.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/callbacks/payments");
    assert_eq!(
        received[0].header("x-verified-signature"),
        Some("standard-webhooks")
    );
}

#[test]
fn the_guard_prefix_answers_404_for_anything_under_it_that_fits_no_channel() {
    for shipped_paths in [false, true] {
        let mode = if shipped_paths {
            "shipped paths"
        } else {
            "raw paths"
        };
        let up = Upstream::start();
        let envoy = start("bypass-guard", &up, true, shipped_paths);
        for path in [
            // Double encoding: a service that decodes twice reads `..`.
            "/callbacks/%252e%252e/payments",
            "/callbacks/%252E%252E/payments?x=1",
            // Typos and unknown channels.
            "/callbacks/payment",
            "/callbacks/unknown/evt",
            "/CALLBACKS/unknown",
            "/callbacks/",
        ] {
            let resp = unsigned(path, HOST).send(envoy.addr());
            refused(&resp, 404, "no_channel", &format!("{mode}: {path}"));
        }
        // The payments channel is restricted to HOST: another host is
        // under the guard and fits no channel.
        let resp = unsigned("/callbacks/payments", "other.example.com").send(envoy.addr());
        refused(&resp, 404, "no_channel", &format!("{mode}: other host"));
        // Double encoding that decodes *into* the payments channel.
        let resp = unsigned("/%252e%252e/callbacks/payments", HOST).send(envoy.addr());
        refused(&resp, 404, "ambiguous_path", mode);

        assert_eq!(up.count(), 0, "{mode}: {:?}", up.received());
        assert_eq!(
            envoy.metric("callback_unmatched_total", &[("reason", "no_channel")]),
            7.0,
            "{mode}"
        );
        // The variants of the issue still reach their channel under the guard.
        for path in PAYMENTS_VARIANTS {
            let resp = unsigned(path, HOST).send(envoy.addr());
            refused(&resp, 401, "signature_missing", &format!("{mode}: {path}"));
        }
        // Outside the guard, outside every channel: untouched.
        let resp = unsigned("/health", HOST).send(envoy.addr());
        assert_eq!(resp.status, 200, "{mode}");
        let received = up.received();
        assert_eq!(received.len(), 1, "{mode}");
        assert_eq!(received[0].path, "/health");
        assert_eq!(received[0].header("x-verified-signature"), None);
    }
}

#[test]
fn host_variants_do_not_skip_a_host_restricted_channel() {
    for shipped_paths in [false, true] {
        let mode = if shipped_paths {
            "shipped paths"
        } else {
            "raw paths"
        };
        let up = Upstream::start();
        let envoy = start("bypass-hosts", &up, false, shipped_paths);
        let hosts = [
            "hooks.example.com.",
            "hooks.example.com.:80",
            "HOOKS.Example.Com",
            "hooks.example.com:10000",
        ];
        let answers: Vec<(&str, Response)> = hosts
            .iter()
            .map(|host| {
                (
                    *host,
                    unsigned("/callbacks/payments", host).send(envoy.addr()),
                )
            })
            .collect();
        assert_eq!(
            up.received()
                .iter()
                .map(|r| r.header("host").unwrap_or_default().to_string())
                .collect::<Vec<_>>(),
            Vec::<String>::new(),
            "{mode}: unsigned payments reached the service for these hosts"
        );
        for (host, resp) in &answers {
            refused(resp, 401, "signature_missing", &format!("{mode}: {host}"));
        }
        assert_eq!(
            envoy.metric("callback_requests_total", &[("channel", "payments")]),
            hosts.len() as f64,
            "{mode}"
        );
        // Another host is not the channel's (no guard here: it passes).
        let resp = unsigned("/callbacks/payments", "other.example.com").send(envoy.addr());
        assert_eq!(resp.status, 200, "{mode}");
        assert_eq!(up.count(), 1, "{mode}");
        assert_eq!(up.received()[0].header("x-verified-signature"), None);
    }
}

#[test]
fn the_builder_mirrors_the_shipped_path_settings() {
    // `shipped_path_normalization()` must stay what envoy/envoy.yaml sets.
    let yaml = std::fs::read_to_string(repo_root().join("envoy/envoy.yaml")).unwrap();
    for setting in [
        "normalize_path: true",
        "merge_slashes: true",
        "path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT",
    ] {
        assert!(yaml.contains(setting), "envoy/envoy.yaml lacks {setting}");
    }
    let hcm = Envoy::builder("x").shipped_path_normalization().bootstrap()["static_resources"]
        ["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        .clone();
    assert_eq!(hcm["normalize_path"], true);
    assert_eq!(hcm["merge_slashes"], true);
    assert_eq!(
        hcm["path_with_escaped_slashes_action"],
        "UNESCAPE_AND_REDIRECT"
    );
}

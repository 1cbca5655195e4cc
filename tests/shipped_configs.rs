#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every Envoy config we ship is validated by Envoy itself (which also
//! loads the .wasm and runs the plugin configuration through the filter's
//! parser), and the demo config is run for real.

mod support;

use support::{Envoy, Request, Upstream, repo_root};

fn shipped_envoy_configs() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("envoy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_envoy_config_validates() {
    let files = shipped_envoy_configs();
    assert!(!files.is_empty(), "no configs under envoy/");
    for file in files {
        let (ok, out) = Envoy::validate(&file);
        assert!(ok, "{} does not validate:\n{out}", file.display());
        assert!(out.contains("OK"), "{}: {out}", file.display());
    }
}

#[test]
fn validate_catches_a_broken_plugin_configuration() {
    // The same demo config with a misspelt key must fail validation, so the
    // check above is not vacuous.
    let demo = std::fs::read_to_string(repo_root().join("envoy/envoy.yaml")).unwrap();
    let broken = demo.replacen("\"max_body_bytes\"", "\"max_body_byte\"", 1);
    assert_ne!(demo, broken);
    let dir = repo_root().join("target/e2e");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("broken-demo-{}.yaml", std::process::id()));
    std::fs::write(&path, broken).unwrap();
    let (ok, out) = Envoy::validate(&path);
    assert!(!ok, "a broken plugin configuration validated:\n{out}");
}

/// The demo config with its fixed ports swapped for test ones.
pub fn demo_config(upstreams: &[(&str, u16)]) -> String {
    let mut yaml = std::fs::read_to_string(repo_root().join("envoy/envoy.yaml")).unwrap();
    yaml = yaml
        .replace("port_value: 10000", "port_value: 0")
        .replace("port_value: 9901", "port_value: 0");
    for (fixed, port) in upstreams {
        yaml = yaml.replace(
            &format!("port_value: {fixed}"),
            &format!("port_value: {port}"),
        );
    }
    yaml
}

#[test]
fn demo_config_runs_the_shipped_policy() {
    let (default, a, b, c) = (
        Upstream::start(),
        Upstream::start(),
        Upstream::start(),
        Upstream::start(),
    );
    let yaml = demo_config(&[
        ("18080", default.port()),
        ("18081", a.port()),
        ("18082", b.port()),
        ("18083", c.port()),
    ]);
    let envoy = Envoy::start_yaml("demo", &yaml);

    // Empty callback: verified first, then answered at the proxy and
    // counted; an unsigned one is refused like any other.
    let resp = Request::post("/callbacks/payments")
        .json("{}")
        .send(envoy.addr());
    assert_eq!(resp.status, 401);
    let ts = support::sign::now();
    let resp = Request::post("/callbacks/payments")
        .header("webhook-id", "msg_demo_empty")
        .header("webhook-timestamp", &ts.to_string())
        .header(
            "webhook-signature",
            &support::sign::standard_v1(support::envoy::DEMO_ENV[0].1, "msg_demo_empty", ts, b"{}"),
        )
        .json("{}")
        .send(envoy.addr());
    assert_eq!(resp.status, 204);
    assert_eq!(
        envoy.metric("callback_empty_total", &[("channel", "payments")]),
        1.0
    );

    // Unsigned payment: refused, also on path variants (issue #12).
    for path in [
        "/callbacks/payments",
        "/CALLBACKS/PAYMENTS",
        "/callbacks;x=1/payments",
    ] {
        let resp = Request::post(path)
            .json(r#"{"amount":1}"#)
            .send(envoy.addr());
        assert_eq!(resp.status, 401, "{path}");
    }
    // The guard prefix: under /callbacks/ but in no channel.
    for path in ["/callbacks/paymnets", "/callbacks/%252e%252e/payments"] {
        let resp = Request::post(path)
            .json(r#"{"amount":1}"#)
            .send(envoy.addr());
        assert_eq!(resp.status, 404, "{path}");
        assert_eq!(resp.json()["error"], "no_channel", "{path}");
    }
    assert_eq!(
        envoy.metric("callback_unmatched_total", &[("reason", "no_channel")]),
        2.0
    );

    // Signed payment: verified, routed to one region, dedup'd on redelivery.
    let body = r#"{"type":"payment.succeeded","amount":1200}"#;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signed = Request::post("/callbacks/payments")
        .header("webhook-id", "msg_demo_1")
        .header("webhook-timestamp", &ts.to_string())
        .header(
            "webhook-signature",
            &support::sign::standard_v1(
                support::envoy::DEMO_ENV[0].1,
                "msg_demo_1",
                ts,
                body.as_bytes(),
            ),
        )
        .json(body);
    let resp = signed.send(envoy.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert_eq!(
        resp.header("x-verified-signature"),
        Some("standard-webhooks")
    );
    let regions: Vec<_> = [&a, &b, &c].iter().flat_map(|u| u.received()).collect();
    assert_eq!(regions.len(), 1);
    assert_eq!(
        regions[0].header("x-verified-signature"),
        Some("standard-webhooks")
    );
    assert_eq!(
        regions[0].header("x-callback-priority-admitted"),
        Some("normal")
    );
    assert_eq!(regions[0].body_str(), body);
    let resp = signed.send(envoy.addr());
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-callback-duplicate"), Some("true"));
    assert_eq!([&a, &b, &c].iter().map(|u| u.count()).sum::<usize>(), 1);
    assert_eq!(default.count(), 0);
}

#[test]
fn every_shipped_policy_guards_the_callbacks_prefix() {
    // Issue #12: shipped policies answer 404 for anything under /callbacks/
    // that fits no channel (`reject_unmatched`).
    let mut files = vec![repo_root().join("envoy/envoy.yaml")];
    for name in [
        "istio/overlays/sidecar-envoyfilter/envoyfilter.yaml",
        "istio/overlays/sidecar-wasmplugin/wasmplugin.yaml",
        "istio/overlays/gateway/envoyfilter.yaml",
        "istio/overlays/gateway-wasmplugin/wasmplugin.yaml",
    ] {
        files.push(repo_root().join(name));
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let compact: String = text.split_whitespace().collect();
        assert!(
            compact.contains(r#""reject_unmatched":["/callbacks/"]"#)
                || compact.contains("reject_unmatched:-/callbacks/"),
            "{} does not set reject_unmatched: [\"/callbacks/\"]",
            file.display()
        );
    }
}

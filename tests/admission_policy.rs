#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Admission decided by an OPA Rego policy (`admission.policy`, issue #16)
//! in a real Envoy over real mTLS: the caller's identity is the SPIFFE ID
//! of its client certificate (generated at test time). The policy is the
//! realistic one of the README (SPIFFE glob + priority + channel).

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::assert::local_reply;
use support::tls::Pki;
use support::{Envoy, Request, Upstream};

const PROCESSOR: &str = "spiffe://cluster.local/ns/pay/sa/webhook-processor";
const BATCH: &str = "spiffe://cluster.local/ns/pay/sa/batch";
const SANDBOX: &str = "spiffe://cluster.local/ns/sandbox/sa/webhook-test";

const PATH: &str = "/callbacks/payments/order";
const ADMITTED: &str = "x-callback-priority-admitted";
const METRIC: &str = "callback_admission_policy_total";

const POLICY: &str = r#"package callback.admission

decision := {"allow": false, "reason": "blocked_namespace"} if {
    startswith(input.identity, "spiffe://cluster.local/ns/sandbox/")
} else := {"allow": true, "priority": "high", "reason": "webhook_processor"} if {
    input.priority == "high"
    input.channel in {"payments", "refunds"}
    glob.match("spiffe://cluster.local/ns/*/sa/webhook-*", ["/"], input.identity)
} else := {"allow": true, "priority": "normal", "reason": "not_a_webhook"}
"#;

fn policy(source: &str, extra: Value) -> Value {
    let mut p = json!({
        "modules": {"admission.rego": source},
        "entrypoint": "data.callback.admission.decision",
        "reasons": ["blocked_namespace", "webhook_processor", "not_a_webhook"]
    });
    if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            p.insert(k.clone(), v.clone());
        }
    }
    p
}

fn plugin(policy: Value) -> String {
    json!({
        "channels": [{"name": "payments", "match": {"path_prefix": "/callbacks/payments"}}],
        "admission": {"policy": policy}
    })
    .to_string()
}

fn callback(priority: &str) -> Request {
    Request::post(PATH)
        .json(r#"{"id":"evt_1","amount":1}"#)
        .header("x-callback-priority", priority)
}

fn admitted(up: &Upstream, i: usize) -> Vec<String> {
    up.received()[i]
        .headers
        .iter()
        .filter(|(k, _)| k == ADMITTED)
        .map(|(_, v)| v.clone())
        .collect()
}

/// Envoy over mTLS with an access log carrying the decision record.
fn start(name: &str, plugin: &str, up: &Upstream) -> (Pki, Envoy, std::path::PathBuf) {
    let pki = Pki::new(name);
    let mut bootstrap = Envoy::builder(name)
        .plugin(plugin)
        .cluster("upstream", up.port())
        .transport_socket(pki.transport_socket(false))
        .bootstrap();
    let log = support::envoy::add_access_log(&mut bootstrap, name);
    let envoy = Envoy::start_yaml(name, &bootstrap.to_string());
    (pki, envoy, log)
}

/// The decision records of the access log, in order (waits for `n`).
fn records(log: &std::path::Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| {
                v["callback_guard"]
                    .as_str()
                    .and_then(|s| serde_json::from_str(s).ok())
            })
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_policy_admits_demotes_and_denies_by_spiffe_identity() {
    let up = Upstream::start();
    let (pki, envoy, log) = start("rego-decide", &plugin(policy(POLICY, json!({}))), &up);
    let addr = envoy.addr();
    let send = |id: Option<&str>, prio: &str| {
        let ident = id.map(|i| pki.identity(i));
        pki.client(ident.as_ref()).send(&callback(prio), addr)
    };

    // The allowed identity gets high.
    let resp = send(Some(PROCESSOR), "high");
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert_eq!(admitted(&up, 0), ["high"]);
    // Another identity is demoted, as the policy says.
    let resp = send(Some(BATCH), "high");
    assert_eq!(resp.status, 200);
    assert_eq!(admitted(&up, 1), ["normal"]);
    // No client certificate: no identity, never high.
    let resp = send(None, "high");
    assert_eq!(resp.status, 200);
    assert_eq!(admitted(&up, 2), ["normal"]);
    // A blocked namespace: 403 with the policy's reason, not forwarded.
    let resp = send(Some(SANDBOX), "high");
    local_reply(&resp, 403, Some("priority_rejected"), "sandbox");
    assert!(
        resp.body_str().contains("blocked_namespace"),
        "{}",
        resp.body_str()
    );
    // `normal` is outside `priorities` (default ["high"]): no policy, no
    // rules, admitted, even for the sandbox.
    let resp = send(Some(SANDBOX), "normal");
    assert_eq!(resp.status, 200);
    assert_eq!(admitted(&up, 3), ["normal"]);
    assert_eq!(up.count(), 4);

    let m = |d: &str, r: &str| envoy.metric(METRIC, &[("decision", d), ("reason", r)]);
    assert_eq!(m("admitted", "webhook_processor"), 1.0);
    assert_eq!(m("demoted", "not_a_webhook"), 2.0);
    assert_eq!(m("denied", "blocked_namespace"), 1.0);
    assert_eq!(m("error", "none"), 0.0);
    let adm = |p: &str, d: &str| {
        envoy.metric(
            "callback_admission_total",
            &[("channel", "payments"), ("priority", p), ("decision", d)],
        )
    };
    assert_eq!(adm("high", "admitted"), 1.0);
    assert_eq!(adm("normal", "demoted"), 2.0);
    assert_eq!(adm("high", "denied"), 1.0);
    assert_eq!(adm("normal", "admitted"), 1.0);

    let recs = records(&log, 5);
    let reasons: Vec<Option<&str>> = recs
        .iter()
        .map(|r| r["admission_reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            Some("webhook_processor"),
            Some("not_a_webhook"),
            Some("not_a_webhook"),
            Some("blocked_namespace"),
            None
        ],
        "{recs:?}"
    );
    assert_eq!(recs[3]["status"], 403);
}

#[test]
fn a_policy_that_does_not_compile_is_refused_at_load_with_line_and_column() {
    let up = Upstream::start();
    let broken = "package callback.admission\n\ndecision := {\"allow\": true} if {\n    input.priority ==\n}\n";
    let log = Envoy::builder("rego-syntax")
        .plugin(&plugin(policy(broken, json!({}))))
        .cluster("upstream", up.port())
        .start_expect_exit();
    let line = log
        .lines()
        .find(|l| l.contains("callback-guard: invalid configuration"))
        .unwrap_or_else(|| panic!("no configuration error in the log:\n{log}"));
    assert!(
        line.contains("admission.policy.modules.admission.rego: Rego does not compile"),
        "{line}"
    );
    assert!(line.contains("admission.rego:5:1"), "{line}");
}

/// Billions of iterations: stopped by `timeout_us`, counted as `error`,
/// and `on_error` decides; the request is answered promptly.
const RUNAWAY: &str = r#"package callback.admission

n := numbers.range(1, 3000)

# Only on the payments channel: at load the policy is tried on an empty
# input and a sample high request (channel "sample"), where it must finish
# within the budget.
decision := {"allow": count([1 | some a in n; some b in n; some c in n]) > 0} if {
    input.channel == "payments"
}
"#;

#[test]
fn a_runaway_policy_is_stopped_and_the_fail_mode_applies() {
    for (name, on_error) in [
        ("rego-runaway-rules", "rules"),
        ("rego-runaway-deny", "deny"),
    ] {
        let up = Upstream::start();
        let (pki, envoy, _log) = start(
            name,
            &plugin(policy(
                RUNAWAY,
                json!({"on_error": on_error, "timeout_us": 2000}),
            )),
            &up,
        );
        let client = pki.client(Some(&pki.identity(PROCESSOR)));
        for i in 0..3 {
            let started = Instant::now();
            let resp = client.send(&callback("high"), envoy.addr());
            let took = started.elapsed();
            // Generous for a loaded 2-core machine; unbounded would be hours.
            assert!(took < Duration::from_secs(5), "{on_error}: {took:?}");
            if on_error == "rules" {
                // No rules: an unauthorised high is demoted, never high.
                assert_eq!(resp.status, 200, "{}", resp.body_str());
                assert_eq!(admitted(&up, i), ["normal"]);
            } else {
                local_reply(&resp, 403, Some("priority_rejected"), on_error);
                assert!(resp.body_str().contains("policy_error"));
            }
        }
        assert_eq!(
            envoy.metric(METRIC, &[("decision", "error"), ("reason", "none")]),
            3.0,
            "{on_error}"
        );
        assert!(
            envoy.log().contains("admission policy failed"),
            "{on_error}"
        );
    }
}

#[test]
fn rules_still_decide_when_the_policy_leaves_allow_out() {
    // The policy only lowers nothing and says nothing about `allow`: the
    // rule list decides, exactly as without a policy.
    let source = "package callback.admission\n\ndecision := {\"reason\": \"ask_the_rules\"}\n";
    let up = Upstream::start();
    let plugin = json!({
        "channels": [{"name": "payments", "match": {"path_prefix": "/callbacks/payments"}}],
        "admission": {
            "rules": [{"priority": "high", "effect": "allow", "principals": [PROCESSOR]}],
            "policy": policy(source, json!({}))
        }
    })
    .to_string();
    let (pki, envoy, _log) = start("rego-rules", &plugin, &up);
    let send = |id: &str| {
        pki.client(Some(&pki.identity(id)))
            .send(&callback("high"), envoy.addr())
    };
    assert_eq!(send(PROCESSOR).status, 200);
    assert_eq!(admitted(&up, 0), ["high"]);
    assert_eq!(send(BATCH).status, 200);
    assert_eq!(admitted(&up, 1), ["normal"]);
    assert_eq!(
        envoy.metric(METRIC, &[("decision", "rules"), ("reason", "other")]),
        2.0
    );
}

/// The Istio example of the docs loads with the filter's own parser, and
/// the same plugin config in a real Envoy admits as documented.
#[test]
fn the_istio_example_loads_and_decides() {
    let text = std::fs::read_to_string(
        support::repo_root().join("docs/examples/istio-wasmplugin-rego.yaml"),
    )
    .unwrap();
    let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
    let config = doc["spec"]["pluginConfig"].clone();
    let json = serde_json::to_vec(&config).unwrap();
    let no_env = |_: &str| -> Option<String> { None };
    callback_guard::config::load(&json, &no_env).unwrap();

    let up = Upstream::start();
    let (pki, envoy, _log) = start("rego-istio-example", &config.to_string(), &up);
    let send = |id: &str, path: &str| {
        pki.client(Some(&pki.identity(id))).send(
            &Request::post(path)
                .json(r#"{"id":"evt_2"}"#)
                .header("x-callback-priority", "high"),
            envoy.addr(),
        )
    };
    assert_eq!(send(PROCESSOR, "/callbacks/refunds/1").status, 200);
    assert_eq!(admitted(&up, 0), ["high"]);
    assert_eq!(send(BATCH, "/callbacks/payments/1").status, 200);
    assert_eq!(admitted(&up, 1), ["normal"]);
    assert_eq!(send(SANDBOX, "/callbacks/payments/1").status, 403);
}

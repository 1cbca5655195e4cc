#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `callback-guard validate` as a user runs it: exit status, and every
//! error printed with its field path.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};
use support::repo_root;

const SECRETS: [&str; 3] = [
    "STRIPE_WEBHOOK_SECRET",
    "GITHUB_WEBHOOK_SECRET",
    "ORDERS_WEBHOOK_SECRET",
];

fn validate(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callback-guard"));
    cmd.current_dir(repo_root()).arg("validate").args(args);
    for name in SECRETS {
        cmd.env_remove(name);
    }
    cmd.envs(env.iter().copied());
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    (status.success(), text)
}

fn scratch(name: &str, content: &str) -> String {
    let dir = repo_root()
        .join("target/e2e")
        .join(format!("cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.to_string_lossy().to_string()
}

fn shipped(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap()
}

#[test]
fn every_shipped_manifest_validates() {
    let mut files = Vec::new();
    for dir in [
        "istio/base",
        "istio/sidecar",
        "istio/gateway",
        "istio/overlays/sidecar-envoyfilter",
        "istio/overlays/sidecar-wasmplugin",
        "istio/overlays/gateway",
        "istio/overlays/gateway-wasmplugin",
    ] {
        for entry in std::fs::read_dir(repo_root().join(dir)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().to_string();
            if name.ends_with(".yaml") {
                files.push(format!("{dir}/{name}"));
            }
        }
    }
    let mut args = vec!["--allow-missing-env"];
    args.extend(files.iter().map(String::as_str));
    let (ok, out) = validate(&args, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("4 configurations checked: all valid"), "{out}");
    for file in [
        "sidecar-envoyfilter/envoyfilter",
        "sidecar-wasmplugin/wasmplugin",
        "gateway/envoyfilter",
        "gateway-wasmplugin/wasmplugin",
    ] {
        let label = format!("OK   istio/overlays/{file}.yaml");
        assert!(out.contains(&label), "{label} missing:\n{out}");
    }
    assert!(
        out.contains("placeholder secrets for unset env vars"),
        "{out}"
    );
}

#[test]
fn a_secret_missing_from_the_environment_is_an_error_by_default() {
    let (ok, out) = validate(&["istio/overlays/sidecar-wasmplugin/wasmplugin.yaml"], &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "spec.pluginConfig.channels[0].signature.secrets[0]: env var STRIPE_WEBHOOK_SECRET is not set"
        ),
        "{out}"
    );
    assert!(out.contains("--allow-missing-env"), "{out}");
    assert!(out.contains("3 errors"), "{out}");
}

#[test]
fn secrets_from_the_environment_are_checked() {
    let whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let env = [
        ("STRIPE_WEBHOOK_SECRET", "sk_test_secret"),
        ("GITHUB_WEBHOOK_SECRET", "gh-secret"),
        ("ORDERS_WEBHOOK_SECRET", whsec),
    ];
    let (ok, out) = validate(&["istio/overlays/sidecar-wasmplugin/wasmplugin.yaml"], &env);
    assert!(ok, "{out}");
    assert!(out.contains("3 channels (stripe, github, orders)"), "{out}");
    // Standard Webhooks wants a whsec_ (base64) key: a wrong one is named.
    let env = [
        env[0],
        env[1],
        ("ORDERS_WEBHOOK_SECRET", "whsec_not base64!"),
    ];
    let (ok, out) = validate(&["istio/overlays/sidecar-wasmplugin/wasmplugin.yaml"], &env);
    assert!(!ok, "{out}");
    assert!(
        out.contains("spec.pluginConfig.channels[2].signature.secrets[0]: is not a whsec_ secret"),
        "{out}"
    );
}

#[test]
fn a_broken_policy_reports_every_error_with_its_field_path() {
    let file = scratch(
        "broken.yaml",
        r#"
channels:
- name: stripe
  match: { path_prefix: /callbacks/stripe }
  signature: { scheme: stripe, secrets: [ { value: sk_test } ], tolerance: 300 }
- name: github
  match: { path_prefix: callbacks/github }
- name: github
  match: { path_prefix: /callbacks/gh }
  routing: { clusters: [ { name: region-a, weight: 0 } ] }
admission:
  capacity: { rps: -1, burst: 10 }
"#,
    );
    let (ok, out) = validate(&[&file], &[]);
    assert!(!ok, "{out}");
    for path in [
        "channels[0].signature.tolerance: unknown field `tolerance`",
        "channels[1].match.path_prefix: must start with '/'",
        "channels[2].routing.clusters[0].weight:",
        "channels[2].name: duplicate channel name",
        "admission.capacity.rps:",
    ] {
        assert!(out.contains(path), "{path} missing:\n{out}");
    }
    assert!(out.contains("1 configuration checked: 5 errors"), "{out}");
}

#[test]
fn a_good_json_policy_passes_with_a_summary() {
    let file = scratch(
        "good.json",
        r#"{"channels": [{"name": "payments", "match": {"path_prefix": "/callbacks/payments"},
             "signature": {"scheme": "standard-webhooks", "secrets": [{"env": "PAYMENTS_SECRET"}]},
             "dedup": {"window_s": 3600}}]}"#,
    );
    let (ok, out) = validate(
        &[&file],
        &[("PAYMENTS_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("1 channel (payments); signatures: standard-webhooks; dedup on 1"),
        "{out}"
    );
    assert!(out.contains("1 configuration checked: all valid"), "{out}");
}

#[test]
fn an_env_var_the_manifest_does_not_give_the_vm_is_named() {
    let manifest = shipped("istio/overlays/sidecar-wasmplugin/wasmplugin.yaml").replacen(
        "    - name: GITHUB_WEBHOOK_SECRET\n      valueFrom: HOST\n",
        "",
        1,
    );
    let file = scratch("undeclared.yaml", &manifest);
    let (ok, out) = validate(&["--allow-missing-env", &file], &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "spec.pluginConfig.channels[1].signature.secrets[0].env: GITHUB_WEBHOOK_SECRET is not listed in spec.vmConfig.env"
        ),
        "{out}"
    );
}

#[test]
fn an_envoyfilter_without_the_stop_iteration_flag_is_refused() {
    let manifest = shipped("istio/overlays/sidecar-envoyfilter/envoyfilter.yaml").replacen(
        "allow_on_headers_stop_iteration: true",
        "allow_on_headers_stop_iteration: false",
        1,
    );
    let file = scratch("no-flag.yaml", &manifest);
    let (ok, out) = validate(&["--allow-missing-env", &file], &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "spec.configPatches[0].patch.value.typed_config.config.allow_on_headers_stop_iteration: must be true"
        ),
        "{out}"
    );
}

#[test]
fn a_wasmplugin_that_holds_headers_is_refused() {
    // The WasmPlugin API cannot set allow_on_headers_stop_iteration: holding
    // headers there stalls every callback with a body.
    let manifest = shipped("istio/overlays/sidecar-wasmplugin/wasmplugin.yaml");
    assert!(manifest.contains("    hold_headers: false\n"));
    for (name, variant) in [
        (
            "held-default.yaml",
            manifest.replacen("    hold_headers: false\n", "", 1),
        ),
        (
            "held-true.yaml",
            manifest.replacen("    hold_headers: false\n", "    hold_headers: true\n", 1),
        ),
    ] {
        let file = scratch(name, &variant);
        let (ok, out) = validate(&["--allow-missing-env", &file], &[]);
        assert!(!ok, "{out}");
        assert!(
            out.contains("spec.pluginConfig.hold_headers: must be false in a WasmPlugin"),
            "{out}"
        );
    }
    // The shipped one runs in stream mode and says what that gives up.
    let (ok, out) = validate(
        &[
            "--allow-missing-env",
            "istio/overlays/sidecar-wasmplugin/wasmplugin.yaml",
        ],
        &[],
    );
    assert!(ok, "{out}");
    assert!(out.contains("admission; stream mode"), "{out}");
    assert!(
        out.contains("note: stream mode (hold_headers: false)")
            && out.contains("x-verified-signature reaches only the caller's response"),
        "{out}"
    );
}

#[test]
fn an_envoyfilter_without_the_flag_is_accepted_in_stream_mode() {
    let manifest = shipped("istio/overlays/sidecar-envoyfilter/envoyfilter.yaml");
    let without_flag = manifest.replacen("allow_on_headers_stop_iteration: true", "", 1);
    let stream = "{\n                  \"hold_headers\": false,\n                  \"channels\": [";
    let streaming = without_flag.replacen("{\n                  \"channels\": [", stream, 1);
    assert_ne!(streaming, without_flag);
    let file = scratch("stream-no-flag.yaml", &streaming);
    let (ok, out) = validate(&["--allow-missing-env", &file], &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("note: stream mode (hold_headers: false)"),
        "{out}"
    );
    // With the flag and stream mode: valid, with a hint to hold headers.
    let file = scratch(
        "stream-with-flag.yaml",
        &manifest.replacen("{\n                  \"channels\": [", stream, 1),
    );
    let (ok, out) = validate(&["--allow-missing-env", &file], &[]);
    assert!(ok, "{out}");
    assert!(out.contains("drop hold_headers: false"), "{out}");
}

#[test]
fn an_envoyfilter_with_a_struct_configuration_is_refused() {
    let file = scratch(
        "struct.yaml",
        r#"apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: { name: cg, namespace: webhooks }
spec:
  configPatches:
  - applyTo: EXTENSION_CONFIG
    patch:
      operation: ADD
      value:
        name: cg
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
          config:
            allow_on_headers_stop_iteration: true
            configuration:
              "@type": type.googleapis.com/google.protobuf.Struct
              value: { channels: [] }
"#,
    );
    let (ok, out) = validate(&[&file], &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("spec.configPatches[0].patch.value.typed_config.config.configuration: must be a type.googleapis.com/google.protobuf.StringValue"),
        "{out}"
    );
}

#[test]
fn files_without_a_configuration_or_not_yaml_fail() {
    let (ok, out) = validate(&["istio/base/telemetry.yaml"], &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("no callback-guard configuration found"),
        "{out}"
    );
    let file = scratch("bad.yaml", "channels: [\n");
    let (ok, out) = validate(&[&file], &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("not valid YAML"), "{out}");
}

#[test]
fn an_envoy_bootstrap_is_checked_filter_by_filter() {
    let demo = [
        ("PAYMENTS_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("GITHUB_SECRET", "demo-github-secret"),
    ];
    let (ok, out) = validate(&["envoy/envoy.yaml"], &demo);
    assert!(ok, "{out}");
    assert!(
        out.contains(
            "OK   envoy/envoy.yaml (static_resources.listeners[0].filter_chains[0].filters[0]\
             .typed_config.http_filters[0].typed_config.config): 3 channels (payments, github, logistics)"
        ),
        "{out}"
    );
    // A broken copy: every error, under the filter's location.
    let broken = shipped("envoy/envoy.yaml")
        .replace(r#""name": "logistics""#, r#""name": "Logistics""#)
        .replace(r#""window_s": 3600 },"#, r#""window": 3600 },"#)
        .replace(r#""rps": 50,"#, r#""rps": 0,"#)
        .replace("allow_on_headers_stop_iteration: true", "");
    let file = scratch("bootstrap.yaml", &broken);
    let (ok, out) = validate(&[&file], &demo);
    assert!(!ok, "{out}");
    for want in [
        "typed_config.http_filters[0].typed_config.config.allow_on_headers_stop_iteration: must be true",
        "channels[2].name: \"Logistics\" must match",
        "channels[0].dedup.window: unknown field `window`",
        "admission.limits.low.rps:",
    ] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
    assert!(out.contains("1 configuration checked: 4 errors"), "{out}");
}

#[test]
fn json_format_reports_every_error_for_ci() {
    let file = scratch(
        "two-errors.json",
        r#"{"channels": [{"name": "A", "match": {"path_prefix": "/a"}},
                         {"name": "b", "match": {"path_prefix": "b"}}]}"#,
    );
    let (ok, out) = validate(
        &["--format", "json", &file, "istio/base/telemetry.yaml"],
        &[],
    );
    assert!(!ok, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["configurations"], 1);
    assert_eq!(report["errors"], 2);
    let results = report["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "fail");
    let paths: Vec<&str> = results[0]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["channels[0].name", "channels[1].match.path_prefix"]);
    assert!(results[1..].iter().all(|r| r["status"] == "skip"), "{out}");

    let (ok, out) = validate(
        &[
            "--format",
            "json",
            "istio/overlays/sidecar-envoyfilter/envoyfilter.yaml",
            "--allow-missing-env",
        ],
        &[],
    );
    assert!(ok, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["results"][0]["status"], "ok");
}

#[test]
fn an_empty_file_is_explained() {
    for (name, content) in [
        ("empty.yaml", ""),
        ("comments.yaml", "# nothing yet\n---\n"),
        ("empty.json", " \n"),
    ] {
        let file = scratch(name, content);
        let (ok, out) = validate(&[&file], &[]);
        assert!(!ok, "{out}");
        assert!(out.contains(": empty file: nothing to check"), "{out}");
        assert!(out.contains("\"no channels\""), "{out}");
    }
}

#[test]
fn make_help_lists_every_target() {
    let makefile = shipped("Makefile");
    let phony = makefile
        .lines()
        .find_map(|l| l.strip_prefix(".PHONY:"))
        .unwrap();
    let out = Command::new("make")
        .current_dir(repo_root())
        .args(["-s", "help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    for target in phony.split_whitespace() {
        let listed = help
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == ' '))
            .any(|part| {
                part.split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .any(|w| w == ["make", target])
            });
        assert!(listed, "make help does not list `make {target}`:\n{help}");
    }
}

#[test]
fn sample_bodies_are_checked_against_a_channel_contract() {
    let policy = scratch(
        "contract.json",
        r#"{"channels": [
             {"name": "orders", "match": {"path_prefix": "/callbacks/orders"},
              "contract": {"type": "object", "required": ["id", "amount"],
                           "properties": {"amount": {"type": "integer", "minimum": 0}}}},
             {"name": "refunds", "match": {"path_prefix": "/callbacks/refunds"},
              "contract": {"type": "object"}},
             {"name": "plain", "match": {"path_prefix": "/callbacks/plain"}}]}"#,
    );
    let good = scratch("order-good.json", r#"{"id": "o1", "amount": 5}"#);
    let bad = scratch("order-bad.json", r#"{"amount": -4111111111111111}"#);
    let not_json = scratch("order.txt", "id=o1");

    let (ok, out) = validate(&[&policy, "--body", &good, "--channel", "orders"], &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "body {good} satisfies the contract of channel orders"
        )),
        "{out}"
    );

    let (ok, out) = validate(
        &[
            &policy,
            "--body",
            &good,
            "--body",
            &bad,
            "--body",
            &not_json,
            "--channel",
            "orders",
        ],
        &[],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "channels[0].contract: body {bad} fails: /amount (minimum), /id (required)"
        )),
        "{out}"
    );
    assert!(!out.contains("4111"), "a value was echoed: {out}");
    assert!(
        out.contains(&format!(
            "channels[0].contract: body {not_json} fails: not JSON"
        )),
        "{out}"
    );
    assert!(out.contains("2 errors"), "{out}");

    // Two channels have a contract: which one must be said; and a channel
    // without one has nothing to check against.
    let (ok, out) = validate(&[&policy, "--body", &good], &[]);
    assert!(
        !ok && out.contains("2 channels have a contract; name one with --channel"),
        "{out}"
    );
    let (ok, out) = validate(&[&policy, "--body", &good, "--channel", "plain"], &[]);
    assert!(
        !ok && out.contains("channel plain has no contract"),
        "{out}"
    );
    let (ok, out) = validate(&[&policy, "--body", &good, "--channel", "nope"], &[]);
    assert!(
        !ok && out.contains("--channel nope: no such channel"),
        "{out}"
    );
}

#[test]
fn an_invalid_contract_schema_is_refused_with_its_path() {
    let policy = scratch(
        "contract-invalid.json",
        r#"{"channels": [{"name": "orders", "match": {"path_prefix": "/cb"},
             "contract": {"properties": {"amount": {"type": "integr"}}}}]}"#,
    );
    let (ok, out) = validate(&[&policy], &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("channels[0].contract.properties.amount.type: invalid JSON Schema"),
        "{out}"
    );
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The Istio manifests under `istio/` are right the first time, as
//! `kubectl apply -k istio/overlays/<one>` applies them (each overlay
//! rendered by `support/kustomize.rs`; the overlays themselves, the
//! resilience objects and the observability assets: tests/packaging.rs):
//!
//! - every `WasmPlugin` validates against the CRD's OpenAPI schema
//!   (`tests/fixtures/istio-wasmplugin-crd.yaml`), read as Kubernetes
//!   reads it with strict field validation (unknown fields refused), plus
//!   the CRD's CEL rules, which a JSON-Schema validator cannot run;
//! - every plugin configuration (`pluginConfig`, the EnvoyFilter's
//!   `configuration`) loads with the filter's own parser, seeing only the
//!   env vars the manifest gives the VM;
//! - every `EnvoyFilter`'s Envoy config is validated by Envoy itself, which
//!   also loads the `.wasm` and runs the configuration through it;
//! - the WasmPlugin and EnvoyFilter variants carry the same policy, and the
//!   workloads get every secret from a Kubernetes Secret;
//! - the telemetry snippet, merged into an Istio-like bootstrap, gives
//!   `callback_*` metrics with real labels;
//! - the WasmPlugin path works: without `allow_on_headers_stop_iteration`
//!   (what a WasmPlugin generates) its stream-mode policy
//!   (`hold_headers: false`) verifies, masks and forwards callbacks with a
//!   body, while the same policy holding headers would stall them; the
//!   EnvoyFilter (flag set, headers held) keeps every guarantee.

#[path = "support/kustomize.rs"]
mod kustomize;
mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use support::envoy::{LABELS, find_metric, parse_prometheus, wasm_path};
use support::{Envoy, Request, Upstream, repo_root};

/// What the tests give every env var the manifests declare: a valid
/// Standard Webhooks secret (`whsec_` + base64), which every scheme accepts
/// (stripe / github / ... use the whole string as the HMAC key).
const DUMMY_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";

// ---------------------------------------------------------------- reading

/// One YAML document of a file under `istio/`.
#[derive(Debug, Clone)]
struct Doc {
    file: PathBuf,
    index: usize,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }

    fn name(&self) -> String {
        format!(
            "{} document {} ({} {})",
            self.file
                .strip_prefix(repo_root())
                .unwrap_or(&self.file)
                .display(),
            self.index + 1,
            self.kind(),
            self.value["metadata"]["name"].as_str().unwrap_or("?")
        )
    }

    fn dir(&self) -> &Path {
        self.file.parent().unwrap()
    }

    /// The deployment a filter belongs to: `sidecar` or `gateway`, from its
    /// overlay (`istio/overlays/sidecar-envoyfilter`, `.../gateway-wasmplugin`).
    fn deployment(&self) -> String {
        let overlay = self.dir().file_name().unwrap().to_string_lossy();
        overlay.split('-').next().unwrap().to_string()
    }

    /// The base the filter's overlay builds on (`istio/sidecar`,
    /// `istio/gateway`): the objects shared by its deployment's overlays.
    fn base_dir(&self) -> PathBuf {
        repo_root().join("istio").join(self.deployment())
    }
}

fn yaml_documents(text: &str) -> Vec<Value> {
    kustomize::yaml_documents(text)
}

/// Every object `kubectl apply -k istio/overlays/<one>` applies, for every
/// overlay: what reaches the cluster, after the overlay's namespace, labels
/// and patches (image, host). `file` is the overlay's kustomization.
fn manifests() -> Vec<Doc> {
    let overlays = kustomize::overlays(&repo_root());
    assert!(!overlays.is_empty(), "no overlays under istio/overlays");
    overlays
        .into_iter()
        .flat_map(|dir| {
            let file = dir.join(kustomize::KUSTOMIZATION);
            kustomize::build(&dir)
                .into_iter()
                .enumerate()
                .map(move |(index, value)| Doc {
                    file: file.clone(),
                    index,
                    value,
                })
        })
        .collect()
}

/// The documents of the YAML files directly in `dir` (not rendered).
fn raw_documents(dir: &Path) -> Vec<Doc> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            yaml_documents(&text)
                .into_iter()
                .enumerate()
                .map(move |(index, value)| Doc {
                    file: file.clone(),
                    index,
                    value,
                })
        })
        .collect()
}

fn of_kind(kind: &str) -> Vec<Doc> {
    let docs: Vec<Doc> = manifests()
        .into_iter()
        .filter(|d| d.kind() == kind)
        .collect();
    assert!(!docs.is_empty(), "no {kind} under istio/");
    docs
}

// ------------------------------------------------------------ CRD schema

/// The CRD's `openAPIV3Schema`, made a JSON Schema (draft 4) that refuses
/// what the API server refuses:
/// - `nullable: true` becomes a `null` type;
/// - `format: int32` becomes its bounds (formats are annotations only);
/// - objects with `properties` and neither `additionalProperties` nor
///   `x-kubernetes-preserve-unknown-fields` refuse unknown fields, as
///   `kubectl apply` does with strict field validation (its default);
/// - the root gets `apiVersion`, `kind` and `metadata`, which the CRD
///   schema leaves to Kubernetes.
fn crd_schema() -> Value {
    let text =
        std::fs::read_to_string(repo_root().join("tests/fixtures/istio-wasmplugin-crd.yaml"))
            .unwrap();
    let crd = yaml_documents(&text)
        .into_iter()
        .find(|d| d["kind"] == "CustomResourceDefinition")
        .expect("a CRD in the fixture");
    assert_eq!(crd["spec"]["names"]["kind"], "WasmPlugin");
    let version = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v1alpha1")
        .expect("v1alpha1");
    let mut schema = structural(version["schema"]["openAPIV3Schema"].clone());
    let props = schema["properties"].as_object_mut().unwrap();
    props.insert(
        "apiVersion".into(),
        json!({"enum": ["extensions.istio.io/v1alpha1"]}),
    );
    props.insert("kind".into(), json!({"enum": ["WasmPlugin"]}));
    props.insert(
        "metadata".into(),
        json!({"type": "object", "required": ["name"],
               "properties": {"name": {"type": "string", "minLength": 1},
                              "namespace": {"type": "string"},
                              "labels": {"type": "object",
                                         "additionalProperties": {"type": "string"}}}}),
    );
    schema["required"] = json!(["apiVersion", "kind", "metadata", "spec"]);
    schema
}

fn structural(mut s: Value) -> Value {
    let Some(obj) = s.as_object_mut() else {
        return s;
    };
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        for v in props.values_mut() {
            *v = structural(v.take());
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(v) = obj.get_mut(key)
            && v.is_object()
        {
            *v = structural(v.take());
        }
    }
    if let Some(Value::Array(alts)) = obj.get_mut("anyOf") {
        for v in alts.iter_mut() {
            *v = structural(v.take());
        }
    }
    if obj.get("format").and_then(Value::as_str) == Some("int32") {
        obj.insert("minimum".into(), json!(i32::MIN));
        obj.insert("maximum".into(), json!(i32::MAX));
    }
    if obj.get("nullable") == Some(&Value::Bool(true))
        && let Some(Value::String(t)) = obj.get("type").cloned()
    {
        obj.insert("type".into(), json!([t, "null"]));
    }
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if obj.contains_key("properties") && !obj.contains_key("additionalProperties") && !preserve {
        obj.insert("additionalProperties".into(), Value::Bool(false));
    }
    s
}

fn crd_validator() -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&crd_schema())
        .unwrap()
}

/// The CRD's `x-kubernetes-validations` (CEL) rules, by hand.
fn cel_violations(spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let set = ["selector", "targetRef", "targetRefs"]
        .iter()
        .filter(|k| spec.get(**k).is_some())
        .count();
    if set > 1 {
        out.push("spec: only one of targetRefs or selector can be set".to_string());
    }
    if let Some(url) = spec["url"].as_str() {
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        if !["", "http", "https", "oci", "file"].contains(&scheme) {
            out.push("spec.url: url must have schema one of [http, https, file, oci]".into());
        }
    }
    for (i, env) in spec["vmConfig"]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if env["valueFrom"] == "HOST" && env.get("value").is_some() {
            out.push(format!(
                "spec.vmConfig.env[{i}]: value may only be set when valueFrom is INLINE"
            ));
        }
    }
    if let Some(labels) = spec["selector"]["matchLabels"].as_object() {
        for (k, v) in labels {
            if k.is_empty() || k.contains('*') || v.as_str().is_some_and(|v| v.contains('*')) {
                out.push(format!(
                    "spec.selector.matchLabels: invalid key or value {k:?}"
                ));
            }
        }
    }
    let refs = spec["targetRefs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .chain(spec.get("targetRef").cloned());
    for r in refs {
        if r["namespace"].as_str().is_some_and(|ns| !ns.is_empty()) {
            out.push(
                "spec.targetRefs: cross namespace referencing is not currently supported".into(),
            );
        }
    }
    out
}

fn crd_violations(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    let mut out: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    out.extend(cel_violations(&doc["spec"]));
    out
}

#[test]
fn every_wasmplugin_matches_the_crd() {
    let validator = crd_validator();
    let plugins = of_kind("WasmPlugin");
    assert!(
        plugins.len() >= 2,
        "expected a sidecar and a gateway WasmPlugin"
    );
    for doc in &plugins {
        let errors = crd_violations(&validator, &doc.value);
        assert!(
            errors.is_empty(),
            "{}:\n  {}",
            doc.name(),
            errors.join("\n  ")
        );
    }
}

#[test]
fn crd_validation_refuses_broken_wasmplugins() {
    let validator = crd_validator();
    let good = of_kind("WasmPlugin")
        .into_iter()
        .find(|d| d.value["spec"].get("selector").is_some())
        .unwrap()
        .value;
    type Break = fn(&mut Value);
    let cases: [(&str, Break, &str); 8] = [
        (
            "misspelt field",
            |v| {
                let cfg = v["spec"]
                    .as_object_mut()
                    .unwrap()
                    .remove("pluginConfig")
                    .unwrap();
                v["spec"]["pluginconfig"] = cfg;
            },
            "pluginconfig",
        ),
        (
            "Envoy's spelling of the fail strategy",
            |v| v["spec"]["failStrategy"] = json!("FAIL_CLOSED"),
            "/spec/failStrategy",
        ),
        (
            "phase that does not exist",
            |v| v["spec"]["phase"] = json!("AUTHENTICATION"),
            "/spec/phase",
        ),
        (
            "priority beyond int32",
            |v| v["spec"]["priority"] = json!(4_000_000_000u64),
            "/spec/priority",
        ),
        (
            "no url",
            |v| {
                v["spec"].as_object_mut().unwrap().remove("url");
            },
            "url",
        ),
        (
            "selector and targetRefs",
            |v| {
                v["spec"]["targetRefs"] =
                    json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "g"}]);
            },
            "only one of targetRefs or selector",
        ),
        (
            "a HOST env var with an inline value",
            |v| v["spec"]["vmConfig"]["env"][0]["value"] = json!("whsec_x"),
            "value may only be set when valueFrom is INLINE",
        ),
        (
            "an unknown key under vmConfig",
            |v| v["spec"]["vmConfig"]["environment"] = json!([]),
            "environment",
        ),
    ];
    for (what, break_it, expect) in cases {
        let mut doc = good.clone();
        break_it(&mut doc);
        let errors = crd_violations(&validator, &doc);
        assert!(
            errors.iter().any(|e| e.contains(expect)),
            "{what}: expected an error mentioning {expect:?}, got {errors:#?}"
        );
    }
}

// --------------------------------------------------- plugin configurations

/// The env vars a WasmPlugin gives its VM: name -> Some(inline value) or
/// None (from the proxy's environment, `valueFrom: HOST`).
fn wasmplugin_env(doc: &Value) -> BTreeMap<String, Option<String>> {
    doc["spec"]["vmConfig"]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let inline =
                (e["valueFrom"] != "HOST").then(|| e["value"].as_str().unwrap_or("").to_string());
            (name, inline)
        })
        .collect()
}

/// The plugin configuration Istio hands the filter: `pluginConfig` as JSON
/// (istiod marshals the Struct with protojson; integral numbers stay
/// integral, as with serde_json).
fn plugin_config_json(doc: &Value) -> String {
    serde_json::to_string(&doc["spec"]["pluginConfig"]).unwrap()
}

/// Loads a configuration seeing only `env` (names the manifest declares);
/// HOST variables get the dummy secret.
fn load(
    json: &str,
    env: &BTreeMap<String, Option<String>>,
) -> Result<callback_guard::core::policy::Policy, callback_guard::config::ConfigError> {
    callback_guard::config::load(json.as_bytes(), &|name| {
        env.get(name)
            .map(|v| v.clone().unwrap_or_else(|| DUMMY_SECRET.to_string()))
    })
}

/// The wasm filter configs an EnvoyFilter adds (EXTENSION_CONFIG values).
fn extension_configs(doc: &Value) -> Vec<Value> {
    patches(doc, "EXTENSION_CONFIG")
        .into_iter()
        .map(|p| p["patch"]["value"].clone())
        .collect()
}

fn patches(doc: &Value, apply_to: &str) -> Vec<Value> {
    doc["spec"]["configPatches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["applyTo"] == apply_to)
        .cloned()
        .collect()
}

/// An EXTENSION_CONFIG's configuration JSON and the env its VM sees.
fn envoy_filter_policy(ext: &Value) -> (String, BTreeMap<String, Option<String>>) {
    let config = &ext["typed_config"]["config"];
    let configuration = &config["configuration"];
    assert_eq!(
        configuration["@type"], STRING_VALUE_TYPE,
        "the filter reads JSON from a StringValue"
    );
    let env_vars = &config["vm_config"]["environment_variables"];
    let mut env: BTreeMap<String, Option<String>> = env_vars["host_env_keys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| (k.as_str().unwrap().to_string(), None))
        .collect();
    for (k, v) in env_vars["key_values"].as_object().into_iter().flatten() {
        env.insert(k.clone(), Some(v.as_str().unwrap().to_string()));
    }
    (configuration["value"].as_str().unwrap().to_string(), env)
}

#[test]
fn every_plugin_configuration_loads_with_the_filters_parser() {
    let mut checked = 0;
    for doc in of_kind("WasmPlugin") {
        let env = wasmplugin_env(&doc.value);
        let policy = load(&plugin_config_json(&doc.value), &env)
            .unwrap_or_else(|e| panic!("{}: spec.pluginConfig.{e}", doc.name()));
        assert!(!policy.channels.is_empty(), "{}: no channels", doc.name());
        checked += 1;
    }
    for doc in of_kind("EnvoyFilter") {
        for ext in extension_configs(&doc.value) {
            let (json, env) = envoy_filter_policy(&ext);
            load(&json, &env).unwrap_or_else(|e| panic!("{}: configuration: {e}", doc.name()));
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} configurations checked");
}

#[test]
fn a_secret_the_manifest_does_not_give_the_vm_is_refused() {
    // Drop one declared env var: the filter cannot see it and refuses the
    // configuration, naming the field -- the check above is not vacuous.
    let doc = of_kind("WasmPlugin").remove(0);
    let mut env = wasmplugin_env(&doc.value);
    let dropped = env.keys().next().unwrap().clone();
    env.remove(&dropped);
    let err = load(&plugin_config_json(&doc.value), &env).unwrap_err();
    assert!(err.path.contains(".signature.secrets["), "{err}");
    assert!(err.reason.contains(&dropped), "{err}");
}

#[test]
fn wasmplugin_and_envoyfilter_carry_the_same_policy() {
    let envoy_filters = of_kind("EnvoyFilter");
    for plugin in of_kind("WasmPlugin") {
        let ef = envoy_filters
            .iter()
            .find(|d| d.deployment() == plugin.deployment())
            .unwrap_or_else(|| panic!("{}: no EnvoyFilter for its deployment", plugin.name()));
        let exts = extension_configs(&ef.value);
        assert_eq!(exts.len(), 1, "{}", ef.name());
        let (json, env) = envoy_filter_policy(&exts[0]);
        let theirs: Value = serde_json::from_str(&json).unwrap();
        // The WasmPlugin cannot let the filter hold headers: stream mode.
        // The EnvoyFilter sets the flag and holds them (the default).
        let mut ours = plugin.value["spec"]["pluginConfig"].clone();
        assert_eq!(
            ours.as_object_mut().unwrap().remove("hold_headers"),
            Some(json!(false)),
            "{}: a WasmPlugin must set hold_headers: false",
            plugin.name()
        );
        assert_eq!(
            theirs.get("hold_headers"),
            None,
            "{}: the EnvoyFilter holds headers",
            ef.name()
        );
        assert_eq!(
            ours,
            theirs,
            "{} and {} must carry the same policy",
            plugin.name(),
            ef.name()
        );
        assert_eq!(
            wasmplugin_env(&plugin.value).keys().collect::<Vec<_>>(),
            env.keys().collect::<Vec<_>>(),
            "{} and {}: same env vars",
            plugin.name(),
            ef.name()
        );
        let spec = &plugin.value["spec"];
        let config = &exts[0]["typed_config"]["config"];
        assert_eq!(config["root_id"], spec["pluginName"], "{}", ef.name());
        assert_eq!(
            config["vm_config"]["code"]["remote"]["http_uri"]["uri"],
            spec["url"],
            "{}: same image",
            ef.name()
        );
        // The same workloads.
        let selector = &ef.value["spec"]["workloadSelector"]["labels"];
        if let Some(labels) = spec["selector"]["matchLabels"].as_object() {
            assert_eq!(&Value::Object(labels.clone()), selector, "{}", ef.name());
        } else {
            let gateway = spec["targetRefs"][0]["name"].as_str().unwrap();
            assert_eq!(
                selector["gateway.networking.k8s.io/gateway-name"],
                gateway,
                "{}",
                ef.name()
            );
        }
    }
}

#[test]
fn envoyfilters_set_what_the_wasmplugin_api_cannot() {
    for doc in of_kind("EnvoyFilter") {
        let exts = extension_configs(&doc.value);
        let filters = patches(&doc.value, "HTTP_FILTER");
        assert_eq!((exts.len(), filters.len()), (1, 1), "{}", doc.name());
        let ext = &exts[0];
        let config = &ext["typed_config"]["config"];
        assert_eq!(ext["typed_config"]["@type"], WASM_TYPE, "{}", doc.name());
        assert_eq!(
            config["allow_on_headers_stop_iteration"],
            true,
            "{}",
            doc.name()
        );
        assert_eq!(config["failure_policy"], "FAIL_RELOAD", "{}", doc.name());
        let remote = &config["vm_config"]["code"]["remote"]["http_uri"];
        assert!(
            remote["uri"].as_str().unwrap().starts_with("oci://"),
            "{}: pilot-agent pulls oci:// modules",
            doc.name()
        );
        assert!(remote["cluster"].is_string() && remote["timeout"].is_string());
        // The HTTP filter reads that extension config over ECDS, by name,
        // where a WasmPlugin with phase AUTHN would sit.
        let filter = &filters[0];
        assert_eq!(filter["patch"]["operation"], "ADD", "{}", doc.name());
        assert_eq!(filter["patch"]["filterClass"], "AUTHN", "{}", doc.name());
        let value = &filter["patch"]["value"];
        assert_eq!(value["name"], ext["name"], "{}", doc.name());
        assert_eq!(
            value["config_discovery"]["type_urls"],
            json!([WASM_TYPE]),
            "{}",
            doc.name()
        );
        assert_eq!(
            filter["match"]["context"],
            patches(&doc.value, "EXTENSION_CONFIG")[0]["match"]["context"]
        );
    }
}

// ------------------------------------------------------------ secrets

/// The istio-proxy container's env in a Deployment (patch) document.
fn proxy_container_env(deployment: &Value) -> Vec<Value> {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == "istio-proxy")
        .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Deployments (patches) in a directory, including the `deployment` patch
/// of a gateway-options ConfigMap.
fn deployments_in(dir: &Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for doc in raw_documents(dir) {
        match doc.kind() {
            "Deployment" => out.push((doc.name(), doc.value.clone())),
            "ConfigMap" => {
                if let Some(patch) = doc.value["data"]["deployment"].as_str() {
                    let mut docs = yaml_documents(patch);
                    assert_eq!(docs.len(), 1, "{}", doc.name());
                    out.push((format!("{} data.deployment", doc.name()), docs.remove(0)));
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn every_host_env_var_comes_from_a_kubernetes_secret_on_the_proxy() {
    for plugin in of_kind("WasmPlugin") {
        let needed: BTreeSet<String> = wasmplugin_env(&plugin.value)
            .into_iter()
            .filter(|(_, inline)| inline.is_none())
            .map(|(k, _)| k)
            .collect();
        assert!(
            !needed.is_empty(),
            "{}: secrets should come from HOST env",
            plugin.name()
        );
        let deployments = deployments_in(&plugin.base_dir());
        assert!(
            !deployments.is_empty(),
            "{}: nothing sets the proxy env",
            plugin.name()
        );
        for (name, deployment) in deployments {
            let env = proxy_container_env(&deployment);
            for var in &needed {
                let entry = env
                    .iter()
                    .find(|e| e["name"] == var.as_str())
                    .unwrap_or_else(|| panic!("{name}: istio-proxy lacks env {var}"));
                assert!(entry.get("value").is_none(), "{name}: {var} is inline");
                assert!(
                    entry["valueFrom"]["secretKeyRef"]["name"].is_string(),
                    "{name}: {var} must come from a Secret"
                );
            }
            // The stats the filter exports must survive Istio's matcher.
            let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
            let proxy_config =
                yaml_documents(annotations["proxy.istio.io/config"].as_str().unwrap());
            assert!(
                stats_inclusion(&proxy_config[0])
                    .iter()
                    .any(|p| p == "wasmcustom.callback_"),
                "{name}: proxyStatsMatcher must include wasmcustom.callback_"
            );
        }
    }
}

// ------------------------------------------------------ Envoy validation

fn work_dir(name: &str) -> PathBuf {
    let dir = repo_root()
        .join("target/e2e")
        .join(format!("istio-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `envoy --mode validate` with the given environment (the VM's HOST vars)
/// and extra command-line arguments.
fn envoy_validate(
    config: &Value,
    name: &str,
    env: &[(String, String)],
    extra: &[&str],
) -> (bool, String) {
    let path = work_dir(name).join("envoy.json");
    std::fs::write(&path, serde_json::to_string_pretty(config).unwrap()).unwrap();
    let (ok, text) = Envoy::validate_with(&path, env, extra);
    (ok && text.contains("OK"), text)
}

/// What pilot-agent does to an ECDS wasm config before Envoy sees it: the
/// remote (oci://) module becomes a local file -- here the built .wasm.
fn as_pulled_by_the_agent(ext: &Value) -> Value {
    let mut tc = ext["typed_config"].clone();
    tc["config"]["vm_config"]["code"] = json!({"local": {"filename": wasm_path()}});
    tc
}

fn router() -> Value {
    json!({"name": "envoy.filters.http.router",
           "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
}

fn listener(name: &str, filters: Vec<Value>, cluster: &str, hcm_extra: Value) -> Value {
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": name,
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "10s"}}]}]},
        "http_filters": filters
    });
    if let (Some(h), Some(extra)) = (hcm.as_object_mut(), hcm_extra.as_object()) {
        h.extend(extra.clone());
    }
    json!({
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "per_connection_buffer_limit_bytes": 1_048_576,
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": hcm}]}]
    })
}

fn static_cluster(name: &str, port: u16, http2: bool) -> Value {
    let mut c = json!({
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}
    });
    if http2 {
        c["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}});
    }
    c
}

/// A bootstrap holding what an EnvoyFilter adds, the way the proxy gets
/// it: listener `ecds` has the HTTP_FILTER patch exactly as written
/// (config_discovery over ADS, as istiod serves it); listener `inline` has
/// the EXTENSION_CONFIG the agent would deliver (module pulled to a local
/// file), so Envoy loads the .wasm and runs its configuration.
fn envoy_filter_bootstrap(doc: &Value) -> Value {
    let ext = &extension_configs(doc)[0];
    let http_filter = patches(doc, "HTTP_FILTER")[0]["patch"]["value"].clone();
    let inline = json!({"name": ext["name"], "typed_config": as_pulled_by_the_agent(ext)});
    json!({
        "node": {"id": "sidecar~127.0.0.1~webhook-receiver.webhooks~webhooks.svc.cluster.local",
                 "cluster": "webhook-receiver.webhooks"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {"ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]}},
        "static_resources": {
            "listeners": [
                listener("inline", vec![inline, router()], "upstream", json!({})),
                listener("ecds", vec![http_filter, router()], "upstream", json!({})),
            ],
            "clusters": [static_cluster("xds-grpc", 15010, true), static_cluster("upstream", 8080, false)]
        }
    })
}

fn host_env(ext: &Value) -> Vec<(String, String)> {
    envoy_filter_policy(ext)
        .1
        .into_iter()
        .filter(|(_, inline)| inline.is_none())
        .map(|(k, _)| (k, DUMMY_SECRET.to_string()))
        .collect()
}

#[test]
fn every_envoyfilter_validates_in_envoy() {
    for doc in of_kind("EnvoyFilter") {
        let ext = &extension_configs(&doc.value)[0];
        let bootstrap = envoy_filter_bootstrap(&doc.value);
        let (ok, out) = envoy_validate(&bootstrap, "envoyfilter", &host_env(ext), &[]);
        assert!(ok, "{} does not validate in Envoy:\n{out}", doc.name());
    }
}

#[test]
fn envoy_validation_catches_a_broken_envoyfilter() {
    let doc = of_kind("EnvoyFilter").remove(0);
    let ext = &extension_configs(&doc.value)[0];
    // A misspelt policy key: Envoy loads the .wasm, which refuses it.
    let mut broken = doc.value.clone();
    let value = broken["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]
        ["configuration"]["value"]
        .as_str()
        .unwrap()
        .replacen("\"window_s\"", "\"window\"", 1);
    broken["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]["configuration"]
        ["value"] = json!(value);
    let (ok, out) = envoy_validate(
        &envoy_filter_bootstrap(&broken),
        "broken-policy",
        &host_env(ext),
        &[],
    );
    assert!(!ok, "a misspelt policy validated:\n{out}");
    assert!(out.contains("unknown field `window`"), "{out}");
    // The secrets missing from the proxy's environment: refused too.
    let (ok, out) = envoy_validate(&envoy_filter_bootstrap(&doc.value), "no-env", &[], &[]);
    assert!(!ok, "a configuration without its secrets validated:\n{out}");
    assert!(out.contains("is not set"), "{out}");
}

// ------------------------------------------------------------ telemetry

/// `proxyStatsMatcher.inclusionPrefixes` of a ProxyConfig.
fn stats_inclusion(proxy_config: &Value) -> Vec<String> {
    proxy_config["proxyStatsMatcher"]["inclusionPrefixes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

/// `stats_config` of Istio's bootstrap template (istio/istio
/// tools/packaging/common/envoy_bootstrap.json): its tag extractors, no
/// default tags, and the inclusion list with the ProxyConfig's prefixes and
/// `extraStatTags` added the way the template adds them.
fn istio_stats_config(inclusion_prefixes: &[String], extra_stat_tags: &[&str]) -> Value {
    let mut tags = vec![
        json!({"tag_name": "cluster_name", "regex": "^cluster\\.((.+?(\\..+?\\.svc\\.cluster\\.local)?)\\.)"}),
        json!({"tag_name": "tcp_prefix", "regex": "^tcp\\.((.*?)\\.)\\w+?$"}),
        json!({"tag_name": "response_code", "regex": "_rq(_(\\d{3}))$"}),
        json!({"tag_name": "response_code_class", "regex": "_rq(_(\\dxx))$"}),
        json!({"tag_name": "http_conn_manager_listener_prefix", "regex": "^listener(?=\\.).*?\\.http\\.(((?:[_.[:digit:]]*|[_\\[\\]aAbBcCdDeEfF[:digit:]]*))\\.)"}),
        json!({"tag_name": "http_conn_manager_prefix", "regex": "^http\\.(((?:[_.[:digit:]]*|[_\\[\\]aAbBcCdDeEfF[:digit:]]*))\\.)"}),
        json!({"tag_name": "listener_address", "regex": "^listener\\.(((?:[_.[:digit:]]*|[_\\[\\]aAbBcCdDeEfF[:digit:]]*))\\.)"}),
        json!({"tag_name": "mongo_prefix", "regex": "^mongo\\.(.+?)\\.(collection|cmd|cx_|op_|delays_|decoding_)(.*?)$"}),
    ];
    for tag in extra_stat_tags {
        tags.push(json!({"regex": format!("({tag}=\\.=(.*?);\\.;)"), "tag_name": tag}));
    }
    tags.extend([
        json!({"regex": "(cache\\.(.+?)\\.)", "tag_name": "cache"}),
        json!({"regex": "(component\\.(.+?)\\.)", "tag_name": "component"}),
        json!({"regex": "(tag\\.(.+?);\\.)", "tag_name": "tag"}),
        json!({"regex": "(wasm_filter\\.(.+?)\\.)", "tag_name": "wasm_filter"}),
        json!({"tag_name": "authz_enforce_result", "regex": "rbac(\\.(allowed|denied))"}),
        json!({"tag_name": "authz_dry_run_action", "regex": "(\\.istio_dry_run_(allow|deny)_)"}),
        json!({"tag_name": "authz_dry_run_result", "regex": "(\\.shadow_(allowed|denied))"}),
    ]);
    let mut patterns = vec![json!({"prefix": "reporter="})];
    patterns.extend(inclusion_prefixes.iter().map(|p| json!({"prefix": p})));
    patterns.extend([json!({"prefix": "component"}), json!({"prefix": "istio"})]);
    json!({
        "use_all_default_tags": false,
        "stats_tags": tags,
        "stats_matcher": {"inclusion_list": {"patterns": patterns}}
    })
}

/// `custom_bootstrap.json` of the telemetry ConfigMap.
fn custom_bootstrap() -> Value {
    let doc = of_kind("ConfigMap")
        .into_iter()
        .find(|d| d.value["metadata"]["name"] == "callback-guard-bootstrap")
        .expect("the callback-guard-bootstrap ConfigMap");
    serde_json::from_str(doc.value["data"]["custom_bootstrap.json"].as_str().unwrap()).unwrap()
}

/// The sidecar EnvoyFilter's filter as the proxy runs it, with its HOST
/// secrets given inline (the harness starts Envoy with a fixed environment).
fn sidecar_filter(allow_stop_iteration: bool) -> Value {
    let doc = of_kind("EnvoyFilter")
        .into_iter()
        .find(|d| d.value["spec"]["workloadSelector"]["labels"]["app"] == "webhook-receiver")
        .unwrap();
    let ext = &extension_configs(&doc.value)[0];
    let mut tc = as_pulled_by_the_agent(ext);
    let keys: BTreeMap<String, String> = host_env(ext).into_iter().collect();
    tc["config"]["vm_config"]["environment_variables"] = json!({"key_values": keys});
    if !allow_stop_iteration {
        tc["config"]
            .as_object_mut()
            .unwrap()
            .remove("allow_on_headers_stop_iteration");
    }
    json!({"name": ext["name"], "typed_config": tc})
}

/// One listener with `filter` in front of `upstream`, Istio's stats config.
fn istio_like_bootstrap(filter: Value, upstream: u16, stats: Value, hcm_extra: Value) -> Value {
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "stats_config": stats,
        "static_resources": {
            "listeners": [listener("inbound", vec![filter, router()], "upstream", hcm_extra)],
            "clusters": [static_cluster("upstream", upstream, false)]
        }
    })
}

/// Appends the repeated fields of `overlay.stats_config` (what proto merge,
/// and so Istio's bootstrap override, does with them).
fn merge_stats_tags(bootstrap: &mut Value, overlay: &Value) {
    let extra = overlay["stats_config"]["stats_tags"]
        .as_array()
        .unwrap()
        .clone();
    bootstrap["stats_config"]["stats_tags"]
        .as_array_mut()
        .unwrap()
        .extend(extra);
}

fn callback_samples(envoy: &Envoy) -> Vec<support::envoy::Sample> {
    parse_prometheus(&envoy.admin_get("/stats/prometheus"))
        .into_iter()
        .filter(|s| s.name.starts_with("callback_"))
        .collect()
}

#[test]
fn telemetry_snippet_gives_labelled_callback_metrics_under_istio() {
    let overlay = custom_bootstrap();
    // The ConfigMap carries one tag per label the filter encodes, each
    // cutting the label *with* its leading underscore, plus `wasm_plugin`
    // for Envoy's VM reload stats (checked in tests/packaging.rs).
    let tags: Vec<&Value> = overlay["stats_config"]["stats_tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["tag_name"] != "wasm_plugin")
        .collect();
    let names: BTreeSet<&str> = tags
        .iter()
        .map(|t| t["tag_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, LABELS.iter().copied().collect::<BTreeSet<_>>());
    for t in tags {
        let name = t["tag_name"].as_str().unwrap();
        assert_eq!(t["regex"], format!("(_{name}=\\.=(.*?);\\.;)"));
    }
    let prefixes = vec!["wasmcustom.callback_".to_string()];

    // Envoy accepts the override merged the documented way (--config-yaml).
    let up = Upstream::start();
    let bootstrap = istio_like_bootstrap(
        sidecar_filter(true),
        up.port(),
        istio_stats_config(&prefixes, &[]),
        json!({}),
    );
    let overlay_text = overlay.to_string();
    let (ok, out) = envoy_validate(
        &bootstrap,
        "telemetry",
        &[],
        &["--config-yaml", &overlay_text],
    );
    assert!(ok, "{out}");

    // Run it: an unsigned GitHub callback is refused and counted.
    let mut merged = bootstrap.clone();
    merge_stats_tags(&mut merged, &overlay);
    let envoy = Envoy::start_yaml("istio-telemetry", &merged.to_string());
    let resp = Request::post("/callbacks/github")
        .json(r#"{"zen":"hi"}"#)
        .send(envoy.addr());
    assert_eq!(resp.status, 401, "{}", resp.body_str());
    assert_eq!(up.count(), 0);
    let samples = callback_samples(&envoy);
    let want = [
        ("callback_requests_total", vec![("channel", "github")], 1.0),
        (
            "callback_signature_failed_total",
            vec![("channel", "github"), ("reason", "missing")],
            1.0,
        ),
        // A forged callback on a signed channel never reaches the buckets:
        // declared at zero, not counted.
        (
            "callback_admission_total",
            vec![
                ("channel", "github"),
                ("priority", "normal"),
                ("decision", "admitted"),
            ],
            0.0,
        ),
        ("callback_requests_total", vec![("channel", "stripe")], 0.0),
    ];
    for (name, labels, value) in want {
        assert_eq!(
            find_metric(&samples, name, &labels),
            Some(value),
            "{name}{labels:?} in\n{samples:#?}"
        );
    }
    for s in &samples {
        assert!(
            !s.name.ends_with('_') && !s.name.contains("=.="),
            "label left in a metric name: {s:?}"
        );
    }
}

#[test]
fn extra_stat_tags_alone_leave_underscores_in_metric_names() {
    // Why telemetry.yaml does not use ProxyConfig.extraStatTags: Istio's
    // regex for an extra tag has no leading underscore, so the name keeps it.
    let up = Upstream::start();
    let bootstrap = istio_like_bootstrap(
        sidecar_filter(true),
        up.port(),
        istio_stats_config(&["wasmcustom.callback_".to_string()], &LABELS),
        json!({}),
    );
    let envoy = Envoy::start_yaml("istio-extra-stat-tags", &bootstrap.to_string());
    let names: BTreeSet<String> = callback_samples(&envoy)
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(names.contains("callback_requests_total_"), "{names:?}");
    assert!(names.contains("callback_rejected_total__"), "{names:?}");
}

// ------------------------------- the WasmPlugin path: stream mode, no flag

/// What istiod makes of the sidecar WasmPlugin: the same wasm filter as
/// the EnvoyFilter's but without `allow_on_headers_stop_iteration`, and the
/// WasmPlugin's `pluginConfig` (as JSON) for its configuration.
fn sidecar_wasmplugin_filter() -> (Value, Value) {
    let plugin = of_kind("WasmPlugin")
        .into_iter()
        .find(|d| d.value["spec"]["selector"]["matchLabels"]["app"] == "webhook-receiver")
        .unwrap();
    let mut filter = sidecar_filter(false);
    filter["typed_config"]["config"]["configuration"]["value"] =
        json!(plugin_config_json(&plugin.value));
    (filter, plugin.value["spec"]["pluginConfig"].clone())
}

fn github_callback(body: &[u8], delivery: &str) -> Request {
    Request::post("/callbacks/github")
        .header(
            "x-hub-signature-256",
            &support::sign::github(DUMMY_SECRET, body),
        )
        .header("x-github-delivery", delivery)
        .json("")
        .body(body.to_vec())
}

#[test]
fn a_plain_wasmplugin_works_in_stream_mode() {
    // A short stream idle timeout stands in for Envoy's 5-minute default,
    // so a stall shows as `504 stream timeout` within seconds.
    let idle = json!({"stream_idle_timeout": "2s"});
    let stats = istio_stats_config(&[], &[]);
    let up = Upstream::start();
    let (filter, policy) = sidecar_wasmplugin_filter();
    assert_eq!(policy["hold_headers"], false);
    assert!(
        filter["typed_config"]["config"]
            .get("allow_on_headers_stop_iteration")
            .is_none()
    );

    let plain = Envoy::start_yaml(
        "istio-wasmplugin-stream",
        &istio_like_bootstrap(filter.clone(), up.port(), stats.clone(), idle.clone()).to_string(),
    );
    // A signed GitHub callback is verified and forwarded whole; the verdict
    // reaches the caller's response, not the upstream request.
    let body = br#"{"zen":"Design for failure.","hook_id":1}"#;
    let resp = github_callback(body, "d-1").send(plain.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert_eq!(resp.header("x-verified-signature"), Some("github"));
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, body);
    assert_eq!(got[0].header("x-verified-signature"), None);
    // An unsigned one is refused and never reaches the service complete.
    let resp = Request::post("/callbacks/github")
        .json(r#"{"zen":"hi"}"#)
        .send(plain.addr());
    assert_eq!(resp.status, 401, "{}", resp.body_str());
    // A signed Stripe event is masked and forwarded as valid, chunked JSON.
    let event = br#"{"id":"evt_1","type":"charge.succeeded","data":{"object":{"billing_details":{"email":"jane@example.com","phone":"+14155550123"}}}}"#;
    let ts = support::sign::now();
    let resp = Request::post("/callbacks/stripe")
        .header(
            "stripe-signature",
            &support::sign::stripe(DUMMY_SECRET, ts, event),
        )
        .json("")
        .body(event.to_vec())
        .send(plain.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert_eq!(resp.header("x-verified-signature"), Some("stripe"));
    // A body-less POST on a signed channel is verified first (refused
    // unsigned, never acknowledged as empty); a body-less GET is no
    // callback and passes, as does traffic outside the channels.
    assert_eq!(
        Request::post("/callbacks/stripe").send(plain.addr()).status,
        401
    );
    assert_eq!(
        Request::get("/callbacks/stripe").send(plain.addr()).status,
        200
    );
    let outside = Request::post("/healthz").body("x").send(plain.addr());
    assert_eq!(outside.status, 200);
    let got = up.received();
    assert_eq!(got.len(), 4, "{got:?}");
    let stripe = &got[1];
    assert_eq!(stripe.path, "/callbacks/stripe");
    assert!(stripe.chunked, "a masked body goes out chunked: {stripe:?}");
    let masked: Value = serde_json::from_slice(&stripe.body).unwrap();
    let details = &masked["data"]["object"]["billing_details"];
    assert_ne!(details["email"], "jane@example.com");
    assert_ne!(details["phone"], "+14155550123");
    assert!(!stripe.body_str().contains("jane@example.com"));
    assert_eq!(got[2].method, "GET");
    assert_eq!(got[3].path, "/healthz");
    drop(plain);
    up.clear();

    // The same policy holding headers (the default) on the same proxy: a
    // callback with a body stalls, never forwarded, never answered by the
    // filter -- why the WasmPlugin sets hold_headers: false.
    let mut holding = filter;
    let mut held_policy = policy;
    held_policy.as_object_mut().unwrap().remove("hold_headers");
    holding["typed_config"]["config"]["configuration"]["value"] = json!(held_policy.to_string());
    let stalling = Envoy::start_yaml(
        "istio-wasmplugin-holding",
        &istio_like_bootstrap(holding, up.port(), stats.clone(), idle.clone()).to_string(),
    );
    let started = std::time::Instant::now();
    let stalled = github_callback(body, "d-2").send(stalling.addr());
    assert_eq!(stalled.status, 504, "{}", stalled.body_str());
    assert_eq!(stalled.body_str(), "stream timeout");
    // Envoy arms the timer from its loop's cached clock: it may fire a few
    // ms before 2 s of ours have passed.
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(1900),
        "answered after {waited:?}"
    );
    assert_eq!(up.count(), 0);
    drop(stalling);

    // The EnvoyFilter (flag set, headers held): the verdict reaches the
    // upstream request too.
    let flagged = Envoy::start_yaml(
        "istio-stop-iteration",
        &istio_like_bootstrap(sidecar_filter(true), up.port(), stats, idle).to_string(),
    );
    let resp = github_callback(body, "d-3").send(flagged.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("x-verified-signature"), Some("github"));
    let answered = Request::post("/callbacks/github")
        .json(r#"{"zen":"hi"}"#)
        .send(flagged.addr());
    assert_eq!(answered.status, 401, "{}", answered.body_str());
}

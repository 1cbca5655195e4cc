#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What ships for Kubernetes around the filter (issue #14, "Packaging"):
//!
//! - the overlays under `istio/overlays`, rendered as `kubectl apply -k`
//!   would (`support/kustomize.rs`): each applies exactly one filter plus
//!   its deployment's shared objects; namespace, labels, image and host are
//!   set in the overlay's kustomization, and editing them there changes
//!   every object that carries them;
//! - the resilience and security objects (DestinationRule,
//!   PeerAuthentication, AuthorizationPolicy) and the Gateway and HTTPRoute
//!   (with its timeouts) match the shapes of Istio's and the Gateway API's
//!   reference for every field used (unknown fields refused), and agree with the policies and
//!   routes they protect;
//! - the alert rules and the Grafana dashboard reference only metrics and
//!   labels that a running Envoy with the filter, the shipped stats tags and
//!   the shipped stats matcher really exports under `/stats/prometheus`.
//!
//! The filter objects themselves (CRD, the filter's parser, `envoy --mode
//! validate`) are checked per overlay by tests/istio_manifests.rs.

#[path = "support/kustomize.rs"]
mod kustomize;
mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use support::envoy::{parse_prometheus, wasm_path};
use support::{Envoy, Request, Upstream, repo_root};

const DUMMY_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const FILTER_KINDS: [&str; 2] = ["WasmPlugin", "EnvoyFilter"];

fn istio(rel: &str) -> PathBuf {
    repo_root().join("istio").join(rel)
}

fn overlay_name(dir: &Path) -> String {
    dir.file_name().unwrap().to_string_lossy().to_string()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn yaml_file(rel: &str) -> Vec<Value> {
    kustomize::yaml_documents(&std::fs::read_to_string(istio(rel)).unwrap())
}

// ----------------------------------------------------------- the overlays

#[test]
fn there_is_one_overlay_per_deployment() {
    let names: Vec<String> = kustomize::overlays(&repo_root())
        .iter()
        .map(|d| overlay_name(d))
        .collect();
    assert_eq!(
        names,
        [
            "gateway",
            "gateway-wasmplugin",
            "sidecar-envoyfilter",
            "sidecar-wasmplugin"
        ]
    );
}

#[test]
fn each_overlay_applies_exactly_one_filter_and_what_its_deployment_needs() {
    for dir in kustomize::overlays(&repo_root()) {
        let name = overlay_name(&dir);
        let k = kustomize::kustomization(&dir);
        let text = std::fs::read_to_string(dir.join(kustomize::KUSTOMIZATION)).unwrap();
        assert!(
            text.contains("GATEWAY OR SIDECAR, NOT BOTH"),
            "{name}: the kustomization must say gateway or sidecar, not both (and why)"
        );
        let docs = kustomize::build(&dir);
        let filters: Vec<&Value> = docs
            .iter()
            .filter(|d| FILTER_KINDS.contains(&d["kind"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(filters.len(), 1, "{name}: {filters:#?}");
        let want_kind = if name.ends_with("wasmplugin") {
            "WasmPlugin"
        } else {
            "EnvoyFilter"
        };
        assert_eq!(filters[0]["kind"], want_kind, "{name}");
        // The deployment's shared objects come with it.
        assert!(
            docs.iter()
                .any(|d| d["kind"] == "ConfigMap"
                    && d["metadata"]["name"] == "callback-guard-bootstrap"),
            "{name}: no telemetry ConfigMap"
        );
        for kind in [
            "DestinationRule",
            "PeerAuthentication",
            "AuthorizationPolicy",
        ] {
            assert!(!of_kind(&docs, kind).is_empty(), "{name}: no {kind}");
        }
        let gateway = name.starts_with("gateway");
        assert_eq!(!of_kind(&docs, "Gateway").is_empty(), gateway, "{name}");
        // Namespace and labels from the one kustomization, on every object.
        let ns = k["namespace"].as_str().expect("the overlay sets namespace");
        let pairs = k["labels"][0]["pairs"].as_object().unwrap();
        for d in &docs {
            assert_eq!(
                d["metadata"]["namespace"],
                ns,
                "{name}: {}",
                kustomize::id(d)
            );
            for (key, value) in pairs {
                assert_eq!(
                    &d["metadata"]["labels"][key],
                    value,
                    "{name}: {} lacks label {key}",
                    kustomize::id(d)
                );
            }
        }
        // Nothing that is not an Istio / Kubernetes object of a known kind.
        for d in &docs {
            let kind = d["kind"].as_str().unwrap();
            assert!(
                [
                    "ConfigMap",
                    "WasmPlugin",
                    "EnvoyFilter",
                    "DestinationRule",
                    "PeerAuthentication",
                    "AuthorizationPolicy",
                    "Gateway",
                    "HTTPRoute"
                ]
                .contains(&kind),
                "{name}: unexpected {kind}"
            );
        }
    }
}

/// The filter's image URL.
fn image(filter: &Value) -> String {
    let v = if filter["kind"] == "WasmPlugin" {
        &filter["spec"]["url"]
    } else {
        &filter["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]["vm_config"]
            ["code"]["remote"]["http_uri"]["uri"]
    };
    v.as_str().unwrap().to_string()
}

/// The filter's policy (WasmPlugin pluginConfig or the EnvoyFilter's JSON).
fn policy(filter: &Value) -> Value {
    if filter["kind"] == "WasmPlugin" {
        filter["spec"]["pluginConfig"].clone()
    } else {
        let s = filter["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]
            ["configuration"]["value"]
            .as_str()
            .unwrap();
        serde_json::from_str(s).unwrap()
    }
}

fn policy_hosts(filter: &Value) -> BTreeSet<String> {
    policy(filter)["channels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["match"]["hosts"].as_array().cloned().unwrap_or_default())
        .map(|h| h.as_str().unwrap().to_string())
        .collect()
}

/// Hosts outside the filter's policy: Gateway listeners, HTTPRoutes.
fn route_hosts(docs: &[Value]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for g in of_kind(docs, "Gateway") {
        for l in g["spec"]["listeners"].as_array().unwrap() {
            out.insert(l["hostname"].as_str().unwrap().to_string());
        }
    }
    for r in of_kind(docs, "HTTPRoute") {
        for h in r["spec"]["hostnames"].as_array().unwrap() {
            out.insert(h.as_str().unwrap().to_string());
        }
    }
    out
}

fn the_filter(docs: &[Value]) -> Value {
    docs.iter()
        .find(|d| FILTER_KINDS.contains(&d["kind"].as_str().unwrap_or("")))
        .unwrap()
        .clone()
}

/// Values the kustomization's patches write at paths ending like `tail`.
fn patched_values(k: &Value, is: impl Fn(&str) -> bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in k["patches"].as_array().into_iter().flatten() {
        for ops in kustomize::yaml_documents(p["patch"].as_str().unwrap()) {
            for op in ops.as_array().unwrap() {
                if is(op["path"].as_str().unwrap()) {
                    out.insert(op["value"].as_str().unwrap().to_string());
                }
            }
        }
    }
    out
}

fn is_image_path(path: &str) -> bool {
    path == "/spec/url" || path.ends_with("/http_uri/uri")
}

fn is_host_path(path: &str) -> bool {
    path.ends_with("/hostname") || path.contains("/hostnames/") || path.contains("/match/hosts/")
}

#[test]
fn image_and_host_come_from_the_overlay() {
    for dir in kustomize::overlays(&repo_root()) {
        let name = overlay_name(&dir);
        let k = kustomize::kustomization(&dir);
        let docs = kustomize::build(&dir);
        let filter = the_filter(&docs);
        // The image: set by the overlay, pulled with oci://.
        let images = patched_values(&k, is_image_path);
        assert_eq!(images.len(), 1, "{name}: the overlay sets the image once");
        let img = images.into_iter().next().unwrap();
        assert!(img.starts_with("oci://"), "{name}: {img}");
        assert_eq!(image(&filter), img, "{name}");
        // The host: every host anywhere agrees with the overlay's.
        let mut all = route_hosts(&docs);
        all.extend(policy_hosts(&filter));
        assert_eq!(all.len(), 1, "{name}: hosts disagree: {all:?}");
        let hosts = patched_values(&k, is_host_path);
        if !hosts.is_empty() {
            assert_eq!(hosts, all, "{name}");
        }
    }
}

#[test]
fn editing_the_overlay_alone_moves_namespace_labels_image_and_host() {
    let (ns, img, host) = (
        "payments-hooks",
        "oci://registry.internal/callback-guard@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "callbacks.pay.example",
    );
    for dir in kustomize::overlays(&repo_root()) {
        let name = overlay_name(&dir);
        let mut k = kustomize::kustomization(&dir);
        k["namespace"] = json!(ns);
        k["labels"][0]["pairs"]["team"] = json!("payments");
        for p in k["patches"].as_array_mut().unwrap() {
            let mut ops = kustomize::yaml_documents(p["patch"].as_str().unwrap()).remove(0);
            for op in ops.as_array_mut().unwrap() {
                let path = op["path"].as_str().unwrap().to_string();
                if is_image_path(&path) {
                    op["value"] = json!(img);
                } else if is_host_path(&path) {
                    op["value"] = json!(host);
                }
            }
            p["patch"] = json!(serde_json::to_string(&ops).unwrap());
        }
        let docs = kustomize::build_with(&dir, &k);
        for d in &docs {
            assert_eq!(
                d["metadata"]["namespace"],
                ns,
                "{name}: {}",
                kustomize::id(d)
            );
            assert_eq!(d["metadata"]["labels"]["team"], "payments", "{name}");
        }
        let filter = the_filter(&docs);
        assert_eq!(image(&filter), img, "{name}");
        for h in route_hosts(&docs) {
            assert_eq!(h, host, "{name}");
        }
        // A WasmPlugin's policy follows too; an EnvoyFilter's is a JSON
        // string kustomize cannot patch inside (documented in the overlay).
        if filter["kind"] == "WasmPlugin" {
            for h in policy_hosts(&filter) {
                assert_eq!(h, host, "{name}");
            }
        }
    }
}

#[test]
fn the_renderer_refuses_what_kustomize_would() {
    let dir = istio("overlays/gateway");
    let k = kustomize::kustomization(&dir);
    type Break = fn(&mut Value);
    let cases: [(&str, Break, &str); 4] = [
        (
            "an unsupported feature",
            |k| k["images"] = json!([{"name": "x", "newTag": "y"}]),
            "outside the kustomize subset",
        ),
        (
            "a patch on a path that does not exist",
            |k| {
                k["patches"][0]["patch"] =
                    json!("- op: replace\n  path: /spec/nope/uri\n  value: x\n")
            },
            "does not exist",
        ),
        (
            "a patch that matches nothing",
            |k| k["patches"][0]["target"]["name"] = json!("callback-gaurd"),
            "matches nothing",
        ),
        (
            "a file outside the kustomization",
            |k| k["resources"] = json!(["../../gateway/gateway.yaml"]),
            "outside the kustomization's directory",
        ),
    ];
    for (what, break_it, expect) in cases {
        let mut broken = k.clone();
        break_it(&mut broken);
        let err =
            std::panic::catch_unwind(|| kustomize::build_with(&dir, &broken)).expect_err(what);
        let msg = err
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(msg.contains(expect), "{what}: {msg}");
    }
}

// ------------------------------------------- resilience and security shapes

const DURATION: &str = "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$";

/// The fields of Istio's DestinationRule (networking.istio.io/v1) that the
/// shipped ones use, with their documented types; anything else is refused.
fn destination_rule_schema() -> Value {
    let d = json!({"type": "string", "pattern": DURATION});
    let int = json!({"type": "integer", "minimum": 0, "maximum": i32::MAX});
    json!({
        "type": "object", "additionalProperties": false,
        "required": ["host"],
        "properties": {
            "host": {"type": "string", "minLength": 1},
            "trafficPolicy": {"type": "object", "additionalProperties": false, "properties": {
                "connectionPool": {"type": "object", "additionalProperties": false, "properties": {
                    "tcp": {"type": "object", "additionalProperties": false, "properties": {
                        "maxConnections": int, "connectTimeout": d,
                        "tcpKeepalive": {"type": "object", "additionalProperties": false, "properties": {
                            "time": d, "interval": d, "probes": int}}}},
                    "http": {"type": "object", "additionalProperties": false, "properties": {
                        "http1MaxPendingRequests": int, "http2MaxRequests": int,
                        "maxRequestsPerConnection": int, "maxRetries": int, "idleTimeout": d}}}},
                "outlierDetection": {"type": "object", "additionalProperties": false, "properties": {
                    "consecutive5xxErrors": int, "consecutiveGatewayErrors": int,
                    "interval": d, "baseEjectionTime": d,
                    "maxEjectionPercent": {"type": "integer", "minimum": 0, "maximum": 100},
                    "minHealthPercent": {"type": "integer", "minimum": 0, "maximum": 100}}}}}
        }
    })
}

fn selector_schema() -> Value {
    json!({"type": "object", "additionalProperties": false, "required": ["matchLabels"],
           "properties": {"matchLabels": {"type": "object", "minProperties": 1,
                                          "additionalProperties": {"type": "string"}}}})
}

/// Istio's PeerAuthentication (security.istio.io/v1), fields used.
fn peer_authentication_schema() -> Value {
    json!({"type": "object", "additionalProperties": false, "required": ["mtls"],
           "properties": {
               "selector": selector_schema(),
               "mtls": {"type": "object", "additionalProperties": false, "required": ["mode"],
                        "properties": {"mode": {"enum": ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]}}}}})
}

/// Istio's AuthorizationPolicy (security.istio.io/v1), fields used.
fn authorization_policy_schema() -> Value {
    let strings =
        json!({"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}});
    json!({"type": "object", "additionalProperties": false, "required": ["action", "rules"],
           "properties": {
               "selector": selector_schema(),
               "action": {"enum": ["ALLOW", "DENY", "AUDIT", "CUSTOM"]},
               "rules": {"type": "array", "minItems": 1, "items": {
                   "type": "object", "additionalProperties": false, "properties": {
                   "from": {"type": "array", "items": {"type": "object", "additionalProperties": false,
                       "properties": {"source": {"type": "object", "additionalProperties": false,
                           "properties": {"principals": strings, "namespaces": strings}}}}},
                   "to": {"type": "array", "items": {"type": "object", "additionalProperties": false,
                       "properties": {"operation": {"type": "object", "additionalProperties": false,
                           "properties": {"ports": strings, "paths": strings, "methods": strings}}}}}}}}}})
}

/// Gateway API HTTPRoute (gateway.networking.k8s.io/v1) rules' timeouts.
fn route_timeouts_schema() -> Value {
    let d = json!({"type": "string", "pattern": "^([0-9]{1,5}(h|m|s|ms)){1,4}$"});
    json!({"type": "object", "additionalProperties": false,
           "properties": {"request": d, "backendRequest": d}})
}

/// `{"type": "object"}` with exactly these properties (unknown ones refused).
fn strict(props: Value, required: Value) -> Value {
    let mut o = json!({"type": "object", "additionalProperties": false, "properties": props});
    // Draft 4 wants a non-empty `required`.
    if required.as_array().is_some_and(|r| !r.is_empty()) {
        o["required"] = required;
    }
    o
}

/// Gateway API Gateway (gateway.networking.k8s.io/v1), fields used.
fn gateway_schema() -> Value {
    let s = json!({"type": "string", "minLength": 1});
    let cert_ref = strict(
        json!({"name": s, "kind": s, "group": {"type": "string"}, "namespace": s}),
        json!(["name"]),
    );
    let tls = strict(
        json!({"mode": {"enum": ["Terminate", "Passthrough"]},
               "certificateRefs": {"type": "array", "items": cert_ref}}),
        json!([]),
    );
    let listener = strict(
        json!({"name": s, "hostname": s, "protocol": s, "tls": tls,
               "port": {"type": "integer", "minimum": 1, "maximum": 65535}}),
        json!(["name", "port", "protocol"]),
    );
    let params = strict(
        json!({"group": {"type": "string"}, "kind": s, "name": s}),
        json!(["group", "kind", "name"]),
    );
    strict(
        json!({"gatewayClassName": s,
               "infrastructure": strict(json!({"parametersRef": params}), json!([])),
               "listeners": {"type": "array", "minItems": 1, "items": listener}}),
        json!(["gatewayClassName", "listeners"]),
    )
}

/// Gateway API HTTPRoute (gateway.networking.k8s.io/v1), fields used.
fn http_route_schema() -> Value {
    let s = json!({"type": "string", "minLength": 1});
    let port = json!({"type": "integer", "minimum": 1, "maximum": 65535});
    let parent = strict(
        json!({"name": s, "namespace": s, "sectionName": s, "group": {"type": "string"},
               "kind": s, "port": port}),
        json!(["name"]),
    );
    let path = strict(
        json!({"type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]}, "value": s}),
        json!([]),
    );
    let header = strict(
        json!({"type": {"enum": ["Exact", "RegularExpression"]}, "name": s, "value": s}),
        json!(["name", "value"]),
    );
    let matches = strict(
        json!({"path": path, "headers": {"type": "array", "items": header}}),
        json!([]),
    );
    let backend = strict(
        json!({"name": s, "port": port, "kind": s, "group": {"type": "string"},
               "namespace": s, "weight": {"type": "integer", "minimum": 0}}),
        json!(["name"]),
    );
    let rule = strict(
        json!({"matches": {"type": "array", "items": matches},
               "timeouts": route_timeouts_schema(),
               "backendRefs": {"type": "array", "items": backend}}),
        json!([]),
    );
    strict(
        json!({"parentRefs": {"type": "array", "minItems": 1, "items": parent},
               "hostnames": {"type": "array", "items": s},
               "rules": {"type": "array", "items": rule}}),
        json!(["parentRefs"]),
    )
}

fn check_schema(schema: &Value, value: &Value, what: &str) -> Vec<String> {
    let v = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(schema)
        .unwrap();
    v.iter_errors(value)
        .map(|e| format!("{what}{}: {e}", e.instance_path()))
        .collect()
}

fn api_version_of(kind: &str) -> &'static str {
    match kind {
        "DestinationRule" => "networking.istio.io/v1",
        "PeerAuthentication" | "AuthorizationPolicy" => "security.istio.io/v1",
        "Gateway" | "HTTPRoute" => "gateway.networking.k8s.io/v1",
        _ => unreachable!(),
    }
}

fn shape_errors(doc: &Value) -> Vec<String> {
    let kind = doc["kind"].as_str().unwrap();
    let what = kustomize::id(doc);
    let schema = match kind {
        "DestinationRule" => destination_rule_schema(),
        "PeerAuthentication" => peer_authentication_schema(),
        "AuthorizationPolicy" => authorization_policy_schema(),
        "Gateway" => gateway_schema(),
        "HTTPRoute" => http_route_schema(),
        _ => return Vec::new(),
    };
    let mut errors = check_schema(&schema, &doc["spec"], &format!("{what} spec"));
    if doc["apiVersion"] != api_version_of(kind) {
        errors.push(format!("{what}: apiVersion {}", doc["apiVersion"]));
    }
    errors
}

fn duration_s(d: &str) -> f64 {
    let (n, unit) = d.split_at(d.find(|c: char| c.is_ascii_alphabetic()).unwrap());
    let n: f64 = n.parse().unwrap();
    n * match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        u => panic!("unit {u}"),
    }
}

#[test]
fn resilience_and_security_objects_match_istios_shapes() {
    let mut checked = BTreeMap::new();
    for dir in kustomize::overlays(&repo_root()) {
        for doc in kustomize::build(&dir) {
            let errors = shape_errors(&doc);
            assert!(
                errors.is_empty(),
                "{}:\n  {}",
                overlay_name(&dir),
                errors.join("\n  ")
            );
            *checked
                .entry(doc["kind"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
    }
    for kind in [
        "DestinationRule",
        "PeerAuthentication",
        "AuthorizationPolicy",
        "Gateway",
        "HTTPRoute",
    ] {
        assert!(checked.get(kind).is_some_and(|n| *n > 0), "{checked:?}");
    }
    // The check is not vacuous: misspelt or mistyped fields are refused.
    let dr = yaml_file("sidecar/resilience.yaml").remove(0);
    type Break = fn(&mut Value);
    let cases: [(&str, Break); 4] = [
        ("a misspelt field", |v| {
            v["spec"]["trafficPolicy"]["outlierDetection"]["consecutive5xxErrorz"] = json!(5)
        }),
        ("a duration without unit", |v| {
            v["spec"]["trafficPolicy"]["connectionPool"]["tcp"]["connectTimeout"] = json!("2")
        }),
        ("a percent over 100", |v| {
            v["spec"]["trafficPolicy"]["outlierDetection"]["maxEjectionPercent"] = json!(150)
        }),
        ("an old apiVersion name", |v| {
            v["apiVersion"] = json!("networking.istio.io/v2")
        }),
    ];
    for (what, break_it) in cases {
        let mut broken = dr.clone();
        break_it(&mut broken);
        assert!(!shape_errors(&broken).is_empty(), "{what} passed");
    }
    let mut pa = yaml_file("sidecar/security.yaml").remove(0);
    pa["spec"]["mtls"]["mode"] = json!("STRICTER");
    assert!(!shape_errors(&pa).is_empty());
    let mut route = yaml_file("gateway/gateway.yaml")
        .into_iter()
        .find(|d| d["kind"] == "HTTPRoute")
        .unwrap();
    route["spec"]["rules"][0]["timeouts"]["request"] = json!("15 seconds");
    assert!(!shape_errors(&route).is_empty());
    let mut gw = yaml_file("gateway/gateway.yaml").remove(0);
    gw["spec"]["listeners"][0]["tls"]["mode"] = json!("terminate");
    assert!(!shape_errors(&gw).is_empty());
}

/// `app` of a selector.
fn app(doc: &Value) -> Option<String> {
    doc["spec"]["selector"]["matchLabels"]["app"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn every_callback_backend_is_resilient_strict_and_reachable_only_the_intended_way() {
    for dir in kustomize::overlays(&repo_root()) {
        let name = overlay_name(&dir);
        let docs = kustomize::build(&dir);
        let ns = docs[0]["metadata"]["namespace"]
            .as_str()
            .unwrap()
            .to_string();
        let filter = the_filter(&docs);
        let policy = policy(&filter);
        // The workloads the callbacks reach: the sidecar's workload, or the
        // gateway's HTTPRoute backends.
        let backends: BTreeSet<String> = if name.starts_with("gateway") {
            of_kind(&docs, "HTTPRoute")
                .iter()
                .flat_map(|r| r["spec"]["rules"].as_array().unwrap().clone())
                .flat_map(|rule| rule["backendRefs"].as_array().unwrap().clone())
                .map(|b| b["name"].as_str().unwrap().to_string())
                .collect()
        } else {
            let labels = filter["spec"]["workloadSelector"]["labels"]["app"]
                .as_str()
                .or(filter["spec"]["selector"]["matchLabels"]["app"].as_str())
                .unwrap();
            [labels.to_string()].into()
        };
        for backend in &backends {
            // A DestinationRule with a connect timeout, limits, ejection.
            let dr = of_kind(&docs, "DestinationRule")
                .into_iter()
                .find(|d| d["spec"]["host"] == backend.as_str())
                .unwrap_or_else(|| panic!("{name}: no DestinationRule for {backend}"));
            let tp = &dr["spec"]["trafficPolicy"];
            let connect = duration_s(
                tp["connectionPool"]["tcp"]["connectTimeout"]
                    .as_str()
                    .unwrap(),
            );
            assert!(connect > 0.0 && connect < 10.0, "{name}: {backend}");
            for limit in [
                &tp["connectionPool"]["tcp"]["maxConnections"],
                &tp["connectionPool"]["http"]["http2MaxRequests"],
                &tp["connectionPool"]["http"]["http1MaxPendingRequests"],
            ] {
                assert!(limit.as_u64().is_some_and(|n| n > 0), "{name}: {backend}");
            }
            let od = &tp["outlierDetection"];
            assert!(od["consecutive5xxErrors"].as_u64().is_some(), "{name}");
            assert!(
                od["maxEjectionPercent"].as_u64().is_some_and(|p| p < 100),
                "{name}: never eject every pod"
            );
            // mTLS only.
            assert!(
                of_kind(&docs, "PeerAuthentication").iter().any(|pa| {
                    app(pa).as_deref() == Some(backend) && pa["spec"]["mtls"]["mode"] == "STRICT"
                }),
                "{name}: {backend} is not STRICT"
            );
            // One ALLOW policy, callback paths only, from named identities.
            let aps: Vec<&Value> = of_kind(&docs, "AuthorizationPolicy")
                .into_iter()
                .filter(|a| app(a).as_deref() == Some(backend))
                .collect();
            assert_eq!(aps.len(), 1, "{name}: {backend}");
            let ap = aps[0];
            assert_eq!(ap["spec"]["action"], "ALLOW");
            let rules = ap["spec"]["rules"].as_array().unwrap();
            let mut principals = BTreeSet::new();
            for rule in rules {
                for to in rule["to"].as_array().unwrap() {
                    for p in to["operation"]["paths"].as_array().unwrap() {
                        let p = p.as_str().unwrap();
                        // Inside the prefix the filter guards.
                        let guarded = policy["reject_unmatched"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|g| p.starts_with(g.as_str().unwrap()));
                        assert!(guarded, "{name}: {backend} admits {p}");
                    }
                }
                for from in rule["from"].as_array().unwrap() {
                    for p in from["source"]["principals"].as_array().unwrap() {
                        let p = p.as_str().unwrap();
                        assert!(
                            p.starts_with("cluster.local/ns/") && p.contains("/sa/"),
                            "{name}: {p}: Istio principals are <trust-domain>/ns/<ns>/sa/<sa>"
                        );
                        principals.insert(p.to_string());
                    }
                }
            }
            if name.starts_with("gateway") {
                // Only the gateway's own identity: the automated deployment's
                // service account is <gateway>-<class>.
                let gw = of_kind(&docs, "Gateway")[0];
                let sa = format!(
                    "cluster.local/ns/{ns}/sa/{}-{}",
                    gw["metadata"]["name"].as_str().unwrap(),
                    gw["spec"]["gatewayClassName"].as_str().unwrap()
                );
                assert_eq!(principals, [sa].into(), "{name}: {backend}");
            } else {
                // Every identity the filter's admission rules name (e.g. the
                // replayer asking for "high") can reach it.
                for rule in policy["admission"]["rules"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    for p in rule["principals"].as_array().unwrap() {
                        let p = p.as_str().unwrap().trim_start_matches("spiffe://");
                        assert!(
                            principals.contains(p),
                            "{name}: admission names {p}, which the AuthorizationPolicy refuses"
                        );
                    }
                }
            }
        }
        // Request timeouts on the gateway's routes (a DestinationRule has none).
        for route in of_kind(&docs, "HTTPRoute") {
            for rule in route["spec"]["rules"].as_array().unwrap() {
                let t = &rule["timeouts"];
                let errors = check_schema(&route_timeouts_schema(), t, "timeouts");
                assert!(errors.is_empty(), "{name}: {errors:?}");
                let (req, backend) = (
                    duration_s(t["request"].as_str().expect("a request timeout")),
                    duration_s(t["backendRequest"].as_str().unwrap()),
                );
                assert!(
                    backend <= req,
                    "{name}: backendRequest must not exceed request"
                );
            }
        }
    }
}

// ------------------------------------------------- alerts and the dashboard

/// Metric names and label names a PromQL expression references.
#[derive(Debug, Default)]
struct Refs {
    metrics: BTreeSet<String>,
    labels: BTreeSet<String>,
}

const PROMQL_KEYWORDS: [&str; 8] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "group_left",
    "group_right",
    "inf",
];
const LABEL_LISTS: [&str; 4] = ["by", "without", "on", "ignoring"];
/// Aggregations may be followed by `by (...)` rather than their `(`.
const AGGREGATIONS: [&str; 13] = [
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
];

fn promql_refs(expr: &str) -> Refs {
    let mut refs = Refs::default();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let ident = |i: &mut usize| -> String {
        let start = *i;
        while *i < chars.len()
            && (chars[*i].is_ascii_alphanumeric() || chars[*i] == '_' || chars[*i] == ':')
        {
            *i += 1;
        }
        chars[start..*i].iter().collect()
    };
    let skip_string = |i: &mut usize| {
        let q = chars[*i];
        *i += 1;
        while *i < chars.len() && chars[*i] != q {
            if chars[*i] == '\\' {
                *i += 1;
            }
            *i += 1;
        }
        *i += 1;
    };
    let next_non_space = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        chars.get(j).copied()
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            skip_string(&mut i);
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '{' {
            // Label matchers: name op "value", ...
            i += 1;
            while i < chars.len() && chars[i] != '}' {
                let ch = chars[i];
                if ch == '"' || ch == '\'' || ch == '`' {
                    skip_string(&mut i);
                } else if ch.is_ascii_alphabetic() || ch == '_' {
                    refs.labels.insert(ident(&mut i));
                } else {
                    i += 1;
                }
            }
            i += 1;
        } else if c == '$' {
            i += 1;
            ident(&mut i);
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let word = ident(&mut i);
            if LABEL_LISTS.contains(&word.as_str()) && next_non_space(i) == Some('(') {
                while chars[i] != '(' {
                    i += 1;
                }
                i += 1;
                while i < chars.len() && chars[i] != ')' {
                    if chars[i].is_ascii_alphabetic() || chars[i] == '_' {
                        refs.labels.insert(ident(&mut i));
                    } else {
                        i += 1;
                    }
                }
                i += 1;
            } else if next_non_space(i) == Some('(')
                || PROMQL_KEYWORDS.contains(&word.as_str())
                || AGGREGATIONS.contains(&word.as_str())
            {
                // A function or an operator keyword.
            } else {
                refs.metrics.insert(word);
            }
        } else {
            i += 1;
        }
    }
    refs
}

/// Every PromQL expression the alert rules and the dashboard hold, with
/// where it is; Grafana's `label_values(metric, label)` as a selector.
fn shipped_expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let rules = yaml_file("observability/alerts.yaml").remove(0);
    for g in rules["spec"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            out.push((
                format!("alert {}", r["alert"].as_str().unwrap()),
                r["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    let dash = dashboard();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                format!("panel {:?}", p["title"].as_str().unwrap()),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            let args = q
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or_else(|| panic!("variable {}: {q}", v["name"]));
            let (metric, label) = args.split_once(',').unwrap();
            out.push((
                format!("variable {}", v["name"]),
                format!("{}{{{}=\"x\"}}", metric.trim(), label.trim()),
            ));
        }
    }
    out
}

fn dashboard() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(istio("observability/callback-guard-dashboard.json")).unwrap(),
    )
    .unwrap()
}

/// What a proxy exports: metric name -> label names.
type Exported = BTreeMap<String, BTreeSet<String>>;

/// Problems with one expression against what is exported: unknown metrics,
/// and labels that none of its metrics carries.
fn reference_errors(what: &str, expr: &str, exported: &Exported) -> Vec<String> {
    let refs = promql_refs(expr);
    let mut errors = Vec::new();
    if refs.metrics.is_empty() {
        errors.push(format!("{what}: no metric in {expr:?}"));
    }
    let mut labels = BTreeSet::new();
    for m in &refs.metrics {
        match exported.get(m) {
            Some(l) => labels.extend(l.iter().cloned()),
            None => errors.push(format!("{what}: {m} is not exported")),
        }
    }
    for l in &refs.labels {
        if !labels.contains(l) {
            errors.push(format!("{what}: no metric of {expr:?} has the label {l}"));
        }
    }
    errors
}

/// The sidecar or gateway EnvoyFilter's wasm filter as the proxy runs it:
/// the module pulled to a local file, its HOST secrets given inline.
fn running_filter(overlay: &str) -> Value {
    let docs = kustomize::build(&istio(&format!("overlays/{overlay}")));
    let ef = the_filter(&docs);
    let ext = &ef["spec"]["configPatches"][0]["patch"]["value"];
    let mut tc = ext["typed_config"].clone();
    let config = &mut tc["config"];
    config["vm_config"]["code"] = json!({"local": {"filename": wasm_path()}});
    let keys: BTreeMap<String, String> =
        config["vm_config"]["environment_variables"]["host_env_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k.as_str().unwrap().to_string(), DUMMY_SECRET.to_string()))
            .collect();
    config["vm_config"]["environment_variables"] = json!({"key_values": keys});
    json!({"name": ext["name"], "typed_config": tc})
}

/// The stats prefixes the shipped pod annotations keep (both must agree).
fn shipped_inclusion_prefixes() -> Vec<String> {
    let patch = yaml_file("sidecar/deployment-patch.yaml").remove(0);
    let gateway_options = yaml_file("gateway/gateway.yaml")
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap")
        .unwrap();
    let gateway_patch =
        kustomize::yaml_documents(gateway_options["data"]["deployment"].as_str().unwrap())
            .remove(0);
    let prefixes = |d: &Value| -> Vec<String> {
        let pc = d["spec"]["template"]["metadata"]["annotations"]["proxy.istio.io/config"]
            .as_str()
            .unwrap();
        kustomize::yaml_documents(pc)[0]["proxyStatsMatcher"]["inclusionPrefixes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect()
    };
    let (a, b) = (prefixes(&patch), prefixes(&gateway_patch));
    assert_eq!(a, b, "sidecar and gateway keep different stats");
    a
}

/// An Envoy set up the way the shipped manifests set up the proxy: the
/// overlay's filter, Istio's stats matcher (its own prefixes plus the
/// annotation's), no default tags, the telemetry ConfigMap's stats tags.
fn istio_like_envoy(overlay: &str, upstream: u16) -> Envoy {
    istio_like_envoy_with(overlay, running_filter(overlay), upstream)
}

fn istio_like_envoy_with(overlay: &str, filter: Value, upstream: u16) -> Envoy {
    let telemetry = kustomize::build(&istio("base"))
        .into_iter()
        .find(|d| d["metadata"]["name"] == "callback-guard-bootstrap")
        .unwrap();
    let custom: Value =
        serde_json::from_str(telemetry["data"]["custom_bootstrap.json"].as_str().unwrap()).unwrap();
    let mut patterns = vec![json!({"prefix": "reporter="})];
    patterns.extend(
        shipped_inclusion_prefixes()
            .iter()
            .map(|p| json!({"prefix": p})),
    );
    patterns.extend([json!({"prefix": "component"}), json!({"prefix": "istio"})]);
    let bootstrap = json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "stats_config": {
            "use_all_default_tags": false,
            "stats_tags": custom["stats_config"]["stats_tags"],
            "stats_matcher": {"inclusion_list": {"patterns": patterns}}
        },
        "static_resources": {
            "listeners": [{
                "name": "inbound",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "inbound",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "5s"}}]}]},
                        "http_filters": [filter, {"name": "envoy.filters.http.router",
                            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]
            }],
            "clusters": [{"name": "upstream", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream}}}}]}]}}]
        }
    });
    Envoy::start_yaml(&format!("packaging-{overlay}"), &bootstrap.to_string())
}

/// A little of every kind of traffic on the gateway policy (hosts
/// hooks.example.com): verified, forged, duplicate, masked, routed, empty,
/// unmatched.
fn drive_traffic(envoy: &Envoy) {
    let host = "hooks.example.com";
    let gh = br#"{"zen":"Keep it logically awesome.","hook_id":7}"#;
    for delivery in ["p-1", "p-1"] {
        Request::post("/callbacks/github")
            .header("host", host)
            .header(
                "x-hub-signature-256",
                &support::sign::github(DUMMY_SECRET, gh),
            )
            .header("x-github-delivery", delivery)
            .json("")
            .body(gh.to_vec())
            .send(envoy.addr());
    }
    Request::post("/callbacks/github")
        .header("host", host)
        .json(r#"{"zen":"forged"}"#)
        .send(envoy.addr());
    let event = br#"{"id":"evt_9","type":"charge.succeeded","data":{"object":{"billing_details":{"email":"a@example.com"}}}}"#;
    Request::post("/callbacks/stripe")
        .header("host", host)
        .header(
            "stripe-signature",
            &support::sign::stripe(DUMMY_SECRET, support::sign::now(), event),
        )
        .json("")
        .body(event.to_vec())
        .send(envoy.addr());
    let order = br#"{"order":"o-1","phone":"+14155550123"}"#;
    let ts = support::sign::now();
    Request::post("/callbacks/orders")
        .header("host", host)
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", &ts.to_string())
        .header(
            "webhook-signature",
            &support::sign::standard_v1(DUMMY_SECRET, "msg_1", ts, order),
        )
        .json("")
        .body(order.to_vec())
        .send(envoy.addr());
    Request::post("/callbacks/nope")
        .header("host", host)
        .body("x")
        .send(envoy.addr());
}

fn exported(envoy: &Envoy) -> Exported {
    let mut out = Exported::new();
    for s in parse_prometheus(&envoy.admin_get("/stats/prometheus")) {
        out.entry(s.name).or_default().extend(s.labels.into_keys());
    }
    out
}

#[test]
fn alerts_and_dashboard_reference_only_what_the_proxy_exports() {
    // Upstream failures are counted when a routed callback fails: answer 503.
    let up = Upstream::with_reply(support::upstream::Reply {
        status: 503,
        ..Default::default()
    });
    let mut exports = Exported::new();
    for overlay in ["gateway", "sidecar-envoyfilter"] {
        let envoy = istio_like_envoy(overlay, up.port());
        drive_traffic(&envoy);
        for (name, labels) in exported(&envoy) {
            exports.entry(name).or_default().extend(labels);
        }
    }
    // What the rules and panels lean on is really there, with its labels.
    for (name, label) in [
        ("callback_requests_total", "channel"),
        ("callback_signature_failed_total", "reason"),
        ("callback_admission_total", "decision"),
        ("callback_routed_total", "cluster"),
        ("callback_upstream_failures_total", "cluster"),
        ("callback_duration_ms_bucket", "le"),
        ("envoy_wasm_vm_reload", "wasm_plugin"),
    ] {
        assert!(
            exports.get(name).is_some_and(|l| l.contains(label)),
            "{name}{{{label}}} not exported: {:#?}",
            exports
                .keys()
                .filter(|k| k.starts_with("callback_") || k.contains("wasm"))
                .collect::<Vec<_>>()
        );
    }
    let mut errors = Vec::new();
    let expressions = shipped_expressions();
    for (what, expr) in &expressions {
        errors.extend(reference_errors(what, expr, &exports));
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    // Every callback_* metric the filter defines is on the dashboard.
    let on_dashboard: BTreeSet<String> = expressions
        .iter()
        .filter(|(w, _)| w.starts_with("panel"))
        .flat_map(|(_, e)| promql_refs(e).metrics)
        .collect();
    for defined in [
        "callback_requests_total",
        "callback_empty_total",
        "callback_signature_verified_total",
        "callback_signature_failed_total",
        "callback_duplicates_total",
        "callback_masked_fields_total",
        "callback_rejected_total",
        "callback_admission_total",
        "callback_routed_total",
        "callback_upstream_failures_total",
        "callback_duration_ms_bucket",
        "callback_unmatched_total",
    ] {
        assert!(on_dashboard.contains(defined), "{defined} has no panel");
    }
    // The check bites: a misspelt metric or label is reported.
    assert!(
        !reference_errors("x", "rate(callback_signature_failures_total[5m])", &exports).is_empty()
    );
    assert!(
        !reference_errors(
            "x",
            "sum by (chanel) (rate(callback_requests_total[5m]))",
            &exports
        )
        .is_empty()
    );
    assert!(!reference_errors("x", "callback_duplicates_total{reason=\"x\"}", &exports).is_empty());
    assert!(!reference_errors("x", "envoy_wasm_callback_guard_vm_reload", &exports).is_empty());
}

#[test]
fn alert_rules_cover_what_operators_page_on() {
    let rules = yaml_file("observability/alerts.yaml").remove(0);
    assert_eq!(rules["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rules["kind"], "PrometheusRule");
    let mut metrics_by_alert = BTreeMap::new();
    for g in rules["spec"]["groups"].as_array().unwrap() {
        assert!(g["name"].is_string());
        for r in g["rules"].as_array().unwrap() {
            let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
            let allowed: BTreeSet<&str> = ["alert", "expr", "for", "labels", "annotations"].into();
            assert!(keys.is_subset(&allowed), "{r}");
            let name = r["alert"].as_str().unwrap();
            assert!(
                ["warning", "critical"].contains(&r["labels"]["severity"].as_str().unwrap_or("")),
                "{name}: severity"
            );
            assert!(r["annotations"]["summary"].is_string(), "{name}");
            if let Some(f) = r["for"].as_str() {
                assert!(duration_s(f) > 0.0, "{name}");
            }
            metrics_by_alert.insert(
                name.to_string(),
                promql_refs(r["expr"].as_str().unwrap()).metrics,
            );
        }
    }
    let covered = |metric: &str| metrics_by_alert.values().any(|m| m.contains(metric));
    for metric in [
        "callback_signature_failed_total",  // signature-failure spike
        "callback_admission_total",         // shed rate
        "callback_upstream_failures_total", // upstream failures
        "callback_duplicates_total",        // duplicates surge
        "envoy_wasm_vm_reload",             // VM failures / reloads
        "envoy_wasm_vm_reload_failure",
    ] {
        assert!(
            covered(metric),
            "no alert on {metric}: {metrics_by_alert:#?}"
        );
    }
}

#[test]
fn dashboard_is_a_loadable_grafana_dashboard() {
    let d = dashboard();
    assert_eq!(d["uid"], "callback-guard");
    assert!(d["title"].is_string() && d["schemaVersion"].as_u64().is_some());
    let vars: BTreeSet<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        let g = &p["gridPos"];
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "{p}"
        );
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", p["title"]);
        let text = p.to_string();
        // Every $variable is defined, or one of Grafana's own.
        for (i, _) in text.match_indices('$') {
            let name: String = text[i + 1..]
                .trim_start_matches('{')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                vars.contains(name.as_str()) || name.starts_with("__"),
                "{}: ${name} is not defined",
                p["title"]
            );
        }
    }
    // The observability kustomization generates the dashboard ConfigMap
    // from this very file, for Grafana's sidecar.
    let docs = kustomize::build(&istio("observability"));
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("the dashboard ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let inner: Value = serde_json::from_str(
        cm["data"]["callback-guard-dashboard.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(inner, d);
    assert!(docs.iter().any(|d| d["kind"] == "PrometheusRule"));
    assert!(
        !docs
            .iter()
            .any(|d| FILTER_KINDS.contains(&d["kind"].as_str().unwrap_or(""))),
        "observability holds no filter"
    );
}

#[test]
fn vm_reload_stats_carry_the_plugin_name_as_a_label_whatever_it_is() {
    // istiod names a WasmPlugin's filter config after the object
    // (namespace.name), not as the EnvoyFilters do: the wasm_plugin tag
    // keeps the metric name the same, so the alerts fire for both.
    let up = Upstream::start();
    for name in ["callback-guard", "webhooks.callback-guard"] {
        let mut filter = running_filter("sidecar-envoyfilter");
        filter["typed_config"]["config"]["name"] = json!(name);
        let envoy = istio_like_envoy_with("vm-name", filter, up.port());
        let samples = parse_prometheus(&envoy.admin_get("/stats/prometheus"));
        for metric in [
            "envoy_wasm_vm_reload",
            "envoy_wasm_vm_reload_failure",
            "envoy_wasm_vm_reload_success",
            "envoy_wasm_vm_reload_backoff",
        ] {
            assert!(
                samples.iter().any(|s| s.name == metric
                    && s.labels.get("wasm_plugin").map(String::as_str) == Some(name)),
                "{metric}{{wasm_plugin={name:?}}} missing: {:?}",
                samples
                    .iter()
                    .filter(|s| s.name.contains("wasm"))
                    .collect::<Vec<_>>()
            );
        }
    }
}

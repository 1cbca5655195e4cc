//! `callback-guard validate`: every configuration in the given files,
//! through `callback_guard::config::load` -- the function the filter's
//! `on_configure` calls -- so "valid here" means "loads on the proxy".
//!
//! The library stops at the first error. To report more in one run, each
//! top-level section and each channel is also loaded on its own (error
//! paths re-indexed to the full document); the full document is always
//! loaded too, so nothing the proxy would refuse goes unreported.
//!
//! Secrets: `{"env": NAME}` is looked up where the VM would find it. In a
//! manifest only the variables it gives the VM exist (WasmPlugin
//! `spec.vmConfig.env`, EnvoyFilter `vm_config.environment_variables`);
//! inline ones have their value, HOST ones come from this process's
//! environment. A missing variable is an error, as on the proxy, unless
//! `--allow-missing-env` substitutes a placeholder.

use callback_guard::config::{self, ConfigError, Policy};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Stands in for a secret this shell does not have: `whsec_` + base64,
/// a key every signature scheme accepts.
pub const PLACEHOLDER_SECRET: &str = "whsec_cGxhY2Vob2xkZXItZm9yLWNhbGxiYWNrLWd1YXJk";

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const TYPED_STRUCT_TYPES: [&str; 2] = [
    "type.googleapis.com/udpa.type.v1.TypedStruct",
    "type.googleapis.com/xds.type.v3.TypedStruct",
];
const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";

pub struct Options {
    pub allow_missing_env: bool,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub configurations: usize,
    pub errors: usize,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.errors == 0 && self.configurations > 0
    }
}

/// Checks every file, printing one block per configuration and a summary.
pub fn run(files: &[PathBuf], opts: &Options) -> Outcome {
    let mut outcome = Outcome::default();
    for file in files {
        let (targets, problems) = read_targets(file);
        for problem in &problems {
            println!("FAIL {}: {problem}", file.display());
        }
        outcome.errors += problems.len();
        for target in targets {
            outcome.configurations += 1;
            outcome.errors += check_and_print(&target, opts);
        }
    }
    let n = outcome.configurations;
    let s = if n == 1 { "" } else { "s" };
    if n == 0 && outcome.errors == 0 {
        println!("no callback-guard configuration found (a policy, WasmPlugin or EnvoyFilter)");
    } else if outcome.errors == 0 {
        println!("{n} configuration{s} checked: all valid");
    } else {
        let e = outcome.errors;
        let es = if e == 1 { "" } else { "s" };
        println!("{n} configuration{s} checked: {e} error{es}");
    }
    outcome
}

// ------------------------------------------------------------- targets

/// Where a configuration's `{"env": NAME}` secrets come from.
#[derive(Debug, Clone)]
enum EnvSource {
    /// A bare policy: this process's environment.
    Process,
    /// A manifest: only the variables it gives the VM. `None` = from the
    /// proxy's own environment (HOST), `Some` = inline value.
    Declared {
        vars: BTreeMap<String, Option<String>>,
        /// Where they are declared, for messages.
        field: String,
    },
}

/// One configuration found in an input file.
#[derive(Debug, Clone)]
struct Target {
    /// `istio/x.yaml document 2 (WasmPlugin webhooks/callback-guard)`
    label: String,
    /// Prepended to the policy's field paths (`spec.pluginConfig.`).
    prefix: String,
    config: Value,
    env: EnvSource,
    /// Problems of the surrounding manifest, already field-pathed.
    manifest_errors: Vec<ConfigError>,
    notes: Vec<String>,
}

/// The configurations in one file, or why it could not be read.
fn read_targets(file: &Path) -> (Vec<Target>, Vec<String>) {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return (Vec::new(), vec![format!("cannot read: {e}")]),
    };
    let is_json = file.extension().is_some_and(|e| e == "json");
    let docs = if is_json {
        serde_json::from_str::<Value>(&text)
            .map(|v| vec![v])
            .map_err(|e| format!("not valid JSON: {e}"))
    } else {
        yaml_documents(&text)
    };
    let docs = match docs {
        Ok(d) => d,
        Err(e) => return (Vec::new(), vec![e]),
    };
    let many = docs.len() > 1;
    let mut targets = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let at = if many {
            format!("{} document {}", file.display(), i + 1)
        } else {
            file.display().to_string()
        };
        match doc.get("kind").and_then(Value::as_str) {
            None => targets.push(Target {
                label: at,
                prefix: String::new(),
                config: doc,
                env: EnvSource::Process,
                manifest_errors: Vec::new(),
                notes: Vec::new(),
            }),
            Some("WasmPlugin") => targets.push(wasm_plugin_target(&doc, at)),
            Some("EnvoyFilter") => targets.extend(envoy_filter_targets(&doc, &at)),
            Some(kind) => println!(
                "skip {at} ({kind} {}): not a callback-guard configuration",
                object_name(&doc)
            ),
        }
    }
    (targets, Vec::new())
}

fn yaml_documents(text: &str) -> Result<Vec<Value>, String> {
    use serde::Deserialize;
    let mut docs = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        let doc = Value::deserialize(de).map_err(|e| format!("not valid YAML: {e}"))?;
        if !doc.is_null() {
            docs.push(doc);
        }
    }
    Ok(docs)
}

fn object_name(doc: &Value) -> String {
    let meta = &doc["metadata"];
    match (meta["namespace"].as_str(), meta["name"].as_str()) {
        (Some(ns), Some(name)) => format!("{ns}/{name}"),
        (None, Some(name)) => name.to_string(),
        _ => "(unnamed)".to_string(),
    }
}

fn wasm_plugin_target(doc: &Value, at: String) -> Target {
    let spec = &doc["spec"];
    let vars = spec["vmConfig"]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e["name"].as_str()?.to_string();
            let inline = (e["valueFrom"].as_str() != Some("HOST"))
                .then(|| e["value"].as_str().unwrap_or("").to_string());
            Some((name, inline))
        })
        .collect();
    let config = spec
        .get("pluginConfig")
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let doc_page = format!(
        "docs/deploy-istio-{}.md",
        if spec.get("targetRefs").is_some() || spec.get("targetRef").is_some() {
            "gateway"
        } else {
            "sidecar"
        }
    );
    // A WasmPlugin cannot set allow_on_headers_stop_iteration: only stream
    // mode works there.
    let (manifest_errors, notes) = if streams(&config) {
        (
            Vec::new(),
            vec![format!(
                "{STREAM_MODE_NOTE}; the EnvoyFilter variant keeps every guarantee ({doc_page})"
            )],
        )
    } else {
        (
            vec![ConfigError::new(
                "spec.pluginConfig.hold_headers",
                format!(
                    "must be false in a WasmPlugin: it cannot set \
                     allow_on_headers_stop_iteration, so holding headers (the default) stalls \
                     every callback with a body; set hold_headers: false (stream mode) or \
                     deploy the EnvoyFilter variant ({doc_page})"
                ),
            )],
            Vec::new(),
        )
    };
    Target {
        label: format!("{at} (WasmPlugin {})", object_name(doc)),
        prefix: "spec.pluginConfig.".to_string(),
        config,
        env: EnvSource::Declared {
            vars,
            field: "spec.vmConfig.env".to_string(),
        },
        manifest_errors,
        notes,
    }
}

/// What stream mode gives up, for notes.
const STREAM_MODE_NOTE: &str = "stream mode (hold_headers: false): a callback's headers go \
     upstream before its body is checked; for callbacks with a body, x-verified-signature \
     reaches only the caller's response, and one the filter answers (401, 400, 204, duplicate, \
     chunked 413) reaches the service as headers cut off by a reset";

/// The policy runs in stream mode (`"hold_headers": false`).
fn streams(policy: &Value) -> bool {
    policy.get("hold_headers") == Some(&Value::Bool(false))
}

/// One target per wasm filter config (`typed_config` of type Wasm, or a
/// TypedStruct of it) in the EnvoyFilter's patches.
fn envoy_filter_targets(doc: &Value, at: &str) -> Vec<Target> {
    let mut out = Vec::new();
    let patches = doc["spec"]["configPatches"]
        .as_array()
        .into_iter()
        .flatten();
    for (i, patch) in patches.enumerate() {
        let tc = &patch["patch"]["value"]["typed_config"];
        let type_url = tc["@type"].as_str().unwrap_or("");
        let (config, base) = if type_url == WASM_TYPE {
            (
                &tc["config"],
                format!("spec.configPatches[{i}].patch.value.typed_config.config"),
            )
        } else if TYPED_STRUCT_TYPES.contains(&type_url) && tc["type_url"] == WASM_TYPE {
            (
                &tc["value"]["config"],
                format!("spec.configPatches[{i}].patch.value.typed_config.value.config"),
            )
        } else {
            continue;
        };
        out.push(envoy_filter_target(doc, at, i, config, &base));
    }
    out
}

fn envoy_filter_target(doc: &Value, at: &str, patch: usize, config: &Value, base: &str) -> Target {
    let mut errors = Vec::new();
    let configuration = &config["configuration"];
    let policy = match configuration["@type"].as_str() {
        None if configuration.is_null() => Value::Object(Map::new()),
        Some(STRING_VALUE_TYPE) => {
            let text = configuration["value"].as_str().unwrap_or("");
            if text.trim().is_empty() {
                Value::Object(Map::new())
            } else {
                match serde_json::from_str(text) {
                    Ok(v) => v,
                    Err(e) => {
                        errors.push(ConfigError::new(
                            format!("{base}.configuration.value"),
                            format!("not valid JSON: {e}"),
                        ));
                        Value::Object(Map::new())
                    }
                }
            }
        }
        other => {
            errors.push(ConfigError::new(
                format!("{base}.configuration"),
                format!(
                    "must be a {STRING_VALUE_TYPE} holding JSON, not {}: the filter reads \
                     JSON only (any other type reaches it as protobuf bytes)",
                    other.unwrap_or("an untyped value")
                ),
            ));
            Value::Object(Map::new())
        }
    };
    let flag = config["allow_on_headers_stop_iteration"] == Value::Bool(true);
    let mut notes = Vec::new();
    match (flag, streams(&policy)) {
        (true, false) => {}
        (false, false) => errors.push(ConfigError::new(
            format!("{base}.allow_on_headers_stop_iteration"),
            "must be true: the filter holds the headers while it reads the body \
             (hold_headers, default true); without it every callback with a body stalls \
             (or set \"hold_headers\": false in the configuration: stream mode)",
        )),
        (false, true) => notes.push(STREAM_MODE_NOTE.to_string()),
        (true, true) => notes.push(format!(
            "{STREAM_MODE_NOTE}; this proxy can hold headers \
             (allow_on_headers_stop_iteration is set): drop hold_headers: false to keep every \
             guarantee"
        )),
    }
    let env_vars = &config["vm_config"]["environment_variables"];
    let mut vars: BTreeMap<String, Option<String>> = env_vars["host_env_keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| Some((k.as_str()?.to_string(), None)))
        .collect();
    for (k, v) in env_vars["key_values"].as_object().into_iter().flatten() {
        vars.insert(k.clone(), Some(v.as_str().unwrap_or("").to_string()));
    }
    Target {
        label: format!(
            "{at} (EnvoyFilter {}, configPatches[{patch}])",
            object_name(doc)
        ),
        prefix: String::new(),
        config: policy,
        env: EnvSource::Declared {
            vars,
            field: format!("{base}.vm_config.environment_variables"),
        },
        manifest_errors: errors,
        notes,
    }
}

// ------------------------------------------------------------- checking

/// Prints the verdict on one configuration; returns its error count.
fn check_and_print(target: &Target, opts: &Options) -> usize {
    let placeholders = RefCell::new(BTreeSet::new());
    let missing = RefCell::new(BTreeSet::new());
    let lookup = |name: &str| -> Option<String> {
        if let EnvSource::Declared { vars, .. } = &target.env {
            match vars.get(name) {
                Some(Some(inline)) => return Some(inline.clone()),
                // HOST: the proxy's environment; this process's stands in.
                Some(None) => {}
                // Reported with its own message by `undeclared_env`.
                None => return Some(PLACEHOLDER_SECRET.to_string()),
            }
        }
        if let Ok(v) = std::env::var(name) {
            return Some(v);
        }
        if opts.allow_missing_env {
            placeholders.borrow_mut().insert(name.to_string());
            Some(PLACEHOLDER_SECRET.to_string())
        } else {
            missing.borrow_mut().insert(name.to_string());
            None
        }
    };
    let mut errors = target.manifest_errors.clone();
    errors.extend(undeclared_env(target));
    let policy = match check(&target.config, &lookup) {
        Ok(p) => Some(p),
        Err(errs) => {
            errors.extend(errs.into_iter().map(|e| ConfigError {
                path: if e.path.is_empty() || e.path.starts_with('[') {
                    format!("{}{}", target.prefix.trim_end_matches('.'), e.path)
                } else {
                    format!("{}{}", target.prefix, e.path)
                },
                ..e
            }));
            None
        }
    };
    if errors.is_empty()
        && let Some(policy) = policy
    {
        println!("OK   {}: {}", target.label, summary(&policy));
        let used = placeholders.borrow();
        if !used.is_empty() {
            let names: Vec<&str> = used.iter().map(String::as_str).collect();
            println!(
                "     placeholder secrets for unset env vars: {}",
                names.join(", ")
            );
        }
        for note in &target.notes {
            println!("     note: {note}");
        }
        return 0;
    }
    println!("FAIL {}", target.label);
    for e in &errors {
        if e.path.is_empty() {
            println!("     {}", e.reason);
        } else {
            println!("     {}: {}", e.path, e.reason);
        }
    }
    let missing = missing.borrow();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(String::as_str).collect();
        let whence = match &target.env {
            EnvSource::Process => "",
            EnvSource::Declared { .. } => " (read from the proxy's environment)",
        };
        let (verb, it) = if names.len() == 1 {
            ("is", "it")
        } else {
            ("are", "them")
        };
        println!(
            "     hint: {}{whence} {verb} not set here: export {it} to check the real value, \
             or pass --allow-missing-env",
            names.join(", ")
        );
    }
    errors.len()
}

/// `{"env": NAME}` secrets whose variable the manifest does not give the VM.
fn undeclared_env(target: &Target) -> Vec<ConfigError> {
    let EnvSource::Declared { vars, field } = &target.env else {
        return Vec::new();
    };
    let mut refs = Vec::new();
    env_refs(&target.config, &target.prefix, &mut refs);
    refs.into_iter()
        .filter(|(_, name)| !vars.contains_key(name))
        .map(|(path, name)| {
            ConfigError::new(
                path,
                format!("{name} is not listed in {field}, so the VM cannot see it"),
            )
        })
        .collect()
}

/// Every `secrets[i].env` under `v`, with its field path.
fn env_refs(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let child_path = format!("{}{k}", dotted(path));
                if k == "secrets"
                    && let Value::Array(items) = child
                {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(name) = item.get("env").and_then(Value::as_str) {
                            out.push((format!("{child_path}[{i}].env"), name.to_string()));
                        }
                    }
                }
                env_refs(child, &child_path, out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                env_refs(item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn dotted(path: &str) -> String {
    if path.is_empty() || path.ends_with('.') {
        path.to_string()
    } else {
        format!("{path}.")
    }
}

fn load(doc: &Value, env: config::EnvLookup<'_>) -> Result<Policy, ConfigError> {
    config::load(doc.to_string().as_bytes(), env)
}

/// Loads `policy`; on failure, every error found by loading each top-level
/// section and each channel separately, plus the full document's own.
fn check(policy: &Value, env: config::EnvLookup<'_>) -> Result<Policy, Vec<ConfigError>> {
    let first = match load(policy, env) {
        Ok(p) => return Ok(p),
        Err(e) => e,
    };
    let mut errors = Vec::new();
    if let Value::Object(top) = policy {
        let section = |key: &str, value: &Value| {
            let mut doc = Map::new();
            doc.insert(key.to_string(), value.clone());
            load(&Value::Object(doc), env).err()
        };
        for (key, value) in top.iter().filter(|(k, _)| k.as_str() != "channels") {
            errors.extend(section(key, value));
        }
        // Channels are checked against the top-level routing (strict
        // cluster names), when that is valid itself.
        let routing = top
            .get("routing")
            .filter(|r| section("routing", r).is_none());
        match top.get("channels") {
            Some(Value::Array(channels)) => {
                let mut seen = BTreeSet::new();
                for (i, channel) in channels.iter().enumerate() {
                    errors.extend(check_channel(channel, i, routing, env));
                    if let Some(name) = channel.get("name").and_then(Value::as_str)
                        && !seen.insert(name)
                    {
                        errors.push(ConfigError::new(
                            format!("channels[{i}].name"),
                            format!("duplicate channel name {name:?}"),
                        ));
                    }
                }
            }
            Some(other) => errors.extend(section("channels", other)),
            None => {}
        }
    }
    if !errors.contains(&first) {
        errors.push(first);
    }
    Err(errors)
}

fn check_channel(
    channel: &Value,
    index: usize,
    routing: Option<&Value>,
    env: config::EnvLookup<'_>,
) -> Option<ConfigError> {
    let mut doc = Map::new();
    doc.insert("channels".into(), Value::Array(vec![channel.clone()]));
    if let Some(r) = routing {
        doc.insert("routing".into(), r.clone());
    }
    let e = load(&Value::Object(doc), env).err()?;
    let path = match e.path.strip_prefix("channels[0]") {
        Some(rest) => format!("channels[{index}]{rest}"),
        None => e.path,
    };
    Some(ConfigError { path, ..e })
}

/// One line on what a valid configuration does.
fn summary(policy: &Policy) -> String {
    let n = policy.channels.len();
    let mut parts = vec![format!(
        "{n} channel{}{}",
        if n == 1 { "" } else { "s" },
        if n == 0 {
            String::new()
        } else {
            let names: Vec<&str> = policy.channels.iter().map(|c| c.name.as_str()).collect();
            format!(" ({})", names.join(", "))
        }
    )];
    let schemes: BTreeSet<&str> = policy
        .channels
        .iter()
        .filter_map(|c| c.signature.as_ref().map(|s| s.scheme()))
        .collect();
    if !schemes.is_empty() {
        parts.push(format!(
            "signatures: {}",
            schemes.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    for (what, count) in [
        (
            "dedup",
            policy.channels.iter().filter(|c| c.dedup.is_some()).count(),
        ),
        (
            "mask",
            policy.channels.iter().filter(|c| c.mask.is_some()).count(),
        ),
        (
            "routing",
            policy
                .channels
                .iter()
                .filter(|c| c.routing.is_some())
                .count(),
        ),
    ] {
        if count > 0 {
            parts.push(format!("{what} on {count}"));
        }
    }
    if policy.admission.is_some() {
        parts.push("admission".to_string());
    }
    if !policy.hold_headers {
        parts.push("stream mode".to_string());
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(policy: Value) -> Vec<String> {
        check(&policy, &|_| Some(PLACEHOLDER_SECRET.to_string()))
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn collects_an_error_per_channel_and_section() {
        let got = errors(json!({
            "channels": [
                {"name": "ok", "match": {"path_prefix": "/a"}},
                {"name": "Bad Name", "match": {"path_prefix": "/b"}},
                {"name": "c", "match": {"path_prefix": "/c"}, "dedup": {"window": 1}},
                {"name": "ok", "match": {"path_prefix": "/d"}}
            ],
            "admission": {"unauthorized_high": "maybe"},
            "bogus": 1
        }));
        let paths: Vec<&str> = got
            .iter()
            .map(|e| e.split(':').next().unwrap_or(""))
            .collect();
        for want in [
            "channels[1].name",
            "channels[2].dedup.window",
            "channels[3].name",
            "admission.unauthorized_high",
        ] {
            assert!(paths.contains(&want), "{want} missing from {got:#?}");
        }
        assert!(got.iter().any(|e| e.contains("bogus")), "{got:#?}");
    }

    #[test]
    fn reports_what_the_full_load_reports() {
        // Whatever the per-section checks find, the filter's own first
        // error is among them.
        let policy = json!({"channels": [{"name": "x", "match": {"path_prefix": "no-slash"}}]});
        let first = load(&policy, &|_| None).unwrap_err().to_string();
        assert!(errors(policy).contains(&first));
    }

    #[test]
    fn strict_cluster_names_apply_per_channel() {
        let got = errors(json!({
            "channels": [{"name": "a", "match": {"path_prefix": "/a"},
                          "routing": {"clusters": [{"name": "typo", "weight": 1}]}}],
            "routing": {"known_clusters": ["real"]}
        }));
        assert!(
            got.iter()
                .any(|e| e.starts_with("channels[0].routing.clusters[0].name")),
            "{got:#?}"
        );
    }

    #[test]
    fn finds_env_references_with_their_paths() {
        let mut refs = Vec::new();
        let v = json!({"channels": [{"signature": {"secrets": [{"value": "x"}, {"env": "A"}]}}]});
        env_refs(&v, "spec.pluginConfig.", &mut refs);
        assert_eq!(
            refs,
            vec![(
                "spec.pluginConfig.channels[0].signature.secrets[1].env".to_string(),
                "A".to_string()
            )]
        );
    }
}

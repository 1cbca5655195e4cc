//! `callback-guard validate`: every configuration in the given files,
//! through `callback_guard::config::check` -- the function the filter's
//! `on_configure` calls -- so "valid here" means "loads on the proxy", and
//! every error it finds is printed in one run.
//!
//! Inputs: a policy (JSON or YAML), Istio manifests (`WasmPlugin`,
//! `EnvoyFilter`), or an Envoy bootstrap / xDS file: every wasm filter
//! config in it that is callback-guard's (by `name`, `root_id`, `vm_id` or
//! the module's file name or URL) is checked and labelled with the path
//! where it sits in the file (errors of the proxy-side settings carry that
//! full path; the policy's own errors its path inside the policy).
//! `--format json` prints one JSON report for CI.
//!
//! Secrets: `{"env": NAME}` is looked up where the VM would find it. In a
//! manifest only the variables it gives the VM exist (WasmPlugin
//! `spec.vmConfig.env`, EnvoyFilter `vm_config.environment_variables`);
//! inline ones have their value, HOST ones come from this process's
//! environment. A missing variable is an error, as on the proxy, unless
//! `--allow-missing-env` substitutes a placeholder.

use callback_guard::config::{self, ConfigError};
use callback_guard::core::policy::Policy;
use serde_json::{Map, Value, json};
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One block per configuration, for people
    Text,
    /// One JSON document on stdout, for CI
    Json,
}

pub struct Options {
    pub allow_missing_env: bool,
    pub format: Format,
    /// `--body`: sample bodies checked against a channel's contract.
    pub bodies: Vec<PathBuf>,
    /// `--channel`: whose contract.
    pub channel: Option<String>,
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

/// What became of one configuration, a skipped document, or a file that
/// could not be read.
#[derive(Debug)]
struct Entry {
    file: String,
    label: String,
    status: Status,
    errors: Vec<ConfigError>,
    summary: Option<String>,
    notes: Vec<String>,
    placeholders: Vec<String>,
    hint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// A configuration that loads.
    Ok,
    /// A configuration with errors.
    Fail,
    /// A file that holds nothing to check (unreadable, not YAML, empty).
    Problem,
    /// A document that is not a callback-guard configuration.
    Skip,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Fail => "fail",
            Status::Problem => "error",
            Status::Skip => "skip",
        }
    }
}

impl Entry {
    fn note(file: &Path, label: String, status: Status, reason: String) -> Self {
        Self {
            file: file.display().to_string(),
            label,
            status,
            errors: if status == Status::Problem {
                vec![ConfigError::new("", reason.clone())]
            } else {
                Vec::new()
            },
            summary: (status == Status::Skip).then_some(reason),
            notes: Vec::new(),
            placeholders: Vec::new(),
            hint: None,
        }
    }
}

/// Checks every file and prints the report (text or JSON).
pub fn run(files: &[PathBuf], opts: &Options) -> Outcome {
    let mut outcome = Outcome::default();
    let mut entries = Vec::new();
    for file in files {
        let (targets, notes) = read_targets(file);
        entries.extend(notes);
        for target in targets {
            entries.push(check_target(file, &target, opts));
        }
    }
    for e in &entries {
        match e.status {
            Status::Ok => outcome.configurations += 1,
            Status::Fail => {
                outcome.configurations += 1;
                outcome.errors += e.errors.len();
            }
            Status::Problem => outcome.errors += e.errors.len(),
            Status::Skip => {}
        }
    }
    match opts.format {
        Format::Text => print_text(&entries, &outcome),
        Format::Json => print_json(&entries, &outcome),
    }
    outcome
}

const NOTHING_FOUND: &str =
    "no callback-guard configuration found (a policy, WasmPlugin, EnvoyFilter or Envoy bootstrap)";

fn print_text(entries: &[Entry], outcome: &Outcome) {
    for e in entries {
        match e.status {
            Status::Skip => println!(
                "skip {}: {}",
                e.label,
                e.summary.as_deref().unwrap_or_default()
            ),
            Status::Problem => {
                for err in &e.errors {
                    println!("FAIL {}: {}", e.label, err.reason);
                }
            }
            Status::Ok => {
                println!(
                    "OK   {}: {}",
                    e.label,
                    e.summary.as_deref().unwrap_or_default()
                );
                if !e.placeholders.is_empty() {
                    println!(
                        "     placeholder secrets for unset env vars: {}",
                        e.placeholders.join(", ")
                    );
                }
                for note in &e.notes {
                    println!("     note: {note}");
                }
            }
            Status::Fail => {
                println!("FAIL {}", e.label);
                for err in &e.errors {
                    if err.path.is_empty() {
                        println!("     {}", err.reason);
                    } else {
                        println!("     {}: {}", err.path, err.reason);
                    }
                }
                if let Some(hint) = &e.hint {
                    println!("     hint: {hint}");
                }
            }
        }
    }
    let n = outcome.configurations;
    let s = if n == 1 { "" } else { "s" };
    if n == 0 && outcome.errors == 0 {
        println!("{NOTHING_FOUND}");
    } else if outcome.errors == 0 {
        println!("{n} configuration{s} checked: all valid");
    } else {
        let e = outcome.errors;
        let es = if e == 1 { "" } else { "s" };
        println!("{n} configuration{s} checked: {e} error{es}");
    }
}

fn print_json(entries: &[Entry], outcome: &Outcome) {
    let results: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut r = Map::new();
            r.insert("file".into(), json!(e.file));
            r.insert("label".into(), json!(e.label));
            r.insert("status".into(), json!(e.status.as_str()));
            r.insert(
                "errors".into(),
                Value::Array(
                    e.errors
                        .iter()
                        .map(|err| json!({"path": err.path, "message": err.reason}))
                        .collect(),
                ),
            );
            if let Some(summary) = &e.summary {
                r.insert("summary".into(), json!(summary));
            }
            if !e.notes.is_empty() {
                r.insert("notes".into(), json!(e.notes));
            }
            if !e.placeholders.is_empty() {
                r.insert("placeholder_env".into(), json!(e.placeholders));
            }
            if let Some(hint) = &e.hint {
                r.insert("hint".into(), json!(hint));
            }
            Value::Object(r)
        })
        .collect();
    let mut report = json!({
        "ok": outcome.ok(),
        "configurations": outcome.configurations,
        "errors": outcome.errors,
        "results": results,
    });
    if outcome.configurations == 0 && outcome.errors == 0 {
        report["message"] = json!(NOTHING_FOUND);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
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

/// The configurations in one file, and entries for what is not one
/// (skipped documents, or why the file could not be read).
fn read_targets(file: &Path) -> (Vec<Target>, Vec<Entry>) {
    let shown = file.display().to_string();
    let problem = |reason: String| {
        (
            Vec::new(),
            vec![Entry::note(file, shown.clone(), Status::Problem, reason)],
        )
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return problem(format!("cannot read: {e}")),
    };
    if is_blank(&text) {
        return problem(EMPTY_FILE.to_string());
    }
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
        Err(e) => return problem(e),
    };
    if docs.is_empty() {
        return problem(EMPTY_FILE.to_string());
    }
    let many = docs.len() > 1;
    let mut targets = Vec::new();
    let mut skipped = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let at = if many {
            format!("{} document {}", file.display(), i + 1)
        } else {
            file.display().to_string()
        };
        match doc.get("kind").and_then(Value::as_str) {
            None if is_envoy_config(&doc) => {
                let found = bootstrap_targets(&doc, &at);
                if found.is_empty() {
                    skipped.push(Entry::note(
                        file,
                        at,
                        Status::Skip,
                        "Envoy configuration without a callback-guard wasm filter".to_string(),
                    ));
                }
                targets.extend(found);
            }
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
            Some(kind) => skipped.push(Entry::note(
                file,
                format!("{at} ({kind} {})", object_name(&doc)),
                Status::Skip,
                "not a callback-guard configuration".to_string(),
            )),
        }
    }
    (targets, skipped)
}

/// Said of a file with nothing in it (or only comments).
const EMPTY_FILE: &str = "empty file: nothing to check (write a policy, see \
     docs/configuration.md; note that the filter itself loads an empty configuration as \
     \"no channels\", so every request would pass through unchecked)";

/// Whitespace, YAML comments and document markers only.
fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---" || l == "..."
    })
}

/// An Envoy bootstrap, or an xDS file (`resources: [...]`), rather than a
/// policy: a policy has none of these keys.
fn is_envoy_config(doc: &Value) -> bool {
    [
        "static_resources",
        "dynamic_resources",
        "admin",
        "node",
        "resources",
    ]
    .iter()
    .any(|k| doc.get(k).is_some())
}

/// Every callback-guard wasm filter config in an Envoy configuration,
/// wherever it sits (HTTP filter `typed_config`, ECDS extension config,
/// TypedStruct), each labelled with its path in the file.
fn bootstrap_targets(doc: &Value, at: &str) -> Vec<Target> {
    let mut found = Vec::new();
    wasm_configs(doc, "", &mut found);
    found
        .into_iter()
        .filter(|(_, config)| is_callback_guard(config))
        .map(|(base, config)| {
            let mut t = envoy_filter_target(config, &base);
            t.label = format!("{at} ({base})");
            t
        })
        .collect()
}

/// `(path, wasm PluginConfig)` for every Wasm `typed_config` under `v`.
fn wasm_configs<'a>(v: &'a Value, path: &str, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(map) => {
            let type_url = map.get("@type").and_then(Value::as_str).unwrap_or("");
            if type_url == WASM_TYPE
                && let Some(config) = map.get("config")
            {
                out.push((format!("{path}.config"), config));
                return;
            }
            if TYPED_STRUCT_TYPES.contains(&type_url)
                && map.get("type_url").and_then(Value::as_str) == Some(WASM_TYPE)
                && let Some(config) = map.get("value").and_then(|v| v.get("config"))
            {
                out.push((format!("{path}.value.config"), config));
                return;
            }
            for (k, child) in map {
                wasm_configs(child, &format!("{}{k}", dotted(path)), out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                wasm_configs(item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// A wasm PluginConfig that runs callback-guard (other wasm filters in the
/// same bootstrap are not ours to check).
fn is_callback_guard(config: &Value) -> bool {
    let named = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s == "callback-guard" || s == "callback_guard")
    };
    let code = &config["vm_config"]["code"];
    named(&config["name"])
        || named(&config["root_id"])
        || named(&config["vm_config"]["vm_id"])
        || code["local"]["filename"]
            .as_str()
            .is_some_and(|f| f.ends_with("callback_guard.wasm"))
        || code["remote"]["http_uri"]["uri"]
            .as_str()
            .is_some_and(|u| u.contains("callback-guard") || u.contains("callback_guard"))
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
        let mut t = envoy_filter_target(config, &base);
        t.label = format!(
            "{at} (EnvoyFilter {}, configPatches[{i}])",
            object_name(doc)
        );
        out.push(t);
    }
    out
}

/// A wasm `PluginConfig` (Envoy bootstrap or EnvoyFilter patch) at `base`;
/// the caller sets the label.
fn envoy_filter_target(config: &Value, base: &str) -> Target {
    let mut errors = Vec::new();
    let configuration = &config["configuration"];
    let mut notes = Vec::new();
    let empty_note = "empty configuration: the filter loads it as \"no channels\", so every \
                      request passes through unchecked";
    let policy = match configuration["@type"].as_str() {
        None if configuration.is_null() => {
            notes.push(empty_note.to_string());
            Value::Object(Map::new())
        }
        Some(STRING_VALUE_TYPE) => {
            let text = configuration["value"].as_str().unwrap_or("");
            if text.trim().is_empty() {
                notes.push(empty_note.to_string());
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
        label: base.to_string(),
        // Policy paths are the JSON's own; the label names where it sits.
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

/// The verdict on one configuration.
fn check_target(file: &Path, target: &Target, opts: &Options) -> Entry {
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
    let policy = match config::check(target.config.to_string().as_bytes(), &lookup) {
        Ok(p) => Some(p),
        Err(errs) => {
            errors.extend(errs.into_vec().into_iter().map(|e| ConfigError {
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
    let mut entry = Entry {
        file: file.display().to_string(),
        label: target.label.clone(),
        status: Status::Fail,
        errors: Vec::new(),
        summary: None,
        notes: target.notes.clone(),
        placeholders: placeholders.borrow().iter().cloned().collect(),
        hint: None,
    };
    if errors.is_empty()
        && let Some(policy) = policy
    {
        entry.summary = Some(summary(&policy));
        let (notes, failed) = check_bodies(&policy, opts);
        entry.notes.extend(notes);
        if failed.is_empty() {
            entry.status = Status::Ok;
        } else {
            entry.errors = failed;
        }
        return entry;
    }
    entry.errors = errors;
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
        entry.hint = Some(format!(
            "{}{whence} {verb} not set here: export {it} to check the real value, \
             or pass --allow-missing-env",
            names.join(", ")
        ));
    }
    entry
}

/// `--body`: each sample body through the chosen channel's contract, as
/// the filter checks it (`Contract::check`). Passing bodies become notes,
/// failing ones errors whose reason names the file and the pointers.
fn check_bodies(policy: &Policy, opts: &Options) -> (Vec<String>, Vec<ConfigError>) {
    if opts.bodies.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let with_contract: Vec<_> = policy
        .channels
        .iter()
        .enumerate()
        .filter(|(_, c)| c.contract.is_some())
        .collect();
    let chosen = match &opts.channel {
        Some(name) => policy
            .channels
            .iter()
            .enumerate()
            .find(|(_, c)| &c.name == name)
            .ok_or_else(|| format!("--channel {name}: no such channel")),
        None => match with_contract.as_slice() {
            [one] => Ok(*one),
            [] => Err("--body: no channel has a contract".to_string()),
            _ => Err(format!(
                "--body: {} channels have a contract; name one with --channel",
                with_contract.len()
            )),
        },
    };
    let (i, channel) = match chosen {
        Ok(c) => c,
        Err(reason) => return (Vec::new(), vec![ConfigError::new("", reason)]),
    };
    let path = format!("channels[{i}].contract");
    let Some(contract) = &channel.contract else {
        let reason = format!(
            "channel {} has no contract to check bodies against",
            channel.name
        );
        return (Vec::new(), vec![ConfigError::new(path, reason)]);
    };
    let mut notes = Vec::new();
    let mut errors = Vec::new();
    for file in &opts.bodies {
        let shown = file.display();
        match std::fs::read(file) {
            Err(e) => errors.push(ConfigError::new(
                "",
                format!("body {shown}: cannot read: {e}"),
            )),
            Ok(body) => match contract.check(&body) {
                Ok(()) => notes.push(format!(
                    "body {shown} satisfies the contract of channel {}",
                    channel.name
                )),
                Err(breach) => errors.push(ConfigError::new(
                    path.clone(),
                    format!("body {shown} fails: {breach}"),
                )),
            },
        }
    }
    (notes, errors)
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
            "contract",
            policy
                .channels
                .iter()
                .filter(|c| c.contract.is_some())
                .count(),
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

    fn targets(yaml: &str) -> Vec<Target> {
        let doc: Value = serde_yaml_ng::from_str(yaml).unwrap();
        assert!(is_envoy_config(&doc));
        bootstrap_targets(&doc, "b.yaml")
    }

    #[test]
    fn finds_callback_guard_filters_in_a_bootstrap() {
        let found = targets(
            r#"
static_resources:
  listeners:
  - filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: other
                vm_config: { code: { local: { filename: other.wasm } } }
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                root_id: callback-guard
                allow_on_headers_stop_iteration: true
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{"channels": []}'
"#,
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].label,
            "b.yaml (static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[1].typed_config.config)"
        );
        assert_eq!(found[0].config, json!({"channels": []}));
        assert!(found[0].manifest_errors.is_empty());
    }

    #[test]
    fn blank_files_are_recognised() {
        assert!(is_blank("\n  \n# only a comment\n---\n"));
        assert!(!is_blank("channels: []"));
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

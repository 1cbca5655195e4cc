//! `kubectl apply -k DIR` without kubectl: renders a kustomization the way
//! kustomize does, for the features `istio/` uses and no others.
//!
//! No kustomize binary can be installed by `make test` on a fresh machine
//! (none is on PyPI, npm or crates.io, and none may be downloaded), so the
//! tests render the overlays here. Anything outside this subset is refused,
//! so a kustomization cannot start using a feature these tests would
//! silently ignore:
//!
//! - `resources`: files (YAML, one or more documents) inside the
//!   kustomization's directory, or directories holding a kustomization
//!   (anywhere: kustomize's default load restrictor allows `../base`, not
//!   `../base/file.yaml`);
//! - `configMapGenerator` with `files` and `options.labels`, and
//!   `generatorOptions.disableNameSuffixHash: true` (no hashed names);
//! - `patches` with a `target` (kind, name) and an inline JSON6902 `patch`
//!   (`add`, `replace`, `remove`; `replace` and `remove` need the path to
//!   exist, and a patch must match an object, as kustomize requires);
//! - `namespace`: sets `metadata.namespace` on every object (all the kinds
//!   used are namespaced);
//! - `labels` with `pairs` and `includeSelectors: false`: sets
//!   `metadata.labels` only.
//!
//! Order as in kustomize: resources and generators, then patches, then the
//! namespace and label transformers; a base is built whole before the
//! kustomization that includes it transforms it. Two objects with the same
//! kind, namespace and name are an error, as in kustomize.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

pub const KUSTOMIZATION: &str = "kustomization.yaml";

/// What the renderer accepts at the top of a kustomization.
const KNOWN_KEYS: [&str; 8] = [
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "patches",
    "configMapGenerator",
    "generatorOptions",
];

pub fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|de| Value::deserialize(de).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// The kustomization in `dir`, as YAML.
pub fn kustomization(dir: &Path) -> Value {
    let path = dir.join(KUSTOMIZATION);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    yaml_documents(&text).remove(0)
}

/// Renders the kustomization in `dir`.
pub fn build(dir: &Path) -> Vec<Value> {
    build_with(dir, &kustomization(dir))
}

/// Renders `k` as if it were the kustomization in `dir` (to test edits).
pub fn build_with(dir: &Path, k: &Value) -> Vec<Value> {
    let at = dir.display().to_string();
    assert_eq!(k["apiVersion"], "kustomize.config.k8s.io/v1beta1", "{at}");
    assert_eq!(k["kind"], "Kustomization", "{at}");
    for key in k.as_object().unwrap().keys() {
        assert!(
            KNOWN_KEYS.contains(&key.as_str()),
            "{at}: `{key}` is outside the kustomize subset the tests render"
        );
    }
    let mut out = Vec::new();
    for r in list(&k["resources"]) {
        let rel = r.as_str().unwrap();
        let path = dir.join(rel);
        if path.is_dir() {
            assert!(
                path.join(KUSTOMIZATION).is_file(),
                "{at}: {rel} has no kustomization"
            );
            out.extend(build(&path));
        } else {
            assert!(
                !rel.contains(".."),
                "{at}: {rel}: kustomize refuses a file outside the kustomization's directory"
            );
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{at}: resource {rel}: {e}"));
            out.extend(yaml_documents(&text));
        }
    }
    for g in list(&k["configMapGenerator"]) {
        assert_eq!(
            k["generatorOptions"]["disableNameSuffixHash"], true,
            "{at}: generated names would get a hash suffix"
        );
        for key in g.as_object().unwrap().keys() {
            assert!(
                ["name", "files", "options"].contains(&key.as_str()),
                "{at}: configMapGenerator.{key} is outside the subset"
            );
        }
        let mut data = serde_json::Map::new();
        for f in list(&g["files"]) {
            let rel = f.as_str().unwrap();
            assert!(!rel.contains("..") && !rel.contains('='), "{at}: {rel}");
            let text = std::fs::read_to_string(dir.join(rel))
                .unwrap_or_else(|e| panic!("{at}: configMapGenerator file {rel}: {e}"));
            let key = Path::new(rel).file_name().unwrap().to_string_lossy();
            data.insert(key.to_string(), json!(text));
        }
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": g["name"]}, "data": data});
        if let Some(labels) = g["options"]["labels"].as_object() {
            cm["metadata"]["labels"] = json!(labels);
        }
        out.push(cm);
    }
    for p in list(&k["patches"]) {
        apply_patch(&at, &p, &mut out);
    }
    if let Some(ns) = k["namespace"].as_str() {
        for doc in &mut out {
            doc["metadata"]["namespace"] = json!(ns);
        }
    }
    for l in list(&k["labels"]) {
        assert_eq!(
            l.get("includeSelectors").cloned().unwrap_or(json!(false)),
            json!(false),
            "{at}: labels with includeSelectors are outside the subset"
        );
        assert!(
            l.get("includeTemplates").is_none(),
            "{at}: includeTemplates"
        );
        let pairs = l["pairs"].as_object().expect("labels[].pairs");
        for doc in &mut out {
            let meta = doc["metadata"].as_object_mut().unwrap();
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            for (key, value) in pairs {
                labels[key] = json!(value.as_str().expect("label values are strings"));
            }
        }
    }
    let mut ids: Vec<String> = out.iter().map(id).collect();
    ids.sort();
    for w in ids.windows(2) {
        assert_ne!(w[0], w[1], "{at}: two objects {}", w[0]);
    }
    out
}

/// `Kind namespace/name`.
pub fn id(doc: &Value) -> String {
    format!(
        "{} {}/{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["namespace"].as_str().unwrap_or(""),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn list(v: &Value) -> Vec<Value> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(a) => a.clone(),
        other => panic!("expected a list, got {other}"),
    }
}

fn apply_patch(at: &str, p: &Value, docs: &mut [Value]) {
    for key in p.as_object().unwrap().keys() {
        assert!(
            ["target", "patch"].contains(&key.as_str()),
            "{at}: patches[].{key} is outside the subset (inline JSON6902 with a target)"
        );
    }
    let target = &p["target"];
    for key in target.as_object().expect("patches[].target").keys() {
        assert!(
            ["kind", "name"].contains(&key.as_str()),
            "{at}: target.{key}"
        );
    }
    let ops = yaml_documents(p["patch"].as_str().expect("an inline patch"));
    assert_eq!(ops.len(), 1, "{at}: one JSON6902 list per patch");
    let ops = ops[0]
        .as_array()
        .expect("a JSON6902 patch is a list")
        .clone();
    let mut matched = 0;
    for doc in docs.iter_mut() {
        if doc["kind"] != target["kind"] || doc["metadata"]["name"] != target["name"] {
            continue;
        }
        matched += 1;
        for op in &ops {
            json6902(doc, op).unwrap_or_else(|e| panic!("{at}: patch on {}: {e}", id(doc)));
        }
    }
    assert!(matched > 0, "{at}: patch target {target} matches nothing");
}

/// One JSON6902 operation (`add`, `replace`, `remove`).
pub fn json6902(doc: &mut Value, op: &Value) -> Result<(), String> {
    let path = op["path"].as_str().ok_or("no path")?;
    let tokens: Vec<String> = path
        .strip_prefix('/')
        .ok_or_else(|| format!("{path}: not a JSON pointer"))?
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let (last, parents) = tokens.split_last().unwrap();
    let mut node = doc;
    for t in parents {
        node = match node {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("{path}: {t} does not exist"))?;
    }
    let kind = op["op"].as_str().ok_or("no op")?;
    let value = op.get("value").cloned();
    match (kind, node) {
        ("add", Value::Object(m)) => {
            m.insert(last.clone(), value.ok_or("add without a value")?);
        }
        ("add", Value::Array(a)) => {
            let v = value.ok_or("add without a value")?;
            if last == "-" {
                a.push(v);
            } else {
                let i: usize = last.parse().map_err(|_| format!("{path}: bad index"))?;
                if i > a.len() {
                    return Err(format!("{path}: index out of range"));
                }
                a.insert(i, v);
            }
        }
        ("replace", Value::Object(m)) if m.contains_key(last) => {
            m.insert(last.clone(), value.ok_or("replace without a value")?);
        }
        ("replace", Value::Array(a)) => {
            let slot = last
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get_mut(i))
                .ok_or_else(|| format!("{path} does not exist"))?;
            *slot = value.ok_or("replace without a value")?;
        }
        ("remove", Value::Object(m)) => {
            m.remove(last)
                .ok_or_else(|| format!("{path} does not exist"))?;
        }
        ("remove", Value::Array(a)) => {
            let i = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
                .ok_or_else(|| format!("{path} does not exist"))?;
            a.remove(i);
        }
        (kind, _) => return Err(format!("{kind} {path}: unsupported or target missing")),
    }
    Ok(())
}

/// The overlays under `istio/overlays`, sorted.
pub fn overlays(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("istio/overlays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join(KUSTOMIZATION).is_file())
        .collect();
    dirs.sort();
    dirs
}

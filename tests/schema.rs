#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `schema/callback-guard.schema.json` is generated from the config types
//! (`make schema`) and must not drift from them; it describes every shipped
//! policy; and `docs/configuration.md` documents exactly its fields.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Command;
use support::repo_root;

const SCHEMA_FILE: &str = "schema/callback-guard.schema.json";

fn generated() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_callback-guard"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn checked_in() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo_root().join(SCHEMA_FILE)).unwrap()).unwrap()
}

#[test]
fn checked_in_schema_matches_the_types() {
    let file = std::fs::read_to_string(repo_root().join(SCHEMA_FILE)).unwrap();
    assert!(
        file == generated(),
        "{SCHEMA_FILE} is out of date with src/config: run `make schema` and commit it"
    );
}

fn validator() -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&checked_in())
        .unwrap()
}

/// Every policy the repository ships: the Istio manifests' and the demo
/// Envoy config's.
fn shipped_policies() -> Vec<(String, Value)> {
    use serde::Deserialize;
    let mut out = Vec::new();
    let mut files = vec![repo_root().join("envoy/envoy.yaml")];
    for dir in [
        "istio/overlays/sidecar-envoyfilter",
        "istio/overlays/sidecar-wasmplugin",
        "istio/overlays/gateway",
        "istio/overlays/gateway-wasmplugin",
    ] {
        for entry in std::fs::read_dir(repo_root().join(dir)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, de) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let doc = Value::deserialize(de).unwrap();
            let name = format!("{} document {}", file.display(), i + 1);
            if doc["kind"] == "WasmPlugin" {
                out.push((name.clone(), doc["spec"]["pluginConfig"].clone()));
            }
            collect_configurations(&doc, &name, &mut out);
        }
    }
    assert!(out.len() >= 5, "{out:?}");
    out
}

/// Every wasm `configuration` StringValue anywhere in a document.
fn collect_configurations(v: &Value, name: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(map) => {
            if let Some(c) = map.get("configuration")
                && c["@type"] == "type.googleapis.com/google.protobuf.StringValue"
            {
                out.push((
                    name.to_string(),
                    serde_json::from_str(c["value"].as_str().unwrap()).unwrap(),
                ));
            }
            map.values()
                .for_each(|c| collect_configurations(c, name, out));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|c| collect_configurations(c, name, out)),
        _ => {}
    }
}

#[test]
fn schema_names_itself_and_knows_defaults_and_closed_values() {
    let schema = checked_in();
    assert_eq!(schema["$id"], "urn:callback-guard:schema:configuration");
    let defs = &schema["$defs"];
    assert_eq!(
        defs["ChannelSpec"]["properties"]["max_body_bytes"]["default"],
        1_048_576
    );
    assert_eq!(
        defs["SignatureSpec"]["properties"]["tolerance_s"]["default"],
        300
    );
    assert_eq!(schema["properties"]["hold_headers"]["default"], true);
    assert_eq!(
        defs["EmptySpec"]["properties"]["action"]["default"],
        "reply"
    );
    assert_eq!(
        defs["RefusalLogSpec"]["properties"]["level"]["default"],
        "info"
    );
    // Closed string values are serde enums: the schema lists them.
    let closed = |spec: &str, field: &str| -> Value {
        let prop = &defs[spec]["properties"][field];
        let prop = match &prop["anyOf"] {
            Value::Array(any) => &any[0],
            _ if prop["type"] == "array" => &prop["items"],
            _ => prop,
        };
        let name = prop["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{spec}.{field}: {prop}"));
        let def = &defs[name.trim_start_matches("#/$defs/")];
        // A plain `enum`, or a `oneOf` of documented `const`s.
        match &def["oneOf"] {
            Value::Array(variants) => variants.iter().map(|v| v["const"].clone()).collect(),
            _ => def["enum"].clone(),
        }
    };
    assert_eq!(
        closed("SignatureSpec", "algorithm"),
        json!(["sha1", "sha256", "sha512"])
    );
    assert_eq!(
        closed("SignatureSpec", "encoding"),
        json!(["hex", "base64"])
    );
    assert_eq!(
        closed("MaskSpec", "detectors"),
        json!(["email", "phone", "card", "cn_id"])
    );
    assert_eq!(
        closed("MaskSpec", "strategy"),
        json!(["redact", "partial", "hash"])
    );
    assert_eq!(
        closed("RuleSpec", "priority"),
        json!(["high", "normal", "low"])
    );
    assert_eq!(closed("RuleSpec", "effect"), json!(["allow", "deny"]));
    assert_eq!(
        closed("AdmissionSpec", "unauthorized_high"),
        json!(["demote", "reject"])
    );
    assert_eq!(
        closed("SignatureSpec", "scheme"),
        json!([
            "standard-webhooks",
            "svix",
            "stripe",
            "github",
            "slack",
            "shopify",
            "hmac"
        ])
    );
    assert_eq!(defs["ClusterSpec"]["properties"]["weight"]["minimum"], 1);
}

#[test]
fn schema_describes_every_shipped_policy() {
    let validator = validator();
    for (name, policy) in shipped_policies() {
        let errors: Vec<String> = validator
            .iter_errors(&policy)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}:\n{}", errors.join("\n"));
    }
}

#[test]
fn schema_refuses_what_the_parser_refuses_by_shape() {
    let validator = validator();
    let good = json!({"channels": [{"name": "p", "match": {"path_prefix": "/p"},
        "signature": {"scheme": "github", "secrets": [{"env": "S"}]}}]});
    assert!(validator.is_valid(&good));
    for (bad, what) in [
        (json!({"channel": []}), "unknown top-level key"),
        (
            json!({"channels": [{"name": "p", "match": {"path_prefix": "/p"}, "bogus": 1}]}),
            "unknown channel key",
        ),
        (json!({"channels": [{"name": "p"}]}), "missing match"),
        (
            json!({"channels": [{"name": "p", "match": {"path_prefix": "/p"}, "max_body_bytes": -1}]}),
            "negative size",
        ),
        (
            json!({"channels": [{"name": "p", "match": {"path_prefix": "/p"},
                   "signature": {"scheme": "github", "secrets": [{"env": "S", "file": "/x"}]}}]}),
            "unknown secret key",
        ),
        (
            json!({"channels": [{"name": "p", "match": {"path_prefix": "/p"}, "empty": {"action": "drop"}}]}),
            "unknown empty action",
        ),
        (
            json!({"admission": {"limits": {"high": {"rps": 1}}}}),
            "bucket without burst",
        ),
        // Closed values, ranges and patterns (schemars attributes).
        (
            json!({"channels": [{"name": "Bad Name", "match": {"path_prefix": "/p"}}]}),
            "channel name outside [a-z0-9_-]",
        ),
        (
            json!({"channels": [{"name": "p", "match": {"path_prefix": "p"}}]}),
            "relative path prefix",
        ),
        (
            json!({"channels": [{"name": "p", "match": {"path_prefix": "/p"}, "max_body_bytes": 0}]}),
            "zero body limit",
        ),
        (
            json!({"channels": [{"name": "p", "match": {"path_prefix": "/p"}, "max_body_bytes": 67_108_865}]}),
            "body limit over 64 MiB",
        ),
        (
            json!({"channels": [{"name": "p", "match": {"path_prefix": "/p"},
                   "signature": {"scheme": "stripe2", "secrets": [{"env": "S"}]}}]}),
            "unknown scheme",
        ),
        (
            json!({"channels": [{"name": "p", "match": {"path_prefix": "/p"},
                   "signature": {"scheme": "stripe", "secrets": [{"env": "S"}], "tolerance_s": 0}}]}),
            "zero tolerance",
        ),
        (
            json!({"channels": [{"name": "p", "match": {"path_prefix": "/p"},
                   "signature": {"scheme": "hmac", "secrets": [{"env": "S"}], "header": "x-sig", "algorithm": "md5"}}]}),
            "unknown hmac algorithm",
        ),
        (
            json!({"channels": [{"name": "p", "match": {"path_prefix": "/p"},
                   "signature": {"scheme": "github", "secrets": [{"env": "S"}]}, "dedup": {"window_s": 0}}]}),
            "zero dedup window",
        ),
        (
            json!({"channels": [{"name": "p", "match": {"path_prefix": "/p"}, "mask": {"detectors": ["ssn"]}}]}),
            "unknown detector",
        ),
        (
            json!({"channels": [{"name": "p", "match": {"path_prefix": "/p"}, "mask": {"fields": ["a"], "strategy": "blur"}}]}),
            "unknown mask strategy",
        ),
        (
            json!({"channels": [{"name": "p", "match": {"path_prefix": "/p"},
                   "routing": {"clusters": [{"name": "a", "weight": 0}]}}]}),
            "zero weight",
        ),
        (
            json!({"channels": [{"name": "p", "match": {"path_prefix": "/p"}, "routing": {"clusters": []}}]}),
            "routing without clusters",
        ),
        (
            json!({"admission": {"rules": [{"priority": "urgent", "principals": ["*"], "effect": "allow"}]}}),
            "unknown priority",
        ),
        (
            json!({"admission": {"rules": [{"priority": "high", "principals": ["*"], "effect": "maybe"}]}}),
            "unknown effect",
        ),
        (
            json!({"admission": {"unauthorized_high": "drop"}}),
            "unknown unauthorized_high",
        ),
        (
            json!({"admission": {"capacity": {"rps": 0, "burst": 10}}}),
            "zero rate",
        ),
        (json!({"refusal_log": {"per_second": 0}}), "zero log rate"),
        (
            json!({"reject_unmatched": ["callbacks/"]}),
            "relative guard prefix",
        ),
    ] {
        assert!(!validator.is_valid(&bad), "schema accepted {what}: {bad}");
        // And the filter's parser refuses it too.
        assert!(
            callback_guard::config::load(bad.to_string().as_bytes(), &|_| Some("k".into()))
                .is_err(),
            "parser accepted {what}"
        );
    }
}

/// Every field of the schema as a documentation path:
/// `channels[].signature.secrets[].env`.
fn schema_paths(schema: &Value) -> BTreeSet<String> {
    fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
        if let Some(r) = node["$ref"].as_str() {
            let name = r.trim_start_matches("#/$defs/");
            return resolve(root, &root["$defs"][name]);
        }
        if let Some(alts) = node["anyOf"].as_array()
            && let Some(a) = alts.iter().find(|a| a["type"] != "null")
        {
            return resolve(root, a);
        }
        node
    }
    fn walk(root: &Value, node: &Value, path: &str, out: &mut BTreeSet<String>) {
        let node = resolve(root, node);
        if let Some(props) = node["properties"].as_object() {
            for (k, v) in props {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                out.insert(p.clone());
                walk(root, v, &p, out);
            }
        }
        if node["items"].is_object() {
            walk(root, &node["items"], &format!("{path}[]"), out);
        }
    }
    let mut out = BTreeSet::new();
    walk(schema, schema, "", &mut out);
    out
}

#[test]
fn configuration_reference_documents_exactly_the_schema_fields() {
    let doc = std::fs::read_to_string(repo_root().join("docs/configuration.md")).unwrap();
    let fields = schema_paths(&checked_in());
    assert!(fields.len() > 40, "{fields:?}");
    // Field column of the reference tables: "| `path` | ...".
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |").map(|(path, _)| path.to_string()))
        .collect();
    let missing: Vec<_> = fields.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks {missing:?}"
    );
    let unknown: Vec<_> = documented.difference(&fields).collect();
    assert!(
        unknown.is_empty(),
        "docs/configuration.md documents {unknown:?}, not in the schema"
    );
}

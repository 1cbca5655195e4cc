//! `compile_mask`: every configuration error of a `mask` section, with its
//! field path.

use super::*;
use serde_json::json;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// The `hash_key` the tests use (also via `{"env": "MASK_HASH_KEY"}`).
const HASH_KEY: &str = "test-hash-key-0123456789";

fn path() -> FieldPath {
    FieldPath::root().key("channels").index(0).key("mask")
}

fn try_masker(spec: serde_json::Value) -> Result<Masker, ConfigError> {
    let spec: MaskSpec = serde_json::from_value(spec).unwrap();
    compile_mask(&spec, &path(), &|name| {
        (name == "MASK_HASH_KEY").then(|| HASH_KEY.to_string())
    })
}

/// The error of a whole document with this `mask` on its channel 0 (for
/// the checks serde makes).
fn load_err(mask: &str) -> String {
    let doc =
        format!(r#"{{"channels":[{{"name":"a","match":{{"path_prefix":"/"}},"mask":{mask}}}]}}"#);
    super::super::load(doc.as_bytes(), &|_| None)
        .map(|p| format!("unexpectedly loaded: {p:?}"))
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn compile_errors_name_the_field() {
    let cases = [
        (
            json!({"fields": ["phone", "ok", "a..b"]}),
            "channels[0].mask.fields[2]",
            "empty segment",
        ),
        (
            json!({"fields": ["a[0]"]}),
            "channels[0].mask.fields[0]",
            "only [*]",
        ),
        (
            json!({"fields": ["items[*"]}),
            "channels[0].mask.fields[0]",
            "unbalanced",
        ),
        (
            json!({"fields": [""]}),
            "channels[0].mask.fields[0]",
            "empty",
        ),
        (
            json!({"fields": ["x", "x"]}),
            "channels[0].mask.fields[1]",
            "duplicate",
        ),
        (
            json!({"detectors": ["card", "card"]}),
            "channels[0].mask.detectors[1]",
            "duplicate",
        ),
        (
            json!({"fields": ["x"], "strategy": "hash", "replacement": "#"}),
            "channels[0].mask.replacement",
            "only used by",
        ),
        (
            json!({"fields": ["x"], "strategy": "hash"}),
            "channels[0].mask.hash_key",
            "required with strategy \"hash\": an unkeyed hash",
        ),
        (
            json!({"fields": ["x"], "strategy": "hash", "hash_key": {"value": "short"}}),
            "channels[0].mask.hash_key",
            "at least 16 bytes long, got 5",
        ),
        (
            json!({"fields": ["x"], "strategy": "hash", "hash_key": {"env": "UNSET"}}),
            "channels[0].mask.hash_key",
            "env var UNSET is not set",
        ),
        (
            json!({"fields": ["x"], "strategy": "hash", "hash_key": {"value": " padded-key-0123456789 "}}),
            "channels[0].mask.hash_key",
            "whitespace",
        ),
        (
            json!({"fields": ["x"], "hash_key": {"value": HASH_KEY}}),
            "channels[0].mask.hash_key",
            "only used by strategy \"hash\", not \"redact\"",
        ),
        (
            json!({"fields": ["x"], "max_depth": 0}),
            "channels[0].mask.max_depth",
            "between 1 and",
        ),
        (
            json!({"fields": ["x"], "max_depth": 5000}),
            "channels[0].mask.max_depth",
            "between 1 and",
        ),
        (json!({}), "channels[0].mask", "nothing to mask"),
    ];
    for (spec, want_path, want_reason) in cases {
        let err = try_masker(spec.clone()).unwrap_err();
        assert_eq!(err.path, want_path, "{spec}");
        assert!(err.reason.contains(want_reason), "{spec}: {}", err.reason);
    }
    // Closed values are serde enums: serde's message at the field's path,
    // listing the accepted names.
    let e = load_err(r#"{"detectors":["email","ssn"]}"#);
    assert_eq!(
        e,
        "channels[0].mask.detectors[1]: unknown variant `ssn`, expected one of `email`, `phone`, `card`, `cn_id`"
    );
    let e = load_err(r#"{"fields":["x"],"strategy":"shred"}"#);
    assert_eq!(
        e,
        "channels[0].mask.strategy: unknown variant `shred`, expected one of `redact`, `partial`, `hash`"
    );
    assert!(serde_json::from_value::<MaskSpec>(json!({"fields": [], "bogus": 1})).is_err());
    assert!(
        serde_json::from_value::<MaskSpec>(json!({"fields": ["x"], "case_sensitive": "yes"}))
            .is_err()
    );
}

#[test]
fn compiles_spec_example() {
    let m = try_masker(json!({
        "fields": ["phone", "id", "customer.email", "items[*].card_number"],
        "detectors": ["email", "phone", "card", "cn_id"],
        "strategy": "redact",
        "replacement": "***"
    }))
    .unwrap();
    assert_eq!(m.max_depth(), DEFAULT_MAX_DEPTH);
    for strategy in ["redact", "partial"] {
        assert!(try_masker(json!({"fields": ["a"], "strategy": strategy})).is_ok());
    }
    assert!(
        try_masker(
            json!({"fields": ["a"], "strategy": "hash", "hash_key": {"env": "MASK_HASH_KEY"}})
        )
        .is_ok()
    );
    let shallow = try_masker(json!({"fields": ["phone"], "max_depth": 2})).unwrap();
    assert_eq!(shallow.max_depth(), 2);
}

#[test]
fn compiled_masker_masks() {
    // The strategy, replacement, detectors and case folding reach the masker.
    let m = try_masker(json!({
        "fields": ["Phone"], "detectors": ["email"], "replacement": "#"
    }))
    .unwrap();
    let out = m.mask(br#"{"PHONE":"1","note":"mail a@b.io"}"#).unwrap();
    assert_eq!(
        String::from_utf8(out.body).unwrap(),
        r##"{"PHONE":"#","note":"mail #"}"##
    );
    assert_eq!(out.count, 2);
    let hashed = try_masker(
        json!({"fields": ["x"], "strategy": "hash", "hash_key": {"env": "MASK_HASH_KEY"}}),
    )
    .unwrap();
    let out = hashed.mask(br#"{"x":"13812345678"}"#).unwrap();
    let body = String::from_utf8(out.body).unwrap();
    assert!(body.contains("hmac-sha256:"), "{body}");
}

#[test]
fn hash_key_never_shows_in_debug() {
    let m =
        try_masker(json!({"fields": ["x"], "strategy": "hash", "hash_key": {"value": HASH_KEY}}))
            .unwrap();
    let shown = format!("{m:?}");
    assert!(!shown.contains(HASH_KEY), "{shown}");
    let spec: MaskSpec = serde_json::from_value(
        json!({"fields": ["x"], "strategy": "hash", "hash_key": {"value": HASH_KEY}}),
    )
    .unwrap();
    assert!(!format!("{spec:?}").contains(HASH_KEY));
}

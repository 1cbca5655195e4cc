//! Target `mask`: the JSON masker (`core::mask::Masker`), differentially
//! against serde_json.
//!
//! The first byte picks one of five maskers (fields with `redact`, `hash`
//! or `partial`; fields with `redact` and `case_sensitive`; all detectors
//! with `redact`), the rest is the body. Properties:
//! - invalid JSON is refused (an error, so no half-rewritten body exists);
//!   JSON that serde_json reads is never refused as malformed, and
//!   `TooDeep` only past `max_depth`;
//! - a masked body parses with serde_json and has the same structure:
//!   same object keys, same array lengths, and every value equal to the
//!   original except the selected fields (selection computed here from the
//!   field list: keys compared Unicode-lower-cased unless case-sensitive),
//!   which hold what the strategy makes of the original (`hash`: HMAC-SHA256
//!   under the key, computed here), and, with detectors, strings holding a
//!   digit or `@` (masked form contains the replacement) and numbers
//!   (replaced whole by the replacement, a string);
//! - nothing masked: the body comes back byte for byte;
//! - `Masker::applies`: a body that is a JSON object or array is masked
//!   whatever its content type says, or without one.

use callback_guard::config::{FieldPath, MaskSpec};
use callback_guard::core::mask::{MaskError, Masker};
use hmac::{Hmac, Mac};
use serde::de::IgnoredAny;
use serde_json::Value;
use sha2::Sha256;
use std::sync::OnceLock;

const MAX_DEPTH: usize = 32;
const REPLACEMENT: &str = "[M]";
const FIELDS: &str = r#"["secret", "a.b", "items[*].card"]"#;
/// The `hash_key` (at least 16 bytes).
const HASH_KEY: &str = "fuzz-mask-hash-key-0123456789";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Redact,
    Hash,
    Partial,
    /// `redact` with `case_sensitive: true`.
    Exact,
    Detect,
}

const KINDS: [Kind; 5] = [
    Kind::Redact,
    Kind::Hash,
    Kind::Partial,
    Kind::Exact,
    Kind::Detect,
];

fn maskers() -> &'static [Masker; 5] {
    static MASKERS: OnceLock<[Masker; 5]> = OnceLock::new();
    MASKERS.get_or_init(|| {
        KINDS.map(|kind| {
            let json = match kind {
                Kind::Redact => format!(
                    r#"{{"fields":{FIELDS},"replacement":"{REPLACEMENT}","max_depth":{MAX_DEPTH}}}"#
                ),
                Kind::Hash => format!(
                    r#"{{"fields":{FIELDS},"strategy":"hash","hash_key":{{"value":"{HASH_KEY}"}},"max_depth":{MAX_DEPTH}}}"#
                ),
                Kind::Exact => format!(
                    r#"{{"fields":{FIELDS},"case_sensitive":true,"replacement":"{REPLACEMENT}","max_depth":{MAX_DEPTH}}}"#
                ),
                Kind::Partial => {
                    format!(r#"{{"fields":{FIELDS},"strategy":"partial","max_depth":{MAX_DEPTH}}}"#)
                }
                Kind::Detect => format!(
                    r#"{{"detectors":["email","phone","card","cn_id"],"replacement":"{REPLACEMENT}","max_depth":{MAX_DEPTH}}}"#
                ),
            };
            let spec: MaskSpec = match serde_json::from_str(&json) {
                Ok(s) => s,
                Err(e) => panic!("fuzz mask spec: {e}"),
            };
            match callback_guard::config::compile_mask(&spec, &FieldPath::root().key("mask"), &|_| None) {
                Ok(m) => m,
                Err(e) => panic!("fuzz mask spec: {e}"),
            }
        })
    })
}

pub fn check(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let i = usize::from(selector) % KINDS.len();
    let (kind, masker) = (KINDS[i], &maskers()[i]);
    let result = masker.mask(body);

    let strict = serde_json::from_slice::<Value>(body).ok();
    if matches!(strict, Some(Value::Object(_) | Value::Array(_))) {
        for content_type in [None, Some("text/plain"), Some("application/octet-stream")] {
            assert!(
                Masker::applies(content_type, body),
                "a JSON {} body under {content_type:?} is not masked",
                if body.trim_ascii_start().starts_with(b"[") {
                    "array"
                } else {
                    "object"
                }
            );
        }
    }
    // Grammar only (numbers out of f64 range and lone surrogate escapes
    // are valid RFC 8259 that serde_json's Value refuses).
    let grammatical =
        std::str::from_utf8(body).is_ok() && serde_json::from_slice::<IgnoredAny>(body).is_ok();
    let masked = match result {
        Err(MaskError::BadJson) => {
            assert!(strict.is_none(), "valid JSON refused as malformed");
            return;
        }
        Err(MaskError::TooDeep) => {
            if let Some(v) = &strict {
                assert!(
                    depth(v) > MAX_DEPTH,
                    "depth {} refused as too deep",
                    depth(v)
                );
            }
            return;
        }
        Ok(m) => m,
    };
    assert!(grammatical, "invalid JSON accepted");
    if masked.count == 0 {
        assert_eq!(masked.body, body, "nothing masked, yet the body changed");
    }
    let out = std::str::from_utf8(&masked.body).map(|_| ());
    assert!(out.is_ok(), "masked body is not UTF-8");
    let Some(original) = strict else {
        // Valid but outside serde_json's Value: the result must still be
        // grammatical JSON.
        assert!(serde_json::from_slice::<IgnoredAny>(&masked.body).is_ok());
        return;
    };
    assert!(depth(&original) <= MAX_DEPTH, "too deep, yet accepted");
    let rewritten: Value = match serde_json::from_slice(&masked.body) {
        Ok(v) => v,
        Err(e) => panic!("masked body does not parse: {e}"),
    };
    let mut path = Vec::new();
    same_but_masked(kind, &original, &rewritten, &mut path);
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index,
}

/// Is the value at `path` selected by `FIELDS`? Keys compare
/// Unicode-lower-cased unless `exact`.
fn selected(path: &[Step], exact: bool) -> bool {
    let key = |s: &Step, k: &str| match s {
        Step::Key(x) if exact => x == k,
        Step::Key(x) => x.chars().flat_map(char::to_lowercase).eq(k.chars()),
        Step::Index => false,
    };
    match path {
        [.., last] if key(last, "secret") => true,
        [a, b] => key(a, "a") && key(b, "b"),
        [a, Step::Index, c] => key(a, "items") && key(c, "card"),
        _ => false,
    }
}

fn same_but_masked(kind: Kind, orig: &Value, out: &Value, path: &mut Vec<Step>) {
    if kind != Kind::Detect && selected(path, kind == Kind::Exact) {
        replaced(kind, orig, out, path);
        return;
    }
    match (orig, out) {
        (Value::Object(a), Value::Object(b)) => {
            assert!(a.keys().eq(b.keys()), "keys changed at {path:?}");
            for (k, v) in a {
                path.push(Step::Key(k.clone()));
                if let Some(w) = b.get(k) {
                    same_but_masked(kind, v, w, path);
                }
                path.pop();
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "array length changed at {path:?}");
            for (v, w) in a.iter().zip(b) {
                path.push(Step::Index);
                same_but_masked(kind, v, w, path);
                path.pop();
            }
        }
        (Value::String(a), Value::String(b)) if kind == Kind::Detect && a != b => {
            assert!(
                a.bytes().any(|c| c.is_ascii_digit() || c == b'@'),
                "detector rewrote {a:?} at {path:?}"
            );
            assert!(b.contains(REPLACEMENT), "{a:?} became {b:?} at {path:?}");
        }
        // A number a detector recognises is replaced whole, by a string.
        (Value::Number(a), Value::String(b)) if kind == Kind::Detect => {
            assert_eq!(b, REPLACEMENT, "number {a} at {path:?}");
        }
        _ => assert_eq!(orig, out, "unselected value changed at {path:?}"),
    }
}

/// What the strategy makes of a selected value.
fn replaced(kind: Kind, orig: &Value, out: &Value, path: &[Step]) {
    let Value::String(got) = out else {
        panic!("selected value at {path:?} is not a string: {out}");
    };
    match (kind, orig) {
        (Kind::Redact | Kind::Exact, _) => assert_eq!(got, REPLACEMENT, "at {path:?}"),
        (Kind::Hash, Value::String(s)) => {
            let mut mac = match Hmac::<Sha256>::new_from_slice(HASH_KEY.as_bytes()) {
                Ok(m) => m,
                Err(e) => panic!("{e}"),
            };
            mac.update(s.as_bytes());
            let digest = super::util::hex(&mac.finalize().into_bytes()[..16]);
            assert_eq!(got, &format!("hmac-sha256:{digest}"), "at {path:?}");
        }
        (Kind::Hash, _) => {
            // HMAC of the value's raw text (not recomputed here: serde
            // does not keep it).
            let hex = got.strip_prefix("hmac-sha256:").unwrap_or("");
            assert!(
                hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{got:?}"
            );
        }
        (Kind::Partial, Value::String(s)) => {
            let n = s.chars().count();
            let keep = if n < 8 { 0 } else { 4 };
            let want: String = std::iter::repeat_n('*', n - keep)
                .chain(s.chars().skip(n - keep))
                .collect();
            assert_eq!(got, &want, "at {path:?}");
        }
        (Kind::Partial, Value::Object(_) | Value::Array(_)) => assert_eq!(got, "****"),
        (Kind::Partial, _) => {
            let stars = got.chars().take_while(|&c| c == '*').count();
            assert!(stars >= got.chars().count() / 2, "{got:?} at {path:?}");
        }
        (Kind::Detect, _) => panic!("detectors select no fields"),
    }
}

/// Nesting of objects and arrays: a scalar is 0, `[]` is 1.
fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn oracle_accepts_right_masking() {
        let orig = json!({"secret": {"n": 1}, "a": {"b": "x", "c": 2}, "items": [{"card": 4}]});
        let out = json!({"secret": "[M]", "a": {"b": "[M]", "c": 2}, "items": [{"card": "[M]"}]});
        same_but_masked(Kind::Redact, &orig, &out, &mut Vec::new());
    }

    #[test]
    fn oracle_selects_keys_case_insensitively_unless_exact() {
        let orig = json!({"SECRET": 1, "A": {"b": 2}});
        let out = json!({"SECRET": "[M]", "A": {"b": "[M]"}});
        same_but_masked(Kind::Redact, &orig, &out, &mut Vec::new());
        same_but_masked(Kind::Exact, &orig, &orig, &mut Vec::new());
    }

    #[test]
    #[should_panic(expected = "unselected value changed")]
    fn oracle_flags_an_exact_masker_folding_case() {
        let orig = json!({"SECRET": 1});
        same_but_masked(
            Kind::Exact,
            &orig,
            &json!({"SECRET": "[M]"}),
            &mut Vec::new(),
        );
    }

    #[test]
    fn oracle_accepts_a_detected_number() {
        let orig = json!({"n": 13812345678u64, "s": "call 13812345678"});
        let out = json!({"n": "[M]", "s": "call [M]"});
        same_but_masked(Kind::Detect, &orig, &out, &mut Vec::new());
    }

    #[test]
    #[should_panic(expected = "at [Key(\"secret\")]")]
    fn oracle_flags_an_unkeyed_hash() {
        use sha2::Digest;
        let digest = super::super::util::hex(&Sha256::digest(b"x")[..16]);
        let out = json!({ "secret": format!("hmac-sha256:{digest}") });
        same_but_masked(Kind::Hash, &json!({"secret": "x"}), &out, &mut Vec::new());
    }

    #[test]
    #[should_panic(expected = "unselected value changed")]
    fn oracle_flags_a_changed_unselected_value() {
        same_but_masked(
            Kind::Redact,
            &json!({"c": 1}),
            &json!({"c": 2}),
            &mut Vec::new(),
        );
    }

    #[test]
    #[should_panic]
    fn oracle_flags_a_selected_value_left_alone() {
        let v = json!({"items": [{"card": "4111"}]});
        same_but_masked(Kind::Redact, &v, &v, &mut Vec::new());
    }
}

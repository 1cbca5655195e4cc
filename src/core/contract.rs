//! Body contracts (`channels[].contract`): a JSON Schema (draft 2020-12)
//! every callback body of a channel must satisfy.
//!
//! The schema is compiled once, when the configuration loads
//! ([`Contract::compile`]); [`Contract::check`] then answers, per body,
//! `Ok` or where the body breaks the contract: at most
//! [`MAX_REPORTED`] instance JSON pointers (RFC 6901), each with the
//! schema keyword that failed. A failure names *where*, never *what*: no
//! value of the body is ever copied into it (a `required` failure names
//! the missing member, which comes from the schema).
//!
//! Validator: `boon` (draft 2020-12; passes the official
//! JSON-Schema-Test-Suite). Its URL loader is replaced by one that loads
//! nothing, so no remote or file `$ref` resolution exists (a schema must be
//! self-contained; the standard meta-schemas are built in). `pattern` runs
//! on the linear-time `regex` crate, so a body cannot make a pattern
//! backtrack. `format` is an annotation, as draft 2020-12 says by default.
//!
//! ```
//! # #[cfg(feature = "contract")] {
//! use callback_guard::core::contract::Contract;
//! let schema = serde_json::json!({
//!     "type": "object",
//!     "required": ["id"],
//!     "properties": {"amount": {"type": "integer"}}
//! });
//! let contract = Contract::compile(&schema).unwrap();
//! assert!(contract.check(br#"{"id":"a","amount":3}"#).is_ok());
//! let err = contract.check(br#"{"amount":"3"}"#).unwrap_err();
//! assert_eq!(err.to_string(), "/amount (type), /id (required)");
//! # }
//! ```

#[cfg(feature = "contract")]
use serde_json::Value;
use std::fmt;

/// Most failures one answer names; further ones are summarised as a count.
pub const MAX_REPORTED: usize = 8;
/// Longest pointer reported; a longer one is cut (its tokens are body keys).
pub const MAX_POINTER_BYTES: usize = 128;

/// A channel's compiled contract.
#[cfg(feature = "contract")]
pub struct Contract {
    schemas: boon::Schemas,
    root: boon::SchemaIndex,
}

/// Without the cargo feature `contract` no contract can exist (the
/// configuration refuses the key), so the body step is a no-op.
#[cfg(not(feature = "contract"))]
#[derive(Debug)]
pub enum Contract {}

#[cfg(not(feature = "contract"))]
impl Contract {
    pub fn check(&self, _body: &[u8]) -> Result<(), Breach> {
        match *self {}
    }
}

#[cfg(feature = "contract")]
impl fmt::Debug for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Contract")
    }
}

/// Why a schema does not compile: the JSON pointer inside the schema and
/// the validator's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    pub pointer: String,
    pub reason: String,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breach {
    /// The body is not JSON (or nests deeper than the JSON parser's limit
    /// of 128).
    NotJson,
    /// The body is JSON but breaks the contract.
    Violations(Violations),
}

/// Where a body breaks its contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violations {
    /// At most [`MAX_REPORTED`] (the validator's first), sorted by pointer.
    pub failures: Vec<Failure>,
    /// How many more failures were found and not listed.
    pub more: usize,
}

/// One failure: the instance pointer and the failing schema keyword.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// RFC 6901 pointer into the body (`""` is the whole body).
    pub pointer: String,
    /// The keyword that failed (`type`, `required`, ...).
    pub keyword: String,
}

impl fmt::Display for Violations {
    /// `/amount (type), /id (required)`; the root is written `""`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if failure.pointer.is_empty() {
                f.write_str("\"\"")?;
            } else {
                f.write_str(&failure.pointer)?;
            }
            write!(f, " ({})", failure.keyword)?;
        }
        if self.more > 0 {
            write!(f, " and {} more", self.more)?;
        }
        Ok(())
    }
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson => f.write_str("not JSON"),
            Self::Violations(v) => v.fmt(f),
        }
    }
}

/// Where the schema "lives" for `boon`: relative `$ref`s resolve against
/// it, and nothing under it (or anywhere) can be loaded.
#[cfg(feature = "contract")]
const SCHEMA_URL: &str = "https://contract.callback-guard.invalid/schema.json";

/// The URL loader of every contract: it loads nothing, so a `$ref` outside
/// the schema (`https:`, `file:`, a relative file) fails to compile.
#[cfg(feature = "contract")]
struct NoLoader;

#[cfg(feature = "contract")]
impl boon::UrlLoader for NoLoader {
    fn load(&self, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Err(format!("{url}: a contract must be self-contained (no remote or file $ref)").into())
    }
}

#[cfg(feature = "contract")]
impl Contract {
    /// Compiles a draft 2020-12 schema (a `$schema` naming another draft is
    /// honoured). Refused: a schema the meta-schema rejects, a `$ref` that
    /// is not inside the schema, a `pattern` the `regex` engine cannot
    /// compile.
    pub fn compile(schema: &Value) -> Result<Self, SchemaError> {
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(boon::Draft::V2020_12);
        compiler.use_loader(Box::new(NoLoader));
        let mut schemas = boon::Schemas::new();
        compiler
            .add_resource(SCHEMA_URL, schema.clone())
            .map_err(|e| schema_error(&e))?;
        let root = compiler
            .compile(SCHEMA_URL, &mut schemas)
            .map_err(|e| schema_error(&e))?;
        Ok(Self { schemas, root })
    }

    /// Checks one body.
    pub fn check(&self, body: &[u8]) -> Result<(), Breach> {
        let value: Value = serde_json::from_slice(body).map_err(|_| Breach::NotJson)?;
        self.check_value(&value).map_err(Breach::Violations)
    }

    /// Checks an already parsed body.
    pub fn check_value(&self, value: &Value) -> Result<(), Violations> {
        let Err(error) = self.schemas.validate(value, self.root) else {
            return Ok(());
        };
        let mut found = Found::default();
        collect(&error, &mut found);
        let mut failures = found.failures;
        // By pointer, so the answer reads the same whatever the schema's
        // keyword order.
        failures.sort_by(|a, b| (&a.pointer, &a.keyword).cmp(&(&b.pointer, &b.keyword)));
        if failures.is_empty() {
            // An error without a leaf: still a failure.
            failures.push(Failure {
                pointer: String::new(),
                keyword: "schema".to_string(),
            });
        }
        Err(Violations {
            failures,
            more: found.more,
        })
    }
}

/// The failures of one body, bounded.
#[cfg(feature = "contract")]
#[derive(Default)]
struct Found {
    failures: Vec<Failure>,
    more: usize,
}

#[cfg(feature = "contract")]
impl Found {
    fn push(&mut self, pointer: String, keyword: &str) {
        if self.failures.len() == MAX_REPORTED {
            self.more += 1;
            return;
        }
        self.failures.push(Failure {
            pointer: cut(pointer),
            keyword: keyword.to_string(),
        });
    }
}

/// The leaves of boon's error tree (one per failing keyword), each as its
/// instance pointer and keyword. `anyOf`/`oneOf`/`not`/`contains`/
/// `propertyNames` are reported themselves, not the branches that failed
/// inside them; `required` names each missing member's own pointer (the
/// name comes from the schema), `additionalProperties` each extra member's
/// pointer. Error messages are never used: they quote body values.
#[cfg(feature = "contract")]
fn collect(error: &boon::ValidationError<'_, '_>, found: &mut Found) {
    use boon::ErrorKind as K;
    let at = error.instance_location.to_string();
    let member = |name: &str| format!("{at}/{}", name.replace('~', "~0").replace('/', "~1"));
    match &error.kind {
        K::Group | K::Schema { .. } | K::Reference { .. } | K::AllOf => {
            for cause in &error.causes {
                collect(cause, found);
            }
            // A group without a cause to show: report the group itself.
            if error.causes.is_empty() {
                found.push(at, keyword(&error.kind));
            }
        }
        K::Required { want } => {
            for name in want {
                found.push(member(name), "required");
            }
        }
        K::AdditionalProperties { got } => {
            for name in got {
                found.push(member(name), "additionalProperties");
            }
        }
        K::DependentRequired { missing, .. } | K::Dependency { missing, .. }
            if !missing.is_empty() =>
        {
            for name in missing {
                found.push(member(name), keyword(&error.kind));
            }
        }
        kind => found.push(at, keyword(kind)),
    }
}

/// The schema keyword of an error kind.
#[cfg(feature = "contract")]
fn keyword(kind: &boon::ErrorKind<'_, '_>) -> &'static str {
    use boon::ErrorKind as K;
    match kind {
        K::FalseSchema => "false",
        K::AdditionalProperties { .. } => "additionalProperties",
        K::RefCycle { .. } => "$ref",
        K::Reference { kw, .. } => kw,
        other => other.keyword_path().map_or("schema", |p| p.keyword),
    }
}

/// A compile error as a pointer into the schema and a reason.
#[cfg(feature = "contract")]
fn schema_error(error: &boon::CompileError) -> SchemaError {
    use boon::CompileError as E;
    match error {
        // The schema breaks its meta-schema: where (the first failing
        // leaf) and what the meta-schema wanted there.
        E::ValidationError { src, .. } => {
            let mut leaf = src;
            while let Some(first) = leaf.causes.first() {
                if matches!(
                    leaf.kind,
                    boon::ErrorKind::AnyOf | boon::ErrorKind::OneOf(_)
                ) {
                    break;
                }
                leaf = first;
            }
            SchemaError {
                pointer: leaf.instance_location.to_string(),
                reason: format!("breaks the JSON Schema meta-schema: {}", leaf.kind),
            }
        }
        // Errors naming a place in the schema: the URL's fragment.
        E::InvalidRegex { url, regex, .. } => SchemaError {
            pointer: fragment(url),
            reason: format!(
                "pattern {regex:?} is not a regular expression the filter can run (linear-time `regex` syntax)"
            ),
        },
        E::JsonPointerNotFound(url) | E::InvalidJsonPointer(url) => SchemaError {
            pointer: String::new(),
            reason: format!("$ref to {} finds nothing in the schema", relative(url)),
        },
        other => SchemaError {
            pointer: String::new(),
            reason: relative(&format!("{other:#}")),
        },
    }
}

/// The JSON pointer in a schema URL's fragment (`…#/properties/a`).
#[cfg(feature = "contract")]
fn fragment(url: &str) -> String {
    let Some((_, fragment)) = url.split_once('#') else {
        return String::new();
    };
    percent_decode(fragment)
}

/// Undoes the URL fragment's `%XX` escapes (lossy for invalid UTF-8).
#[cfg(feature = "contract")]
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Messages without the schema's made-up base URL.
#[cfg(feature = "contract")]
fn relative(text: &str) -> String {
    text.replace(SCHEMA_URL, "the schema")
}

/// At most [`MAX_POINTER_BYTES`], cut on a character boundary, marked `…`.
#[cfg(feature = "contract")]
fn cut(mut pointer: String) -> String {
    if pointer.len() <= MAX_POINTER_BYTES {
        return pointer;
    }
    let mut end = MAX_POINTER_BYTES;
    while !pointer.is_char_boundary(end) {
        end -= 1;
    }
    pointer.truncate(end);
    pointer.push('…');
    pointer
}

#[cfg(test)]
#[cfg(feature = "contract")]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn order() -> Contract {
        Contract::compile(&json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["id", "amount"],
            "properties": {
                "id": {"type": "string", "pattern": "^ord_[0-9]+$"},
                "amount": {"type": "integer", "minimum": 0},
                "items": {"type": "array", "items": {"$ref": "#/$defs/item"}}
            },
            "$defs": {"item": {"type": "object", "required": ["sku"]}}
        }))
        .unwrap()
    }

    fn violations(c: &Contract, body: &str) -> Violations {
        match c.check(body.as_bytes()) {
            Err(Breach::Violations(v)) => v,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn a_body_that_satisfies_the_contract_passes() {
        let c = order();
        assert_eq!(c.check(br#"{"id":"ord_1","amount":5}"#), Ok(()));
        assert_eq!(
            c.check(br#"{"id":"ord_1","amount":0,"items":[{"sku":"x"}],"extra":true}"#),
            Ok(())
        );
    }

    #[test]
    fn a_failing_body_names_the_pointers_and_keywords() {
        let c = order();
        let v = violations(&c, r#"{"id":"ord_1","amount":-3,"items":[{"sku":1},{}]}"#);
        let got: Vec<(&str, &str)> = v
            .failures
            .iter()
            .map(|f| (f.pointer.as_str(), f.keyword.as_str()))
            .collect();
        assert_eq!(got, [("/amount", "minimum"), ("/items/1/sku", "required")]);
        assert_eq!(v.more, 0);
        let v = violations(&c, "[]");
        assert_eq!(v.to_string(), "\"\" (type)");
    }

    #[test]
    fn a_failure_never_echoes_a_value() {
        let c = order();
        let secret = "4111111111111111";
        for body in [
            format!(r#"{{"id":"{secret}","amount":1}}"#),
            format!(r#"{{"id":"ord_1","amount":"{secret}"}}"#),
            format!(r#"{{"id":"ord_1","amount":{secret}.5}}"#),
            format!(r#"["{secret}"]"#),
        ] {
            let text = violations(&c, &body).to_string();
            assert!(!text.contains(secret), "{body} -> {text}");
            assert!(!text.contains("4111"), "{body} -> {text}");
        }
    }

    #[test]
    fn the_pointer_list_is_bounded() {
        let c = Contract::compile(&json!({"type": "array", "items": {"type": "string"}})).unwrap();
        let body = format!("[{}]", vec!["1"; 1000].join(","));
        let v = violations(&c, &body);
        assert_eq!(v.failures.len(), MAX_REPORTED);
        assert_eq!(v.more, 1000 - MAX_REPORTED);
        assert_eq!(v.failures[0].pointer, "/0");
        assert!(v.to_string().ends_with(" and 992 more"), "{v}");
    }

    #[test]
    fn long_keys_are_cut_in_pointers() {
        let c = Contract::compile(&json!({"additionalProperties": {"type": "string"}})).unwrap();
        let key = "k".repeat(1000);
        let v = violations(&c, &format!(r#"{{"{key}":1}}"#));
        assert!(v.failures[0].pointer.len() <= MAX_POINTER_BYTES + '…'.len_utf8());
        assert!(v.failures[0].pointer.ends_with('…'));
        // Cut on a character boundary.
        let key = "é".repeat(200);
        let v = violations(&c, &format!(r#"{{"{key}":1}}"#));
        assert!(v.failures[0].pointer.ends_with('…'));
    }

    #[test]
    fn pointer_tokens_are_escaped() {
        let c = Contract::compile(&json!({"required": ["a/b~c"]})).unwrap();
        let v = violations(&c, "{}");
        assert_eq!(v.failures[0].pointer, "/a~1b~0c");
    }

    #[test]
    fn not_json_and_too_deep_are_not_json() {
        let c = order();
        assert_eq!(c.check(b"{\"id\":"), Err(Breach::NotJson));
        assert_eq!(c.check(b"\xEF\xBB\xBF{}"), Err(Breach::NotJson));
        assert_eq!(c.check(b"id=1"), Err(Breach::NotJson));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(c.check(deep.as_bytes()), Err(Breach::NotJson));
        // As deep as the parser allows: checked, no stack trouble.
        let ok = format!("{}{}", "[".repeat(127), "]".repeat(127));
        let any = Contract::compile(&json!({"type": "array"})).unwrap();
        assert_eq!(any.check(ok.as_bytes()), Ok(()));
    }

    #[test]
    fn a_large_body_is_checked_whole() {
        let c = order();
        let items: Vec<String> = (0..20_000).map(|i| format!(r#"{{"sku":"{i}"}}"#)).collect();
        let body = format!(
            r#"{{"id":"ord_1","amount":1,"items":[{}]}}"#,
            items.join(",")
        );
        assert!(body.len() > 256 * 1024);
        assert_eq!(c.check(body.as_bytes()), Ok(()));
        let body = body.replacen(r#"{"sku":"19999"}"#, "{}", 1);
        let v = violations(&c, &body);
        assert_eq!(v.failures[0].pointer, "/items/19999/sku");
    }

    #[test]
    fn invalid_schemas_are_refused_with_their_pointer() {
        let err = Contract::compile(&json!({"properties": {"a": {"type": "integr"}}})).unwrap_err();
        assert_eq!(err.pointer, "/properties/a/type", "{err:?}");
        let err = Contract::compile(&json!({"minimum": "3"})).unwrap_err();
        assert_eq!(err.pointer, "/minimum", "{err:?}");
        // No resolver: a schema must be self-contained.
        assert!(Contract::compile(&json!({"$ref": "https://example.com/s.json"})).is_err());
        assert!(Contract::compile(&json!({"$ref": "other.json"})).is_err());
        assert!(Contract::compile(&json!({"$ref": "#/$defs/missing"})).is_err());
        // A pattern the linear-time engine cannot run (look-around).
        let err =
            Contract::compile(&json!({"properties": {"a": {"pattern": "^(?=a)"}}})).unwrap_err();
        assert_eq!(err.pointer, "/properties/a/pattern", "{err:?}");
        assert!(err.reason.contains("regex"), "{err:?}");
    }

    #[test]
    fn a_pathological_pattern_cannot_backtrack() {
        // `^(a+)+$` on "aaa…a!" takes exponential time in a backtracking
        // engine (2^40 paths here); the `regex` crate is linear.
        let c = Contract::compile(&json!({"properties": {"s": {"pattern": "^(a+)+$"}}})).unwrap();
        let body = format!(r#"{{"s":"{}!"}}"#, "a".repeat(40));
        let started = std::time::Instant::now();
        let v = violations(&c, &body);
        assert_eq!(v.to_string(), "/s (pattern)");
        let long = format!(r#"{{"s":"{}!"}}"#, "a".repeat(100_000));
        assert_eq!(violations(&c, &long).to_string(), "/s (pattern)");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn no_file_is_ever_loaded() {
        // A schema file that exists: the loader still refuses it.
        let file = std::env::temp_dir().join("callback-guard-contract-ref.json");
        std::fs::write(&file, r#"{"type":"string"}"#).unwrap();
        let url = format!("file://{}", file.display());
        let err = Contract::compile(&json!({"$ref": url})).unwrap_err();
        assert!(err.reason.contains("self-contained"), "{err:?}");
        let err = Contract::compile(&json!({"$ref": file.display().to_string()})).unwrap_err();
        assert!(err.reason.contains("self-contained"), "{err:?}");
        let _ = std::fs::remove_file(file);
    }

    #[test]
    fn combinators_and_extra_members_are_named_by_pointer() {
        let c = Contract::compile(&json!({
            "type": "object",
            "properties": {
                "kind": {"anyOf": [{"const": "a"}, {"const": "b"}]},
                "n": {"not": {"type": "integer"}}
            },
            "additionalProperties": false,
            "dependentRequired": {"kind": ["id"]}
        }))
        .unwrap();
        let v = violations(&c, r#"{"kind":"c","n":1,"x/y":true}"#);
        assert_eq!(
            v.to_string(),
            "/id (dependentRequired), /kind (anyOf), /n (not), /x~1y (additionalProperties)"
        );
    }

    #[test]
    fn boolean_schemas() {
        assert_eq!(Contract::compile(&json!(true)).unwrap().check(b"1"), Ok(()));
        assert!(
            Contract::compile(&json!(false))
                .unwrap()
                .check(b"1")
                .is_err()
        );
    }
}

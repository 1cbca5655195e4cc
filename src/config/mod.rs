//! Plugin configuration, in two steps.
//!
//! 1. [`parse`]: JSON → [`ConfigSpec`] with serde, unknown keys rejected, the
//!    failing field path reported by `serde_path_to_error`.
//! 2. [`compile`]: [`ConfigSpec`] → [`Policy`] (in `core::policy`), the immutable runtime form
//!    (decoded keys, matchers, buckets). Every check that needs more than the
//!    JSON shape lives here and names its field path.
//!
//! [`check`] runs both and reports **every** error it can find: a JSON
//! shape error stops serde, so the document is also read one top-level
//! section and one channel at a time, and the compile step goes on past a
//! failing section or channel. The filter (one log line), `callback-guard
//! validate` and the tests all use it. [`load`] is the same with only the
//! first error; the root context swaps the new policy in only when there is
//! none.
//!
//! ```
//! use callback_guard::config;
//! let policy = config::load(br#"{"channels":[{"name":"payments","match":{"path_prefix":"/cb"}}]}"#,
//!                           &|_| None).unwrap();
//! assert_eq!(policy.channels[0].name, "payments");
//! let err = config::load(br#"{"channels":[{"name":"p","match":{"path_prefix":"/cb"},"bogus":1}]}"#,
//!                        &|_| None).unwrap_err();
//! assert!(err.to_string().starts_with("channels[0]"), "{err}");
//! ```

mod admission;
mod channel;
mod contract;
mod deadletter;
mod error;
mod log;
mod mask;
mod policy;
mod routing;
mod signature;
mod state;

pub use admission::{AdmissionSpec, compile_admission};
pub use channel::{ChannelSpec, EmptySpec, MatchSpec};
pub use deadletter::DeadLetterSpec;
pub use error::{ConfigError, ConfigErrors, FieldPath};
pub use log::RefusalLogSpec;
pub use mask::{MaskSpec, compile_mask};
pub use routing::{ChannelRoutingSpec, ClusterSpec, RoutingSpec, compile_routing};
pub use signature::{DedupSpec, SecretSpec, SignatureSpec, compile_dedup, compile_signature};
pub use state::StateSpec;

use crate::core::policy::Policy;
use serde::Deserialize;

/// Looks up a variable of the VM environment (Envoy
/// `vm_config.environment_variables`, Istio `vmConfig.env`). Injected so the
/// compile step stays pure.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The configuration document as the user wrote it (SPEC "Configuration").
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfigSpec {
    /// Classes of callbacks; a request belongs to the first channel whose
    /// `match` fits. Requests outside every channel only get the header rules.
    #[serde(default)]
    pub channels: Vec<ChannelSpec>,
    /// Priority by caller identity and load shedding, for channel requests.
    #[serde(default)]
    pub admission: Option<AdmissionSpec>,
    /// Settings shared by every channel's `routing`.
    #[serde(default)]
    pub routing: Option<RoutingSpec>,
    /// *Extension.* `true` (default): hold a channel request's headers
    /// until its body is checked (needs the proxy's
    /// `allow_on_headers_stop_iteration`). `false`: stream mode, for
    /// proxies that cannot hold headers (a plain Istio `WasmPlugin`):
    /// headers go upstream at once, the body is held and checked, and
    /// `x-verified-signature` is set on the response only.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("default" = true)))]
    pub hold_headers: Option<bool>,
    /// *Extension.* One log line per refused channel request, at this level
    /// and at most this often (default: `info`, 10 per second per worker).
    #[serde(default)]
    pub refusal_log: Option<RefusalLogSpec>,
    /// *Extension.* Send a copy of every verified callback the upstream
    /// failed (5xx, reset, timeout) to this HTTP sink.
    #[serde(default)]
    pub dead_letter: Option<DeadLetterSpec>,
    /// *Extension.* Guard prefixes (canonical paths starting with `/`,
    /// matched case-insensitively on the canonical path): a request under
    /// one of them that fits no channel is answered `404` and never
    /// forwarded, so a typo or a path trick cannot reach the service
    /// unguarded. Example: `["/callbacks/"]`.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(length(max = 64), inner(regex(pattern = r"^/")))
    )]
    pub reject_unmatched: Option<Vec<String>>,
    /// *Extension* (issue #15). Fleet-wide dedup and limits in Redis,
    /// through an HTTP front in an Envoy cluster.
    #[serde(default)]
    pub state: Option<StateSpec>,
}

/// Step 1: JSON to the serde model. An empty document means "no channels".
pub fn parse(json: &[u8]) -> Result<ConfigSpec, ConfigError> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(ConfigSpec::default());
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let spec: ConfigSpec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigError::new(path, strip_position(&e.into_inner().to_string()))
    })?;
    de.end()
        .map_err(|e| ConfigError::new("", strip_position(&e.to_string())))?;
    Ok(spec)
}

/// Step 2: validate and build the runtime policy (first error only; see
/// [`check`] for all of them).
pub fn compile(spec: &ConfigSpec, env: EnvLookup<'_>) -> Result<Policy, ConfigError> {
    policy::compile(spec, None, env).map_err(ConfigErrors::into_first)
}

/// Both steps; the first error (the one [`check`] lists first).
pub fn load(json: &[u8], env: EnvLookup<'_>) -> Result<Policy, ConfigError> {
    check(json, env).map_err(ConfigErrors::into_first)
}

/// Both steps, collecting every error: each top-level section and each
/// channel is parsed on its own when the whole document does not parse,
/// and compiled on past the first failure. The first error listed is the
/// one [`load`] returns.
pub fn check(json: &[u8], env: EnvLookup<'_>) -> Result<Policy, ConfigErrors> {
    let first = match parse(json) {
        Ok(spec) => return policy::compile(&spec, None, env),
        Err(e) => e,
    };
    // Not JSON at all (or not an object): nothing more to find.
    let Ok(serde_json::Value::Object(top)) = serde_json::from_slice::<serde_json::Value>(json)
    else {
        return Err(ConfigErrors::new(first, []));
    };
    let mut errors = Vec::new();
    let mut parsed = serde_json::Map::new();
    let mut channels = Vec::new();
    let mut indices = Vec::new();
    for (key, value) in &top {
        if key == "channels"
            && let serde_json::Value::Array(items) = value
        {
            let list = FieldPath::root().key("channels");
            for (i, item) in items.iter().enumerate() {
                match parse_value::<ChannelSpec>(item, &list.index(i)) {
                    Ok(ch) => {
                        channels.push(ch);
                        indices.push(i);
                    }
                    Err(e) => errors.push(e),
                }
            }
            continue;
        }
        let mut alone = serde_json::Map::new();
        alone.insert(key.clone(), value.clone());
        match parse_value::<ConfigSpec>(&serde_json::Value::Object(alone), &FieldPath::root()) {
            Ok(_) => {
                parsed.insert(key.clone(), value.clone());
            }
            Err(e) => errors.push(e),
        }
    }
    // What parsed, compiled for the errors it still holds (channel paths
    // keep their index in the document).
    if let Ok(mut spec) =
        parse_value::<ConfigSpec>(&serde_json::Value::Object(parsed), &FieldPath::root())
    {
        spec.channels = channels;
        if let Err(more) = policy::compile(&spec, Some(&indices), env) {
            errors.extend(more.into_vec());
        }
    }
    Err(ConfigErrors::new(first, errors))
}

/// A part of the document through serde, its error path under `at`.
fn parse_value<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    at: &FieldPath,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let inner = if inner == "." { String::new() } else { inner };
        let path = match (at.as_str(), inner.as_str()) {
            (a, "") => a.to_string(),
            ("", i) => i.to_string(),
            (a, i) if i.starts_with('[') => format!("{a}{i}"),
            (a, i) => format!("{a}.{i}"),
        };
        ConfigError::new(path, strip_position(&e.into_inner().to_string()))
    })
}

/// serde_json appends " at line L column C"; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn hold_headers_defaults_to_true() {
        let policy = load(br#"{"channels": []}"#, &|_| None).unwrap();
        assert!(policy.hold_headers);
        assert!(load(b"", &|_| None).unwrap().hold_headers);
        assert!(
            !load(br#"{"hold_headers": false}"#, &|_| None)
                .unwrap()
                .hold_headers
        );
    }

    #[test]
    fn hold_headers_must_be_a_boolean() {
        let err = load(br#"{"hold_headers": "no"}"#, &|_| None).unwrap_err();
        assert_eq!(err.path, "hold_headers", "{err}");
    }

    fn all(doc: &str) -> Vec<String> {
        check(doc.as_bytes(), &|_| Some("whsec_cGxhY2Vob2xkZXI=".into()))
            .err()
            .map(|e| e.into_vec().iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn check_collects_shape_and_compile_errors_of_every_section() {
        let doc = r#"{
            "channels": [
                {"name": "ok", "match": {"path_prefix": "/a"}},
                {"name": "Bad Name", "match": {"path_prefix": "/b"}},
                {"name": "c", "match": {"path_prefix": "/c"}, "dedup": {"window": 1}},
                {"name": "ok", "match": {"path_prefix": "/d"}}
            ],
            "admission": {"unauthorized_high": "maybe"},
            "refusal_log": {"per_second": 0},
            "bogus": 1
        }"#;
        let got = all(doc);
        let first = load(doc.as_bytes(), &|_| None).unwrap_err().to_string();
        assert_eq!(got[0], first, "load reports the first of check's errors");
        for want in [
            "channels[1].name: \"Bad Name\" must match",
            "channels[2].dedup.window: unknown field `window`",
            "channels[3].name: duplicate channel name \"ok\"",
            "admission.unauthorized_high",
            "refusal_log.per_second: must be between 1 and 1000",
            "unknown field `bogus`",
        ] {
            assert!(
                got.iter().any(|e| e.starts_with(want) || e.contains(want)),
                "{want} missing from {got:#?}"
            );
        }
        assert_eq!(got.len(), 6, "{got:#?}");
    }

    #[test]
    fn check_collects_compile_errors_when_the_shape_is_right() {
        let got = all(r#"{"reject_unmatched": ["nope"], "channels": [
            {"name": "a", "match": {"path_prefix": "/a"}, "max_body_bytes": 0},
            {"name": "b", "match": {"path_prefix": "b"}}],
            "routing": {"cluster_header": ":bad"}}"#);
        assert_eq!(
            got.iter()
                .map(|e| e.split(':').next().unwrap_or(""))
                .collect::<Vec<_>>(),
            [
                "channels[0].max_body_bytes",
                "channels[1].match.path_prefix",
                "reject_unmatched[0]",
                "routing.cluster_header"
            ],
            "{got:#?}"
        );
        let shown = check(br#"{"channels":[{"name":"A","match":{"path_prefix":"/a"}},{"name":"B","match":{"path_prefix":"/b"}}]}"#, &|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            shown.contains("channels[0].name") && shown.contains("; channels[1].name"),
            "{shown}"
        );
    }

    #[test]
    fn check_keeps_document_positions_past_channels_that_do_not_parse() {
        let got = all(r#"{"channels": [
            {"name": "a", "match": {"path_prefix": "/a"}, "x": 1},
            {"name": "b", "match": {"path_prefix": "/b"}},
            {"name": "c", "match": {"path_prefix": "/b/c"}}]}"#);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(
            got[0].starts_with("channels[0]: unknown field `x`")
                || got[0].starts_with("channels[0].x"),
            "{got:#?}"
        );
        assert!(
            got[1].starts_with("channels[2].match: never matches: channels[1] (\"b\")"),
            "{got:#?}"
        );
    }

    #[test]
    fn syntax_errors_stop_at_one() {
        assert_eq!(all(r#"{"channels": [}"#).len(), 1);
    }
}

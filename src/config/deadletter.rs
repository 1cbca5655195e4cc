//! `dead_letter` (extension): where copies of callbacks the upstream failed
//! are sent (see [`crate::core::deadletter`]).

use super::error::bounded;
use super::{ConfigError, FieldPath};
use crate::core::deadletter::{DeadLetterPolicy, HttpSink, StreamSink};
use crate::core::state::StatePolicy;
use serde::Deserialize;

const DEFAULT_STREAM_KEY: &str = "deadletter";
const DEFAULT_STREAM_MAX_LEN: u32 = 10_000;
const MAX_STREAM_MAX_LEN: u32 = 10_000_000;

const DEFAULT_PATH: &str = "/dead-letter";
const DEFAULT_TIMEOUT_MS: u32 = 2000;
const MAX_TIMEOUT_MS: u32 = 60_000;
const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
const MAX_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
const DEFAULT_MAX_PENDING: usize = 256;
const MAX_MAX_PENDING: usize = 10_000;
const DEFAULT_MAX_IN_FLIGHT: usize = 16;
const MAX_MAX_IN_FLIGHT: usize = 1000;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSpec {
    /// The Envoy cluster of the HTTP sink (an HTTP service that takes a
    /// JSON `POST` per failed callback). At least one of `cluster` and
    /// `redis_stream`.
    #[serde(default)]
    pub cluster: Option<String>,
    /// A capped Redis Stream sink, through the top-level `state` store's
    /// HTTP front (requires `state`).
    #[serde(default)]
    pub redis_stream: Option<RedisStreamSpec>,
    /// `:path` of the `POST` (default `/dead-letter`).
    #[serde(default)]
    pub path: Option<String>,
    /// `:authority` of the `POST` (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// How long an HTTP sink call may take (default 2000, 1..=60000 ms; a
    /// stream call takes `state.timeout_ms`).
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// Largest body kept for a copy (default 262144, 0..=4194304); a
    /// larger one is sent without its body.
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// Copies waiting per worker (default 256, 1..=10000); past that they
    /// are dropped and counted.
    #[serde(default)]
    pub max_pending: Option<usize>,
    /// Sink calls open per worker (default 16, 1..=1000).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
}

/// `dead_letter.redis_stream`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RedisStreamSpec {
    /// The stream's key; must start with `state.key_prefix` (default
    /// `<key_prefix>deadletter`, e.g. `cg:deadletter`).
    #[serde(default)]
    pub key: Option<String>,
    /// Approximate cap on the stream's length: `XADD ... MAXLEN ~ max_len`
    /// (default 10000, 1..=10000000).
    #[serde(default)]
    pub max_len: Option<u32>,
}

/// `state`: the compiled top-level `state` section, which a
/// `redis_stream` sink requires.
pub(super) fn compile(
    spec: &DeadLetterSpec,
    path: &FieldPath,
    state: Option<&StatePolicy>,
) -> Result<DeadLetterPolicy, ConfigError> {
    let http = match &spec.cluster {
        Some(cluster) => Some(compile_http(spec, cluster, path)?),
        None => None,
    };
    let stream = match &spec.redis_stream {
        Some(s) => Some(compile_stream(s, &path.key("redis_stream"), state)?),
        None => None,
    };
    if http.is_none() && stream.is_none() {
        return Err(path.error("needs a sink: `cluster` (HTTP) and/or `redis_stream`"));
    }
    Ok(DeadLetterPolicy {
        http,
        stream,
        timeout_ms: bounded(
            spec.timeout_ms,
            DEFAULT_TIMEOUT_MS,
            (1, MAX_TIMEOUT_MS),
            path.key("timeout_ms"),
        )?,
        max_body_bytes: bounded(
            spec.max_body_bytes,
            DEFAULT_MAX_BODY_BYTES,
            (0, MAX_MAX_BODY_BYTES),
            path.key("max_body_bytes"),
        )?,
        max_pending: bounded(
            spec.max_pending,
            DEFAULT_MAX_PENDING,
            (1, MAX_MAX_PENDING),
            path.key("max_pending"),
        )?,
        max_in_flight: bounded(
            spec.max_in_flight,
            DEFAULT_MAX_IN_FLIGHT,
            (1, MAX_MAX_IN_FLIGHT),
            path.key("max_in_flight"),
        )?,
    })
}

fn compile_stream(
    spec: &RedisStreamSpec,
    path: &FieldPath,
    state: Option<&StatePolicy>,
) -> Result<StreamSink, ConfigError> {
    let Some(state) = state else {
        return Err(
            path.error("needs the top-level `state` section (the Redis store it writes to)")
        );
    };
    let key = spec
        .key
        .clone()
        .unwrap_or_else(|| format!("{}{DEFAULT_STREAM_KEY}", state.key_prefix));
    let key_ok = key.len() <= 255
        && key.len() > state.key_prefix.len()
        && key.starts_with(&state.key_prefix)
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-' | b'.'));
    if !key_ok {
        return Err(path.key("key").error(format!(
            "must start with state.key_prefix {:?} (the ACL's key pattern) and be at most 255 of \
             A-Z a-z 0-9 : _ - ., got {key:?}",
            state.key_prefix
        )));
    }
    Ok(StreamSink {
        key,
        max_len: bounded(
            spec.max_len,
            DEFAULT_STREAM_MAX_LEN,
            (1, MAX_STREAM_MAX_LEN),
            path.key("max_len"),
        )?,
    })
}

fn compile_http(
    spec: &DeadLetterSpec,
    cluster: &str,
    path: &FieldPath,
) -> Result<HttpSink, ConfigError> {
    let name_ok =
        |s: &str| !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic());
    if !name_ok(cluster) {
        return Err(path.key("cluster").error("must name an Envoy cluster"));
    }
    let req_path = spec
        .path
        .clone()
        .unwrap_or_else(|| DEFAULT_PATH.to_string());
    if !req_path.starts_with('/') || !name_ok(&req_path) {
        return Err(path
            .key("path")
            .error("must start with '/' and be visible ASCII"));
    }
    let authority = spec
        .authority
        .clone()
        .unwrap_or_else(|| cluster.to_string());
    if !name_ok(&authority) {
        return Err(path.key("authority").error("must be a host name"));
    }
    Ok(HttpSink {
        cluster: cluster.to_string(),
        path: req_path,
        authority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn compile_json(json: &str) -> Result<DeadLetterPolicy, ConfigError> {
        compile_with(json, None)
    }

    fn compile_with(
        json: &str,
        state: Option<&StatePolicy>,
    ) -> Result<DeadLetterPolicy, ConfigError> {
        compile(
            &serde_json::from_str(json).unwrap(),
            &FieldPath::root().key("dead_letter"),
            state,
        )
    }

    fn state() -> StatePolicy {
        let spec: super::super::StateSpec =
            serde_json::from_str(r#"{"cluster":"fleet-state"}"#).unwrap();
        super::super::state::compile(&spec, &FieldPath::root().key("state"), &|_| None).unwrap()
    }

    #[test]
    fn the_stream_sink_needs_state_and_a_key_under_its_prefix() {
        let err = |json: &str, state| compile_with(json, state).unwrap_err().to_string();
        assert_eq!(
            err(r#"{"redis_stream":{}}"#, None),
            "dead_letter.redis_stream: needs the top-level `state` section (the Redis store it writes to)"
        );
        assert_eq!(
            err("{}", None),
            "dead_letter: needs a sink: `cluster` (HTTP) and/or `redis_stream`"
        );
        let s = state();
        let p = compile_with(r#"{"redis_stream":{}}"#, Some(&s)).unwrap();
        assert_eq!(p.http, None);
        assert_eq!(
            p.stream,
            Some(StreamSink {
                key: "cg:deadletter".into(),
                max_len: 10_000
            })
        );
        assert!(
            err(r#"{"redis_stream":{"key":"other:dl"}}"#, Some(&s))
                .starts_with("dead_letter.redis_stream.key: must start with state.key_prefix")
        );
        assert_eq!(
            err(r#"{"redis_stream":{"max_len":0}}"#, Some(&s)),
            "dead_letter.redis_stream.max_len: must be between 1 and 10000000, got 0"
        );
        let both = compile_with(
            r#"{"cluster":"dlq","redis_stream":{"key":"cg:dl:payments","max_len":50}}"#,
            Some(&s),
        )
        .unwrap();
        assert_eq!(both.http.map(|h| h.cluster).as_deref(), Some("dlq"));
        assert_eq!(
            both.stream.map(|s| (s.key, s.max_len)),
            Some(("cg:dl:payments".into(), 50))
        );
    }

    #[test]
    fn defaults_and_bounds() {
        let p = compile_json(r#"{"cluster":"dlq"}"#).unwrap();
        let http = p.http.clone().unwrap();
        assert_eq!(
            (http.path.as_str(), http.authority.as_str()),
            ("/dead-letter", "dlq")
        );
        assert_eq!(
            (p.timeout_ms, p.max_pending, p.max_in_flight),
            (2000, 256, 16)
        );
        assert_eq!(
            compile_json(r#"{"cluster":"dlq","timeout_ms":0}"#)
                .unwrap_err()
                .to_string(),
            "dead_letter.timeout_ms: must be between 1 and 60000, got 0"
        );
        assert!(
            compile_json(r#"{"cluster":""}"#)
                .unwrap_err()
                .to_string()
                .starts_with("dead_letter.cluster")
        );
        assert!(
            compile_json(r#"{"cluster":"d","path":"x"}"#)
                .unwrap_err()
                .to_string()
                .starts_with("dead_letter.path")
        );
    }
}

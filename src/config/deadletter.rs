//! `dead_letter` (extension): where copies of callbacks the upstream failed
//! are sent (see [`crate::core::deadletter`]).

use super::{ConfigError, FieldPath};
use crate::core::deadletter::DeadLetterPolicy;
use serde::Deserialize;

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
    /// The Envoy cluster of the sink (an HTTP service that takes a JSON
    /// `POST` per failed callback).
    pub cluster: String,
    /// `:path` of the `POST` (default `/dead-letter`).
    #[serde(default)]
    pub path: Option<String>,
    /// `:authority` of the `POST` (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// How long a sink call may take (default 2000, 1..=60000 ms).
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

fn bounded<T: PartialOrd + Copy + std::fmt::Display>(
    value: Option<T>,
    default: T,
    (min, max): (T, T),
    path: FieldPath,
) -> Result<T, ConfigError> {
    let v = value.unwrap_or(default);
    if v < min || v > max {
        return Err(path.error(format!("must be between {min} and {max}, got {v}")));
    }
    Ok(v)
}

pub(super) fn compile(
    spec: &DeadLetterSpec,
    path: &FieldPath,
) -> Result<DeadLetterPolicy, ConfigError> {
    let name_ok =
        |s: &str| !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic());
    if !name_ok(&spec.cluster) {
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
        .unwrap_or_else(|| spec.cluster.clone());
    if !name_ok(&authority) {
        return Err(path.key("authority").error("must be a host name"));
    }
    Ok(DeadLetterPolicy {
        cluster: spec.cluster.clone(),
        path: req_path,
        authority,
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

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn compile_json(json: &str) -> Result<DeadLetterPolicy, ConfigError> {
        compile(
            &serde_json::from_str(json).unwrap(),
            &FieldPath::root().key("dead_letter"),
        )
    }

    #[test]
    fn defaults_and_bounds() {
        let p = compile_json(r#"{"cluster":"dlq"}"#).unwrap();
        assert_eq!(
            (p.path.as_str(), p.authority.as_str()),
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

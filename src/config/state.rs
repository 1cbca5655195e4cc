//! `state` (extension, issue #15): fleet-wide dedup and limits in Redis,
//! reached through an HTTP front in an Envoy cluster (see
//! [`crate::core::state`]).

use super::error::bounded;
use super::{ConfigError, EnvLookup, FieldPath, SecretSpec};
use crate::core::state::lease::{self, LeaseConfig};
use crate::core::state::{Fallback, Protocol, StatePolicy};
use serde::Deserialize;

const DEFAULT_TIMEOUT_MS: u32 = 100;
const MAX_TIMEOUT_MS: u32 = 5000;
const DEFAULT_KEY_PREFIX: &str = "cg:";
const MAX_KEY_PREFIX: usize = 64;
const DEFAULT_BREAKER_FAILURES: u32 = 3;
const MAX_BREAKER_FAILURES: u32 = 100;
const DEFAULT_BREAKER_OPEN_MS: u64 = 1000;
const MIN_BREAKER_OPEN_MS: u64 = 10;
const MAX_BREAKER_OPEN_MS: u64 = 60_000;

/// What to do when the store is slow or down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// This Envoy's own shared data decides, as without `state`.
    #[default]
    Local,
    /// Answer `503`.
    Reject,
}

/// The store's HTTP front.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ProtocolSpec {
    /// webdis (`GET /EVALSHA/...`, JSON answers).
    #[default]
    Webdis,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// The Envoy cluster of the store's HTTP front (webdis).
    pub cluster: String,
    /// `:authority` of the calls (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// How long a call may take before the fallback applies (default 100,
    /// 1..=5000 ms).
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// Prefix of every key (default `cg:`; 1 to 64 of `A-Z a-z 0-9 : _ - .`).
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// `local` (default): fall back to this Envoy's shared data; `reject`:
    /// answer 503.
    #[serde(default)]
    pub on_unavailable: Option<OnUnavailable>,
    /// The HTTP front's protocol (default `webdis`).
    #[serde(default)]
    pub protocol: Option<ProtocolSpec>,
    /// `user:password` for the front's HTTP basic auth (webdis ACL
    /// `http_basic_auth`), `{"env": NAME}` or `{"value": ...}`.
    #[serde(default)]
    pub basic_auth: Option<SecretSpec>,
    /// Token leases for fleet-wide limits.
    #[serde(default)]
    pub lease: Option<LeaseSpec>,
    /// Consecutive failures after which the store is not asked for
    /// `breaker_open_ms` (default 3, 1..=100).
    #[serde(default)]
    pub breaker_failures: Option<u32>,
    /// How long the fallback applies without asking after
    /// `breaker_failures` (default 1000, 10..=60000 ms).
    #[serde(default)]
    pub breaker_open_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LeaseSpec {
    /// Most tokens a worker takes per lease (default 10, 1..=1000; 1 is
    /// exact: one store call per request).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// How long leased tokens may be spent (default 1000, 10..=60000 ms).
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

pub(super) fn compile(
    spec: &StateSpec,
    path: &FieldPath,
    env: EnvLookup<'_>,
) -> Result<StatePolicy, ConfigError> {
    let name_ok =
        |s: &str| !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic());
    if !name_ok(&spec.cluster) {
        return Err(path.key("cluster").error("must name an Envoy cluster"));
    }
    let authority = spec
        .authority
        .clone()
        .unwrap_or_else(|| spec.cluster.clone());
    if !name_ok(&authority) {
        return Err(path.key("authority").error("must be a host name"));
    }
    let key_prefix = spec
        .key_prefix
        .clone()
        .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_string());
    if key_prefix.is_empty()
        || key_prefix.len() > MAX_KEY_PREFIX
        || !key_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":_-.".contains(&b))
    {
        return Err(path.key("key_prefix").error(format!(
            "must be 1 to {MAX_KEY_PREFIX} of A-Z a-z 0-9 : _ - ., got {key_prefix:?}"
        )));
    }
    let authorization = match &spec.basic_auth {
        None => None,
        Some(secret) => {
            let at = path.key("basic_auth");
            let text = super::signature::secret_text(secret, &at, env)?;
            if !text.contains(':') {
                return Err(at.error("must be user:password"));
            }
            use base64::Engine;
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(text)
            ))
        }
    };
    let lease_spec = spec.lease.as_ref();
    let lease_path = path.key("lease");
    let lease = LeaseConfig {
        max_tokens: bounded(
            lease_spec.and_then(|l| l.max_tokens),
            lease::DEFAULT_MAX_TOKENS,
            (1, lease::MAX_MAX_TOKENS),
            lease_path.key("max_tokens"),
        )?,
        ttl_ms: bounded(
            lease_spec.and_then(|l| l.ttl_ms),
            lease::DEFAULT_TTL_MS,
            (lease::MIN_TTL_MS, lease::MAX_TTL_MS),
            lease_path.key("ttl_ms"),
        )?,
    };
    Ok(StatePolicy {
        cluster: spec.cluster.clone(),
        authority,
        timeout_ms: bounded(
            spec.timeout_ms,
            DEFAULT_TIMEOUT_MS,
            (1, MAX_TIMEOUT_MS),
            path.key("timeout_ms"),
        )?,
        key_prefix,
        on_unavailable: match spec.on_unavailable.unwrap_or_default() {
            OnUnavailable::Local => Fallback::Local,
            OnUnavailable::Reject => Fallback::Reject,
        },
        protocol: match spec.protocol.unwrap_or_default() {
            ProtocolSpec::Webdis => Protocol::Webdis,
        },
        authorization,
        lease,
        breaker_failures: bounded(
            spec.breaker_failures,
            DEFAULT_BREAKER_FAILURES,
            (1, MAX_BREAKER_FAILURES),
            path.key("breaker_failures"),
        )?,
        breaker_open_ms: bounded(
            spec.breaker_open_ms,
            DEFAULT_BREAKER_OPEN_MS,
            (MIN_BREAKER_OPEN_MS, MAX_BREAKER_OPEN_MS),
            path.key("breaker_open_ms"),
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn compile_json(json: &str) -> Result<StatePolicy, ConfigError> {
        compile(
            &serde_json::from_str(json).unwrap(),
            &FieldPath::root().key("state"),
            &|name| (name == "WEBDIS_AUTH").then(|| "cg:pw".to_string()),
        )
    }

    fn err(json: &str) -> String {
        compile_json(json).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let p = compile_json(r#"{"cluster":"fleet-state"}"#).unwrap();
        assert_eq!(p.authority, "fleet-state");
        assert_eq!(p.timeout_ms, 100);
        assert_eq!(p.key_prefix, "cg:");
        assert_eq!(p.on_unavailable, Fallback::Local);
        assert_eq!(p.protocol, Protocol::Webdis);
        assert_eq!(p.authorization, None);
        assert_eq!(p.lease, LeaseConfig::default());
        assert_eq!((p.breaker_failures, p.breaker_open_ms), (3, 1000));
    }

    #[test]
    fn every_field() {
        let p = compile_json(
            r#"{"cluster":"c","authority":"webdis.state","timeout_ms":20,"key_prefix":"cb-prod:",
                "on_unavailable":"reject","protocol":"webdis","basic_auth":{"env":"WEBDIS_AUTH"},
                "lease":{"max_tokens":1,"ttl_ms":500},"breaker_failures":5,"breaker_open_ms":250}"#,
        )
        .unwrap();
        assert_eq!(p.authority, "webdis.state");
        assert_eq!(p.on_unavailable, Fallback::Reject);
        assert_eq!(p.authorization.as_deref(), Some("Basic Y2c6cHc="));
        assert_eq!(
            p.lease,
            LeaseConfig {
                max_tokens: 1,
                ttl_ms: 500
            }
        );
        assert_eq!((p.breaker_failures, p.breaker_open_ms), (5, 250));
    }

    #[test]
    fn bounds_and_paths() {
        for (json, want) in [
            (r#"{"cluster":""}"#, "state.cluster: must name"),
            (
                r#"{"cluster":"c","timeout_ms":0}"#,
                "state.timeout_ms: must be between 1 and 5000, got 0",
            ),
            (r#"{"cluster":"c","timeout_ms":5001}"#, "state.timeout_ms"),
            (r#"{"cluster":"c","key_prefix":"a b"}"#, "state.key_prefix"),
            (r#"{"cluster":"c","key_prefix":""}"#, "state.key_prefix"),
            (r#"{"cluster":"c","key_prefix":"{x}"}"#, "state.key_prefix"),
            (
                r#"{"cluster":"c","lease":{"max_tokens":0}}"#,
                "state.lease.max_tokens: must be between 1 and 1000",
            ),
            (
                r#"{"cluster":"c","lease":{"ttl_ms":5}}"#,
                "state.lease.ttl_ms: must be between 10 and 60000",
            ),
            (
                r#"{"cluster":"c","breaker_failures":0}"#,
                "state.breaker_failures",
            ),
            (
                r#"{"cluster":"c","breaker_open_ms":60001}"#,
                "state.breaker_open_ms",
            ),
            (
                r#"{"cluster":"c","basic_auth":{"env":"NOPE"}}"#,
                "state.basic_auth: env var NOPE is not set",
            ),
            (
                r#"{"cluster":"c","basic_auth":{"value":"nocolon"}}"#,
                "state.basic_auth: must be user:password",
            ),
        ] {
            let e = err(json);
            assert!(e.starts_with(want), "{json}: {e}");
        }
        assert!(serde_json::from_str::<StateSpec>(r#"{"cluster":"c","x":1}"#).is_err());
        assert!(
            serde_json::from_str::<StateSpec>(r#"{"cluster":"c","on_unavailable":"open"}"#)
                .is_err()
        );
    }
}

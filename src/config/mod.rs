//! Plugin configuration, in two steps.
//!
//! 1. [`parse`]: JSON → [`ConfigSpec`] with serde, unknown keys rejected, the
//!    failing field path reported by `serde_path_to_error`.
//! 2. [`compile`]: [`ConfigSpec`] → [`Policy`], the immutable runtime form
//!    (decoded keys, matchers, buckets). Every check that needs more than the
//!    JSON shape lives here and names its field path.
//!
//! [`load`] runs both; the root context swaps the new policy in only when
//! both steps succeed.
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
mod deadletter;
mod error;
mod log;
mod mask;
mod policy;
mod routing;
mod signature;

pub use admission::AdmissionSpec;
pub use channel::{ChannelSpec, EmptyAction, EmptySpec, MatchSpec};
pub use deadletter::DeadLetterSpec;
pub use error::{ConfigError, FieldPath};
pub use log::{RefusalLog, RefusalLogSpec};
pub use mask::MaskSpec;
pub use policy::{ChannelPolicy, DEFAULT_CLUSTER_HEADER, Policy};
pub use routing::{ChannelRoutingSpec, ClusterSpec, RoutingSpec};
pub use signature::{DedupSpec, SecretSpec, SignatureSpec};

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
    pub reject_unmatched: Option<Vec<String>>,
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

/// Step 2: validate and build the runtime policy.
pub fn compile(spec: &ConfigSpec, env: EnvLookup<'_>) -> Result<Policy, ConfigError> {
    policy::compile(spec, env)
}

/// Both steps.
pub fn load(json: &[u8], env: EnvLookup<'_>) -> Result<Policy, ConfigError> {
    compile(&parse(json)?, env)
}

/// serde_json appends " at line L column C"; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

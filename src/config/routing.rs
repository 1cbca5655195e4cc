//! Top-level `routing` and `channels[].routing`.

use super::policy::DEFAULT_CLUSTER_HEADER;
use super::{ConfigError, FieldPath};
use crate::core::routing::RoutingPolicy;
use serde::Deserialize;

/// Top-level `routing`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSpec {
    #[serde(default)]
    pub cluster_header: Option<String>,
}

/// `channels[].routing`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRoutingSpec {
    pub clusters: Vec<ClusterSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    pub name: String,
    pub weight: u32,
    #[serde(default)]
    pub latency_sla_ms: Option<u64>,
}

pub(super) fn compile_cluster_header(
    spec: Option<&RoutingSpec>,
    path: &FieldPath,
) -> Result<String, ConfigError> {
    let Some(name) = spec.and_then(|s| s.cluster_header.as_deref()) else {
        return Ok(DEFAULT_CLUSTER_HEADER.to_string());
    };
    let valid = !name.is_empty()
        && !name.starts_with(':')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(path
            .key("cluster_header")
            .error(format!("{name:?} is not a valid header name")));
    }
    Ok(name.to_ascii_lowercase())
}

pub(super) fn compile_channel(
    spec: &ChannelRoutingSpec,
    path: &FieldPath,
) -> Result<RoutingPolicy, ConfigError> {
    RoutingPolicy::compile(spec, path)
}

//! Weighted, latency-aware routing (SPEC `routing`). STUB: API the filter calls.

use crate::config::{ChannelRoutingSpec, ConfigError, FieldPath};
use crate::core::shared::{SharedStore, StoreError};

#[derive(Debug)]
pub struct RoutingPolicy {
    clusters: Vec<String>,
}

impl RoutingPolicy {
    pub fn compile(spec: &ChannelRoutingSpec, path: &FieldPath) -> Result<Self, ConfigError> {
        if spec.clusters.is_empty() {
            return Err(path.key("clusters").error("must list at least one cluster"));
        }
        Ok(Self {
            clusters: spec.clusters.iter().map(|c| c.name.clone()).collect(),
        })
    }

    /// Picks a cluster for one callback of `channel`; `random` is uniform in [0,1).
    pub fn choose(
        &self,
        _store: &dyn SharedStore,
        _channel: &str,
        _now_ms: u64,
        _random: f64,
    ) -> Result<&str, StoreError> {
        Ok(self.clusters.first().map(String::as_str).unwrap_or(""))
    }

    /// Feeds back one observation: latency from request start to response
    /// headers, and whether it failed (5xx, reset, timeout).
    pub fn observe(
        &self,
        _store: &dyn SharedStore,
        _channel: &str,
        _cluster: &str,
        _latency_ms: u64,
        _failed: bool,
        _now_ms: u64,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

//! Top-level `routing` and `channels[].routing`.

use super::{ConfigError, FieldPath};
use crate::core::names::header::CLUSTER as DEFAULT_CLUSTER_HEADER;
use crate::core::routing::{RoutingPolicy, valid_cluster_name};
use serde::Deserialize;
use std::collections::HashSet;

/// Top-level `routing`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RoutingSpec {
    /// Request header the chosen cluster is written to, read by the Envoy
    /// route's `cluster_header` (default `x-callback-cluster`).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("default" = crate::core::names::header::CLUSTER)))]
    pub cluster_header: Option<String>,
    /// Extension: strict cluster-name checking. The filter cannot see
    /// Envoy's clusters, so by default any well-formed name is accepted;
    /// when this list is given, every `channels[].routing.clusters[].name`
    /// must be one of its entries (catches typos at load time).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub known_clusters: Option<Vec<String>>,
}

/// `channels[].routing`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ChannelRoutingSpec {
    /// The clusters to spread this channel's callbacks over.
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub clusters: Vec<ClusterSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Envoy cluster name.
    pub name: String,
    /// Share of traffic, in proportion to the other clusters' weights
    /// (1 to 10000).
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 10_000)))]
    pub weight: u32,
    /// Above this recent latency the cluster's share is cut (1 to 300000).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 300_000)))]
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

/// Validates top-level `routing.known_clusters` (`path` is `routing`) and
/// returns it for [`compile_channel`].
pub(super) fn compile_known_clusters<'a>(
    spec: Option<&'a RoutingSpec>,
    path: &FieldPath,
) -> Result<Option<&'a [String]>, ConfigError> {
    let Some(list) = spec.and_then(|s| s.known_clusters.as_deref()) else {
        return Ok(None);
    };
    let path = path.key("known_clusters");
    if list.is_empty() {
        return Err(path.error("must list at least one cluster when given"));
    }
    let mut seen = HashSet::new();
    for (i, name) in list.iter().enumerate() {
        if !valid_cluster_name(name) {
            return Err(path
                .index(i)
                .error(format!("{name:?} is not a valid cluster name")));
        }
        if !seen.insert(name.as_str()) {
            return Err(path
                .index(i)
                .error(format!("duplicate cluster name {name:?}")));
        }
    }
    Ok(Some(list))
}

/// `channels[].routing`; with `known_clusters` (strict mode) every cluster
/// name must be listed there.
pub(super) fn compile_channel(
    spec: &ChannelRoutingSpec,
    known_clusters: Option<&[String]>,
    path: &FieldPath,
) -> Result<RoutingPolicy, ConfigError> {
    RoutingPolicy::compile(spec, known_clusters, path)
}

#[cfg(test)]
mod tests {
    use crate::config::{self, ConfigError, Policy};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn load(clusters: &str, top: &str) -> Result<Policy, ConfigError> {
        let json = format!(
            r#"{{"channels":[{{"name":"payments","match":{{"path_prefix":"/cb"}},
                "routing":{{"clusters":{clusters}}}}}]{top}}}"#
        );
        config::load(json.as_bytes(), &|_| None)
    }

    const SPEC_CLUSTERS: &str = r#"[
        {"name":"region-a","weight":60,"latency_sla_ms":150},
        {"name":"region-b","weight":35,"latency_sla_ms":200},
        {"name":"region-c","weight":5,"latency_sla_ms":250}]"#;

    #[test]
    fn spec_example_loads() {
        let policy = load(SPEC_CLUSTERS, "").unwrap();
        let routing = policy.channels[0].routing.as_ref().unwrap();
        assert_eq!(
            routing.clusters().collect::<Vec<_>>(),
            ["region-a", "region-b", "region-c"]
        );
        assert_eq!(policy.cluster_header, "x-callback-cluster");
    }

    #[test]
    fn errors_carry_field_paths() {
        let cases = [
            ("[]", "channels[0].routing.clusters"),
            (
                r#"[{"name":"a","weight":1},{"name":"b","weight":0}]"#,
                "channels[0].routing.clusters[1].weight",
            ),
            (
                r#"[{"name":"a","weight":1},{"name":"a","weight":1}]"#,
                "channels[0].routing.clusters[1].name",
            ),
            (
                r#"[{"name":"","weight":1}]"#,
                "channels[0].routing.clusters[0].name",
            ),
            (
                r#"[{"name":"a","weight":1,"latency_sla_ms":0}]"#,
                "channels[0].routing.clusters[0].latency_sla_ms",
            ),
            // serde: negative / fractional weights and unknown keys.
            (
                r#"[{"name":"a","weight":-1}]"#,
                "channels[0].routing.clusters[0].weight",
            ),
            (
                r#"[{"name":"a","weight":1,"bogus":1}]"#,
                "channels[0].routing.clusters[0].bogus",
            ),
        ];
        for (clusters, path) in cases {
            let err = load(clusters, "").unwrap_err();
            assert_eq!(err.path, path, "{clusters}: {err}");
        }
    }

    #[test]
    fn known_clusters_turns_on_strict_checking() {
        let strict = r#","routing":{"known_clusters":["region-a","region-b","region-c"]}"#;
        assert!(load(SPEC_CLUSTERS, strict).is_ok());

        let typo = r#"[{"name":"region-a","weight":1},{"name":"regoin-b","weight":1}]"#;
        let err = load(typo, strict).unwrap_err();
        assert_eq!(err.path, "channels[0].routing.clusters[1].name");
        assert!(err.to_string().contains("known_clusters"), "{err}");
        // Without the list the typo is not ours to catch.
        assert!(load(typo, "").is_ok());
    }

    #[test]
    fn known_clusters_is_validated() {
        for (top, path) in [
            (
                r#","routing":{"known_clusters":[]}"#,
                "routing.known_clusters",
            ),
            (
                r#","routing":{"known_clusters":["a","bad name"]}"#,
                "routing.known_clusters[1]",
            ),
            (
                r#","routing":{"known_clusters":["a","a"]}"#,
                "routing.known_clusters[1]",
            ),
        ] {
            let err = load(SPEC_CLUSTERS, top).unwrap_err();
            assert_eq!(err.path, path, "{top}: {err}");
        }
    }
}

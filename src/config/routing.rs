//! Top-level `routing` and `channels[].routing`.

use super::{ConfigError, FieldPath};
use crate::core::names::header::CLUSTER as DEFAULT_CLUSTER_HEADER;
use crate::core::routing::state::MAX_CLUSTERS;
use crate::core::routing::{
    ClusterTarget, MAX_CLUSTER_NAME_LEN, MAX_LATENCY_SLA_MS, MAX_WEIGHT, RoutingPolicy,
    valid_cluster_name,
};
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
/// returns it for [`compile_routing`].
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
pub fn compile_routing(
    spec: &ChannelRoutingSpec,
    known_clusters: Option<&[String]>,
    path: &FieldPath,
) -> Result<RoutingPolicy, ConfigError> {
    let list = path.key("clusters");
    if spec.clusters.len() > MAX_CLUSTERS {
        return Err(list.error(format!(
            "at most {MAX_CLUSTERS} clusters, got {}",
            spec.clusters.len()
        )));
    }
    let mut seen = HashSet::new();
    let mut targets = Vec::with_capacity(spec.clusters.len());
    for (i, c) in spec.clusters.iter().enumerate() {
        let at = list.index(i);
        if !valid_cluster_name(&c.name) {
            return Err(at.key("name").error(format!(
                "{:?} is not a valid cluster name ([A-Za-z0-9._|:-], 1 to {MAX_CLUSTER_NAME_LEN} characters)",
                c.name
            )));
        }
        if !seen.insert(c.name.as_str()) {
            return Err(at
                .key("name")
                .error(format!("duplicate cluster name {:?}", c.name)));
        }
        if let Some(known) = known_clusters
            && !known.iter().any(|k| k == &c.name)
        {
            return Err(at.key("name").error(format!(
                "{:?} is not listed in routing.known_clusters",
                c.name
            )));
        }
        if !(1..=MAX_WEIGHT).contains(&c.weight) {
            return Err(at.key("weight").error(format!(
                "must be between 1 and {MAX_WEIGHT}, got {} (remove the cluster to send it nothing)",
                c.weight
            )));
        }
        if let Some(sla) = c.latency_sla_ms
            && !(1..=MAX_LATENCY_SLA_MS).contains(&sla)
        {
            return Err(at.key("latency_sla_ms").error(format!(
                "must be between 1 and {MAX_LATENCY_SLA_MS} ms when given, got {sla}"
            )));
        }
        targets.push(ClusterTarget {
            name: c.name.clone(),
            weight: c.weight,
            latency_sla_ms: c.latency_sla_ms,
        });
    }
    RoutingPolicy::new(targets).map_err(|reason| list.error(reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, ConfigError};
    use crate::core::policy::Policy;
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
        assert_eq!(&*policy.cluster_header, "x-callback-cluster");
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

    fn cluster(name: &str, weight: u32, sla: Option<u64>) -> ClusterSpec {
        ClusterSpec {
            name: name.to_string(),
            weight,
            latency_sla_ms: sla,
        }
    }

    fn spec(clusters: Vec<ClusterSpec>) -> ChannelRoutingSpec {
        ChannelRoutingSpec { clusters }
    }

    fn compile_err(clusters: Vec<ClusterSpec>, known: Option<&[String]>) -> ConfigError {
        let path = FieldPath::root().key("channels").index(0).key("routing");
        compile_routing(&spec(clusters), known, &path).unwrap_err()
    }

    #[test]
    fn validation_names_the_field() {
        let e = compile_err(vec![], None);
        assert_eq!(e.path, "channels[0].routing.clusters");

        let e = compile_err(vec![cluster("a", 1, None), cluster("b", 0, None)], None);
        assert_eq!(e.path, "channels[0].routing.clusters[1].weight");
        assert!(e.reason.contains("between 1 and 10000, got 0"), "{e}");
        for w in [10_001, u32::MAX] {
            let e = compile_err(vec![cluster("a", w, None)], None);
            assert_eq!(e.path, "channels[0].routing.clusters[0].weight");
            assert!(e.reason.contains("between 1 and 10000"), "{e}");
        }
        assert!(
            compile_routing(
                &ChannelRoutingSpec {
                    clusters: vec![
                        cluster("a", MAX_WEIGHT, Some(MAX_LATENCY_SLA_MS)),
                        cluster("b", 1, Some(1))
                    ]
                },
                None,
                &FieldPath::root()
            )
            .is_ok()
        );

        let e = compile_err(vec![cluster("a", 1, None), cluster("a", 2, None)], None);
        assert_eq!(e.path, "channels[0].routing.clusters[1].name");
        assert!(e.reason.contains("duplicate"), "{e}");

        for bad in [
            "",
            "has space",
            "semi;colon",
            "eq=ual",
            "new\nline",
            &"x".repeat(256),
        ] {
            let e = compile_err(vec![cluster(bad, 1, None)], None);
            assert_eq!(e.path, "channels[0].routing.clusters[0].name", "{bad:?}");
        }

        for sla in [0, 300_001, u64::MAX] {
            let e = compile_err(vec![cluster("a", 1, Some(sla))], None);
            assert_eq!(e.path, "channels[0].routing.clusters[0].latency_sla_ms");
            assert!(e.reason.contains("between 1 and 300000 ms"), "{e}");
        }

        let many = (0..=MAX_CLUSTERS)
            .map(|i| cluster(&format!("c{i}"), 1, None))
            .collect();
        let e = compile_err(many, None);
        assert_eq!(e.path, "channels[0].routing.clusters");
    }

    #[test]
    fn envoy_and_istio_cluster_names_are_accepted() {
        let names = [
            "region-a",
            "outbound|8080||payments.default.svc.cluster.local",
            "my_cluster.v2",
            "a:b",
        ];
        let clusters = names.iter().map(|n| cluster(n, 1, None)).collect();
        let policy = compile_routing(&spec(clusters), None, &FieldPath::root()).unwrap();
        assert_eq!(policy.clusters().collect::<Vec<_>>(), names);
    }

    #[test]
    fn strict_known_clusters_check() {
        let known = vec!["region-a".to_string(), "region-b".to_string()];
        let ok = compile_routing(
            &spec(vec![
                cluster("region-b", 1, None),
                cluster("region-a", 1, None),
            ]),
            Some(&known),
            &FieldPath::root(),
        );
        assert!(ok.is_ok());
        let e = compile_err(
            vec![cluster("region-a", 1, None), cluster("region-x", 1, None)],
            Some(&known),
        );
        assert_eq!(e.path, "channels[0].routing.clusters[1].name");
        assert!(e.reason.contains("known_clusters"), "{e}");
        // Without the list, any well-formed name is accepted.
        assert!(
            compile_routing(
                &spec(vec![cluster("region-x", 1, None)]),
                None,
                &FieldPath::root()
            )
            .is_ok()
        );
    }
}

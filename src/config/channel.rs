//! `channels[]`: name, match, body limit, empty handling; delegates the
//! capability sections to their own modules.

use super::admission::BucketSpec;
use super::mask::{self, MaskSpec};
use super::routing::{self, ChannelRoutingSpec};
use super::signature::{self, DedupSpec, SecretSpec, SignatureSpec};
use super::{ConfigError, EnvLookup, FieldPath};
use crate::core::admission::ChannelLimit;
use crate::core::channel::{self as matching, ChannelMatch, Methods};
use crate::core::metrics::ChannelStats;
use crate::core::policy::{ChannelPolicy, EmptyAction};
use crate::core::resign::Resigner;
use serde::Deserialize;

/// SPEC default for `max_body_bytes`: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Upper bound we accept: bodies are buffered in the VM's memory.
pub const MAX_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// Most entries in one channel's `match.hosts`.
pub const MAX_HOSTS: usize = 64;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// `[a-z0-9_-]{1,64}`, unique; the `channel` label of every metric.
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^[a-z0-9_-]{1,64}$")))]
    pub name: String,
    /// Which requests belong to this channel.
    #[serde(rename = "match")]
    pub match_: MatchSpec,
    /// Larger bodies are answered 413 and not forwarded (default 1 MiB,
    /// at most 64 MiB).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 67_108_864), extend("default" = 1_048_576)))]
    pub max_body_bytes: Option<u64>,
    /// Empty callbacks (no body, whitespace, `{}`, `[]`, `null`, or
    /// `x-callback-status: 204`).
    #[serde(default)]
    pub empty: Option<EmptySpec>,
    /// Webhook signature verification.
    #[serde(default)]
    pub signature: Option<SignatureSpec>,
    /// Redelivery suppression by delivery id.
    #[serde(default)]
    pub dedup: Option<DedupSpec>,
    /// PII masking of JSON bodies before they are forwarded.
    #[serde(default)]
    pub mask: Option<MaskSpec>,
    /// *Extension.* A JSON Schema (draft 2020-12) every body must satisfy;
    /// a body that does not is answered `422 contract` (cargo feature
    /// `contract`).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("type" = ["object", "boolean", "null"])))]
    pub contract: Option<serde_json::Value>,
    /// Weighted, latency-aware choice among clusters.
    #[serde(default)]
    pub routing: Option<ChannelRoutingSpec>,
    /// *Extension.* Re-sign what is forwarded: after verifying (and
    /// masking), remove the provider's signature headers and sign the
    /// forwarded body with Standard Webhooks headers under this
    /// mesh-internal secret. Needs `signature` and `hold_headers: true`.
    #[serde(default)]
    pub resign: Option<ResignSpec>,
    /// *Extension.* This channel's own token bucket (`rps`, `burst`), next
    /// to the global `admission` buckets, so one noisy provider cannot
    /// starve another; over it a callback gets `429 rate_limited`.
    #[serde(default)]
    pub limits: Option<BucketSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ResignSpec {
    /// The mesh-internal Standard Webhooks secret (`whsec_` + base64), as
    /// `{"value": ...}` or `{"env": NAME}`; services verify with it.
    pub secret: SecretSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// Prefix of the request's canonical path (decoded, dot-segments
    /// resolved, slashes merged, `;` parameters and query removed); starts
    /// with `/` and is itself canonical. Case-insensitive unless
    /// `case_sensitive`.
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^/")))]
    pub path_prefix: String,
    /// If given, the `:authority` must be one of these (port, trailing dot
    /// and case ignored).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 64)))]
    pub hosts: Option<Vec<String>>,
    /// *Extension.* `true`: compare `path_prefix` with the path's exact
    /// case (default `false`: ASCII case-insensitive).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("default" = false)))]
    pub case_sensitive: Option<bool>,
    /// *Extension.* Methods that carry this channel's callbacks (default
    /// `["POST", "PUT", "PATCH"]`). A request with another method and no
    /// body (e.g. a provider's `GET` verification handshake) passes through
    /// to the service; one with a body is checked whatever its method.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EmptySpec {
    /// reply (default: answer 204 at the proxy) | forward (count only)
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("default" = "reply")))]
    pub action: EmptyAction,
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn compile_resign(
    spec: &ResignSpec,
    signed: bool,
    path: &FieldPath,
    env: EnvLookup<'_>,
) -> Result<Resigner, ConfigError> {
    if !signed {
        return Err(path.error(
            "needs a signature on the channel: a body the filter did not verify must never get \
             a mesh signature",
        ));
    }
    let secret_path = path.key("secret");
    let text = signature::secret_text(&spec.secret, &secret_path, env)?;
    let key = crate::core::signature::whsec(&text).map_err(|r| secret_path.error(r))?;
    if key.len() < 16 {
        return Err(secret_path.error("must decode to at least 16 bytes"));
    }
    Ok(Resigner::new(key))
}

/// Most methods a channel lists.
const MAX_METHODS: usize = 16;

fn compile_methods(list: Option<&[String]>, path: &FieldPath) -> Result<Methods, ConfigError> {
    let Some(list) = list else {
        return Ok(Methods::default());
    };
    if list.is_empty() || list.len() > MAX_METHODS {
        return Err(path.error(format!(
            "must list 1 to {MAX_METHODS} methods, got {}",
            list.len()
        )));
    }
    let mut methods: Vec<String> = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let token = !m.is_empty()
            && m.len() <= 32
            && m.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(path.index(i).error(format!("{m:?} is not an HTTP method")));
        }
        let upper = m.to_ascii_uppercase();
        if methods.contains(&upper) {
            return Err(path.index(i).error(format!("{upper} is listed twice")));
        }
        methods.push(upper);
    }
    Ok(Methods::new(methods))
}

pub(super) fn compile(
    spec: &ChannelSpec,
    path: &FieldPath,
    env: EnvLookup<'_>,
    known_clusters: Option<&[String]>,
) -> Result<ChannelPolicy, ConfigError> {
    if !valid_name(&spec.name) {
        return Err(path
            .key("name")
            .error(format!("{:?} must match [a-z0-9_-]{{1,64}}", spec.name)));
    }
    let match_path = path.key("match");
    matching::canonical_prefix(&spec.match_.path_prefix)
        .map_err(|reason| match_path.key("path_prefix").error(reason))?;
    let mut hosts = Vec::new();
    if let Some(list) = &spec.match_.hosts {
        if list.is_empty() {
            return Err(match_path
                .key("hosts")
                .error("must list at least one host when given"));
        }
        if list.len() > MAX_HOSTS {
            return Err(match_path
                .key("hosts")
                .error(format!("at most {MAX_HOSTS} hosts")));
        }
        for (i, h) in list.iter().enumerate() {
            let normalized = matching::normalize_host(h);
            if normalized.is_empty()
                || normalized.len() > 255
                || !normalized.bytes().all(|b| b.is_ascii_graphic())
                || normalized.contains(['/', '@', '[', ']'])
            {
                return Err(match_path
                    .key("hosts")
                    .index(i)
                    .error(format!("{h:?} is not a host name")));
            }
            hosts.push(normalized);
        }
    }
    let max_body_bytes = spec.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 || max_body_bytes > MAX_MAX_BODY_BYTES {
        return Err(path.key("max_body_bytes").error(format!(
            "must be between 1 and {MAX_MAX_BODY_BYTES}, got {max_body_bytes}"
        )));
    }
    let signature = match &spec.signature {
        Some(s) => Some(signature::compile_signature(
            s,
            &path.key("signature"),
            env,
        )?),
        None => None,
    };
    let dedup = match &spec.dedup {
        Some(d) => Some(signature::compile_dedup(
            d,
            spec.signature.as_ref(),
            &path.key("dedup"),
        )?),
        None => None,
    };
    let mask = match &spec.mask {
        Some(m) => Some(mask::compile_mask(m, &path.key("mask"), env)?),
        None => None,
    };
    let contract = match &spec.contract {
        Some(c) => Some(super::contract::compile(c, &path.key("contract"))?),
        None => None,
    };
    let routing = match &spec.routing {
        Some(r) => Some(routing::compile_routing(
            r,
            known_clusters,
            &path.key("routing"),
        )?),
        None => None,
    };
    let resign = match &spec.resign {
        Some(r) => Some(compile_resign(
            r,
            spec.signature.is_some(),
            &path.key("resign"),
            env,
        )?),
        None => None,
    };
    let limit = match &spec.limits {
        Some(b) => Some(ChannelLimit::new(&spec.name, b.limit(&path.key("limits"))?)),
        None => None,
    };
    let methods = compile_methods(spec.match_.methods.as_deref(), &match_path.key("methods"))?;
    let stats = ChannelStats::new(&spec.name, routing.iter().flat_map(|r| r.clusters()));
    Ok(ChannelPolicy {
        name: spec.name.clone(),
        methods,
        resign,
        limit,
        matcher: ChannelMatch::new(
            &spec.match_.path_prefix,
            spec.match_.case_sensitive.unwrap_or(false),
            &hosts,
        ),
        max_body_bytes,
        empty_action: spec.empty.as_ref().map(|e| e.action).unwrap_or_default(),
        signature,
        dedup,
        mask,
        contract,
        routing,
        stats,
    })
}

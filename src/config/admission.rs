//! Top-level `admission`.

use super::{ConfigError, FieldPath};
use crate::core::admission::AdmissionPolicy;
use crate::core::admission::bucket::Limit;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AdmissionSpec {
    /// Default `x-callback-priority`.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("default" = "x-callback-priority")))]
    pub priority_header: Option<String>,
    /// Checked in order; the first whose `priority` equals the requested one
    /// and whose `principals` match the caller decides.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// demote (default) | reject
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["demote", "reject", null], "default" = "demote")))]
    pub unauthorized_high: Option<String>,
    /// One more bucket every admitted request draws from; lower priorities
    /// are shed first.
    #[serde(default)]
    pub capacity: Option<BucketSpec>,
    /// Token buckets per priority; over its bucket a request gets 429.
    #[serde(default)]
    pub limits: Option<LimitsSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// high | normal | low
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["high", "normal", "low"])))]
    pub priority: String,
    /// SPIFFE IDs or patterns (`spiffe://td/ns/*/sa/webhook-*`), with or
    /// without the `spiffe://` prefix; `"*"` alone is any identity. May be
    /// empty only when `unauthenticated` is true.
    #[serde(default)]
    pub principals: Vec<String>,
    /// allow | deny
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["allow", "deny"])))]
    pub effect: String,
    /// Extension (not in SPEC): a `deny` rule with `unauthenticated: true`
    /// also matches requests that carry no peer identity (no mTLS client
    /// certificate). Default false: such requests match no rule at all.
    /// Refused on `allow` rules: an unauthenticated caller is never allowed
    /// anything a rule could grant.
    #[serde(default)]
    pub unauthenticated: bool,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    /// Tokens added per second (0.001 to 1e9).
    #[cfg_attr(feature = "schema", schemars(range(min = 0.001, max = 1e9)))]
    pub rps: f64,
    /// Bucket size (1 to 1e9).
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1e9)))]
    pub burst: f64,
}

impl BucketSpec {
    /// Validated runtime form; errors name `path.rps` / `path.burst`.
    pub fn limit(&self, path: &FieldPath) -> Result<Limit, ConfigError> {
        Limit::compile(self.rps, self.burst, path)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Bucket for `high` (absent: unlimited).
    #[serde(default)]
    pub high: Option<BucketSpec>,
    /// Bucket for `normal` (absent: unlimited).
    #[serde(default)]
    pub normal: Option<BucketSpec>,
    /// Bucket for `low` (absent: unlimited).
    #[serde(default)]
    pub low: Option<BucketSpec>,
}

pub(super) fn compile(
    spec: &AdmissionSpec,
    path: &FieldPath,
) -> Result<AdmissionPolicy, ConfigError> {
    AdmissionPolicy::compile(spec, path)
}

//! Top-level `admission`.

use super::{ConfigError, FieldPath};
use crate::core::admission::AdmissionPolicy;
use crate::core::admission::bucket::Limit;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionSpec {
    /// Default `x-callback-priority`.
    #[serde(default)]
    pub priority_header: Option<String>,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// demote (default) | reject
    #[serde(default)]
    pub unauthorized_high: Option<String>,
    #[serde(default)]
    pub capacity: Option<BucketSpec>,
    #[serde(default)]
    pub limits: Option<LimitsSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// high | normal | low
    pub priority: String,
    /// SPIFFE IDs or patterns (`spiffe://td/ns/*/sa/webhook-*`), with or
    /// without the `spiffe://` prefix; `"*"` alone is any identity. May be
    /// empty only when `unauthenticated` is true.
    #[serde(default)]
    pub principals: Vec<String>,
    /// allow | deny
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
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    pub rps: f64,
    pub burst: f64,
}

impl BucketSpec {
    /// Validated runtime form; errors name `path.rps` / `path.burst`.
    pub fn limit(&self, path: &FieldPath) -> Result<Limit, ConfigError> {
        Limit::compile(self.rps, self.burst, path)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    #[serde(default)]
    pub high: Option<BucketSpec>,
    #[serde(default)]
    pub normal: Option<BucketSpec>,
    #[serde(default)]
    pub low: Option<BucketSpec>,
}

pub(super) fn compile(
    spec: &AdmissionSpec,
    path: &FieldPath,
) -> Result<AdmissionPolicy, ConfigError> {
    AdmissionPolicy::compile(spec, path)
}

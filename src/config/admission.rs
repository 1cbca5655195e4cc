//! Top-level `admission`.

use super::{ConfigError, FieldPath};
use crate::core::admission::AdmissionPolicy;
use crate::core::admission::bucket::Limit;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AdmissionSpec {
    /// Default `x-callback-priority`.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("default" = crate::core::names::header::PRIORITY)))]
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
    /// Extension (issue #16): an OPA Rego policy decides admission before
    /// the rules (see docs/configuration.md, "Rego policy").
    #[serde(default)]
    pub policy: Option<RegoPolicySpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RegoPolicySpec {
    /// Rego modules (Rego v1 syntax), file name to source text; 1 to 16
    /// modules, at most 256 KiB in all. Compiled once at configure time.
    pub modules: BTreeMap<String, String>,
    /// The rule to query, e.g. `data.callback.admission.decision`; its
    /// value is `{ "allow": bool, "priority": "high|normal|low", "reason": "..." }`.
    pub entrypoint: String,
    /// Request headers copied into `input.headers` (at most 16, values up
    /// to 1024 bytes).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Requested priorities the policy is evaluated for (default `["high"]`);
    /// the others go to the rules alone.
    #[serde(default)]
    pub priorities: Option<Vec<String>>,
    /// rules (default) | deny: what an evaluation error or timeout leads to.
    #[serde(default)]
    pub on_error: Option<String>,
    /// Wall-clock budget of one evaluation in microseconds (50 to 100000,
    /// default 1000); over it the evaluation is stopped and is an error.
    #[serde(default)]
    pub timeout_us: Option<u64>,
    /// Reasons counted under their own `reason` label in
    /// `callback_admission_policy_total` (at most 32; others count as `other`).
    #[serde(default)]
    pub reasons: Vec<String>,
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

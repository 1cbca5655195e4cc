//! Top-level `admission`.

use super::{ConfigError, FieldPath};
use crate::core::admission::AdmissionPolicy;
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
    pub principals: Vec<String>,
    /// allow | deny
    pub effect: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    pub rps: f64,
    pub burst: f64,
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

//! `channels[].signature` and `channels[].dedup`.

use super::{ConfigError, EnvLookup, FieldPath};
use crate::core::dedup::DedupPolicy;
use crate::core::signature::Verifier;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureSpec {
    /// standard-webhooks | svix | stripe | github | slack | shopify | hmac
    pub scheme: String,
    #[serde(default)]
    pub secrets: Vec<SecretSpec>,
    /// `whpk_...` ed25519 public keys (standard-webhooks / svix `v1a`).
    #[serde(default)]
    pub public_keys: Vec<String>,
    #[serde(default)]
    pub tolerance_s: Option<u64>,
    /// Generic `hmac` scheme only.
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub algorithm: Option<String>,
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
}

/// `{"value": "..."}` or `{"env": "NAME"}`: exactly one of the two.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub env: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupSpec {
    pub window_s: u64,
}

pub(super) fn compile(
    spec: &SignatureSpec,
    path: &FieldPath,
    env: EnvLookup<'_>,
) -> Result<Verifier, ConfigError> {
    Verifier::compile(spec, path, env)
}

pub(super) fn compile_dedup(
    spec: &DedupSpec,
    signature: Option<&SignatureSpec>,
    path: &FieldPath,
) -> Result<DedupPolicy, ConfigError> {
    DedupPolicy::compile(spec, signature, path)
}

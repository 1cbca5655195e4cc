//! `channels[].mask`.

use super::{ConfigError, EnvLookup, FieldPath, SecretSpec};
use crate::core::mask::Masker;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MaskSpec {
    /// Key names matched at any depth (`phone`) or dotted root paths with
    /// `[*]` for array elements (`items[*].card_number`); keys match
    /// case-insensitively unless `case_sensitive` is true.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Extension: match `fields` keys exactly (default false: `phone` also
    /// selects `Phone` and `PHONE`).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("default" = false)))]
    pub case_sensitive: Option<bool>,
    /// email | phone | card | cn_id
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("items" = {"enum": ["email", "phone", "card", "cn_id"]})))]
    pub detectors: Vec<String>,
    /// redact (default) | partial | hash
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["redact", "partial", "hash", null], "default" = "redact")))]
    pub strategy: Option<String>,
    /// Extension, required by (and only for) strategy `hash`: the HMAC-SHA256
    /// key, `{"value": ...}` or `{"env": NAME}`, at least 16 bytes. Without
    /// a key a hashed phone number is recovered by hashing every number.
    #[serde(default)]
    pub hash_key: Option<SecretSpec>,
    /// For `redact`; default `"***"`.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("default" = "***")))]
    pub replacement: Option<String>,
    /// Extension: deepest nesting of objects and arrays accepted (1–1024,
    /// default 128); deeper bodies are refused like malformed JSON.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1024), extend("default" = 128)))]
    pub max_depth: Option<u32>,
}

pub(super) fn compile(
    spec: &MaskSpec,
    path: &FieldPath,
    env: EnvLookup<'_>,
) -> Result<Masker, ConfigError> {
    Masker::compile(spec, path, env)
}

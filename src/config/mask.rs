//! `channels[].mask`.

use super::{ConfigError, FieldPath};
use crate::core::mask::Masker;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MaskSpec {
    /// Key names matched at any depth (`phone`) or dotted root paths with
    /// `[*]` for array elements (`items[*].card_number`).
    #[serde(default)]
    pub fields: Vec<String>,
    /// email | phone | card | cn_id
    #[serde(default)]
    pub detectors: Vec<String>,
    /// redact (default) | partial | hash
    #[serde(default)]
    pub strategy: Option<String>,
    /// For `redact`; default `"***"`.
    #[serde(default)]
    pub replacement: Option<String>,
    /// Extension: deepest nesting of objects and arrays accepted (1–1024,
    /// default 128); deeper bodies are refused like malformed JSON.
    #[serde(default)]
    pub max_depth: Option<u32>,
}

pub(super) fn compile(spec: &MaskSpec, path: &FieldPath) -> Result<Masker, ConfigError> {
    Masker::compile(spec, path)
}

//! `channels[].mask`.

use super::signature::secret_text;
use super::{ConfigError, EnvLookup, FieldPath, SecretSpec};
use crate::core::mask::{
    DEFAULT_MAX_DEPTH, Detector, MAX_MAX_DEPTH, MIN_HASH_KEY_BYTES, Masker, StrategyName,
};
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
    #[cfg_attr(feature = "schema", schemars(extend("default" = [])))]
    pub detectors: Vec<Detector>,
    /// redact (default) | partial | hash
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("default" = "redact")))]
    pub strategy: Option<StrategyName>,
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

/// Checks `mask` (errors under `path`) and builds its [`Masker`]; `env`
/// resolves an `{"env": NAME}` `hash_key`.
pub fn compile_mask(
    spec: &MaskSpec,
    path: &FieldPath,
    env: EnvLookup<'_>,
) -> Result<Masker, ConfigError> {
    let masker = Masker::new(&spec.fields, spec.case_sensitive.unwrap_or(false))
        .map_err(|(i, reason)| path.key("fields").index(i).error(reason))?;

    for (i, d) in spec.detectors.iter().enumerate() {
        if spec
            .detectors
            .get(..i)
            .is_some_and(|before| before.contains(d))
        {
            return Err(path
                .key("detectors")
                .index(i)
                .error(format!("duplicate detector {:?}", d.as_str())));
        }
    }
    let masker = masker.with_detectors(&spec.detectors);

    let strategy = spec.strategy.unwrap_or_default();
    if spec.replacement.is_some() && strategy != StrategyName::Redact {
        return Err(path.key("replacement").error(format!(
            "only used by strategy \"redact\", not {:?}",
            strategy.as_str()
        )));
    }
    let hash_key = compile_hash_key(spec, strategy, &path.key("hash_key"), env)?;
    let masker = masker
        .with_strategy(strategy, spec.replacement.as_deref(), hash_key.as_deref())
        .map_err(|reason| path.key("strategy").error(reason))?;

    let max_depth = match spec.max_depth {
        None => DEFAULT_MAX_DEPTH,
        Some(d) => match usize::try_from(d) {
            Ok(d) if (1..=MAX_MAX_DEPTH).contains(&d) => d,
            _ => {
                return Err(path
                    .key("max_depth")
                    .error(format!("must be between 1 and {MAX_MAX_DEPTH}, got {d}")));
            }
        },
    };
    let masker = masker.with_max_depth(max_depth);

    if masker.is_empty() {
        return Err(path.error("nothing to mask: set fields or detectors"));
    }
    Ok(masker)
}

/// `hash_key`: required by strategy `hash`, refused with any other; its
/// bytes.
fn compile_hash_key(
    spec: &MaskSpec,
    strategy: StrategyName,
    path: &FieldPath,
    env: EnvLookup<'_>,
) -> Result<Option<Vec<u8>>, ConfigError> {
    let hash = strategy == StrategyName::Hash;
    match (&spec.hash_key, hash) {
        (None, true) => Err(path.error(format!(
            "required with strategy \"hash\": an unkeyed hash of a phone or card number is reversed by \
             hashing every possible number (well under a second for a phone plan); give a secret of at \
             least {MIN_HASH_KEY_BYTES} bytes ({{\"env\": NAME}} or {{\"value\": ...}})"
        ))),
        (None, false) => Ok(None),
        (Some(secret), true) => {
            let text = secret_text(secret, path, env)?;
            if text.len() < MIN_HASH_KEY_BYTES {
                return Err(path.error(format!(
                    "must be at least {MIN_HASH_KEY_BYTES} bytes long, got {}",
                    text.len()
                )));
            }
            Ok(Some(text.into_bytes()))
        }
        (Some(_), false) => Err(path.error(format!(
            "only used by strategy \"hash\", not {:?}",
            strategy.as_str()
        ))),
    }
}

#[cfg(test)]
#[path = "mask_tests.rs"]
mod mask_tests;

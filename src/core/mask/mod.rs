//! PII masking of JSON bodies (SPEC `mask`). STUB: API the filter calls.

use crate::config::{ConfigError, FieldPath, MaskSpec};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masked {
    pub body: Vec<u8>,
    /// Values replaced (`callback_masked_fields_total`).
    pub count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskError {
    /// Not valid JSON.
    BadJson,
    /// Nesting deeper than the documented limit.
    TooDeep,
}

#[derive(Debug)]
pub struct Masker {}

impl Masker {
    pub fn compile(_spec: &MaskSpec, _path: &FieldPath) -> Result<Self, ConfigError> {
        Ok(Self {})
    }

    /// True for `application/json` and `*/*+json` content types.
    pub fn applies_to(content_type: Option<&str>) -> bool {
        let Some(ct) = content_type else { return false };
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        essence == "application/json" || essence.ends_with("+json")
    }

    /// Masks a complete JSON body.
    pub fn mask(&self, body: &[u8]) -> Result<Masked, MaskError> {
        Ok(Masked {
            body: body.to_vec(),
            count: 0,
        })
    }
}

//! PII masking of JSON bodies (SPEC `mask`).
//!
//! A [`Masker`] is built once from the channel's `mask` configuration
//! (`config::compile_mask` checks it and calls [`Masker::new`] and the
//! `with_*` setters) and applied to each complete JSON body with
//! [`Masker::mask`]:
//!
//! - `fields` select values by key name at any depth (`phone`) or by a
//!   dotted path from the root with `[*]` for array elements
//!   (`items[*].card_number`); a selected value is replaced whole, whatever
//!   its type (see [`select`](self) and the strategy docs);
//! - `detectors` (`email`, `phone`, `card`, `cn_id`) look inside every other
//!   string value and mask only the substrings they recognise, so free text
//!   stays readable; object keys are never rewritten;
//! - `strategy` is `redact` (the `replacement`, default `***`), `partial`
//!   (last 4 characters kept; values under 8 characters fully starred) or
//!   `hash` (`hmac-sha256:` + 32 hex, keyed by the required `hash_key`).
//!
//! The rewrite is one streaming pass that validates the JSON and copies
//! every byte that is not masked verbatim; see `json.rs`. Nesting deeper
//! than [`DEFAULT_MAX_DEPTH`] (or the `max_depth` extension) is refused with
//! [`MaskError::TooDeep`].
//!
//! ```
//! use callback_guard::core::mask::{Detector, Masker};
//!
//! let fields = ["customer.email".to_string(), "items[*].card_number".to_string()];
//! let masker = Masker::new(&fields, false).unwrap().with_detectors(&[Detector::Phone]);
//! let body = br#"{"customer": {"email": "a@b.io", "note": "call +8613812345678 now"},
//!                "items": [{"card_number": 4111111111111111, "qty": 1.50}]}"#;
//! let masked = masker.mask(body).unwrap();
//! assert_eq!(masked.count, 3);
//! assert_eq!(
//!     String::from_utf8(masked.body).unwrap(),
//!     r#"{"customer": {"email": "***", "note": "call *** now"},
//!                "items": [{"card_number": "***", "qty": 1.50}]}"#,
//! );
//! ```

// A panic kills the whole Wasm VM: no indexing that could go out of bounds.
#![deny(clippy::indexing_slicing)]

mod detect;
mod json;
mod select;
mod strategy;

pub use strategy::{
    DEFAULT_REPLACEMENT, HASH_HEX_DIGITS, HASH_PREFIX, MIN_HASH_KEY_BYTES, PARTIAL_KEEP_CHARS,
    PARTIAL_MIN_CHARS,
};

pub use detect::Detector;

use detect::Detectors;
use select::Selectors;
use std::fmt;
use strategy::{HashKey, Strategy};

/// Deepest nesting of objects and arrays accepted by default (serde_json's
/// own recursion limit).
pub const DEFAULT_MAX_DEPTH: usize = 128;
/// Upper bound for the `max_depth` extension.
pub const MAX_MAX_DEPTH: usize = 1024;

/// Media types masked besides the `+json` suffix family.
pub const JSON_MEDIA_TYPES: [&str; 4] = [
    "application/json",
    "text/json",
    "application/x-json",
    "text/x-json",
];

/// A masked body.
#[derive(Clone, PartialEq, Eq)]
pub struct Masked {
    pub body: Vec<u8>,
    /// Values replaced (`callback_masked_fields_total`): one per selected
    /// field, one per detector finding inside a string.
    pub count: u64,
}

impl fmt::Debug for Masked {
    // Bodies can be large; their length and the count are what logs need.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masked")
            .field("body_len", &self.body.len())
            .field("count", &self.count)
            .finish()
    }
}

/// Why a body could not be masked. Carries nothing from the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskError {
    /// Not valid JSON (RFC 8259, UTF-8).
    BadJson,
    /// Nesting deeper than the configured limit.
    TooDeep,
}

impl fmt::Display for MaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadJson => "body is not valid JSON",
            Self::TooDeep => "JSON body is nested too deeply",
        })
    }
}

impl std::error::Error for MaskError {}

/// The compiled `mask` configuration of one channel.
#[derive(Debug)]
pub struct Masker {
    selectors: Selectors,
    detectors: Detectors,
    strategy: Strategy,
    max_depth: usize,
}

/// `mask.strategy`, as named in the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum StrategyName {
    /// The `replacement` (default `***`).
    #[default]
    Redact,
    /// The last 4 characters kept.
    Partial,
    /// `hmac-sha256:` + 32 hex under the `hash_key`.
    Hash,
}

impl StrategyName {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redact => "redact",
            Self::Partial => "partial",
            Self::Hash => "hash",
        }
    }
}

impl Detector {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Card => "card",
            Self::CnId => "cn_id",
        }
    }
}

impl Masker {
    /// A masker of the `fields` selectors (keys compared case-insensitively
    /// unless `case_sensitive`), no detectors, strategy `redact` with the
    /// default replacement, nesting limit [`DEFAULT_MAX_DEPTH`]. An error
    /// is the index of the offending selector in `fields` and the reason.
    pub fn new(fields: &[String], case_sensitive: bool) -> Result<Self, (usize, String)> {
        Ok(Self {
            selectors: Selectors::new(fields, case_sensitive)?,
            detectors: Detectors::default(),
            strategy: Strategy::Redact(DEFAULT_REPLACEMENT.into()),
            max_depth: DEFAULT_MAX_DEPTH,
        })
    }

    /// Also looks inside strings with these detectors (a repeated one is
    /// enabled once).
    pub fn with_detectors(mut self, detectors: &[Detector]) -> Self {
        for d in detectors {
            self.detectors.enable(*d);
        }
        self
    }

    /// Replaces selected values and findings by `strategy`: `replacement`
    /// is `redact`'s text (default [`DEFAULT_REPLACEMENT`]), `hash_key`
    /// `hash`'s key. The error is a reason without a field path: `hash`
    /// needs a key of at least [`MIN_HASH_KEY_BYTES`] bytes.
    pub fn with_strategy(
        mut self,
        strategy: StrategyName,
        replacement: Option<&str>,
        hash_key: Option<&[u8]>,
    ) -> Result<Self, &'static str> {
        let key = hash_key.and_then(HashKey::new);
        self.strategy = Strategy::parse(strategy.as_str(), replacement, key)
            .ok_or("needs a hash key of at least 16 bytes")?;
        Ok(self)
    }

    /// Refuses bodies nested deeper than `max_depth` (the caller bounds
    /// it, see [`MAX_MAX_DEPTH`]).
    pub fn with_max_depth(mut self, max_depth: usize) -> Self {
        self.max_depth = max_depth;
        self
    }

    /// Whether it masks nothing at all (no selector, no detector).
    pub fn is_empty(&self) -> bool {
        self.selectors.is_empty() && self.detectors.is_empty()
    }

    /// True for the JSON media types: `application/json`, the legacy
    /// `text/json`, `application/x-json` and `text/x-json` (still sent by
    /// some providers and frameworks), and any `<type>/<subtype>+json`;
    /// parameters ignored, case-insensitive.
    /// Whether a body is masked: its content type says JSON, or, whatever
    /// the content type says (or if there is none), it looks like a JSON
    /// object or array. A service that parses JSON leniently must not get
    /// unmasked PII because the sender left the content type out.
    pub fn applies(content_type: Option<&str>, body: &[u8]) -> bool {
        Self::applies_to(content_type) || looks_like_json(body)
    }

    pub fn applies_to(content_type: Option<&str>) -> bool {
        let Some(ct) = content_type else { return false };
        let essence = ct.split(';').next().unwrap_or("").trim();
        let suffix = essence
            .len()
            .checked_sub(5)
            .and_then(|at| essence.get(at..));
        JSON_MEDIA_TYPES
            .iter()
            .any(|t| essence.eq_ignore_ascii_case(t))
            || (essence.contains('/') && suffix.is_some_and(|s| s.eq_ignore_ascii_case("+json")))
    }

    /// The nesting limit in force.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// Masks a complete JSON body: validates it and returns it with every
    /// selected value and detector finding replaced, everything else byte
    /// for byte as it came.
    pub fn mask(&self, body: &[u8]) -> Result<Masked, MaskError> {
        json::rewrite(self, body)
    }
}

#[cfg(test)]
mod tests;

/// The first byte after a UTF-8 byte-order mark and leading whitespace
/// opens a JSON object or array (some parsers skip the mark, so a body
/// behind one must not escape masking; the masker refuses it as bad JSON).
pub fn looks_like_json(body: &[u8]) -> bool {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    matches!(body.trim_ascii_start().first(), Some(b'{' | b'['))
}

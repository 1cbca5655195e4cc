//! PII masking of JSON bodies (SPEC `mask`).
//!
//! A [`Masker`] is compiled once from the channel's `mask` configuration and
//! applied to each complete JSON body with [`Masker::mask`]:
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
//! use callback_guard::config::{FieldPath, MaskSpec};
//! use callback_guard::core::mask::Masker;
//!
//! let spec: MaskSpec = serde_json::from_str(
//!     r#"{"fields": ["customer.email", "items[*].card_number"], "detectors": ["phone"]}"#,
//! ).unwrap();
//! let masker = Masker::compile(&spec, &FieldPath::root().key("mask"), &|_| None).unwrap();
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

use crate::config::{ConfigError, EnvLookup, FieldPath, MaskSpec};
use crate::core::signature::secret_text;
use detect::{Detector, Detectors};
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

impl Masker {
    /// Validates `spec`; errors name the offending field under `path`
    /// (`channels[0].mask.fields[2]: …`). `env` resolves an `{"env": …}`
    /// `hash_key`.
    pub fn compile(
        spec: &MaskSpec,
        path: &FieldPath,
        env: EnvLookup<'_>,
    ) -> Result<Self, ConfigError> {
        let selectors = Selectors::new(&spec.fields, spec.case_sensitive.unwrap_or(false))
            .map_err(|(i, reason)| path.key("fields").index(i).error(reason))?;

        let mut detectors = Detectors::default();
        for (i, name) in spec.detectors.iter().enumerate() {
            let dpath = path.key("detectors").index(i);
            let d = Detector::parse(name).ok_or_else(|| {
                dpath.error(format!(
                    "unknown detector {name:?}, expected one of {}",
                    Detector::NAMES.join(", ")
                ))
            })?;
            if !detectors.enable(d) {
                return Err(dpath.error(format!("duplicate detector {name:?}")));
            }
        }

        let name = spec.strategy.as_deref().unwrap_or("redact");
        if spec.replacement.is_some() && name != "redact" {
            return Err(path
                .key("replacement")
                .error(format!("only used by strategy \"redact\", not {name:?}")));
        }
        if !Strategy::NAMES.contains(&name) {
            return Err(path.key("strategy").error(format!(
                "unknown strategy {name:?}, expected one of {}",
                Strategy::NAMES.join(", ")
            )));
        }
        let hash_key = compile_hash_key(spec, name, &path.key("hash_key"), env)?;
        let strategy =
            Strategy::parse(name, spec.replacement.as_deref(), hash_key).ok_or_else(|| {
                path.key("strategy")
                    .error(format!("invalid strategy {name:?}"))
            })?;

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

        if selectors.is_empty() && detectors.is_empty() {
            return Err(path.error("nothing to mask: set fields or detectors"));
        }
        Ok(Self {
            selectors,
            detectors,
            strategy,
            max_depth,
        })
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

/// `hash_key`: required by strategy `hash`, refused with any other.
fn compile_hash_key(
    spec: &MaskSpec,
    strategy: &str,
    path: &FieldPath,
    env: EnvLookup<'_>,
) -> Result<Option<HashKey>, ConfigError> {
    match (&spec.hash_key, strategy == "hash") {
        (None, true) => Err(path.error(format!(
            "required with strategy \"hash\": an unkeyed hash of a phone or card number is reversed by \
             hashing every possible number (well under a second for a phone plan); give a secret of at \
             least {MIN_HASH_KEY_BYTES} bytes ({{\"env\": NAME}} or {{\"value\": ...}})"
        ))),
        (None, false) => Ok(None),
        (Some(secret), true) => {
            let text = secret_text(secret, path, env)?;
            HashKey::new(text.as_bytes()).map(Some).ok_or_else(|| {
                path.error(format!(
                    "must be at least {MIN_HASH_KEY_BYTES} bytes long, got {}",
                    text.len()
                ))
            })
        }
        (Some(_), false) => Err(path.error(format!(
            "only used by strategy \"hash\", not {strategy:?}"
        ))),
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

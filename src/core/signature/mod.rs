//! Webhook signature verification (SPEC `signature`).
//!
//! STUB: the API the filter calls. To be implemented per scheme.

use crate::config::{ConfigError, EnvLookup, FieldPath, SignatureSpec};
use crate::core::headers::Headers;

/// Why a signature did not verify; the `reason` label of
/// `callback_signature_failed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    Missing,
    Malformed,
    Mismatch,
    Expired,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Mismatch => "mismatch",
            Self::Expired => "expired",
        }
    }
}

/// A compiled `signature` section: scheme plus decoded keys.
#[derive(Debug)]
pub struct Verifier {
    scheme: &'static str,
}

impl Verifier {
    pub fn compile(
        spec: &SignatureSpec,
        path: &FieldPath,
        _env: EnvLookup<'_>,
    ) -> Result<Self, ConfigError> {
        Err(path
            .key("scheme")
            .error(format!("scheme {:?} is not supported yet", spec.scheme)))
    }

    /// The SPEC scheme name, the value of `x-verified-signature`.
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// Verifies the complete raw body against the request headers at
    /// `now_unix_s`.
    pub fn verify(
        &self,
        _headers: &Headers,
        _body: &[u8],
        _now_unix_s: u64,
    ) -> Result<(), FailureReason> {
        Err(FailureReason::Missing)
    }

    /// The provider's delivery id for dedup (`webhook-id`, `svix-id`,
    /// `x-github-delivery`, `x-shopify-webhook-id`, Stripe event `id`).
    pub fn delivery_id(&self, _headers: &Headers, _body: &[u8]) -> Option<String> {
        None
    }
}

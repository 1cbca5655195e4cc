//! Webhook signature verification (SPEC `signature`).
//!
//! `config::compile_signature` checks a `signature` section and builds a
//! [`Verifier`] through its typed constructors ([`Verifier::github`], ...)
//! from keys decoded here ([`whsec`], [`whpk`], [`HmacKey::new`], each
//! failing with a reason that config puts under the field's path);
//! [`Verifier::verify`] checks one request's headers and complete raw body.
//!
//! | scheme | header(s) | signed content | encoding |
//! |---|---|---|---|
//! | `standard-webhooks` | `webhook-id`, `webhook-timestamp`, `webhook-signature` | `id.ts.body` | `v1,<b64 HMAC-SHA256>` / `v1a,<b64 ed25519>` |
//! | `svix` | the same with `svix-` names | `id.ts.body` | same |
//! | `stripe` | `stripe-signature: t=..,v1=..` | `ts.body` | hex HMAC-SHA256, only `v1` |
//! | `github` | `x-hub-signature-256: sha256=..` | body | hex HMAC-SHA256 |
//! | `slack` | `x-slack-signature: v0=..`, `x-slack-request-timestamp` | `v0:ts:body` | hex HMAC-SHA256 |
//! | `shopify` | `x-shopify-hmac-sha256` | body | base64 HMAC-SHA256 |
//! | `hmac` | `header` | body | `encoding` of `algorithm`, after `prefix` |
//!
//! Failure reasons, checked in this order: a required header absent or
//! blank is [`FailureReason::Missing`]; a timestamp that is not whole
//! seconds, or a signature header with no usable entry (wrong prefix or
//! version, bad hex/base64, wrong length) is [`FailureReason::Malformed`];
//! a timestamp more than `tolerance_s` (default 300) from now, past or
//! future, is [`FailureReason::Expired`]; well-formed signatures of which
//! none verifies are [`FailureReason::Mismatch`].
//!
//! Bounds: at most [`MAX_SIGNATURE_ENTRIES`] entries of one signature
//! header are looked at (further ones are ignored, never an error), and at
//! most [`MAX_KEYS`] secrets and public keys per channel. Each secret's tag
//! is computed once per request and compared to every entry in constant
//! time, with lengths checked first: an empty or truncated signature never
//! verifies.
//!
//! ```
//! use callback_guard::core::headers::Headers;
//! use callback_guard::core::signature::{Algorithm, FailureReason, HmacKey, Verifier};
//!
//! let key = HmacKey::new(Algorithm::Sha256, b"It's a Secret to Everybody").unwrap();
//! let verifier = Verifier::github(vec![key]);
//! // GitHub's documented example.
//! let headers: Headers = [(
//!     "X-Hub-Signature-256",
//!     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
//! )].into_iter().collect();
//! assert_eq!(verifier.verify(&headers, b"Hello, World!", 0), Ok(()));
//! assert_eq!(verifier.verify(&headers, b"Hello, World?", 0), Err(FailureReason::Mismatch));
//! assert_eq!(verifier.scheme(), "github");
//! ```

mod compare;
mod github;
mod hmac_generic;
mod keys;

mod shopify;
mod slack;
mod standard_webhooks;
mod stripe;

pub use hmac_generic::Encoding;
pub use keys::{Algorithm, HmacKey, MAX_KEYS, PublicKey, whpk, whsec};

use crate::core::headers::Headers;
use crate::core::names::header;
use std::fmt;

/// SPEC default of `tolerance_s`.
pub const DEFAULT_TOLERANCE_S: u64 = 300;
/// Longest `tolerance_s` accepted: one hour. Providers sign every retry
/// with a fresh timestamp, so a longer replay window only helps replays.
pub const MAX_TOLERANCE_S: u64 = 3600;

/// How many entries of one signature header are considered (space-separated
/// for Standard Webhooks/Svix, comma-separated items for Stripe). Real
/// senders put one per active secret; the cap keeps a hostile header from
/// making us hash the body once per entry or parse without end.
pub const MAX_SIGNATURE_ENTRIES: usize = 16;

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
    /// Every reason (the `reason` label of `callback_signature_failed_total`).
    pub const ALL: [FailureReason; 4] = [
        FailureReason::Missing,
        FailureReason::Malformed,
        FailureReason::Mismatch,
        FailureReason::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Mismatch => "mismatch",
            Self::Expired => "expired",
        }
    }
}

/// The signature schemes of SPEC `signature.scheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    StandardWebhooks,
    Svix,
    Stripe,
    Github,
    Slack,
    Shopify,
    Hmac,
}

impl Scheme {
    pub const ALL: [Scheme; 7] = [
        Self::StandardWebhooks,
        Self::Svix,
        Self::Stripe,
        Self::Github,
        Self::Slack,
        Self::Shopify,
        Self::Hmac,
    ];

    /// The SPEC name (`standard-webhooks`, ...).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The SPEC name, also the value of `x-verified-signature`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StandardWebhooks => "standard-webhooks",
            Self::Svix => "svix",
            Self::Stripe => "stripe",
            Self::Github => "github",
            Self::Slack => "slack",
            Self::Shopify => "shopify",
            Self::Hmac => "hmac",
        }
    }

    /// Whether the signed content carries a timestamp (`tolerance_s`
    /// applies).
    pub fn has_timestamp(self) -> bool {
        matches!(
            self,
            Self::StandardWebhooks | Self::Svix | Self::Stripe | Self::Slack
        )
    }

    /// Whether the scheme has an ed25519 variant (`public_keys`, `v1a`).
    pub fn has_asymmetric(self) -> bool {
        matches!(self, Self::StandardWebhooks | Self::Svix)
    }
}

/// The compiled scheme with its keys.
enum Inner {
    StandardWebhooks(standard_webhooks::StandardWebhooks),
    Stripe(keys::TimestampedKeys),
    Slack(keys::TimestampedKeys),
    /// `hmac`, and its presets `github` and `shopify`.
    BodyHmac(hmac_generic::HmacGeneric),
}

/// A compiled `signature` section: scheme plus decoded keys.
///
/// `Debug` shows the scheme and how many keys it holds, never key material.
pub struct Verifier {
    scheme: Scheme,
    inner: Inner,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secrets, public_keys) = match &self.inner {
            Inner::StandardWebhooks(v) => (v.secret_count(), v.public_key_count()),
            Inner::Stripe(v) | Inner::Slack(v) => (v.secret_count(), 0),
            Inner::BodyHmac(v) => (v.secret_count(), 0),
        };
        f.debug_struct("Verifier")
            .field("scheme", &self.scheme.as_str())
            .field("secrets", &format_args!("{secrets} x <redacted>"))
            .field("public_keys", &public_keys)
            .finish()
    }
}

impl Verifier {
    /// `standard-webhooks`: `secrets` are HMAC-SHA256 keys of decoded
    /// `whsec_` secrets ([`whsec`]), `public_keys` verify `v1a` entries.
    pub fn standard_webhooks(
        secrets: Vec<HmacKey>,
        public_keys: Vec<PublicKey>,
        tolerance_s: u64,
    ) -> Self {
        Self {
            scheme: Scheme::StandardWebhooks,
            inner: Inner::StandardWebhooks(standard_webhooks::StandardWebhooks::new(
                false,
                secrets,
                public_keys,
                tolerance_s,
            )),
        }
    }

    /// `svix`: [`Verifier::standard_webhooks`] under the `svix-` header
    /// names.
    pub fn svix(secrets: Vec<HmacKey>, public_keys: Vec<PublicKey>, tolerance_s: u64) -> Self {
        Self {
            scheme: Scheme::Svix,
            inner: Inner::StandardWebhooks(standard_webhooks::StandardWebhooks::new(
                true,
                secrets,
                public_keys,
                tolerance_s,
            )),
        }
    }

    /// `stripe`: `secrets` are HMAC-SHA256 keys of the secret strings.
    pub fn stripe(secrets: Vec<HmacKey>, tolerance_s: u64) -> Self {
        Self {
            scheme: Scheme::Stripe,
            inner: Inner::Stripe(keys::TimestampedKeys::new(secrets, tolerance_s)),
        }
    }

    /// `slack`: `secrets` are HMAC-SHA256 keys of the signing secrets.
    pub fn slack(secrets: Vec<HmacKey>, tolerance_s: u64) -> Self {
        Self {
            scheme: Scheme::Slack,
            inner: Inner::Slack(keys::TimestampedKeys::new(secrets, tolerance_s)),
        }
    }

    /// `github`: `secrets` are HMAC-SHA256 keys of the secret strings.
    pub fn github(secrets: Vec<HmacKey>) -> Self {
        Self {
            scheme: Scheme::Github,
            inner: Inner::BodyHmac(github::body_hmac(secrets)),
        }
    }

    /// `shopify`: `secrets` are HMAC-SHA256 keys of the client secrets.
    pub fn shopify(secrets: Vec<HmacKey>) -> Self {
        Self {
            scheme: Scheme::Shopify,
            inner: Inner::BodyHmac(shopify::body_hmac(secrets)),
        }
    }

    /// `hmac`: the tag of `algorithm` over the body, written in `encoding`
    /// after the literal `prefix`, in `header` (a valid header name; matched
    /// case-insensitively). `secrets` are keys of `algorithm`.
    pub fn hmac(
        header: &str,
        algorithm: Algorithm,
        encoding: Encoding,
        prefix: Option<&str>,
        secrets: Vec<HmacKey>,
    ) -> Self {
        Self {
            scheme: Scheme::Hmac,
            inner: Inner::BodyHmac(hmac_generic::HmacGeneric::new(
                header, algorithm, encoding, prefix, secrets,
            )),
        }
    }

    /// The SPEC scheme name, the value of `x-verified-signature`.
    pub fn scheme(&self) -> &'static str {
        self.scheme.as_str()
    }

    /// The scheme as an enum.
    pub fn scheme_kind(&self) -> Scheme {
        self.scheme
    }

    /// Verifies the complete raw body against the request headers at
    /// `now_unix_s`.
    pub fn verify(
        &self,
        headers: &Headers,
        body: &[u8],
        now_unix_s: u64,
    ) -> Result<(), FailureReason> {
        match &self.inner {
            Inner::StandardWebhooks(v) => v.verify(headers, body, now_unix_s),
            Inner::Stripe(k) => stripe::verify(k, headers, body, now_unix_s),
            Inner::Slack(k) => slack::verify(k, headers, body, now_unix_s),
            Inner::BodyHmac(v) => v.verify(headers, body),
        }
    }

    /// The request headers that carry the provider's signature material:
    /// `resign` removes them before it signs the forwarded body itself.
    pub fn signature_headers(&self) -> Vec<&str> {
        match (&self.inner, self.scheme) {
            (Inner::StandardWebhooks(v), _) => v.header_names().to_vec(),
            (Inner::Stripe(_), _) => vec![header::STRIPE_SIGNATURE],
            (Inner::Slack(_), _) => vec![header::SLACK_SIGNATURE, header::SLACK_TIMESTAMP],
            // GitHub still sends the legacy SHA-1 signature next to it.
            (Inner::BodyHmac(v), Scheme::Github) => vec![v.header(), header::GITHUB_SIGNATURE_SHA1],
            (Inner::BodyHmac(v), _) => vec![v.header()],
        }
    }
}

/// Test helpers shared by the scheme modules: verifiers from a small JSON
/// description in the `signature` shape, built with the typed constructors
/// (no configuration layer; the config checks are tested in
/// `config::signature`).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use serde_json::Value;

    /// A verifier from `{"scheme", "secrets":[{"value"}], "public_keys",
    /// "tolerance_s", "header", "algorithm", "encoding", "prefix"}`; panics
    /// on anything it does not understand.
    pub(crate) fn compile(json: &str) -> Verifier {
        let v: Value = serde_json::from_str(json).unwrap();
        let scheme: Scheme = serde_json::from_value(v["scheme"].clone()).unwrap();
        let texts: Vec<String> = v["secrets"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s["value"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let public_keys: Vec<PublicKey> = v["public_keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|k| whpk(k.as_str().unwrap()).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        let tolerance_s = v["tolerance_s"].as_u64().unwrap_or(DEFAULT_TOLERANCE_S);
        let algorithm: Algorithm = match &v["algorithm"] {
            Value::Null => Algorithm::Sha256,
            a => serde_json::from_value(a.clone()).unwrap(),
        };
        let raw = |algorithm| -> Vec<HmacKey> {
            texts
                .iter()
                .map(|t| HmacKey::new(algorithm, t.as_bytes()).unwrap())
                .collect()
        };
        let whsec_keys = || -> Vec<HmacKey> {
            texts
                .iter()
                .map(|t| HmacKey::new(Algorithm::Sha256, &whsec(t).unwrap()).unwrap())
                .collect()
        };
        match scheme {
            Scheme::StandardWebhooks => {
                Verifier::standard_webhooks(whsec_keys(), public_keys, tolerance_s)
            }
            Scheme::Svix => Verifier::svix(whsec_keys(), public_keys, tolerance_s),
            Scheme::Stripe => Verifier::stripe(raw(Algorithm::Sha256), tolerance_s),
            Scheme::Slack => Verifier::slack(raw(Algorithm::Sha256), tolerance_s),
            Scheme::Github => Verifier::github(raw(Algorithm::Sha256)),
            Scheme::Shopify => Verifier::shopify(raw(Algorithm::Sha256)),
            Scheme::Hmac => {
                let encoding: Encoding = match &v["encoding"] {
                    Value::Null => Encoding::Hex,
                    e => serde_json::from_value(e.clone()).unwrap(),
                };
                Verifier::hmac(
                    v["header"].as_str().unwrap(),
                    algorithm,
                    encoding,
                    v["prefix"].as_str(),
                    raw(algorithm),
                )
            }
        }
    }

    /// A verifier of `scheme` with these inline secrets.
    pub(crate) fn with_secrets(scheme: &str, secrets: &[&str]) -> Verifier {
        let list: Vec<String> = secrets
            .iter()
            .map(|s| format!(r#"{{"value":"{s}"}}"#))
            .collect();
        compile(&format!(
            r#"{{"scheme":"{scheme}","secrets":[{}]}}"#,
            list.join(",")
        ))
    }

    pub(crate) fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().copied().collect()
    }

    pub(crate) fn hmac_sha256_hex(key: &[u8], parts: &[&[u8]]) -> String {
        HmacKey::new(Algorithm::Sha256, key)
            .unwrap()
            .tag(parts)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn scheme_names_round_trip() {
        for s in Scheme::ALL {
            assert_eq!(Scheme::parse(s.as_str()), Some(s));
        }
        assert_eq!(Scheme::parse("Stripe"), None);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let v = compile(
            r#"{"scheme":"svix","secrets":[{"value":"whsec_c3VwZXItc2VjcmV0LWJ5dGVz"},{"value":"whsec_ZW52LXNlY3JldC1ieXRlcw=="}]}"#,
        );
        let shown = format!("{v:?}");
        for needle in ["c3VwZXI", "ZW52LX", "super", "env-secret"] {
            assert!(!shown.contains(needle), "{shown}");
        }
        assert!(
            shown.contains("<redacted>") && shown.contains("svix"),
            "{shown}"
        );
    }

    #[test]
    fn failure_reason_labels() {
        let labels: Vec<_> = [
            FailureReason::Missing,
            FailureReason::Malformed,
            FailureReason::Mismatch,
            FailureReason::Expired,
        ]
        .map(FailureReason::as_str)
        .into();
        assert_eq!(labels, ["missing", "malformed", "mismatch", "expired"]);
    }

    // proptest needs an entropy source that wasm32-unknown-unknown lacks.
    #[cfg(not(target_arch = "wasm32"))]
    proptest::proptest! {
        /// Whatever the headers say, a forged request never verifies and
        /// nothing panics (a panic would kill the VM).
        #[test]
        fn arbitrary_headers_never_verify(
            sig in "[ -~]{0,200}",
            ts in "[0-9a-z.=, -]{0,24}",
            id in "[ -~]{0,40}",
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        ) {
            let verifiers = [
                compile(r#"{"scheme":"standard-webhooks","secrets":[{"value":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}],"public_keys":["whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g="]}"#),
                compile(r#"{"scheme":"svix","secrets":[{"value":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}]}"#),
                compile(r#"{"scheme":"stripe","secrets":[{"value":"k"}]}"#),
                compile(r#"{"scheme":"github","secrets":[{"value":"k"}]}"#),
                compile(r#"{"scheme":"slack","secrets":[{"value":"k"}]}"#),
                compile(r#"{"scheme":"shopify","secrets":[{"value":"k"}]}"#),
                compile(r#"{"scheme":"hmac","secrets":[{"value":"k"}],"header":"x-sig","encoding":"base64"}"#),
            ];
            let names = [
                "webhook-signature", "svix-signature", "stripe-signature", "x-hub-signature-256",
                "x-slack-signature", "x-shopify-hmac-sha256", "x-sig",
            ];
            let mut pairs: Vec<(&str, &str)> = names.iter().map(|n| (*n, sig.as_str())).collect();
            for n in ["webhook-timestamp", "svix-timestamp", "x-slack-request-timestamp"] {
                pairs.push((n, ts.as_str()));
            }
            pairs.push(("webhook-id", id.as_str()));
            pairs.push(("svix-id", id.as_str()));
            let h = headers(&pairs);
            for v in &verifiers {
                proptest::prop_assert!(v.verify(&h, &body, 1_700_000_000).is_err());
            }
        }
    }
}

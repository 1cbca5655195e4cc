//! Webhook signature verification (SPEC `signature`).
//!
//! [`Verifier::compile`] turns a `signature` section into decoded keys (the
//! configuration is refused with a field path when anything is off);
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
//! use callback_guard::config::{FieldPath, SignatureSpec};
//! use callback_guard::core::headers::Headers;
//! use callback_guard::core::signature::{FailureReason, Verifier};
//!
//! let spec: SignatureSpec = serde_json::from_str(
//!     r#"{"scheme":"github","secrets":[{"value":"It's a Secret to Everybody"}]}"#,
//! ).unwrap();
//! let verifier = Verifier::compile(&spec, &FieldPath::root(), &|_| None).unwrap();
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

/// Reads one `{"value"}` / `{"env"}` secret (also used by `mask.hash_key`).
pub(crate) use keys::{secret_text, whsec};
mod shopify;
mod slack;
mod standard_webhooks;
mod stripe;

pub use keys::MAX_KEYS;

use crate::config::{ConfigError, EnvLookup, FieldPath, SignatureSpec};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Validates `spec` (field paths under `path`) and decodes its keys;
    /// `env` resolves `{"env": NAME}` secrets.
    pub fn compile(
        spec: &SignatureSpec,
        path: &FieldPath,
        env: EnvLookup<'_>,
    ) -> Result<Self, ConfigError> {
        let scheme = Scheme::parse(&spec.scheme).ok_or_else(|| {
            let known: Vec<&str> = Scheme::ALL.iter().map(|s| s.as_str()).collect();
            path.key("scheme").error(format!(
                "unknown scheme {:?} (expected one of: {})",
                spec.scheme,
                known.join(", ")
            ))
        })?;

        if scheme != Scheme::Hmac {
            for (name, given) in [
                ("header", spec.header.is_some()),
                ("algorithm", spec.algorithm.is_some()),
                ("encoding", spec.encoding.is_some()),
                ("prefix", spec.prefix.is_some()),
            ] {
                if given {
                    return Err(path.key(name).error(format!(
                        "only applies to scheme \"hmac\", not {:?}",
                        scheme.as_str()
                    )));
                }
            }
        }
        if !scheme.has_asymmetric() && !spec.public_keys.is_empty() {
            return Err(path.key("public_keys").error(format!(
                "scheme {:?} has no asymmetric (ed25519) variant",
                scheme.as_str()
            )));
        }
        let tolerance_s = match spec.tolerance_s {
            Some(_) if !scheme.has_timestamp() => {
                return Err(path.key("tolerance_s").error(format!(
                    "scheme {:?} signs no timestamp; tolerance_s does not apply",
                    scheme.as_str()
                )));
            }
            Some(t) if !(1..=MAX_TOLERANCE_S).contains(&t) => {
                return Err(path.key("tolerance_s").error(format!(
                    "must be between 1 and {MAX_TOLERANCE_S} seconds, got {t}"
                )));
            }
            Some(t) => t,
            None => DEFAULT_TOLERANCE_S,
        };

        let secrets_path = path.key("secrets");
        let texts = keys::secret_texts(&spec.secrets, &secrets_path, env)?;
        if spec.public_keys.len() > MAX_KEYS {
            return Err(path.key("public_keys").error(format!(
                "at most {MAX_KEYS} public keys, got {}",
                spec.public_keys.len()
            )));
        }
        if texts.is_empty() && spec.public_keys.is_empty() {
            return Err(secrets_path.error(if scheme.has_asymmetric() {
                "needs at least one secret or public key"
            } else {
                "needs at least one secret"
            }));
        }

        let inner = match scheme {
            Scheme::StandardWebhooks | Scheme::Svix => {
                Inner::StandardWebhooks(standard_webhooks::StandardWebhooks::compile(
                    scheme,
                    &texts,
                    &spec.public_keys,
                    path,
                    tolerance_s,
                )?)
            }
            Scheme::Stripe => {
                Inner::Stripe(keys::TimestampedKeys::compile(&texts, path, tolerance_s)?)
            }
            Scheme::Github => Inner::BodyHmac(github::body_hmac(&texts, path)?),
            Scheme::Slack => {
                Inner::Slack(keys::TimestampedKeys::compile(&texts, path, tolerance_s)?)
            }
            Scheme::Shopify => Inner::BodyHmac(shopify::body_hmac(&texts, path)?),
            Scheme::Hmac => {
                Inner::BodyHmac(hmac_generic::HmacGeneric::compile(spec, &texts, path)?)
            }
        };
        Ok(Self { scheme, inner })
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

/// Test helpers shared by the scheme modules.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::config::SignatureSpec;

    pub(crate) fn path() -> FieldPath {
        FieldPath::root().key("channels").index(0).key("signature")
    }

    pub(crate) fn spec(json: &str) -> SignatureSpec {
        serde_json::from_str(json).unwrap()
    }

    pub(crate) fn compile(json: &str) -> Verifier {
        Verifier::compile(&spec(json), &path(), &|_| None).unwrap()
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

    pub(crate) fn compile_err(json: &str) -> String {
        compile_err_env(json, &|_| None)
    }

    pub(crate) fn compile_err_env(json: &str, env: EnvLookup<'_>) -> String {
        Verifier::compile(&spec(json), &path(), env)
            .map(|v| format!("unexpectedly compiled: {v:?}"))
            .unwrap_or_else(|e| e.to_string())
    }

    pub(crate) fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().copied().collect()
    }

    pub(crate) fn hmac_sha256_hex(key: &[u8], parts: &[&[u8]]) -> String {
        keys::HmacKey::new(keys::Algorithm::Sha256, key, &path())
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
    fn unknown_scheme_is_refused_with_its_path() {
        let e = compile_err(r#"{"scheme":"paypal","secrets":[{"value":"x"}]}"#);
        assert!(
            e.starts_with("channels[0].signature.scheme: unknown scheme \"paypal\""),
            "{e}"
        );
    }

    #[test]
    fn schemes_need_keys() {
        for scheme in ["stripe", "github", "slack", "shopify"] {
            let e = compile_err(&format!(r#"{{"scheme":"{scheme}"}}"#));
            assert_eq!(
                e,
                "channels[0].signature.secrets: needs at least one secret"
            );
        }
        let e = compile_err(r#"{"scheme":"svix"}"#);
        assert_eq!(
            e,
            "channels[0].signature.secrets: needs at least one secret or public key"
        );
    }

    #[test]
    fn fields_that_do_not_apply_are_refused() {
        let e = compile_err(r#"{"scheme":"stripe","secrets":[{"value":"x"}],"header":"x-sig"}"#);
        assert!(
            e.starts_with("channels[0].signature.header: only applies to scheme \"hmac\""),
            "{e}"
        );
        let e = compile_err(
            r#"{"scheme":"github","secrets":[{"value":"x"}],
                "public_keys":["whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g="]}"#,
        );
        assert!(
            e.starts_with("channels[0].signature.public_keys: scheme \"github\" has no asymmetric"),
            "{e}"
        );
        let e = compile_err(r#"{"scheme":"shopify","secrets":[{"value":"x"}],"tolerance_s":60}"#);
        assert!(
            e.starts_with(
                "channels[0].signature.tolerance_s: scheme \"shopify\" signs no timestamp"
            ),
            "{e}"
        );
        let e = compile_err(r#"{"scheme":"stripe","secrets":[{"value":"x"}],"tolerance_s":0}"#);
        assert_eq!(
            e,
            "channels[0].signature.tolerance_s: must be between 1 and 3600 seconds, got 0"
        );
        for t in ["3601", "18446744073709551615"] {
            let e = compile_err(&format!(
                r#"{{"scheme":"stripe","secrets":[{{"value":"x"}}],"tolerance_s":{t}}}"#
            ));
            assert!(
                e.starts_with("channels[0].signature.tolerance_s: must be between 1 and 3600"),
                "{e}"
            );
        }
        // Negative, fractional and out-of-u64 values fail in serde, with the path.
        for t in ["-1", "1.5", "1e400"] {
            let doc = format!(
                r#"{{"channels":[{{"name":"a","match":{{"path_prefix":"/"}},
                    "signature":{{"scheme":"stripe","secrets":[{{"value":"x"}}],"tolerance_s":{t}}}}}]}}"#
            );
            let e = crate::config::load(doc.as_bytes(), &|_| None).unwrap_err();
            assert_eq!(e.path, "channels[0].signature.tolerance_s", "{t}: {e}");
        }
    }

    #[test]
    fn secret_errors_carry_the_item_path() {
        let e = compile_err(
            r#"{"scheme":"standard-webhooks","secrets":[{"value":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},{"env":"PAYMENTS_SECRET"}]}"#,
        );
        assert_eq!(
            e,
            "channels[0].signature.secrets[1]: env var PAYMENTS_SECRET is not set"
        );
        let e = compile_err(r#"{"scheme":"stripe","secrets":[{"value":"a","env":"B"}]}"#);
        assert_eq!(
            e,
            "channels[0].signature.secrets[0]: give either `value` or `env`, not both"
        );
        let e = compile_err(r#"{"scheme":"stripe","secrets":[{}]}"#);
        assert_eq!(
            e,
            "channels[0].signature.secrets[0]: needs `value` or `env`"
        );
    }

    #[test]
    fn too_many_keys_are_refused() {
        let many = [r#"{"value":"k"}"#; MAX_KEYS + 1].join(",");
        let e = compile_err(&format!(r#"{{"scheme":"github","secrets":[{many}]}}"#));
        assert!(e.contains("secrets: at most 8 secrets"), "{e}");
    }

    #[test]
    fn debug_and_errors_never_show_secrets() {
        let env = |_: &str| Some("whsec_ZW52LXNlY3JldC1ieXRlcw==".to_string());
        let v = Verifier::compile(
            &spec(r#"{"scheme":"svix","secrets":[{"value":"whsec_c3VwZXItc2VjcmV0LWJ5dGVz"},{"env":"E"}]}"#),
            &path(),
            &env,
        )
        .unwrap();
        let shown = format!("{v:?}");
        for needle in ["c3VwZXI", "ZW52LX", "super", "env-secret"] {
            assert!(!shown.contains(needle), "{shown}");
        }
        assert!(
            shown.contains("<redacted>") && shown.contains("svix"),
            "{shown}"
        );

        let e = compile_err(r#"{"scheme":"svix","secrets":[{"value":"whsec_sup3r$ecret!"}]}"#);
        assert!(!e.contains("sup3r"), "{e}");
        assert!(e.starts_with("channels[0].signature.secrets[0]: "), "{e}");
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

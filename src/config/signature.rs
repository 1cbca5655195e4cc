//! `channels[].signature` and `channels[].dedup`.
//!
//! The JSON shape, [`compile_signature`] and [`compile_dedup`], which
//! check the sections and build the runtime forms (core's
//! [`Verifier`] constructors, [`DedupPolicy`]) with each error naming its
//! field path. Also [`secret_text`], the `{"value"}` / `{"env"}` secret
//! reader that `mask.hash_key` and `resign.secret` share.
//!
//! Extensions beyond SPEC (all optional): `dedup.id_header`, `dedup.max_ids`.

use super::{ConfigError, EnvLookup, FieldPath};
use crate::core::dedup::{
    DEFAULT_IN_FLIGHT_S, DEFAULT_MAX_IDS, DedupPolicy, MAX_IN_FLIGHT_S, MAX_MAX_IDS, MAX_WINDOW_S,
    MIN_MAX_IDS, is_token,
};
use crate::core::signature::{
    Algorithm, DEFAULT_TOLERANCE_S, Encoding, HmacKey, MAX_KEYS, MAX_TOLERANCE_S, Scheme, Verifier,
    whpk, whsec,
};
use serde::{Deserialize, Deserializer};
use std::fmt;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SignatureSpec {
    /// standard-webhooks | svix | stripe | github | slack | shopify | hmac
    pub scheme: Scheme,
    /// Keys; any one that verifies is enough (rotation).
    #[serde(default)]
    pub secrets: Vec<SecretSpec>,
    /// `whpk_...` ed25519 public keys (standard-webhooks / svix `v1a`).
    #[serde(default)]
    pub public_keys: Vec<String>,
    /// Bound on `|now - timestamp|` for timestamped schemes (default 300,
    /// 1 to 3600).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 3600), extend("default" = 300)))]
    pub tolerance_s: Option<u64>,
    /// Generic `hmac` scheme only: the header carrying the signature.
    #[serde(default)]
    pub header: Option<String>,
    /// Generic `hmac` scheme only: sha256 (default) | sha512 | sha1.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("default" = "sha256")))]
    pub algorithm: Option<Algorithm>,
    /// Generic `hmac` scheme only: hex (default) | base64.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("default" = "hex")))]
    pub encoding: Option<Encoding>,
    /// Generic `hmac` scheme only: text stripped before decoding (`sha256=`).
    #[serde(default)]
    pub prefix: Option<String>,
}

/// `{"value": "..."}` or `{"env": "NAME"}`: exactly one of the two.
///
/// `Debug` is written by hand so a secret given inline never reaches a log
/// line through `{:?}` of the configuration.
#[derive(Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// The secret inline.
    #[serde(default, deserialize_with = "secret_value")]
    pub value: Option<String>,
    /// Name of a VM environment variable holding the secret.
    #[serde(default)]
    pub env: Option<String>,
}

impl fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSpec")
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("env", &self.env)
            .finish()
    }
}

/// serde's own type errors quote the offending value (`invalid type:
/// integer `123`...`); for a secret that would print the secret, so any
/// non-string is refused with a fixed sentence instead.
fn secret_value<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    match serde_json::Value::deserialize(de)? {
        serde_json::Value::String(s) => Ok(Some(s)),
        serde_json::Value::Null => Ok(None),
        _ => Err(serde::de::Error::custom("must be a string")),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DedupSpec {
    /// A second delivery with the same id within this many seconds is
    /// answered 200 `x-callback-duplicate: true` and not forwarded.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 2_592_000)))]
    pub window_s: u64,
    /// Extension: read the delivery id from this header instead of the
    /// scheme's own (for `hmac`/`slack` providers, or a custom id).
    #[serde(default)]
    pub id_header: Option<String>,
    /// Extension: how many delivery ids the channel remembers at most
    /// (default 4096, 256..=65536, rounded up to a multiple of 256).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 256, max = 65_536), extend("default" = 4096)))]
    pub max_ids: Option<u32>,
    /// Extension: how long a delivery stays "in flight" (a retry gets 409
    /// `in_progress`) when no upstream answer marks it delivered or failed
    /// (default 60, 1..=3600). Keep it above the route timeout.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 3600), extend("default" = 60)))]
    pub in_flight_s: Option<u64>,
    /// Extension: allow dedup on a channel without `signature`. Refused by
    /// default: without a signature anyone who reaches the proxy can send
    /// a delivery id first, and the genuine delivery is then answered as a
    /// duplicate and never forwarded. With this set, the dedup key also
    /// holds a digest of the body, so a planted id only suppresses a
    /// delivery whose body is byte-for-byte the same.
    #[serde(default)]
    pub allow_unsigned: bool,
}

/// Checks `signature` (errors under `path`) and builds its [`Verifier`]:
/// fields that apply to the scheme only, `tolerance_s` in bounds, at least
/// one key, each key decoded (`env` resolves `{"env": NAME}` secrets).
pub fn compile_signature(
    spec: &SignatureSpec,
    path: &FieldPath,
    env: EnvLookup<'_>,
) -> Result<Verifier, ConfigError> {
    let scheme = spec.scheme;
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
    if spec.secrets.len() > MAX_KEYS {
        return Err(secrets_path.error(format!(
            "at most {MAX_KEYS} secrets, got {}",
            spec.secrets.len()
        )));
    }
    let texts = spec
        .secrets
        .iter()
        .enumerate()
        .map(|(i, s)| secret_text(s, &secrets_path.index(i), env))
        .collect::<Result<Vec<_>, _>>()?;
    let keys_path = path.key("public_keys");
    if spec.public_keys.len() > MAX_KEYS {
        return Err(keys_path.error(format!(
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

    // Standard Webhooks / Svix key HMAC-SHA256 with the decoded `whsec_`
    // bytes; every other scheme with the secret string's own bytes.
    let algorithm = spec.algorithm.unwrap_or_default();
    let secrets = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let item = secrets_path.index(i);
            let key = if scheme.has_asymmetric() {
                HmacKey::new(Algorithm::Sha256, &whsec(text).map_err(|r| item.error(r))?)
            } else {
                HmacKey::new(algorithm, text.as_bytes())
            };
            key.map_err(|r| item.error(r))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let public_keys = spec
        .public_keys
        .iter()
        .enumerate()
        .map(|(i, text)| whpk(text).map_err(|r| keys_path.index(i).error(r)))
        .collect::<Result<Vec<_>, _>>()?;

    Ok(match scheme {
        Scheme::StandardWebhooks => Verifier::standard_webhooks(secrets, public_keys, tolerance_s),
        Scheme::Svix => Verifier::svix(secrets, public_keys, tolerance_s),
        Scheme::Stripe => Verifier::stripe(secrets, tolerance_s),
        Scheme::Slack => Verifier::slack(secrets, tolerance_s),
        Scheme::Github => Verifier::github(secrets),
        Scheme::Shopify => Verifier::shopify(secrets),
        Scheme::Hmac => {
            let header = match &spec.header {
                None => return Err(path.key("header").error("is required for scheme \"hmac\"")),
                Some(h) if !is_token(h) => {
                    return Err(path
                        .key("header")
                        .error(format!("{h:?} is not a header name")));
                }
                Some(h) => h,
            };
            if spec.prefix.as_deref() == Some("") {
                return Err(path.key("prefix").error("must not be empty when given"));
            }
            Verifier::hmac(
                header,
                algorithm,
                spec.encoding.unwrap_or_default(),
                spec.prefix.as_deref(),
                secrets,
            )
        }
    })
}

/// The text of one secret (`secrets[i]`, `mask.hash_key`,
/// `resign.secret`), from `value` or from env var `env`. Errors name the
/// field and, for `env`, the variable, never the secret.
pub(crate) fn secret_text(
    spec: &SecretSpec,
    path: &FieldPath,
    env: EnvLookup<'_>,
) -> Result<String, ConfigError> {
    let text = match (&spec.value, &spec.env) {
        (Some(_), Some(_)) => {
            return Err(path.error("give either `value` or `env`, not both"));
        }
        (None, None) => return Err(path.error("needs `value` or `env`")),
        (Some(v), None) => {
            if v.is_empty() {
                return Err(path.key("value").error("must not be empty"));
            }
            v.clone()
        }
        (None, Some(name)) => {
            if name.is_empty() {
                return Err(path.key("env").error("must name an environment variable"));
            }
            match env(name) {
                Some(v) if !v.is_empty() => v,
                Some(_) => return Err(path.error(format!("env var {name} is empty"))),
                None => return Err(path.error(format!("env var {name} is not set"))),
            }
        }
    };
    // A trailing newline from a mounted secret file is the classic cause of
    // "every signature fails"; refuse it loudly instead of trimming a key.
    if text.trim() != text {
        return Err(path.error("has leading or trailing whitespace"));
    }
    Ok(text)
}

pub fn compile_dedup(
    spec: &DedupSpec,
    signature: Option<&SignatureSpec>,
    path: &FieldPath,
) -> Result<DedupPolicy, ConfigError> {
    if spec.window_s == 0 {
        return Err(path.key("window_s").error("must be at least 1"));
    }
    if spec.window_s > MAX_WINDOW_S {
        return Err(path
            .key("window_s")
            .error(format!("must be at most {MAX_WINDOW_S} (30 days)")));
    }
    let in_flight_s = spec.in_flight_s.unwrap_or(DEFAULT_IN_FLIGHT_S);
    if !(1..=MAX_IN_FLIGHT_S).contains(&in_flight_s) {
        return Err(path.key("in_flight_s").error(format!(
            "must be between 1 and {MAX_IN_FLIGHT_S}, got {in_flight_s}"
        )));
    }
    let max_ids = spec.max_ids.unwrap_or(DEFAULT_MAX_IDS);
    if !(MIN_MAX_IDS..=MAX_MAX_IDS).contains(&max_ids) {
        return Err(path.key("max_ids").error(format!(
            "must be between {MIN_MAX_IDS} and {MAX_MAX_IDS}, got {max_ids}"
        )));
    }
    if signature.is_none() && !spec.allow_unsigned {
        return Err(path.error(
            "dedup without a signature lets anyone who reaches the proxy send a delivery id \
             first, so the genuine delivery is answered as a duplicate and dropped; add a \
             signature, or set allow_unsigned: true to accept that risk",
        ));
    }
    if let Some(name) = &spec.id_header
        && !is_token(name)
    {
        return Err(path
            .key("id_header")
            .error(format!("{name:?} is not a header name")));
    }
    let scheme = signature.map(|s| s.scheme);
    Ok(DedupPolicy::new(
        spec.window_s,
        in_flight_s,
        max_ids,
        spec.id_header.as_deref(),
        scheme,
    ))
}

#[cfg(test)]
#[path = "signature_tests.rs"]
mod signature_tests;

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn debug_redacts_inline_secrets() {
        let spec: SignatureSpec = serde_json::from_str(
            r#"{"scheme":"github","secrets":[{"value":"hunter2-very-secret"},{"env":"GH"}]}"#,
        )
        .unwrap();
        let shown = format!("{spec:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("GH"),
            "{shown}"
        );
    }

    #[test]
    fn non_string_secret_is_refused_without_echo() {
        let err = crate::config::parse(
            br#"{"channels":[{"name":"a","match":{"path_prefix":"/"},
                 "signature":{"scheme":"github","secrets":[{"value":918273645}]}}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("918273645"), "{err}");
        assert!(err.contains("must be a string"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = serde_json::from_str::<DedupSpec>(r#"{"window_s":1,"bogus":2}"#).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    fn compile_err(json: &str) -> String {
        let mut spec: DedupSpec = serde_json::from_str(json).unwrap();
        spec.allow_unsigned = true;
        compile_dedup(&spec, None, &FieldPath::root().key("dedup"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn config_errors_name_the_field() {
        assert_eq!(
            compile_err(r#"{"window_s":0}"#),
            "dedup.window_s: must be at least 1"
        );
        assert!(
            compile_err(r#"{"window_s":2592001}"#).starts_with("dedup.window_s: must be at most")
        );
        assert_eq!(
            compile_err(r#"{"window_s":1,"max_ids":10}"#),
            "dedup.max_ids: must be between 256 and 65536, got 10"
        );
        assert_eq!(
            compile_err(r#"{"window_s":1,"id_header":"bad header"}"#),
            "dedup.id_header: \"bad header\" is not a header name"
        );
    }

    #[test]
    fn unsigned_dedup_needs_the_explicit_opt_in() {
        let spec: DedupSpec = serde_json::from_str(r#"{"window_s":60}"#).unwrap();
        let err = compile_dedup(&spec, None, &FieldPath::root().key("dedup"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("dedup: "), "{err}");
        assert!(err.contains("allow_unsigned"), "{err}");
        assert!(err.contains("duplicate"), "names the risk: {err}");
    }

    #[test]
    fn in_flight_s_is_bounded() {
        assert!(
            compile_err(r#"{"window_s":60,"in_flight_s":0}"#).starts_with("dedup.in_flight_s: ")
        );
        assert!(
            compile_err(r#"{"window_s":60,"in_flight_s":3601}"#).starts_with("dedup.in_flight_s: ")
        );
    }
}

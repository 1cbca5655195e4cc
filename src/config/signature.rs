//! `channels[].signature` and `channels[].dedup`.
//!
//! The JSON shape, and [`compile_dedup`], which checks `dedup` and builds
//! the runtime form with each error naming its field path. The signature's
//! semantic checks (known scheme, keys that decode, fields that apply to
//! the scheme) still happen in [`Verifier::compile`] (core).
//!
//! Extensions beyond SPEC (all optional): `dedup.id_header`, `dedup.max_ids`.

use super::{ConfigError, EnvLookup, FieldPath};
use crate::core::dedup::{
    DEFAULT_IN_FLIGHT_S, DEFAULT_MAX_IDS, DedupPolicy, MAX_IN_FLIGHT_S, MAX_MAX_IDS, MAX_WINDOW_S,
    MIN_MAX_IDS, is_token,
};
use crate::core::signature::{Scheme, Verifier};
use serde::{Deserialize, Deserializer};
use std::fmt;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SignatureSpec {
    /// standard-webhooks | svix | stripe | github | slack | shopify | hmac
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["standard-webhooks", "svix", "stripe", "github", "slack", "shopify", "hmac"])))]
    pub scheme: String,
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
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["sha256", "sha512", "sha1", null], "default" = "sha256")))]
    pub algorithm: Option<String>,
    /// Generic `hmac` scheme only: hex (default) | base64.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["hex", "base64", null], "default" = "hex")))]
    pub encoding: Option<String>,
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
    #[serde(default, deserialize_with = "secret_text")]
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
fn secret_text<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
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

pub(super) fn compile(
    spec: &SignatureSpec,
    path: &FieldPath,
    env: EnvLookup<'_>,
) -> Result<Verifier, ConfigError> {
    Verifier::compile(spec, path, env)
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
    let scheme = signature.and_then(|s| Scheme::parse(&s.scheme));
    Ok(DedupPolicy::new(
        spec.window_s,
        in_flight_s,
        max_ids,
        spec.id_header.as_deref(),
        scheme,
    ))
}

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

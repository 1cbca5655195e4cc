//! Key material: resolving `secrets[]` (inline or from the VM environment),
//! decoding `whsec_` / `whpk_` keys, and keyed HMAC state.
//!
//! Nothing here ever formats key bytes or secret text: errors name the
//! field and, for `env`, the variable's name; `Debug` prints `<redacted>`.

use super::{FailureReason, compare};
use crate::config::{ConfigError, EnvLookup, FieldPath, SecretSpec};
use ed25519_dalek::VerifyingKey;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use std::fmt;

/// At most this many `secrets` (and, separately, `public_keys`) per
/// channel: every request may try each one, so the list bounds the work.
pub const MAX_KEYS: usize = 8;

const WHSEC_PREFIX: &str = "whsec_";
const WHPK_PREFIX: &str = "whpk_";

/// The text of one `secrets[i]`, from `value` or from env var `env`.
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

/// Every `secrets[i]` as text, with the count checked.
pub(crate) fn secret_texts(
    secrets: &[SecretSpec],
    path: &FieldPath,
    env: EnvLookup<'_>,
) -> Result<Vec<String>, ConfigError> {
    if secrets.len() > MAX_KEYS {
        return Err(path.error(format!("at most {MAX_KEYS} secrets, got {}", secrets.len())));
    }
    secrets
        .iter()
        .enumerate()
        .map(|(i, s)| secret_text(s, &path.index(i), env))
        .collect()
}

/// Standard Webhooks symmetric key: base64 after an optional `whsec_`
/// prefix (the reference libraries accept both spellings).
pub(crate) fn whsec(text: &str, path: &FieldPath) -> Result<Vec<u8>, ConfigError> {
    let b64 = text.strip_prefix(WHSEC_PREFIX).unwrap_or(text);
    match compare::base64_any(b64) {
        Some(key) if !key.is_empty() => Ok(key),
        _ => Err(path.error("is not a whsec_ secret: the part after `whsec_` must be base64")),
    }
}

/// Standard Webhooks public key: `whpk_` + base64 of a 32-byte ed25519
/// point that decompresses and is not of small order.
pub(crate) fn whpk(text: &str, path: &FieldPath) -> Result<VerifyingKey, ConfigError> {
    let Some(b64) = text.strip_prefix(WHPK_PREFIX) else {
        return Err(path.error("must start with `whpk_`"));
    };
    let bytes = compare::base64_exact(b64, 32)
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| path.error("must be `whpk_` + base64 of a 32-byte ed25519 public key"))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| path.error("is not a valid ed25519 public key"))?;
    if key.is_weak() {
        return Err(path.error("is a weak (small-order) ed25519 public key"));
    }
    Ok(key)
}

/// HMAC hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// Tag length in bytes.
    pub(crate) fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }
}

/// An HMAC already keyed at compile time: each request clones the state
/// (no key schedule per request) and feeds the signed content in parts,
/// so `id.timestamp.body` is never concatenated into a new buffer.
#[derive(Clone)]
pub(crate) enum HmacKey {
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
    Sha512(Hmac<Sha512>),
}

impl HmacKey {
    pub(crate) fn new(
        algorithm: Algorithm,
        key: &[u8],
        path: &FieldPath,
    ) -> Result<Self, ConfigError> {
        // HMAC accepts keys of any length; the error arm only exists
        // because the trait is shared with fixed-key MACs.
        let refuse = |_| path.error("cannot be used as an HMAC key");
        Ok(match algorithm {
            Algorithm::Sha1 => Self::Sha1(Hmac::new_from_slice(key).map_err(refuse)?),
            Algorithm::Sha256 => Self::Sha256(Hmac::new_from_slice(key).map_err(refuse)?),
            Algorithm::Sha512 => Self::Sha512(Hmac::new_from_slice(key).map_err(refuse)?),
        })
    }

    /// The tag of the concatenation of `parts`.
    pub(crate) fn tag(&self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + Clone>(mac: &M, parts: &[&[u8]]) -> Vec<u8> {
            let mut mac = mac.clone();
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Self::Sha1(m) => run(m, parts),
            Self::Sha256(m) => run(m, parts),
            Self::Sha512(m) => run(m, parts),
        }
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        match self {
            Self::Sha1(_) => Algorithm::Sha1,
            Self::Sha256(_) => Algorithm::Sha256,
            Self::Sha512(_) => Algorithm::Sha512,
        }
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HmacKey({}, <redacted>)", self.algorithm().as_str())
    }
}

/// Keys the `secrets[]` texts as HMAC keys, as they are (Stripe, GitHub,
/// Slack, Shopify, generic `hmac`: the secret string's bytes are the key).
pub(crate) fn raw_hmac_keys(
    texts: &[String],
    algorithm: Algorithm,
    path: &FieldPath,
) -> Result<Vec<HmacKey>, ConfigError> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| HmacKey::new(algorithm, t.as_bytes(), &path.index(i)))
        .collect()
}

/// [`any_matches`] as a verdict: `Ok` when a key signed `parts` as one of
/// `candidates`, else [`FailureReason::Mismatch`].
pub(crate) fn verify_tags(
    keys: &[HmacKey],
    parts: &[&[u8]],
    candidates: &[Vec<u8>],
) -> Result<(), FailureReason> {
    if any_matches(keys, parts, candidates) {
        Ok(())
    } else {
        Err(FailureReason::Mismatch)
    }
}

/// HMAC-SHA256 keys from the secret strings plus a timestamp tolerance:
/// what the timestamped schemes keyed by the raw secret (Stripe, Slack)
/// hold.
pub(crate) struct TimestampedKeys {
    secrets: Vec<HmacKey>,
    tolerance_s: u64,
}

impl TimestampedKeys {
    pub(crate) fn compile(
        texts: &[String],
        path: &FieldPath,
        tolerance_s: u64,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            secrets: raw_hmac_keys(texts, Algorithm::Sha256, &path.key("secrets"))?,
            tolerance_s,
        })
    }

    pub(crate) fn secret_count(&self) -> usize {
        self.secrets.len()
    }

    /// `ts` within the tolerance of `now_unix_s` ([`FailureReason::Expired`]
    /// otherwise), then [`verify_tags`].
    pub(crate) fn verify(
        &self,
        ts: u64,
        now_unix_s: u64,
        parts: &[&[u8]],
        candidates: &[Vec<u8>],
    ) -> Result<(), FailureReason> {
        compare::fresh(ts, now_unix_s, self.tolerance_s)?;
        verify_tags(&self.secrets, parts, candidates)
    }
}

/// Does any key's tag over `parts` equal one of `candidates`? Each key's
/// tag is computed once, then compared in constant time to every
/// candidate (so N entries x M secrets costs M hashes of the body, not N x M).
pub(crate) fn any_matches(keys: &[HmacKey], parts: &[&[u8]], candidates: &[Vec<u8>]) -> bool {
    let mut matched = false;
    for key in keys {
        let tag = key.tag(parts);
        for candidate in candidates {
            // No early exit inside a key: the time spent does not depend on
            // which candidate matched.
            matched |= compare::ct_eq(&tag, candidate);
        }
        if matched {
            break;
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn spec(value: Option<&str>, env: Option<&str>) -> SecretSpec {
        SecretSpec {
            value: value.map(str::to_string),
            env: env.map(str::to_string),
        }
    }

    fn path() -> FieldPath {
        FieldPath::root()
            .key("channels")
            .index(0)
            .key("signature")
            .key("secrets")
            .index(1)
    }

    #[test]
    fn secret_from_value_or_env() {
        let env = |name: &str| (name == "PAYMENTS_SECRET").then(|| "s3cr3t".to_string());
        assert_eq!(
            secret_text(&spec(Some("abc"), None), &path(), &env).unwrap(),
            "abc"
        );
        assert_eq!(
            secret_text(&spec(None, Some("PAYMENTS_SECRET")), &path(), &env).unwrap(),
            "s3cr3t"
        );
    }

    #[test]
    fn secret_errors_name_the_field_never_the_secret() {
        let env = |name: &str| match name {
            "EMPTY" => Some(String::new()),
            "NEWLINE" => Some("s3cr3t-value\n".to_string()),
            _ => None,
        };
        let err = |s: SecretSpec| secret_text(&s, &path(), &env).unwrap_err().to_string();
        assert_eq!(
            err(spec(None, Some("PAYMENTS_SECRET"))),
            "channels[0].signature.secrets[1]: env var PAYMENTS_SECRET is not set"
        );
        assert!(err(spec(None, Some("EMPTY"))).ends_with("env var EMPTY is empty"));
        assert!(err(spec(Some("a"), Some("B"))).contains("not both"));
        assert!(err(spec(None, None)).contains("needs `value` or `env`"));
        assert!(err(spec(Some(""), None)).contains("secrets[1].value: must not be empty"));
        let e = err(spec(None, Some("NEWLINE")));
        assert!(e.contains("whitespace") && !e.contains("s3cr3t"), "{e}");
        let e = err(spec(Some(" s3cr3t-value"), None));
        assert!(e.contains("whitespace") && !e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn whsec_and_whpk_decoding() {
        // Secret of the Standard Webhooks reference test suite.
        assert_eq!(
            whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &path())
                .unwrap()
                .len(),
            24
        );
        assert_eq!(
            whsec("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &path())
                .unwrap()
                .len(),
            24
        );
        let e = whsec("whsec_not*base64", &path()).unwrap_err().to_string();
        assert!(e.contains("base64") && !e.contains("not*base64"), "{e}");
        assert!(whsec("whsec_", &path()).is_err());

        assert!(whpk("whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=", &path()).is_ok());
        assert!(whpk("ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=", &path()).is_err());
        assert!(whpk("whpk_AAAA", &path()).is_err());
        // The identity point is of small order: refused.
        let identity = format!(
            "whpk_{}",
            compare_b64(&{
                let mut b = [0u8; 32];
                b[0] = 1;
                b
            })
        );
        assert!(
            whpk(&identity, &path())
                .unwrap_err()
                .to_string()
                .contains("weak")
        );
    }

    fn compare_b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let key = HmacKey::new(Algorithm::Sha256, b"topsecretkey", &path()).unwrap();
        let shown = format!("{key:?}");
        assert_eq!(shown, "HmacKey(sha256, <redacted>)");
    }

    #[test]
    fn rfc_4231_and_2202_vectors() {
        // RFC 4231 test case 2 (HMAC-SHA256/512) and RFC 2202 test case 2
        // (HMAC-SHA1): key "Jefe", data "what do ya want for nothing?".
        let data: &[&[u8]] = &[b"what do ya ", b"want for nothing?"];
        let cases = [
            (Algorithm::Sha1, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
            (
                Algorithm::Sha256,
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                Algorithm::Sha512,
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ),
        ];
        for (alg, hex) in cases {
            let key = HmacKey::new(alg, b"Jefe", &path()).unwrap();
            let expected = compare::hex_exact(hex, alg.output_len()).unwrap();
            assert_eq!(key.tag(data), expected, "{alg:?}");
            assert!(any_matches(&[key], data, &[vec![1; 3], expected]));
        }
    }
}

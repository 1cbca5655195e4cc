//! Key material: decoding `whsec_` / `whpk_` keys, and keyed HMAC state.
//! (Resolving `secrets[]` from the configuration, and the field paths of
//! its errors, is `config::compile_signature`'s job.)
//!
//! Nothing here ever formats key bytes or secret text: errors are fixed
//! reasons; `Debug` prints `<redacted>`.

use super::{FailureReason, compare};
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

/// Standard Webhooks symmetric key: base64 after an optional `whsec_`
/// prefix (the reference libraries accept both spellings). The error is a
/// reason without a field path, and never quotes the text.
pub fn whsec(text: &str) -> Result<Vec<u8>, &'static str> {
    let b64 = text.strip_prefix(WHSEC_PREFIX).unwrap_or(text);
    match compare::base64_any(b64) {
        Some(key) if !key.is_empty() => Ok(key),
        _ => Err("is not a whsec_ secret: the part after `whsec_` must be base64"),
    }
}

/// Standard Webhooks public key: `whpk_` + base64 of a 32-byte ed25519
/// point that decompresses and is not of small order. The error is a
/// reason without a field path.
pub fn whpk(text: &str) -> Result<PublicKey, &'static str> {
    let Some(b64) = text.strip_prefix(WHPK_PREFIX) else {
        return Err("must start with `whpk_`");
    };
    let bytes = compare::base64_exact(b64, 32)
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or("must be `whpk_` + base64 of a 32-byte ed25519 public key")?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| "is not a valid ed25519 public key")?;
    if key.is_weak() {
        return Err("is a weak (small-order) ed25519 public key");
    }
    Ok(key)
}

/// A decoded `whpk_` ed25519 public key.
pub type PublicKey = VerifyingKey;

/// HMAC hash function (`signature.algorithm` of scheme `hmac`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Sha1,
    #[default]
    Sha256,
    Sha512,
}

impl Algorithm {
    /// Tag length in bytes.
    pub(crate) fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// The configuration name (`sha256`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }
}

/// An HMAC already keyed at load time: each request clones the state
/// (no key schedule per request) and feeds the signed content in parts,
/// so `id.timestamp.body` is never concatenated into a new buffer.
#[derive(Clone)]
pub enum HmacKey {
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
    Sha512(Hmac<Sha512>),
}

impl HmacKey {
    /// Keys `algorithm` with `key`. The error is a reason without a field
    /// path.
    pub fn new(algorithm: Algorithm, key: &[u8]) -> Result<Self, &'static str> {
        // HMAC accepts keys of any length; the error arm only exists
        // because the trait is shared with fixed-key MACs.
        let refuse = |_| "cannot be used as an HMAC key";
        Ok(match algorithm {
            Algorithm::Sha1 => Self::Sha1(Hmac::new_from_slice(key).map_err(refuse)?),
            Algorithm::Sha256 => Self::Sha256(Hmac::new_from_slice(key).map_err(refuse)?),
            Algorithm::Sha512 => Self::Sha512(Hmac::new_from_slice(key).map_err(refuse)?),
        })
    }

    /// The tag of the concatenation of `parts`.
    pub(crate) fn tag(&self, parts: &[&[u8]]) -> Tag {
        fn run<M: Mac + Clone>(mac: &M, parts: &[&[u8]]) -> Tag {
            let mut mac = mac.clone();
            for part in parts {
                mac.update(part);
            }
            Tag::new(&mac.finalize().into_bytes())
        }
        match self {
            Self::Sha1(m) => run(m, parts),
            Self::Sha256(m) => run(m, parts),
            Self::Sha512(m) => run(m, parts),
        }
    }

    /// The hash function it was keyed for.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Sha1(_) => Algorithm::Sha1,
            Self::Sha256(_) => Algorithm::Sha256,
            Self::Sha512(_) => Algorithm::Sha512,
        }
    }
}

/// An HMAC tag, on the stack (at most SHA-512's 64 bytes): verifying
/// allocates no tag.
#[derive(Clone, Copy)]
pub(crate) struct Tag {
    len: usize,
    bytes: [u8; 64],
}

impl Tag {
    fn new(tag: &[u8]) -> Self {
        let mut bytes = [0; 64];
        let len = match bytes.get_mut(..tag.len()) {
            Some(slot) => {
                slot.copy_from_slice(tag);
                tag.len()
            }
            // No HMAC here is longer; an empty tag never matches.
            None => 0,
        };
        Self { len, bytes }
    }
}

impl std::ops::Deref for Tag {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tag(..)")
    }
}

impl PartialEq<Vec<u8>> for Tag {
    fn eq(&self, other: &Vec<u8>) -> bool {
        **self == **other
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HmacKey({}, <redacted>)", self.algorithm().as_str())
    }
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
    pub(crate) fn new(secrets: Vec<HmacKey>, tolerance_s: u64) -> Self {
        Self {
            secrets,
            tolerance_s,
        }
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

    #[test]
    fn whsec_and_whpk_decoding() {
        // Secret of the Standard Webhooks reference test suite.
        assert_eq!(
            whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                .unwrap()
                .len(),
            24
        );
        assert_eq!(whsec("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap().len(), 24);
        let e = whsec("whsec_not*base64").unwrap_err();
        assert!(e.contains("base64") && !e.contains("not*base64"), "{e}");
        assert!(whsec("whsec_").is_err());

        assert!(whpk("whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=").is_ok());
        assert!(whpk("ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=").is_err());
        assert!(whpk("whpk_AAAA").is_err());
        // The identity point is of small order: refused.
        let identity = format!(
            "whpk_{}",
            compare_b64(&{
                let mut b = [0u8; 32];
                b[0] = 1;
                b
            })
        );
        assert!(whpk(&identity).unwrap_err().contains("weak"));
    }

    fn compare_b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let key = HmacKey::new(Algorithm::Sha256, b"topsecretkey").unwrap();
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
            let key = HmacKey::new(alg, b"Jefe").unwrap();
            let expected = compare::hex_exact(hex, alg.output_len()).unwrap();
            assert_eq!(key.tag(data), expected, "{alg:?}");
            assert!(any_matches(&[key], data, &[vec![1; 3], expected]));
        }
    }
}

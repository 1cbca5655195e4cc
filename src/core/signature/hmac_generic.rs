//! HMAC of the raw body in one header (`scheme: "hmac"`), for providers
//! without a scheme of their own: the configured `header`, `algorithm`
//! sha256 (default) | sha512 | sha1, `encoding` hex (default) | base64,
//! after an optional literal `prefix` (e.g. `sha256=`). Keyed by the secret
//! string; no timestamp. `github` and `shopify` are fixed presets of it
//! (see `github.rs`, `shopify.rs`).

use super::FailureReason;
use super::compare::{self, header};
use super::keys::{self, Algorithm, HmacKey};
use crate::core::headers::Headers;

/// How the tag is written in the header (`signature.encoding` of scheme
/// `hmac`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}

pub(super) struct HmacGeneric {
    header: String,
    algorithm: Algorithm,
    encoding: Encoding,
    prefix: Option<String>,
    secrets: Vec<HmacKey>,
}

impl HmacGeneric {
    /// The header the signature comes in.
    pub(super) fn header(&self) -> &str {
        &self.header
    }

    /// `header` (matched case-insensitively), tags of `algorithm` written
    /// in `encoding` after the literal `prefix`; `secrets` are keyed for
    /// `algorithm` (a key of another one never verifies: its tag has the
    /// wrong length).
    pub(super) fn new(
        header: &str,
        algorithm: Algorithm,
        encoding: Encoding,
        prefix: Option<&str>,
        secrets: Vec<HmacKey>,
    ) -> Self {
        Self {
            header: header.to_ascii_lowercase(),
            algorithm,
            encoding,
            prefix: prefix.map(str::to_string),
            secrets,
        }
    }

    pub(super) fn secret_count(&self) -> usize {
        self.secrets.len()
    }

    pub(super) fn verify(&self, headers: &Headers, body: &[u8]) -> Result<(), FailureReason> {
        let value = header(headers, &self.header)?;
        let encoded = match &self.prefix {
            Some(p) => value
                .strip_prefix(p.as_str())
                .ok_or(FailureReason::Malformed)?,
            None => value,
        };
        let len = self.algorithm.output_len();
        let tag = match self.encoding {
            Encoding::Hex => compare::hex_exact(encoded, len),
            Encoding::Base64 => compare::base64_exact(encoded, len),
        }
        .ok_or(FailureReason::Malformed)?;
        keys::verify_tags(&self.secrets, &[body], &[tag])
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    // RFC 4231 test case 2 (SHA-256, SHA-512) and RFC 2202 test case 2
    // (SHA-1): key "Jefe", data "what do ya want for nothing?".
    const BODY: &[u8] = b"what do ya want for nothing?";
    const SHA256_HEX: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    const SHA512_HEX: &str = "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737";
    const SHA1_HEX: &str = "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79";
    // The SHA-256 tag above in base64 (python: base64.b64encode(bytes.fromhex(...))).
    const SHA256_B64: &str = "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=";

    fn verifier(extra: &str) -> super::super::Verifier {
        compile(&format!(
            r#"{{"scheme":"hmac","secrets":[{{"value":"Jefe"}}],"header":"X-Signature"{extra}}}"#
        ))
    }

    fn h(value: &str) -> Headers {
        headers(&[("x-signature", value)])
    }

    #[test]
    fn rfc_vectors_per_algorithm() {
        assert_eq!(verifier("").verify(&h(SHA256_HEX), BODY, 0), Ok(()));
        assert_eq!(
            verifier(r#","algorithm":"sha512""#).verify(&h(SHA512_HEX), BODY, 0),
            Ok(())
        );
        assert_eq!(
            verifier(r#","algorithm":"sha1""#).verify(&h(SHA1_HEX), BODY, 0),
            Ok(())
        );
        assert_eq!(
            verifier(r#","encoding":"base64""#).verify(&h(SHA256_B64), BODY, 0),
            Ok(())
        );
        assert_eq!(verifier("").scheme(), "hmac");
    }

    #[test]
    fn prefix_is_stripped_and_required() {
        let v = verifier(r#","prefix":"sha256=""#);
        assert_eq!(
            v.verify(&h(&format!("sha256={SHA256_HEX}")), BODY, 0),
            Ok(())
        );
        assert_eq!(
            v.verify(&h(SHA256_HEX), BODY, 0),
            Err(FailureReason::Malformed)
        );
        assert_eq!(
            v.verify(&h(&format!("sha512={SHA256_HEX}")), BODY, 0),
            Err(FailureReason::Malformed)
        );
    }

    #[test]
    fn negatives() {
        let v = verifier("");
        assert_eq!(
            v.verify(&h(SHA256_HEX), b"what do ya want for nothing!", 0),
            Err(FailureReason::Mismatch)
        );
        assert_eq!(
            v.verify(&headers(&[]), BODY, 0),
            Err(FailureReason::Missing)
        );
        // A SHA-1 tag where SHA-256 is configured has the wrong length.
        assert_eq!(
            v.verify(&h(SHA1_HEX), BODY, 0),
            Err(FailureReason::Malformed)
        );
        assert_eq!(
            v.verify(&h(&SHA256_HEX[..40]), BODY, 0),
            Err(FailureReason::Malformed)
        );
        assert_eq!(
            v.verify(&h(SHA256_B64), BODY, 0),
            Err(FailureReason::Malformed)
        );
        let wrong =
            compile(r#"{"scheme":"hmac","secrets":[{"value":"Joe"}],"header":"x-signature"}"#);
        assert_eq!(
            wrong.verify(&h(SHA256_HEX), BODY, 0),
            Err(FailureReason::Mismatch)
        );
        let rotated = compile(
            r#"{"scheme":"hmac","secrets":[{"value":"Joe"},{"value":"Jefe"}],"header":"x-signature"}"#,
        );
        assert_eq!(rotated.verify(&h(SHA256_HEX), BODY, 0), Ok(()));
    }
}

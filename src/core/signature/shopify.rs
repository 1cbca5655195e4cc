//! Shopify (<https://shopify.dev/docs/apps/build/webhooks/subscribe/https#step-5-verify-the-webhook>).
//!
//! `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the raw body>`, keyed by
//! the app's client secret string. No timestamp is signed.

use super::hmac_generic::{Encoding, HmacGeneric};
use crate::config::{ConfigError, FieldPath};

const HEADER: &str = crate::core::names::header::SHOPIFY_HMAC;

/// Shopify's scheme: base64 HMAC-SHA256 of the body, no prefix.
pub(super) fn body_hmac(secrets: &[String], path: &FieldPath) -> Result<HmacGeneric, ConfigError> {
    HmacGeneric::preset(HEADER, None, Encoding::Base64, secrets, path)
}

#[cfg(test)]
mod tests {
    use super::super::FailureReason;
    use super::super::testing::*;
    use crate::core::headers::Headers;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    // Shopify publishes no fixed vector. Computed with
    // printf '%s' "$BODY" | openssl dgst -sha256 -hmac hush -binary | base64
    // (and python's hmac module, same result).
    const SECRET: &str = "hush";
    const BODY: &[u8] = br#"{"id":820982911946154508,"email":"jon@example.com","closed_at":null}"#;
    const SIG: &str = "NqcMFqpD9dzRa5H+M4QPyKeHcMF2sF7HZcNvvr5kf/E=";

    fn verifier(secrets: &[&str]) -> super::super::Verifier {
        with_secrets("shopify", secrets)
    }

    fn h(value: &str) -> Headers {
        headers(&[("X-Shopify-Hmac-Sha256", value)])
    }

    #[test]
    fn computed_vector_verifies() {
        assert_eq!(verifier(&[SECRET]).verify(&h(SIG), BODY, 0), Ok(()));
        assert_eq!(verifier(&["old", SECRET]).verify(&h(SIG), BODY, 0), Ok(()));
    }

    #[test]
    fn negatives() {
        let v = verifier(&[SECRET]);
        assert_eq!(v.verify(&h(SIG), b"{}", 0), Err(FailureReason::Mismatch));
        assert_eq!(
            verifier(&["loud"]).verify(&h(SIG), BODY, 0),
            Err(FailureReason::Mismatch)
        );
        assert_eq!(
            v.verify(&headers(&[]), BODY, 0),
            Err(FailureReason::Missing)
        );
        for bad in [
            "NqcMFqpD9dzRa5H+M4QPyKeHcMF2sF7H",
            "NqcMFqpD9dzRa5H+M4QPyKeHcMF2sF7HZcNvvr5kf/E=AAAA",
            "sha256=NqcMFqpD9dzRa5H+M4QPyKeHcMF2sF7HZcNvvr5kf/E=",
            "36a70c16aa43f5dcd16b91fe33840fc8a78770c176b05ec765c36fbebe647ff1",
            "=",
        ] {
            assert_eq!(
                v.verify(&h(bad), BODY, 0),
                Err(FailureReason::Malformed),
                "{bad:?}"
            );
        }
    }
}

//! GitHub (<https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries>).
//!
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`, keyed
//! by the secret string. No timestamp is signed, so there is no tolerance;
//! replays are what `dedup` (on `X-GitHub-Delivery`) is for. The legacy
//! SHA-1 `X-Hub-Signature` is not accepted.

use super::hmac_generic::{Encoding, HmacGeneric};
use crate::config::{ConfigError, FieldPath};

const HEADER: &str = crate::core::names::header::GITHUB_SIGNATURE_256;
const PREFIX: &str = "sha256=";

/// GitHub's scheme: hex HMAC-SHA256 of the body after `sha256=`.
pub(super) fn body_hmac(secrets: &[String], path: &FieldPath) -> Result<HmacGeneric, ConfigError> {
    HmacGeneric::preset(HEADER, Some(PREFIX), Encoding::Hex, secrets, path)
}

#[cfg(test)]
mod tests {
    use super::super::FailureReason;
    use super::super::testing::*;
    use crate::core::headers::Headers;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    // GitHub docs, "Validating webhook deliveries" > "Testing the webhook
    // payload validation": secret "It's a Secret to Everybody", payload
    // "Hello, World!".
    const SECRET: &str = "It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn verifier(secrets: &[&str]) -> super::super::Verifier {
        with_secrets("github", secrets)
    }

    fn h(value: &str) -> Headers {
        headers(&[("X-Hub-Signature-256", value)])
    }

    #[test]
    fn documented_example_verifies() {
        let v = verifier(&[SECRET]);
        assert_eq!(v.verify(&h(SIG), BODY, 0), Ok(()));
        // No timestamp: any clock is fine.
        assert_eq!(v.verify(&h(SIG), BODY, u64::MAX), Ok(()));
        // Upper-case hex is the same signature.
        assert_eq!(
            v.verify(
                &h(&SIG.to_uppercase().replace("SHA256=", "sha256=")),
                BODY,
                0
            ),
            Ok(())
        );
    }

    #[test]
    fn tampered_wrong_secret_and_rotation() {
        assert_eq!(
            verifier(&[SECRET]).verify(&h(SIG), b"Hello, World?", 0),
            Err(FailureReason::Mismatch)
        );
        assert_eq!(
            verifier(&["not it"]).verify(&h(SIG), BODY, 0),
            Err(FailureReason::Mismatch)
        );
        assert_eq!(
            verifier(&["not it", SECRET]).verify(&h(SIG), BODY, 0),
            Ok(())
        );
    }

    #[test]
    fn missing_and_malformed() {
        let v = verifier(&[SECRET]);
        assert_eq!(
            v.verify(&headers(&[]), BODY, 0),
            Err(FailureReason::Missing)
        );
        // Only the SHA-1 header: still missing.
        let sha1 = headers(&[(
            "x-hub-signature",
            "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
        )]);
        assert_eq!(v.verify(&sha1, BODY, 0), Err(FailureReason::Missing));
        for bad in [
            "sha256=",
            "sha256=757107ea",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "SHA256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17aa",
            "sha256=x57107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ] {
            assert_eq!(
                v.verify(&h(bad), BODY, 0),
                Err(FailureReason::Malformed),
                "{bad:?}"
            );
        }
    }
}

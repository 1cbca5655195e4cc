//! Standard Webhooks (<https://www.standardwebhooks.com/>), and Svix, which
//! is the same scheme under `svix-` header names.
//!
//! Signed content is `{webhook-id}.{webhook-timestamp}.{body}`. The
//! signature header is a space-separated list of `version,signature`:
//! `v1,<base64 HMAC-SHA256>` keyed by the base64-decoded secret after
//! `whsec_`, and `v1a,<base64 ed25519 signature>` checked against
//! `whpk_` public keys. Any one entry that verifies is enough; unknown
//! versions are skipped (the spec reserves them for future use).

use super::compare::{self, header};
use super::keys::{self, HmacKey};
use super::{FailureReason, MAX_SIGNATURE_ENTRIES};
use crate::core::decimal;
use crate::core::headers::Headers;
use crate::core::names;
use ed25519_dalek::{Signature, VerifyingKey};

/// The three header names of one flavour.
#[derive(Debug, Clone, Copy)]
struct Names {
    id: &'static str,
    timestamp: &'static str,
    signature: &'static str,
}

const STANDARD: Names = Names {
    id: names::header::WEBHOOK_ID,
    timestamp: names::header::WEBHOOK_TIMESTAMP,
    signature: names::header::WEBHOOK_SIGNATURE,
};

const SVIX: Names = Names {
    id: names::header::SVIX_ID,
    timestamp: names::header::SVIX_TIMESTAMP,
    signature: names::header::SVIX_SIGNATURE,
};

const HMAC_LEN: usize = 32;
const ED25519_LEN: usize = 64;

pub(super) struct StandardWebhooks {
    names: Names,
    secrets: Vec<HmacKey>,
    public_keys: Vec<VerifyingKey>,
    tolerance_s: u64,
}

impl StandardWebhooks {
    /// `secrets`: HMAC-SHA256 keys of the decoded `whsec_` secrets;
    /// `svix` picks the `svix-` header names.
    pub(super) fn new(
        svix: bool,
        secrets: Vec<HmacKey>,
        public_keys: Vec<VerifyingKey>,
        tolerance_s: u64,
    ) -> Self {
        Self {
            names: if svix { SVIX } else { STANDARD },
            secrets,
            public_keys,
            tolerance_s,
        }
    }

    /// The id, timestamp and signature header names of this flavour.
    pub(super) fn header_names(&self) -> [&'static str; 3] {
        [self.names.id, self.names.timestamp, self.names.signature]
    }

    pub(super) fn secret_count(&self) -> usize {
        self.secrets.len()
    }

    pub(super) fn public_key_count(&self) -> usize {
        self.public_keys.len()
    }

    pub(super) fn verify(
        &self,
        headers: &Headers,
        body: &[u8],
        now_unix_s: u64,
    ) -> Result<(), FailureReason> {
        let id = header(headers, self.names.id)?;
        let ts_text = header(headers, self.names.timestamp)?;
        let list = header(headers, self.names.signature)?;

        let ts = compare::timestamp(ts_text)?;

        let mut macs = Vec::new();
        let mut signatures = Vec::new();
        for entry in list.split_ascii_whitespace().take(MAX_SIGNATURE_ENTRIES) {
            match entry.split_once(',') {
                Some(("v1", b64)) => macs.extend(compare::base64_exact(b64, HMAC_LEN)),
                Some(("v1a", b64)) => signatures.extend(
                    compare::base64_exact(b64, ED25519_LEN)
                        .and_then(|v| <[u8; ED25519_LEN]>::try_from(v).ok())
                        .map(|bytes| Signature::from_bytes(&bytes)),
                ),
                _ => {}
            }
        }
        if macs.is_empty() && signatures.is_empty() {
            return Err(FailureReason::Malformed);
        }
        compare::fresh(ts, now_unix_s, self.tolerance_s)?;

        // The reference libraries sign the timestamp as they re-format it
        // from the parsed integer.
        let mut digits = [0; decimal::MAX_DIGITS];
        let ts = decimal::decimal(ts, &mut digits);
        let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts.as_bytes(), b".", body];
        if !macs.is_empty() && keys::any_matches(&self.secrets, &parts, &macs) {
            return Ok(());
        }
        if !signatures.is_empty() && !self.public_keys.is_empty() {
            // ed25519 needs the message in one piece.
            let message = parts.concat();
            let verified = signatures.iter().any(|sig| {
                self.public_keys
                    .iter()
                    .any(|key| key.verify_strict(&message, sig).is_ok())
            });
            if verified {
                return Ok(());
            }
        }
        Err(FailureReason::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    // Vector of the Standard Webhooks reference libraries (also svix-webhooks):
    // standard-webhooks/standard-webhooks libraries/go/webhook_symmetric_test.go
    // `TestSymmetricWebhookSign`.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: u64 = 1_614_265_330;
    const PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
    const V1: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    // An invalid signature used by the same test file ("invalid signature is invalid").
    const OTHER_V1: &str = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";

    // Asymmetric vector: same file set, libraries/go/webhook_asymmetric_test.go
    // `TestAsymmetricWebhookSign` signs with seed
    // "VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="; the whpk_ public key
    // below was derived from that seed with python `cryptography`
    // (Ed25519PrivateKey.from_private_bytes(seed).public_key()).
    const V1A: &str = "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==";
    const WHPK: &str = "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=";

    fn verifier(scheme: &str) -> Verifier {
        compile(&format!(
            r#"{{"scheme":"{scheme}","secrets":[{{"value":"{SECRET}"}}]}}"#
        ))
    }

    fn std_headers(sig: &str, ts: u64) -> Headers {
        let ts = ts.to_string();
        headers(&[
            ("webhook-id", MSG_ID),
            ("webhook-timestamp", &ts),
            ("webhook-signature", sig),
        ])
    }

    use super::super::Verifier;

    #[test]
    fn reference_vector_verifies() {
        let v = verifier("standard-webhooks");
        assert_eq!(v.verify(&std_headers(V1, TS), PAYLOAD, TS), Ok(()));
        assert_eq!(v.scheme(), "standard-webhooks");
        // Secret given without the whsec_ prefix works too.
        let bare = compile(
            r#"{"scheme":"standard-webhooks","secrets":[{"value":"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}]}"#,
        );
        assert_eq!(bare.verify(&std_headers(V1, TS), PAYLOAD, TS), Ok(()));
    }

    #[test]
    fn svix_uses_its_own_header_names() {
        let v = verifier("svix");
        let ts = TS.to_string();
        let h = headers(&[
            ("svix-id", MSG_ID),
            ("svix-timestamp", &ts),
            ("svix-signature", V1),
        ]);
        assert_eq!(v.verify(&h, PAYLOAD, TS), Ok(()));
        assert_eq!(v.scheme(), "svix");
        // webhook-* headers do not count for svix.
        assert_eq!(
            v.verify(&std_headers(V1, TS), PAYLOAD, TS),
            Err(FailureReason::Missing)
        );
    }

    #[test]
    fn tampering_and_wrong_secret_mismatch() {
        let v = verifier("standard-webhooks");
        assert_eq!(
            v.verify(&std_headers(V1, TS), br#"{"test": 2432232315}"#, TS),
            Err(FailureReason::Mismatch)
        );
        let other_id = headers(&[
            ("webhook-id", "msg_other"),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", V1),
        ]);
        assert_eq!(
            v.verify(&other_id, PAYLOAD, TS),
            Err(FailureReason::Mismatch)
        );
        // Same signature, timestamp shifted by one second (still in tolerance).
        assert_eq!(
            v.verify(&std_headers(V1, TS + 1), PAYLOAD, TS),
            Err(FailureReason::Mismatch)
        );
        let wrong = compile(
            r#"{"scheme":"standard-webhooks","secrets":[{"value":"whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA=="}]}"#,
        );
        assert_eq!(
            wrong.verify(&std_headers(V1, TS), PAYLOAD, TS),
            Err(FailureReason::Mismatch)
        );
        assert_eq!(
            v.verify(&std_headers(OTHER_V1, TS), PAYLOAD, TS),
            Err(FailureReason::Mismatch)
        );
    }

    #[test]
    fn missing_headers() {
        let v = verifier("standard-webhooks");
        let ts = TS.to_string();
        for drop in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let pairs: Vec<(&str, &str)> = [
                ("webhook-id", MSG_ID),
                ("webhook-timestamp", ts.as_str()),
                ("webhook-signature", V1),
            ]
            .into_iter()
            .filter(|(k, _)| *k != drop)
            .collect();
            assert_eq!(
                v.verify(&headers(&pairs), PAYLOAD, TS),
                Err(FailureReason::Missing),
                "{drop}"
            );
        }
        assert_eq!(
            v.verify(&std_headers("  ", TS), PAYLOAD, TS),
            Err(FailureReason::Missing)
        );
    }

    #[test]
    fn empty_truncated_and_garbled_signatures_never_verify() {
        let v = verifier("standard-webhooks");
        let truncated = &V1[..V1.len() - 8];
        for sig in [
            "v1,",
            "v1",
            ",",
            truncated,
            "v1,g0hM9SsE+OTPJTGt",
            "v1,!!!!",
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "V1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1=g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1a,",
        ] {
            assert_eq!(
                v.verify(&std_headers(sig, TS), PAYLOAD, TS),
                Err(FailureReason::Malformed),
                "{sig:?}"
            );
        }
    }

    #[test]
    fn timestamps_out_of_tolerance_expire_both_ways() {
        let v = verifier("standard-webhooks");
        let h = std_headers(V1, TS);
        assert_eq!(v.verify(&h, PAYLOAD, TS + 300), Ok(()));
        assert_eq!(v.verify(&h, PAYLOAD, TS - 300), Ok(()));
        assert_eq!(v.verify(&h, PAYLOAD, TS + 301), Err(FailureReason::Expired));
        assert_eq!(v.verify(&h, PAYLOAD, TS - 301), Err(FailureReason::Expired));
        let tight = compile(&format!(
            r#"{{"scheme":"standard-webhooks","secrets":[{{"value":"{SECRET}"}}],"tolerance_s":5}}"#
        ));
        assert_eq!(
            tight.verify(&h, PAYLOAD, TS + 6),
            Err(FailureReason::Expired)
        );
        let garbled = headers(&[
            ("webhook-id", MSG_ID),
            ("webhook-timestamp", "1614265330.5"),
            ("webhook-signature", V1),
        ]);
        assert_eq!(
            v.verify(&garbled, PAYLOAD, TS),
            Err(FailureReason::Malformed)
        );
    }

    #[test]
    fn multi_signature_header_and_rotation() {
        let v = verifier("standard-webhooks");
        // As in the reference suite's "valid multi sig is valid" case.
        let list =
            format!("{OTHER_V1} v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {V1} {OTHER_V1}");
        assert_eq!(v.verify(&std_headers(&list, TS), PAYLOAD, TS), Ok(()));

        // Rotation: the valid secret is the second one configured.
        let rotated = compile(&format!(
            r#"{{"scheme":"standard-webhooks","secrets":[{{"value":"whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA=="}},{{"value":"{SECRET}"}}]}}"#
        ));
        assert_eq!(rotated.verify(&std_headers(V1, TS), PAYLOAD, TS), Ok(()));
    }

    #[test]
    fn entries_past_the_cap_are_ignored() {
        let v = verifier("standard-webhooks");
        let filler = vec![OTHER_V1; MAX_SIGNATURE_ENTRIES].join(" ");
        let late = format!("{filler} {V1}");
        assert_eq!(
            v.verify(&std_headers(&late, TS), PAYLOAD, TS),
            Err(FailureReason::Mismatch)
        );
        let early = format!("{V1} {filler}");
        assert_eq!(v.verify(&std_headers(&early, TS), PAYLOAD, TS), Ok(()));
    }

    #[test]
    fn ed25519_v1a() {
        let v = compile(&format!(
            r#"{{"scheme":"standard-webhooks","public_keys":["{WHPK}"]}}"#
        ));
        assert_eq!(v.verify(&std_headers(V1A, TS), PAYLOAD, TS), Ok(()));
        assert_eq!(
            v.verify(&std_headers(V1A, TS), br#"{"test": 2432232315}"#, TS),
            Err(FailureReason::Mismatch)
        );
        // A v1 entry with no secret configured cannot verify.
        assert_eq!(
            v.verify(&std_headers(V1, TS), PAYLOAD, TS),
            Err(FailureReason::Mismatch)
        );
        // Flip one bit of the signature.
        let mut bad = V1A.to_string();
        bad.replace_range(10..11, if &V1A[10..11] == "A" { "B" } else { "A" });
        assert_eq!(
            v.verify(&std_headers(&bad, TS), PAYLOAD, TS),
            Err(FailureReason::Mismatch)
        );
        // Truncated: never a valid signature length.
        assert_eq!(
            v.verify(&std_headers(&V1A[..V1A.len() - 4], TS), PAYLOAD, TS),
            Err(FailureReason::Malformed)
        );
        // Both kinds of keys: either entry kind is enough.
        let both = compile(&format!(
            r#"{{"scheme":"svix","secrets":[{{"value":"{SECRET}"}}],"public_keys":["{WHPK}"]}}"#
        ));
        let ts = TS.to_string();
        for sig in [V1, V1A] {
            let h = headers(&[
                ("svix-id", MSG_ID),
                ("svix-timestamp", &ts),
                ("svix-signature", sig),
            ]);
            assert_eq!(both.verify(&h, PAYLOAD, TS), Ok(()), "{sig}");
        }
    }
}

//! Stripe (<https://docs.stripe.com/webhooks#verify-manually>).
//!
//! `Stripe-Signature: t=<unix s>,v1=<hex>,v1=<hex>,v0=<hex>`; the signed
//! content is `{t}.{body}`, the tag hex HMAC-SHA256 keyed by the whole
//! secret string (`whsec_` included, not decoded). Only `v1` entries
//! count: `v0` is Stripe's test-mode scheme and is ignored, as the
//! official libraries do.

use super::compare::{self, header};
use super::keys::TimestampedKeys;
use super::{FailureReason, MAX_SIGNATURE_ENTRIES};
use crate::core::decimal;
use crate::core::headers::Headers;

const HEADER: &str = crate::core::names::header::STRIPE_SIGNATURE;
const TAG_LEN: usize = 32;

pub(super) fn verify(
    keys: &TimestampedKeys,
    headers: &Headers,
    body: &[u8],
    now_unix_s: u64,
) -> Result<(), FailureReason> {
    let value = header(headers, HEADER)?;
    let mut ts = None;
    let mut tags = Vec::new();
    for item in value.split(',').take(MAX_SIGNATURE_ENTRIES) {
        match item.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("t", v)) if ts.is_none() => ts = Some(v),
            Some(("v1", v)) => tags.extend(compare::hex_exact(v, TAG_LEN)),
            _ => {}
        }
    }
    let ts = compare::timestamp(ts.ok_or(FailureReason::Malformed)?)?;
    if tags.is_empty() {
        return Err(FailureReason::Malformed);
    }
    let mut digits = [0; decimal::MAX_DIGITS];
    let ts_text = decimal::decimal(ts, &mut digits);
    keys.verify(ts, now_unix_s, &[ts_text.as_bytes(), b".", body], &tags)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    // Stripe's own fixture: stripe/stripe-dotnet
    // src/StripeTests/Services/Events/EventUtilityTest.cs (secret
    // "webhook_secret", t=1533204620) over
    // src/StripeTests/Resources/event_test_signature.json (byte-exact, LF
    // line endings, trailing newline). Re-checked with
    // `(echo -n "1533204620." && cat event.json) | openssl sha256 -hmac webhook_secret`.
    const SECRET: &str = "webhook_secret";
    const TS: u64 = 1_533_204_620;
    const HEADER_VALUE: &str = "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7,v0=63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef";
    const V1_HEX: &str = "2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7";
    const BODY: &str = r#"{
  "id": "evt_123",
  "object": "event",
  "account": "acct_123",
  "api_version": "2017-05-25",
  "created": 1533204620,
  "data": {
    "object": {
      "id": "cus_123",
      "object": "customer",
      "created": 123456789,
      "email": "test@stripe.com",
      "livemode": false,
      "metadata": {}
    }
  },
  "livemode": false,
  "pending_webhooks": 1,
  "request": {
    "id": "req_123",
    "idempotency_key": "idempotency-key-123"
  },
  "type": "customer.created"
}
"#;

    fn verifier(secrets: &[&str]) -> super::super::Verifier {
        with_secrets("stripe", secrets)
    }

    fn h(value: &str) -> Headers {
        headers(&[("Stripe-Signature", value)])
    }

    #[test]
    fn stripe_fixture_verifies() {
        let v = verifier(&[SECRET]);
        assert_eq!(
            v.verify(&h(HEADER_VALUE), BODY.as_bytes(), TS + 100),
            Ok(())
        );
        assert_eq!(v.scheme(), "stripe");
    }

    #[test]
    fn whole_whsec_string_is_the_key() {
        // No published vector with a whsec_ key: computed with python,
        // hmac.new(b"whsec_test_secret",
        //          b'1700000000.{"id":"evt_test_webhook","object":"event"}', sha256)
        // (secret and event id as in stripe-node test/Webhook.spec.ts).
        let body = br#"{"id":"evt_test_webhook","object":"event"}"#;
        let sig = "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990";
        assert_eq!(
            hmac_sha256_hex(b"whsec_test_secret", &[b"1700000000.", body]),
            sig
        );
        let v = verifier(&["whsec_test_secret"]);
        assert_eq!(
            v.verify(&h(&format!("t=1700000000,v1={sig}")), body, 1_700_000_000),
            Ok(())
        );
    }

    #[test]
    fn tampered_body_and_wrong_secret_mismatch() {
        let v = verifier(&[SECRET]);
        let tampered = format!("{BODY}this_changes_the_json");
        assert_eq!(
            v.verify(&h(HEADER_VALUE), tampered.as_bytes(), TS),
            Err(FailureReason::Mismatch)
        );
        let wrong = verifier(&["whsec_other"]);
        assert_eq!(
            wrong.verify(&h(HEADER_VALUE), BODY.as_bytes(), TS),
            Err(FailureReason::Mismatch)
        );
        // Signature valid for another timestamp.
        let shifted = HEADER_VALUE.replace("t=1533204620", "t=1533204621");
        assert_eq!(
            v.verify(&h(&shifted), BODY.as_bytes(), TS),
            Err(FailureReason::Mismatch)
        );
    }

    #[test]
    fn rotation_and_extra_entries() {
        let v = verifier(&["whsec_old", SECRET]);
        assert_eq!(v.verify(&h(HEADER_VALUE), BODY.as_bytes(), TS), Ok(()));
        // Another v1 in front (Stripe sends one per active secret) and spaces.
        let multi = format!("t=1533204620, v1={}, v1={V1_HEX}", "00".repeat(32));
        assert_eq!(
            verifier(&[SECRET]).verify(&h(&multi), BODY.as_bytes(), TS),
            Ok(())
        );
    }

    #[test]
    fn only_v1_counts() {
        let v = verifier(&[SECRET]);
        // The fixture's v1 value presented as v0 only.
        let v0_only = format!("t=1533204620,v0={V1_HEX}");
        assert_eq!(
            v.verify(&h(&v0_only), BODY.as_bytes(), TS),
            Err(FailureReason::Malformed)
        );
        let v2 = format!("t=1533204620,v2={V1_HEX}");
        assert_eq!(
            v.verify(&h(&v2), BODY.as_bytes(), TS),
            Err(FailureReason::Malformed)
        );
    }

    #[test]
    fn malformed_and_missing() {
        let v = verifier(&[SECRET]);
        assert_eq!(
            v.verify(&headers(&[]), BODY.as_bytes(), TS),
            Err(FailureReason::Missing)
        );
        assert_eq!(
            v.verify(&h(""), BODY.as_bytes(), TS),
            Err(FailureReason::Missing)
        );
        // The bad headers of stripe-dotnet's ValidateSignatureHandlesIncorrectHeaderValues.
        for bad in [
            "t=,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7",
            "t,v1=,v0=",
            "t,v1=,v0",
            "t,v1=,",
            "t,,",
            ",,",
            "t",
            "bad_header",
            "t=1533204620",
            "t=1533204620,v1=",
            "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3",
            "t=1533204620,v1=zz20f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7",
            "v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7",
            "t=-1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7",
        ] {
            assert_eq!(
                v.verify(&h(bad), BODY.as_bytes(), TS),
                Err(FailureReason::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn stale_and_future_timestamps_expire() {
        let v = verifier(&[SECRET]);
        // stripe-dotnet RejectOutdatedTimestamp: now = t + tolerance + 100.
        assert_eq!(
            v.verify(&h(HEADER_VALUE), BODY.as_bytes(), TS + 400),
            Err(FailureReason::Expired)
        );
        assert_eq!(
            v.verify(&h(HEADER_VALUE), BODY.as_bytes(), TS - 301),
            Err(FailureReason::Expired)
        );
        let wide = compile(
            r#"{"scheme":"stripe","secrets":[{"value":"webhook_secret"}],"tolerance_s":600}"#,
        );
        assert_eq!(
            wide.verify(&h(HEADER_VALUE), BODY.as_bytes(), TS + 400),
            Ok(())
        );
    }
}

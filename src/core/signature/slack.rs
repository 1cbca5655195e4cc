//! Slack (<https://api.slack.com/authentication/verifying-requests-from-slack>).
//!
//! `X-Slack-Signature: v0=<hex HMAC-SHA256>` over `v0:{ts}:{body}`, where
//! `ts` is `X-Slack-Request-Timestamp` exactly as sent; keyed by the
//! signing secret string.

use super::FailureReason;
use super::compare::{self, header};
use super::keys::TimestampedKeys;
use crate::core::headers::Headers;

const SIGNATURE: &str = crate::core::names::header::SLACK_SIGNATURE;
const TIMESTAMP: &str = crate::core::names::header::SLACK_TIMESTAMP;
const PREFIX: &str = "v0=";
const TAG_LEN: usize = 32;

pub(super) fn verify(
    keys: &TimestampedKeys,
    headers: &Headers,
    body: &[u8],
    now_unix_s: u64,
) -> Result<(), FailureReason> {
    let value = header(headers, SIGNATURE)?;
    let ts_text = header(headers, TIMESTAMP)?;
    let ts = compare::timestamp(ts_text)?;
    let tag = value
        .strip_prefix(PREFIX)
        .and_then(|hex| compare::hex_exact(hex, TAG_LEN))
        .ok_or(FailureReason::Malformed)?;
    // The timestamp is signed exactly as sent.
    keys.verify(
        ts,
        now_unix_s,
        &[b"v0:", ts_text.as_bytes(), b":", body],
        &[tag],
    )
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    // Slack docs, "Verifying requests from Slack", the worked example.
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TS: u64 = 1_531_420_618;
    const BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn verifier(secrets: &[&str]) -> super::super::Verifier {
        with_secrets("slack", secrets)
    }

    fn h(sig: &str, ts: &str) -> Headers {
        headers(&[
            ("X-Slack-Signature", sig),
            ("X-Slack-Request-Timestamp", ts),
        ])
    }

    #[test]
    fn documented_example_verifies() {
        let v = verifier(&[SECRET]);
        assert_eq!(v.verify(&h(SIG, "1531420618"), BODY, TS + 10), Ok(()));
        assert_eq!(v.scheme(), "slack");
    }

    #[test]
    fn tampered_wrong_secret_rotation() {
        let mut tampered = BODY.to_vec();
        tampered.push(b'x');
        assert_eq!(
            verifier(&[SECRET]).verify(&h(SIG, "1531420618"), &tampered, TS),
            Err(FailureReason::Mismatch)
        );
        assert_eq!(
            verifier(&["nope"]).verify(&h(SIG, "1531420618"), BODY, TS),
            Err(FailureReason::Mismatch)
        );
        assert_eq!(
            verifier(&["nope", SECRET]).verify(&h(SIG, "1531420618"), BODY, TS),
            Ok(())
        );
        // The timestamp is signed.
        assert_eq!(
            verifier(&[SECRET]).verify(&h(SIG, "1531420619"), BODY, TS),
            Err(FailureReason::Mismatch)
        );
    }

    #[test]
    fn expiry_missing_malformed() {
        let v = verifier(&[SECRET]);
        assert_eq!(
            v.verify(&h(SIG, "1531420618"), BODY, TS + 301),
            Err(FailureReason::Expired)
        );
        assert_eq!(
            v.verify(&h(SIG, "1531420618"), BODY, TS - 301),
            Err(FailureReason::Expired)
        );
        assert_eq!(
            v.verify(&headers(&[("x-slack-signature", SIG)]), BODY, TS),
            Err(FailureReason::Missing)
        );
        assert_eq!(
            v.verify(
                &headers(&[("x-slack-request-timestamp", "1531420618")]),
                BODY,
                TS
            ),
            Err(FailureReason::Missing)
        );
        for (sig, ts) in [
            (SIG, "soon"),
            (
                "v1=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
                "1531420618",
            ),
            (
                "a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
                "1531420618",
            ),
            ("v0=", "1531420618"),
            ("v0=a2114d57b48eac39b9ad189dd8316235", "1531420618"),
        ] {
            assert_eq!(
                v.verify(&h(sig, ts), BODY, TS),
                Err(FailureReason::Malformed),
                "{sig:?} {ts:?}"
            );
        }
    }
}

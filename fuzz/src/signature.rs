//! Target `signature`: every scheme's header parsing and verification
//! (`core::signature::Verifier::verify`), with keys known to the harness,
//! which computes the right MACs and ed25519 signatures itself with the
//! hmac / sha1 / sha2 / ed25519-dalek crates.
//!
//! Input: byte 0 picks the scheme, byte 1 bit 0 says "sign correctly"
//! (bit 1: Standard Webhooks / Svix carry a `v1` MAC next to the `v1a`),
//! byte 2 is a timestamp offset (x3 seconds, so both sides of the 300 s
//! tolerance are reached); the rest is `id`, `timestamp`, `signature`
//! (several copies of the header when it holds `\n`) and `body`, separated
//! by 0x00.
//!
//! Properties:
//! - soundness: `Ok` only when a signature header carries the right MAC or
//!   signature (in the scheme's encoding) of the body and, for
//!   timestamped schemes, of a timestamp within the tolerance;
//! - completeness: a request the harness signs itself, any body, verifies
//!   when its timestamp is within the tolerance and is `Expired` otherwise.

use super::util::{fields, hex, text};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use callback_guard::config::{FieldPath, SignatureSpec};
use callback_guard::core::headers::Headers;
use callback_guard::core::signature::{FailureReason, Verifier};
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use std::sync::OnceLock;

const NOW: u64 = 1_700_000_000;
const TOLERANCE: u64 = 300;
/// Raw HMAC key of the Standard Webhooks / Svix `whsec_` secret.
const WHSEC_KEY: &[u8] = b"fuzz-standard-webhooks-key";
const SECRET: &str = "fuzz-secret-Kq7";
const ED25519_SEED: [u8; 32] = [7; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    StandardWebhooks,
    Svix,
    Stripe,
    Github,
    Slack,
    Shopify,
    /// `hmac` with sha512, base64, prefix `sha512=`.
    HmacSha512,
    /// `hmac` with sha1, hex, no prefix.
    HmacSha1,
}

const CASES: [Case; 8] = [
    Case::StandardWebhooks,
    Case::Svix,
    Case::Stripe,
    Case::Github,
    Case::Slack,
    Case::Shopify,
    Case::HmacSha512,
    Case::HmacSha1,
];

impl Case {
    fn spec(self) -> String {
        let whsec = format!("whsec_{}", STANDARD.encode(WHSEC_KEY));
        let whpk = format!(
            "whpk_{}",
            STANDARD.encode(
                SigningKey::from_bytes(&ED25519_SEED)
                    .verifying_key()
                    .as_bytes()
            )
        );
        let secret = format!(r#"[{{"value":"{SECRET}"}}]"#);
        match self {
            Self::StandardWebhooks | Self::Svix => format!(
                r#"{{"scheme":"{}","secrets":[{{"value":"{whsec}"}}],"public_keys":["{whpk}"]}}"#,
                if self == Self::Svix {
                    "svix"
                } else {
                    "standard-webhooks"
                }
            ),
            Self::Stripe => format!(r#"{{"scheme":"stripe","secrets":{secret}}}"#),
            Self::Github => format!(r#"{{"scheme":"github","secrets":{secret}}}"#),
            Self::Slack => format!(r#"{{"scheme":"slack","secrets":{secret}}}"#),
            Self::Shopify => format!(r#"{{"scheme":"shopify","secrets":{secret}}}"#),
            Self::HmacSha512 => format!(
                r#"{{"scheme":"hmac","secrets":{secret},"header":"x-signature","algorithm":"sha512","encoding":"base64","prefix":"sha512="}}"#
            ),
            Self::HmacSha1 => format!(
                r#"{{"scheme":"hmac","secrets":{secret},"header":"x-signature","algorithm":"sha1"}}"#
            ),
        }
    }

    /// Header names: (id, timestamp, signature); empty when not used.
    fn headers(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::StandardWebhooks => ("webhook-id", "webhook-timestamp", "webhook-signature"),
            Self::Svix => ("svix-id", "svix-timestamp", "svix-signature"),
            Self::Stripe => ("", "", "stripe-signature"),
            Self::Github => ("", "", "x-hub-signature-256"),
            Self::Slack => ("", "x-slack-request-timestamp", "x-slack-signature"),
            Self::Shopify => ("", "", "x-shopify-hmac-sha256"),
            Self::HmacSha512 | Self::HmacSha1 => ("", "", "x-signature"),
        }
    }

    fn timestamped(self) -> bool {
        !self.headers().1.is_empty() || self == Self::Stripe
    }
}

fn verifiers() -> &'static [Verifier; 8] {
    static VERIFIERS: OnceLock<[Verifier; 8]> = OnceLock::new();
    VERIFIERS.get_or_init(|| {
        CASES.map(|case| {
            let spec: SignatureSpec = match serde_json::from_str(&case.spec()) {
                Ok(s) => s,
                Err(e) => panic!("fuzz signature spec {case:?}: {e}"),
            };
            match callback_guard::config::compile_signature(
                &spec,
                &FieldPath::root().key("signature"),
                &|_| None,
            ) {
                Ok(v) => v,
                Err(e) => panic!("fuzz signature spec {case:?}: {e}"),
            }
        })
    })
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let Ok(mut m) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    parts.iter().for_each(|p| m.update(p));
    m.finalize().into_bytes().to_vec()
}

fn hmac512(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let Ok(mut m) = Hmac::<sha2::Sha512>::new_from_slice(key) else {
        return Vec::new();
    };
    parts.iter().for_each(|p| m.update(p));
    m.finalize().into_bytes().to_vec()
}

fn hmac1(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let Ok(mut m) = Hmac::<sha1::Sha1>::new_from_slice(key) else {
        return Vec::new();
    };
    parts.iter().for_each(|p| m.update(p));
    m.finalize().into_bytes().to_vec()
}

/// The base64 characters that `bytes` fix whatever the padding bits
/// (every full 6-bit group), so a decoder's leniency cannot hide a match.
fn b64_core(bytes: &[u8]) -> String {
    let full = bytes.len() * 8 / 6;
    STANDARD.encode(bytes).chars().take(full).collect()
}

/// A right signature as text: hex (compared case-insensitively) or base64.
enum Text {
    Hex(String),
    Base64(String),
}

/// The right signature texts for `case` (an accepted header must contain
/// one of them), for timestamp `ts` and `id`.
fn right(case: Case, id: &str, ts: u64, body: &[u8]) -> Vec<Text> {
    let key = SECRET.as_bytes();
    let ts = ts.to_string();
    let ts = ts.as_bytes();
    match case {
        Case::StandardWebhooks | Case::Svix => {
            let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts, b".", body];
            let signature = SigningKey::from_bytes(&ED25519_SEED).sign(&parts.concat());
            vec![
                Text::Base64(b64_core(&hmac256(WHSEC_KEY, &parts))),
                Text::Base64(b64_core(&signature.to_bytes())),
            ]
        }
        Case::Stripe => vec![Text::Hex(hex(&hmac256(key, &[ts, b".", body])))],
        Case::Slack => vec![Text::Hex(hex(&hmac256(key, &[b"v0:", ts, b":", body])))],
        Case::Github => vec![Text::Hex(hex(&hmac256(key, &[body])))],
        Case::Shopify => vec![Text::Base64(b64_core(&hmac256(key, &[body])))],
        Case::HmacSha512 => vec![Text::Base64(b64_core(&hmac512(key, &[body])))],
        Case::HmacSha1 => vec![Text::Hex(hex(&hmac1(key, &[body])))],
    }
}

/// A correctly signed request's signature header value.
fn signed_header(case: Case, id: &str, ts: u64, body: &[u8], both: bool) -> String {
    let key = SECRET.as_bytes();
    let ts_text = ts.to_string();
    let ts_b = ts_text.as_bytes();
    match case {
        Case::StandardWebhooks | Case::Svix => {
            let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts_b, b".", body];
            let mac = STANDARD.encode(hmac256(WHSEC_KEY, &parts));
            let sig = STANDARD.encode(
                SigningKey::from_bytes(&ED25519_SEED)
                    .sign(&parts.concat())
                    .to_bytes(),
            );
            if both {
                format!("v1a,{sig} v1,{mac}")
            } else {
                format!("v1a,{sig}")
            }
        }
        Case::Stripe => format!("t={ts},v1={}", hex(&hmac256(key, &[ts_b, b".", body]))),
        Case::Slack => format!("v0={}", hex(&hmac256(key, &[b"v0:", ts_b, b":", body]))),
        Case::Github => format!("sha256={}", hex(&hmac256(key, &[body]))),
        Case::Shopify => STANDARD.encode(hmac256(key, &[body])),
        Case::HmacSha512 => format!("sha512={}", STANDARD.encode(hmac512(key, &[body]))),
        Case::HmacSha1 => hex(&hmac1(key, &[body])),
    }
}

/// A request signed here: the signature header, and id and timestamp
/// headers where the scheme has them.
fn signed_headers(case: Case, id: &str, ts: u64, body: &[u8], both: bool) -> Headers {
    let (id_name, ts_name, sig_name) = case.headers();
    let mut pairs = vec![(
        sig_name.to_string(),
        signed_header(case, id, ts, body, both),
    )];
    if !id_name.is_empty() {
        pairs.push((id_name.to_string(), id.to_string()));
    }
    if !ts_name.is_empty() {
        pairs.push((ts_name.to_string(), ts.to_string()));
    }
    Headers::new(pairs)
}

pub fn check(data: &[u8]) {
    let [head, rest] = [data.get(..3).unwrap_or(&[]), data.get(3..).unwrap_or(&[])];
    let [selector, flags, offset] = [0, 1, 2].map(|i| head.get(i).copied().unwrap_or(0));
    let i = usize::from(selector) % CASES.len();
    let (case, verifier) = (CASES[i], &verifiers()[i]);
    let (id_name, ts_name, sig_name) = case.headers();
    let [id, ts, sig, body] = fields::<4>(rest);

    if flags & 1 == 1 {
        // Signed here: must verify iff fresh.
        let delta = i64::from(offset as i8) * 3;
        let ts = NOW.saturating_add_signed(delta);
        let id: String = text(id).chars().filter(|c| c.is_ascii_graphic()).collect();
        let id = if id.is_empty() {
            "msg_fuzz".to_string()
        } else {
            id
        };
        let headers = signed_headers(case, &id, ts, body, flags & 2 == 2);
        let got = verifier.verify(&headers, body, NOW);
        let want = if !case.timestamped() || delta.unsigned_abs() <= TOLERANCE {
            Ok(())
        } else {
            Err(FailureReason::Expired)
        };
        assert_eq!(got, want, "{case:?} signed at {ts} (now {NOW})");
        return;
    }

    let mut raw: Vec<(Vec<u8>, Vec<u8>)> = sig
        .split(|&b| b == b'\n')
        .map(|v| (sig_name.as_bytes().to_vec(), v.to_vec()))
        .collect();
    if !id_name.is_empty() {
        raw.push((id_name.as_bytes().to_vec(), id.to_vec()));
    }
    if !ts_name.is_empty() {
        raw.push((ts_name.as_bytes().to_vec(), ts.to_vec()));
    }
    let headers = Headers::from_bytes(raw);
    if verifier.verify(&headers, body, NOW).is_ok() {
        assert!(
            accepted_rightly(case, &headers, body, NOW),
            "{case:?} accepted a wrong signature"
        );
    }
}

/// The independent reading of an accepted request: some timestamp it
/// carries is fresh, and a signature header holds the right MAC for it.
fn accepted_rightly(case: Case, headers: &Headers, body: &[u8], now: u64) -> bool {
    let (id_name, ts_name, sig_name) = case.headers();
    let Ok(Some(sig)) = headers.single_token(sig_name) else {
        return false;
    };
    let sig_lower = sig.to_ascii_lowercase();
    let id = if id_name.is_empty() {
        ""
    } else {
        match headers.single_token(id_name) {
            Ok(Some(id)) => id,
            _ => return false,
        }
    };
    let digits = |t: &str| -> Option<u64> {
        (!t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let timestamps: Vec<u64> = match case {
        Case::Stripe => sig
            .split(',')
            .filter_map(|item| item.split_once('='))
            .filter(|(k, _)| k.trim() == "t")
            .filter_map(|(_, v)| digits(v.trim()))
            .collect(),
        _ if case.timestamped() => match headers.single_token(ts_name) {
            Ok(Some(t)) => digits(t).into_iter().collect(),
            _ => return false,
        },
        _ => vec![0],
    };
    timestamps.into_iter().any(|ts| {
        (!case.timestamped() || ts.abs_diff(now) <= TOLERANCE)
            && right(case, id, ts, body).iter().any(|r| match r {
                Text::Hex(h) => sig_lower.contains(h.as_str()),
                Text::Base64(b) => sig.contains(b.as_str()),
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The soundness oracle is not vacuous: it agrees with the verifier on
    /// right signatures and refuses them for another body or a stale time.
    #[test]
    fn oracle_agrees_on_right_and_wrong_signatures() {
        let body = br#"{"id":"evt_1"}"#;
        for (case, verifier) in CASES.iter().zip(verifiers()) {
            for both in [false, true] {
                let headers = signed_headers(*case, "msg_1", NOW, body, both);
                assert_eq!(verifier.verify(&headers, body, NOW), Ok(()), "{case:?}");
                assert!(accepted_rightly(*case, &headers, body, NOW), "{case:?}");
                assert!(
                    !accepted_rightly(*case, &headers, b"other", NOW),
                    "{case:?}"
                );
                if case.timestamped() {
                    let later = NOW + TOLERANCE + 1;
                    assert!(!accepted_rightly(*case, &headers, body, later), "{case:?}");
                }
            }
        }
    }
}

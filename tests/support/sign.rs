//! The sender's half of each webhook signature scheme, written from the
//! providers' documentation with RustCrypto / dalek directly: it shares no
//! code with the filter's verifier. `tests/signatures.rs` checks these
//! helpers against the providers' published vectors before trusting them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (the clock Envoy reads too).
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC of `msg` with `algorithm` sha1 | sha256 | sha512.
pub fn hmac(algorithm: &str, key: &[u8], msg: &[u8]) -> Vec<u8> {
    macro_rules! run {
        ($hash:ty) => {{
            let mut mac = Hmac::<$hash>::new_from_slice(key).unwrap();
            mac.update(msg);
            mac.finalize().into_bytes().to_vec()
        }};
    }
    match algorithm {
        "sha1" => run!(Sha1),
        "sha256" => run!(Sha256),
        "sha512" => run!(Sha512),
        other => panic!("unknown algorithm {other}"),
    }
}

/// `{id}.{ts}.{body}`, the Standard Webhooks / Svix signed content.
fn std_content(id: &str, ts: u64, body: &[u8]) -> Vec<u8> {
    let mut m = format!("{id}.{ts}.").into_bytes();
    m.extend_from_slice(body);
    m
}

/// Standard Webhooks / Svix `v1,<base64 HMAC-SHA256>`; the key is the
/// base64 after `whsec_`.
pub fn standard_v1(whsec: &str, id: &str, ts: u64, body: &[u8]) -> String {
    let key = STANDARD
        .decode(whsec.strip_prefix("whsec_").unwrap_or(whsec))
        .unwrap();
    format!(
        "v1,{}",
        b64(&hmac("sha256", &key, &std_content(id, ts, body)))
    )
}

/// Standard Webhooks `v1a,<base64 ed25519>` with the key of `seed`.
pub fn standard_v1a(seed: &[u8; 32], id: &str, ts: u64, body: &[u8]) -> String {
    let sig = SigningKey::from_bytes(seed).sign(&std_content(id, ts, body));
    format!("v1a,{}", b64(&sig.to_bytes()))
}

/// The `whpk_` public key of `seed`.
pub fn whpk(seed: &[u8; 32]) -> String {
    format!(
        "whpk_{}",
        b64(SigningKey::from_bytes(seed).verifying_key().as_bytes())
    )
}

/// Stripe `t=<ts>,v1=<hex HMAC-SHA256 of "{ts}.{body}">`, keyed by the
/// whole secret string.
pub fn stripe(secret: &str, ts: u64, body: &[u8]) -> String {
    let mut m = format!("{ts}.").into_bytes();
    m.extend_from_slice(body);
    format!("t={ts},v1={}", hex(&hmac("sha256", secret.as_bytes(), &m)))
}

/// GitHub `sha256=<hex HMAC-SHA256 of the body>`.
pub fn github(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex(&hmac("sha256", secret.as_bytes(), body)))
}

/// Slack `v0=<hex HMAC-SHA256 of "v0:{ts}:{body}">`.
pub fn slack(secret: &str, ts: u64, body: &[u8]) -> String {
    let mut m = format!("v0:{ts}:").into_bytes();
    m.extend_from_slice(body);
    format!("v0={}", hex(&hmac("sha256", secret.as_bytes(), &m)))
}

/// Shopify `<base64 HMAC-SHA256 of the body>`.
pub fn shopify(secret: &str, body: &[u8]) -> String {
    b64(&hmac("sha256", secret.as_bytes(), body))
}

/// A JSON `POST` to `path` carrying Standard Webhooks headers for `id`, now,
/// signed with `whsec` over `body`.
pub fn standard_request(path: &str, whsec: &str, id: &str, body: &str) -> super::Request {
    let ts = now();
    super::Request::post(path)
        .header("webhook-id", id)
        .header("webhook-timestamp", &ts.to_string())
        .header(
            "webhook-signature",
            &standard_v1(whsec, id, ts, body.as_bytes()),
        )
        .json(body)
}

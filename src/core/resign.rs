//! Re-signing what is forwarded (`channels[].resign`, extension).
//!
//! Masking changes the body, so a service that still checks the provider's
//! signature with its SDK would refuse every masked callback. With
//! `resign`, the filter removes the provider's signature headers after it
//! verified them and signs the body it forwards with Standard Webhooks
//! headers under a mesh-internal secret: `webhook-id` (the provider's
//! delivery id, or one derived from the trace id), `webhook-timestamp`
//! (now) and `webhook-signature: v1,<base64 HMAC-SHA256 of
//! id.timestamp.body>`. The service verifies with any stock Standard
//! Webhooks library and that one secret, whatever the provider.

use crate::core::names::header;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// The headers the re-signed request carries.
pub const ID_HEADER: &str = header::WEBHOOK_ID;
pub const TIMESTAMP_HEADER: &str = header::WEBHOOK_TIMESTAMP;
pub const SIGNATURE_HEADER: &str = header::WEBHOOK_SIGNATURE;

/// A compiled `resign` section: the decoded `whsec_` key.
#[derive(Clone)]
pub struct Resigner {
    key: Vec<u8>,
}

impl fmt::Debug for Resigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resigner(<redacted>)")
    }
}

impl Resigner {
    /// `key`: the bytes of a decoded `whsec_` secret (validated at load).
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    /// The three Standard Webhooks headers for `body` sent as `id` at
    /// `now_unix_s`.
    pub fn headers(&self, id: &str, now_unix_s: u64, body: &[u8]) -> [(&'static str, String); 3] {
        let ts = now_unix_s.to_string();
        let signature = Hmac::<Sha256>::new_from_slice(&self.key)
            .map(|mut mac| {
                mac.update(id.as_bytes());
                mac.update(b".");
                mac.update(ts.as_bytes());
                mac.update(b".");
                mac.update(body);
                BASE64.encode(mac.finalize().into_bytes())
            })
            .unwrap_or_default();
        [
            (ID_HEADER, id.to_string()),
            (TIMESTAMP_HEADER, ts),
            (SIGNATURE_HEADER, format!("v1,{signature}")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // Standard Webhooks reference libraries' test vector
        // (libraries/go/webhook_symmetric_test.go): whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw.
        let key = BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let h = Resigner::new(key).headers(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            h[0],
            (ID_HEADER, "msg_p5jXN8AQM9LWM0D4loKWxJek".to_string())
        );
        assert_eq!(h[1], (TIMESTAMP_HEADER, "1614265330".to_string()));
        assert_eq!(
            h[2],
            (
                SIGNATURE_HEADER,
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_string()
            )
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        assert_eq!(
            format!("{:?}", Resigner::new(vec![1, 2, 3])),
            "Resigner(<redacted>)"
        );
    }
}

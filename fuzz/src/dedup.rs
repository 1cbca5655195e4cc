//! Target `dedup`: delivery-id extraction
//! (`core::dedup::DeliveryIdSource`) for every scheme's source and a
//! configured `id_header`.
//!
//! Properties: an id is 1..=256 bytes; from a header it is that header's
//! `single_token` (never one of several copies, never non-ASCII); the
//! fallback source takes the first of the known headers that has one; from
//! a body it is the top-level string `id` of a JSON object (and such an id,
//! written once, is always found); `malformed` is true exactly when a
//! header the source reads is refused by `single_token`.
//!
//! And the key dedup remembers (`DedupPolicy::delivery_key`), for a policy
//! compiled per scheme, with an `id_header`, and unsigned: the id alone
//! where the signature covers it (standard-webhooks, svix, stripe, without
//! `id_header`), else the id, `#` and the first 32 hex digits of the
//! body's SHA-256 (computed here), so a captured body replayed under
//! another delivery's id never makes that delivery a duplicate. Dedup
//! without a signature compiles only with `allow_unsigned`.

use super::util::{fields, header_lines};
use callback_guard::config::{self, DedupSpec, FieldPath, SignatureSpec};
use callback_guard::core::dedup::{DedupPolicy, DeliveryIdSource, FALLBACK_ID_HEADERS, MAX_ID_LEN};
use callback_guard::core::headers::Headers;
use callback_guard::core::signature::Scheme;
use serde::de::IgnoredAny;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::sync::OnceLock;

/// Schemes whose signature covers the delivery id.
const ID_SIGNED: [&str; 3] = ["standard-webhooks", "svix", "stripe"];

/// (policy, the source it must read, whether its key is the id alone).
type Compiled = (DedupPolicy, DeliveryIdSource, bool);

fn policies() -> &'static [Compiled] {
    static POLICIES: OnceLock<Vec<Compiled>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let spec = |json: &str| -> DedupSpec {
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
        };
        let signature = |scheme: &str| -> SignatureSpec {
            let json = format!(r#"{{"scheme":"{scheme}","secrets":[{{"value":"k"}}]}}"#);
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"))
        };
        let compile = |d: &DedupSpec, s: Option<&SignatureSpec>| {
            config::compile_dedup(d, s, &FieldPath::root().key("dedup"))
        };
        let plain = spec(r#"{"window_s": 60}"#);
        assert!(
            compile(&plain, None).is_err(),
            "unsigned dedup without allow_unsigned"
        );
        let mut out = Vec::new();
        for scheme in Scheme::ALL {
            let sig = signature(scheme.as_str());
            let policy = compile(&plain, Some(&sig)).unwrap_or_else(|e| panic!("{e}"));
            let signed = ID_SIGNED.contains(&scheme.as_str());
            out.push((policy, DeliveryIdSource::for_scheme(Some(scheme)), signed));
        }
        let custom = spec(r#"{"window_s": 60, "id_header": "X-Custom-Id"}"#);
        let sig = signature("standard-webhooks");
        let policy = compile(&custom, Some(&sig)).unwrap_or_else(|e| panic!("{e}"));
        out.push((
            policy,
            DeliveryIdSource::Header(Cow::Borrowed("x-custom-id")),
            false,
        ));
        let unsigned = spec(r#"{"window_s": 60, "allow_unsigned": true}"#);
        let policy = compile(&unsigned, None).unwrap_or_else(|e| panic!("{e}"));
        out.push((policy, DeliveryIdSource::KnownHeaders, false));
        out
    })
}

fn check_keys(headers: &Headers, body: &[u8]) {
    let digest = super::util::hex(&Sha256::digest(body)[..16]);
    for (policy, source, id_signed) in policies() {
        assert_eq!(policy.source(), source);
        let id = source.delivery_id(headers, body);
        assert_eq!(policy.delivery_id(headers, body), id);
        assert_eq!(policy.id_malformed(headers), source.malformed(headers));
        let want = id.map(|id| {
            if *id_signed {
                id
            } else {
                format!("{id}#{digest}")
            }
        });
        assert_eq!(policy.delivery_key(headers, body), want, "{source:?}");
    }
}

pub fn check(data: &[u8]) {
    let [lines, body] = fields::<2>(data);
    let headers = Headers::from_bytes(header_lines(lines));
    let mut sources: Vec<DeliveryIdSource> = Scheme::ALL
        .into_iter()
        .map(|s| DeliveryIdSource::for_scheme(Some(s)))
        .collect();
    sources.push(DeliveryIdSource::for_scheme(None));
    sources.push(DeliveryIdSource::Header(Cow::Borrowed("x-custom-id")));
    check_keys(&headers, body);

    for source in &sources {
        let id = source.delivery_id(&headers, body);
        if let Some(id) = &id {
            assert!(!id.is_empty() && id.len() <= MAX_ID_LEN, "{id:?}");
        }
        let token = |name: &str| headers.single_token(name).ok().flatten();
        match source {
            DeliveryIdSource::Header(name) => {
                let want = token(name).filter(|t| t.len() <= MAX_ID_LEN);
                assert_eq!(id.as_deref(), want, "{name}");
                assert_eq!(
                    source.malformed(&headers),
                    headers.single_token(name).is_err()
                );
            }
            DeliveryIdSource::KnownHeaders => {
                let first = FALLBACK_ID_HEADERS.iter().find_map(|n| token(n));
                assert_eq!(id.as_deref(), first.filter(|t| t.len() <= MAX_ID_LEN));
                let bad = FALLBACK_ID_HEADERS
                    .iter()
                    .any(|n| headers.single_token(n).is_err());
                assert_eq!(source.malformed(&headers), bad);
            }
            DeliveryIdSource::JsonBodyId => check_body_id(body, id.as_deref()),
        }
    }
}

fn check_body_id(body: &[u8], id: Option<&str>) {
    let value = serde_json::from_slice::<serde_json::Value>(body).ok();
    let body_id = value
        .as_ref()
        .and_then(|v| v.as_object())
        .and_then(|o| o.get("id"))
        .and_then(|v| v.as_str());
    if let Some(id) = id {
        assert!(
            body.trim_ascii_start().starts_with(b"{"),
            "id from a non-object"
        );
        assert!(
            serde_json::from_slice::<IgnoredAny>(body).is_ok(),
            "id from invalid JSON"
        );
        if value.is_some() {
            assert_eq!(Some(id), body_id, "not the top-level id");
        }
    } else if let Some(want) = body_id {
        // Written once, without escapes (`"\u0069d"` is `id` too): no
        // duplicate key that makes serde refuse the event.
        let once =
            body.windows(4).filter(|w| w == b"\"id\"").count() == 1 && !body.contains(&b'\\');
        if once && !want.is_empty() && want.len() <= MAX_ID_LEN {
            panic!("top-level id {want:?} not found");
        }
    }
}

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

use super::util::{fields, header_lines};
use callback_guard::core::dedup::{DeliveryIdSource, FALLBACK_ID_HEADERS, MAX_ID_LEN};
use callback_guard::core::headers::Headers;
use callback_guard::core::signature::Scheme;
use serde::de::IgnoredAny;
use std::borrow::Cow;

pub fn check(data: &[u8]) {
    let [lines, body] = fields::<2>(data);
    let headers = Headers::from_bytes(header_lines(lines));
    let mut sources: Vec<DeliveryIdSource> = Scheme::ALL
        .into_iter()
        .map(|s| DeliveryIdSource::for_scheme(Some(s)))
        .collect();
    sources.push(DeliveryIdSource::for_scheme(None));
    sources.push(DeliveryIdSource::Header(Cow::Borrowed("x-custom-id")));

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

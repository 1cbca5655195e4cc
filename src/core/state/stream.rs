//! The dead-letter Redis Stream sink (issue #18): one `XADD` per copy of a
//! callback the upstream failed, through the same HTTP front as the other
//! fleet-state calls (see [`crate::core::deadletter`]).
//!
//! ```text
//! XADD <key> MAXLEN ~ <max_len> * envelope <JSON> channel <name> [delivery_id <id>]
//! ```
//!
//! - `envelope` is the same JSON the HTTP sink receives (same `version`);
//!   `channel` and `delivery_id` are repeated as fields so an operator can
//!   filter entries without parsing it.
//! - `MAXLEN ~`: Redis trims whole radix-tree nodes, so the cap costs O(1)
//!   per `XADD` and the stream holds `max_len` entries or a few more.
//! - A plain command, not a script: `XADD` is atomic on its own, and there
//!   is no script cache to reload after a restart.
//!
//! # Size
//! webdis takes the command in the path of a `GET` (it hangs on a `POST`
//! whose body comes in a later read, see [`super::webdis`]), and its HTTP
//! parser refuses a request head over 80 KiB (measured with webdis 0.1.9:
//! a path of 81,825 bytes passes, 81,854 is reset). Percent-encoding
//! triples every byte of JSON punctuation, so an envelope whose encoded
//! path would pass [`MAX_PATH_BYTES`] is sent without its body
//! (`body_omitted: true`, [`StreamRequest::body_dropped`]); the other
//! fields are small and bounded.

use super::webdis::{answer_json, encode};
use super::{HttpRequest, Protocol, StateError, StatePolicy};
use crate::core::deadletter::StreamSink;

/// Longest `:path` sent to webdis; leaves ~2.9 KB of its 80 KiB head limit
/// for the request line and Envoy's headers.
pub const MAX_PATH_BYTES: usize = 79_000;

/// Longest error message kept from a Redis error.
const MAX_ERROR_LEN: usize = 160;

/// One `XADD` ready for `dispatch_http_call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    pub http: HttpRequest,
    /// The envelope did not fit and was sent without its body.
    pub body_dropped: bool,
}

/// The `XADD` of `envelope` (the dead-letter JSON) to `sink`; `None` when
/// it is not an envelope or does not fit even without its body.
pub fn xadd(policy: &StatePolicy, sink: &StreamSink, envelope: &[u8]) -> Option<StreamRequest> {
    let mut value: serde_json::Value = serde_json::from_slice(envelope).ok()?;
    let (channel, delivery_id) = {
        let text = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_string);
        (text("channel")?, text("delivery_id"))
    };
    let mut body_dropped = false;
    // As the HTTP sink gets it; re-serialized only without its body.
    let mut json = String::from_utf8(envelope.to_vec()).ok()?;
    loop {
        let path = match policy.protocol {
            Protocol::Webdis => webdis_path(sink, &json, &channel, delivery_id.as_deref()),
        };
        if path.len() <= MAX_PATH_BYTES {
            let mut headers = vec![
                (":method".to_string(), "GET".to_string()),
                (":path".to_string(), path),
                (":authority".to_string(), policy.authority.clone()),
            ];
            if let Some(auth) = &policy.authorization {
                headers.push(("authorization".into(), auth.clone()));
            }
            return Some(StreamRequest {
                http: HttpRequest {
                    headers,
                    body: Vec::new(),
                },
                body_dropped,
            });
        }
        if body_dropped {
            return None;
        }
        let map = value.as_object_mut()?;
        map.remove("body");
        map.remove("body_base64");
        map.insert("body_omitted".into(), serde_json::Value::Bool(true));
        json = serde_json::to_string(&value).ok()?;
        body_dropped = true;
    }
}

fn webdis_path(sink: &StreamSink, json: &str, channel: &str, delivery_id: Option<&str>) -> String {
    let mut parts: Vec<&str> = vec!["XADD", &sink.key, "MAXLEN", "~"];
    let max_len = sink.max_len.to_string();
    parts.extend([max_len.as_str(), "*", "envelope", json, "channel", channel]);
    if let Some(id) = delivery_id {
        parts.extend(["delivery_id", id]);
    }
    let mut path = String::new();
    for part in parts {
        path.push('/');
        path.push_str(&encode(part));
    }
    path
}

/// The new entry's id from the front's answer to an [`xadd`] (`status` 0:
/// none came).
pub fn xadd_answer(protocol: Protocol, status: u32, body: &[u8]) -> Result<String, StateError> {
    match protocol {
        Protocol::Webdis => webdis_answer(status, body),
    }
}

fn webdis_answer(status: u32, body: &[u8]) -> Result<String, StateError> {
    let value = answer_json(status, body)?;
    match value.get("XADD") {
        Some(serde_json::Value::String(id)) => Ok(id.clone()),
        Some(serde_json::Value::Array(items)) => match items.as_slice() {
            [serde_json::Value::Bool(false), serde_json::Value::String(m)] => {
                let mut end = m.len().min(MAX_ERROR_LEN);
                while !m.is_char_boundary(end) {
                    end -= 1;
                }
                Err(StateError::Redis(m.get(..end).unwrap_or_default().into()))
            }
            _ => Err(StateError::Malformed("unexpected XADD reply")),
        },
        _ => Err(StateError::Malformed("unexpected XADD reply")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::{Fallback, lease::LeaseConfig};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn policy() -> StatePolicy {
        StatePolicy {
            cluster: "fleet-state".into(),
            authority: "webdis".into(),
            timeout_ms: 100,
            key_prefix: "cg:".into(),
            on_unavailable: Fallback::Local,
            protocol: Protocol::Webdis,
            authorization: Some("Basic eDp5".into()),
            lease: LeaseConfig::default(),
            breaker_failures: 3,
            breaker_open_ms: 1000,
        }
    }

    fn sink() -> StreamSink {
        StreamSink {
            key: "cg:deadletter".into(),
            max_len: 500,
        }
    }

    fn header<'a>(req: &'a StreamRequest, name: &str) -> &'a str {
        req.http
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    #[test]
    fn the_xadd_carries_the_envelope_channel_and_delivery_id() {
        let envelope = br#"{"version":1,"channel":"pay/ments","delivery_id":"msg 1","body":"{\"a\":\"***\"}"}"#;
        let req = xadd(&policy(), &sink(), envelope).unwrap();
        assert!(!req.body_dropped);
        assert_eq!(header(&req, ":method"), "GET");
        assert_eq!(header(&req, ":authority"), "webdis");
        assert_eq!(header(&req, "authorization"), "Basic eDp5");
        let path = header(&req, ":path");
        let json = encode(std::str::from_utf8(envelope).unwrap());
        assert_eq!(
            path,
            format!(
                "/XADD/cg%3Adeadletter/MAXLEN/~/500/%2A/envelope/{json}/channel/pay%2Fments/delivery_id/msg%201"
            )
        );
        let no_id = xadd(&policy(), &sink(), br#"{"channel":"c"}"#).unwrap();
        assert!(header(&no_id, ":path").ends_with("/channel/c"));
        assert_eq!(xadd(&policy(), &sink(), b"not json"), None);
    }

    #[test]
    fn an_envelope_too_long_for_the_path_goes_without_its_body() {
        let body = "}".repeat(MAX_PATH_BYTES / 3);
        let envelope = serde_json::json!({"channel": "c", "body": body}).to_string();
        let req = xadd(&policy(), &sink(), envelope.as_bytes()).unwrap();
        assert!(req.body_dropped);
        let path = header(&req, ":path");
        assert!(path.len() <= MAX_PATH_BYTES);
        assert!(
            path.contains(&encode(r#"{"body_omitted":true,"channel":"c"}"#)),
            "{path}"
        );
        let just_fits =
            serde_json::json!({"channel": "c", "body": "a".repeat(MAX_PATH_BYTES - 200)});
        let req = xadd(&policy(), &sink(), just_fits.to_string().as_bytes()).unwrap();
        assert!(!req.body_dropped);
        let huge_channel = serde_json::json!({"channel": "%".repeat(MAX_PATH_BYTES)});
        assert_eq!(
            xadd(&policy(), &sink(), huge_channel.to_string().as_bytes()),
            None
        );
    }

    #[test]
    fn the_answer_is_the_entry_id_or_a_typed_error() {
        let answer = |status, body: &str| xadd_answer(Protocol::Webdis, status, body.as_bytes());
        assert_eq!(
            answer(200, r#"{"XADD":"1700000000000-0"}"#),
            Ok("1700000000000-0".into())
        );
        assert_eq!(
            answer(
                200,
                r#"{"XADD":[false,"NOPERM this user has no permissions"]}"#
            ),
            Err(StateError::Redis(
                "NOPERM this user has no permissions".into()
            ))
        );
        assert_eq!(answer(0, ""), Err(StateError::NoAnswer));
        assert_eq!(answer(403, ""), Err(StateError::Forbidden));
        assert_eq!(answer(503, ""), Err(StateError::Unavailable));
        assert_eq!(answer(500, ""), Err(StateError::Http(500)));
        assert!(matches!(answer(200, "{}"), Err(StateError::Malformed(_))));
        assert!(matches!(answer(200, "x"), Err(StateError::Malformed(_))));
    }
}

//! Local replies (SPEC "Local replies"): the status, a JSON body
//! `{"error", "detail", "trace_id"}` and extra headers. Details are fixed
//! sentences chosen by the filter: they never echo request content, so
//! secrets and masked values cannot leak through them.

use crate::core::channel::Refusal;
use crate::core::names::{code, header};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    /// Machine-readable code, e.g. `signature_mismatch`.
    pub code: &'static str,
    /// Human sentence.
    pub detail: String,
    pub headers: Vec<(String, String)>,
    /// The body names `code` as a `status` (an outcome such as
    /// `duplicate`), not as an `error`.
    pub outcome: bool,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    detail: &'a str,
    trace_id: &'a str,
}

impl LocalReply {
    pub fn new(status: u32, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            headers: Vec::new(),
            outcome: false,
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The JSON body. Empty for 204, which HTTP forbids a body on
    /// (RFC 9110 §15.3.5).
    pub fn body(&self, trace_id: &str) -> Vec<u8> {
        if self.status == 204 {
            return Vec::new();
        }
        let (error, status) = if self.outcome {
            (None, Some(self.code))
        } else {
            (Some(self.code), None)
        };
        serde_json::to_vec(&Body {
            error,
            status,
            detail: &self.detail,
            trace_id,
        })
        .unwrap_or_default()
    }

    pub fn empty_callback() -> Self {
        Self::new(
            204,
            code::EMPTY_CALLBACK,
            "empty callback acknowledged by the proxy",
        )
    }

    pub fn too_large(limit: u64) -> Self {
        Self::new(
            413,
            code::TOO_LARGE,
            format!("callback body exceeds the channel limit of {limit} bytes"),
        )
    }

    /// A request the filter refuses to route (see
    /// [`crate::core::channel::route`]): under a guard prefix but in no
    /// channel, or a path that reads as different channels.
    pub fn unmatched(why: Refusal) -> Self {
        let detail = match why {
            Refusal::NoChannel => "no callback channel serves this path",
            Refusal::AmbiguousPath => "callback path is ambiguous once normalised",
        };
        Self::new(404, why.as_str(), detail)
    }

    /// A content-encoded body on a channel that masks: the filter cannot
    /// mask what it cannot read, and never forwards it unmasked. RFC 9110
    /// §15.5.16: a 415 about the coding says which codings are accepted.
    pub fn unsupported_encoding() -> Self {
        Self::new(
            415,
            code::UNSUPPORTED_ENCODING,
            "callback body is content-encoded; this channel reads bodies (mask or contract) and accepts only identity (uncompressed) bodies",
        )
        .with_header("accept-encoding", "identity")
    }

    /// A body that breaks its channel's `contract`: `422` naming where
    /// (instance JSON pointers and the failing keywords), never what.
    pub fn contract(violations: &crate::core::contract::Violations) -> Self {
        Self::new(
            422,
            code::CONTRACT,
            format!("callback body does not satisfy the channel contract at {violations}"),
        )
    }

    /// A redelivery of a callback the service already took: not an error,
    /// so the body says `"status": "duplicate"`.
    pub fn duplicate() -> Self {
        let mut reply = Self::new(200, code::DUPLICATE, "duplicate delivery already accepted")
            .with_header(header::DUPLICATE, "true");
        reply.outcome = true;
        reply
    }

    /// A retry while another attempt of the same delivery is in flight:
    /// `409` with `retry-after`, so the provider tries again.
    pub fn in_progress(retry_after_s: u64) -> Self {
        Self::new(
            409,
            code::IN_PROGRESS,
            "an attempt of this delivery is still in flight; retry later",
        )
        .with_header(header::RETRY_AFTER, retry_after_s.to_string())
    }

    /// The fleet state store (`state`) did not answer and
    /// `state.on_unavailable` is `reject`: `503`, so the provider retries.
    pub fn state_unavailable() -> Self {
        Self::new(
            503,
            code::STATE_UNAVAILABLE,
            "the fleet state store is unavailable; retry later",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn body_is_the_spec_json() {
        let r = LocalReply::too_large(10);
        let v: serde_json::Value = serde_json::from_slice(&r.body("ab")).unwrap();
        assert_eq!(v["error"], "too_large");
        assert_eq!(v["trace_id"], "ab");
        assert!(v["detail"].as_str().unwrap().contains("10 bytes"));
        assert_eq!(v.as_object().unwrap().len(), 3);
    }

    #[test]
    fn a_duplicate_is_a_status_not_an_error() {
        let v: serde_json::Value =
            serde_json::from_slice(&LocalReply::duplicate().body("ab")).unwrap();
        assert_eq!(v["status"], "duplicate");
        assert!(v.get("error").is_none());
    }

    #[test]
    fn unmatched_is_a_404_naming_the_reason() {
        for why in Refusal::ALL {
            let r = LocalReply::unmatched(why);
            assert_eq!(r.status, 404);
            let v: serde_json::Value = serde_json::from_slice(&r.body("ab")).unwrap();
            assert_eq!(v["error"], why.as_str());
            assert_eq!(v["trace_id"], "ab");
        }
    }

    #[test]
    fn no_body_on_204() {
        assert!(LocalReply::empty_callback().body("ab").is_empty());
    }
}

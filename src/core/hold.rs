//! Holding a channel request's headers while its body is read, or not.
//!
//! The filter checks a callback on its complete body. By default
//! (`hold_headers: true`) the request headers wait with the body, so the
//! filter can still add `x-verified-signature` and a corrected
//! `content-length` once the body is checked; the proxy must allow that
//! (Envoy `allow_on_headers_stop_iteration: true`). A proxy that cannot
//! (a plain Istio `WasmPlugin`) gets *stream mode* (`hold_headers: false`):
//! the headers go upstream at once and only the body waits. A body that
//! fails its checks is then answered locally and the proxy resets the
//! upstream request, so the service sees headers and an incomplete
//! request, never a complete unchecked one.

use crate::core::headers::Headers;
use crate::core::policy::ChannelPolicy;

/// What the request-headers phase does with a channel request whose body
/// is still to come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyWait {
    /// Pause the headers until the body is checked.
    Hold,
    /// Let the headers go upstream now; hold only the body.
    Stream {
        /// The body may change length (a masked JSON body) and the headers
        /// declare one: remove `content-length` so the proxy forwards the
        /// body chunked instead of with a length that may turn out wrong.
        drop_content_length: bool,
    },
}

/// Decides how to wait for the body of a request on channel `ch`.
///
/// ```
/// use callback_guard::config;
/// use callback_guard::core::headers::Headers;
/// use callback_guard::core::hold::{body_wait, BodyWait};
/// let policy = config::load(br#"{"hold_headers": false, "channels": [{"name": "p",
///     "match": {"path_prefix": "/"}, "mask": {"fields": ["phone"]}}]}"#, &|_| None).unwrap();
/// let headers: Headers = [("content-type", "application/json"), ("content-length", "12")]
///     .into_iter().collect();
/// assert_eq!(body_wait(policy.hold_headers, &policy.channels[0], &headers),
///            BodyWait::Stream { drop_content_length: true });
/// ```
pub fn body_wait(hold_headers: bool, ch: &ChannelPolicy, headers: &Headers) -> BodyWait {
    if hold_headers {
        return BodyWait::Hold;
    }
    // Any body of a masking channel may change: whether it is masked is
    // decided on the body itself (see `Masker::applies`).
    let may_change = ch.mask.is_some();
    BodyWait::Stream {
        drop_content_length: may_change && headers.contains("content-length"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn channel(hold: bool, extra: &str) -> (bool, ChannelPolicy) {
        let doc = format!(
            r#"{{"hold_headers": {hold}, "channels": [{{"name": "a", "match": {{"path_prefix": "/"}}{extra}}}]}}"#
        );
        let mut policy = config::load(doc.as_bytes(), &|_| None).unwrap();
        (policy.hold_headers, policy.channels.remove(0))
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().copied().collect()
    }

    const MASK: &str = r#", "mask": {"fields": ["phone"]}"#;

    #[test]
    fn hold_headers_defaults_to_true() {
        let policy = config::load(br#"{"channels": []}"#, &|_| None).unwrap();
        assert!(policy.hold_headers);
        assert!(config::load(b"", &|_| None).unwrap().hold_headers);
    }

    #[test]
    fn holding_ignores_everything_else() {
        let (hold, ch) = channel(true, MASK);
        let h = headers(&[
            ("content-type", "application/json"),
            ("content-length", "9"),
        ]);
        assert_eq!(body_wait(hold, &ch, &h), BodyWait::Hold);
    }

    #[test]
    fn stream_mode_keeps_the_length_of_a_body_that_cannot_change() {
        let json_with_length = headers(&[
            ("content-type", "application/json"),
            ("content-length", "9"),
        ]);
        // No mask: the body is forwarded byte for byte.
        let (hold, ch) = channel(false, "");
        assert_eq!(
            body_wait(hold, &ch, &json_with_length),
            BodyWait::Stream {
                drop_content_length: false
            }
        );
    }

    #[test]
    fn stream_mode_drops_the_length_of_a_body_masking_may_change() {
        let (hold, ch) = channel(false, MASK);
        // Whatever the content type says: a JSON body is masked anyway.
        for ct in [
            "application/json",
            "application/cloudevents+json; charset=utf-8",
            "text/plain",
        ] {
            let h = headers(&[("content-type", ct), ("content-length", "9")]);
            assert_eq!(
                body_wait(hold, &ch, &h),
                BodyWait::Stream {
                    drop_content_length: true
                },
                "{ct}"
            );
        }
        // Already chunked: no length to drop.
        let chunked = headers(&[
            ("content-type", "application/json"),
            ("transfer-encoding", "chunked"),
        ]);
        assert_eq!(
            body_wait(hold, &ch, &chunked),
            BodyWait::Stream {
                drop_content_length: false
            }
        );
    }

    #[test]
    fn hold_headers_must_be_a_boolean() {
        let err = config::load(br#"{"hold_headers": "no"}"#, &|_| None).unwrap_err();
        assert_eq!(err.path, "hold_headers", "{err}");
    }
}

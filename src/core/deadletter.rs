//! Dead-letter copies of callbacks the upstream failed (`dead_letter`,
//! extension).
//!
//! When the service fails a verified callback that the filter forwarded
//! (5xx, an upstream reset, connect failure or timeout), the filter sends
//! a copy to a sink so operators can inspect and replay it after the
//! provider gives up: an HTTP `POST` of one JSON [`Envelope`] to an Envoy
//! cluster, and/or (with fleet `state`) an `XADD` of the same envelope to a
//! capped Redis Stream through the state store's HTTP front
//! ([`crate::core::state::stream`]). The copy never delays the reply to the provider: the request
//! only queues it, and each worker sends its queue from its timer, at most
//! `max_pending` envelopes waiting and `max_in_flight` calls open; what
//! does not fit is dropped and counted, never retried forever.
//!
//! Memory: to send the body *as forwarded* (masked), a request keeps a
//! copy of it until its response arrives, only on channels of a filter
//! with `dead_letter` and only up to `max_body_bytes` (a larger body is
//! sent without it, `body_omitted: true`). The bound is therefore
//! (callbacks in flight) × `max_body_bytes` per worker, plus
//! `max_pending` queued envelopes.

use crate::core::names::header;
use serde::Serialize;
use std::collections::VecDeque;

/// Layout version of [`Envelope`].
pub const ENVELOPE_VERSION: u32 = 1;

/// `result` label values of `callback_deadletter_total`.
pub const RESULT_SENT: &str = "sent";
pub const RESULT_FAILED: &str = "failed";
pub const RESULT_DROPPED: &str = "dropped";
pub const RESULTS: [&str; 3] = [RESULT_SENT, RESULT_FAILED, RESULT_DROPPED];

/// A compiled `dead_letter` section: one or both sinks, and the bounds
/// they share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterPolicy {
    /// The HTTP sink (`cluster`), if configured.
    pub http: Option<HttpSink>,
    /// The Redis Stream sink (`redis_stream`, through the `state` front),
    /// if configured.
    pub stream: Option<StreamSink>,
    /// Timeout of an HTTP sink call (a stream call uses `state.timeout_ms`).
    pub timeout_ms: u32,
    /// Largest body kept for a copy.
    pub max_body_bytes: usize,
    /// Envelopes waiting per worker.
    pub max_pending: usize,
    /// Sink calls open per worker.
    pub max_in_flight: usize,
}

/// The HTTP sink: a `POST` of the envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSink {
    /// Envoy cluster of the sink.
    pub cluster: String,
    /// `:path` of the POST.
    pub path: String,
    /// `:authority` of the POST.
    pub authority: String,
}

/// The Redis Stream sink: an `XADD <key> MAXLEN ~ <max_len>` through the
/// fleet-state front (see [`crate::core::state::stream`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSink {
    /// The stream's key (under `state.key_prefix`).
    pub key: String,
    /// Approximate cap on the stream's length (Redis trims whole nodes).
    pub max_len: u32,
}

/// Where one queued copy goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Http,
    Stream,
}

impl DeadLetterPolicy {
    /// The configured sinks: each copy is sent to every one of them.
    pub fn sinks(&self) -> impl Iterator<Item = Sink> {
        let http = self.http.as_ref().map(|_| Sink::Http);
        let stream = self.stream.as_ref().map(|_| Sink::Stream);
        http.into_iter().chain(stream)
    }
}

/// What the sink receives, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Envelope<'a> {
    pub version: u32,
    pub channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<&'a str>,
    pub trace_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<&'a str>,
    /// The upstream's status; absent when it never answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    /// `status` (5xx), or Envoy's `response.code_details` for a reset,
    /// connect failure or timeout.
    pub failure: &'a str,
    /// When the failure was seen, ms since the Unix epoch.
    pub time_unix_ms: u64,
    /// The request headers that matter for a replay (`content-type`, the
    /// verified scheme, the admitted priority, `traceparent`, ...).
    pub headers: Vec<(&'a str, &'a str)>,
    /// The body as forwarded (masked), when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<&'a str>,
    /// The body as forwarded, base64, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// The body was larger than `max_body_bytes` and is not in the copy.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub body_omitted: bool,
}

impl Envelope<'_> {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Fills `body`, `body_base64` or `body_omitted` of an envelope.
pub fn body_fields(body: Option<&[u8]>) -> (Option<&str>, Option<String>, bool) {
    use base64::Engine;
    match body {
        None => (None, None, true),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => (Some(text), None, false),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                false,
            ),
        },
    }
}

/// Headers copied into an envelope.
pub const COPIED_HEADERS: [&str; 8] = [
    "content-type",
    "traceparent",
    header::VERIFIED_SIGNATURE,
    header::PRIORITY_ADMITTED,
    header::WEBHOOK_ID,
    header::SVIX_ID,
    header::GITHUB_DELIVERY,
    header::SHOPIFY_WEBHOOK_ID,
];

/// One worker's queue of envelopes and count of open sink calls.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<(Sink, String, Vec<u8>)>,
    in_flight: usize,
}

impl Outbox {
    /// Queues `(channel, envelope)` for `sink`; `false` (dropped) when
    /// `max_pending` are already waiting (all sinks together).
    pub fn push(
        &mut self,
        policy: &DeadLetterPolicy,
        sink: Sink,
        channel: &str,
        envelope: Vec<u8>,
    ) -> bool {
        if self.queue.len() >= policy.max_pending {
            return false;
        }
        self.queue.push_back((sink, channel.to_string(), envelope));
        true
    }

    /// The next envelope to send, if a call may be opened now.
    pub fn next(&mut self, policy: &DeadLetterPolicy) -> Option<(Sink, String, Vec<u8>)> {
        if self.in_flight >= policy.max_in_flight {
            return None;
        }
        let item = self.queue.pop_front()?;
        self.in_flight += 1;
        Some(item)
    }

    /// A call ended (answered, failed or never opened).
    pub fn done(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    pub fn pending(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn policy(max_pending: usize, max_in_flight: usize) -> DeadLetterPolicy {
        DeadLetterPolicy {
            http: Some(HttpSink {
                cluster: "deadletter".into(),
                path: "/dead-letter".into(),
                authority: "deadletter".into(),
            }),
            stream: None,
            timeout_ms: 1000,
            max_body_bytes: 1024,
            max_pending,
            max_in_flight,
        }
    }

    #[test]
    fn the_envelope_is_json_with_the_body_as_forwarded() {
        let (body, body_base64, body_omitted) = body_fields(Some(br#"{"phone":"***"}"#));
        let e = Envelope {
            version: ENVELOPE_VERSION,
            channel: "payments",
            delivery_id: Some("msg_1"),
            trace_id: "0af7651916cd43dd8448eb211c80319c",
            cluster: Some("region-a"),
            status: Some(503),
            failure: "503",
            time_unix_ms: 1_700_000_000_000,
            headers: vec![("content-type", "application/json")],
            body,
            body_base64,
            body_omitted,
        };
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["body"], r#"{"phone":"***"}"#);
        assert_eq!(v["status"], 503);
        assert_eq!(v["headers"][0][0], "content-type");
        assert!(v.get("body_omitted").is_none() && v.get("body_base64").is_none());
        assert_eq!(body_fields(None), (None, None, true));
        assert_eq!(body_fields(Some(&[0xff])).1.as_deref(), Some("/w=="));
    }

    #[test]
    fn the_outbox_is_bounded_both_ways() {
        let p = policy(2, 1);
        let mut o = Outbox::default();
        assert!(o.push(&p, Sink::Http, "a", b"1".to_vec()));
        assert!(o.push(&p, Sink::Stream, "a", b"2".to_vec()));
        assert!(!o.push(&p, Sink::Http, "a", b"3".to_vec()), "max_pending");
        assert_eq!(o.next(&p).map(|(_, _, e)| e), Some(b"1".to_vec()));
        assert_eq!(o.next(&p), None, "max_in_flight");
        o.done();
        assert_eq!(
            o.next(&p).map(|(s, _, e)| (s, e)),
            Some((Sink::Stream, b"2".to_vec()))
        );
        o.done();
        assert_eq!(o.next(&p), None);
        assert_eq!(o.pending(), 0);
    }

    #[test]
    fn every_configured_sink_gets_the_copy() {
        let mut p = policy(2, 1);
        assert_eq!(p.sinks().collect::<Vec<_>>(), [Sink::Http]);
        p.stream = Some(StreamSink {
            key: "cg:deadletter".into(),
            max_len: 10,
        });
        assert_eq!(p.sinks().collect::<Vec<_>>(), [Sink::Http, Sink::Stream]);
        p.http = None;
        assert_eq!(p.sinks().collect::<Vec<_>>(), [Sink::Stream]);
    }
}

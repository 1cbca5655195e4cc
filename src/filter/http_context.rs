//! HTTP context: one per request. It runs the request through the core in
//! three moments (request headers, complete request body, response) and
//! maps each answer to an `Action`, header changes or a local reply.
//!
//! Proxy quirks this relies on:
//! - To add headers after the body was inspected (`x-verified-signature`,
//!   a corrected `content-length`) the headers phase returns `Pause`; Envoy
//!   needs `allow_on_headers_stop_iteration: true` in the wasm filter's
//!   plugin config, or the body callbacks never run (Envoy turns the pause
//!   into StopAllIteration).
//! - Stream mode (`hold_headers: false`, see `core::hold`) is for proxies
//!   without that flag: the headers phase returns `Continue` and the body
//!   phase `Pause` (StopIterationAndBuffer: the body does not go upstream
//!   until the end-of-stream callback returns `Continue`). A local reply
//!   sent after the headers went upstream makes Envoy reset the upstream
//!   request. Request headers cannot be changed any more once they went
//!   upstream, so nothing here tries to.
//! - `body_size` in the body callback is the total buffered so far.
//! - The routing header is written during the headers phase: Envoy re-reads
//!   the route (`cluster_header`) after a header change there.

use super::root_context::Worker;
use crate::config::{ChannelPolicy, EmptyAction, Policy};
use crate::core::admission::Decision;
use crate::core::channel::Route;
use crate::core::headers::Headers;
use crate::core::hold::{self, BodyWait};
use crate::core::metrics::{self, stat_name};
use crate::core::pipeline::{self, BodyAction, BodyInput, Event};
use crate::core::reply::LocalReply;
use crate::core::routing::Observation;
use crate::core::{empty, trace};
use crate::host::{self, SharedData};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

/// Headers a client must never set itself (SPEC "Headers").
const SPOOFABLE: [&str; 3] = [
    "x-verified-signature",
    "x-callback-cluster",
    "x-callback-priority-admitted",
];
const VERIFIED_HEADER: &str = "x-verified-signature";
const PRIORITY_ADMITTED_HEADER: &str = "x-callback-priority-admitted";
const TRACE_ID_HEADER: &str = "x-callback-trace-id";

pub struct Http {
    policy: Option<Rc<Policy>>,
    worker: Rc<Worker>,
    /// Index into `policy.channels` once matched.
    channel: Option<usize>,
    headers: Headers,
    trace_id: String,
    start_ms: u64,
    counted_empty: bool,
    verified: Option<&'static str>,
    cluster: Option<String>,
    delivery_id: Option<String>,
    /// This filter answered the request itself.
    replied: bool,
    /// The request went upstream.
    forwarded: bool,
    response_status: Option<u32>,
    /// Request body bytes buffered so far.
    body_size: usize,
    /// Empty by `x-callback-status`: answer 204 once the body is in.
    empty_reply_pending: bool,
    /// Stream mode: the headers went upstream before the body was checked.
    streamed: bool,
    /// Stream mode: the upstream headers still declare the original
    /// `content-length`, so the body must go out unchanged.
    streamed_length: bool,
}

impl Http {
    pub fn new(policy: Option<Rc<Policy>>, worker: Rc<Worker>) -> Self {
        Self {
            policy,
            worker,
            channel: None,
            headers: Headers::default(),
            trace_id: String::new(),
            start_ms: 0,
            counted_empty: false,
            verified: None,
            cluster: None,
            delivery_id: None,
            replied: false,
            forwarded: false,
            response_status: None,
            body_size: 0,
            empty_reply_pending: false,
            streamed: false,
            streamed_length: false,
        }
    }

    fn channel_policy(&self) -> Option<(Rc<Policy>, usize)> {
        let policy = self.policy.clone()?;
        let index = self.channel?;
        Some((policy, index))
    }

    fn count(&self, name: String, by: u64) {
        self.worker.metrics.borrow_mut().increment(name, by);
    }

    fn count_event(&self, channel: &str, event: Event) {
        let (name, by) = event.stat(channel);
        self.count(name, by);
    }

    fn random_u64(&self) -> u64 {
        self.worker.rng.borrow_mut().next_u64()
    }

    fn reply(&mut self, reply: &LocalReply) -> Action {
        let body = reply.body(&self.trace_id);
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(4 + reply.headers.len());
        if !body.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        if !self.trace_id.is_empty() {
            headers.push((TRACE_ID_HEADER, &self.trace_id));
        }
        if let Some(scheme) = self.verified {
            headers.push((VERIFIED_HEADER, scheme));
        }
        headers.extend(reply.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        host::send_reply(reply.status, &headers, &body);
        self.replied = true;
        Action::Pause
    }

    /// Admission for a channel request; `Some(action)` when it is refused.
    fn admit(&mut self, policy: &Policy) -> Option<Action> {
        let admission = policy.admission.as_ref()?;
        // A repeated or non-ASCII priority is ignored (normal), never guessed.
        let requested = self
            .headers
            .single_token(admission.priority_header())
            .ok()
            .flatten();
        // A property lookup per request only when a rule can use it.
        let identity = admission
            .needs_identity(requested)
            .then(host::peer_spiffe_id)
            .flatten();
        // Shared state unavailable: the rules still apply, the buckets fail
        // open (dropping callbacks because of our own state would lose data).
        let (decision, _store_error) =
            admission.decide_fail_open(&SharedData, requested, identity.as_deref(), self.start_ms);
        let priority = decision.priority();
        self.count(
            stat_name(
                metrics::ADMISSION_TOTAL,
                &[
                    ("priority", priority.as_str()),
                    ("decision", decision.as_str()),
                ],
            ),
            1,
        );
        if let Some(admitted) = decision.admitted() {
            host::set_request_header(PRIORITY_ADMITTED_HEADER, admitted.as_str());
            return None;
        }
        let reply = match decision {
            Decision::Shed { retry_after_s, .. } => {
                LocalReply::new(429, "shed", "callback shed under load; retry later")
                    .with_header("retry-after", retry_after_s.to_string())
            }
            _ => LocalReply::new(
                403,
                "priority_rejected",
                format!(
                    "priority {} is not allowed for this caller",
                    priority.as_str()
                ),
            ),
        };
        Some(self.reply(&reply))
    }

    /// Runs the body checks on the complete body and applies the verdict.
    fn finish(&mut self, body_size: usize) -> Action {
        if self.empty_reply_pending {
            return self.reply(&LocalReply::empty_callback());
        }
        let Some((policy, index)) = self.channel_policy() else {
            return Action::Continue;
        };
        let Some(ch) = policy.channels.get(index) else {
            return Action::Continue;
        };
        let Some(body) = host::request_body(body_size) else {
            // Never forward what we could not check.
            host::log_warn("callback-guard: request body unavailable to the filter");
            return self.reply(&LocalReply::new(
                500,
                "internal",
                "callback body could not be inspected",
            ));
        };
        let input = BodyInput {
            headers: &self.headers,
            body: &body,
            counted_empty: self.counted_empty,
            now_unix_s: host::now_ms() / 1000,
        };
        let verdict = pipeline::inspect_body(ch, &input, &SharedData);
        for event in &verdict.events {
            self.count_event(&ch.name, *event);
        }
        self.verified = verdict.verified;
        match verdict.action {
            BodyAction::Reply(reply) => self.reply(&reply),
            BodyAction::Forward {
                body: new_body,
                verified,
                delivery_id,
            } => {
                if let Some(new_body) = new_body {
                    // A rewritten body under a stale length must not go out
                    // (`core::hold` drops the length whenever masking can
                    // apply, so this is only a guard).
                    let rewritten =
                        !self.streamed_length && host::replace_request_body(body_size, &new_body);
                    if !rewritten {
                        // Never forward unmasked data we promised to mask.
                        return self.reply(&LocalReply::new(
                            500,
                            "internal",
                            "callback body could not be rewritten",
                        ));
                    }
                    if !self.streamed {
                        host::set_request_header("content-length", &new_body.len().to_string());
                    }
                }
                // In stream mode the headers are upstream already: the
                // verdict reaches the caller's response only.
                if let Some(scheme) = verified
                    && !self.streamed
                {
                    host::set_request_header(VERIFIED_HEADER, scheme);
                }
                self.delivery_id = delivery_id;
                self.forward(ch);
                Action::Continue
            }
        }
    }

    fn forward(&mut self, ch: &ChannelPolicy) {
        self.forwarded = true;
        if let Some(cluster) = &self.cluster {
            self.count(
                stat_name(
                    metrics::ROUTED_TOTAL,
                    &[("channel", &ch.name), ("cluster", cluster)],
                ),
                1,
            );
        }
    }

    /// The upstream failed (5xx, reset): count it, tell routing, and let
    /// the provider's retry through dedup.
    fn upstream_failed(&self, ch: &ChannelPolicy) {
        let cluster = self
            .cluster
            .clone()
            .or_else(|| host::property_string(&["xds", "cluster_name"]))
            .unwrap_or_else(|| "unknown".to_string());
        self.count(
            stat_name(
                metrics::UPSTREAM_FAILURES_TOTAL,
                &[("channel", &ch.name), ("cluster", &cluster)],
            ),
            1,
        );
        if let (Some(dedup), Some(id)) = (&ch.dedup, &self.delivery_id) {
            let _ = dedup.forget(&SharedData, &ch.name, id);
        }
    }

    /// Queues this response's latency and outcome for the routing health of
    /// its cluster (the worker sends its feedback in batches).
    fn observe_route(&self, ch: &ChannelPolicy, failed: bool) {
        let (Some(policy), Some(channel)) = (&self.policy, self.channel) else {
            return;
        };
        if let (Some(routing), Some(cluster)) = (&ch.routing, &self.cluster)
            && let Some(index) = routing.cluster_index(cluster)
        {
            let now = host::now_ms();
            let observation = Observation {
                cluster: index,
                latency_ms: now.saturating_sub(self.start_ms),
                failed,
                now_ms: now,
            };
            self.worker.observe_route(policy, channel, observation);
        }
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(policy) = self.policy.clone() else {
            return Action::Continue;
        };
        self.start_ms = host::now_ms();
        self.headers = host::request_headers();

        for name in SPOOFABLE
            .iter()
            .copied()
            .chain(std::iter::once(policy.cluster_header.as_str()))
        {
            if self.headers.contains(name) {
                host::remove_request_header(name);
            }
        }

        let tp = trace::ensure(self.headers.get("traceparent"), || {
            (self.random_u64(), self.random_u64(), self.random_u64())
        });
        if tp.generated {
            host::set_request_header("traceparent", &tp.header);
        }
        self.trace_id = tp.trace_id;

        let path = self.headers.get(":path").unwrap_or("/");
        let authority = self.headers.get(":authority").unwrap_or("");
        let index = match policy.route(path, authority) {
            Route::Channel(index) => index,
            Route::Pass => return Action::Continue,
            Route::Refuse(why) => {
                self.count(
                    stat_name(metrics::UNMATCHED_TOTAL, &[("reason", why.as_str())]),
                    1,
                );
                return self.reply(&LocalReply::unmatched(why));
            }
        };
        let Some(ch) = policy.channels.get(index) else {
            return Action::Continue;
        };
        self.channel = Some(index);
        self.count(
            stat_name(metrics::REQUESTS_TOTAL, &[("channel", &ch.name)]),
            1,
        );

        if let Some(action) = self.admit(&policy) {
            return action;
        }

        if empty::empty_by_header(self.headers.get(empty::STATUS_HEADER)) {
            self.counted_empty = true;
            self.count_event(&ch.name, Event::Empty);
            if ch.empty_action == EmptyAction::Reply {
                if end_of_stream {
                    return self.reply(&LocalReply::empty_callback());
                }
                // Read the (bounded) body first: answering while the caller
                // is still sending makes Envoy close the connection under it,
                // and the caller sees a reset instead of the 204.
                self.empty_reply_pending = true;
            }
        }

        let declared = self
            .headers
            .get("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > ch.max_body_bytes) {
            self.count_event(&ch.name, Event::Rejected("too_large"));
            return self.reply(&LocalReply::too_large(ch.max_body_bytes));
        }

        if let Some(routing) = &ch.routing {
            let random = self.worker.rng.borrow_mut().next_f64();
            // Never fails: without usable shared state it uses the configured weights.
            let weights = self.worker.route_reads.view(&SharedData, self.start_ms);
            let cluster = routing.choose(&weights, &ch.name, self.start_ms, random);
            host::set_request_header(&policy.cluster_header, cluster);
            self.cluster = Some(cluster.to_string());
        }

        if end_of_stream {
            return self.finish(0);
        }
        match hold::body_wait(policy.hold_headers, ch, &self.headers) {
            // Hold the headers until the whole body is in and checked.
            BodyWait::Hold => Action::Pause,
            // Headers upstream now; the body phase holds the body.
            BodyWait::Stream {
                drop_content_length,
            } => {
                if drop_content_length {
                    host::remove_request_header("content-length");
                }
                self.streamed = true;
                self.streamed_length =
                    !drop_content_length && self.headers.contains("content-length");
                Action::Continue
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some((policy, index)) = self.channel_policy() else {
            return Action::Continue;
        };
        if self.replied || self.forwarded {
            return Action::Continue;
        }
        let Some(ch) = policy.channels.get(index) else {
            return Action::Continue;
        };
        self.body_size = body_size;
        if u64::try_from(body_size).unwrap_or(u64::MAX) > ch.max_body_bytes {
            self.count_event(&ch.name, Event::Rejected("too_large"));
            return self.reply(&LocalReply::too_large(ch.max_body_bytes));
        }
        if !end_of_stream {
            // Keep buffering.
            return Action::Pause;
        }
        self.finish(body_size)
    }

    /// Trailers end the request instead of a body callback with
    /// `end_of_stream`: the body is complete now, check it here or it would
    /// be forwarded unchecked.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.channel.is_none() || self.replied || self.forwarded {
            return Action::Continue;
        }
        self.finish(self.body_size)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.replied || self.policy.is_none() {
            return Action::Continue;
        }
        if !self.trace_id.is_empty() {
            host::set_response_header(TRACE_ID_HEADER, &self.trace_id);
        }
        if let Some(scheme) = self.verified {
            host::set_response_header(VERIFIED_HEADER, scheme);
        }
        // The status matters only for callbacks this filter forwarded, or
        // whose headers it let go upstream (stream mode: a cluster that
        // refuses the connection answers before the body is checked).
        if (self.forwarded || self.streamed)
            && let Some((policy, index)) = self.channel_policy()
            && let Some(ch) = policy.channels.get(index)
        {
            let status = host::response_header(":status")
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(0);
            self.response_status = Some(status);
            let failed = status >= 500;
            self.observe_route(ch, failed);
            if failed {
                self.upstream_failed(ch);
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let Some((policy, index)) = self.channel_policy() else {
            return;
        };
        let Some(ch) = policy.channels.get(index) else {
            return;
        };
        if self.forwarded && self.response_status.is_none() {
            // Reset or disconnect before any response headers.
            self.observe_route(ch, true);
            self.upstream_failed(ch);
        }
        let elapsed = host::now_ms().saturating_sub(self.start_ms);
        self.worker.metrics.borrow_mut().record(
            stat_name(metrics::DURATION_MS, &[("channel", &ch.name)]),
            elapsed,
        );
    }
}

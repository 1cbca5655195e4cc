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

use super::worker::Worker;
use crate::core::admission::{self, Decision, Priority};
use crate::core::channel::Route;
use crate::core::deadletter::{self, Envelope};
use crate::core::decision::{self, DecisionRecord, LogLevel, Verdict};
use crate::core::dedup::DeliveryIdSource;
use crate::core::headers::Headers;
use crate::core::hold::{self, BodyWait};
use crate::core::metrics::stat_name;
use crate::core::names::{code, header, metric as metrics};
use crate::core::pipeline::{self, BodyAction, BodyInput, Event, PendingAdmission};
use crate::core::policy::{ChannelPolicy, Policy};
use crate::core::reply::LocalReply;
use crate::core::routing::Observation;
use crate::core::{empty, trace};
use crate::host::{self, SharedData};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

/// Headers a client must never set itself (SPEC "Headers").
const SPOOFABLE: [&str; 3] = header::SET_BY_FILTER;
const VERIFIED_HEADER: &str = header::VERIFIED_SIGNATURE;
const PRIORITY_ADMITTED_HEADER: &str = header::PRIORITY_ADMITTED;
const TRACE_ID_HEADER: &str = header::TRACE_ID;

pub struct Http {
    policy: Option<Rc<Policy>>,
    worker: Rc<Worker>,
    /// Index into `policy.channels` once matched.
    channel: Option<usize>,
    headers: Headers,
    trace_id: String,
    start_ms: u64,
    /// `x-callback-status: 204`: empty by the headers (decided with the
    /// body, after the signature).
    empty_by_header: bool,
    verified: Option<&'static str>,
    cluster: Option<String>,
    dedup_key: Option<String>,
    /// This filter answered the request itself.
    replied: bool,
    /// The request went upstream.
    forwarded: bool,
    response_status: Option<u32>,
    /// Request body bytes buffered so far.
    body_size: usize,
    /// Stream mode: the headers went upstream before the body was checked.
    streamed: bool,
    /// Stream mode: the upstream headers still declare the original
    /// `content-length`, so the body must go out unchanged.
    streamed_length: bool,
    /// Signed channel: the rules admitted the request at its headers; the
    /// bucket draw happens once the signature verified.
    pending_admission: Option<Decision>,
    /// The provider's delivery id (for the decision record).
    delivery_id: Option<String>,
    /// The priority admission granted (for the decision record).
    priority_admitted: Option<Priority>,
    /// The body as forwarded, kept for a dead-letter copy (only with
    /// `dead_letter`, and only up to its `max_body_bytes`).
    forwarded_body: Option<Vec<u8>>,
    /// The Rego policy's `reason` (reply body, decision record).
    admission_reason: Option<String>,
    /// When the complete request went upstream: routing latency counts
    /// from here (a caller's slow upload is not the cluster's latency).
    upstream_start_ms: u64,
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
            empty_by_header: false,
            verified: None,
            cluster: None,
            dedup_key: None,
            replied: false,
            forwarded: false,
            response_status: None,
            body_size: 0,
            streamed: false,
            streamed_length: false,
            pending_admission: None,
            delivery_id: None,
            priority_admitted: None,
            forwarded_body: None,
            admission_reason: None,
            upstream_start_ms: 0,
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
        self.record(Verdict::of_reply(reply.status), Some(reply));
        Action::Pause
    }

    /// Writes the decision record for the access log and, for a refusal,
    /// a (rate-limited) log line.
    fn record(&self, verdict: Verdict, reply: Option<&LocalReply>) {
        let Some((policy, index)) = self.channel_policy() else {
            return;
        };
        let Some(ch) = policy.channels.get(index) else {
            return;
        };
        let record = DecisionRecord {
            channel: &ch.name,
            verdict,
            reason: reply.map(|r| r.code),
            status: reply.map(|r| r.status),
            scheme: self.verified,
            delivery_id: self.delivery_id.as_deref(),
            cluster: self.cluster.as_deref(),
            priority: self.priority_admitted.map(Priority::as_str),
            admission_reason: self.admission_reason.as_deref(),
            trace_id: &self.trace_id,
        };
        host::set_filter_state(decision::FILTER_STATE_NAME, &record.to_json());
        let level = policy.refusal_log.level;
        if verdict == Verdict::Refused
            && level != LogLevel::Off
            && let Some(dropped) = self.worker.log_budget.borrow_mut().take(host::now_ms())
        {
            let mut line = record.log_line();
            if dropped > 0 {
                line.push_str(&format!(" ({dropped} earlier refusal lines dropped)"));
            }
            host::log_at(level, &line);
        }
    }

    /// Admission for a channel request; `Some(action)` when it is refused.
    /// The rules decide here (their verdict needs no body, and the admitted
    /// priority must be on the headers before they may leave in stream
    /// mode); on a signed channel the bucket draw waits until the signature
    /// verified (`pending_admission`), so forged floods cannot spend the
    /// tokens of verified callbacks.
    fn admit(&mut self, policy: &Policy, ch: &ChannelPolicy) -> Option<Action> {
        let signed = ch.signature.is_some();
        let Some(admission) = policy.admission.as_ref() else {
            // No admission: only the channel's own limit, if any.
            ch.limit.as_ref()?;
            let classified = Decision::Admitted(Priority::Normal);
            if signed {
                self.pending_admission = Some(classified);
                return None;
            }
            return self.draw(policy, ch, classified);
        };
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
        #[cfg(feature = "rego")]
        let classified = match self.policy_classify(admission, requested) {
            Some((decision, reason)) => {
                self.admission_reason = reason;
                decision
            }
            None => admission.classify(requested, identity.as_deref()),
        };
        #[cfg(not(feature = "rego"))]
        let classified = admission.classify(requested, identity.as_deref());
        if let Some(admitted) = classified.admitted() {
            host::set_request_header(PRIORITY_ADMITTED_HEADER, admitted.as_str());
            self.priority_admitted = Some(admitted);
            if signed {
                self.pending_admission = Some(classified);
                return None;
            }
        }
        self.draw(policy, ch, classified)
    }

    /// The bucket step at the request headers (unsigned channels).
    fn draw(
        &mut self,
        policy: &Policy,
        ch: &ChannelPolicy,
        classified: Decision,
    ) -> Option<Action> {
        // Shared state unavailable: the rules still apply, the buckets fail
        // open (dropping callbacks because of our own state would lose data).
        let (decision, _store_error) = admission::draw_all(
            policy.admission.as_ref(),
            ch.limit.as_ref(),
            &SharedData,
            classified,
            self.start_ms,
        );
        self.count(pipeline::admission_stat(&ch.name, decision), 1);
        let mut refusal = decision.refusal()?;
        if let (Decision::Denied(_), Some(reason)) = (decision, &self.admission_reason) {
            refusal.detail = format!("{}: {reason}", refusal.detail);
        }
        Some(self.reply(&refusal))
    }

    /// The Rego policy's verdict (`admission.policy`), when it applies to
    /// the requested priority; `None` leaves the request to the rules.
    #[cfg(feature = "rego")]
    fn policy_classify(
        &self,
        admission: &crate::core::admission::AdmissionPolicy,
        requested: Option<&str>,
    ) -> Option<(Decision, Option<String>)> {
        use crate::core::admission::{principal, rego};
        let policy = admission
            .rego()
            .filter(|p| p.applies_to(Priority::from_header(requested)))?;
        let (_, index) = self.channel_policy()?;
        let channel = self
            .policy
            .as_ref()
            .and_then(|p| p.channels.get(index))
            .map(|c| c.name.clone())
            .unwrap_or_default();
        let peer = host::peer_spiffe_id();
        let identity = peer.as_deref().and_then(principal::spiffe_id);
        let input = rego::PolicyInput {
            requested,
            identity,
            channel: &channel,
            method: self.headers.get(":method").unwrap_or(""),
            path: self.headers.get(":path").unwrap_or(""),
            host: self.headers.get(":authority").unwrap_or(""),
            headers: &self.headers,
            scheme: None,
            delivery_id: None,
        };
        let outcome = rego::classify(admission, policy, &input);
        self.count(outcome.stat(policy), 1);
        if let Some(error) = &outcome.error
            && self
                .worker
                .log_budget
                .borrow_mut()
                .take(host::now_ms())
                .is_some()
        {
            host::log_warn(&format!(
                "callback-guard: admission policy failed channel={channel}: {}",
                error.0
            ));
        }
        Some((outcome.decision, outcome.reason))
    }

    /// Runs the body checks on the complete body and applies the verdict.
    fn finish(&mut self, body_size: usize) -> Action {
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
        self.delivery_id = delivery_id_of(ch, &self.headers, &body);
        let input = BodyInput {
            headers: &self.headers,
            body: &body,
            empty_by_header: self.empty_by_header,
            now_unix_s: host::now_ms() / 1000,
            admission: self.pending_admission.map(|decision| PendingAdmission {
                admission: policy.admission.as_ref(),
                channel: ch.limit.as_ref(),
                decision,
                now_ms: host::now_ms(),
            }),
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
                dedup_key,
            } => {
                // `resign` (hold mode only, checked at load): the provider's
                // signature headers go, the mesh signature of exactly the
                // bytes forwarded comes.
                if let (Some(resigner), Some(verifier), false) =
                    (&ch.resign, &ch.signature, self.streamed)
                {
                    let forwarded = new_body.as_deref().unwrap_or(&body);
                    let id = self
                        .delivery_id
                        .clone()
                        .unwrap_or_else(|| format!("msg_{}", self.trace_id));
                    for name in verifier.signature_headers() {
                        host::remove_request_header(name);
                    }
                    for (name, value) in resigner.headers(&id, host::now_ms() / 1000, forwarded) {
                        host::set_request_header(name, &value);
                    }
                }
                if let Some(dead_letter) = &policy.dead_letter {
                    let forwarded = new_body.as_deref().unwrap_or(&body);
                    if forwarded.len() <= dead_letter.max_body_bytes {
                        self.forwarded_body = Some(forwarded.to_vec());
                    }
                }
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
                self.dedup_key = dedup_key;
                self.forward(ch);
                Action::Continue
            }
        }
    }

    fn forward(&mut self, ch: &ChannelPolicy) {
        self.forwarded = true;
        self.upstream_start_ms = host::now_ms();
        self.record(Verdict::Forwarded, None);
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

    /// The upstream failed (5xx, reset, timeout): count it, let the
    /// provider's retry through dedup, and queue a dead-letter copy of a
    /// callback the filter forwarded.
    fn upstream_failed(&self, ch: &ChannelPolicy, status: Option<u32>, failure: &str) {
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
        self.forget_delivery(ch);
        if let (Some(policy), true) = (&self.policy, self.forwarded)
            && let Some(dead_letter) = &policy.dead_letter
        {
            let mut headers: Vec<(&str, &str)> = deadletter::COPIED_HEADERS
                .iter()
                .filter_map(|name| self.headers.get(name).map(|v| (*name, v)))
                .collect();
            if let Some(scheme) = self.verified {
                headers.push((VERIFIED_HEADER, scheme));
            }
            if let Some(priority) = self.priority_admitted {
                headers.push((PRIORITY_ADMITTED_HEADER, priority.as_str()));
            }
            let (body, body_base64, body_omitted) =
                deadletter::body_fields(self.forwarded_body.as_deref());
            let envelope = Envelope {
                version: deadletter::ENVELOPE_VERSION,
                channel: &ch.name,
                delivery_id: self.delivery_id.as_deref(),
                trace_id: &self.trace_id,
                cluster: Some(&cluster),
                status,
                failure,
                time_unix_ms: host::now_ms(),
                headers,
                body,
                body_base64,
                body_omitted,
            };
            self.worker
                .dead_letter(dead_letter, &ch.name, envelope.to_json());
        }
    }

    /// The upstream took the delivery (2xx): a retry is a duplicate now.
    fn delivered(&self, ch: &ChannelPolicy) {
        if let (Some(dedup), Some(key)) = (&ch.dedup, &self.dedup_key) {
            let _ = dedup.delivered(&SharedData, &ch.name, key, host::now_ms() / 1000);
        }
    }

    /// Lets the provider's retry of this delivery through dedup.
    fn forget_delivery(&self, ch: &ChannelPolicy) {
        if let (Some(dedup), Some(key)) = (&ch.dedup, &self.dedup_key) {
            let _ = dedup.forget(&SharedData, &ch.name, key);
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
                latency_ms: now.saturating_sub(self.upstream_start_ms),
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
        // A body-less request with a method callbacks do not use (a GET
        // verification handshake) is not a callback: it passes through.
        let method = self.headers.get(":method").unwrap_or("");
        if !ch.methods.is_callback(method, !end_of_stream) {
            return Action::Continue;
        }
        self.channel = Some(index);
        self.delivery_id = delivery_id_of(ch, &self.headers, &[]);
        self.count(
            stat_name(metrics::REQUESTS_TOTAL, &[("channel", &ch.name)]),
            1,
        );

        if let Some(action) = self.admit(&policy, ch) {
            return action;
        }

        // Decided with the body (after the signature, on a signed channel):
        // the body is read first anyway, since answering while the caller
        // is still sending makes Envoy close the connection under it.
        self.empty_by_header = empty::empty_by_header(self.headers.get(header::STATUS));

        let declared = self
            .headers
            .get("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > ch.max_body_bytes) {
            self.count_event(&ch.name, Event::Rejected(code::TOO_LARGE));
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
                self.upstream_start_ms = self.start_ms;
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
            self.count_event(&ch.name, Event::Rejected(code::TOO_LARGE));
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
                self.upstream_failed(ch, Some(status), &status.to_string());
            } else if (200..300).contains(&status) {
                self.delivered(ch);
            } else {
                // Not delivered: the provider retries a non-2xx.
                self.forget_delivery(ch);
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
            // No response headers: Envoy answers the caller itself when the
            // upstream fails (503/504, seen above), so this is mostly the
            // caller hanging up. Only an upstream cause counts against the
            // cluster; either way the provider got no answer and will
            // retry, so dedup lets that retry through.
            let details = host::property_string(&["response", "code_details"]);
            if let Some(details) = details.as_deref().filter(|d| upstream_caused(d)) {
                self.observe_route(ch, true);
                self.upstream_failed(ch, None, details);
            } else {
                self.forget_delivery(ch);
            }
        }
        let elapsed = host::now_ms().saturating_sub(self.start_ms);
        self.worker.metrics.borrow_mut().record(
            stat_name(metrics::DURATION_MS, &[("channel", &ch.name)]),
            elapsed,
        );
    }
}

/// Whether Envoy's `response.code_details` of a stream that ended without
/// response headers names an upstream cause (`upstream_reset_*`,
/// `upstream_response_timeout`, ...) rather than the caller
/// (`downstream_remote_disconnect`, ...).
fn upstream_caused(details: &str) -> bool {
    details.starts_with("upstream")
}

/// The provider's delivery id of a channel request, for the decision
/// record: where dedup reads it, else where the scheme (or the fallback
/// header list) puts it. Always one visible-ASCII token.
fn delivery_id_of(ch: &ChannelPolicy, headers: &Headers, body: &[u8]) -> Option<String> {
    match &ch.dedup {
        Some(dedup) => dedup.delivery_id(headers, body),
        None => DeliveryIdSource::for_scheme(ch.signature.as_ref().map(|v| v.scheme_kind()))
            .delivery_id(headers, body),
    }
}

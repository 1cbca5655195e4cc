//! One worker thread's state, shared by its root context and every HTTP
//! context it creates: the metric registry, the random source, the routing
//! read cache and feedback batch, the refusal-log budget and the
//! dead-letter outbox. `root` and `http` both depend on it; it depends on
//! neither.

use super::state::StoreHealth;
use crate::core::deadletter::{self, DeadLetterPolicy, Outbox, Sink};
use crate::core::decision::{DEFAULT_LOG_PER_SECOND, LogBudget};
use crate::core::metrics::stat_name;
use crate::core::names::label::{CHANNEL, RESULT};
use crate::core::names::metric;
use crate::core::policy::Policy;
use crate::core::request::store::LocalLeases;
use crate::core::rng::SplitMix64;
use crate::core::routing::{self, Observation};
use crate::core::shared::ReadCache;
use crate::core::state::lease::Lease;
use crate::core::state::{ErrorLog, StatePolicy, stream};
use crate::host;
use std::cell::RefCell;
use std::collections::HashMap;

/// How long a worker reuses its read of a channel's routing weights, and
/// how often it sends its batched routing feedback to shared data.
pub const ROUTE_REFRESH_MS: u64 = 100;
/// A worker flushes its routing feedback early once this many responses
/// are waiting.
const ROUTE_BATCH: usize = 16;

/// State of one worker's VM that every request of that worker uses.
pub struct Worker {
    pub metrics: RefCell<host::Metrics>,
    pub rng: RefCell<SplitMix64>,
    /// Routing weights read from shared data, reused for up to
    /// `ROUTE_REFRESH_MS` (one host read per channel per 100 ms instead of
    /// one per request).
    pub route_reads: ReadCache,
    /// Responses observed since the last flush: (channel index, observation).
    route_feedback: RefCell<Vec<(usize, Observation)>>,
    /// Refusal log lines this worker may still write (`refusal_log`).
    pub log_budget: RefCell<LogBudget>,
    /// Dead-letter copies waiting to be sent, and the calls open.
    outbox: RefCell<Outbox>,
    /// Open dead-letter calls: token → (channel, sink) (for the result
    /// metric and to read a stream answer).
    calls: RefCell<HashMap<u32, (String, Sink)>>,
    /// At most one dead-letter failure log line per 10 s.
    dead_letter_log: RefCell<ErrorLog>,
    /// The fleet store's breaker and error-log budget (`state`).
    pub state_health: StoreHealth,
    /// Leased tokens of each channel's fleet-wide `limits` (`state`), by
    /// channel name.
    pub leases: RefCell<HashMap<String, Lease>>,
    /// Leased draws of this Envoy's buckets (local state).
    pub local_leases: RefCell<LocalLeases>,
}

impl Worker {
    /// Queues a dead-letter copy; it is sent on the next tick, never while
    /// the provider waits for its answer.
    /// With two sinks, each gets its own copy (and its own count).
    pub fn dead_letter(&self, policy: &DeadLetterPolicy, channel: &str, envelope: Vec<u8>) {
        for sink in policy.sinks() {
            if !self
                .outbox
                .borrow_mut()
                .push(policy, sink, channel, envelope.clone())
            {
                self.count_dead_letter(channel, deadletter::RESULT_DROPPED);
                self.log_dead_letter(&format!(
                    "dead-letter copy of a {channel} callback dropped: the queue is full"
                ));
            }
        }
    }

    /// A warning, at most one line per 10 s per worker (a dead sink fails
    /// every copy).
    fn log_dead_letter(&self, message: &str) {
        if let Some(suppressed) = self.dead_letter_log.borrow_mut().admit(host::now_ms()) {
            host::log_warn(&format!(
                "callback-guard: {message} ({suppressed} more dead-letter warnings since the \
                 last line)"
            ));
        }
    }

    fn count_dead_letter(&self, channel: &str, result: &str) {
        self.metrics.borrow_mut().increment_name(
            &stat_name(
                metric::DEADLETTER_TOTAL,
                &[(CHANNEL, channel), (RESULT, result)],
            ),
            1,
        );
    }

    /// Opens sink calls for queued copies (from the root context's timer,
    /// so the answers come back to the root, which outlives requests).
    /// `state`: the fleet store a stream sink writes through.
    pub fn send_dead_letters(&self, policy: &DeadLetterPolicy, state: Option<&StatePolicy>) {
        loop {
            let Some((sink, channel, envelope)) = self.outbox.borrow_mut().next(policy) else {
                return;
            };
            let sent = match sink {
                Sink::Http => policy.http.as_ref().and_then(|http| {
                    host::dispatch_post(
                        &http.cluster,
                        &http.path,
                        &http.authority,
                        &envelope,
                        policy.timeout_ms,
                    )
                }),
                Sink::Stream => self.send_stream(policy, state, &channel, &envelope),
            };
            match sent {
                Some(token) => {
                    self.calls.borrow_mut().insert(token, (channel, sink));
                }
                None => {
                    self.outbox.borrow_mut().done();
                    self.count_dead_letter(&channel, deadletter::RESULT_FAILED);
                    self.log_dead_letter(&format!(
                        "dead-letter copy of a {channel} callback could not be sent ({})",
                        sink_name(policy, state, sink)
                    ));
                }
            }
        }
    }

    fn send_stream(
        &self,
        policy: &DeadLetterPolicy,
        state: Option<&StatePolicy>,
        channel: &str,
        envelope: &[u8],
    ) -> Option<u32> {
        let (state, sink) = (state?, policy.stream.as_ref()?);
        let request = stream::xadd(state, sink, envelope)?;
        if request.body_dropped {
            self.log_dead_letter(&format!(
                "dead-letter copy of a {channel} callback sent to stream {} without its body \
                 (longer than webdis takes in a path)",
                sink.key
            ));
        }
        let headers: Vec<(&str, &str)> = request
            .http
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        host::dispatch_call(&state.cluster, &headers, None, state.timeout_ms)
    }

    /// A sink call ended (`status` 0: no answer): an HTTP sink's 2xx, or a
    /// stream's entry id, is `sent`; anything else `failed`, never retried.
    pub fn dead_letter_answered(
        &self,
        token: u32,
        status: u32,
        body_size: usize,
        policy: Option<&DeadLetterPolicy>,
        state: Option<&StatePolicy>,
    ) {
        let Some((channel, sink)) = self.calls.borrow_mut().remove(&token) else {
            return;
        };
        self.outbox.borrow_mut().done();
        let failure = match (sink, state) {
            (Sink::Http, _) => {
                (!(200..300).contains(&status)).then(|| format!("answered {status}"))
            }
            (Sink::Stream, Some(state)) => {
                let body = host::call_response_body(body_size, 4096);
                stream::xadd_answer(state.protocol, status, &body)
                    .err()
                    .map(|e| e.reason())
            }
            (Sink::Stream, None) => Some("no state store".into()),
        };
        let result = match failure {
            None => deadletter::RESULT_SENT,
            Some(why) => {
                let to = policy.map_or_else(String::new, |p| sink_name(p, state, sink));
                self.log_dead_letter(&format!(
                    "dead-letter copy of a {channel} callback failed ({to}): {why}"
                ));
                deadletter::RESULT_FAILED
            }
        };
        self.count_dead_letter(&channel, result);
    }

    /// Queues one response's routing feedback; flushes when the batch is full.
    pub fn observe_route(&self, policy: &Policy, channel: usize, observation: Observation) {
        let full = {
            let mut pending = self.route_feedback.borrow_mut();
            pending.push((channel, observation));
            pending.len() >= ROUTE_BATCH
        };
        if full {
            self.flush_routes(policy);
        }
    }

    /// Applies the queued feedback, one compare-and-swap per channel.
    pub fn flush_routes(&self, policy: &Policy) {
        let pending = std::mem::take(&mut *self.route_feedback.borrow_mut());
        if pending.is_empty() {
            return;
        }
        for (index, ch) in policy.channels.iter().enumerate() {
            let Some(routing) = &ch.routing else { continue };
            let batch: Vec<Observation> = pending
                .iter()
                .filter(|(c, _)| *c == index)
                .map(|(_, o)| *o)
                .collect();
            if batch.is_empty() {
                continue;
            }
            // A lost update only delays the feedback; never fail for it.
            let _ = routing.observe_batch(&host::SharedData, &ch.name, &batch);
            self.route_reads.invalidate(&routing::state_key(&ch.name));
        }
    }
}

impl Worker {
    pub fn new() -> Self {
        Self {
            metrics: RefCell::new(host::Metrics::default()),
            rng: RefCell::new(SplitMix64::new(host::random_seed())),
            route_reads: ReadCache::new(ROUTE_REFRESH_MS),
            route_feedback: RefCell::new(Vec::new()),
            log_budget: RefCell::new(LogBudget::new(DEFAULT_LOG_PER_SECOND)),
            outbox: RefCell::new(Outbox::default()),
            calls: RefCell::new(HashMap::new()),
            dead_letter_log: RefCell::new(ErrorLog::default()),
            state_health: StoreHealth::default(),
            leases: RefCell::new(HashMap::new()),
            local_leases: RefCell::new(LocalLeases::default()),
        }
    }
}

/// Where a copy went, for logs.
fn sink_name(policy: &DeadLetterPolicy, state: Option<&StatePolicy>, sink: Sink) -> String {
    match sink {
        Sink::Http => policy
            .http
            .as_ref()
            .map_or_else(String::new, |h| format!("HTTP sink cluster {}", h.cluster)),
        Sink::Stream => format!(
            "stream {} via cluster {}",
            policy.stream.as_ref().map_or("", |s| s.key.as_str()),
            state.map_or("", |s| s.cluster.as_str())
        ),
    }
}

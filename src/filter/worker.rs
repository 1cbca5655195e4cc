//! One worker thread's state, shared by its root context and every HTTP
//! context it creates: the metric registry, the random source, the routing
//! read cache and feedback batch, the refusal-log budget and the
//! dead-letter outbox. `root` and `http` both depend on it; it depends on
//! neither.

use super::state::StoreHealth;
use crate::core::deadletter::{self, DeadLetterPolicy, Outbox};
use crate::core::decision::{DEFAULT_LOG_PER_SECOND, LogBudget};
use crate::core::metrics::stat_name;
use crate::core::names::label::{CHANNEL, RESULT};
use crate::core::names::metric;
use crate::core::policy::Policy;
use crate::core::rng::SplitMix64;
use crate::core::routing::{self, Observation};
use crate::core::shared::ReadCache;
use crate::core::state::lease::Lease;
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
    /// Open dead-letter calls: token → channel (for the result metric).
    calls: RefCell<HashMap<u32, String>>,
    /// The fleet store's breaker and error-log budget (`state`).
    pub state_health: StoreHealth,
    /// Leased tokens of each channel's fleet-wide `limits` (`state`), by
    /// channel name.
    pub leases: RefCell<HashMap<String, Lease>>,
}

impl Worker {
    /// Queues a dead-letter copy; it is sent on the next tick, never while
    /// the provider waits for its answer.
    pub fn dead_letter(&self, policy: &DeadLetterPolicy, channel: &str, envelope: Vec<u8>) {
        if !self.outbox.borrow_mut().push(policy, channel, envelope) {
            self.count_dead_letter(channel, deadletter::RESULT_DROPPED);
            host::log_warn(&format!(
                "callback-guard: dead-letter copy of a {channel} callback dropped: the queue is full"
            ));
        }
    }

    fn count_dead_letter(&self, channel: &str, result: &str) {
        self.metrics.borrow_mut().increment(
            stat_name(
                metric::DEADLETTER_TOTAL,
                &[(CHANNEL, channel), (RESULT, result)],
            ),
            1,
        );
    }

    /// Opens sink calls for queued copies (from the root context's timer,
    /// so the answers come back to the root, which outlives requests).
    pub fn send_dead_letters(&self, policy: &DeadLetterPolicy) {
        loop {
            let Some((channel, envelope)) = self.outbox.borrow_mut().next(policy) else {
                return;
            };
            match host::dispatch_post(
                &policy.cluster,
                &policy.path,
                &policy.authority,
                &envelope,
                policy.timeout_ms,
            ) {
                Some(token) => {
                    self.calls.borrow_mut().insert(token, channel);
                }
                None => {
                    self.outbox.borrow_mut().done();
                    self.count_dead_letter(&channel, deadletter::RESULT_FAILED);
                    host::log_warn(&format!(
                        "callback-guard: dead-letter copy of a {channel} callback could not be \
                         sent to cluster {}",
                        policy.cluster
                    ));
                }
            }
        }
    }

    /// A sink call ended: 2xx is `sent`, anything else `failed`.
    pub fn dead_letter_answered(&self, token: u32, status: u32) {
        let Some(channel) = self.calls.borrow_mut().remove(&token) else {
            return;
        };
        self.outbox.borrow_mut().done();
        let result = if (200..300).contains(&status) {
            deadletter::RESULT_SENT
        } else {
            host::log_warn(&format!(
                "callback-guard: dead-letter sink answered {status} for a {channel} callback"
            ));
            deadletter::RESULT_FAILED
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
            state_health: StoreHealth::default(),
            leases: RefCell::new(HashMap::new()),
        }
    }
}

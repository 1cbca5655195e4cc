//! Root context: loads the configuration (refusing a bad one), owns the
//! per-worker metric registry and random source, and creates the HTTP
//! contexts.

use super::http_context::Http;
use crate::config::{self, Policy};
use crate::core::channel::Refusal;
use crate::core::decision::{DEFAULT_LOG_PER_SECOND, LogBudget};
use crate::core::metrics::{self, stat_name};
use crate::core::rng::SplitMix64;
use crate::core::routing::{self, Observation};
use crate::core::shared::{self, ReadCache};
use crate::host;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::rc::Rc;

/// How long a worker reuses its read of a channel's routing weights, and
/// how often it sends its batched routing feedback to shared data.
const ROUTE_REFRESH_MS: u64 = 100;
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
}

impl Worker {
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

pub struct Root {
    policy: Option<Rc<Policy>>,
    worker: Rc<Worker>,
}

impl Root {
    pub fn new() -> Self {
        Self {
            policy: None,
            worker: Rc::new(Worker {
                metrics: RefCell::new(host::Metrics::default()),
                rng: RefCell::new(SplitMix64::new(host::random_seed())),
                route_reads: ReadCache::new(ROUTE_REFRESH_MS),
                route_feedback: RefCell::new(Vec::new()),
                log_budget: RefCell::new(LogBudget::new(DEFAULT_LOG_PER_SECOND)),
            }),
        }
    }

    /// Defines each channel's counters at zero so they show before the
    /// first event.
    fn declare_metrics(&self, policy: &Policy) {
        let mut m = self.worker.metrics.borrow_mut();
        for why in Refusal::ALL {
            m.declare_counter(stat_name(
                metrics::UNMATCHED_TOTAL,
                &[("reason", why.as_str())],
            ));
        }
        if policy.admission.is_some() {
            for priority in ["high", "normal", "low"] {
                for decision in ["admitted", "demoted", "denied", "shed"] {
                    m.declare_counter(stat_name(
                        metrics::ADMISSION_TOTAL,
                        &[("priority", priority), ("decision", decision)],
                    ));
                }
            }
        }
        #[cfg(feature = "rego")]
        if let Some(rego) = policy.admission.as_ref().and_then(|a| a.rego()) {
            use crate::core::admission::rego::SOURCES;
            for reason in rego.reason_labels() {
                for decision in SOURCES {
                    m.declare_counter(stat_name(
                        metrics::ADMISSION_POLICY_TOTAL,
                        &[("decision", decision), ("reason", reason)],
                    ));
                }
            }
        }
        for ch in &policy.channels {
            let c = ("channel", ch.name.as_str());
            for base in [metrics::REQUESTS_TOTAL, metrics::EMPTY_TOTAL] {
                m.declare_counter(stat_name(base, &[c]));
            }
            let encoding = ch
                .mask
                .is_some()
                .then_some(metrics::REJECTED_UNSUPPORTED_ENCODING);
            for reason in ["too_large", "bad_json"].into_iter().chain(encoding) {
                m.declare_counter(stat_name(metrics::REJECTED_TOTAL, &[c, ("reason", reason)]));
            }
            if ch.signature.is_some() {
                m.declare_counter(stat_name(metrics::SIGNATURE_VERIFIED_TOTAL, &[c]));
                for reason in ["missing", "malformed", "mismatch", "expired"] {
                    m.declare_counter(stat_name(
                        metrics::SIGNATURE_FAILED_TOTAL,
                        &[c, ("reason", reason)],
                    ));
                }
            }
            if ch.dedup.is_some() {
                m.declare_counter(stat_name(metrics::DUPLICATES_TOTAL, &[c]));
                m.declare_counter(stat_name(
                    metrics::REJECTED_TOTAL,
                    &[c, ("reason", metrics::REJECTED_IN_PROGRESS)],
                ));
                if ch.signature.is_none() {
                    m.declare_counter(stat_name(
                        metrics::REJECTED_TOTAL,
                        &[c, ("reason", metrics::REJECTED_BAD_DELIVERY_ID)],
                    ));
                }
            }
            if ch.mask.is_some() {
                m.declare_counter(stat_name(metrics::MASKED_FIELDS_TOTAL, &[c]));
            }
            if let Some(routing) = &ch.routing {
                for cluster in routing.clusters() {
                    let labels = [c, ("cluster", cluster)];
                    m.declare_counter(stat_name(metrics::ROUTED_TOTAL, &labels));
                    m.declare_counter(stat_name(metrics::UPSTREAM_FAILURES_TOTAL, &labels));
                }
            }
        }
    }
}

/// Creates the shared-data keys request-time updates compare-and-swap on,
/// before traffic arrives (the host cannot CAS a key that does not exist).
fn create_shared_keys(policy: &Policy) {
    let mut keys = Vec::new();
    if policy.admission.is_some() {
        keys.push(crate::core::admission::bucket::STATE_KEY.to_string());
    }
    for ch in &policy.channels {
        if ch.routing.is_some() {
            keys.push(routing::state_key(&ch.name));
        }
    }
    for key in keys {
        if let Err(e) = shared::create_if_absent(&host::SharedData, &key) {
            host::log_warn(&format!(
                "callback-guard: cannot create shared key {key}: {e:?}"
            ));
        }
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = host::plugin_configuration();
        match config::load(&raw, &|name| host::env_var(name)) {
            Ok(policy) => {
                self.declare_metrics(&policy);
                *self.worker.log_budget.borrow_mut() =
                    LogBudget::new(policy.refusal_log.per_second);
                create_shared_keys(&policy);
                if policy.channels.iter().any(|c| c.routing.is_some()) {
                    host::set_tick_period_ms(ROUTE_REFRESH_MS);
                }
                host::log_info(&format!(
                    "callback-guard: configuration loaded, {} channel(s)",
                    policy.channels.len()
                ));
                self.policy = Some(Rc::new(policy));
                true
            }
            Err(err) => {
                // The one line that tells the operator what to fix; the
                // proxy keeps the previous configuration (or refuses this one).
                host::log_error(&format!("callback-guard: invalid configuration: {err}"));
                false
            }
        }
    }

    /// Sends the worker's batched routing feedback.
    fn on_tick(&mut self) {
        if let Some(policy) = &self.policy {
            self.worker.flush_routes(policy);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(
            self.policy.clone(),
            self.worker.clone(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

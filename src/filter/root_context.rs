//! Root context: loads the configuration (refusing a bad one), owns the
//! per-worker metric registry and random source, and creates the HTTP
//! contexts.

use super::http_context::Http;
use crate::config::{self, Policy};
use crate::core::metrics::{self, stat_name};
use crate::core::rng::SplitMix64;
use crate::core::shared;
use crate::host;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::rc::Rc;

/// State of one worker's VM that every request of that worker uses.
pub struct Worker {
    pub metrics: RefCell<host::Metrics>,
    pub rng: RefCell<SplitMix64>,
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
            }),
        }
    }

    /// Defines each channel's counters at zero so they show before the
    /// first event.
    fn declare_metrics(&self, policy: &Policy) {
        let mut m = self.worker.metrics.borrow_mut();
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
        for ch in &policy.channels {
            let c = ("channel", ch.name.as_str());
            for base in [metrics::REQUESTS_TOTAL, metrics::EMPTY_TOTAL] {
                m.declare_counter(stat_name(base, &[c]));
            }
            for reason in ["too_large", "bad_json"] {
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
            keys.push(crate::core::routing::state_key(&ch.name));
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
                create_shared_keys(&policy);
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

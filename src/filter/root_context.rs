//! Root context: loads the configuration (refusing a bad one), declares
//! the metrics, runs the worker's timer (routing feedback, dead-letter
//! copies) and creates the HTTP contexts, all sharing one [`Worker`].

use super::http_context::Http;
use super::worker::{ROUTE_REFRESH_MS, Worker};
use crate::config;
use crate::core::admission::{Decision, Priority};
use crate::core::channel::Refusal;
use crate::core::deadletter;
use crate::core::decision::LogBudget;
use crate::core::metrics::stat_name;
use crate::core::names::label::{CHANNEL, CLUSTER, DECISION, PRIORITY, REASON, RESULT};
use crate::core::names::{code, metric};
use crate::core::policy::Policy;
use crate::core::routing;
use crate::core::shared;
use crate::core::signature::FailureReason;
use crate::core::state::{Answer, Query, StateError, StatePolicy};
use crate::host;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;

pub struct Root {
    policy: Option<Rc<Policy>>,
    worker: Rc<Worker>,
    /// `state`: the start-up probe of the store (sent on the first tick,
    /// answered here), so a wrong cluster, ACL or password shows in the
    /// log before the first callback needs the store.
    probe: Probe,
}

enum Probe {
    None,
    Due,
    Sent(super::state::StateCall),
}

impl Root {
    pub fn new() -> Self {
        Self {
            policy: None,
            worker: Rc::new(Worker::new()),
            probe: Probe::None,
        }
    }

    /// Defines each channel's counters at zero so they show before the
    /// first event.
    fn declare_metrics(&self, policy: &Policy) {
        let mut m = self.worker.metrics.borrow_mut();
        m.forget_shared();
        for why in Refusal::ALL {
            m.declare_counter(&stat_name(
                metric::UNMATCHED_TOTAL,
                &[(REASON, why.as_str())],
            ));
        }
        #[cfg(feature = "rego")]
        if let Some(rego) = policy.admission.as_ref().and_then(|a| a.rego()) {
            use crate::core::admission::rego::SOURCES;
            for reason in rego.reason_labels() {
                for decision in SOURCES {
                    m.declare_counter(&stat_name(
                        metric::ADMISSION_POLICY_TOTAL,
                        &[(DECISION, decision), (REASON, reason)],
                    ));
                }
            }
        }
        for ch in &policy.channels {
            let c = (CHANNEL, ch.name.as_str());
            if policy.admission.is_some() || ch.limit.is_some() {
                for priority in Priority::ALL.map(Priority::as_str) {
                    for decision in Decision::LABELS {
                        m.declare_counter(&stat_name(
                            metric::ADMISSION_TOTAL,
                            &[c, (PRIORITY, priority), (DECISION, decision)],
                        ));
                    }
                }
            }
            for base in [metric::REQUESTS_TOTAL, metric::EMPTY_TOTAL] {
                m.declare_counter(&stat_name(base, &[c]));
            }
            let encoding = (ch.mask.is_some() || ch.contract.is_some())
                .then_some(metric::REJECTED_UNSUPPORTED_ENCODING);
            let contract = ch.contract.is_some().then_some(metric::REJECTED_CONTRACT);
            for reason in [code::TOO_LARGE, code::BAD_JSON]
                .into_iter()
                .chain(encoding)
                .chain(contract)
            {
                m.declare_counter(&stat_name(metric::REJECTED_TOTAL, &[c, (REASON, reason)]));
            }
            if ch.signature.is_some() {
                m.declare_counter(&stat_name(metric::SIGNATURE_VERIFIED_TOTAL, &[c]));
                for reason in FailureReason::ALL.map(FailureReason::as_str) {
                    m.declare_counter(&stat_name(
                        metric::SIGNATURE_FAILED_TOTAL,
                        &[c, (REASON, reason)],
                    ));
                }
            }
            if ch.dedup.is_some() {
                m.declare_counter(&stat_name(metric::DUPLICATES_TOTAL, &[c]));
                m.declare_counter(&stat_name(
                    metric::REJECTED_TOTAL,
                    &[c, (REASON, metric::REJECTED_IN_PROGRESS)],
                ));
                if ch.signature.is_none() {
                    m.declare_counter(&stat_name(
                        metric::REJECTED_TOTAL,
                        &[c, (REASON, metric::REJECTED_BAD_DELIVERY_ID)],
                    ));
                }
            }
            if ch.mask.is_some() {
                m.declare_counter(&stat_name(metric::MASKED_FIELDS_TOTAL, &[c]));
            }
            if policy.dead_letter.is_some() {
                for result in deadletter::RESULTS {
                    m.declare_counter(&stat_name(metric::DEADLETTER_TOTAL, &[c, (RESULT, result)]));
                }
            }
            if let Some(routing) = &ch.routing {
                for cluster in routing.clusters() {
                    let labels = [c, (CLUSTER, cluster)];
                    m.declare_counter(&stat_name(metric::ROUTED_TOTAL, &labels));
                    m.declare_counter(&stat_name(metric::UPSTREAM_FAILURES_TOTAL, &labels));
                }
            }
        }
    }
}

impl Root {
    fn state_policy(&self) -> Option<StatePolicy> {
        self.policy.as_ref()?.state.clone()
    }
}

/// One line saying whether the store answered the start-up probe.
fn log_probe(state: &StatePolicy, result: &Result<Answer, StateError>) {
    match result {
        Ok(_) => host::log_info(&format!(
            "callback-guard: fleet state store reachable through cluster {}",
            state.cluster
        )),
        Err(e) => host::log_warn(&format!(
            "callback-guard: fleet state store not usable through cluster {}: {}",
            state.cluster,
            e.reason()
        )),
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
        if let Some(limit) = &ch.limit {
            keys.push(limit.key().to_string());
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

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let state = self.state_policy();
        if let (Probe::Sent(call), Some(state)) = (&mut self.probe, state)
            && call.token() == token_id
        {
            match call.answered(&state, body_size) {
                super::state::CallStep::Resent => {}
                super::state::CallStep::Done(result) => {
                    log_probe(&state, &result);
                    self.probe = Probe::None;
                }
            }
            return;
        }
        // 0 when the call failed without an answer (timeout, reset).
        let policy = self.policy.clone();
        self.worker.dead_letter_answered(
            token_id,
            host::call_response_status(),
            body_size,
            policy.as_ref().and_then(|p| p.dead_letter.as_ref()),
            policy.as_ref().and_then(|p| p.state.as_ref()),
        );
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = host::plugin_configuration();
        match config::check(&raw, &|name| host::env_var(name)) {
            Ok(policy) => {
                self.declare_metrics(&policy);
                *self.worker.log_budget.borrow_mut() =
                    LogBudget::new(policy.refusal_log.per_second);
                create_shared_keys(&policy);
                self.probe = if policy.state.is_some() {
                    Probe::Due
                } else {
                    Probe::None
                };
                if policy.channels.iter().any(|c| c.routing.is_some())
                    || policy.dead_letter.is_some()
                    || policy.state.is_some()
                {
                    host::set_tick_period_ms(ROUTE_REFRESH_MS);
                }
                host::log_info(&format!(
                    "callback-guard: configuration loaded, {} channel(s)",
                    policy.channels.len()
                ));
                self.policy = Some(Rc::new(policy));
                true
            }
            Err(errs) => {
                // The one line that tells the operator what to fix (every
                // error, "; "-separated); the proxy keeps the previous
                // configuration (or refuses this one).
                host::log_error(&format!("callback-guard: invalid configuration: {errs}"));
                false
            }
        }
    }

    /// Sends the worker's batched routing feedback.
    fn on_tick(&mut self) {
        if matches!(self.probe, Probe::Due)
            && let Some(state) = self.state_policy()
        {
            let query = Query::DedupForget {
                key: format!("{}probe", state.key_prefix),
                token: "probe".into(),
            };
            self.probe = match super::state::StateCall::start(&state, query) {
                Ok(call) => Probe::Sent(call),
                Err(e) => {
                    log_probe(&state, &Err(e));
                    Probe::None
                }
            };
        }
        if let Some(policy) = &self.policy {
            self.worker.flush_routes(policy);
            if let Some(dead_letter) = &policy.dead_letter {
                self.worker
                    .send_dead_letters(dead_letter, policy.state.as_ref());
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

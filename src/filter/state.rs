//! The host side of fleet state (issue #15): sends a [`core::state`] query
//! to the store's HTTP front through the configured Envoy cluster and turns
//! the answer into the core's typed result. The request flow decides when
//! to ask and what the answer means; this module only carries it.
//!
//! A call is sent from the HTTP context that needs it, so Envoy delivers
//! the answer to that context's `on_http_call_response` (the SDK dispatcher
//! registers the token); the request stays paused until then or until
//! `state.timeout_ms`, when Envoy answers the call itself with no status
//! ([`StateError::NoAnswer`]). Nothing here waits or blocks.
//!
//! [`core::state`]: crate::core::state

use crate::core::metrics::stat_name;
use crate::core::names::label::OP;
use crate::core::names::metric;
use crate::core::state::{Answer, ErrorLog, Health, Query, StateError, StatePolicy};
use crate::host;
use std::cell::RefCell;

/// Largest answer read from the front (the scripts answer a few integers).
const MAX_ANSWER_BYTES: usize = 4096;

/// One open store call of an HTTP context.
#[derive(Debug)]
pub struct StateCall {
    query: Query,
    /// Sent with the script's source (after a `NOSCRIPT`).
    full: bool,
    token: u32,
}

/// What an answer to a [`StateCall`] leads to.
#[derive(Debug)]
pub enum CallStep {
    /// Redis did not know the script: the call was sent again with its
    /// source; keep waiting (for [`StateCall::token`]).
    Resent,
    /// The answer (or why there is none).
    Done(Result<Answer, StateError>),
}

impl StateCall {
    /// Sends `query` (`EVALSHA`). `Err(NoAnswer)` when the call could not
    /// even be sent (unknown cluster, host refusal).
    pub fn start(policy: &StatePolicy, query: Query) -> Result<Self, StateError> {
        let token = send(policy, &query, false)?;
        Ok(Self {
            query,
            full: false,
            token,
        })
    }

    /// Sends `query` with the script's source (`EVAL`), for a mark nothing
    /// waits for: its answer may come after the request ended, too late
    /// to re-send after a `NOSCRIPT`. `None`: not sent.
    pub fn fire(policy: &StatePolicy, query: Query) -> Option<Self> {
        let token = send(policy, &query, true).ok()?;
        Some(Self {
            query,
            full: true,
            token,
        })
    }

    /// The token Envoy answers with.
    pub fn token(&self) -> u32 {
        self.token
    }

    pub fn query(&self) -> &Query {
        &self.query
    }

    /// From `on_http_call_response(token, _, body_size, _)`: reads the
    /// answer; a `NOSCRIPT` is sent again once, with the script's source.
    pub fn answered(&mut self, policy: &StatePolicy, body_size: usize) -> CallStep {
        let status = host::call_response_status();
        let body = host::call_response_body(body_size, MAX_ANSWER_BYTES);
        match policy.answer(&self.query, status, &body) {
            Err(StateError::NoScript) if !self.full => match send(policy, &self.query, true) {
                Ok(token) => {
                    self.full = true;
                    self.token = token;
                    CallStep::Resent
                }
                Err(e) => CallStep::Done(Err(e)),
            },
            other => CallStep::Done(other),
        }
    }
}

fn send(policy: &StatePolicy, query: &Query, full: bool) -> Result<u32, StateError> {
    let request = policy.request(query, full);
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = (!request.body.is_empty()).then_some(request.body.as_slice());
    host::dispatch_call(&policy.cluster, &headers, body, policy.timeout_ms)
        .ok_or(StateError::NoAnswer)
}

/// One worker's view of the store's health: the breaker that stops asking
/// a dead store, and the log budget for its errors.
#[derive(Debug, Default)]
pub struct StoreHealth {
    health: RefCell<Health>,
    log: RefCell<ErrorLog>,
}

impl StoreHealth {
    /// Whether to ask the store now (see [`Health::allow`]).
    pub fn allow(&self, policy: &StatePolicy, now_ms: u64) -> bool {
        self.health.borrow_mut().allow(policy, now_ms)
    }

    pub fn success(&self) {
        self.health.borrow_mut().success();
    }

    /// Counts a failed call (`callback_state_errors_total{op}`), feeds the
    /// breaker and logs a warning at most every 10 s per worker.
    pub fn failure(
        &self,
        policy: &StatePolicy,
        metrics: &RefCell<host::Metrics>,
        op: &str,
        error: &StateError,
        now_ms: u64,
    ) {
        metrics
            .borrow_mut()
            .increment_name(&stat_name(metric::STATE_ERRORS_TOTAL, &[(OP, op)]), 1);
        let opened = self.health.borrow_mut().failure(policy, now_ms);
        if let Some(suppressed) = self.log.borrow_mut().admit(now_ms) {
            let fallback = match policy.on_unavailable {
                crate::core::state::Fallback::Local => "per-Envoy state decides",
                crate::core::state::Fallback::Reject => "answering 503",
            };
            let breaker = if opened {
                format!("; not asking for {} ms", policy.breaker_open_ms)
            } else {
                String::new()
            };
            host::log_warn(&format!(
                "callback-guard: fleet state {op} via cluster {}: {}; {fallback}{breaker} \
                 ({suppressed} more errors since the last line)",
                policy.cluster,
                error.reason()
            ));
        }
    }
}

/// Resumes the paused request once its store call was answered and the
/// core decided (`false`: the stream is gone).
pub fn resume_request() -> bool {
    host::resume_request()
}

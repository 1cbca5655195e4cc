//! HTTP context: one per request. It reads the host, hands each event to
//! the request's state machine (`core::request`) and applies what comes
//! back: header changes, a local reply, metrics, the decision record,
//! routing feedback, dead-letter copies, state-store marks, and the
//! `Action` to return. Its only state is the machine.
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
//!   upstream, so the machine never asks to.
//! - `body_size` in the body callback is the total buffered so far.
//! - The routing header is written during the headers phase: Envoy re-reads
//!   the route (`cluster_header`) after a header change there.

use super::worker::Worker;
use crate::config::Policy;
use crate::core::request::{Effect, Env, Output, Request, Step};
use crate::core::shared::SharedStore;
use crate::host::{self, SharedData};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub struct Http {
    worker: Rc<Worker>,
    request: Request,
}

/// The host as the request machine reads it.
struct HostEnv<'a> {
    worker: &'a Worker,
}

impl Env for HostEnv<'_> {
    fn now_ms(&self) -> u64 {
        host::now_ms()
    }

    fn random_u64(&self) -> u64 {
        self.worker.rng.borrow_mut().next_u64()
    }

    fn random_f64(&self) -> f64 {
        self.worker.rng.borrow_mut().next_f64()
    }

    fn peer_spiffe_id(&self) -> Option<String> {
        host::peer_spiffe_id()
    }

    fn property(&self, path: &[&str]) -> Option<String> {
        host::property_string(path)
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        host::request_body(size)
    }

    fn response_header(&self, name: &str) -> Option<String> {
        host::response_header(name)
    }

    fn routing_store(&self, now_ms: u64) -> Box<dyn SharedStore + '_> {
        Box::new(self.worker.route_reads.view(&SharedData, now_ms))
    }
}

impl Http {
    pub fn new(policy: Option<Rc<Policy>>, worker: Rc<Worker>) -> Self {
        Self {
            worker,
            request: Request::new(policy),
        }
    }

    /// Applies the machine's output and answers what it asks, until it
    /// gives the host something to return.
    fn run(&mut self, first: impl FnOnce(&mut Request, &dyn Env) -> Output) -> Action {
        let worker = self.worker.clone();
        let env = HostEnv { worker: &worker };
        let mut output = first(&mut self.request, &env);
        loop {
            for effect in output.effects {
                self.apply(effect);
            }
            output = match output.step {
                Step::Continue => return Action::Continue,
                Step::Pause => return Action::Pause,
                Step::ReplaceBody { size, body } => {
                    let ok = host::replace_request_body(size, &body);
                    self.request.body_replaced(ok, &env)
                }
                // Shared data answers at once (a remote store would pause
                // here and resume from `on_http_call_response`).
                Step::Query(query) => {
                    let answer = self.request.answer_locally(&query, &SharedData);
                    self.request.resume(answer, &env)
                }
            };
        }
    }

    fn apply(&self, effect: Effect) {
        match effect {
            Effect::RemoveRequestHeader(name) => host::remove_request_header(&name),
            Effect::SetRequestHeader(name, value) => host::set_request_header(&name, &value),
            Effect::SetResponseHeader(name, value) => host::set_response_header(&name, &value),
            Effect::Reply {
                status,
                headers,
                body,
            } => {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                host::send_reply(status, &headers, &body);
            }
            Effect::Count(name, by) => self.worker.metrics.borrow_mut().increment(name, by),
            Effect::Histogram(name, value) => self.worker.metrics.borrow_mut().record(name, value),
            Effect::Decision { record, refusal } => {
                host::set_filter_state(crate::core::decision::FILTER_STATE_NAME, &record);
                if let Some((level, mut line)) = refusal
                    && let Some(dropped) = self.worker.log_budget.borrow_mut().take(host::now_ms())
                {
                    if dropped > 0 {
                        line.push_str(&format!(" ({dropped} earlier refusal lines dropped)"));
                    }
                    host::log_at(level, &line);
                }
            }
            Effect::Warn(line) => host::log_warn(&line),
            Effect::BudgetedWarn(line) => {
                let allowed = self
                    .worker
                    .log_budget
                    .borrow_mut()
                    .take(host::now_ms())
                    .is_some();
                if allowed {
                    host::log_warn(&line);
                }
            }
            Effect::Route {
                channel,
                observation,
            } => {
                if let Some(policy) = self.request.policy() {
                    self.worker.observe_route(policy, channel, observation);
                }
            }
            Effect::DeadLetter { channel, envelope } => {
                if let Some(dead_letter) =
                    self.request.policy().and_then(|p| p.dead_letter.as_ref())
                {
                    self.worker.dead_letter(dead_letter, &channel, envelope);
                }
            }
            Effect::Store(write) => self.request.write_locally(&write, &SharedData),
        }
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.request.policy().is_none() {
            return Action::Continue;
        }
        let headers = host::request_headers();
        self.run(|request, env| request.on_request_headers(headers, end_of_stream, env))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.run(|request, env| request.on_request_body(body_size, end_of_stream, env))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.run(|request, env| request.on_request_trailers(env))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.run(|request, env| request.on_response_headers(env))
    }

    fn on_log(&mut self) {
        self.run(|request, env| request.on_end(env));
    }
}

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
//! - Fleet state (`state`, issue #15): the dedup question goes to the store
//!   (`dedup_begin`) and the callback that asked returns `Pause` (in hold
//!   mode the headers are held already; in stream mode the body waits as
//!   `StopIterationAndBuffer`). The answer, or Envoy's own answer at
//!   `state.timeout_ms`, comes to `on_http_call_response`; the machine
//!   resumes there, and the stream is resumed (`proxy_continue_stream`)
//!   only if the machine goes on upstream (a local reply ends it). A call
//!   that cannot even be sent falls back at once, without pausing. Commit
//!   and forget marks are sent without waiting; Envoy makes outgoing calls
//!   on the root context, so a call outlives the request that sent it.

use super::state::{CallStep, StateCall};
use super::worker::Worker;
use crate::core::admission::Decision;
use crate::core::policy::Policy;
use crate::core::request::store::{Answer, Query, StoreWrite};
use crate::core::request::{Effect, Env, EventClock, Output, Phase, Request, Step};
use crate::core::shared::SharedStore;
use crate::core::state::dedup::{self, Marks};
use crate::core::state::{self, StateError, StatePolicy, lease, limits};
use crate::host::{self, SharedData};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub struct Http {
    worker: Rc<Worker>,
    request: Request,
    /// The fleet-store call the request waits for, with the request's
    /// question (answered from shared data if the store does not).
    waiting: Option<(StateCall, Query)>,
    /// Marks sent without waiting (commit, forget): their answers only
    /// count errors.
    marks_sent: Vec<StateCall>,
    /// Where this request's dedup marks go.
    marks: Marks,
}

/// The host as the request machine reads it, for one host event.
struct HostEnv<'a> {
    worker: &'a Worker,
    clock: EventClock<fn() -> u64>,
}

impl<'a> HostEnv<'a> {
    fn new(worker: &'a Worker) -> Self {
        Self {
            worker,
            clock: EventClock::new(host::now_ms),
        }
    }
}

impl Env for HostEnv<'_> {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
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

    fn with_routing_store(&self, now_ms: u64, read: &mut dyn FnMut(&dyn SharedStore)) {
        read(&self.worker.route_reads.view(&SharedData, now_ms));
    }
}

impl Http {
    pub fn new(policy: Option<Rc<Policy>>, worker: Rc<Worker>) -> Self {
        Self {
            worker,
            request: Request::new(policy),
            waiting: None,
            marks_sent: Vec::new(),
            marks: Marks::Local,
        }
    }

    /// Hands one host event to the machine and drives its output.
    fn run(&mut self, first: impl FnOnce(&mut Request, &dyn Env) -> Output) -> Action {
        let worker = self.worker.clone();
        let env = HostEnv::new(&worker);
        let output = first(&mut self.request, &env);
        self.drive(output, &env)
    }

    /// Applies the machine's output and answers what it asks, until it
    /// gives the host something to return (`Pause` while the fleet store
    /// has the question).
    fn drive(&mut self, mut output: Output, env: &HostEnv<'_>) -> Action {
        loop {
            let Output { mut effects, step } = output;
            for effect in effects.drain(..) {
                self.apply(effect, env);
            }
            self.request.recycle(effects);
            output = match step {
                Step::Continue => return Action::Continue,
                Step::Pause => return Action::Pause,
                Step::ReplaceBody { size, body } => {
                    let ok = host::replace_request_body(size, &body);
                    self.request.body_replaced(ok, env)
                }
                Step::Query(query) => match self.ask(query) {
                    Some(answer) => self.request.resume(answer, env),
                    None => return Action::Pause,
                },
            };
        }
    }

    /// Answers `query` now, or sends it to the fleet store (`None`: the
    /// answer comes to `on_http_call_response`).
    fn ask(&mut self, query: Query) -> Option<Answer> {
        let policy = self.request.policy().cloned();
        if let (Some(state), Query::AdmissionDraw { decision, .. }) =
            (policy.as_ref().and_then(|p| p.state.as_ref()), &query)
            && let Some(draw) = self.fleet_draw(state, *decision)
        {
            let now = host::now_ms();
            let cap = state.lease.cap(draw.slowest_rps());
            let step = self
                .worker
                .leases
                .borrow_mut()
                .entry(draw.lease_key.clone())
                .or_default()
                .step(&state.lease, cap, now);
            if let Some(decision) = draw.after(step, *decision) {
                return Some(Answer::Admission(decision));
            }
            if let lease::Step::Ask { want } = step
                && self.worker.state_health.allow(state, now)
            {
                match StateCall::start(state, draw.query(want)) {
                    Ok(call) => {
                        self.waiting = Some((call, query));
                        return None;
                    }
                    Err(e) => self.store_failed(state, state::LEASE.name, &e, now),
                }
            }
            // Limits fall back to this Envoy's buckets (whatever
            // `on_unavailable` says: it governs dedup).
            return Some(self.locally(&query));
        }
        if let (Some(state), Query::DedupCheck { key, .. }) =
            (policy.as_ref().and_then(|p| p.state.as_ref()), &query)
            && let Some(ch) = self.request.channel()
            && let Some(in_flight_s) = ch.dedup.as_ref().map(|d| d.in_flight_s)
        {
            let now = host::now_ms();
            if self.worker.state_health.allow(state, now) {
                let token = format!("{:016x}", self.worker.rng.borrow_mut().next_u64());
                let begin = dedup::begin(state, &ch.name, key, token, in_flight_s);
                match StateCall::start(state, begin) {
                    Ok(call) => {
                        self.waiting = Some((call, query));
                        return None;
                    }
                    Err(e) => self.store_failed(state, state::DEDUP_BEGIN.name, &e, now),
                }
            }
            if let Some(answer) = dedup::fallback(state) {
                return Some(answer);
            }
        }
        Some(self.locally(&query))
    }

    /// The fleet buckets an admitted `decision` draws from on this
    /// request's channel (`None`: not admitted, or no bucket at all).
    fn fleet_draw(&self, state: &StatePolicy, decision: Decision) -> Option<limits::Draw> {
        let priority = decision.admitted()?;
        let ch = self.request.channel()?;
        let admission = self
            .request
            .policy()
            .and_then(|p| p.admission.as_ref())
            .map(|a| a.limits());
        let draw = limits::Draw::new(
            state,
            &ch.name,
            ch.limit.as_ref().map(|l| l.limit()),
            admission,
            priority,
        );
        (!draw.buckets.is_empty()).then_some(draw)
    }

    /// The store's answer to `dedup_begin`: the verdict (the marks go to
    /// the store from now on), or `on_unavailable`'s answer.
    fn dedup_begun(
        &mut self,
        state: &StatePolicy,
        call: &StateCall,
        query: &Query,
        result: &Result<state::Answer, StateError>,
    ) -> Answer {
        if let Some((answer, marks)) = dedup::begun(call.query(), result) {
            self.marks = marks;
            return answer;
        }
        dedup::fallback(state).unwrap_or_else(|| self.locally(query))
    }

    /// The store's answer to a lease of the request's buckets.
    fn leased(
        &mut self,
        state: &StatePolicy,
        query: &Query,
        result: &Result<state::Answer, StateError>,
        now: u64,
    ) -> Answer {
        let Query::AdmissionDraw { decision, .. } = query else {
            return Answer::Unavailable;
        };
        let Some(draw) = self.fleet_draw(state, *decision) else {
            return self.locally(query);
        };
        let step = {
            let mut leases = self.worker.leases.borrow_mut();
            let lease = leases.entry(draw.lease_key.clone()).or_default();
            match result {
                Ok(state::Answer::Lease(grant)) => Some(lease.granted(&state.lease, *grant, now)),
                _ => {
                    lease.clear();
                    None
                }
            }
        };
        match step.and_then(|step| draw.after(step, *decision)) {
            Some(decision) => Answer::Admission(decision),
            None => self.locally(query),
        }
    }

    /// Answers `query` from this Envoy's shared data now (the worker's
    /// bucket leases for a draw).
    fn locally(&self, query: &Query) -> Answer {
        self.request.answer_locally(
            query,
            &SharedData,
            &mut self.worker.local_leases.borrow_mut(),
        )
    }

    fn store_failed(&self, state: &StatePolicy, op: &str, error: &StateError, now_ms: u64) {
        self.worker
            .state_health
            .failure(state, &self.worker.metrics, op, error, now_ms);
    }

    /// A dedup mark: to the fleet store when the request's check went
    /// there (without waiting), else to shared data.
    fn write(&mut self, write: StoreWrite) {
        let policy = self.request.policy().cloned();
        if let Some(state) = policy.as_ref().and_then(|p| p.state.as_ref())
            && let Some(window_s) = self
                .request
                .channel()
                .and_then(|c| c.dedup.as_ref())
                .map(|d| d.window_s)
            && let Some(query) = dedup::mark(&self.marks, &write, window_s)
        {
            self.fire(state, query);
            return;
        }
        self.request.write_locally(&write, &SharedData);
    }

    fn fire(&mut self, state: &StatePolicy, query: state::Query) {
        let op = query.script().name;
        match StateCall::fire(state, query) {
            Some(call) => self.marks_sent.push(call),
            None => self.store_failed(state, op, &StateError::NoAnswer, host::now_ms()),
        }
    }

    /// The fleet store answered `token` (or Envoy did, at the timeout).
    fn answered(&mut self, token: u32, body_size: usize) {
        let Some(policy) = self.request.policy().cloned() else {
            return;
        };
        let Some(state) = policy.state.as_ref() else {
            return;
        };
        // One clock for this event, shared with the machine's resume below.
        let worker = self.worker.clone();
        let env = HostEnv::new(&worker);
        let now = env.now_ms();
        if let Some(i) = self.marks_sent.iter().position(|c| c.token() == token) {
            let mut call = self.marks_sent.swap_remove(i);
            match call.answered(state, body_size) {
                CallStep::Resent => self.marks_sent.push(call),
                CallStep::Done(result) => self.record(state, &call, &result, now),
            }
            return;
        }
        let Some((mut call, query)) = self.waiting.take() else {
            return;
        };
        if call.token() != token {
            self.waiting = Some((call, query));
            return;
        }
        let result = match call.answered(state, body_size) {
            CallStep::Resent => {
                self.waiting = Some((call, query));
                return;
            }
            CallStep::Done(result) => result,
        };
        self.record(state, &call, &result, now);
        let answer = if matches!(call.query(), state::Query::Lease { .. }) {
            self.leased(state, &query, &result, now)
        } else {
            self.dedup_begun(state, &call, &query, &result)
        };
        let output = self.request.resume(answer, &env);
        // Paused for this call: resume the stream if the request goes on
        // upstream; a local reply already ended it.
        if self.drive(output, &env) == Action::Continue && self.request.phase() != Phase::Replied {
            host::resume_request();
        }
    }

    fn record(
        &self,
        state: &StatePolicy,
        call: &StateCall,
        result: &Result<state::Answer, StateError>,
        now_ms: u64,
    ) {
        match result {
            Ok(_) => self.worker.state_health.success(),
            Err(e) => self.store_failed(state, call.query().script().name, e, now_ms),
        }
    }

    fn apply(&mut self, effect: Effect, env: &HostEnv<'_>) {
        match effect {
            Effect::RemoveRequestHeader(name) => host::remove_request_header(&name),
            Effect::SetRequestHeader(name, value) => host::set_request_header(&name, &value),
            Effect::SetResponseHeader(name, value) => host::set_response_header(name, &value),
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
            Effect::Count(stat, by) => self.worker.metrics.borrow_mut().increment(&stat, by),
            Effect::Histogram(stat, value) => self.worker.metrics.borrow_mut().record(&stat, value),
            Effect::Decision { record, refusal } => {
                host::set_filter_state(crate::core::decision::FILTER_STATE_NAME, &record);
                if let Some((level, mut line)) = refusal
                    && let Some(dropped) = self.worker.log_budget.borrow_mut().take(env.now_ms())
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
                    .take(env.now_ms())
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
            Effect::Store(write) => self.write(write),
        }
    }
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        self.answered(token_id, body_size);
    }
}

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
        // The stream ended while its dedup check was with the store: the
        // store may hold this attempt's in-flight mark; drop it.
        if let Some((call, _)) = self.waiting.take()
            && let Some(forget) = dedup::abandoned(call.query())
            && let Some(state) = self.request.policy().cloned()
            && let Some(state) = &state.state
        {
            self.fire(state, forget);
        }
        self.run(|request, env| request.on_end(env));
    }
}

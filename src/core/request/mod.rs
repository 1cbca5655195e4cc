//! One request, from its headers to the end of its stream, as a state
//! machine: the filter hands it each thing the host reports (request
//! headers, a body chunk, trailers, response headers, the end of the
//! stream) and applies what comes back; every decision is made here.
//!
//! ```text
//!   host event ──► Request::on_* ──► Output { effects, step }
//!                                        │         │
//!             filter applies in order ◄──┘         ├ Continue / Pause
//!   (headers, reply, metrics, decision record,     ├ ReplaceBody ─► body_replaced(ok)
//!    routing feedback, dead letter, store marks)   └ Query ───────► resume(answer)
//! ```
//!
//! - [`Output::effects`]: what to do now, in order: request/response
//!   header changes, a local reply, counts, the decision record, routing
//!   feedback, a dead-letter envelope, marks in the state store.
//! - [`Step`]: what the host callback returns, or what the machine waits
//!   for. [`Step::ReplaceBody`] asks the host to swap the request body and
//!   report whether it could ([`Request::body_replaced`]).
//!   [`Step::Query`] asks the state store a question whose answer decides
//!   the request (the bucket draw of admission, the dedup check, see
//!   [`store`]); the machine goes on with [`Request::resume`] from exactly
//!   where it stopped, never re-running an earlier step.
//! - [`Env`]: what the machine reads from the host when it needs it
//!   (clock, random numbers, the peer identity, the request body, the
//!   response status, properties): only what each step uses is read.
//!
//! **Answering a query later.** Today the filter answers every
//! [`Step::Query`] at once from proxy-wasm shared data
//! ([`Request::answer_locally`]) and resumes in the same host callback. A
//! remote store (issue #15) needs only the filter to change: on
//! `Step::Query` it dispatches the call and returns `Pause`; in
//! `on_http_call_response` it resumes the machine with the answer, or
//! with [`store::Answer::Unavailable`] on failure or timeout (every query
//! fails open), applies the output and resumes the host stream. Body
//! chunks that arrive meanwhile are buffered (the machine answers `Pause`
//! and remembers the end of the body; see [`Request::on_request_body`]).
//!
//! The filter's state is the machine's [`Phase`].

pub mod store;

use crate::core::admission::{Decision, Priority};
use crate::core::channel::Route;
use crate::core::deadletter::{self, Envelope};
use crate::core::decision::{DecisionRecord, LogLevel, Verdict};
use crate::core::dedup::DeliveryIdSource;
use crate::core::headers::Headers;
use crate::core::hold::{self, BodyWait};
use crate::core::metrics::{ChannelStats, Stat, stat_name};
use crate::core::names::{code, header, label, metric};
use crate::core::pipeline::{
    self, BodyAction, BodyCheck, BodyInput, BodyStep, BodyVerdict, Event, PendingAdmission,
};
use crate::core::policy::{ChannelPolicy, Policy};
use crate::core::reply::LocalReply;
use crate::core::routing::Observation;
use crate::core::shared::SharedStore;
use crate::core::{decimal, empty, trace};
use std::rc::Rc;
use store::{Answer, LocalLeases, Query, StoreWrite};

/// What the machine reads from the host, when a step needs it. One `Env`
/// serves one host event: `now_ms` is that event's time (read it through
/// an [`EventClock`], so the host clock is read at most once per event).
pub trait Env {
    fn now_ms(&self) -> u64;
    fn random_u64(&self) -> u64;
    fn random_f64(&self) -> f64;
    /// The peer's SPIFFE id (from its certificate), if any.
    fn peer_spiffe_id(&self) -> Option<String>;
    /// A host property as a string (`["response", "code_details"]`).
    fn property(&self, path: &[&str]) -> Option<String>;
    /// The first `size` bytes of the buffered request body.
    fn request_body(&self, size: usize) -> Option<Vec<u8>>;
    fn response_header(&self, name: &str) -> Option<String>;
    /// Calls `read` with shared data for reading routing weights (may be
    /// a cached view, see [`crate::core::shared::ReadCache`]; lent, so
    /// that no view is boxed per request).
    fn with_routing_store(&self, now_ms: u64, read: &mut dyn FnMut(&dyn SharedStore));
}

/// The host clock of one host event: read on first use, then the same
/// value for every step of that event (a body check, the forward after it
/// and the routing feedback all see one time, for one host call).
pub struct EventClock<F> {
    read: F,
    now_ms: std::cell::Cell<Option<u64>>,
}

impl<F: Fn() -> u64> EventClock<F> {
    pub fn new(read: F) -> Self {
        Self {
            read,
            now_ms: std::cell::Cell::new(None),
        }
    }

    pub fn now_ms(&self) -> u64 {
        if let Some(now) = self.now_ms.get() {
            return now;
        }
        let now = (self.read)();
        self.now_ms.set(Some(now));
        now
    }
}

/// Where the request is. Passthrough → (Holding | Streaming) → (Replied |
/// Forwarded); a request the filter does not govern stays Passthrough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not a channel request (or no policy): the filter only removes the
    /// headers it alone may set.
    Passthrough,
    /// Channel request: the headers wait with the body until it is checked.
    Holding,
    /// Channel request in stream mode (`core::hold`): the headers are
    /// upstream, the body waits.
    Streaming {
        /// The upstream headers declare the original `content-length`, so
        /// the body must go out unchanged.
        length_kept: bool,
    },
    /// The filter answered the request itself.
    Replied,
    /// The checked request went upstream.
    Forwarded {
        /// In stream mode (its headers went before the body was checked).
        streamed: bool,
    },
}

/// What the host callback returns, or what the machine waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Continue,
    Pause,
    /// Replace the request body (`size` bytes buffered) with `body`, then
    /// call [`Request::body_replaced`].
    ReplaceBody {
        size: usize,
        body: Vec<u8>,
    },
    /// Ask the state store, then call [`Request::resume`] with the answer.
    Query(Query),
}

/// A header name or value: our constants and the policy's names are
/// borrowed or shared, a trace id or a generated `traceparent` is kept
/// inline; only other values are copies.
#[derive(Clone)]
pub enum Text {
    Static(&'static str),
    /// A name of the compiled policy (a routing cluster, the cluster header).
    Shared(Rc<str>),
    /// A trace id or `traceparent` (see [`Inline`]).
    Inline(Inline),
    Owned(String),
}

impl Text {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Static(s) => s,
            Self::Shared(s) => s,
            Self::Inline(s) => s.as_str(),
            Self::Owned(s) => s,
        }
    }

    /// `s` inline when it fits (a trace id, a `traceparent`), else copied.
    pub fn copy_of(s: &str) -> Self {
        Inline::new(s).map_or_else(|| Self::Owned(s.to_string()), Self::Inline)
    }

    /// `n` in decimal, inline (a `content-length`).
    pub fn number(n: u64) -> Self {
        let mut digits = [0; decimal::MAX_DIGITS];
        Self::copy_of(decimal::decimal(n, &mut digits))
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Self {
        Self::Static(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Self::Owned(s)
    }
}

impl From<Rc<str>> for Text {
    fn from(s: Rc<str>) -> Self {
        Self::Shared(s)
    }
}

/// A short header value kept inline: at most [`trace::LEN`] bytes (a
/// `traceparent`), so a request's trace headers cost no allocation.
#[derive(Clone, Copy)]
pub struct Inline {
    len: u8,
    bytes: [u8; trace::LEN],
}

impl Inline {
    /// `s`, when it fits.
    pub fn new(s: &str) -> Option<Self> {
        let mut bytes = [0; trace::LEN];
        bytes.get_mut(..s.len())?.copy_from_slice(s.as_bytes());
        Some(Self {
            len: u8::try_from(s.len()).ok()?,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Always whole: the bytes of one `&str`.
        self.bytes
            .get(..usize::from(self.len))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

/// One thing to do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    RemoveRequestHeader(Text),
    SetRequestHeader(Text, Text),
    SetResponseHeader(&'static str, Text),
    /// Send a local reply.
    Reply {
        status: u32,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Add to a counter.
    Count(Stat, u64),
    /// Record a value in a histogram.
    Histogram(Stat, u64),
    /// Store the decision record (filter state); for a refusal, also log
    /// `refusal` at its level within the worker's refusal-log budget.
    Decision {
        record: Vec<u8>,
        refusal: Option<(LogLevel, String)>,
    },
    /// A warning line.
    Warn(String),
    /// A warning line within the worker's refusal-log budget.
    BudgetedWarn(String),
    /// Routing feedback for the channel at index `channel`.
    Route {
        channel: usize,
        observation: Observation,
    },
    /// Queue a dead-letter copy (`policy.dead_letter`).
    DeadLetter {
        channel: String,
        envelope: Vec<u8>,
    },
    /// Leave a mark in the state store (see [`Request::write_locally`]).
    Store(StoreWrite),
}

/// The answer to one host event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub effects: Vec<Effect>,
    pub step: Step,
}

/// What the machine waits for before it can go on.
#[derive(Debug, Default)]
enum Wait {
    #[default]
    Nothing,
    /// The bucket draw of an unsigned channel, at the request headers.
    HeadersDraw {
        classified: Decision,
        end_of_stream: bool,
    },
    /// The body checks' query.
    Check {
        check: BodyCheck,
        body: Vec<u8>,
        size: usize,
    },
    /// The host replacing the body with `len` bytes.
    Rewrite {
        len: usize,
        dedup_key: Option<String>,
    },
}

/// One request's state.
#[derive(Debug)]
pub struct Request {
    policy: Option<Rc<Policy>>,
    phase: Phase,
    wait: Wait,
    /// The whole body is in (it ended while the machine waited).
    body_ended: bool,
    effects: Vec<Effect>,
    /// Index into `policy.channels` once matched.
    channel: Option<usize>,
    headers: Headers,
    /// The request's trace (the caller's, or one this filter made).
    trace: Option<trace::TraceParent>,
    /// The trace was generated here and its `traceparent` is still to be
    /// written, when the request goes upstream (a request answered by the
    /// filter needs none).
    traceparent_unwritten: bool,
    start_ms: u64,
    /// `x-callback-status: 204`: empty by the headers (decided with the
    /// body, after the signature).
    empty_by_header: bool,
    verified: Option<&'static str>,
    /// The cluster routing chose (its name shared with the policy).
    cluster: Option<Rc<str>>,
    dedup_key: Option<String>,
    response_status: Option<u32>,
    /// Request body bytes buffered so far.
    body_size: usize,
    /// Signed channel: the rules admitted the request at its headers; the
    /// bucket draw happens once the signature verified.
    pending_admission: Option<Decision>,
    /// The provider's delivery id when the body holds it (read with the
    /// body); an id in the headers is read from them when needed (see
    /// [`Request::delivery_id`]).
    body_delivery_id: Option<String>,
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

impl Request {
    pub fn new(policy: Option<Rc<Policy>>) -> Self {
        Self {
            policy,
            phase: Phase::Passthrough,
            wait: Wait::Nothing,
            body_ended: false,
            effects: Vec::new(),
            channel: None,
            headers: Headers::default(),
            trace: None,
            traceparent_unwritten: false,
            start_ms: 0,
            empty_by_header: false,
            verified: None,
            cluster: None,
            dedup_key: None,
            response_status: None,
            body_size: 0,
            pending_admission: None,
            body_delivery_id: None,
            priority_admitted: None,
            forwarded_body: None,
            admission_reason: None,
            upstream_start_ms: 0,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn policy(&self) -> Option<&Rc<Policy>> {
        self.policy.as_ref()
    }

    /// The channel the request was matched to, once it is.
    pub fn channel(&self) -> Option<&ChannelPolicy> {
        self.policy.as_ref()?.channels.get(self.channel?)
    }

    fn channel_policy(&self) -> Option<(Rc<Policy>, usize)> {
        let policy = self.policy.clone()?;
        let index = self.channel?;
        policy.channels.get(index)?;
        Some((policy, index))
    }

    /// Hands back an [`Output::effects`] once applied: its buffer holds
    /// the next output's effects, so a request allocates it once, not once
    /// per host event.
    pub fn recycle(&mut self, mut effects: Vec<Effect>) {
        if self.effects.is_empty() && effects.capacity() > self.effects.capacity() {
            effects.clear();
            self.effects = effects;
        }
    }

    fn out(&mut self, step: Step) -> Output {
        Output {
            effects: std::mem::take(&mut self.effects),
            step,
        }
    }

    fn effect(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    fn count(&mut self, stat: Stat, by: u64) {
        self.effect(Effect::Count(stat, by));
    }

    fn count_event(&mut self, stats: &ChannelStats, event: Event) {
        let (stat, by) = event.stat(stats);
        self.count(stat, by);
    }

    fn set_header(&mut self, name: impl Into<Text>, value: impl Into<Text>) {
        self.effect(Effect::SetRequestHeader(name.into(), value.into()));
    }

    /// The generated `traceparent`, once the request goes upstream: with
    /// the headers in stream mode, with the checked body in hold mode.
    fn write_traceparent(&mut self) {
        if let Some(trace) = self.trace.filter(|_| self.traceparent_unwritten) {
            self.traceparent_unwritten = false;
            self.set_header("traceparent", Text::copy_of(trace.header()));
        }
    }

    fn remove_header(&mut self, name: impl Into<Text>) {
        self.effect(Effect::RemoveRequestHeader(name.into()));
    }

    /// The request's trace id (empty before the request is matched).
    fn trace_id(&self) -> &str {
        self.trace.as_ref().map_or("", trace::TraceParent::trace_id)
    }

    /// The caller's trace if valid, else a new one.
    fn trace(&self, env: &dyn Env) -> trace::TraceParent {
        trace::ensure(self.headers.get("traceparent"), || {
            (env.random_u64(), env.random_u64(), env.random_u64())
        })
    }

    /// The provider's delivery id of a channel request (for the decision
    /// record, a dead-letter copy, a re-signature): one visible-ASCII token,
    /// from the body once it was read, else from the headers.
    fn delivery_id(&self) -> Option<&str> {
        if let Some(id) = &self.body_delivery_id {
            return Some(id);
        }
        let ch = self.channel()?;
        with_id_source(ch, |source| source.header_id(&self.headers))
    }

    fn waiting(&self) -> bool {
        !matches!(self.wait, Wait::Nothing)
    }

    /// Answers a query from `store` now (the synchronous path); bucket
    /// draws come from this worker's `leases` of the buckets.
    pub fn answer_locally(
        &self,
        query: &Query,
        store: &dyn SharedStore,
        leases: &mut LocalLeases,
    ) -> Answer {
        let Some((policy, index)) = self.channel_policy() else {
            return Answer::Unavailable;
        };
        let Some(ch) = policy.channels.get(index) else {
            return Answer::Unavailable;
        };
        let admission = policy.admission.as_ref();
        match query {
            Query::AdmissionDraw { decision, now_ms } => {
                Answer::Admission(leases.draw(admission, (index, ch), store, *decision, *now_ms))
            }
            Query::DedupCheck { .. } => store::answer(query, admission, ch, store),
        }
    }

    /// Applies a [`Effect::Store`] mark to `store` now.
    pub fn write_locally(&self, write: &StoreWrite, store: &dyn SharedStore) {
        if let Some((policy, index)) = self.channel_policy()
            && let Some(ch) = policy.channels.get(index)
        {
            store::write(write, ch, store);
        }
    }

    // ---- request headers ------------------------------------------------

    pub fn on_request_headers(
        &mut self,
        headers: Headers,
        end_of_stream: bool,
        env: &dyn Env,
    ) -> Output {
        let Some(policy) = self.policy.clone() else {
            return self.out(Step::Continue);
        };
        self.headers = headers;

        // Every request, in a channel or not: the headers only the filter
        // sets go (only those present: a removal is a host call).
        for name in header::SET_BY_FILTER {
            if self.headers.contains(name) {
                self.remove_header(name);
            }
        }
        let cluster_header = &*policy.cluster_header;
        if !header::SET_BY_FILTER.contains(&cluster_header) && self.headers.contains(cluster_header)
        {
            self.remove_header(cluster_header.to_string());
        }

        // The route first: outside every channel nothing else happens (no
        // clock, no trace, nothing on the response).
        let path = self.headers.get(":path").unwrap_or("/");
        let authority = self.headers.get(":authority").unwrap_or("");
        let index = match policy.route(path, authority) {
            Route::Channel(index) => index,
            Route::Pass => return self.out(Step::Continue),
            Route::Refuse(why) => {
                // The refusal names its trace id (the request goes nowhere,
                // so no `traceparent` is written).
                self.trace = Some(self.trace(env));
                self.count(
                    Stat::Once(stat_name(
                        metric::UNMATCHED_TOTAL,
                        &[(label::REASON, why.as_str())],
                    )),
                    1,
                );
                return self.reply(&LocalReply::unmatched(why));
            }
        };
        let Some(ch) = policy.channels.get(index) else {
            return self.out(Step::Continue);
        };
        // A body-less request with a method callbacks do not use (a GET
        // verification handshake) is not a callback: it passes through.
        let method = self.headers.get(":method").unwrap_or("");
        if !ch.methods.is_callback(method, !end_of_stream) {
            return self.out(Step::Continue);
        }
        self.start_ms = env.now_ms();
        let tp = self.trace(env);
        self.traceparent_unwritten = tp.generated;
        self.trace = Some(tp);

        self.channel = Some(index);
        self.phase = Phase::Holding;
        self.count(ch.stats.requests.clone(), 1);

        match self.admit(&policy, ch, env) {
            Some(classified) if classified.admitted().is_some() => {
                // The bucket draw (unsigned channels).
                self.wait = Wait::HeadersDraw {
                    classified,
                    end_of_stream,
                };
                let query = Query::AdmissionDraw {
                    decision: classified,
                    now_ms: self.start_ms,
                };
                self.out(Step::Query(query))
            }
            Some(refused) => self.headers_drawn(&policy, ch, refused, end_of_stream, env),
            None => self.after_admission(&policy, ch, end_of_stream, env),
        }
    }

    /// Admission for a channel request: the decision whose buckets are to
    /// be drawn now, or `None` when nothing is drawn now. The rules decide
    /// here (their verdict needs no body, and the admitted priority must be
    /// on the headers before they may leave in stream mode); on a signed
    /// channel the bucket draw waits until the signature verified
    /// (`pending_admission`), so forged floods cannot spend the tokens of
    /// verified callbacks.
    fn admit(&mut self, policy: &Policy, ch: &ChannelPolicy, env: &dyn Env) -> Option<Decision> {
        let signed = ch.signature.is_some();
        let Some(admission) = policy.admission.as_ref() else {
            // No admission: only the channel's own limit, if any.
            ch.limit.as_ref()?;
            let classified = Decision::Admitted(Priority::Normal);
            if signed {
                self.pending_admission = Some(classified);
                return None;
            }
            return Some(classified);
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
            .then(|| env.peer_spiffe_id())
            .flatten();
        #[cfg(feature = "rego")]
        let classified = match Self::policy_classify(
            (&self.headers, &mut self.effects),
            admission,
            &ch.name,
            requested,
            env,
        ) {
            Some((decision, reason)) => {
                self.admission_reason = reason;
                decision
            }
            None => admission.classify(requested, identity.as_deref()),
        };
        #[cfg(not(feature = "rego"))]
        let classified = admission.classify(requested, identity.as_deref());
        if let Some(admitted) = classified.admitted() {
            self.set_header(header::PRIORITY_ADMITTED, admitted.as_str());
            self.priority_admitted = Some(admitted);
            if signed {
                self.pending_admission = Some(classified);
                return None;
            }
        }
        Some(classified)
    }

    /// The Rego policy's verdict (`admission.policy`), when it applies to
    /// the requested priority; `None` leaves the request to the rules. Its
    /// count and warning go to `effects` (the request's: `requested` is
    /// borrowed from its `headers`).
    #[cfg(feature = "rego")]
    fn policy_classify(
        (headers, effects): (&Headers, &mut Vec<Effect>),
        admission: &crate::core::admission::AdmissionPolicy,
        channel: &str,
        requested: Option<&str>,
        env: &dyn Env,
    ) -> Option<(Decision, Option<String>)> {
        use crate::core::admission::{principal, rego};
        let policy = admission
            .rego()
            .filter(|p| p.applies_to(Priority::from_header(requested)))?;
        let peer = env.peer_spiffe_id();
        let identity = peer.as_deref().and_then(principal::spiffe_id);
        let input = rego::PolicyInput {
            requested,
            identity,
            channel,
            method: headers.get(":method").unwrap_or(""),
            path: headers.get(":path").unwrap_or(""),
            host: headers.get(":authority").unwrap_or(""),
            headers,
            scheme: None,
            delivery_id: None,
        };
        let outcome = rego::classify(admission, policy, &input);
        effects.push(Effect::Count(Stat::Once(outcome.stat(policy)), 1));
        if let Some(error) = &outcome.error {
            effects.push(Effect::BudgetedWarn(format!(
                "callback-guard: admission policy failed channel={channel}: {}",
                error.0
            )));
        }
        Some((outcome.decision, outcome.reason))
    }

    /// The bucket draw at the request headers is done: refuse, or go on.
    fn headers_drawn(
        &mut self,
        policy: &Policy,
        ch: &ChannelPolicy,
        decision: Decision,
        end_of_stream: bool,
        env: &dyn Env,
    ) -> Output {
        self.count(ch.stats.admission(decision), 1);
        if let Some(mut refusal) = decision.refusal() {
            if let (Decision::Denied(_), Some(reason)) = (decision, &self.admission_reason) {
                refusal.detail = format!("{}: {reason}", refusal.detail);
            }
            return self.reply(&refusal);
        }
        self.after_admission(policy, ch, end_of_stream, env)
    }

    /// The rest of the headers phase: empty by header, declared length,
    /// route, hold or stream.
    fn after_admission(
        &mut self,
        policy: &Policy,
        ch: &ChannelPolicy,
        end_of_stream: bool,
        env: &dyn Env,
    ) -> Output {
        // Decided with the body (after the signature, on a signed channel):
        // the body is read first anyway, since answering while the caller
        // is still sending makes Envoy close the connection under it.
        self.empty_by_header = empty::empty_by_header(self.headers.get(header::STATUS));

        let declared = self
            .headers
            .get("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > ch.max_body_bytes) {
            return self.too_large(ch);
        }

        if let Some(routing) = &ch.routing {
            let random = env.random_f64();
            // Never fails: without usable shared state it uses the
            // configured weights.
            let now_ms = self.start_ms;
            let mut cluster = None;
            env.with_routing_store(now_ms, &mut |weights| {
                cluster = routing
                    .choose_shared(weights, &ch.name, now_ms, random)
                    .cloned();
            });
            if let Some(cluster) = cluster {
                self.set_header(policy.cluster_header.clone(), cluster.clone());
                self.cluster = Some(cluster);
            }
        }

        if end_of_stream {
            return self.finish(0, env);
        }
        match hold::body_wait(policy.hold_headers, ch, &self.headers) {
            // Hold the headers until the whole body is in and checked.
            BodyWait::Hold => {
                if self.body_ended {
                    // The body ended while the draw was being answered.
                    return self.finish(self.body_size, env);
                }
                self.out(Step::Pause)
            }
            // Headers upstream now; the body phase holds the body.
            BodyWait::Stream {
                drop_content_length,
            } => {
                if drop_content_length {
                    self.remove_header("content-length");
                }
                self.write_traceparent();
                self.phase = Phase::Streaming {
                    length_kept: !drop_content_length && self.headers.contains("content-length"),
                };
                self.upstream_start_ms = self.start_ms;
                if self.body_ended {
                    // The body ended while the draw was being answered (the
                    // headers waited with it).
                    return self.finish(self.body_size, env);
                }
                self.out(Step::Continue)
            }
        }
    }

    /// `413`: declared or buffered beyond the channel's `max_body_bytes`.
    fn too_large(&mut self, ch: &ChannelPolicy) -> Output {
        self.count_event(&ch.stats, Event::Rejected(code::TOO_LARGE));
        self.reply(&LocalReply::too_large(ch.max_body_bytes))
    }

    // ---- request body -------------------------------------------------------

    /// A body chunk: `body_size` is the total buffered so far.
    pub fn on_request_body(
        &mut self,
        body_size: usize,
        end_of_stream: bool,
        env: &dyn Env,
    ) -> Output {
        let Some((policy, index)) = self.channel_policy() else {
            return self.out(Step::Continue);
        };
        if !matches!(self.phase, Phase::Holding | Phase::Streaming { .. }) {
            return self.out(Step::Continue);
        }
        let Some(ch) = policy.channels.get(index) else {
            return self.out(Step::Continue);
        };
        self.body_size = body_size;
        if u64::try_from(body_size).unwrap_or(u64::MAX) > ch.max_body_bytes {
            return self.too_large(ch);
        }
        if self.waiting() {
            // Buffer while the store answers; the answer goes on from here.
            self.body_ended |= end_of_stream;
            return self.out(Step::Pause);
        }
        if !end_of_stream {
            // Keep buffering.
            return self.out(Step::Pause);
        }
        self.finish(body_size, env)
    }

    /// Trailers end the request instead of a body callback with
    /// `end_of_stream`: the body is complete now, check it here or it would
    /// be forwarded unchecked.
    pub fn on_request_trailers(&mut self, env: &dyn Env) -> Output {
        if !matches!(self.phase, Phase::Holding | Phase::Streaming { .. }) {
            return self.out(Step::Continue);
        }
        if self.waiting() {
            self.body_ended = true;
            return self.out(Step::Pause);
        }
        self.finish(self.body_size, env)
    }

    /// Runs the body checks on the complete body.
    fn finish(&mut self, body_size: usize, env: &dyn Env) -> Output {
        self.body_ended = false;
        let Some((policy, index)) = self.channel_policy() else {
            return self.out(Step::Continue);
        };
        let Some(ch) = policy.channels.get(index) else {
            return self.out(Step::Continue);
        };
        let Some(body) = env.request_body(body_size) else {
            // Never forward what we could not check.
            self.effect(Effect::Warn(
                "callback-guard: request body unavailable to the filter".to_string(),
            ));
            return self.reply(&LocalReply::new(
                500,
                "internal",
                "callback body could not be inspected",
            ));
        };
        self.body_delivery_id = with_id_source(ch, |source| source.body_id(&body));
        let now_ms = if pipeline::needs_time(ch, self.pending_admission.is_some()) {
            env.now_ms()
        } else {
            0
        };
        let input = BodyInput {
            headers: &self.headers,
            body: &body,
            empty_by_header: self.empty_by_header,
            now_unix_s: now_ms / 1000,
            admission: self.pending_admission.map(|decision| PendingAdmission {
                admission: policy.admission.as_ref(),
                channel: ch.limit.as_ref(),
                decision,
                now_ms,
            }),
        };
        let mut check = BodyCheck::new(&input);
        let step = check.start(ch, &self.headers, &body);
        self.checked(&policy, ch, check, step, body, body_size, env)
    }

    /// Goes on with the store's answer to the last [`Step::Query`].
    pub fn resume(&mut self, answer: Answer, env: &dyn Env) -> Output {
        let Some((policy, index)) = self.channel_policy() else {
            return self.out(Step::Continue);
        };
        let Some(ch) = policy.channels.get(index) else {
            return self.out(Step::Continue);
        };
        match std::mem::take(&mut self.wait) {
            Wait::HeadersDraw {
                classified,
                end_of_stream,
            } => {
                let decision = match answer {
                    Answer::Admission(decision) => decision,
                    // Shared state unavailable: the rules still apply, the
                    // buckets fail open (dropping callbacks because of our
                    // own state would lose data).
                    _ => classified,
                };
                self.headers_drawn(&policy, ch, decision, end_of_stream, env)
            }
            Wait::Check {
                mut check,
                body,
                size,
            } => {
                let step = check.resume(ch, &self.headers, &body, answer);
                self.checked(&policy, ch, check, step, body, size, env)
            }
            other => {
                // Nothing asked: keep waiting for what was.
                self.wait = other;
                self.out(Step::Pause)
            }
        }
    }

    /// Applies a step of the body checks.
    #[allow(clippy::too_many_arguments)]
    fn checked(
        &mut self,
        policy: &Policy,
        ch: &ChannelPolicy,
        check: BodyCheck,
        step: BodyStep,
        body: Vec<u8>,
        size: usize,
        env: &dyn Env,
    ) -> Output {
        let verdict = match step {
            BodyStep::Query(query) => {
                self.wait = Wait::Check { check, body, size };
                return self.out(Step::Query(query));
            }
            BodyStep::Done(verdict) => verdict,
        };
        let BodyVerdict {
            action,
            events,
            verified,
            forget,
        } = verdict;
        for event in events {
            self.count_event(&ch.stats, event);
        }
        if let Some(key) = forget {
            self.effect(Effect::Store(StoreWrite::DedupForget { key }));
        }
        self.verified = verified;
        match action {
            BodyAction::Reply(reply) => self.reply(&reply),
            BodyAction::Forward {
                body: new_body,
                dedup_key,
            } => self.forward(policy, ch, body, size, new_body, dedup_key, env),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        policy: &Policy,
        ch: &ChannelPolicy,
        body: Vec<u8>,
        size: usize,
        new_body: Option<Vec<u8>>,
        dedup_key: Option<String>,
        env: &dyn Env,
    ) -> Output {
        let streamed = matches!(self.phase, Phase::Streaming { .. });
        // `resign` (hold mode only, checked at load): the provider's
        // signature headers go, the mesh signature of exactly the bytes
        // forwarded comes.
        if let (Some(resigner), Some(verifier), false) = (&ch.resign, &ch.signature, streamed) {
            let forwarded = new_body.as_deref().unwrap_or(&body);
            let id = self
                .delivery_id()
                .map_or_else(|| format!("msg_{}", self.trace_id()), str::to_string);
            for name in verifier.signature_headers() {
                self.remove_header(name.to_string());
            }
            for (name, value) in resigner.headers(&id, env.now_ms() / 1000, forwarded) {
                self.set_header(name, value);
            }
        }
        if let Some(dead_letter) = &policy.dead_letter {
            let forwarded = new_body.as_deref().unwrap_or(&body);
            if forwarded.len() <= dead_letter.max_body_bytes {
                self.forwarded_body = Some(forwarded.to_vec());
            }
        }
        let Some(new_body) = new_body else {
            return self.forwarded(ch, dedup_key, env);
        };
        // A rewritten body under a stale length must not go out
        // (`core::hold` drops the length whenever masking can apply, so
        // this is only a guard).
        if matches!(self.phase, Phase::Streaming { length_kept: true }) {
            return self.body_replaced(false, env);
        }
        self.wait = Wait::Rewrite {
            len: new_body.len(),
            dedup_key,
        };
        self.out(Step::ReplaceBody {
            size,
            body: new_body,
        })
    }

    /// The host replaced the body (`ok`) or could not.
    pub fn body_replaced(&mut self, ok: bool, env: &dyn Env) -> Output {
        let Some((policy, index)) = self.channel_policy() else {
            return self.out(Step::Continue);
        };
        let Some(ch) = policy.channels.get(index) else {
            return self.out(Step::Continue);
        };
        let (len, dedup_key) = match std::mem::take(&mut self.wait) {
            Wait::Rewrite { len, dedup_key } => (len, dedup_key),
            _ => (0, None),
        };
        if !ok {
            // Never forward unmasked data we promised to mask.
            return self.reply(&LocalReply::new(
                500,
                "internal",
                "callback body could not be rewritten",
            ));
        }
        // Only a length that changed is written (a header write is a host
        // call).
        let declared = self
            .headers
            .get("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok());
        if self.phase == Phase::Holding && declared != Some(len) {
            self.set_header(
                "content-length",
                Text::number(u64::try_from(len).unwrap_or(u64::MAX)),
            );
        }
        self.forwarded(ch, dedup_key, env)
    }

    fn forwarded(
        &mut self,
        ch: &ChannelPolicy,
        dedup_key: Option<String>,
        env: &dyn Env,
    ) -> Output {
        let streamed = matches!(self.phase, Phase::Streaming { .. });
        // In stream mode the headers are upstream already: the verdict
        // reaches the caller's response only.
        if let Some(scheme) = self.verified
            && !streamed
        {
            self.set_header(header::VERIFIED_SIGNATURE, scheme);
        }
        self.write_traceparent();
        self.dedup_key = dedup_key;
        self.phase = Phase::Forwarded { streamed };
        // Only routing feedback measures from here.
        if ch.routing.is_some() {
            self.upstream_start_ms = env.now_ms();
        }
        self.record(Verdict::Forwarded, None);
        if let Some(cluster) = &self.cluster {
            let index = ch.routing.as_ref().and_then(|r| r.cluster_index(cluster));
            self.count(ch.stats.routed(index, cluster), 1);
        }
        self.out(Step::Continue)
    }

    fn reply(&mut self, reply: &LocalReply) -> Output {
        let body = reply.body(self.trace_id());
        let mut headers: Vec<(String, String)> = Vec::with_capacity(4 + reply.headers.len());
        if !body.is_empty() {
            headers.push(("content-type".into(), "application/json".into()));
        }
        if let Some(trace) = self.trace {
            headers.push((header::TRACE_ID.into(), trace.trace_id().to_string()));
        }
        if let Some(scheme) = self.verified {
            headers.push((header::VERIFIED_SIGNATURE.into(), scheme.into()));
        }
        headers.extend(reply.headers.iter().cloned());
        self.effect(Effect::Reply {
            status: reply.status,
            headers,
            body,
        });
        self.phase = Phase::Replied;
        self.wait = Wait::Nothing;
        self.record(Verdict::of_reply(reply.status), Some(reply));
        self.out(Step::Pause)
    }

    /// The decision record for the access log and, for a refusal, a log
    /// line (rate-limited by the filter).
    fn record(&mut self, verdict: Verdict, reply: Option<&LocalReply>) {
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
            delivery_id: self.delivery_id(),
            cluster: self.cluster.as_deref(),
            priority: self.priority_admitted.map(Priority::as_str),
            admission_reason: self.admission_reason.as_deref(),
            trace_id: self.trace_id(),
        };
        let level = policy.refusal_log.level;
        let refusal = (verdict == Verdict::Refused && level != LogLevel::Off)
            .then(|| (level, record.log_line()));
        let effect = Effect::Decision {
            record: record.to_json(),
            refusal,
        };
        self.effect(effect);
    }

    // ---- response and end of stream --------------------------------------------

    pub fn on_response_headers(&mut self, env: &dyn Env) -> Output {
        if matches!(self.phase, Phase::Replied | Phase::Passthrough) || self.policy.is_none() {
            return self.out(Step::Continue);
        }
        if let Some(trace) = self.trace {
            let value = Text::copy_of(trace.trace_id());
            self.effect(Effect::SetResponseHeader(header::TRACE_ID, value));
        }
        if let Some(scheme) = self.verified {
            self.effect(Effect::SetResponseHeader(
                header::VERIFIED_SIGNATURE,
                scheme.into(),
            ));
        }
        // The status matters only for callbacks this filter forwarded, or
        // whose headers it let go upstream (stream mode: a cluster that
        // refuses the connection answers before the body is checked).
        if matches!(
            self.phase,
            Phase::Forwarded { .. } | Phase::Streaming { .. }
        ) && let Some((policy, index)) = self.channel_policy()
            && let Some(ch) = policy.channels.get(index)
        {
            let status = env
                .response_header(":status")
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(0);
            self.response_status = Some(status);
            let failed = status >= 500;
            self.observe_route(index, ch, failed, env);
            if failed {
                self.upstream_failed(&policy, ch, Some(status), &status.to_string(), env);
            } else if (200..300).contains(&status) {
                self.delivered(ch, env);
            } else {
                // Not delivered: the provider retries a non-2xx.
                self.forget_delivery(ch);
            }
        }
        self.out(Step::Continue)
    }

    /// The stream ended (Envoy's `on_log`).
    pub fn on_end(&mut self, env: &dyn Env) -> Output {
        let Some((policy, index)) = self.channel_policy() else {
            return self.out(Step::Continue);
        };
        let Some(ch) = policy.channels.get(index) else {
            return self.out(Step::Continue);
        };
        if matches!(self.phase, Phase::Forwarded { .. }) && self.response_status.is_none() {
            // No response headers: Envoy answers the caller itself when the
            // upstream fails (503/504, seen above), so this is mostly the
            // caller hanging up. Only an upstream cause counts against the
            // cluster; either way the provider got no answer and will
            // retry, so dedup lets that retry through.
            let details = env.property(&["response", "code_details"]);
            if let Some(details) = details.as_deref().filter(|d| upstream_caused(d)) {
                self.observe_route(index, ch, true, env);
                self.upstream_failed(&policy, ch, None, details, env);
            } else {
                self.forget_delivery(ch);
            }
        }
        let elapsed = env.now_ms().saturating_sub(self.start_ms);
        self.effect(Effect::Histogram(ch.stats.duration.clone(), elapsed));
        self.out(Step::Continue)
    }

    /// The upstream failed (5xx, reset, timeout): count it, let the
    /// provider's retry through dedup, and queue a dead-letter copy of a
    /// callback the filter forwarded.
    fn upstream_failed(
        &mut self,
        policy: &Policy,
        ch: &ChannelPolicy,
        status: Option<u32>,
        failure: &str,
        env: &dyn Env,
    ) {
        let cluster = self
            .cluster
            .as_deref()
            .map(str::to_string)
            .or_else(|| env.property(&["xds", "cluster_name"]))
            .unwrap_or_else(|| "unknown".to_string());
        let index = ch.routing.as_ref().and_then(|r| r.cluster_index(&cluster));
        self.count(ch.stats.upstream_failures(index, &cluster), 1);
        self.forget_delivery(ch);
        if matches!(self.phase, Phase::Forwarded { .. }) && policy.dead_letter.is_some() {
            let mut headers: Vec<(&str, &str)> = deadletter::COPIED_HEADERS
                .iter()
                .filter_map(|name| self.headers.get(name).map(|v| (*name, v)))
                .collect();
            if let Some(scheme) = self.verified {
                headers.push((header::VERIFIED_SIGNATURE, scheme));
            }
            if let Some(priority) = self.priority_admitted {
                headers.push((header::PRIORITY_ADMITTED, priority.as_str()));
            }
            let (body, body_base64, body_omitted) =
                deadletter::body_fields(self.forwarded_body.as_deref());
            let envelope = Envelope {
                version: deadletter::ENVELOPE_VERSION,
                channel: &ch.name,
                delivery_id: self.delivery_id(),
                trace_id: self.trace_id(),
                cluster: Some(&cluster),
                status,
                failure,
                time_unix_ms: env.now_ms(),
                headers,
                body,
                body_base64,
                body_omitted,
            };
            let envelope = envelope.to_json();
            self.effect(Effect::DeadLetter {
                channel: ch.name.clone(),
                envelope,
            });
        }
    }

    /// The upstream took the delivery (2xx): a retry is a duplicate now.
    fn delivered(&mut self, ch: &ChannelPolicy, env: &dyn Env) {
        if let (Some(_), Some(key)) = (&ch.dedup, &self.dedup_key) {
            let write = StoreWrite::DedupDelivered {
                key: key.clone(),
                now_unix_s: env.now_ms() / 1000,
            };
            self.effect(Effect::Store(write));
        }
    }

    /// Lets the provider's retry of this delivery through dedup.
    fn forget_delivery(&mut self, ch: &ChannelPolicy) {
        if let (Some(_), Some(key)) = (&ch.dedup, &self.dedup_key) {
            let write = StoreWrite::DedupForget { key: key.clone() };
            self.effect(Effect::Store(write));
        }
    }

    /// This response's latency and outcome, for the routing health of its
    /// cluster (the worker sends its feedback in batches).
    fn observe_route(&mut self, index: usize, ch: &ChannelPolicy, failed: bool, env: &dyn Env) {
        if let (Some(routing), Some(cluster)) = (&ch.routing, &self.cluster)
            && let Some(cluster) = routing.cluster_index(cluster)
        {
            let now = env.now_ms();
            let observation = Observation {
                cluster,
                latency_ms: now.saturating_sub(self.upstream_start_ms),
                failed,
                now_ms: now,
            };
            self.effect(Effect::Route {
                channel: index,
                observation,
            });
        }
    }
}

/// Whether Envoy's `response.code_details` of a stream that ended without
/// response headers names an upstream cause (`upstream_reset_*`,
/// `upstream_response_timeout`, ...) rather than the caller
/// (`downstream_remote_disconnect`, ...).
fn upstream_caused(details: &str) -> bool {
    details.starts_with("upstream")
}

/// Calls `f` with where a channel request's delivery id is read, for the
/// decision record: where dedup reads it, else where the scheme (or the
/// fallback header list) puts it.
fn with_id_source<R>(ch: &ChannelPolicy, f: impl FnOnce(&DeliveryIdSource) -> R) -> R {
    match &ch.dedup {
        Some(dedup) => f(dedup.source()),
        None => f(&DeliveryIdSource::for_scheme(
            ch.signature.as_ref().map(|v| v.scheme_kind()),
        )),
    }
}

#[cfg(test)]
mod tests;

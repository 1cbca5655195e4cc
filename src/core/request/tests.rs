//! Whole request sequences through the machine, without Envoy: a fake host
//! ([`FakeEnv`]) and a driver that answers the machine the way the filter
//! does ([`drive`]).

use super::*;
use crate::config;
use crate::core::admission::Cause;
use crate::core::dedup::DedupOutcome;
use crate::core::shared::MemoryStore;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW_MS: u64 = 1_700_000_000_000;

struct FakeEnv {
    now: Cell<u64>,
    /// How often the machine read the clock / drew random numbers.
    clock_reads: Cell<u32>,
    random_reads: Cell<u32>,
    rng: Cell<u64>,
    body: RefCell<Vec<u8>>,
    status: RefCell<Option<String>>,
    properties: RefCell<HashMap<String, String>>,
    routing: MemoryStore,
}

impl FakeEnv {
    fn new() -> Self {
        Self {
            now: Cell::new(NOW_MS),
            clock_reads: Cell::new(0),
            random_reads: Cell::new(0),
            rng: Cell::new(7),
            body: RefCell::new(Vec::new()),
            status: RefCell::new(None),
            properties: RefCell::new(HashMap::new()),
            routing: MemoryStore::new(),
        }
    }
    fn body(&self, body: &[u8]) {
        *self.body.borrow_mut() = body.to_vec();
    }
    fn status(&self, status: u32) {
        *self.status.borrow_mut() = Some(status.to_string());
    }
}

impl Env for FakeEnv {
    fn now_ms(&self) -> u64 {
        self.clock_reads.set(self.clock_reads.get() + 1);
        self.now.get()
    }
    fn random_u64(&self) -> u64 {
        self.random_reads.set(self.random_reads.get() + 1);
        self.rng
            .set(self.rng.get().wrapping_add(0x9e37_79b9_7f4a_7c15));
        self.rng.get()
    }
    fn random_f64(&self) -> f64 {
        0.5
    }
    fn peer_spiffe_id(&self) -> Option<String> {
        None
    }
    fn property(&self, path: &[&str]) -> Option<String> {
        self.properties.borrow().get(&path.join(".")).cloned()
    }
    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        let body = self.body.borrow();
        body.get(..size).map(<[u8]>::to_vec)
    }
    fn response_header(&self, name: &str) -> Option<String> {
        (name == ":status")
            .then(|| self.status.borrow().clone())
            .flatten()
    }
    fn with_routing_store(&self, _now_ms: u64, read: &mut dyn FnMut(&dyn SharedStore)) {
        read(&self.routing);
    }
}

fn policy(json: &str) -> Rc<Policy> {
    Rc::new(config::load(json.as_bytes(), &|_| None).unwrap())
}

fn one_channel(extra: &str, top: &str) -> Rc<Policy> {
    policy(&format!(
        r#"{{"channels":[{{"name":"a","match":{{"path_prefix":"/cb"}}{extra}}}]{top}}}"#
    ))
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    let mut all = vec![(":method", "POST"), (":path", "/cb"), (":authority", "svc")];
    all.extend_from_slice(pairs);
    all.into_iter().collect()
}

/// Answers the machine as the filter does (the store at once, the body
/// replaced), collecting every effect; returns them with the final step.
fn drive(
    request: &mut Request,
    mut out: Output,
    env: &dyn Env,
    store: &MemoryStore,
) -> (Vec<Effect>, Step) {
    let mut effects = Vec::new();
    // The worker's bucket leases, for this request (the tests' buckets are
    // slow or never drained: each draw is exact either way).
    let mut leases = LocalLeases::default();
    loop {
        for effect in &out.effects {
            if let Effect::Store(write) = effect {
                request.write_locally(write, store);
            }
        }
        effects.append(&mut out.effects);
        out = match out.step {
            Step::Query(query) => {
                let answer = request.answer_locally(&query, store, &mut leases);
                request.resume(answer, env)
            }
            Step::ReplaceBody { .. } => request.body_replaced(true, env),
            step => return (effects, step),
        };
    }
}

/// A whole hold-mode request: headers, one body callback, response, end.
struct Run {
    request: Request,
    /// Effects of the request phase.
    effects: Vec<Effect>,
    step: Step,
}

fn send(policy: &Rc<Policy>, pairs: &[(&str, &str)], body: &[u8], store: &MemoryStore) -> Run {
    let env = FakeEnv::new();
    env.body(body);
    let mut request = Request::new(Some(policy.clone()));
    let out = request.on_request_headers(headers(pairs), body.is_empty(), &env);
    let (mut effects, step) = drive(&mut request, out, &env, store);
    if step != Step::Pause || body.is_empty() || request.phase() == Phase::Replied {
        return Run {
            request,
            effects,
            step,
        };
    }
    let out = request.on_request_body(body.len(), true, &env);
    let (more, step) = drive(&mut request, out, &env, store);
    effects.extend(more);
    Run {
        request,
        effects,
        step,
    }
}

fn respond(run: &mut Run, status: u32, store: &MemoryStore) -> Vec<Effect> {
    let env = FakeEnv::new();
    env.status(status);
    let out = run.request.on_response_headers(&env);
    let (mut effects, _) = drive(&mut run.request, out, &env, store);
    let out = run.request.on_end(&env);
    effects.extend(drive(&mut run.request, out, &env, store).0);
    effects
}

fn reply_status(effects: &[Effect]) -> Option<u32> {
    effects.iter().find_map(|e| match e {
        Effect::Reply { status, .. } => Some(*status),
        _ => None,
    })
}

fn reply_header<'a>(effects: &'a [Effect], name: &str) -> Option<&'a str> {
    effects.iter().find_map(|e| match e {
        Effect::Reply { headers, .. } => headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str()),
        _ => None,
    })
}

fn counted(effects: &[Effect], prefix: &str) -> u64 {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Count(name, by) if name.starts_with(prefix) => Some(*by),
            _ => None,
        })
        .sum()
}

fn set_header<'a>(effects: &'a [Effect], name: &str) -> Option<&'a str> {
    effects.iter().find_map(|e| match e {
        Effect::SetRequestHeader(k, v) if k == name => Some(v.as_ref()),
        _ => None,
    })
}

fn removed(effects: &[Effect], name: &str) -> bool {
    effects
        .iter()
        .any(|e| matches!(e, Effect::RemoveRequestHeader(k) if k == name))
}

fn decision(effects: &[Effect]) -> Option<serde_json::Value> {
    effects.iter().find_map(|e| match e {
        Effect::Decision { record, .. } => serde_json::from_slice(record).ok(),
        _ => None,
    })
}

fn github_signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    let tag: Vec<String> = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={}", tag.concat())
}

const GITHUB: &str = r#","signature":{"scheme":"github","secrets":[{"value":"s3cret"}]}"#;
const DEDUP: &str = r#","dedup":{"window_s":60,"id_header":"x-id","allow_unsigned":true}"#;
const JSON: (&str, &str) = ("content-type", "application/json");

#[test]
fn hold_mode_forwards_a_verified_callback_with_its_headers_set_after_the_body() {
    let p = one_channel(GITHUB, "");
    let body = br#"{"a":1}"#;
    let sig = github_signature(b"s3cret", body);
    let env = FakeEnv::new();
    env.body(body);
    let store = MemoryStore::new();
    let mut request = Request::new(Some(p));
    let out = request.on_request_headers(
        headers(&[
            JSON,
            ("x-hub-signature-256", &sig),
            ("x-verified-signature", "x"),
        ]),
        false,
        &env,
    );
    // Headers held; the spoofed header goes; the trace made here is
    // written only once the request goes upstream.
    assert_eq!(out.step, Step::Pause);
    assert_eq!(request.phase(), Phase::Holding);
    assert!(removed(&out.effects, "x-verified-signature"));
    assert!(set_header(&out.effects, "traceparent").is_none());
    assert_eq!(counted(&out.effects, "callback_requests_total"), 1);
    assert!(set_header(&out.effects, "x-verified-signature").is_none());
    // A chunk: keep buffering, nothing else.
    let out = request.on_request_body(3, false, &env);
    assert_eq!(
        out,
        Output {
            effects: vec![],
            step: Step::Pause
        }
    );
    // The end: checked, forwarded with the verdict on the headers.
    let out = request.on_request_body(body.len(), true, &env);
    let (effects, step) = drive(&mut request, out, &env, &store);
    assert_eq!(step, Step::Continue);
    assert_eq!(request.phase(), Phase::Forwarded { streamed: false });
    assert_eq!(set_header(&effects, "x-verified-signature"), Some("github"));
    let traceparent = set_header(&effects, "traceparent").unwrap();
    assert_eq!(traceparent.len(), 55, "{traceparent}");
    assert_eq!(counted(&effects, "callback_signature_verified_total"), 1);
    let record = decision(&effects).unwrap();
    assert_eq!(record["verdict"], "forwarded");
    assert_eq!(record["scheme"], "github");
    assert_eq!(record["trace_id"], traceparent[3..35]);
    // Later callbacks change nothing.
    let out = request.on_request_trailers(&env);
    assert_eq!(
        out,
        Output {
            effects: vec![],
            step: Step::Continue
        }
    );
    // The response carries the trace id and the verdict; the end records
    // the duration.
    env.status(200);
    let out = request.on_response_headers(&env);
    assert!(out.effects.iter().any(
        |e| matches!(e, Effect::SetResponseHeader(k, v) if *k == header::VERIFIED_SIGNATURE && v == "github")
    ));
    assert!(
        out.effects
            .iter()
            .any(|e| matches!(e, Effect::SetResponseHeader(k, _) if *k == header::TRACE_ID))
    );
    let out = request.on_end(&env);
    assert!(
        matches!(&out.effects[..], [Effect::Histogram(name, 0)] if name.starts_with("callback_duration_ms"))
    );
}

#[test]
fn a_forged_callback_is_refused_and_counted_once() {
    let forged = format!("sha256={}", "0".repeat(64));
    let p = one_channel(GITHUB, "");
    let store = MemoryStore::new();
    let run = send(&p, &[JSON, ("x-hub-signature-256", &forged)], b"{}", &store);
    assert_eq!(run.step, Step::Pause);
    assert_eq!(run.request.phase(), Phase::Replied);
    assert_eq!(reply_status(&run.effects), Some(401));
    // Answered by the filter: no header is written on a request that goes
    // nowhere (no generated `traceparent`); the reply names the trace.
    assert!(
        !run.effects
            .iter()
            .any(|e| matches!(e, Effect::SetRequestHeader(..))),
        "{:?}",
        run.effects
    );
    assert_eq!(
        reply_header(&run.effects, "x-callback-trace-id").map(str::len),
        Some(32)
    );
    assert_eq!(counted(&run.effects, "callback_requests_total"), 1);
    assert_eq!(counted(&run.effects, "callback_empty_total"), 0);
    let record = decision(&run.effects).unwrap();
    assert_eq!(record["verdict"], "refused");
    assert_eq!(record["reason"], "signature_mismatch");
    assert!(run.effects.iter().any(|e| matches!(
        e,
        Effect::Decision {
            refusal: Some(_),
            ..
        }
    )));
}

#[test]
fn passthrough_requests_are_left_alone() {
    let p = policy(
        r#"{"channels":[{"name":"a","match":{"path_prefix":"/cb"}}],
            "reject_unmatched":["/guarded/"]}"#,
    );
    let env = FakeEnv::new();
    // Another path: passes with nothing done, not even a clock read or a
    // trace, and nothing on its response.
    let mut request = Request::new(Some(p.clone()));
    let out = request.on_request_headers(
        [(":method", "POST"), (":path", "/other")]
            .into_iter()
            .collect(),
        false,
        &env,
    );
    assert_eq!(
        out,
        Output {
            effects: vec![],
            step: Step::Continue
        }
    );
    assert_eq!(request.phase(), Phase::Passthrough);
    assert_eq!(request.on_request_body(10, true, &env).step, Step::Continue);
    let out = request.on_response_headers(&env);
    assert!(out.effects.is_empty(), "{:?}", out.effects);
    assert!(request.on_end(&env).effects.is_empty());
    assert_eq!((env.clock_reads.get(), env.random_reads.get()), (0, 0));
    // ... except that the headers only the filter sets go.
    let mut request = Request::new(Some(p.clone()));
    let out = request.on_request_headers(
        [
            (":method", "POST"),
            (":path", "/other"),
            ("x-verified-signature", "github"),
        ]
        .into_iter()
        .collect(),
        false,
        &env,
    );
    assert_eq!(
        out.effects,
        vec![Effect::RemoveRequestHeader("x-verified-signature".into())]
    );
    // A GET handshake on the channel path passes too.
    let mut request = Request::new(Some(p.clone()));
    let get: Headers = [(":method", "GET"), (":path", "/cb")].into_iter().collect();
    let out = request.on_request_headers(get, true, &env);
    assert_eq!(out.step, Step::Continue);
    assert_eq!(counted(&out.effects, "callback_requests_total"), 0);
    // Under a guard prefix without a channel: 404.
    let mut request = Request::new(Some(p));
    let out = request.on_request_headers(
        [(":method", "POST"), (":path", "/guarded/x")]
            .into_iter()
            .collect(),
        false,
        &env,
    );
    assert_eq!(reply_status(&out.effects), Some(404));
    // The refusal names a trace id, but writes no `traceparent`.
    assert!(reply_header(&out.effects, header::TRACE_ID).is_some());
    assert!(set_header(&out.effects, "traceparent").is_none());
    assert_eq!(counted(&out.effects, "callback_unmatched_total"), 1);
    assert!(decision(&out.effects).is_none());
    // Without a policy nothing at all happens.
    let mut request = Request::new(None);
    let out = request.on_request_headers(headers(&[]), true, &env);
    assert_eq!(
        out,
        Output {
            effects: vec![],
            step: Step::Continue
        }
    );
}

#[test]
fn too_large_is_refused_at_the_headers_or_at_the_chunk_that_passes_the_limit() {
    let p = one_channel(r#","max_body_bytes":10"#, "");
    let env = FakeEnv::new();
    let mut request = Request::new(Some(p.clone()));
    let out = request.on_request_headers(headers(&[("content-length", "11")]), false, &env);
    assert_eq!(reply_status(&out.effects), Some(413));
    assert_eq!(request.phase(), Phase::Replied);
    // Nothing after an early reply.
    assert_eq!(request.on_request_body(11, true, &env).effects, vec![]);
    assert_eq!(request.on_response_headers(&env).effects, vec![]);
    // Chunked: the chunk that passes the limit is answered.
    let mut request = Request::new(Some(p));
    let out = request.on_request_headers(headers(&[]), false, &env);
    assert_eq!(out.step, Step::Pause);
    assert_eq!(request.on_request_body(10, false, &env).step, Step::Pause);
    let out = request.on_request_body(11, false, &env);
    assert_eq!(reply_status(&out.effects), Some(413));
    assert_eq!(
        counted(
            &out.effects,
            "callback_rejected_total_channel=.=a;.;_reason=.=too_large"
        ),
        1
    );
}

#[test]
fn empty_callbacks_are_answered_by_body_or_by_header() {
    let p = one_channel("", "");
    let store = MemoryStore::new();
    let run = send(&p, &[JSON], b" {} ", &store);
    assert_eq!(reply_status(&run.effects), Some(204));
    assert_eq!(counted(&run.effects, "callback_empty_total"), 1);
    assert_eq!(decision(&run.effects).unwrap()["verdict"], "answered");
    // Empty by header, with the end of the stream on the headers.
    let run = send(&p, &[("x-callback-status", "204")], b"", &store);
    assert_eq!(reply_status(&run.effects), Some(204));
}

#[test]
fn trailers_end_the_body_and_it_is_checked() {
    let p = one_channel(r#","mask":{"fields":["phone"]}"#, "");
    let env = FakeEnv::new();
    let body = br#"{"phone":"+8613812345678"}"#;
    env.body(body);
    let store = MemoryStore::new();
    let mut request = Request::new(Some(p));
    let out = request.on_request_headers(headers(&[JSON]), false, &env);
    assert_eq!(out.step, Step::Pause);
    assert_eq!(
        request.on_request_body(body.len(), false, &env).step,
        Step::Pause
    );
    let out = request.on_request_trailers(&env);
    // The body is masked: the host is asked to replace it, then the
    // length is corrected.
    let Step::ReplaceBody { size, body: masked } = &out.step else {
        panic!("{out:?}")
    };
    assert_eq!(*size, body.len());
    assert!(!String::from_utf8_lossy(masked).contains("13812345678"));
    let len = masked.len().to_string();
    let (effects, step) = drive(&mut request, out, &env, &store);
    assert_eq!(step, Step::Continue);
    assert_eq!(set_header(&effects, "content-length"), Some(len.as_str()));
    assert_eq!(counted(&effects, "callback_masked_fields_total"), 1);
}

#[test]
fn a_body_that_cannot_be_replaced_is_never_forwarded() {
    let p = one_channel(r#","mask":{"fields":["phone"]}"#, "");
    let env = FakeEnv::new();
    let body = br#"{"phone":"1"}"#;
    env.body(body);
    let mut request = Request::new(Some(p));
    request.on_request_headers(headers(&[JSON]), false, &env);
    let out = request.on_request_body(body.len(), true, &env);
    assert!(matches!(out.step, Step::ReplaceBody { .. }));
    let out = request.body_replaced(false, &env);
    assert_eq!(reply_status(&out.effects), Some(500));
    assert!(set_header(&out.effects, "content-length").is_none());
    assert_eq!(request.phase(), Phase::Replied);
}

#[test]
fn stream_mode_lets_the_headers_go_and_holds_the_body() {
    let p = one_channel(
        r#","mask":{"fields":["phone"]}"#,
        r#","hold_headers":false"#,
    );
    let env = FakeEnv::new();
    let body = br#"{"phone":"+8613812345678"}"#;
    env.body(body);
    let store = MemoryStore::new();
    let mut request = Request::new(Some(p));
    let out = request.on_request_headers(
        headers(&[JSON, ("content-length", &body.len().to_string())]),
        false,
        &env,
    );
    // The headers go now, without the length masking may change, with the
    // generated `traceparent`.
    assert_eq!(out.step, Step::Continue);
    assert!(removed(&out.effects, "content-length"));
    assert!(set_header(&out.effects, "traceparent").is_some());
    assert_eq!(request.phase(), Phase::Streaming { length_kept: false });
    assert_eq!(request.on_request_body(4, false, &env).step, Step::Pause);
    // The upstream may answer before the body is checked: its status counts.
    let out = request.on_request_body(body.len(), true, &env);
    let (effects, step) = drive(&mut request, out, &env, &store);
    assert_eq!(step, Step::Continue);
    assert_eq!(request.phase(), Phase::Forwarded { streamed: true });
    // Headers are upstream already: none is set after the body.
    assert!(!effects.iter().any(|e| matches!(
        e,
        Effect::SetRequestHeader(..) | Effect::RemoveRequestHeader(_)
    )));
}

#[test]
fn stream_mode_never_rewrites_a_body_under_its_declared_length() {
    // No mask at the headers' decision would keep the length; a masking
    // channel drops it, so a kept length plus a rewrite is refused (guard).
    let p = one_channel(
        r#","mask":{"fields":["phone"]}"#,
        r#","hold_headers":false"#,
    );
    let env = FakeEnv::new();
    env.body(br#"{"phone":"1"}"#);
    let mut request = Request::new(Some(p));
    request.on_request_headers(headers(&[JSON]), false, &env);
    // Chunked upstream: nothing declared, so the phase keeps no length.
    assert_eq!(request.phase(), Phase::Streaming { length_kept: false });
    request.phase = Phase::Streaming { length_kept: true };
    let out = request.on_request_body(13, true, &env);
    assert_eq!(reply_status(&out.effects), Some(500));
}

#[test]
fn dedup_in_flight_delivered_and_forgotten_on_failure() {
    let p = one_channel(DEDUP, "");
    let store = MemoryStore::new();
    let id = ("x-id", "d1");
    let mut first = send(&p, &[JSON, id], br#"{"a":1}"#, &store);
    assert_eq!(first.step, Step::Continue);
    // While the first is in flight: 409 in_progress with retry-after.
    let second = send(&p, &[JSON, id], br#"{"a":1}"#, &store);
    assert_eq!(reply_status(&second.effects), Some(409));
    assert!(reply_header(&second.effects, "retry-after").is_some());
    // The upstream fails: forgotten, so the retry goes through.
    let effects = respond(&mut first, 503, &store);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Store(StoreWrite::DedupForget { .. })))
    );
    assert_eq!(counted(&effects, "callback_upstream_failures_total"), 1);
    let mut retry = send(&p, &[JSON, id], br#"{"a":1}"#, &store);
    assert_eq!(retry.step, Step::Continue);
    // Delivered (2xx): the next copy is a duplicate.
    let effects = respond(&mut retry, 200, &store);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Store(StoreWrite::DedupDelivered { .. })))
    );
    let dup = send(&p, &[JSON, id], br#"{"a":1}"#, &store);
    assert_eq!(reply_status(&dup.effects), Some(200));
    assert_eq!(
        reply_header(&dup.effects, "x-callback-duplicate"),
        Some("true")
    );
    assert_eq!(counted(&dup.effects, "callback_duplicates_total"), 1);
    // A 4xx is not delivered either: forgotten.
    let other = ("x-id", "d2");
    let mut refused = send(&p, &[JSON, other], br#"{"a":1}"#, &store);
    respond(&mut refused, 400, &store);
    assert_eq!(
        send(&p, &[JSON, other], br#"{"a":1}"#, &store).step,
        Step::Continue
    );
}

#[test]
fn a_failed_forwarded_callback_is_dead_lettered_and_fed_back_to_routing() {
    let p = one_channel(
        &format!(
            r#"{DEDUP},"routing":{{"clusters":[{{"name":"c1","weight":1,"latency_sla_ms":100}}]}}"#
        ),
        r#","dead_letter":{"cluster":"dlq"}"#,
    );
    let store = MemoryStore::new();
    let mut run = send(&p, &[JSON, ("x-id", "d1")], br#"{"a":1}"#, &store);
    assert_eq!(set_header(&run.effects, "x-callback-cluster"), Some("c1"));
    assert_eq!(counted(&run.effects, "callback_routed_total"), 1);
    let effects = respond(&mut run, 502, &store);
    let Some(Effect::DeadLetter { channel, envelope }) = effects
        .iter()
        .find(|e| matches!(e, Effect::DeadLetter { .. }))
    else {
        panic!("{effects:?}")
    };
    assert_eq!(channel, "a");
    let envelope: serde_json::Value = serde_json::from_slice(envelope).unwrap();
    assert_eq!(envelope["status"], 502);
    assert_eq!(envelope["cluster"], "c1");
    assert_eq!(envelope["delivery_id"], "d1");
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Route { channel: 0, observation } if observation.failed
    )));
    // Delivered by a retry, the next copy is answered as a duplicate: a
    // reply of the filter is never dead-lettered nor fed back.
    let mut retry = send(&p, &[JSON, ("x-id", "d1")], br#"{"a":1}"#, &store);
    assert_eq!(retry.request.phase(), Phase::Forwarded { streamed: false });
    let _ = respond(&mut retry, 200, &store);
    let mut dup = send(&p, &[JSON, ("x-id", "d1")], br#"{"a":1}"#, &store);
    assert_eq!(reply_status(&dup.effects), Some(200));
    let effects = respond(&mut dup, 503, &store);
    assert!(
        effects.iter().all(|e| matches!(e, Effect::Histogram(..))),
        "{effects:?}"
    );
}

#[test]
fn a_stream_that_ends_without_a_response_is_judged_by_its_cause() {
    let p = one_channel(DEDUP, r#","dead_letter":{"cluster":"dlq"}"#);
    let store = MemoryStore::new();
    for (details, upstream) in [
        (
            "upstream_reset_before_response_started{connection_termination}",
            true,
        ),
        ("downstream_remote_disconnect", false),
    ] {
        let mut run = send(&p, &[JSON, ("x-id", "d1")], br#"{"a":1}"#, &store);
        assert_eq!(run.step, Step::Continue, "{details}");
        let env = FakeEnv::new();
        env.properties
            .borrow_mut()
            .insert("response.code_details".into(), details.into());
        env.properties
            .borrow_mut()
            .insert("xds.cluster_name".into(), "svc".into());
        let out = run.request.on_end(&env);
        let (effects, _) = drive(&mut run.request, out, &env, &store);
        // Either way the retry is let through.
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, Effect::Store(StoreWrite::DedupForget { .. })))
        );
        assert_eq!(
            effects
                .iter()
                .any(|e| matches!(e, Effect::DeadLetter { .. })),
            upstream,
            "{details}"
        );
        assert_eq!(
            counted(
                &effects,
                "callback_upstream_failures_total_channel=.=a;.;_cluster=.=svc"
            ),
            u64::from(upstream),
            "{details}"
        );
    }
}

#[test]
fn a_query_waits_for_its_answer_and_earlier_steps_do_not_run_again() {
    let p = one_channel(&format!(r#"{DEDUP},"limits":{{"rps":1,"burst":1}}"#), "");
    let env = FakeEnv::new();
    let body = br#"{"a":1}"#;
    env.body(body);
    let mut request = Request::new(Some(p.clone()));
    // Unsigned channel: the bucket draw is asked at the headers.
    let out = request.on_request_headers(headers(&[JSON, ("x-id", "d1")]), false, &env);
    let Step::Query(Query::AdmissionDraw { decision, .. }) = out.step else {
        panic!("{out:?}")
    };
    assert_eq!(decision, Decision::Admitted(Priority::Normal));
    assert_eq!(counted(&out.effects, "callback_requests_total"), 1);
    // The body arrives (and ends) while the store is asked: buffered.
    assert_eq!(
        request.on_request_body(body.len(), true, &env),
        Output {
            effects: vec![],
            step: Step::Pause
        }
    );
    // The answer (a store that failed: fail open) goes on from the draw:
    // the body is checked and dedup asked, nothing counted twice.
    let out = request.resume(Answer::Unavailable, &env);
    assert_eq!(counted(&out.effects, "callback_requests_total"), 0);
    assert_eq!(counted(&out.effects, "callback_admission_total"), 1);
    let Step::Query(Query::DedupCheck { key, .. }) = &out.step else {
        panic!("{out:?}")
    };
    assert!(key.contains("d1"));
    let out = request.resume(
        Answer::Dedup(DedupOutcome::InFlight { retry_after_s: 7 }),
        &env,
    );
    assert_eq!(reply_status(&out.effects), Some(409));
    assert_eq!(reply_header(&out.effects, "retry-after"), Some("7"));
    assert_eq!(counted(&out.effects, "callback_admission_total"), 0);
    // A shed answer refuses at the headers with 429.
    let mut request = Request::new(Some(p));
    request.on_request_headers(headers(&[JSON]), false, &env);
    let shed = Decision::Shed {
        priority: Priority::Normal,
        retry_after_s: 3,
        cause: Cause::RateLimited,
    };
    let out = request.resume(Answer::Admission(shed), &env);
    assert_eq!(reply_status(&out.effects), Some(429));
    assert_eq!(request.phase(), Phase::Replied);
}

#[test]
fn a_signed_channel_draws_its_buckets_only_after_the_signature() {
    let p = one_channel(&format!(r#"{GITHUB},"limits":{{"rps":1,"burst":1}}"#), "");
    let body = br#"{"a":1}"#;
    let env = FakeEnv::new();
    env.body(body);
    // Forged: refused without asking the store.
    let mut request = Request::new(Some(p.clone()));
    let out = request.on_request_headers(headers(&[JSON]), false, &env);
    assert_eq!(out.step, Step::Pause);
    let out = request.on_request_body(body.len(), true, &env);
    assert_eq!(reply_status(&out.effects), Some(401));
    // Verified: the draw is asked after the signature.
    let sig = github_signature(b"s3cret", body);
    let mut request = Request::new(Some(p.clone()));
    request.on_request_headers(headers(&[JSON, ("x-hub-signature-256", &sig)]), false, &env);
    let out = request.on_request_body(body.len(), true, &env);
    assert!(matches!(out.step, Step::Query(Query::AdmissionDraw { .. })));
    // Drawn from a real store: one token, then 429 on the next. The body
    // checks' events are counted once they are done.
    let store = MemoryStore::new();
    let (effects, step) = drive(&mut request, out, &env, &store);
    assert_eq!(step, Step::Continue, "{effects:?}");
    assert_eq!(counted(&effects, "callback_signature_verified_total"), 1);
    assert_eq!(counted(&effects, "callback_admission_total"), 1);
    let run = send(&p, &[JSON, ("x-hub-signature-256", &sig)], body, &store);
    assert_eq!(reply_status(&run.effects), Some(429));
    assert_eq!(
        reply_header(&run.effects, header::VERIFIED_SIGNATURE),
        Some("github")
    );
}

#[test]
fn an_event_clock_reads_the_host_once() {
    let reads = Cell::new(0);
    let clock = EventClock::new(|| {
        reads.set(reads.get() + 1);
        42
    });
    assert_eq!(
        (clock.now_ms(), clock.now_ms(), clock.now_ms()),
        (42, 42, 42)
    );
    assert_eq!(reads.get(), 1);
}

/// One host event as the filter presents it: the fake host behind an
/// [`EventClock`].
struct OneEvent<'a> {
    host: &'a FakeEnv,
    clock: EventClock<Box<dyn Fn() -> u64 + 'a>>,
}

impl<'a> OneEvent<'a> {
    fn new(host: &'a FakeEnv) -> Self {
        Self {
            host,
            clock: EventClock::new(Box::new(|| host.now_ms())),
        }
    }
}

impl Env for OneEvent<'_> {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
    fn random_u64(&self) -> u64 {
        self.host.random_u64()
    }
    fn random_f64(&self) -> f64 {
        self.host.random_f64()
    }
    fn peer_spiffe_id(&self) -> Option<String> {
        self.host.peer_spiffe_id()
    }
    fn property(&self, path: &[&str]) -> Option<String> {
        self.host.property(path)
    }
    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        self.host.request_body(size)
    }
    fn response_header(&self, name: &str) -> Option<String> {
        self.host.response_header(name)
    }
    fn with_routing_store(&self, now_ms: u64, read: &mut dyn FnMut(&dyn SharedStore)) {
        self.host.with_routing_store(now_ms, read);
    }
}

/// One host event as the filter runs it (one [`OneEvent`] clock), driven
/// to its step; pushes how often it read the host clock to `reads`.
fn timed_event(
    host: &FakeEnv,
    store: &MemoryStore,
    reads: &mut Vec<u32>,
    request: &mut Request,
    first: &dyn Fn(&mut Request, &dyn Env) -> Output,
) -> (Vec<Effect>, Step) {
    let env = OneEvent::new(host);
    let before = host.clock_reads.get();
    let out = first(request, &env);
    let (effects, step) = drive(request, out, &env, store);
    reads.push(host.clock_reads.get() - before);
    (effects, step)
}

#[test]
fn the_full_pipeline_reads_the_clock_once_per_event_that_needs_it() {
    // Signed, masked, admitted and routed: every step that wants the time.
    let p = one_channel(
        &format!(
            r#"{GITHUB},"mask":{{"fields":["phone"]}},"routing":{{"clusters":[{{"name":"c1","weight":1,"latency_sla_ms":100}}]}}"#
        ),
        r#","admission":{"capacity":{"rps":1000,"burst":1000}}"#,
    );
    let body = br#"{"phone":"+1 555 0100","a":1}"#;
    let sig = github_signature(b"s3cret", body);
    let host = FakeEnv::new();
    host.body(body);
    let store = MemoryStore::new();
    let mut request = Request::new(Some(p));
    let mut reads = Vec::new();
    let mut event = |request: &mut Request, first: &dyn Fn(&mut Request, &dyn Env) -> Output| {
        timed_event(&host, &store, &mut reads, request, first)
    };
    let hs = headers(&[JSON, ("x-hub-signature-256", &sig)]);
    let hs = RefCell::new(Some(hs));
    let (_, step) = event(&mut request, &|r, env| {
        r.on_request_headers(hs.borrow_mut().take().unwrap_or_default(), false, env)
    });
    assert_eq!(step, Step::Pause);
    let (effects, step) = event(&mut request, &|r, env| {
        r.on_request_body(body.len(), true, env)
    });
    assert_eq!(step, Step::Continue, "{effects:?}");
    assert_eq!(counted(&effects, "callback_masked_fields_total"), 1);
    assert_eq!(counted(&effects, "callback_admission_total"), 1);
    host.status(200);
    let (effects, _) = event(&mut request, &|r, env| r.on_response_headers(env));
    assert!(effects.iter().any(|e| matches!(e, Effect::Route { .. })));
    let _ = event(&mut request, &|r, env| r.on_end(env));
    // Request start; the body checks, the bucket draw and the forward;
    // the response (routing latency); the end (duration).
    assert_eq!(reads, [1, 1, 1, 1]);
}

#[test]
fn a_rewritten_body_of_the_same_length_keeps_its_content_length() {
    let p = one_channel(r#","mask":{"fields":["phone"]}"#, "");
    let store = MemoryStore::new();
    // `"123"` becomes `"***"`: the length stays, so no header is written.
    let body = br#"{"phone":"123"}"#;
    let length = body.len().to_string();
    let run = send(&p, &[JSON, ("content-length", &length)], body, &store);
    assert_eq!(run.step, Step::Continue);
    assert!(run.effects.iter().any(
        |e| matches!(e, Effect::Count(stat, 1) if stat.starts_with("callback_masked_fields_total"))
    ));
    assert_eq!(set_header(&run.effects, "content-length"), None);
    // A length that changes is written.
    let body = br#"{"phone":"1234"}"#;
    let length = body.len().to_string();
    let run = send(&p, &[JSON, ("content-length", &length)], body, &store);
    assert_eq!(set_header(&run.effects, "content-length"), Some("15"));
}

#[test]
fn a_channel_whose_checks_need_no_time_reads_the_clock_only_for_its_duration() {
    // Admission on an unsigned channel (drawn at the headers), no routing:
    // the body and the response need no time.
    let p = one_channel("", r#","admission":{"capacity":{"rps":1000,"burst":1000}}"#);
    let host = FakeEnv::new();
    let body = br#"{"a":1}"#;
    host.body(body);
    host.status(200);
    let store = MemoryStore::new();
    let mut request = Request::new(Some(p));
    let mut reads = Vec::new();
    let mut event = |request: &mut Request, first: &dyn Fn(&mut Request, &dyn Env) -> Output| {
        timed_event(&host, &store, &mut reads, request, first)
    };
    let hs = RefCell::new(Some(headers(&[JSON])));
    let (effects, _) = event(&mut request, &|r, env| {
        r.on_request_headers(hs.borrow_mut().take().unwrap_or_default(), false, env)
    });
    assert_eq!(counted(&effects, "callback_admission_total"), 1);
    let (_, step) = event(&mut request, &|r, env| {
        r.on_request_body(body.len(), true, env)
    });
    assert_eq!(step, Step::Continue);
    let _ = event(&mut request, &|r, env| r.on_response_headers(env));
    let (effects, _) = event(&mut request, &|r, env| r.on_end(env));
    assert!(matches!(&effects[..], [Effect::Histogram(..)]));
    assert_eq!(reads, [1, 0, 0, 1]);
}

fn stripe_signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let tag: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={tag}")
}

#[test]
fn the_decision_record_names_the_delivery_id_from_its_header_or_the_body() {
    let store = MemoryStore::new();
    let body = br#"{"id":"evt_body","a":1}"#;
    // No signature: the first well-known id header.
    let run = send(
        &one_channel("", ""),
        &[JSON, ("svix-id", "msg_svix")],
        body,
        &store,
    );
    assert_eq!(decision(&run.effects).unwrap()["delivery_id"], "msg_svix");
    // Dedup's header, whatever the scheme's.
    let run = send(
        &one_channel(DEDUP, ""),
        &[JSON, ("x-id", "d7"), ("webhook-id", "w")],
        body,
        &store,
    );
    assert_eq!(decision(&run.effects).unwrap()["delivery_id"], "d7");
    // Blank or too long: none.
    let long = "x".repeat(crate::core::dedup::MAX_ID_LEN + 1);
    for id in ["  ", long.as_str()] {
        let run = send(
            &one_channel("", ""),
            &[JSON, ("webhook-id", id)],
            body,
            &store,
        );
        assert!(decision(&run.effects).unwrap().get("delivery_id").is_none());
    }
    // Stripe: the event id in the body, forwarded or refused after the body.
    let stripe = one_channel(
        r#","signature":{"scheme":"stripe","secrets":[{"value":"whsec"}]}"#,
        "",
    );
    let sig = stripe_signature(b"whsec", NOW_MS / 1000, body);
    let run = send(&stripe, &[JSON, ("stripe-signature", &sig)], body, &store);
    assert_eq!(reply_status(&run.effects), None);
    assert_eq!(decision(&run.effects).unwrap()["delivery_id"], "evt_body");
    let bad = stripe_signature(b"other", NOW_MS / 1000, body);
    let run = send(&stripe, &[JSON, ("stripe-signature", &bad)], body, &store);
    assert_eq!(reply_status(&run.effects), Some(401));
    assert_eq!(decision(&run.effects).unwrap()["delivery_id"], "evt_body");
    // Refused at the headers (no body read): no id.
    let run = send(
        &one_channel(
            r#","signature":{"scheme":"stripe","secrets":[{"value":"whsec"}]},"max_body_bytes":4"#,
            "",
        ),
        &[JSON, ("content-length", "23"), ("stripe-signature", &sig)],
        body,
        &store,
    );
    assert_eq!(reply_status(&run.effects), Some(413));
    assert!(decision(&run.effects).unwrap().get("delivery_id").is_none());
}

#[test]
fn header_texts_compare_by_content_and_short_ones_are_inline() {
    let tp = trace::generate(1, 2, 3);
    let inline = Text::copy_of(tp.header());
    assert!(matches!(inline, Text::Inline(_)));
    assert_eq!(inline, tp.header());
    assert_eq!(inline, Text::Owned(tp.header().to_string()));
    let long = "x".repeat(trace::LEN + 1);
    assert!(matches!(Text::copy_of(&long), Text::Owned(_)));
    assert_eq!(Text::copy_of(&long), long.as_str());
    assert_eq!(Text::copy_of(""), "");
    assert_eq!(Text::from(Rc::<str>::from("r1")), Text::Static("r1"));
    for n in [0, 7, 10, 1024, 987_654_321, u64::MAX] {
        let text = Text::number(n);
        assert!(matches!(text, Text::Inline(_)));
        assert_eq!(text, n.to_string().as_str());
    }
}

#[test]
fn the_trace_headers_and_the_routed_cluster_are_not_copied() {
    let p = one_channel(
        r#","routing":{"clusters":[{"name":"r1","weight":1},{"name":"r2","weight":1}]}"#,
        r#","routing":{"cluster_header":"x-callback-cluster"}"#,
    );
    let store = MemoryStore::new();
    let mut run = send(&p, &[JSON], br#"{"a":1}"#, &store);
    let traceparent = run.effects.iter().find_map(|e| match e {
        Effect::SetRequestHeader(k, v) if k == "traceparent" => Some(v),
        _ => None,
    });
    assert!(
        matches!(traceparent, Some(Text::Inline(_))),
        "{traceparent:?}"
    );
    let cluster = run.effects.iter().find_map(|e| match e {
        Effect::SetRequestHeader(k, v) if k == "x-callback-cluster" => Some((k, v)),
        _ => None,
    });
    assert!(
        matches!(cluster, Some((Text::Shared(_), Text::Shared(v))) if ["r1", "r2"].contains(&&**v)),
        "{cluster:?}"
    );
    let trace_id = respond(&mut run, 200, &store)
        .into_iter()
        .find_map(|e| match e {
            Effect::SetResponseHeader(k, v) if k == header::TRACE_ID => Some(v),
            _ => None,
        });
    assert!(
        matches!(&trace_id, Some(Text::Inline(v)) if v.as_str().len() == 32),
        "{trace_id:?}"
    );
}

#[test]
fn a_recycled_effects_buffer_carries_the_next_output() {
    let p = one_channel("", "");
    let env = FakeEnv::new();
    env.body(br#"{"a":1}"#);
    let mut request = Request::new(Some(p));
    let out = request.on_request_headers(headers(&[JSON]), false, &env);
    assert_eq!(out.step, Step::Pause);
    assert!(!out.effects.is_empty());
    let buffer = out.effects.as_ptr();
    request.recycle(out.effects);
    let out = request.on_request_body(7, true, &env);
    assert_eq!(out.step, Step::Continue);
    assert!(!out.effects.is_empty());
    assert_eq!(out.effects.as_ptr(), buffer);
    // Nothing of the recycled effects is left in it.
    assert!(!out.effects.iter().any(
        |e| matches!(e, Effect::Count(stat, _) if stat.starts_with("callback_requests_total"))
    ));
}

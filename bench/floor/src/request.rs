//! The whole `core::request::Request` sequence of one bench request (issue
//! #17's per-request work outside the body checks): request headers (as
//! the host hands them, parsed from byte pairs), the body, the store's
//! answers, the body rewrite, the response headers and the end of the
//! stream; every effect applied to a stand-in of the worker (the metric
//! ids are looked up as the filter does). The scenario configs are
//! bench/cgbench/scenarios.py's.
//!
//! `body_floor request-<a|c|e|f|g> <body.json> <iterations>`; under
//! callgrind, `--toggle-collect='*request_work*'` counts one request's
//! instructions.

use callback_guard::core::headers::Headers;
use callback_guard::core::metrics::StatIds;
use callback_guard::core::policy::Policy;
use callback_guard::core::request::store::LocalLeases;
use callback_guard::core::request::{Effect, Env, EventClock, Output, Phase, Request, Step};
use callback_guard::core::rng::SplitMix64;
use callback_guard::core::shared::{self, MemoryStore, ReadCache, SharedStore};
use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;

/// bench/cgbench/scenarios.py, as JSON.
const SIGNATURE: &str = r#""signature":{"scheme":"standard-webhooks","secrets":[{"value":"SECRET"}],"tolerance_s":3600}"#;
const MASK: &str = r#""mask":{"fields":["email","phone","payment.card_number"],"detectors":["email","phone","card","cn_id"],"strategy":"redact"}"#;
const ROUTING: &str = r#""routing":{"clusters":[{"name":"r1","weight":60,"latency_sla_ms":1000},{"name":"r2","weight":35,"latency_sla_ms":1000},{"name":"r3","weight":5,"latency_sla_ms":1000}]}"#;
const ADMISSION: &str = r#""admission":{"capacity":{"rps":1e7,"burst":1e7},"limits":{"high":{"rps":1e7,"burst":1e7},"normal":{"rps":1e7,"burst":1e7},"low":{"rps":1e7,"burst":1e7}}}"#;

/// The plugin config of scenario `key` (with `secret` for the signature).
fn config(key: &str, secret: &str) -> String {
    let (parts, admission): (&[&str], bool) = match key {
        "a" => (&[ROUTING], true),
        "c" => (&[SIGNATURE, MASK], false),
        "e" => (&[], true),
        "f" => (&[ROUTING], false),
        "g" => (&[SIGNATURE, MASK, ROUTING], true),
        other => panic!("unknown scenario {other}"),
    };
    let mut channel = String::from(r#"{"name":"bench","match":{"path_prefix":"/callbacks/bench"}"#);
    for part in parts {
        channel.push(',');
        channel.push_str(&part.replace("SECRET", secret));
    }
    channel.push('}');
    let mut cfg =
        format!(r#"{{"channels":[{channel}],"routing":{{"cluster_header":"x-callback-cluster"}}"#);
    if admission {
        cfg.push(',');
        cfg.push_str(ADMISSION);
    }
    cfg.push('}');
    cfg
}

/// The worker and host of the filter, in memory.
pub struct Host {
    now_ms: u64,
    body: Vec<u8>,
    rng: RefCell<SplitMix64>,
    store: MemoryStore,
    /// The worker's leases of the buckets, as the filter keeps them.
    leases: RefCell<LocalLeases>,
    route_reads: ReadCache,
    metrics: RefCell<StatIds>,
}

struct HostEnv<'a> {
    host: &'a Host,
    clock: EventClock<Box<dyn Fn() -> u64 + 'a>>,
}

impl<'a> HostEnv<'a> {
    fn new(host: &'a Host) -> Self {
        Self {
            host,
            clock: EventClock::new(Box::new(|| black_box(host.now_ms))),
        }
    }
}

impl Env for HostEnv<'_> {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
    fn random_u64(&self) -> u64 {
        self.host.rng.borrow_mut().next_u64()
    }
    fn random_f64(&self) -> f64 {
        self.host.rng.borrow_mut().next_f64()
    }
    fn peer_spiffe_id(&self) -> Option<String> {
        None
    }
    fn property(&self, _path: &[&str]) -> Option<String> {
        None
    }
    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        self.host.body.get(..size).map(<[u8]>::to_vec)
    }
    fn response_header(&self, name: &str) -> Option<String> {
        (name == ":status").then(|| "200".to_string())
    }
    fn with_routing_store(&self, now_ms: u64, read: &mut dyn FnMut(&dyn SharedStore)) {
        read(&self.host.route_reads.view(&self.host.store, now_ms));
    }
}

impl Host {
    fn apply(&self, effects: &mut Vec<Effect>) {
        for effect in effects.drain(..) {
            match effect {
                Effect::Count(stat, by) | Effect::Histogram(stat, by) => {
                    // As the filter's host::Metrics.
                    let id = self.metrics.borrow_mut().id(&stat, |_| Some(1));
                    black_box((id, by));
                }
                other => {
                    black_box(other);
                }
            }
        }
    }

    /// Applies `out` and answers the machine as the filter does.
    fn drive(&self, request: &mut Request, mut out: Output, env: &HostEnv<'_>) {
        loop {
            self.apply(&mut out.effects);
            request.recycle(std::mem::take(&mut out.effects));
            out = match out.step {
                Step::Query(query) => {
                    let answer =
                        request.answer_locally(&query, &self.store, &mut self.leases.borrow_mut());
                    request.resume(answer, env)
                }
                Step::ReplaceBody { body, .. } => {
                    black_box(body);
                    request.body_replaced(true, env)
                }
                Step::Continue | Step::Pause => return,
            };
        }
    }
}

/// One request of the scenario, start to end.
#[inline(never)]
pub fn request_work(policy: &Rc<Policy>, host: &Host, map: &[u8]) -> usize {
    let mut request = Request::new(Some(policy.clone()));
    // As host::request_headers: the host's buffer (one copy), then parsed.
    let buffer = black_box(map.to_vec());
    let headers = Headers::from_map(&buffer);
    let env = HostEnv::new(host);
    let out = request.on_request_headers(headers, false, &env);
    host.drive(&mut request, out, &env);
    let env = HostEnv::new(host);
    let out = request.on_request_body(host.body.len(), true, &env);
    host.drive(&mut request, out, &env);
    let env = HostEnv::new(host);
    let out = request.on_response_headers(&env);
    host.drive(&mut request, out, &env);
    let env = HostEnv::new(host);
    let out = request.on_end(&env);
    host.drive(&mut request, out, &env);
    usize::from(request.phase() == Phase::Forwarded { streamed: false })
}

/// Sets up scenario `key` with `body` signed at `ts` by `sign`.
pub fn setup(
    key: &str,
    body: &[u8],
    ts: u64,
    secret: &str,
    signature: &str,
) -> (Rc<Policy>, Host, Vec<u8>) {
    let policy = callback_guard::config::load(config(key, secret).as_bytes(), &|_| None)
        .expect("bench config loads");
    let store = MemoryStore::new();
    shared::create_if_absent(&store, callback_guard::core::admission::bucket::STATE_KEY)
        .expect("store");
    for ch in &policy.channels {
        if ch.routing.is_some() {
            shared::create_if_absent(&store, &callback_guard::core::routing::state_key(&ch.name))
                .expect("store");
        }
    }
    let path = if key == "a" {
        "/api/orders"
    } else {
        "/callbacks/bench"
    };
    let pairs: Vec<(&str, String)> = vec![
        (":authority", "localhost:10000".into()),
        (":path", path.into()),
        (":method", "POST".into()),
        (":scheme", "http".into()),
        ("content-length", body.len().to_string()),
        ("content-type", "application/json".into()),
        ("webhook-id", "msg_bench".into()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", signature.into()),
        ("x-forwarded-proto", "http".into()),
        (
            "x-request-id",
            "4d6b0a4e-5d1c-4b7b-9a55-0f3c2f0e2a11".into(),
        ),
    ];
    let pairs = callback_guard::core::abi_map::serialize_map(&pairs);
    let host = Host {
        now_ms: ts * 1000,
        body: body.to_vec(),
        rng: RefCell::new(SplitMix64::new(7)),
        store,
        leases: RefCell::new(LocalLeases::default()),
        route_reads: ReadCache::new(100),
        metrics: RefCell::new(StatIds::default()),
    };
    (Rc::new(policy), host, pairs)
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Hostile HTTP (issue #11, item 4): duplicate security headers, clients
//! that abort mid-body or after their body, slowloris bodies, HTTP/2 bodies
//! ending in trailers, pipelined HTTP/1.1 and multiplexed HTTP/2 requests.
//! Each test asserts what the upstream received (never an unverified body
//! on the signed channel: the upstream re-verifies every signature), what
//! the caller got, and that the VM is alive afterwards: ordinary requests on
//! fresh connections all succeed and Envoy's log holds no panic. The Envoy
//! runs with `FAIL_CLOSED`, so a VM that died answers 503 from then on.

mod support;

use serde_json::json;
use std::time::Duration;
use support::h2::H2Request;
use support::upstream::Received;
use support::{Envoy, EnvoyBuilder, Reply, Request, Upstream, client, sign};

const KEY: &[u8] = b"callback-guard hostile-http key";
const SIGNED: &str = "/callbacks/signed";

fn whsec() -> String {
    format!("whsec_{}", sign::b64(KEY))
}

fn builder(name: &str, up: &Upstream) -> EnvoyBuilder {
    let plugin = json!({
        "channels": [
            {"name": "signed", "match": {"path_prefix": SIGNED},
             "signature": {"scheme": "standard-webhooks", "secrets": [{"value": whsec()}]},
             "dedup": {"window_s": 60},
             "max_body_bytes": 65536},
            {"name": "open", "match": {"path_prefix": "/callbacks/open"}}
        ]
    });
    Envoy::builder(name)
        .plugin(&plugin.to_string())
        .cluster("upstream", up.port())
        .concurrency(2)
}

/// The Standard Webhooks headers of a correctly signed `body` with `id`.
fn signature_headers(id: &str, body: &[u8]) -> Vec<(String, String)> {
    let ts = sign::now();
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts.to_string()),
        (
            "webhook-signature".into(),
            sign::standard_v1(&whsec(), id, ts, body),
        ),
    ]
}

fn signed(id: &str, body: &str) -> Request {
    let mut req = Request::post(&format!("{SIGNED}/{id}")).json(body);
    for (k, v) in signature_headers(id, body.as_bytes()) {
        req = req.header(&k, &v);
    }
    req
}

/// What the service must hold for every request it got on the signed
/// channel: exactly one of each security header, a signature that verifies
/// over the body it received, and the filter's verdict header.
fn verify(r: &Received) -> Result<(), String> {
    if !r.path.starts_with(SIGNED) {
        return Ok(());
    }
    let one = |name: &str| r.only(name);
    let id = one("webhook-id")?;
    let ts: u64 = one("webhook-timestamp")?
        .parse()
        .map_err(|e| format!("timestamp: {e}"))?;
    let want = sign::standard_v1(&whsec(), id, ts, &r.body);
    if one("webhook-signature")? != want {
        return Err(format!("signature does not verify over {:?}", r.body_str()));
    }
    if r.header("x-verified-signature") != Some("standard-webhooks") {
        return Err("no x-verified-signature".into());
    }
    Ok(())
}

fn assert_all_verified(up: &Upstream) {
    for r in up.received().iter().chain(up.incomplete().iter()) {
        if let Err(why) = verify(r) {
            panic!("the service got an unverified callback {}: {why}", r.path);
        }
    }
}

/// The VM is alive: ordinary requests on fresh connections (so both
/// workers serve some) all succeed, and the log holds no panic.
fn assert_alive(envoy: &Envoy, up: &Upstream) {
    let before = up.count();
    for i in 0..10 {
        let resp = signed(&format!("msg_alive_{i}"), r#"{"ok":true}"#).send(envoy.addr());
        assert_eq!(resp.status, 200, "alive check {i}: {}", resp.body_str());
        let resp = Request::post("/callbacks/open/x")
            .json(r#"{"n":1}"#)
            .send(envoy.addr());
        assert_eq!(resp.status, 200, "alive check {i} (open channel)");
        let resp = Request::get("/elsewhere").send(envoy.addr());
        assert_eq!(resp.status, 200, "alive check {i} (outside channels)");
    }
    assert_eq!(
        up.count(),
        before + 30,
        "the alive checks reached the service"
    );
    assert_all_verified(up);
    let log = envoy.log();
    for bad in ["panicked", "Function: proxy_on", "wasm trap", "VM failed"] {
        assert!(!log.contains(bad), "Envoy log holds {bad:?}:\n{log}");
    }
}

fn h2_signed(id: &str, body: &[u8]) -> H2Request {
    let mut req =
        H2Request::post(&format!("{SIGNED}/{id}")).header("content-type", "application/json");
    for (k, v) in signature_headers(id, body) {
        req = req.header(&k, &v);
    }
    req.body(body, 1, Duration::ZERO)
}

#[test]
fn duplicate_security_headers_are_malformed_in_either_order_and_over_h2() {
    let up = Upstream::start();
    let envoy = builder("hostile-dup", &up).start();
    let body = r#"{"amount":100}"#;
    // The valid line second: a filter reading the last copy would verify,
    // and the service could read the first (forged) one.
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let valid = signed("msg_dup", body);
        let mut req = Request::post(&format!("{SIGNED}/dup")).json(body);
        let forged = match name {
            "webhook-id" => "msg_planted".to_string(),
            "webhook-timestamp" => (sign::now() - 1).to_string(),
            _ => "v1,Zm9yZ2VkIHNpZ25hdHVyZSBvZiAzMiBieXRlcyEhISE=".to_string(),
        };
        req = req.header(name, &forged);
        for (k, v) in &valid.headers {
            if k != "content-type" {
                req = req.header(k, v);
            }
        }
        let resp = req.send(envoy.addr());
        support::assert::local_reply(&resp, 401, Some("signature_malformed"), name);

        // The same over HTTP/2, where repeated fields are separate entries.
        let mut h2 = h2_signed("msg_dup_h2", body.as_bytes());
        h2.headers.insert(0, (name.to_string(), forged.clone()));
        let resp = h2.send(envoy.addr()).unwrap();
        assert_eq!(resp.status, 401, "h2 {name}: {}", resp.body_str());
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&resp.body).unwrap()["error"],
            "signature_malformed",
            "h2 {name}"
        );
    }
    assert_eq!(up.count(), 0, "no copy reached the service");
    assert!(up.incomplete().is_empty());
    // Refusing the pair planted nothing: the genuine delivery goes through.
    let resp = signed("msg_dup", body).send(envoy.addr());
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert_eq!(resp.header("x-callback-duplicate"), None);
    assert_eq!(up.count(), 1);
    assert_alive(&envoy, &up);
}

#[test]
fn client_aborts_mid_body_forward_nothing_and_plant_no_dedup_id() {
    let up = Upstream::start();
    let envoy = builder("hostile-abort-mid", &up).start();
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4000));
    // Cut before the body, after one byte, halfway and one byte short, on
    // the signed and on the unsigned channel (both hold the request).
    for (i, cut) in [0, 1, body.len() / 2, body.len() - 1]
        .into_iter()
        .enumerate()
    {
        let id = format!("msg_cut_{i}");
        client::abort_mid_body(&signed(&id, &body), cut, envoy.addr()).unwrap();
        let open = Request::post("/callbacks/open/cut").json(&body);
        client::abort_mid_body(&open, cut, envoy.addr()).unwrap();
    }
    // The aborts are over once the proxy has seen every connection close;
    // ordinary traffic then proves both workers are fine.
    assert_alive(&envoy, &up);
    assert_eq!(up.count(), 30, "only the alive checks reached the service");
    assert!(
        up.incomplete().is_empty(),
        "a held request leaked upstream: {:?}",
        up.incomplete()
    );
    // The provider's retry of each aborted delivery goes through once: a
    // body that never completed was never checked, so no id was remembered.
    up.clear();
    for i in 0..4 {
        let resp = signed(&format!("msg_cut_{i}"), &body).send(envoy.addr());
        assert_eq!(resp.status, 200, "retry {i}: {}", resp.body_str());
        assert_eq!(resp.header("x-callback-duplicate"), None, "retry {i}");
    }
    let got = up.received();
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|r| r.body_str() == body));
    assert_all_verified(&up);
}

#[test]
fn client_aborts_after_the_body_leave_the_filter_healthy() {
    // The upstream is slow, so each client is gone before its answer.
    let up = Upstream::with_reply(Reply {
        delay: Duration::from_millis(1500),
        ..Reply::default()
    });
    let envoy = builder("hostile-abort-after", &up).start();
    let body = r#"{"amount":7}"#;
    for i in 0..4 {
        let conn =
            client::send_unread(&signed(&format!("msg_gone_{i}"), body), envoy.addr()).unwrap();
        // Close once the verified callback is upstream (bounded wait).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while up.count() < i + 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(up.count(), i + 1, "callback {i} was forwarded");
        conn.shutdown(std::net::Shutdown::Both).unwrap();
    }
    // An unsigned one whose client leaves at once: never forwarded.
    let conn = client::send_unread(
        &Request::post(&format!("{SIGNED}/x")).json(body),
        envoy.addr(),
    )
    .unwrap();
    conn.shutdown(std::net::Shutdown::Both).unwrap();
    up.set_reply(Reply::default());
    // The provider retries: answered 200 (forwarded again or as a
    // duplicate, depending on how the abort is counted); either way only
    // verified bodies reach the service. A retry that arrives before Envoy
    // has seen the last abort (another connection, maybe another worker)
    // finds that attempt still in flight and is told `409 in_progress`,
    // which a provider retries too; bounded.
    for i in 0..4 {
        let req = signed(&format!("msg_gone_{i}"), body);
        let mut resp = req.send(envoy.addr());
        for _ in 0..100 {
            if resp.status != 409 {
                break;
            }
            assert_eq!(resp.json()["error"], "in_progress", "{}", resp.body_str());
            std::thread::sleep(Duration::from_millis(20));
            resp = req.send(envoy.addr());
        }
        assert_eq!(resp.status, 200, "retry {i}: {}", resp.body_str());
    }
    assert_all_verified(&up);
    assert!(
        up.received()
            .iter()
            .all(|r| r.path != format!("{SIGNED}/x")),
        "the unsigned request reached the service"
    );
    assert_alive(&envoy, &up);
}

#[test]
fn slowloris_bodies_are_checked_when_complete_and_stalled_ones_time_out() {
    let up = Upstream::start();
    let envoy = builder("hostile-slowloris", &up)
        .stream_idle_timeout("2s")
        .start();
    let body = format!(r#"{{"pad":"{}"}}"#, "y".repeat(600));
    // Stalled clients: half a body, then nothing. Envoy's idle timeout
    // answers them; nothing is forwarded. Meanwhile other callers are
    // served (the alive check runs while they stall).
    let addr = envoy.addr();
    let stalled: Vec<_> = (0..6)
        .map(|i| {
            let req = if i % 2 == 0 {
                signed(&format!("msg_stall_{i}"), &body)
            } else {
                Request::post("/callbacks/open/stall").json(&body)
            };
            let cut = body.len() / 2;
            std::thread::spawn(move || client::stall_mid_body(&req, cut, addr))
        })
        .collect();
    // Slow but moving, over HTTP/1.1 (chunked) and HTTP/2: each gap is
    // below the idle timeout, the whole body takes longer than it.
    let resp = signed("msg_slow_h1", &body)
        .chunked(body.as_bytes(), 8, Duration::from_millis(400))
        .send(addr);
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    let resp = h2_signed("msg_slow_h2", body.as_bytes())
        .body(body.as_bytes(), 8, Duration::from_millis(400))
        .send(addr)
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    let got = up.received();
    assert_eq!(got.len(), 2, "both slow callbacks, nothing else");
    assert!(got.iter().all(|r| r.body_str() == body), "bodies intact");
    assert_alive(&envoy, &up);
    for (i, t) in stalled.into_iter().enumerate() {
        match t.join().unwrap() {
            Ok(resp) => assert!(
                [408, 504].contains(&resp.status),
                "stalled client {i}: {} {}",
                resp.status,
                resp.body_str()
            ),
            // A close without an answer is fine too: the client is gone.
            Err(e) => eprintln!("stalled client {i}: connection ended ({e})"),
        }
    }
    assert!(
        up.received().iter().all(|r| !r.path.contains("stall")),
        "a stalled request was forwarded"
    );
    assert!(up.incomplete().is_empty(), "{:?}", up.incomplete());
    assert_all_verified(&up);
}

#[test]
fn h2_bodies_ending_in_trailers_are_checked() {
    let up = Upstream::start();
    let envoy = builder("hostile-h2-trailers", &up).start();
    let body = br#"{"amount":42}"#;
    // Signed, body then trailers: verified and forwarded intact.
    let resp = h2_signed("msg_tr_ok", body)
        .trailer("x-checksum", "abc")
        .send(envoy.addr())
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, body);
    // Forged body with trailers: refused, not forwarded.
    let mut forged = h2_signed("msg_tr_forged", body);
    forged.body = vec![br#"{"amount":4200}"#.to_vec()];
    let resp = forged
        .trailer("x-checksum", "abc")
        .send(envoy.addr())
        .unwrap();
    assert_eq!(resp.status, 401, "{}", resp.body_str());
    // The signature only in the trailers does not count: the filter reads
    // request headers.
    let sig = signature_headers("msg_tr_late", body);
    let mut late = H2Request::post(&format!("{SIGNED}/late"))
        .header("content-type", "application/json")
        .body(body, 2, Duration::ZERO);
    for (k, v) in &sig {
        late = late.trailer(k, v);
    }
    let resp = late.send(envoy.addr()).unwrap();
    assert_eq!(resp.status, 401, "{}", resp.body_str());
    // Headers then trailers with no DATA at all: an empty callback,
    // answered by the filter, never forwarded.
    let mut bare = h2_signed("msg_tr_bare", b"");
    bare.body.clear();
    let resp = bare
        .trailer("x-checksum", "abc")
        .send(envoy.addr())
        .unwrap();
    assert_eq!(resp.status, 204, "{}", resp.body_str());
    // Trailers on the unsigned channel: forwarded, body intact.
    let resp = H2Request::post("/callbacks/open/tr")
        .header("content-type", "application/json")
        .body(body, 3, Duration::ZERO)
        .trailer("x-checksum", "abc")
        .send(envoy.addr())
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    let got = up.received();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].path, "/callbacks/open/tr");
    assert_eq!(got[1].body, body);
    assert_alive(&envoy, &up);
}

/// Eight requests of every kind, with the status each must get and the
/// path the service receives when it is forwarded. `tag` keeps ids apart.
fn pipeline_mix(tag: &str) -> (Vec<Request>, Vec<u16>, Vec<Option<String>>) {
    let a = signed(&format!("msg_{tag}_a"), r#"{"n":"a"}"#);
    let mut forged = signed(&format!("msg_{tag}_b"), r#"{"n":"b"}"#);
    forged.body = br#"{"n":"B"}"#.to_vec();
    let c = signed(&format!("msg_{tag}_c"), r#"{"n":"c"}"#);
    let d = signed(&format!("msg_{tag}_d"), r#"{"n":"d"}"#);
    let path = |r: &Request| Some(r.path.clone());
    let fwd = vec![
        path(&a),
        None,
        None,
        path(&c),
        None,
        Some("/elsewhere".to_string()),
        None,
        path(&d),
    ];
    let reqs = vec![
        a.clone(),
        forged,
        // Empty, and signed: on a signed channel only a verified empty
        // callback is acknowledged 204.
        signed(&format!("msg_{tag}_empty"), "{}"),
        c,
        a,
        Request::get("/elsewhere"),
        Request::post(&format!("{SIGNED}/unsigned")).json(r#"{"n":"u"}"#),
        d,
    ];
    (reqs, vec![200, 401, 204, 200, 200, 200, 401, 200], fwd)
}

#[test]
fn pipelined_requests_are_each_checked_in_order() {
    let up = Upstream::start();
    let envoy = builder("hostile-pipeline", &up).start();
    // Two requests per connection, in one write: each checked on its own,
    // answered in order.
    let (reqs, want, fwd) = pipeline_mix("pipe");
    let mut answers = Vec::new();
    for pair in reqs.chunks(2) {
        let (got, err) = client::pipeline(pair, envoy.addr());
        assert!(err.is_none(), "{err:?}");
        answers.extend(got);
    }
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(statuses, want);
    assert_eq!(answers[4].header("x-callback-duplicate"), Some("true"));
    let got: Vec<String> = up.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(got, fwd.iter().flatten().cloned().collect::<Vec<_>>());
    assert_all_verified(&up);
    up.clear();

    // All eight in one write: Envoy's HTTP/1 codec ends a connection once
    // more than two answers wait unflushed ("Too many responses queued", its
    // pipelining flood protection; local replies are written at once). The
    // answers that came are right and in order; the requests after the cut
    // were never processed, so none of them reached the service.
    let (reqs, want, fwd) = pipeline_mix("pipe8");
    let (got, err) = client::pipeline(&reqs, envoy.addr());
    let n = got.len();
    assert!(n >= 2, "at least two answers before any cut ({err:?})");
    assert!(n == reqs.len() || err.is_some());
    let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
    assert_eq!(statuses, want[..n], "answers in order");
    let received: Vec<String> = up.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        received,
        fwd[..n].iter().flatten().cloned().collect::<Vec<_>>(),
        "exactly the answered, forwarded requests reached the service"
    );
    assert_all_verified(&up);
    assert_alive(&envoy, &up);
}

#[test]
fn multiplexed_h2_requests_are_each_checked() {
    let up = Upstream::start();
    let envoy = builder("hostile-multiplex", &up).start();
    // Twenty streams on one h2c connection, their DATA frames interleaved:
    // valid, forged, empty, unsigned and outside-channel requests.
    let mut reqs = Vec::new();
    let mut want = Vec::new();
    for i in 0..20 {
        let body = format!(r#"{{"i":{i},"pad":"{}"}}"#, "z".repeat(300));
        let (req, status) = match i % 5 {
            0 | 1 => (h2_signed(&format!("msg_mux_{i}"), body.as_bytes()), 200),
            2 => {
                // Signed over another body than the one sent.
                let mut r = h2_signed(&format!("msg_mux_{i}"), b"{\"other\":1}");
                r.path = format!("{SIGNED}/forged{i}");
                r.body = vec![body.clone().into_bytes()];
                (r, 401)
            }
            3 => (h2_signed(&format!("msg_mux_empty_{i}"), b"{}"), 204),
            _ => (
                H2Request::post(&format!("/elsewhere/{i}"))
                    .header("content-type", "application/json"),
                200,
            ),
        };
        // Three DATA frames each, so the streams' bodies interleave.
        let req = if req.body.is_empty() && status == 200 {
            req.body(body.as_bytes(), 3, Duration::ZERO)
        } else if status != 204 {
            let whole = req.body.concat();
            req.body(&whole, 3, Duration::ZERO)
        } else {
            req
        };
        reqs.push(req);
        want.push(status);
    }
    let answers = support::h2::multiplex(&reqs, envoy.addr()).unwrap();
    let got: Vec<u16> = answers
        .iter()
        .map(|a| {
            a.as_ref()
                .map(|r| r.status)
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    assert_eq!(got, want);
    let mut forwarded: Vec<String> = up.received().iter().map(|r| r.path.clone()).collect();
    forwarded.sort();
    let mut expect: Vec<String> = reqs
        .iter()
        .zip(&want)
        .filter(|(_, w)| **w == 200)
        .map(|(r, _)| r.path.clone())
        .collect();
    expect.sort();
    assert_eq!(forwarded, expect);
    for r in up.received() {
        let sent = reqs.iter().find(|q| q.path == r.path).unwrap();
        assert_eq!(r.body, sent.body.concat(), "{} arrived intact", r.path);
    }
    assert_all_verified(&up);
    // All on one connection.
    let h2 = envoy
        .prometheus()
        .iter()
        .filter(|s| s.name == "envoy_http_downstream_cx_http2_total")
        .map(|s| s.value)
        .sum::<f64>();
    assert_eq!(h2, 1.0, "one h2 connection");
    assert_alive(&envoy, &up);
}

#[test]
fn h2_streams_cancelled_mid_body_leave_their_neighbours_and_the_vm_healthy() {
    let up = Upstream::start();
    let envoy = builder("hostile-h2-cancel", &up).start();
    // Sixteen streams on one connection: complete ones next to streams the
    // client cancels (RST_STREAM) right after the headers, mid-body, or
    // after the whole body.
    let body = format!(r#"{{"pad":"{}"}}"#, "c".repeat(900));
    let reqs: Vec<H2Request> = (0..16)
        .map(|i| {
            let mut r = h2_signed(&format!("msg_rst_{i}"), body.as_bytes()).body(
                body.as_bytes(),
                3,
                Duration::ZERO,
            );
            r.cancel_after = match i % 4 {
                0 => None,
                1 => Some(1),
                2 => Some(0),
                _ => Some(3),
            };
            r
        })
        .collect();
    let answers = support::h2::multiplex(&reqs, envoy.addr()).unwrap();
    for (i, a) in answers.iter().enumerate() {
        if i % 4 == 0 {
            let resp = a.as_ref().unwrap_or_else(|e| panic!("stream {i}: {e}"));
            assert_eq!(resp.status, 200, "stream {i}: {}", resp.body_str());
        }
    }
    // The complete ones arrived; a stream cancelled before its body ended
    // never did (not even in part); one cancelled after its body may have
    // been forwarded before the cancel, verified.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while up.count() < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ids: Vec<usize> = up
        .received()
        .iter()
        .chain(up.incomplete().iter())
        .map(|r| r.path.rsplit('_').next().unwrap().parse().unwrap())
        .collect();
    for i in (0..16).filter(|i| i % 4 == 0) {
        assert!(ids.contains(&i), "complete stream {i} forwarded: {ids:?}");
    }
    assert!(
        ids.iter().all(|i| i % 4 == 0 || i % 4 == 3),
        "a stream cancelled mid-body reached the service: {ids:?}"
    );
    assert!(up.incomplete().is_empty(), "{:?}", up.incomplete());
    assert_all_verified(&up);
    // Envoy saw the cancels (at least the eight before the body ended).
    let resets = envoy.metric(
        "envoy_http_downstream_rq_rx_reset",
        &[("envoy_http_conn_manager_prefix", "callbacks")],
    );
    assert!(resets >= 8.0, "{resets} downstream resets");
    // The provider's retries of the cancelled-mid-body deliveries are
    // forwarded: their ids were never remembered.
    up.clear();
    let retries: Vec<H2Request> = (0..16)
        .filter(|i| i % 4 == 1 || i % 4 == 2)
        .map(|i| h2_signed(&format!("msg_rst_{i}"), body.as_bytes()))
        .collect();
    for a in support::h2::multiplex(&retries, envoy.addr()).unwrap() {
        assert_eq!(a.unwrap().status, 200);
    }
    assert_eq!(up.count(), retries.len());
    assert_all_verified(&up);
    assert_alive(&envoy, &up);
}

use super::lease::{Lease, LeaseConfig, Step};
use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn policy() -> StatePolicy {
    StatePolicy {
        cluster: "redis-front".into(),
        authority: "webdis".into(),
        timeout_ms: 50,
        key_prefix: "cg:".into(),
        on_unavailable: Fallback::Local,
        protocol: Protocol::Webdis,
        authorization: Some("Basic Y2c6cHc=".into()),
        lease: LeaseConfig::default(),
        breaker_failures: 3,
        breaker_open_ms: 1000,
    }
}

fn path(req: &HttpRequest) -> String {
    assert!(req.body.is_empty());
    req.headers
        .iter()
        .find(|(k, _)| k == ":path")
        .map(|(_, v)| v.clone())
        .unwrap()
}

#[test]
fn script_handles_are_the_sha1_of_their_source() {
    // sha1("return 1") as Redis computes it for EVALSHA.
    let s = Script {
        name: "t",
        source: "return 1",
    };
    assert_eq!(s.sha1_hex(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    let shas: std::collections::HashSet<_> = SCRIPTS.iter().map(Script::sha1_hex).collect();
    assert_eq!(shas.len(), SCRIPTS.len());
}

#[test]
fn keys_are_prefixed_hashed_and_tagged() {
    let p = policy();
    let k = p.dedup_key("payments", "msg_1");
    assert!(k.starts_with("cg:dedup:payments:"), "{k}");
    assert_eq!(k.len(), "cg:dedup:payments:".len() + 32);
    assert_ne!(k, p.dedup_key("payments", "msg_2"));
    assert_ne!(k, p.dedup_key("other", "msg_1"));
    assert_eq!(p.bucket_key("adm:normal"), "cg:{b}:adm:normal");
}

#[test]
fn a_query_becomes_a_webdis_get_with_every_argument_encoded() {
    let p = policy();
    let q = Query::DedupBegin {
        key: "cg:dedup:a:00".into(),
        token: "t/1.x+y".into(),
        in_flight_ms: 60_000,
    };
    let req = p.request(&q, false);
    assert_eq!(
        req.headers[..3],
        [
            (":authority".to_string(), "webdis".to_string()),
            (":method".to_string(), "GET".to_string()),
            (":path".to_string(), path(&req)),
        ]
    );
    assert!(
        req.headers
            .contains(&("authorization".into(), "Basic Y2c6cHc=".into()))
    );
    assert_eq!(
        path(&req),
        format!(
            "/EVALSHA/{}/1/cg%3Adedup%3Aa%3A00/t%2F1%2Ex%2By/60000",
            DEDUP_BEGIN.sha1_hex()
        )
    );
    let full = path(&p.request(&q, true));
    assert!(full.starts_with("/EVAL/--%20callback-guard"), "{full}");
    let source = &full["/EVAL/".len()..full.find("/1/cg%3A").unwrap()];
    assert!(!source.contains(['/', '.', '+', ' ', '\n']), "{source}");
    assert!(full.ends_with("/1/cg%3Adedup%3Aa%3A00/t%2F1%2Ex%2By/60000"));
}

#[test]
fn lease_arguments_carry_each_bucket() {
    let b = |key: &str, rps, burst, level| LeaseBucket {
        key: key.into(),
        limit: Limit { rps, burst },
        level,
    };
    let q = Query::Lease {
        buckets: vec![
            b("cg:{b}:limit:p", 0.5, 10.0, 1.0),
            b("cg:{b}:adm:capacity", 1200.0, 300.0, 150.0),
        ],
        want: 5000,
    };
    let call = q.call();
    assert_eq!(call.keys, ["cg:{b}:limit:p", "cg:{b}:adm:capacity"]);
    assert_eq!(
        call.args,
        [
            "1000", "0.5", "10", "1", "21000", "1200", "300", "150", "1250"
        ]
    );
    assert_eq!(call.script, LEASE);
}

#[test]
fn webdis_answers_become_typed_results() {
    let p = policy();
    let begin = Query::DedupBegin {
        key: "k".into(),
        token: "t".into(),
        in_flight_ms: 1000,
    };
    let a = |status, body: &str| p.answer(&begin, status, body.as_bytes());
    assert_eq!(
        a(200, r#"{"EVALSHA":[0,0]}"#),
        Ok(Answer::Dedup(DedupOutcome::First))
    );
    assert_eq!(
        a(200, r#"{"EVALSHA":[1,1500]}"#),
        Ok(Answer::Dedup(DedupOutcome::InFlight { retry_after_s: 2 }))
    );
    assert_eq!(
        a(200, r#"{"EVALSHA":[1,-2]}"#),
        Ok(Answer::Dedup(DedupOutcome::InFlight { retry_after_s: 1 }))
    );
    assert_eq!(
        a(200, r#"{"EVAL":[2,9]}"#),
        Ok(Answer::Dedup(DedupOutcome::Duplicate))
    );
    assert_eq!(
        a(
            200,
            r#"{"EVALSHA":[false,"NOSCRIPT No matching script. Please use EVAL."]}"#
        ),
        Err(StateError::NoScript)
    );
    assert!(matches!(
        a(200, r#"{"EVALSHA":[false,"NOPERM this user has no permissions"]}"#),
        Err(StateError::Redis(m)) if m.starts_with("NOPERM")
    ));
    assert_eq!(a(503, ""), Err(StateError::Unavailable));
    assert_eq!(a(403, ""), Err(StateError::Forbidden));
    assert_eq!(a(0, ""), Err(StateError::NoAnswer));
    assert_eq!(a(502, "x"), Err(StateError::Http(502)));
    for bad in [
        "",
        "null",
        "[]",
        r#"{"EVALSHA":[true,"OK"]}"#,
        r#"{"EVALSHA":null}"#,
        r#"{"EVALSHA":[3,0]}"#,
        r#"{"EVALSHA":[0]}"#,
        r#"{"EVALSHA":[0,1.5]}"#,
        r#"{"EVALSHA":[0,0],"X":1}"#,
        r#"{"EVALSHA":"x"}"#,
    ] {
        assert!(
            matches!(a(200, bad), Err(StateError::Malformed(_))),
            "{bad}"
        );
    }
    let long = format!(r#"{{"E":[false,"ERR {}"]}}"#, "é".repeat(200));
    match a(200, &long) {
        Err(StateError::Redis(m)) => assert!(m.len() <= 160),
        other => panic!("{other:?}"),
    }
}

#[test]
fn lease_answers_are_checked_against_the_query() {
    let q = Query::Lease {
        buckets: vec![LeaseBucket {
            key: "k".into(),
            limit: Limit {
                rps: 1.0,
                burst: 1.0,
            },
            level: 1.0,
        }],
        want: 3,
    };
    assert_eq!(
        q.decode(&[2, 0, 0]),
        Ok(Answer::Lease(LeaseGrant {
            granted: 2,
            retry_after_ms: 0,
            refused: 0
        }))
    );
    assert_eq!(
        q.decode(&[0, 250, 1]),
        Ok(Answer::Lease(LeaseGrant {
            granted: 0,
            retry_after_ms: 250,
            refused: 1
        }))
    );
    for bad in [[4, 0, 0], [-1, 0, 0], [0, 0, 2]] {
        assert!(q.decode(&bad).is_err(), "{bad:?}");
    }
    let commit = Query::DedupCommit {
        key: "k".into(),
        token: "t".into(),
        window_ms: 1,
    };
    assert_eq!(
        commit.decode(&[1]),
        Ok(Answer::Committed { was_ours: true })
    );
    let forget = Query::DedupForget {
        key: "k".into(),
        token: "t".into(),
    };
    assert_eq!(
        forget.decode(&[0]),
        Ok(Answer::Forgotten { deleted: false })
    );
    assert!(forget.decode(&[2]).is_err());
}

#[test]
fn the_breaker_opens_after_consecutive_failures_and_probes_once() {
    let p = policy();
    let mut h = Health::default();
    assert!(h.allow(&p, 0));
    assert!(!h.failure(&p, 0));
    assert!(!h.failure(&p, 0));
    h.success();
    assert!(!h.failure(&p, 0) && !h.failure(&p, 0));
    assert!(h.failure(&p, 10), "third in a row opens");
    assert!(!h.allow(&p, 500), "open: fallback without asking");
    assert!(h.allow(&p, 1010), "one probe");
    assert!(!h.allow(&p, 1011), "only one");
    assert!(h.failure(&p, 1020), "a failed probe re-opens");
    assert!(!h.allow(&p, 2000));
    assert!(h.allow(&p, 2020));
    h.success();
    assert!(h.allow(&p, 2021) && h.allow(&p, 2021) && !h.is_open(&p));
}

#[test]
fn store_errors_are_logged_at_most_every_ten_seconds() {
    let mut log = ErrorLog::default();
    assert_eq!(log.admit(1000), Some(0));
    assert_eq!(log.admit(2000), None);
    assert_eq!(log.admit(10_999), None);
    assert_eq!(log.admit(11_000), Some(2));
}

#[test]
fn the_lease_cap_is_a_tenth_of_a_refill_within_max_tokens() {
    let c = LeaseConfig {
        max_tokens: 10,
        ttl_ms: 1000,
    };
    assert_eq!(c.cap(50.0), 5);
    assert_eq!(c.cap(1000.0), 10);
    assert_eq!(c.cap(0.001), 1);
    assert_eq!(c.cap(f64::NAN), 1);
    let exact = LeaseConfig {
        max_tokens: 1,
        ttl_ms: 1000,
    };
    assert_eq!(exact.cap(1e9), 1);
}

#[test]
fn a_lease_is_spent_locally_and_sized_by_recent_demand() {
    let c = LeaseConfig {
        max_tokens: 10,
        ttl_ms: 1000,
    };
    let grant = |granted| LeaseGrant {
        granted,
        retry_after_ms: 0,
        refused: 0,
    };
    let mut l = Lease::default();
    assert_eq!(l.step(&c, 8, 0), Step::Ask { want: 1 });
    assert_eq!(l.granted(&c, grant(1), 0), Step::Take);
    // Demand grows: each ask wants what was spent in the window so far.
    assert_eq!(l.step(&c, 8, 10), Step::Ask { want: 1 });
    assert_eq!(l.granted(&c, grant(1), 10), Step::Take);
    assert_eq!(l.step(&c, 8, 20), Step::Ask { want: 2 });
    assert_eq!(l.granted(&c, grant(2), 20), Step::Take);
    assert_eq!(l.step(&c, 8, 30), Step::Take, "the second token is local");
    let mut asks = 0;
    for t in 0..100 {
        if let Step::Ask { want } = l.step(&c, 8, 40 + t) {
            assert!(want <= 8);
            asks += 1;
            assert_eq!(l.granted(&c, grant(want), 40 + t), Step::Take);
        }
    }
    assert!(asks <= 20, "{asks} asks for 100 requests");
    // Leased tokens expire after ttl.
    assert_eq!(l.step(&c, 8, 150), Step::Ask { want: 8 });
    assert_eq!(l.granted(&c, grant(8), 150), Step::Take);
    assert_eq!(l.tokens(151), 7);
    assert_eq!(l.tokens(150 + 1000), 0);
    // A quiet period forgets the demand.
    assert_eq!(l.step(&c, 8, 10_000), Step::Ask { want: 1 });
}

#[test]
fn a_refusal_is_remembered_until_a_draw_could_pass() {
    let c = LeaseConfig {
        max_tokens: 10,
        ttl_ms: 1000,
    };
    let mut l = Lease::default();
    assert_eq!(l.step(&c, 5, 0), Step::Ask { want: 1 });
    let refused = LeaseGrant {
        granted: 0,
        retry_after_ms: 40,
        refused: 0b10,
    };
    assert_eq!(
        l.granted(&c, refused, 0),
        Step::Refuse {
            retry_after_ms: 40,
            refused: 0b10
        }
    );
    assert_eq!(
        l.step(&c, 5, 30),
        Step::Refuse {
            retry_after_ms: 10,
            refused: 0b10
        }
    );
    assert_eq!(l.step(&c, 5, 40), Step::Ask { want: 1 });
    // A long wait is remembered for ttl only (the buckets are asked
    // again), but answered as the buckets' own wait, within the
    // `retry-after` bound.
    let long = LeaseGrant {
        granted: 0,
        retry_after_ms: 3_600_000,
        refused: 1,
    };
    assert_eq!(
        l.granted(&c, long, 50),
        Step::Refuse {
            retry_after_ms: 300_000,
            refused: 1
        }
    );
    assert_eq!(
        l.step(&c, 5, 550),
        Step::Refuse {
            retry_after_ms: 299_500,
            refused: 1
        }
    );
    assert!(matches!(l.step(&c, 5, 1050), Step::Ask { .. }));
    l.clear();
    assert_eq!(l, Lease::default());
}

#[test]
fn numbers_are_written_as_lua_reads_them() {
    assert_eq!(number(0.001), "0.001");
    assert_eq!(number(1e9), "1000000000");
    assert_eq!(number(2.5), "2.5");
    assert_eq!(number(1.0 / 3.0), "0.333333");
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// webdis's own decoding: `%XX` to a byte, `+` to a space.
    fn decode(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        out
    }

    proptest! {
        #[test]
        fn any_answer_is_a_typed_result_never_a_panic(
            status in prop_oneof![Just(200u32), 0u32..1000],
            body in proptest::collection::vec(any::<u8>(), 0..64),
            values in proptest::collection::vec(any::<i64>(), 0..4),
        ) {
            let p = policy();
            let json = format!(r#"{{"EVALSHA":{values:?}}}"#);
            for q in [
                Query::DedupBegin { key: "k".into(), token: "t".into(), in_flight_ms: 1 },
                Query::DedupForget { key: "k".into(), token: "t".into() },
                Query::Lease { buckets: Vec::new(), want: 2 },
            ] {
                let _ = p.answer(&q, status, &body);
                let _ = p.answer(&q, 200, json.as_bytes());
            }
        }

        #[test]
        fn every_argument_reaches_redis_byte_for_byte(arg in ".*") {
            let encoded = webdis::encode(&arg);
            prop_assert!(!encoded.contains(['/', '.', '+', '?', '#', ' ']));
            prop_assert_eq!(decode(&encoded), arg.as_bytes());
        }
    }
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Fleet state against a real Redis behind webdis (issue #15): the lock-down
//! holds, and the Lua scripts of `core::state` do the atomic thing under
//! concurrency. No Envoy here: the queries go from `core::state` straight to
//! webdis, byte for byte what the filter sends through its Envoy cluster.

mod support;

use callback_guard::core::admission::bucket::Limit;
use callback_guard::core::dedup::DedupOutcome;
use callback_guard::core::state::{
    Answer, LeaseBucket, LeaseGrant, Query, SCRIPTS, StateError, webdis::encode,
};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use support::redis::Store;

#[test]
fn smoke_set_nx_ex_through_webdis_and_the_lock_down() {
    let store = Store::start();
    let set = format!(
        "EVAL/{}/1/cg%3Asmoke/v1",
        encode("return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', 30)")
    );
    assert_eq!(store.get(&set).body_str(), r#"{"EVAL":[true,"OK"]}"#);
    assert_eq!(
        store.get(&set).body_str(),
        r#"{"EVAL":null}"#,
        "NX: the second SET does nothing"
    );
    let pttl = format!(
        "EVAL/{}/1/cg%3Asmoke",
        encode("return redis.call('PTTL', KEYS[1])")
    );
    let ms: serde_json::Value = store.get(&pttl).json();
    let ms = ms["EVAL"].as_i64().unwrap_or(-1);
    assert!((29_000..=30_000).contains(&ms), "EX 30 gave a PTTL of {ms}");
    // webdis: only EVALSHA / EVAL / PING, and only with basic auth.
    assert_eq!(store.get("SET/cg%3Asmoke/x").status, 403);
    assert_eq!(store.get("FLUSHALL").status, 403);
    assert_eq!(store.try_get("PING", false).unwrap().status, 403);
    // Redis: a script may only run the scripts' commands on cg: keys.
    let flush = format!("EVAL/{}/0", encode("return redis.call('FLUSHALL')"));
    assert!(
        store.get(&flush).body_str().contains("[false,"),
        "FLUSHALL ran"
    );
    let other = format!(
        "EVAL/{}/1/other",
        encode("return redis.call('GET', KEYS[1])")
    );
    assert!(store.get(&other).body_str().contains("NOPERM"));
}

#[test]
fn the_state_section_compiles_to_the_policy_the_store_is_tested_with() {
    let store = Store::start();
    let doc = serde_json::json!({ "state": store.state_config("fleet-state") });
    let policy = callback_guard::config::load(doc.to_string().as_bytes(), &|_| None).unwrap();
    assert_eq!(policy.state, Some(store.policy()));
    // And that policy talks to the store.
    let p = policy.state.unwrap();
    let key = p.dedup_key("payments", "msg_config");
    assert_eq!(
        store.run(&p, &begin(&key, "a")),
        Ok(Answer::Dedup(DedupOutcome::First))
    );
}

fn begin(key: &str, token: &str) -> Query {
    Query::DedupBegin {
        key: key.into(),
        token: token.into(),
        in_flight_ms: 60_000,
    }
}

#[test]
fn dedup_scripts_move_a_delivery_through_its_states() {
    let store = Store::start();
    let p = store.policy();
    let key = p.dedup_key("payments", "msg_1");
    // The script cache starts empty: EVALSHA says NOSCRIPT, `run` loads it.
    assert_eq!(
        store.run_once(&p, &begin(&key, "a"), false),
        Err(StateError::NoScript)
    );
    assert_eq!(
        store.run(&p, &begin(&key, "a")),
        Ok(Answer::Dedup(DedupOutcome::First))
    );
    assert_eq!(
        store.run_once(&p, &begin(&key, "b"), false),
        Ok(Answer::Dedup(DedupOutcome::InFlight { retry_after_s: 60 })),
        "loaded now: EVALSHA works"
    );
    // Another attempt's failure never deletes our mark.
    let forget = |token: &str| Query::DedupForget {
        key: key.clone(),
        token: token.into(),
    };
    assert_eq!(
        store.run(&p, &forget("b")),
        Ok(Answer::Forgotten { deleted: false })
    );
    assert_eq!(
        store.run(&p, &forget("a")),
        Ok(Answer::Forgotten { deleted: true })
    );
    assert_eq!(
        store.run(&p, &begin(&key, "c")),
        Ok(Answer::Dedup(DedupOutcome::First))
    );
    let commit = Query::DedupCommit {
        key: key.clone(),
        token: "c".into(),
        window_ms: 1500,
    };
    assert_eq!(
        store.run(&p, &commit),
        Ok(Answer::Committed { was_ours: true })
    );
    assert_eq!(
        store.run(&p, &begin(&key, "d")),
        Ok(Answer::Dedup(DedupOutcome::Duplicate))
    );
    // A delivered mark is not forgotten by a late failure either.
    assert_eq!(
        store.run(&p, &forget("c")),
        Ok(Answer::Forgotten { deleted: false })
    );
    // The window is the key's TTL.
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(
        store.run(&p, &begin(&key, "e")),
        Ok(Answer::Dedup(DedupOutcome::First))
    );
}

#[test]
fn concurrent_first_sights_of_one_delivery_have_exactly_one_winner() {
    let store = Arc::new(Store::start());
    let p = Arc::new(store.policy());
    let threads = 3;
    let deliveries = 40;
    for s in SCRIPTS {
        // Load once so every thread races on the script, not on loading it.
        let _ = store.get(&format!(
            "EVAL/{}/0",
            encode(&format!("return 0 -- {}", s.name))
        ));
    }
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (store, p, barrier) = (store.clone(), p.clone(), barrier.clone());
            std::thread::spawn(move || {
                (0..deliveries)
                    .map(|d| {
                        barrier.wait();
                        let key = p.dedup_key("payments", &format!("msg_{d}"));
                        store.run(&p, &begin(&key, &format!("t{t}")))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<Vec<_>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for d in 0..deliveries {
        let firsts = results
            .iter()
            .filter(|r| r[d] == Ok(Answer::Dedup(DedupOutcome::First)))
            .count();
        let in_flight = results
            .iter()
            .filter(|r| matches!(r[d], Ok(Answer::Dedup(DedupOutcome::InFlight { .. }))))
            .count();
        assert_eq!(
            (firsts, in_flight),
            (1, threads - 1),
            "delivery {d}: {results:?}"
        );
    }
}

fn bucket(key: String, rps: f64, burst: f64, level: f64) -> LeaseBucket {
    LeaseBucket {
        key,
        limit: Limit { rps, burst },
        level,
    }
}

fn lease(store: &Store, p: &callback_guard::core::state::StatePolicy, q: &Query) -> LeaseGrant {
    match store.run(p, q) {
        Ok(Answer::Lease(g)) => g,
        other => panic!("lease: {other:?}\n{}", store.logs()),
    }
}

#[test]
fn concurrent_leases_never_grant_more_than_the_bucket_holds() {
    let store = Arc::new(Store::start());
    let p = Arc::new(store.policy());
    // 20 rps, burst 10: over ~1.5 s at most 10 + 20 * elapsed tokens.
    let q = Arc::new(Query::Lease {
        buckets: vec![bucket(p.bucket_key("limit:payments"), 20.0, 10.0, 1.0)],
        want: 3,
    });
    let _ = store.run(&p, &q); // load the script; counted below
    let start = Instant::now();
    let mut total = lease_total(&store, &p, &q, Duration::from_millis(1500), 3);
    total += 3; // the first call may have granted up to 3
    let elapsed = start.elapsed().as_secs_f64();
    let most = 10.0 + 20.0 * (elapsed + 0.05);
    assert!(
        f64::from(total) <= most,
        "granted {total} > {most:.1} in {elapsed:.2}s"
    );
    assert!(
        f64::from(total) >= 10.0 + 20.0 * 1.5 * 0.8,
        "granted only {total}: the bucket refills"
    );
}

/// Leases from `threads` threads until `for_how_long`; the tokens granted.
fn lease_total(
    store: &Arc<Store>,
    p: &Arc<callback_guard::core::state::StatePolicy>,
    q: &Arc<Query>,
    for_how_long: Duration,
    threads: usize,
) -> u32 {
    let end = Instant::now() + for_how_long;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (store, p, q) = (store.clone(), p.clone(), q.clone());
            std::thread::spawn(move || {
                let mut got = 0;
                while Instant::now() < end {
                    let g = lease(&store, &p, &q);
                    got += g.granted;
                    if g.granted == 0 {
                        assert!(g.retry_after_ms > 0 && g.refused == 1, "{g:?}");
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                got
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

#[test]
fn a_lease_draws_from_all_its_buckets_or_none_and_keeps_the_shedding_reserve() {
    let store = Store::start();
    let p = store.policy();
    let slow = 0.001; // no refill to speak of during the test
    let capacity = p.bucket_key("adm:capacity");
    // `low` may not dig into the lower half of capacity (burst 10: level 5).
    let low = Query::Lease {
        buckets: vec![
            bucket(p.bucket_key("adm:low"), slow, 100.0, 1.0),
            bucket(capacity.clone(), slow, 10.0, 5.0),
        ],
        want: 100,
    };
    let g = lease(&store, &p, &low);
    assert_eq!(
        g.granted, 6,
        "10 tokens, low stops once fewer than 5 are left"
    );
    let g = lease(&store, &p, &low);
    assert_eq!((g.granted, g.refused), (0, 0b10), "capacity refused: {g:?}");
    assert!(
        (990_000..=1_000_000).contains(&g.retry_after_ms),
        "one token at 0.001 rps: {g:?}"
    );
    // `high` (level 1) still gets the rest.
    let high = Query::Lease {
        buckets: vec![
            bucket(p.bucket_key("adm:high"), slow, 2.0, 1.0),
            bucket(capacity.clone(), slow, 10.0, 1.0),
        ],
        want: 100,
    };
    assert_eq!(lease(&store, &p, &high).granted, 2, "high's own burst is 2");
    let g = lease(&store, &p, &high);
    assert_eq!((g.granted, g.refused), (0, 0b01), "its own bucket refused");
    // All or nothing: capacity was not drawn by that refusal.
    let normal = Query::Lease {
        buckets: vec![
            bucket(p.bucket_key("adm:normal"), slow, 100.0, 1.0),
            bucket(capacity, slow, 10.0, 1.0),
        ],
        want: 100,
    };
    assert_eq!(lease(&store, &p, &normal).granted, 2, "10 - 6 - 2 left");
}

#[test]
fn redis_down_is_an_error_and_a_restart_reloads_the_scripts() {
    let mut store = Store::start();
    let p = store.policy();
    let key = p.dedup_key("payments", "msg_restart");
    assert_eq!(
        store.run(&p, &begin(&key, "a")),
        Ok(Answer::Dedup(DedupOutcome::First))
    );
    store.kill_redis();
    assert_eq!(
        store.run(&p, &begin(&key, "b")),
        Err(StateError::Unavailable)
    );
    store.start_redis();
    store.wait_webdis();
    // Empty again (no persistence), script cache too: `run` reloads it.
    assert_eq!(
        store.run_once(&p, &begin(&key, "c"), false),
        Err(StateError::NoScript)
    );
    assert_eq!(
        store.run(&p, &begin(&key, "c")),
        Ok(Answer::Dedup(DedupOutcome::First))
    );
}

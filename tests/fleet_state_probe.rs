#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The filter reaches the fleet-state store through an Envoy cluster
//! (issue #15): each worker probes it once after the configuration loads
//! (`dispatch_http_call` → webdis → Redis, `NOSCRIPT` → `EVAL`, the answer
//! read back), and says in one line whether it is usable, and why not.

mod support;

use std::time::{Duration, Instant};
use support::Envoy;
use support::redis::Store;

/// Waits (bounded) until Envoy's log holds `want` `times` times.
fn wait_log(envoy: &Envoy, want: &str, times: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = envoy.log();
        if log.matches(want).count() >= times {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {times} x {want:?} in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn envoy_with_state(name: &str, store: &Store, state: serde_json::Value) -> Envoy {
    let doc = serde_json::json!({ "state": state });
    Envoy::builder(name)
        .cluster("fleet-state", store.webdis_port)
        // The route needs a cluster; no request is sent in these tests.
        .cluster("upstream", store.webdis_port)
        .plugin(&doc.to_string())
        .start()
}

#[test]
fn every_worker_reaches_the_store_through_its_cluster() {
    let store = Store::start();
    let envoy = envoy_with_state("fleet-probe-ok", &store, store.state_config("fleet-state"));
    let log = wait_log(
        &envoy,
        "fleet state store reachable through cluster fleet-state",
        2,
    );
    assert!(!log.contains("not usable"), "{log}");
}

#[test]
fn a_wrong_password_a_dead_redis_and_a_missing_cluster_are_named() {
    let mut store = Store::start();
    let mut state = store.state_config("fleet-state");
    state["basic_auth"] = serde_json::json!({"value": "callback-guard:wrong"});
    let envoy = envoy_with_state("fleet-probe-auth", &store, state);
    wait_log(&envoy, "refused the command (403: check its ACL)", 2);
    drop(envoy);

    store.kill_redis();
    let envoy = envoy_with_state(
        "fleet-probe-down",
        &store,
        store.state_config("fleet-state"),
    );
    wait_log(&envoy, "cannot reach Redis (503)", 2);
    drop(envoy);

    let envoy = envoy_with_state("fleet-probe-cluster", &store, store.state_config("nowhere"));
    wait_log(&envoy, "not usable through cluster nowhere", 2);
}

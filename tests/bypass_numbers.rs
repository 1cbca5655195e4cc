#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue #12 item 9, "absurd numbers": every numeric setting is bounded at
//! load (the configuration is refused with its field path and the allowed
//! range), and `retry-after` is capped. The previous build loaded
//! `admission.limits.normal.rps: 1e-300` and answered
//! `retry-after: 18446744073709551615`.

mod support;

use support::{Envoy, Request, Upstream};

const PATH: &str = "/callbacks/payments";

fn channel(extra: &str) -> String {
    format!(r#"{{"name":"payments","match":{{"path_prefix":"{PATH}"}}{extra}}}"#)
}

#[test]
fn absurd_numbers_are_refused_at_load_with_their_field_path() {
    let cases = [
        (
            format!(
                r#"{{"channels":[{}],"admission":{{"limits":{{"normal":{{"rps":1e-300,"burst":1}}}}}}}}"#,
                channel("")
            ),
            "admission.limits.normal.rps: must be a number from 0.001 to 1000000000",
        ),
        (
            format!(
                r#"{{"channels":[{}],"admission":{{"capacity":{{"rps":10,"burst":1e300}}}}}}"#,
                channel("")
            ),
            "admission.capacity.burst: must be a number from 1 to 1000000000",
        ),
        (
            format!(
                r#"{{"channels":[{}]}}"#,
                channel(
                    r#","signature":{"scheme":"stripe","secrets":[{"value":"s"}],"tolerance_s":18446744073709551615}"#
                )
            ),
            "channels[0].signature.tolerance_s: must be between 1 and 3600",
        ),
        (
            format!(
                r#"{{"channels":[{}]}}"#,
                channel(
                    r#","routing":{"clusters":[{"name":"upstream","weight":4294967295,"latency_sla_ms":18446744073709551615}]}"#
                )
            ),
            "channels[0].routing.clusters[0].weight: must be between 1 and 10000",
        ),
    ];
    for (i, (config, needle)) in cases.iter().enumerate() {
        let up = Upstream::start();
        let log = Envoy::builder(&format!("absurd-number-{i}"))
            .plugin(config)
            .cluster("upstream", up.port())
            .start_expect_exit();
        let line = support::assert::config_error_line(&log);
        assert!(line.contains(needle), "{needle:?} not in: {line}");
        assert!(up.received().is_empty());
    }
}

#[test]
fn retry_after_is_capped_at_five_minutes() {
    // The slowest bucket accepted: one token per 1000 s. The second
    // callback would have to wait 1000 s; it is told 300.
    let up = Upstream::start();
    let envoy = Envoy::builder("retry-after-cap")
        .plugin(&format!(
            r#"{{"channels":[{}],"admission":{{"limits":{{"normal":{{"rps":0.001,"burst":1}}}}}}}}"#,
            channel("")
        ))
        .cluster("upstream", up.port())
        .start();
    let send = || {
        Request::post(PATH)
            .json(r#"{"id":"evt_1"}"#)
            .send(envoy.addr())
    };
    let first = send();
    assert_eq!(first.status, 200, "{}", first.body_str());
    let second = send();
    assert_eq!(second.status, 429, "{}", second.body_str());
    assert_eq!(second.json()["error"], "rate_limited");
    assert_eq!(second.header("retry-after"), Some("300"));
    // Only the admitted callback reached the service.
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body_str(), r#"{"id":"evt_1"}"#);
}

//! Tests of the whole admission decision (rules + buckets + config),
//! compiled from JSON (so they live with the compile step).

use super::AdmissionSpec;
use crate::config::{ConfigError, FieldPath};
use crate::core::admission::*;
use crate::core::names::header::PRIORITY as DEFAULT_PRIORITY_HEADER;
use crate::core::shared::{MemoryStore, StoreError};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const WP: &str = "spiffe://cluster.local/ns/default/sa/webhook-processor";
const T0: u64 = 1_700_000_000_000;

fn compile(json: &str) -> Result<AdmissionPolicy, ConfigError> {
    let spec: AdmissionSpec = serde_json::from_str(json).unwrap();
    super::compile_admission(&spec, &FieldPath::root().key("admission"))
}

fn policy(json: &str) -> AdmissionPolicy {
    compile(json).unwrap()
}

fn error(json: &str) -> String {
    compile(json).unwrap_err().to_string()
}

/// The SPEC example.
const SPEC_EXAMPLE: &str = r#"{
    "priority_header": "x-callback-priority",
    "rules": [
      { "priority": "high",
        "principals": ["spiffe://cluster.local/ns/default/sa/webhook-processor"],
        "effect": "allow" }
    ],
    "unauthorized_high": "demote",
    "capacity": { "rps": 1200, "burst": 300 },
    "limits": {
      "high":   { "rps": 1000, "burst": 200 },
      "normal": { "rps": 300,  "burst": 50 },
      "low":    { "rps": 50,   "burst": 10 }
    }
}"#;

#[test]
fn header_values_parse_leniently() {
    assert_eq!(Priority::from_header(None), Priority::Normal);
    assert_eq!(Priority::from_header(Some("high")), Priority::High);
    assert_eq!(Priority::from_header(Some("  HiGh \t")), Priority::High);
    assert_eq!(Priority::from_header(Some("LOW")), Priority::Low);
    assert_eq!(Priority::from_header(Some("normal")), Priority::Normal);
    assert_eq!(Priority::from_header(Some("urgent")), Priority::Normal);
    assert_eq!(Priority::from_header(Some("high,low")), Priority::Normal);
    assert_eq!(Priority::from_header(Some("")), Priority::Normal);
}

#[test]
fn spec_example_compiles_and_admits() {
    let p = policy(SPEC_EXAMPLE);
    assert_eq!(p.priority_header(), "x-callback-priority");
    let store = MemoryStore::new();
    assert_eq!(
        p.decide(&store, Some("high"), Some(WP), T0),
        Ok(Decision::Admitted(Priority::High))
    );
    // Issue #12: a URI SAN without `spiffe://` is no identity, even when
    // it spells an allowed principal the Istio way.
    assert_eq!(
        p.decide(
            &store,
            Some("high"),
            Some("cluster.local/ns/default/sa/webhook-processor"),
            T0
        ),
        Ok(Decision::Demoted(Priority::Normal))
    );
    assert_eq!(
        p.decide(&store, None, Some(WP), T0),
        Ok(Decision::Admitted(Priority::Normal))
    );
    assert_eq!(
        p.decide(&store, Some("low"), None, T0),
        Ok(Decision::Admitted(Priority::Low))
    );
    let evil = Some("spiffe://cluster.local/ns/default/sa/webhook-processor-evil");
    assert_eq!(
        p.decide(&store, Some("high"), evil, T0),
        Ok(Decision::Demoted(Priority::Normal))
    );
}

#[test]
fn unauthorized_high_demotes_or_rejects() {
    let rules = r#""rules": [{ "priority": "high", "principals": ["cluster.local/ns/default/sa/*"], "effect": "allow" }]"#;
    let demote = policy(&format!("{{ {rules} }}"));
    let reject = policy(&format!(r#"{{ {rules}, "unauthorized_high": "reject" }}"#));
    let other = Some("spiffe://cluster.local/ns/other/sa/webhook-processor");
    assert_eq!(
        demote.classify(Some("high"), other),
        Decision::Demoted(Priority::Normal)
    );
    assert_eq!(
        reject.classify(Some("high"), other),
        Decision::Denied(Priority::High)
    );
    assert_eq!(
        reject.classify(Some("high"), Some(WP)),
        Decision::Admitted(Priority::High)
    );
    // Reject only concerns high.
    assert_eq!(
        reject.classify(Some("low"), other),
        Decision::Admitted(Priority::Low)
    );
    assert_eq!(
        reject.classify(None, other),
        Decision::Admitted(Priority::Normal)
    );
}

#[test]
fn no_rules_means_no_high() {
    let p = policy("{}");
    assert_eq!(p.priority_header(), DEFAULT_PRIORITY_HEADER);
    assert_eq!(
        p.classify(Some("high"), Some(WP)),
        Decision::Demoted(Priority::Normal)
    );
    assert_eq!(
        p.classify(Some("low"), Some(WP)),
        Decision::Admitted(Priority::Low)
    );
}

#[test]
fn no_identity_is_never_allowed_high() {
    let p = policy(
        r#"{ "rules": [{ "priority": "high", "principals": ["*"], "effect": "allow" }],
                        "unauthorized_high": "reject" }"#,
    );
    assert_eq!(
        p.classify(Some("high"), Some(WP)),
        Decision::Admitted(Priority::High)
    );
    assert_eq!(
        p.classify(Some("high"), None),
        Decision::Denied(Priority::High)
    );
    assert_eq!(
        p.classify(Some("high"), Some("")),
        Decision::Denied(Priority::High)
    );
    assert_eq!(
        p.classify(Some("normal"), None),
        Decision::Admitted(Priority::Normal)
    );
}

#[test]
fn unauthenticated_deny_extension() {
    let p = policy(
        r#"{ "rules": [
        { "priority": "low", "principals": ["*"], "effect": "deny" },
        { "priority": "normal", "principals": [], "unauthenticated": true, "effect": "deny" }
    ] }"#,
    );
    // `*` never matches a missing identity, even in a deny rule...
    assert_eq!(
        p.classify(Some("low"), None),
        Decision::Admitted(Priority::Low)
    );
    assert_eq!(
        p.classify(Some("low"), Some(WP)),
        Decision::Denied(Priority::Low)
    );
    // ...the extension does.
    assert_eq!(p.classify(None, None), Decision::Denied(Priority::Normal));
    assert_eq!(
        p.classify(None, Some(WP)),
        Decision::Admitted(Priority::Normal)
    );
    // A demoted request is a normal request.
    assert_eq!(
        p.classify(Some("high"), None),
        Decision::Denied(Priority::Normal)
    );
}

#[test]
fn rule_order_decides() {
    let p = policy(
        r#"{ "rules": [
        { "priority": "high", "principals": ["cluster.local/ns/default/sa/webhook-legacy"], "effect": "deny" },
        { "priority": "high", "principals": ["cluster.local/ns/default/sa/webhook-*"], "effect": "allow" },
        { "priority": "normal", "principals": ["cluster.local/ns/untrusted/sa/*"], "effect": "deny" },
        { "priority": "high", "principals": ["cluster.local/ns/untrusted/sa/*"], "effect": "allow" }
    ] }"#,
    );
    let legacy = Some("spiffe://cluster.local/ns/default/sa/webhook-legacy");
    let untrusted = Some("spiffe://cluster.local/ns/untrusted/sa/bot");
    assert_eq!(
        p.classify(Some("high"), legacy),
        Decision::Denied(Priority::High)
    );
    assert_eq!(
        p.classify(Some("high"), Some(WP)),
        Decision::Admitted(Priority::High)
    );
    assert_eq!(
        p.classify(Some("normal"), untrusted),
        Decision::Denied(Priority::Normal)
    );
    assert_eq!(
        p.classify(Some("high"), untrusted),
        Decision::Admitted(Priority::High)
    );
    // A deny for high says nothing about normal.
    assert_eq!(
        p.classify(Some("normal"), legacy),
        Decision::Admitted(Priority::Normal)
    );
}

#[test]
fn demoted_request_obeys_normal_deny_rules() {
    let p = policy(
        r#"{ "rules": [
        { "priority": "normal", "principals": ["cluster.local/ns/untrusted/sa/*"], "effect": "deny" }
    ] }"#,
    );
    let untrusted = Some("spiffe://cluster.local/ns/untrusted/sa/bot");
    assert_eq!(
        p.classify(Some("high"), untrusted),
        Decision::Denied(Priority::Normal)
    );
    assert_eq!(
        p.classify(Some("high"), Some(WP)),
        Decision::Demoted(Priority::Normal)
    );
}

#[test]
fn buckets_shed_with_retry_after() {
    let p = policy(r#"{ "limits": { "low": { "rps": 0.5, "burst": 2 } } }"#);
    let store = MemoryStore::new();
    assert_eq!(
        p.decide(&store, Some("low"), None, T0),
        Ok(Decision::Admitted(Priority::Low))
    );
    assert_eq!(
        p.decide(&store, Some("low"), None, T0),
        Ok(Decision::Admitted(Priority::Low))
    );
    let shed = |retry_after_s| {
        Ok(Decision::Shed {
            priority: Priority::Low,
            retry_after_s,
            cause: Cause::RateLimited,
        })
    };
    assert_eq!(p.decide(&store, Some("low"), None, T0), shed(2));
    assert_eq!(p.decide(&store, Some("low"), None, T0 + 1_000), shed(1));
    assert_eq!(
        p.decide(&store, Some("low"), None, T0 + 2_000),
        Ok(Decision::Admitted(Priority::Low))
    );
    // Other priorities are unlimited.
    assert_eq!(
        p.decide(&store, None, None, T0),
        Ok(Decision::Admitted(Priority::Normal))
    );
}

#[test]
fn demoted_requests_draw_and_shed_as_normal() {
    let p = policy(
        r#"{ "limits": { "high": { "rps": 1000, "burst": 1000 }, "normal": { "rps": 1, "burst": 1 } } }"#,
    );
    let store = MemoryStore::new();
    assert_eq!(
        p.decide(&store, Some("high"), Some(WP), T0),
        Ok(Decision::Demoted(Priority::Normal))
    );
    assert_eq!(
        p.decide(&store, Some("high"), Some(WP), T0),
        Ok(Decision::Shed {
            priority: Priority::Normal,
            retry_after_s: 1,
            cause: Cause::RateLimited,
        })
    );
}

#[test]
fn capacity_sheds_low_then_normal_then_high() {
    let p = policy(
        r#"{ "rules": [{ "priority": "high", "principals": ["*"], "effect": "allow" }],
                        "capacity": { "rps": 1, "burst": 10 } }"#,
    );
    let store = MemoryStore::new();
    let count = |prio: &str| {
        (0..100)
            .take_while(|_| {
                matches!(
                    p.decide(&store, Some(prio), Some(WP), T0),
                    Ok(Decision::Admitted(_))
                )
            })
            .count()
    };
    assert_eq!(count("low"), 6); // 10 → 4 (below half)
    assert_eq!(count("normal"), 3); // 4 → 1 (below a fifth)
    assert_eq!(count("low"), 0);
    assert_eq!(count("high"), 1); // 1 → 0 (empty)
    assert_eq!(count("normal"), 0);
    assert_eq!(
        p.decide(&store, Some("low"), Some(WP), T0),
        Ok(Decision::Shed {
            priority: Priority::Low,
            retry_after_s: 5,
            cause: Cause::Capacity,
        })
    );
}

#[test]
fn two_policies_over_one_store_share_the_buckets() {
    // Two worker threads: each compiled its own policy, one shared data.
    let worker_a = policy(SPEC_EXAMPLE);
    let worker_b = policy(SPEC_EXAMPLE);
    let store = MemoryStore::new();
    let mut admitted = 0;
    for i in 0..20 {
        let worker = if i % 2 == 0 { &worker_a } else { &worker_b };
        if worker.decide(&store, Some("low"), None, T0) == Ok(Decision::Admitted(Priority::Low)) {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 10, "one low burst of 10 across both workers");
    assert_eq!(store.len(), 1);
}

#[test]
fn clock_going_backwards_mints_nothing() {
    let p = policy(r#"{ "limits": { "normal": { "rps": 1, "burst": 1 } } }"#);
    let store = MemoryStore::new();
    assert_eq!(
        p.decide(&store, None, None, T0),
        Ok(Decision::Admitted(Priority::Normal))
    );
    for now in [T0 - 1, T0 - 60_000, 0, T0] {
        assert!(
            matches!(p.decide(&store, None, None, now), Ok(Decision::Shed { .. })),
            "at {now}"
        );
    }
    assert_eq!(
        p.decide(&store, None, None, T0 + 1_000),
        Ok(Decision::Admitted(Priority::Normal))
    );
}

#[test]
fn denied_requests_do_not_draw() {
    let p = policy(
        r#"{ "rules": [{ "priority": "low", "principals": ["*"], "effect": "deny" }],
                        "capacity": { "rps": 1, "burst": 1 } }"#,
    );
    let store = MemoryStore::new();
    assert_eq!(
        p.decide(&store, Some("low"), Some(WP), T0),
        Ok(Decision::Denied(Priority::Low))
    );
    assert!(store.is_empty());
}

use crate::core::shared::testing::BrokenStore;

#[test]
fn store_failure_fails_open_on_request() {
    let p = policy(SPEC_EXAMPLE);
    assert_eq!(
        p.decide(&BrokenStore, Some("low"), None, T0),
        Err(StoreError::Host)
    );
    assert_eq!(
        p.decide_fail_open(&BrokenStore, Some("high"), None, T0),
        (Decision::Demoted(Priority::Normal), Some(StoreError::Host))
    );
    assert_eq!(
        p.decide_fail_open(&BrokenStore, Some("high"), Some(WP), T0),
        (Decision::Admitted(Priority::High), Some(StoreError::Host))
    );
    // Rules still deny without touching the store.
    let strict =
        policy(r#"{ "unauthorized_high": "reject", "capacity": { "rps": 1, "burst": 1 } }"#);
    assert_eq!(
        strict.decide(&BrokenStore, Some("high"), None, T0),
        Ok(Decision::Denied(Priority::High))
    );
}

#[test]
fn decision_labels() {
    let shed = Decision::Shed {
        priority: Priority::Low,
        retry_after_s: 3,
        cause: Cause::Capacity,
    };
    assert_eq!(
        (shed.as_str(), shed.priority().as_str(), shed.admitted()),
        ("shed", "low", None)
    );
    let demoted = Decision::Demoted(Priority::Normal);
    assert_eq!(
        (demoted.as_str(), demoted.admitted()),
        ("demoted", Some(Priority::Normal))
    );
    assert_eq!(Decision::Denied(Priority::High).as_str(), "denied");
}

#[test]
fn config_errors_name_their_field() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{ "rules": [{ "priority": "high", "principals": ["*"], "effect": "allow" },
                           { "priority": "high", "principals": ["spiffe://cluster.local/ns/**"], "effect": "allow" }] }"#,
            "admission.rules[1].principals[0]: ",
        ),
        (
            r#"{ "rules": [{ "priority": "high", "principals": ["*", ""], "effect": "allow" }] }"#,
            "admission.rules[0].principals[1]: empty principal",
        ),
        (
            r#"{ "rules": [{ "priority": "high", "principals": ["https://x/y"], "effect": "allow" }] }"#,
            "admission.rules[0].principals[0]: ",
        ),
        (
            r#"{ "rules": [{ "priority": "high", "principals": ["spiffe://td/ns/a b"], "effect": "allow" }] }"#,
            "admission.rules[0].principals[0]: ",
        ),
        (
            r#"{ "rules": [{ "priority": "urgent", "principals": ["*"], "effect": "allow" }] }"#,
            "admission.rules[0].priority: unknown priority \"urgent\"",
        ),
        (
            r#"{ "rules": [{ "priority": "High", "principals": ["*"], "effect": "allow" }] }"#,
            "admission.rules[0].priority: ",
        ),
        (
            r#"{ "rules": [{ "priority": "high", "principals": ["*"], "effect": "permit" }] }"#,
            "admission.rules[0].effect: unknown effect \"permit\"",
        ),
        (
            r#"{ "rules": [{ "priority": "high", "principals": [], "effect": "allow" }] }"#,
            "admission.rules[0].principals: must list at least one principal",
        ),
        (
            r#"{ "rules": [{ "priority": "high", "principals": [], "unauthenticated": true, "effect": "allow" }] }"#,
            "admission.rules[0].unauthenticated: ",
        ),
        (
            r#"{ "unauthorized_high": "drop" }"#,
            "admission.unauthorized_high: unknown value \"drop\"",
        ),
        (
            r#"{ "capacity": { "rps": 0, "burst": 10 } }"#,
            "admission.capacity.rps: ",
        ),
        (
            r#"{ "capacity": { "rps": -1, "burst": 10 } }"#,
            "admission.capacity.rps: ",
        ),
        (
            r#"{ "limits": { "low": { "rps": 5, "burst": 0.5 } } }"#,
            "admission.limits.low.burst: ",
        ),
        (
            r#"{ "limits": { "high": { "rps": 5, "burst": 0 } } }"#,
            "admission.limits.high.burst: ",
        ),
        (
            r#"{ "limits": { "normal": { "rps": 0, "burst": 0 } } }"#,
            "admission.limits.normal.rps: ",
        ),
        (
            r#"{ "priority_header": "" }"#,
            "admission.priority_header: must not be empty",
        ),
        (
            r#"{ "priority_header": "x priority" }"#,
            "admission.priority_header: ",
        ),
        (
            r#"{ "priority_header": ":authority" }"#,
            "admission.priority_header: ",
        ),
        (
            r#"{ "priority_header": "X-Callback-Priority-Admitted" }"#,
            "admission.priority_header: must differ",
        ),
    ];
    for (json, expected) in cases {
        let err = error(json);
        assert!(
            err.starts_with(expected),
            "{json}\n  got: {err}\n  want: {expected}..."
        );
    }
}

#[test]
fn header_name_is_lower_cased() {
    assert_eq!(
        policy(r#"{ "priority_header": "X-Prio" }"#).priority_header(),
        "x-prio"
    );
}

#[test]
fn unknown_keys_are_parse_errors() {
    for json in [
        r#"{ "limits": { "urgent": { "rps": 1, "burst": 1 } } }"#,
        r#"{ "capacity": { "rps": 1, "burst": 1, "extra": 2 } }"#,
        r#"{ "rules": [{ "priority": "high", "principals": ["*"], "effect": "allow", "when": 1 }] }"#,
    ] {
        assert!(
            serde_json::from_str::<AdmissionSpec>(json).is_err(),
            "{json}"
        );
    }
}

#[test]
fn an_empty_placeholder_key_reads_as_full_buckets() {
    use crate::core::shared::{SharedStore, create_if_absent};
    let spec: AdmissionSpec =
        serde_json::from_str(r#"{"limits": {"normal": {"rps": 1, "burst": 2}}}"#).unwrap();
    let policy = super::compile_admission(&spec, &FieldPath::root()).unwrap();
    let store = MemoryStore::new();
    create_if_absent(&store, crate::core::admission::bucket::STATE_KEY).unwrap();
    let (_, cas_before) = store
        .get(crate::core::admission::bucket::STATE_KEY)
        .unwrap()
        .unwrap();
    for _ in 0..2 {
        assert!(matches!(
            policy.decide(&store, None, None, 1_000).unwrap(),
            Decision::Admitted(_)
        ));
    }
    assert!(matches!(
        policy.decide(&store, None, None, 1_000).unwrap(),
        Decision::Shed { .. }
    ));
    let (_, cas_after) = store
        .get(crate::core::admission::bucket::STATE_KEY)
        .unwrap()
        .unwrap();
    assert_ne!(
        cas_before, cas_after,
        "draws went through compare-and-swap on the existing key"
    );
}

#[test]
fn identity_is_needed_only_when_a_rule_can_use_it() {
    let compile = |json: &str| {
        let spec: AdmissionSpec = serde_json::from_str(json).unwrap();
        super::compile_admission(&spec, &FieldPath::root()).unwrap()
    };
    let no_rules = compile("{}");
    assert!(!no_rules.needs_identity(Some("high")));
    let high_only = compile(
        r#"{"rules":[{"priority":"high","principals":["spiffe://td/ns/a/sa/b"],"effect":"allow"}]}"#,
    );
    assert!(high_only.needs_identity(Some("high")));
    assert!(!high_only.needs_identity(None));
    assert!(!high_only.needs_identity(Some("low")));
    let normal_deny = compile(
        r#"{"rules":[{"priority":"normal","principals":["spiffe://td/ns/a/sa/b"],"effect":"deny"}]}"#,
    );
    // A demoted high request follows the normal rules.
    assert!(normal_deny.needs_identity(Some("high")));
    assert!(normal_deny.needs_identity(Some("normal")));
    assert!(!normal_deny.needs_identity(Some("low")));
    // Whatever needs_identity says, skipping the identity never changes the decision.
    for policy in [&no_rules, &high_only, &normal_deny] {
        for asked in [None, Some("high"), Some("normal"), Some("low")] {
            if !policy.needs_identity(asked) {
                assert_eq!(
                    policy.classify(asked, Some("spiffe://td/ns/a/sa/b")),
                    policy.classify(asked, None)
                );
            }
        }
    }
}

#[test]
fn decision_labels_are_every_decision() {
    let cause = |cause| Decision::Shed {
        priority: Priority::Low,
        retry_after_s: 1,
        cause,
    };
    let all = [
        Decision::Admitted(Priority::High),
        Decision::Demoted(Priority::Normal),
        Decision::Denied(Priority::High),
        cause(Cause::Capacity),
        cause(Cause::RateLimited),
    ];
    let mut got: Vec<&str> = all.iter().map(|d| d.as_str()).collect();
    let mut want = Decision::LABELS.to_vec();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
}

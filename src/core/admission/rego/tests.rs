use super::*;

fn compile_with(
    source: &str,
    entrypoint: &str,
    headers: &[&str],
    timeout_us: Option<u64>,
) -> Result<RegoPolicy, Invalid> {
    let modules = vec![("admission.rego".to_string(), source.to_string())];
    let headers: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
    let reasons = vec!["not_a_webhook".to_string()];
    RegoPolicy::compile(PolicyFields {
        modules: &modules,
        entrypoint,
        headers: &headers,
        priorities: None,
        on_error: None,
        timeout_us,
        reasons: &reasons,
    })
}

/// Compiles with the largest evaluation budget: these tests are about
/// what a policy decides, not about its timing, and a loaded test machine
/// can take more than the default 1 ms (the timeout tests set their own).
fn compile(source: &str) -> RegoPolicy {
    compile_with(
        source,
        "data.callback.admission.decision",
        &["x-team"],
        Some(MAX_TIMEOUT_US),
    )
    .unwrap()
}

fn hdrs(pairs: &[(&str, &str)]) -> Headers {
    Headers::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn request<'a>(
    identity: Option<&'a str>,
    requested: Option<&'a str>,
    headers: &'a Headers,
) -> PolicyInput<'a> {
    PolicyInput {
        requested,
        identity,
        channel: "payments",
        method: "POST",
        path: "/hooks/payments",
        host: "api.example.com",
        headers,
        scheme: None,
        delivery_id: None,
    }
}

/// The realistic policy of the docs and the benchmark: SPIFFE glob,
/// priority, channel.
pub const WEBHOOK_POLICY: &str = r#"
package callback.admission

decision := {"allow": false, "reason": "blocked_namespace"} if {
    startswith(input.identity, "spiffe://cluster.local/ns/sandbox/")
} else := {"allow": true, "priority": "high", "reason": "webhook_processor"} if {
    input.priority == "high"
    input.channel in {"payments", "refunds"}
    glob.match("spiffe://cluster.local/ns/*/sa/webhook-*", ["/"], input.identity)
} else := {"allow": true, "priority": "normal", "reason": "not_a_webhook"}
"#;

const PROCESSOR: &str = "spiffe://cluster.local/ns/pay/sa/webhook-processor";

#[test]
fn realistic_policy_maps_onto_decisions() {
    let p = compile(WEBHOOK_POLICY);
    let h = hdrs(&[]);
    let high = |id| p.decide(&request(id, Some("HIGH"), &h)).unwrap();
    assert_eq!(
        high(Some(PROCESSOR)),
        PolicyVerdict::Decided {
            decision: Decision::Admitted(Priority::High),
            reason: Some("webhook_processor".into())
        }
    );
    assert_eq!(
        high(Some("spiffe://cluster.local/ns/pay/sa/batch")),
        PolicyVerdict::Decided {
            decision: Decision::Demoted(Priority::Normal),
            reason: Some("not_a_webhook".into())
        }
    );
    // No identity: `input.identity` is undefined, the glob rule fails.
    assert_eq!(
        high(None),
        PolicyVerdict::Decided {
            decision: Decision::Demoted(Priority::Normal),
            reason: Some("not_a_webhook".into())
        }
    );
    assert_eq!(
        high(Some("spiffe://cluster.local/ns/sandbox/sa/webhook-x")),
        PolicyVerdict::Decided {
            decision: Decision::Denied(Priority::High),
            reason: Some("blocked_namespace".into())
        }
    );
}

#[test]
fn input_document_is_versioned_and_bounded() {
    let p = compile("package callback.admission\ndecision := input");
    let header = hdrs(&[("x-team", "payments"), ("authorization", "secret")]);
    let input = p.input(&request(Some(PROCESSOR), None, &header));
    let json: serde_json::Value = serde_json::from_str(&input.to_json_str().unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "version": 1, "phase": "headers", "priority": "normal",
            "channel": "payments", "method": "POST", "path": "/hooks/payments",
            "host": "api.example.com", "identity": PROCESSOR,
            "headers": {"x-team": "payments"}, "headers_dropped": false
        })
    );
    // Unlisted headers never reach the policy; a repeated one is dropped
    // and flagged.
    let repeated = hdrs(&[("x-team", "a"), ("x-team", "b")]);
    let input = p.input(&request(None, Some("low"), &repeated));
    let json: serde_json::Value = serde_json::from_str(&input.to_json_str().unwrap()).unwrap();
    assert_eq!(json["headers"], serde_json::json!({}));
    assert_eq!(json["headers_dropped"], true);
    assert_eq!(json["priority"], "low");
    assert!(json.get("identity").is_none());
    assert!(json.get("scheme").is_none());
}

#[test]
fn output_mapping() {
    use Priority::*;
    let out = |allow, priority, reason: Option<&str>| PolicyOutput {
        allow,
        priority,
        reason: reason.map(str::to_string),
    };
    let decided = |d| PolicyVerdict::Decided {
        decision: d,
        reason: None,
    };
    assert_eq!(
        verdict(High, out(Some(true), None, None)),
        decided(Decision::Admitted(High))
    );
    assert_eq!(
        verdict(High, out(Some(true), Some(Low), None)),
        decided(Decision::Demoted(Low))
    );
    // Never more than asked.
    assert_eq!(
        verdict(Low, out(Some(true), Some(High), None)),
        decided(Decision::Admitted(Low))
    );
    assert_eq!(
        verdict(Normal, out(Some(false), Some(Low), None)),
        decided(Decision::Denied(Normal))
    );
    assert_eq!(
        verdict(High, out(None, Some(Normal), Some("x"))),
        PolicyVerdict::Rules {
            priority: Normal,
            reason: Some("x".into())
        }
    );
    assert_eq!(
        verdict(High, PolicyOutput::default()),
        PolicyVerdict::Rules {
            priority: High,
            reason: None
        }
    );
}

#[test]
fn malformed_output_is_an_error() {
    let h = hdrs(&[]);
    for body in [
        r#"decision := true"#,
        r#"decision := {"allow": "yes"}"#,
        r#"decision := {"allow": true, "priority": "urgent"}"#,
        r#"decision := {"allow": true, "reason": 7}"#,
    ] {
        let p = compile(&format!("package callback.admission\n{body}"));
        assert!(
            p.decide(&request(None, Some("high"), &h)).is_err(),
            "{body}"
        );
    }
    // Undefined is no answer: the rules decide.
    let p = compile("package callback.admission\ndecision := {\"allow\": true} if false");
    assert_eq!(
        p.decide(&request(None, Some("high"), &h)).unwrap(),
        PolicyVerdict::Rules {
            priority: Priority::High,
            reason: None
        }
    );
}

#[test]
fn reasons_are_cleaned_and_labels_bounded() {
    let p = compile(
        "package callback.admission\ndecision := {\"allow\": false, \"reason\": concat(\"\", [\"bad\\nline \", input.headers[\"x-team\"]])}",
    );
    let header = hdrs(&[("x-team", "ok")]);
    let v = p.decide(&request(None, Some("high"), &header)).unwrap();
    let PolicyVerdict::Decided { reason, .. } = v else {
        panic!("{v:?}")
    };
    assert_eq!(reason.as_deref(), Some("bad_line ok"));
    assert_eq!(p.reason_label(Some("not_a_webhook")), "not_a_webhook");
    assert_eq!(p.reason_label(Some("anything else")), OTHER_REASON);
    assert_eq!(p.reason_label(None), NO_REASON);
}

#[test]
fn syntax_errors_name_line_and_column() {
    let e = compile_with(
        "package callback.admission\n\ndecision := {\"allow\": true} if {\n  input.x ==\n}\n",
        "data.callback.admission.decision",
        &[],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("modules.admission.rego: "), "{e}");
    assert!(e.contains("admission.rego:5:1"), "{e}");
}

#[test]
fn unsafe_variables_and_unknown_entrypoints_are_refused() {
    let e = compile_with(
        "package callback.admission\ndecision := {\"allow\": x} if { y := 1 }\n",
        "data.callback.admission.decision",
        &[],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains(":2:"), "{e}");
    for entry in [
        "data.callback.admission.nope",
        "data.callback.admission",
        "callback.admission.decision",
    ] {
        let e = compile_with(WEBHOOK_POLICY, entry, &[], None).unwrap_err();
        assert!(e.at.is_empty() || e.at == "entrypoint", "{e}");
    }
}

#[test]
fn limits_are_enforced_at_configure_time() {
    assert!(
        compile_with(
            WEBHOOK_POLICY,
            "data.callback.admission.decision",
            &[],
            Some(10)
        )
        .is_err()
    );
    assert!(
        compile_with(
            WEBHOOK_POLICY,
            "data.callback.admission.decision",
            &["bad header"],
            None
        )
        .is_err()
    );
    let many: Vec<&str> = (0..=MAX_HEADERS).map(|_| "x").collect();
    assert!(
        compile_with(
            WEBHOOK_POLICY,
            "data.callback.admission.decision",
            &many,
            None
        )
        .is_err()
    );
}

/// A policy that would run for hours is stopped by the wall-clock budget
/// and reported as an error.
#[test]
fn runaway_policy_is_stopped() {
    let p = compile_with(
        "package callback.admission\n\
         n := numbers.range(1, 2000)\n\
         decision := {\"allow\": count([1 | some a in n; some b in n; some c in n]) > 0} if input.channel == \"payments\"\n",
        "data.callback.admission.decision",
        &[],
        Some(2000),
    )
    .unwrap();
    let h = hdrs(&[]);
    let started = std::time::Instant::now();
    let e = p.decide(&request(None, Some("high"), &h)).unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(500), "{took:?} {e:?}");
}

/// OPA's Envoy tutorial policy (`envoy.authz`: method + path glob +
/// role), adapted to our input: the role comes from a listed header
/// instead of a JWT.
#[test]
fn opa_envoy_tutorial_policy_adapted() {
    let source = r#"
package envoy.authz

default allow := false

allow if {
    action_allowed
}

action_allowed if {
    input.method == "POST"
    glob.match("/hooks/*", ["/"], input.path)
    input.headers["x-team"] == "payments"
}

decision := {"allow": allow, "reason": reason}

reason := "ok" if allow
reason := "forbidden" if not allow
"#;
    let p = compile_with(source, "data.envoy.authz.decision", &["x-team"], None).unwrap();
    let team = hdrs(&[("x-team", "payments")]);
    let other = hdrs(&[("x-team", "growth")]);
    assert_eq!(
        p.decide(&request(None, Some("high"), &team)).unwrap(),
        PolicyVerdict::Decided {
            decision: Decision::Admitted(Priority::High),
            reason: Some("ok".into())
        }
    );
    assert_eq!(
        p.decide(&request(None, Some("high"), &other)).unwrap(),
        PolicyVerdict::Decided {
            decision: Decision::Denied(Priority::High),
            reason: Some("forbidden".into())
        }
    );
}

/// OPA-Istio's SPIFFE example (`svc_spiffe_id` from the peer), adapted: the
/// filter hands the peer's SPIFFE ID over directly as `input.identity`.
#[test]
fn opa_istio_spiffe_policy_adapted() {
    let source = r#"
package istio.authz

allowed_callers := {
    "spiffe://cluster.local/ns/default/sa/webhook-processor",
}

decision := {"allow": true} if input.identity in allowed_callers
decision := {"allow": true, "priority": "low", "reason": "unknown_caller"} if not input.identity in allowed_callers
"#;
    let p = compile_with(source, "data.istio.authz.decision", &[], None).unwrap();
    let h = hdrs(&[]);
    let ok = p
        .decide(&request(
            Some("spiffe://cluster.local/ns/default/sa/webhook-processor"),
            Some("high"),
            &h,
        ))
        .unwrap();
    assert_eq!(
        ok,
        PolicyVerdict::Decided {
            decision: Decision::Admitted(Priority::High),
            reason: None
        }
    );
    let other = p.decide(&request(None, Some("high"), &h)).unwrap();
    assert_eq!(
        other,
        PolicyVerdict::Decided {
            decision: Decision::Demoted(Priority::Low),
            reason: Some("unknown_caller".into())
        }
    );
}

/// `numbers.range` would reserve a billion values in one allocation;
/// the bounded replacement refuses instead, and keeps OPA's results for
/// small ranges.
#[test]
fn huge_ranges_are_refused_not_allocated() {
    let p = compile(
        "package callback.admission\n\
         decision := {\"allow\": count(numbers.range(1, 1000000000)) > 0} if input.channel == \"payments\"\n",
    );
    let h = hdrs(&[]);
    assert!(p.decide(&request(None, Some("high"), &h)).is_err());
    let p = compile(
        "package callback.admission\n\
         ok if { numbers.range(3, 1) == [3, 2, 1]; numbers.range_step(0, 10, 5) == [0, 5, 10] }\n\
         decision := {\"allow\": true} if ok\n",
    );
    assert_eq!(
        p.decide(&request(None, Some("high"), &h)).unwrap(),
        PolicyVerdict::Decided {
            decision: Decision::Admitted(Priority::High),
            reason: None
        }
    );
}

/// Builtins not compiled into this build (`regex`, `time`, JWT, `net`,
/// `base64`, ...) are refused at load when the sample `high` request
/// reaches them (otherwise they are an evaluation error per request).
#[test]
fn builtins_missing_from_the_build_are_refused_at_load() {
    for call in [
        "regex.match(\"^/hooks\", input.path)",
        "time.now_ns() > 0",
        "base64.encode(input.path) != \"\"",
    ] {
        let source = format!(
            "package callback.admission\ndecision := {{\"allow\": true}} if {{ input.priority == \"high\"; {call} }}\n"
        );
        let e = compile_with(&source, "data.callback.admission.decision", &[], None);
        assert!(e.is_err(), "{call} was accepted");
    }
}

#[test]
fn a_missing_builtin_beyond_the_sample_is_an_error_per_request() {
    let p = compile(
        "package callback.admission\ndecision := {\"allow\": true} if { input.channel == \"payments\"; regex.match(\"^/\", input.path) }\n",
    );
    let h = hdrs(&[]);
    let e = p.decide(&request(None, Some("high"), &h)).unwrap_err();
    assert!(e.0.contains("regex.match"), "{e:?}");
}

/// A runaway or an oversized range that the sample request reaches is
/// caught at load, before any traffic.
#[test]
fn a_runaway_reached_by_the_sample_is_refused_at_load() {
    for body in [
        "count(numbers.range(1, 1000000000)) > 0",
        "count([1 | some a in numbers.range(1, 3000); some b in numbers.range(1, 3000); some c in numbers.range(1, 3000)]) > 0",
    ] {
        let source = format!(
            "package callback.admission\ndecision := {{\"allow\": {body}}} if input.priority == \"high\"\n"
        );
        let e = compile_with(&source, "data.callback.admission.decision", &[], Some(2000))
            .unwrap_err()
            .to_string();
        assert!(e.contains("on a sample request failed"), "{e}");
    }
}

/// The decision cache answers a repeated input document without
/// evaluating, and tells apart inputs that differ in any field the policy
/// sees (here a listed header and the path).
#[test]
fn repeated_inputs_are_answered_from_the_cache() {
    let p = compile(
        "package callback.admission\ndefault allow := false\nallow if input.headers[\"x-team\"] == \"pay\"\ndecision := {\"allow\": allow, \"reason\": input.path}\n",
    );
    assert!(p.caches());
    let pay = hdrs(&[("x-team", "pay")]);
    let ops = hdrs(&[("x-team", "ops")]);
    let none = hdrs(&[]);
    let twice = hdrs(&[("x-team", "pay"), ("x-team", "pay")]);
    let allowed = |h: &Headers| match p.decide(&request(Some(PROCESSOR), Some("high"), h)) {
        Ok(PolicyVerdict::Decided { decision, .. }) => {
            decision == Decision::Admitted(Priority::High)
        }
        other => panic!("{other:?}"),
    };
    for _ in 0..3 {
        assert!(allowed(&pay));
        assert!(!allowed(&ops));
        assert!(!allowed(&none));
        // Repeated: left out of `headers` (undefined), not "pay".
        assert!(!allowed(&twice));
    }
    // pay, ops, absent, repeated (absent with `headers_dropped`): four
    // input documents.
    assert_eq!(p.cached_entries(), 4);
    let mut other_path = request(Some(PROCESSOR), Some("high"), &pay);
    other_path.path = "/hooks/refunds";
    assert_eq!(
        p.decide(&other_path).unwrap(),
        PolicyVerdict::Decided {
            decision: Decision::Admitted(Priority::High),
            reason: Some("/hooks/refunds".into())
        }
    );
    assert_eq!(p.cached_entries(), 5);
}

/// The key's fields are length-prefixed: moving text from one field to the
/// next changes the key.
#[test]
fn cache_keys_do_not_collide_across_fields() {
    let p = compile(
        "package callback.admission\ndecision := {\"reason\": concat(\"|\", [input.method, input.path])}\n",
    );
    let h = hdrs(&[]);
    let mut a = request(None, Some("high"), &h);
    a.method = "PO";
    a.path = "ST/x";
    let mut b = a;
    b.method = "POST";
    b.path = "/x";
    let reason = |r: &PolicyInput<'_>| match p.decide(r).unwrap() {
        PolicyVerdict::Rules { reason, .. } => reason,
        other => panic!("{other:?}"),
    };
    assert_eq!(reason(&a).as_deref(), Some("PO|ST/x"));
    assert_eq!(reason(&b).as_deref(), Some("POST|/x"));
    assert_eq!(p.cached_entries(), 2);
}

#[test]
fn the_cache_is_bounded_and_skips_long_keys_and_errors() {
    // A generous budget: 1000 evaluations of an unoptimised test build.
    let slow = |source: &str| {
        compile_with(
            source,
            "data.callback.admission.decision",
            &["x-team"],
            Some(MAX_TIMEOUT_US),
        )
        .unwrap()
    };
    let p = slow(WEBHOOK_POLICY);
    let h = hdrs(&[]);
    let paths: Vec<String> = (0..1000).map(|i| format!("/hooks/{i}")).collect();
    for path in &paths {
        let mut r = request(Some(PROCESSOR), Some("high"), &h);
        r.path = path;
        p.decide(&r).unwrap();
    }
    assert!(
        p.cached_entries() <= 2 * CACHE_ENTRIES,
        "{}",
        p.cached_entries()
    );
    assert!(p.cached_entries() > CACHE_ENTRIES);
    let p = slow(WEBHOOK_POLICY);
    let long = format!("/{}", "a".repeat(MAX_CACHE_KEY_BYTES));
    let mut r = request(Some(PROCESSOR), Some("high"), &h);
    r.path = &long;
    p.decide(&r).unwrap();
    assert_eq!(
        p.cached_entries(),
        0,
        "a key over MAX_CACHE_KEY_BYTES is not kept"
    );
    // An evaluation error is not kept (evaluated again next time).
    let p = compile(
        "package callback.admission\ndecision := {\"allow\": true} if { input.channel == \"payments\"; regex.match(\"^/\", input.path) }\n",
    );
    assert!(p.decide(&request(None, Some("high"), &h)).is_err());
    assert!(p.decide(&request(None, Some("high"), &h)).is_err());
    assert_eq!(p.cached_entries(), 0);
}

/// `rand.intn` makes the output not a function of the input: such a policy
/// is evaluated every time.
#[test]
fn a_policy_using_rand_is_not_cached() {
    let p = compile(
        "package callback.admission\ndecision := {\"allow\": rand.intn(\"sample\", 100) < 100}\n",
    );
    assert!(!p.caches());
    let h = hdrs(&[]);
    p.decide(&request(None, Some("high"), &h)).unwrap();
    assert_eq!(p.cached_entries(), 0);
    assert!(compile(WEBHOOK_POLICY).caches());
}

/// The evaluations tried at load get [`LOAD_TIMEOUT_US`], not
/// `timeout_us`: a first evaluation in a cold VM on a busy node must not
/// refuse a sound policy. The request-time budget still applies.
#[test]
fn load_time_tries_have_their_own_budget() {
    let source = "package callback.admission\n\
         decision := {\"allow\": count([1 | some a in numbers.range(1, 100); some b in numbers.range(1, 100)]) > 0}\n";
    let p = compile_with(
        source,
        "data.callback.admission.decision",
        &[],
        Some(MIN_TIMEOUT_US),
    )
    .expect("accepted at load within LOAD_TIMEOUT_US");
    let h = hdrs(&[]);
    let e = p.decide(&request(None, Some("high"), &h)).unwrap_err();
    assert!(e.0.contains("time limit"), "{e:?}");
}

//! Criterion benchmark of one Rego admission evaluation (issue #16): the
//! realistic policy of the README (SPIFFE glob + priority + channel), input
//! built from request headers, output mapped onto a decision. Compare with
//! `admission/classify` of the rule list (benches/admission.rs).
//!
//! `rego/eval_*` always evaluate (input document, engine clone, `eval_rule`,
//! output parsing: what a first-seen input costs); `rego/classify_cached_*`
//! go through `classify`, which answers a repeated input from the decision
//! cache.
use callback_guard::config::{self, AdmissionSpec, FieldPath};
use callback_guard::core::admission::AdmissionPolicy;
use callback_guard::core::admission::rego::{self, PolicyInput};
use callback_guard::core::headers::Headers;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

const POLICY: &str = r#"package callback.admission

decision := {"allow": false, "reason": "blocked_namespace"} if {
    startswith(input.identity, "spiffe://cluster.local/ns/sandbox/")
} else := {"allow": true, "priority": "high", "reason": "webhook_processor"} if {
    input.priority == "high"
    input.channel in {"payments", "refunds"}
    glob.match("spiffe://cluster.local/ns/*/sa/webhook-*", ["/"], input.identity)
} else := {"allow": true, "priority": "normal", "reason": "not_a_webhook"}
"#;

const ALLOWED: &str = "spiffe://cluster.local/ns/pay/sa/webhook-processor";
const DEMOTED: &str = "spiffe://cluster.local/ns/pay/sa/batch";

fn compile(modules: serde_json::Value, entrypoint: &str) -> Option<AdmissionPolicy> {
    let spec = serde_json::json!({
        "policy": {"modules": modules, "entrypoint": entrypoint, "headers": ["x-team"]}
    });
    let spec: AdmissionSpec = serde_json::from_value(spec)
        .map_err(|e| eprintln!("bad bench spec: {e}"))
        .ok()?;
    config::compile_admission(&spec, &FieldPath::root().key("admission"))
        .map_err(|e| eprintln!("bad bench spec: {e}"))
        .ok()
}

fn bench(c: &mut Criterion) {
    let headers = Headers::new(vec![
        (":method".into(), "POST".into()),
        (":path".into(), "/callbacks/payments/order".into()),
        (":authority".into(), "api.example.com".into()),
        ("x-callback-priority".into(), "high".into()),
        ("x-team".into(), "payments".into()),
    ]);
    let input = |identity| PolicyInput {
        requested: Some("high"),
        identity: Some(identity),
        channel: "payments",
        method: "POST",
        path: "/callbacks/payments/order",
        host: "api.example.com",
        headers: &headers,
        scheme: None,
        delivery_id: None,
    };
    let entry = "data.callback.admission.decision";
    let policies = [
        // The floor: a policy that only returns a constant.
        (
            "constant_policy",
            compile(
                serde_json::json!({"floor.rego": "package floor\ndecision := {\"allow\": true}\n"}),
                "data.floor.decision",
            ),
        ),
        (
            "high_allowed",
            compile(serde_json::json!({"admission.rego": POLICY}), entry),
        ),
        (
            "startswith_allowed",
            compile(
                serde_json::json!({"admission.rego": POLICY.replace(
                    "glob.match(\"spiffe://cluster.local/ns/*/sa/webhook-*\", [\"/\"], input.identity)",
                    "startswith(input.identity, \"spiffe://cluster.local/ns/pay/sa/webhook-\")",
                )}),
                entry,
            ),
        ),
    ];
    for (name, admission) in &policies {
        let Some(policy) = admission.as_ref().and_then(AdmissionPolicy::rego) else {
            continue;
        };
        let req = input(ALLOWED);
        c.bench_function(&format!("rego/eval_{name}"), |b| {
            b.iter(|| black_box(policy.evaluate(policy.input(black_box(&req)))))
        });
    }
    let Some(admission) = policies[1].1.as_ref() else {
        return;
    };
    let Some(policy) = admission.rego() else {
        return;
    };
    let req = input(DEMOTED);
    c.bench_function("rego/eval_high_demoted", |b| {
        b.iter(|| black_box(policy.evaluate(policy.input(black_box(&req)))))
    });
    let req = input(ALLOWED);
    c.bench_function("rego/input_document", |b| {
        b.iter(|| black_box(policy.input(black_box(&req))))
    });
    for (name, identity) in [("high_allowed", ALLOWED), ("high_demoted", DEMOTED)] {
        let req = input(identity);
        c.bench_function(&format!("rego/classify_cached_{name}"), |b| {
            b.iter(|| black_box(rego::classify(admission, policy, black_box(&req))))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

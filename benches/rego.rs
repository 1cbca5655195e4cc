//! Criterion benchmark of one Rego admission evaluation (issue #16): the
//! realistic policy of the README (SPIFFE glob + priority + channel), input
//! built from request headers, output mapped onto a decision. Compare with
//! `admission/classify` of the rule list (benches/admission.rs).
use callback_guard::config::{self, AdmissionSpec, FieldPath};
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

fn bench(c: &mut Criterion) {
    let spec = serde_json::json!({
        "policy": {
            "modules": {"admission.rego": POLICY},
            "entrypoint": "data.callback.admission.decision",
            "headers": ["x-team"]
        }
    });
    let spec: AdmissionSpec = match serde_json::from_value(spec) {
        Ok(spec) => spec,
        Err(e) => return eprintln!("bad bench spec: {e}"),
    };
    let admission = match config::compile_admission(&spec, &FieldPath::root().key("admission")) {
        Ok(a) => a,
        Err(e) => return eprintln!("bad bench spec: {e}"),
    };
    let Some(policy) = admission.rego() else {
        return eprintln!("no policy");
    };
    let headers = Headers::new(vec![
        (":method".into(), "POST".into()),
        (":path".into(), "/callbacks/payments/order".into()),
        (":authority".into(), "api.example.com".into()),
        ("x-callback-priority".into(), "high".into()),
        ("x-team".into(), "payments".into()),
    ]);
    // The floor: a policy that only returns a constant.
    let floor = serde_json::json!({
        "policy": {
            "modules": {"floor.rego": "package floor\ndecision := {\"allow\": true}\n"},
            "entrypoint": "data.floor.decision"
        }
    });
    let floor = serde_json::from_value::<AdmissionSpec>(floor)
        .ok()
        .and_then(|s| config::compile_admission(&s, &FieldPath::root()).ok());
    if let Some(floor) = floor.as_ref()
        && let Some(p) = floor.rego()
    {
        c.bench_function("rego/classify_constant_policy", |b| {
            b.iter(|| {
                let input = PolicyInput {
                    requested: Some("high"),
                    identity: Some("spiffe://cluster.local/ns/pay/sa/webhook-processor"),
                    channel: "payments",
                    method: "POST",
                    path: "/callbacks/payments/order",
                    host: "api.example.com",
                    headers: &headers,
                    scheme: None,
                    delivery_id: None,
                };
                black_box(rego::classify(floor, p, black_box(&input)))
            })
        });
    }
    for (name, identity) in [
        (
            "rego/classify_high_allowed",
            "spiffe://cluster.local/ns/pay/sa/webhook-processor",
        ),
        (
            "rego/classify_high_demoted",
            "spiffe://cluster.local/ns/pay/sa/batch",
        ),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                let input = PolicyInput {
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
                black_box(rego::classify(&admission, policy, black_box(&input)))
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

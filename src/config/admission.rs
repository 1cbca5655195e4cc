//! Top-level `admission`.

use super::{ConfigError, FieldPath};
use crate::core::admission::bucket::{Limit, MAX_BURST, MAX_RPS, MIN_BURST, MIN_RPS};
use crate::core::admission::principal::Principal;
#[cfg(feature = "rego")]
use crate::core::admission::rego;
use crate::core::admission::rules::{Effect, Rule};
use crate::core::admission::{AdmissionPolicy, Limits, Priority, UnauthorizedHigh};
use crate::core::names::header::{
    PRIORITY as DEFAULT_PRIORITY_HEADER, PRIORITY_ADMITTED as ADMITTED_HEADER,
};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AdmissionSpec {
    /// Default `x-callback-priority`.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("default" = crate::core::names::header::PRIORITY)))]
    pub priority_header: Option<String>,
    /// Checked in order; the first whose `priority` equals the requested one
    /// and whose `principals` match the caller decides.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// demote (default) | reject
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["demote", "reject", null], "default" = "demote")))]
    pub unauthorized_high: Option<String>,
    /// One more bucket every admitted request draws from; lower priorities
    /// are shed first.
    #[serde(default)]
    pub capacity: Option<BucketSpec>,
    /// Token buckets per priority; over its bucket a request gets 429.
    #[serde(default)]
    pub limits: Option<LimitsSpec>,
    /// Extension (issue #16): an OPA Rego policy decides admission before
    /// the rules (see docs/configuration.md, "Rego policy").
    #[serde(default)]
    pub policy: Option<RegoPolicySpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RegoPolicySpec {
    /// Rego modules (Rego v1 syntax), file name to source text; 1 to 16
    /// modules, at most 256 KiB in all. Compiled once at configure time.
    pub modules: BTreeMap<String, String>,
    /// The rule to query, e.g. `data.callback.admission.decision`; its
    /// value is `{ "allow": bool, "priority": "high|normal|low", "reason": "..." }`.
    pub entrypoint: String,
    /// Request headers copied into `input.headers` (at most 16, values up
    /// to 1024 bytes).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Requested priorities the policy is evaluated for (default `["high"]`);
    /// the others go to the rules alone.
    #[serde(default)]
    pub priorities: Option<Vec<String>>,
    /// rules (default) | deny: what an evaluation error or timeout leads to.
    #[serde(default)]
    pub on_error: Option<String>,
    /// Wall-clock budget of one evaluation in microseconds (50 to 100000,
    /// default 1000); over it the evaluation is stopped and is an error.
    #[serde(default)]
    pub timeout_us: Option<u64>,
    /// Reasons counted under their own `reason` label in
    /// `callback_admission_policy_total` (at most 32; others count as `other`).
    #[serde(default)]
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// high | normal | low
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["high", "normal", "low"])))]
    pub priority: String,
    /// SPIFFE IDs or patterns (`spiffe://td/ns/*/sa/webhook-*`), with or
    /// without the `spiffe://` prefix; `"*"` alone is any identity. May be
    /// empty only when `unauthenticated` is true.
    #[serde(default)]
    pub principals: Vec<String>,
    /// allow | deny
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["allow", "deny"])))]
    pub effect: String,
    /// Extension (not in SPEC): a `deny` rule with `unauthenticated: true`
    /// also matches requests that carry no peer identity (no mTLS client
    /// certificate). Default false: such requests match no rule at all.
    /// Refused on `allow` rules: an unauthenticated caller is never allowed
    /// anything a rule could grant.
    #[serde(default)]
    pub unauthenticated: bool,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    /// Tokens added per second (0.001 to 1e9).
    #[cfg_attr(feature = "schema", schemars(range(min = 0.001, max = 1e9)))]
    pub rps: f64,
    /// Bucket size (1 to 1e9).
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1e9)))]
    pub burst: f64,
}

impl BucketSpec {
    /// Validated runtime form; errors name `path.rps` / `path.burst`.
    /// `rps` must be [`MIN_RPS`]..=[`MAX_RPS`] and `burst`
    /// [`MIN_BURST`]..=[`MAX_BURST`]; NaN and infinities are refused.
    pub fn limit(&self, path: &FieldPath) -> Result<Limit, ConfigError> {
        let (rps, burst) = (self.rps, self.burst);
        if !(MIN_RPS..=MAX_RPS).contains(&rps) {
            return Err(path.key("rps").error(format!(
                "must be a number from {MIN_RPS} to {MAX_RPS} (tokens per second), got {rps}"
            )));
        }
        if !(MIN_BURST..=MAX_BURST).contains(&burst) {
            return Err(path.key("burst").error(format!(
                "must be a number from {MIN_BURST} to {MAX_BURST} (bucket size), got {burst}"
            )));
        }
        Ok(Limit { rps, burst })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Bucket for `high` (absent: unlimited).
    #[serde(default)]
    pub high: Option<BucketSpec>,
    /// Bucket for `normal` (absent: unlimited).
    #[serde(default)]
    pub normal: Option<BucketSpec>,
    /// Bucket for `low` (absent: unlimited).
    #[serde(default)]
    pub low: Option<BucketSpec>,
}

/// `admission`: every rule, bucket and the Rego policy, each error naming
/// its field.
pub fn compile_admission(
    spec: &AdmissionSpec,
    path: &FieldPath,
) -> Result<AdmissionPolicy, ConfigError> {
    let priority_header = compile_header(
        spec.priority_header.as_deref(),
        &path.key("priority_header"),
    )?;
    let rules = spec
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| compile_rule(r, &path.key("rules").index(i)))
        .collect::<Result<Vec<_>, _>>()?;
    let unauthorized_high = match spec.unauthorized_high.as_deref() {
        None | Some("demote") => UnauthorizedHigh::Demote,
        Some("reject") => UnauthorizedHigh::Reject,
        Some(other) => {
            return Err(path.key("unauthorized_high").error(format!(
                "unknown value {other:?} (expected demote or reject)"
            )));
        }
    };
    let per = spec.limits.as_ref();
    let at = path.key("limits");
    let limits = Limits {
        high: per
            .and_then(|l| l.high)
            .map(|b| b.limit(&at.key("high")))
            .transpose()?,
        normal: per
            .and_then(|l| l.normal)
            .map(|b| b.limit(&at.key("normal")))
            .transpose()?,
        low: per
            .and_then(|l| l.low)
            .map(|b| b.limit(&at.key("low")))
            .transpose()?,
        capacity: spec
            .capacity
            .map(|b| b.limit(&path.key("capacity")))
            .transpose()?,
    };
    #[cfg(not(feature = "rego"))]
    if spec.policy.is_some() {
        return Err(path
            .key("policy")
            .error("this build has no Rego support (cargo feature `rego`)"));
    }
    Ok(AdmissionPolicy::new(
        priority_header,
        rules,
        unauthorized_high,
        limits,
        #[cfg(feature = "rego")]
        compile_rego(spec, path)?,
    ))
}

/// `admission.rules[i]`.
fn compile_rule(spec: &RuleSpec, path: &FieldPath) -> Result<Rule, ConfigError> {
    let priority = Priority::from_name(&spec.priority).ok_or_else(|| {
        path.key("priority").error(format!(
            "unknown priority {:?} (expected high, normal or low)",
            spec.priority
        ))
    })?;
    let effect = match spec.effect.as_str() {
        "allow" => Effect::Allow,
        "deny" => Effect::Deny,
        other => {
            return Err(path
                .key("effect")
                .error(format!("unknown effect {other:?} (expected allow or deny)")));
        }
    };
    if spec.unauthenticated && effect == Effect::Allow {
        return Err(path.key("unauthenticated").error(
            "only a deny rule can match unauthenticated requests; nothing is allowed without an identity",
        ));
    }
    if spec.principals.is_empty() && !spec.unauthenticated {
        return Err(path
            .key("principals")
            .error("must list at least one principal"));
    }
    let principals = spec
        .principals
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Principal::parse(p).map_err(|reason| path.key("principals").index(i).error(reason))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rule {
        priority,
        principals,
        effect,
        unauthenticated: spec.unauthenticated,
    })
}

#[cfg(feature = "rego")]
fn compile_rego(
    spec: &AdmissionSpec,
    path: &FieldPath,
) -> Result<Option<rego::RegoPolicy>, ConfigError> {
    let Some(p) = spec.policy.as_ref() else {
        return Ok(None);
    };
    let modules: Vec<(String, String)> = p
        .modules
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let fields = rego::PolicyFields {
        modules: &modules,
        entrypoint: &p.entrypoint,
        headers: &p.headers,
        priorities: p.priorities.as_deref(),
        on_error: p.on_error.as_deref(),
        timeout_us: p.timeout_us,
        reasons: &p.reasons,
    };
    let at = path.key("policy");
    rego::RegoPolicy::compile(fields)
        .map(Some)
        .map_err(|e| at.join(&e.at).error(e.reason))
}

fn compile_header(name: Option<&str>, path: &FieldPath) -> Result<String, ConfigError> {
    let name = name.unwrap_or(DEFAULT_PRIORITY_HEADER).to_ascii_lowercase();
    if name.is_empty() {
        return Err(path.error("must not be empty"));
    }
    // RFC 9110 token characters; rules out pseudo-headers and whitespace.
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if let Some(c) = name.bytes().find(|b| !token(*b)) {
        return Err(path.error(format!(
            "{name:?} is not a valid header name (character {:?})",
            char::from(c)
        )));
    }
    if name == ADMITTED_HEADER {
        return Err(path.error(format!(
            "must differ from {ADMITTED_HEADER}, which the filter sets itself"
        )));
    }
    Ok(name)
}

/// The whole admission decision (rules + buckets + Rego), from JSON.
#[cfg(test)]
#[path = "admission_tests.rs"]
mod policy_tests;

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn limits_are_bounded_at_load() {
        let path = FieldPath::root().key("admission").key("capacity");
        let limit = |rps, burst| BucketSpec { rps, burst }.limit(&path);
        let ok = |rps, burst| limit(rps, burst).is_ok();
        assert!(ok(MIN_RPS, MIN_BURST));
        assert!(ok(MAX_RPS, MAX_BURST));
        assert!(ok(300.0, 50.0));
        for rps in [
            1e-300,
            0.0009,
            0.0,
            -1.0,
            1_000_000_000.5,
            1e300,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let err = limit(rps, 10.0).unwrap_err();
            assert_eq!(err.path, "admission.capacity.rps", "{rps}");
            assert!(err.reason.contains("from 0.001 to 1000000000"), "{err}");
        }
        for burst in [0.0, 0.999, -1.0, 1e10, f64::NAN, f64::INFINITY] {
            let err = limit(10.0, burst).unwrap_err();
            assert_eq!(err.path, "admission.capacity.burst", "{burst}");
            assert!(err.reason.contains("from 1 to 1000000000"), "{err}");
        }
    }

    /// The core reports a Rego error relative to the policy; the full
    /// path is `admission.policy.` + that.
    #[cfg(feature = "rego")]
    #[test]
    fn rego_errors_carry_the_full_field_path() {
        let doc = r#"{"admission": {"policy": {"modules": {"admission.rego": "package callback.admission\ndecision := {\"allow\": true} if {\n  input.x ==\n}\n"},
            "entrypoint": "data.callback.admission.decision", "headers": ["ok", "bad header"]}}}"#;
        let e = crate::config::load(doc.as_bytes(), &|_| None).unwrap_err();
        assert!(
            e.path
                .starts_with("admission.policy.modules.admission.rego"),
            "{e}"
        );
        let doc = r#"{"admission": {"policy": {"modules": {"a.rego": "package callback.admission\ndecision := {}"},
            "entrypoint": "data.callback.admission.decision", "headers": ["ok", "bad header"]}}}"#;
        let e = crate::config::load(doc.as_bytes(), &|_| None).unwrap_err();
        assert_eq!(e.path, "admission.policy.headers[1]", "{e}");
    }
}

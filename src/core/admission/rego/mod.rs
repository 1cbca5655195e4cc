//! Admission decided by an OPA Rego policy (`admission.policy`, issue #16).
//!
//! The policy is compiled once at configure time by
//! [regorus](https://github.com/microsoft/regorus) (Microsoft's Rego
//! interpreter in Rust; no interpreter of our own). At request time the
//! filter builds the [input document](PolicyInput) (version
//! [`INPUT_VERSION`]), evaluates the configured entry point rule with a
//! wall-clock budget, and maps its [output](PolicyOutput) onto the same
//! [`Decision`]s as the rule list:
//!
//! | output                              | decision                                   |
//! |-------------------------------------|--------------------------------------------|
//! | `allow: false`                      | `Denied` (403) at the requested priority   |
//! | `allow: true`                       | `Admitted` at `priority` (default: the requested one); a lower `priority` is `Demoted`; a higher one is capped at the requested one |
//! | no `allow` (or the rule undefined)  | the rule list decides, for `priority` if given, else the requested one |
//!
//! `reason` (optional) goes to the 403 body, the decision record and,
//! when listed in `admission.policy.reasons`, the `reason` label of
//! `callback_admission_policy_total` (anything else counts as `other`).
//! An evaluation error, a timeout or a malformed output is
//! [`PolicyError`]: the filter then applies `on_error`.
//!
//! **Decision cache.** With the builtins this build has, a policy's output
//! is a function of its input document alone (no `data` from bundles, no
//! `time`, `http.send`, `uuid` or `opa.runtime`), except `rand.intn`. So
//! each compiled policy (one per worker VM) keeps the outputs of its last
//! evaluations keyed by the full input document ([`CACHE_ENTRIES`] per
//! generation, two generations, keys up to [`MAX_CACHE_KEY_BYTES`]): a
//! repeated input (same identity, priority, channel, method, path, host
//! and listed headers) is answered without evaluating. Only successful
//! outputs are kept (an error or timeout is evaluated again next time). A
//! policy whose source mentions `intn` is never cached.

use super::{AdmissionPolicy, Decision, Priority};
use crate::core::headers::Headers;
use crate::core::metrics::stat_name;
use crate::core::names::{label, metric};
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::time::Duration;

/// Version of the input document (`input.version`).
pub const INPUT_VERSION: u32 = 1;
/// Largest number of modules.
pub const MAX_MODULES: usize = 16;
/// Largest total Rego source size, bytes.
pub const MAX_SOURCE_BYTES: usize = 256 * 1024;
/// Largest number of request headers copied into the input.
pub const MAX_HEADERS: usize = 16;
/// Longest header value copied into the input, bytes; a longer one is left
/// out (never truncated) and `input.headers_dropped` is true.
pub const MAX_HEADER_VALUE_BYTES: usize = 1024;
/// Largest number of declared metric reasons.
pub const MAX_REASONS: usize = 32;
/// Longest `reason` kept from the output, bytes.
pub const MAX_REASON_BYTES: usize = 128;
/// Default and bounds of `timeout_us`.
pub const DEFAULT_TIMEOUT_US: u64 = 1000;
pub const MIN_TIMEOUT_US: u64 = 50;
pub const MAX_TIMEOUT_US: u64 = 100_000;
/// Budget of the evaluations tried at load (see [`RegoPolicy::compile`]).
pub const LOAD_TIMEOUT_US: u64 = MAX_TIMEOUT_US;
/// `reason` label for reasons not declared in `reasons`.
pub const OTHER_REASON: &str = "other";
/// `reason` label when the output has none.
pub const NO_REASON: &str = "none";
/// Decision cache: entries per generation (two generations are kept).
pub const CACHE_ENTRIES: usize = 128;
/// Decision cache: longest key (the input document, length-prefixed
/// fields) kept, bytes; a longer input is evaluated every time.
pub const MAX_CACHE_KEY_BYTES: usize = 512;
/// A module mentioning one of these is not cached (its output is not a
/// function of the input alone). `rand.intn` is the only such builtin in
/// this build; the match is textual, so a comment also turns it off.
const NONDETERMINISTIC: [&str; 1] = ["intn"];

/// `on_error`: what a failed evaluation leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// The rule list decides, as without a policy (default): with no
    /// `allow` rule a `high` request is demoted or rejected
    /// (`unauthorized_high`), never admitted `high`.
    Rules,
    /// 403 `policy_error`.
    Deny,
}

/// The fields of `admission.policy`, borrowed (`config` owns the spec).
#[derive(Debug, Clone, Copy)]
pub struct PolicyFields<'a> {
    pub modules: &'a [(String, String)],
    pub entrypoint: &'a str,
    pub headers: &'a [String],
    pub priorities: Option<&'a [String]>,
    pub on_error: Option<&'a str>,
    pub timeout_us: Option<u64>,
    pub reasons: &'a [String],
}

/// Why [`RegoPolicy::compile`] refused a policy: the field, relative to
/// `admission.policy` (`"entrypoint"`, `"headers[1]"`, `""` for the policy
/// as a whole), and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub at: String,
    pub reason: String,
}

impl Invalid {
    fn at(at: &str, reason: impl Into<String>) -> Self {
        Self {
            at: at.to_string(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.at.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.at, self.reason)
        }
    }
}

/// `admission.policy`, compiled.
pub struct RegoPolicy {
    /// The prepared engine, reused by every evaluation of this worker
    /// (`eval_rule` resets its evaluation state first).
    engine: RefCell<Engine>,
    entrypoint: String,
    headers: Vec<String>,
    /// Requested priorities the policy is evaluated for.
    priorities: Vec<Priority>,
    pub on_error: OnError,
    reasons: Vec<String>,
    /// `None` for a policy that is not a function of its input.
    cache: Option<RefCell<DecisionCache>>,
}

/// Outputs of the last evaluations by input document: two generations of at
/// most [`CACHE_ENTRIES`]; when the current one is full it becomes the
/// previous one (dropping the older), so recently used keys survive and
/// memory stays bounded.
#[derive(Debug, Default)]
struct DecisionCache {
    current: HashMap<String, PolicyOutput>,
    previous: HashMap<String, PolicyOutput>,
}

impl DecisionCache {
    fn get(&mut self, key: &str) -> Option<PolicyOutput> {
        if let Some(out) = self.current.get(key) {
            return Some(out.clone());
        }
        let (key, out) = self.previous.remove_entry(key)?;
        self.insert(key, out.clone());
        Some(out)
    }

    fn insert(&mut self, key: String, out: PolicyOutput) {
        if self.current.len() >= CACHE_ENTRIES {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, out);
    }

    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

impl std::fmt::Debug for RegoPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoPolicy")
            .field("entrypoint", &self.entrypoint)
            .field("headers", &self.headers)
            .field("priorities", &self.priorities)
            .field("on_error", &self.on_error)
            .field("cached", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// What the filter knows about a request when the policy runs (at the
/// request headers).
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    /// The priority header's value as sent (normalised into `priority`).
    pub requested: Option<&'a str>,
    /// The peer's SPIFFE ID (already checked well-formed), if any.
    pub identity: Option<&'a str>,
    pub channel: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub host: &'a str,
    /// The request headers; only the configured ones reach the policy, and
    /// only when present once, visible ASCII (see
    /// [`Headers::single_token`]).
    pub headers: &'a Headers,
    /// Verified signature scheme: only known after the body (reserved; the
    /// policy runs at the headers, so always absent in version 1).
    pub scheme: Option<&'a str>,
    /// Provider delivery id: as `scheme`.
    pub delivery_id: Option<&'a str>,
}

/// The policy's answer, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyOutput {
    pub allow: Option<bool>,
    pub priority: Option<Priority>,
    pub reason: Option<String>,
}

/// Why an evaluation gave no usable answer (counted as `error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(pub String);

/// One evaluation's result, mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyVerdict {
    /// The policy decided.
    Decided {
        decision: Decision,
        reason: Option<String>,
    },
    /// No `allow` in the output: the rule list decides for this priority
    /// (the requested one, or the policy's `priority`).
    Rules {
        priority: Priority,
        reason: Option<String>,
    },
}

impl RegoPolicy {
    /// Compiles and checks the policy; an error names the field it is
    /// about relative to `admission.policy` (`config` adds the rest).
    pub fn compile(spec: PolicyFields<'_>) -> Result<Self, Invalid> {
        let modules_path = "modules".to_string();
        if spec.modules.is_empty() {
            return Err(Invalid::at(
                &modules_path,
                "must hold at least one Rego module",
            ));
        }
        if spec.modules.len() > MAX_MODULES {
            return Err(Invalid::at(
                &modules_path,
                format!("at most {MAX_MODULES} modules"),
            ));
        }
        let total: usize = spec.modules.iter().map(|(_, s)| s.len()).sum();
        if total > MAX_SOURCE_BYTES {
            return Err(Invalid::at(
                &modules_path,
                format!("{total} bytes of Rego; at most {MAX_SOURCE_BYTES}"),
            ));
        }
        let mut engine = Engine::new();
        // Rego v1 syntax (`if`, `contains`, `in`), as OPA 1.x.
        engine.set_rego_v0(false);
        bound_builtins(&mut engine).map_err(|e| Invalid::at("", e))?;
        for (name, source) in spec.modules {
            let at = format!("{modules_path}.{name}");
            if name.is_empty() || name.len() > 128 {
                return Err(Invalid::at(&at, "module name must be 1 to 128 characters"));
            }
            engine
                .add_policy(name.clone(), source.clone())
                .map_err(|e| {
                    Invalid::at(&at, format!("Rego does not compile: {}", one_line(&e)))
                })?;
        }
        let entry_at = "entrypoint";
        let entrypoint = spec.entrypoint.trim();
        let valid = entrypoint.strip_prefix("data.").is_some_and(|rest| {
            !rest.is_empty()
                && rest.split('.').all(|s| {
                    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                })
        });
        if !valid {
            return Err(Invalid::at(
                entry_at,
                format!(
                    "{entrypoint:?} is not a rule path (expected e.g. data.callback.admission.decision)"
                ),
            ));
        }
        // Type-checks every module and the entry point (an unknown rule, a
        // package path instead of a rule, an unsafe variable fail here).
        engine
            .compile_with_entrypoint(&entrypoint.into())
            .map_err(|e| Invalid::at("", format!("Rego does not compile: {}", one_line(&e))))?;
        let timeout_us = spec.timeout_us.unwrap_or(DEFAULT_TIMEOUT_US);
        if !(MIN_TIMEOUT_US..=MAX_TIMEOUT_US).contains(&timeout_us) {
            return Err(Invalid::at(
                "timeout_us",
                format!("{timeout_us} is out of range ({MIN_TIMEOUT_US} to {MAX_TIMEOUT_US})"),
            ));
        }
        let timer = |us: u64| ExecutionTimerConfig {
            limit: Duration::from_micros(us),
            check_interval: NonZeroU32::MIN.saturating_add(15),
        };
        // Some mistakes (an unsafe variable, a builtin this build lacks, a
        // runaway) only show when evaluated: try once on an empty input and
        // once on a sample `high` request, within [`LOAD_TIMEOUT_US`]: the
        // first evaluation in a fresh VM (cold code, lazy tables) on a busy
        // node took 12 ms in Envoy, and must not refuse a sound policy.
        engine.set_execution_timer_config(timer(LOAD_TIMEOUT_US));
        for (what, input) in [
            ("an empty input", Value::new_object()),
            ("a sample request", sample_input()),
        ] {
            engine.set_input(input);
            engine.eval_rule(entrypoint.to_string()).map_err(|e| {
                Invalid::at(
                    entry_at,
                    format!("evaluating {entrypoint} on {what} failed: {}", one_line(&e)),
                )
            })?;
        }
        engine.set_execution_timer_config(timer(timeout_us));
        let headers_at = "headers";
        if spec.headers.len() > MAX_HEADERS {
            return Err(Invalid::at(
                headers_at,
                format!("at most {MAX_HEADERS} headers"),
            ));
        }
        let mut headers = Vec::with_capacity(spec.headers.len());
        for (i, h) in spec.headers.iter().enumerate() {
            let name = h.to_ascii_lowercase();
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if name.is_empty() || !name.bytes().all(token) {
                return Err(Invalid::at(
                    &format!("{headers_at}[{i}]"),
                    format!("{h:?} is not a header name"),
                ));
            }
            if headers.contains(&name) {
                return Err(Invalid::at(
                    &format!("{headers_at}[{i}]"),
                    format!("{h:?} is listed twice"),
                ));
            }
            headers.push(name);
        }
        let priorities = match spec.priorities {
            None => vec![Priority::High],
            Some(list) => {
                let at = "priorities";
                if list.is_empty() {
                    return Err(Invalid::at(at, "must list at least one priority"));
                }
                let mut out = Vec::new();
                for (i, p) in list.iter().enumerate() {
                    let p = Priority::from_name(p).ok_or_else(|| {
                        Invalid::at(
                            &format!("{at}[{i}]"),
                            format!("unknown priority {p:?} (expected high, normal or low)"),
                        )
                    })?;
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
                out
            }
        };
        let on_error = match spec.on_error {
            None | Some("rules") => OnError::Rules,
            Some("deny") => OnError::Deny,
            Some(other) => {
                return Err(Invalid::at(
                    "on_error",
                    format!("unknown value {other:?} (expected rules or deny)"),
                ));
            }
        };
        let reasons_at = "reasons";
        if spec.reasons.len() > MAX_REASONS {
            return Err(Invalid::at(
                reasons_at,
                format!("at most {MAX_REASONS} reasons"),
            ));
        }
        for (i, r) in spec.reasons.iter().enumerate() {
            if !is_label(r) || r == OTHER_REASON || r == NO_REASON {
                return Err(Invalid::at(
                    &format!("{reasons_at}[{i}]"),
                    format!(
                        "{r:?}: a reason label is 1 to 64 of a-z 0-9 _ and not {OTHER_REASON:?} or {NO_REASON:?}"
                    ),
                ));
            }
        }
        let deterministic = !spec
            .modules
            .iter()
            .any(|(_, source)| NONDETERMINISTIC.iter().any(|n| source.contains(n)));
        Ok(Self {
            engine: RefCell::new(engine),
            entrypoint: entrypoint.to_string(),
            headers,
            priorities,
            on_error,
            reasons: spec.reasons.to_vec(),
            cache: deterministic.then(RefCell::default),
        })
    }

    /// Whether the policy is evaluated for this requested priority.
    pub fn applies_to(&self, requested: Priority) -> bool {
        self.priorities.contains(&requested)
    }

    /// The `reason` label of `callback_admission_policy_total`: a declared
    /// reason, `other`, or `none`.
    pub fn reason_label<'a>(&'a self, reason: Option<&str>) -> &'a str {
        match reason {
            None => NO_REASON,
            Some(r) => self
                .reasons
                .iter()
                .find(|d| d.as_str() == r)
                .map_or(OTHER_REASON, String::as_str),
        }
    }

    /// Every `reason` label this policy can produce (for declaring metrics).
    pub fn reason_labels(&self) -> impl Iterator<Item = &str> {
        self.reasons
            .iter()
            .map(String::as_str)
            .chain([OTHER_REASON, NO_REASON])
    }

    /// The input document for `request` (see the module docs).
    pub fn input(&self, request: &PolicyInput<'_>) -> Value {
        let mut doc = Value::new_object();
        let mut headers = Value::new_object();
        let mut truncated = false;
        if let Ok(h) = headers.as_object_mut() {
            for name in &self.headers {
                match request.headers.single_token(name) {
                    Ok(Some(v)) if v.len() <= MAX_HEADER_VALUE_BYTES => {
                        h.insert(Value::from(name.as_str()), Value::from(v));
                    }
                    Ok(None) => {}
                    _ => truncated = true,
                }
            }
        }
        if let Ok(o) = doc.as_object_mut() {
            let mut put = |k: &str, v: Value| {
                o.insert(Value::from(k), v);
            };
            put("version", Value::from(INPUT_VERSION));
            put("phase", Value::from("headers"));
            put(
                "priority",
                Value::from(Priority::from_header(request.requested).as_str()),
            );
            put("channel", Value::from(request.channel));
            put("method", Value::from(request.method));
            put("path", Value::from(request.path));
            put("host", Value::from(request.host));
            put("headers", headers);
            put("headers_dropped", Value::from(truncated));
            for (k, v) in [
                ("identity", request.identity),
                ("scheme", request.scheme),
                ("delivery_id", request.delivery_id),
            ] {
                if let Some(v) = v {
                    put(k, Value::from(v));
                }
            }
        }
        doc
    }

    /// Evaluates the entry point on `input` (bounded by `timeout_us`).
    pub fn evaluate(&self, input: Value) -> Result<PolicyOutput, PolicyError> {
        // Reused, not cloned: a clone per evaluation copies the engine's
        // maps. One evaluation at a time per worker, so never borrowed twice.
        let mut engine = self
            .engine
            .try_borrow_mut()
            .map_err(|_| PolicyError("policy engine busy".into()))?;
        engine.set_input(input);
        let value = engine
            .eval_rule(self.entrypoint.clone())
            .map_err(|e| PolicyError(one_line(&e)))?;
        parse_output(&value)
    }

    /// Evaluates (or answers from the decision cache) and maps onto a
    /// verdict for `requested`.
    pub fn decide(&self, request: &PolicyInput<'_>) -> Result<PolicyVerdict, PolicyError> {
        let asked = Priority::from_header(request.requested);
        let key = self.cache.as_ref().and_then(|_| self.cache_key(request));
        if let (Some(cache), Some(key)) = (&self.cache, &key)
            && let Ok(mut cache) = cache.try_borrow_mut()
            && let Some(output) = cache.get(key)
        {
            return Ok(verdict(asked, output));
        }
        let output = self.evaluate(self.input(request))?;
        if let (Some(cache), Some(key)) = (&self.cache, key)
            && let Ok(mut cache) = cache.try_borrow_mut()
        {
            cache.insert(key, output.clone());
        }
        Ok(verdict(asked, output))
    }

    /// Whether outputs are cached (the policy is a function of its input).
    pub fn caches(&self) -> bool {
        self.cache.is_some()
    }

    /// Entries in the decision cache.
    pub fn cached_entries(&self) -> usize {
        self.cache
            .as_ref()
            .and_then(|c| c.try_borrow().ok().map(|c| c.len()))
            .unwrap_or(0)
    }

    /// The decision cache key: every field [`input`](Self::input) puts in
    /// the document, each length-prefixed (absent: `-`), so two requests
    /// have the same key exactly when they have the same input document.
    /// `None` (not cached) when longer than [`MAX_CACHE_KEY_BYTES`].
    fn cache_key(&self, request: &PolicyInput<'_>) -> Option<String> {
        let mut key = String::with_capacity(160);
        let field = |key: &mut String, v: Option<&str>| match v {
            Some(v) => {
                let _ = write!(key, "{}:{v}", v.len());
            }
            None => key.push('-'),
        };
        field(
            &mut key,
            Some(Priority::from_header(request.requested).as_str()),
        );
        for v in [request.channel, request.method, request.path, request.host] {
            field(&mut key, Some(v));
        }
        for v in [request.identity, request.scheme, request.delivery_id] {
            field(&mut key, v);
        }
        for name in &self.headers {
            match request.headers.single_token(name) {
                Ok(Some(v)) if v.len() <= MAX_HEADER_VALUE_BYTES => field(&mut key, Some(v)),
                Ok(None) => field(&mut key, None),
                // Left out of `headers`, and `headers_dropped` is true.
                _ => key.push('!'),
            }
            if key.len() > MAX_CACHE_KEY_BYTES {
                return None;
            }
        }
        (key.len() <= MAX_CACHE_KEY_BYTES).then_some(key)
    }
}

/// The admission verdict at the request headers when the policy applies:
/// the [`Decision`] (never `Shed`: the buckets come after, as for the
/// rules), the policy's `reason`, and how it came about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOutcome {
    pub decision: Decision,
    pub reason: Option<String>,
    /// `decision` label of `callback_admission_policy_total`: `admitted`,
    /// `demoted`, `denied` (the policy decided), `rules` (no `allow` in the
    /// output), `error` (then `on_error` applied).
    pub source: &'static str,
    pub error: Option<PolicyError>,
}

/// `reason` of a 403 after a policy error with `on_error: "deny"`.
pub const POLICY_ERROR_REASON: &str = crate::core::names::code::POLICY_ERROR;

/// Every `decision` label of `callback_admission_policy_total`.
pub const SOURCES: [&str; 5] = ["admitted", "demoted", "denied", "rules", "error"];

impl PolicyOutcome {
    /// The `callback_admission_policy_total` stat.
    pub fn stat(&self, policy: &RegoPolicy) -> String {
        let reason = match &self.error {
            Some(_) => policy.reason_label(None),
            None => policy.reason_label(self.reason.as_deref()),
        };
        stat_name(
            metric::ADMISSION_POLICY_TOTAL,
            &[(label::DECISION, self.source), (label::REASON, reason)],
        )
    }
}

/// Classifies a request the policy [applies to](RegoPolicy::applies_to):
/// the policy first; the rule list when the output has no `allow`, or on
/// an error with `on_error: "rules"`.
pub fn classify(
    admission: &AdmissionPolicy,
    policy: &RegoPolicy,
    request: &PolicyInput<'_>,
) -> PolicyOutcome {
    let asked = Priority::from_header(request.requested);
    match policy.decide(request) {
        Ok(PolicyVerdict::Decided { decision, reason }) => PolicyOutcome {
            decision,
            reason,
            source: decision.as_str(),
            error: None,
        },
        Ok(PolicyVerdict::Rules { priority, reason }) => {
            let decision = match admission.classify(Some(priority.as_str()), request.identity) {
                // The policy lowered the priority the rules then admitted.
                Decision::Admitted(p) if p != asked => Decision::Demoted(p),
                d => d,
            };
            PolicyOutcome {
                decision,
                reason,
                source: "rules",
                error: None,
            }
        }
        Err(error) => {
            let (decision, reason) = match policy.on_error {
                OnError::Rules => (
                    admission.classify(request.requested, request.identity),
                    None,
                ),
                OnError::Deny => (
                    Decision::Denied(asked),
                    Some(POLICY_ERROR_REASON.to_string()),
                ),
            };
            PolicyOutcome {
                decision,
                reason,
                source: "error",
                error: Some(error),
            }
        }
    }
}

/// Most elements `numbers.range` / `numbers.range_step` may produce.
pub const MAX_RANGE_ELEMENTS: i64 = 10_000;

/// regorus's `numbers.range(a, b)` reserves `|b - a| + 1` values in one
/// allocation, before its wall-clock check can run: `numbers.range(1,
/// 1e9)` would abort the VM on allocation failure. Extensions are looked up
/// before builtins, so these bounded versions replace them: over
/// [`MAX_RANGE_ELEMENTS`] the evaluation fails (an error, `on_error`).
/// `glob.match` / `glob.quote_meta` are ours too ([`glob`]), in place of
/// regorus' `glob` feature.
fn bound_builtins(engine: &mut Engine) -> Result<(), String> {
    let range = |args: Vec<Value>| bounded_range("numbers.range", &args, 1);
    let range_step = |args: Vec<Value>| {
        let step = args.get(2).and_then(|v| v.as_i64().ok()).unwrap_or(0);
        if step <= 0 {
            anyhow::bail!("numbers.range_step: step must be a positive integer");
        }
        bounded_range("numbers.range_step", &args, step)
    };
    engine
        .add_extension("numbers.range".into(), 2, Box::new(range))
        .and_then(|()| engine.add_extension("numbers.range_step".into(), 3, Box::new(range_step)))
        .map_err(|e| format!("cannot bound numbers.range: {e}"))?;
    engine
        .add_extension("glob.match".into(), 3, Box::new(glob::glob_match))
        .and_then(|()| {
            engine.add_extension("glob.quote_meta".into(), 1, Box::new(glob::quote_meta))
        })
        .map_err(|e| format!("cannot add glob.match: {e}"))
}

fn bounded_range(name: &str, args: &[Value], step: i64) -> anyhow::Result<Value> {
    let (Some(a), Some(b)) = (
        args.first().and_then(|v| v.as_i64().ok()),
        args.get(1).and_then(|v| v.as_i64().ok()),
    ) else {
        return Ok(Value::Undefined);
    };
    let span = i128::from(b) - i128::from(a);
    let count = span.abs() / i128::from(step) + 1;
    if count > i128::from(MAX_RANGE_ELEMENTS) {
        anyhow::bail!(
            "{name}: {count} elements, at most {MAX_RANGE_ELEMENTS} (callback-guard bound)"
        );
    }
    let incr = if span >= 0 { step } else { -step };
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut v = a;
    for _ in 0..count {
        out.push(Value::from(v));
        v = v.saturating_add(incr);
    }
    Ok(Value::from(out))
}

/// The sample input tried at load: a `high` request from a SPIFFE
/// identity, no headers.
fn sample_input() -> Value {
    let mut doc = Value::new_object();
    if let Ok(o) = doc.as_object_mut() {
        for (k, v) in [
            ("phase", "headers"),
            ("priority", "high"),
            ("identity", "spiffe://example.org/ns/default/sa/sample"),
            ("channel", "sample"),
            ("method", "POST"),
            ("path", "/"),
            ("host", "example.org"),
        ] {
            o.insert(Value::from(k), Value::from(v));
        }
        o.insert(Value::from("version"), Value::from(INPUT_VERSION));
        o.insert(Value::from("headers"), Value::new_object());
        o.insert(Value::from("headers_dropped"), Value::from(false));
    }
    doc
}

/// The output mapping of the module docs.
pub fn verdict(asked: Priority, out: PolicyOutput) -> PolicyVerdict {
    let reason = out.reason;
    // Never more than the caller asked for.
    let granted = out.priority.map_or(asked, |p| lower(p, asked));
    match out.allow {
        Some(false) => PolicyVerdict::Decided {
            decision: Decision::Denied(asked),
            reason,
        },
        Some(true) if granted == asked => PolicyVerdict::Decided {
            decision: Decision::Admitted(asked),
            reason,
        },
        Some(true) => PolicyVerdict::Decided {
            decision: Decision::Demoted(granted),
            reason,
        },
        None => PolicyVerdict::Rules {
            priority: granted,
            reason,
        },
    }
}

fn rank(p: Priority) -> u8 {
    match p {
        Priority::High => 2,
        Priority::Normal => 1,
        Priority::Low => 0,
    }
}

fn lower(a: Priority, b: Priority) -> Priority {
    if rank(a) <= rank(b) { a } else { b }
}

/// Validates the entry point's value: undefined or an object with optional
/// `allow` (bool), `priority` (high|normal|low), `reason` (string).
pub fn parse_output(value: &Value) -> Result<PolicyOutput, PolicyError> {
    if *value == Value::Undefined {
        return Ok(PolicyOutput::default());
    }
    let obj = value
        .as_object()
        .map_err(|_| PolicyError("output is not an object".into()))?;
    let mut out = PolicyOutput::default();
    for (k, v) in obj.iter() {
        let key = k.as_string().map(|s| s.as_ref()).unwrap_or("");
        match key {
            "allow" => {
                out.allow = Some(
                    *v.as_bool()
                        .map_err(|_| PolicyError("output.allow is not a boolean".into()))?,
                );
            }
            "priority" => {
                let name = v
                    .as_string()
                    .map_err(|_| PolicyError("output.priority is not a string".into()))?;
                out.priority = Some(Priority::from_name(name).ok_or_else(|| {
                    PolicyError("output.priority is not high, normal or low".into())
                })?);
            }
            "reason" => {
                let r = v
                    .as_string()
                    .map_err(|_| PolicyError("output.reason is not a string".into()))?;
                out.reason = Some(clean_reason(r));
            }
            // Other fields are the policy's own business.
            _ => {}
        }
    }
    Ok(out)
}

/// A reason as it may appear in a reply body, a log line and the record:
/// printable ASCII, at most [`MAX_REASON_BYTES`]; anything else becomes
/// `_`.
fn clean_reason(r: &str) -> String {
    r.chars()
        .take(MAX_REASON_BYTES)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// regorus errors span several lines (source excerpt and caret); the
/// config error keeps them on one, `file:line:col: message` first.
fn one_line(e: &impl std::fmt::Display) -> String {
    let text = e.to_string();
    let mut parts = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut out = String::new();
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for p in parts {
        out.push_str(" | ");
        out.push_str(p);
    }
    out
}

pub mod glob;
#[cfg(test)]
mod tests;

//! Priority admission and load shedding (SPEC `admission`).
//!
//! A request asks for a priority with the priority header (`high`, `normal`,
//! `low`; trimmed, case-insensitive; absent or unknown means `normal`). The
//! caller is identified by the SPIFFE ID of its mTLS client certificate.
//! [`AdmissionPolicy::decide`] first applies the rules, then draws from the
//! token buckets:
//!
//! 1. **Rules** ([`rules`]) are checked in order; a rule matches when its
//!    `priority` is the requested one and the identity matches one of its
//!    `principals` ([`principal`]). The first match decides: `allow` keeps
//!    the priority, `deny` answers `403`.
//!    - A `high` request that no `allow` rule admits is demoted to `normal`
//!      (`unauthorized_high: "demote"`, default) or answered `403`
//!      (`"reject"`). A demoted request is then a `normal` request: a
//!      `deny` rule for `normal` that matches it answers `403`.
//!    - Rules only restrict: `normal` and `low` requests that no rule
//!      matches are admitted (an `allow` rule for them changes nothing, it
//!      only stops later rules from matching). A `deny` rule for `normal` or
//!      `low` refuses those callers at that priority with `403`; they are
//!      not moved to another priority.
//!    - Only a well-formed SPIFFE ID (`spiffe://<trust-domain>/<path>`, see
//!      [`principal::spiffe_id`]) from the certificate is an identity; a
//!      URI SAN without the scheme, or otherwise malformed, is none.
//!    - A request without identity (no client certificate) matches no
//!      principal, not even `*`: it can never be allowed `high`. It is only
//!      matched by `deny` rules carrying the extension
//!      `"unauthenticated": true`.
//! 2. **Buckets** ([`bucket`]): `limits.<priority>` (absent = unlimited) and
//!    `capacity`, which every admitted request draws from. Capacity sheds
//!    the lower priorities first: `low` is refused once it is below half
//!    full, `normal` below a fifth, `high` only when it is empty. A refusal
//!    answers `429` with `retry-after`: the wait, in whole seconds rounded
//!    up (at least 1), until the refusing bucket could admit this priority.
//!    Buckets live in shared data, so all worker threads of one Envoy share
//!    them.
//!
//! The priority in [`Decision::Denied`] and [`Decision::Shed`] is the one the
//! request would have had (`normal` for a demoted one).
//!
//! **When shared data fails** ([`StoreError`], e.g. CAS contention beyond
//! the retry bound), the recommended behaviour is to fail open: admit at the
//! priority the rules gave, because rate limiting is a protection, and
//! refusing traffic because the limiter itself is unavailable would turn a
//! proxy-internal hiccup into an outage. [`AdmissionPolicy::decide_fail_open`]
//! does exactly that and hands the error back for logging. Rule decisions
//! (403) never depend on shared data, so they hold either way.
//!
//! ```
//! use callback_guard::config::{self, AdmissionSpec, FieldPath};
//! use callback_guard::core::admission::{Cause, Decision, Priority};
//! use callback_guard::core::shared::MemoryStore;
//!
//! let spec: AdmissionSpec = serde_json::from_str(r#"{
//!     "rules": [{ "priority": "high", "effect": "allow",
//!                 "principals": ["cluster.local/ns/*/sa/webhook-*"] }],
//!     "limits": { "high": { "rps": 1, "burst": 1 } }
//! }"#).unwrap();
//! let policy = config::compile_admission(&spec, &FieldPath::root().key("admission")).unwrap();
//! let store = MemoryStore::new();
//! let me = Some("spiffe://cluster.local/ns/default/sa/webhook-processor");
//! assert_eq!(policy.decide(&store, Some("HIGH"), me, 0), Ok(Decision::Admitted(Priority::High)));
//! assert_eq!(policy.decide(&store, Some("high"), me, 0),
//!            Ok(Decision::Shed { priority: Priority::High, retry_after_s: 1,
//!                               cause: Cause::RateLimited }));
//! assert_eq!(policy.decide(&store, Some("high"), None, 0), Ok(Decision::Demoted(Priority::Normal)));
//! ```
//!
//! # Istio
//!
//! With Istio mTLS the peer identity (Envoy property
//! `connection.uri_san_peer_certificate`) is
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`, e.g.
//! `spiffe://cluster.local/ns/default/sa/webhook-processor`. `principals`
//! accept that form and Istio's `source.principal` /
//! `AuthorizationPolicy` form without the scheme
//! (`cluster.local/ns/default/sa/webhook-processor`); both are normalised
//! before comparing, so either can be used in the configuration. `*` matches
//! inside one segment only (`cluster.local/ns/*/sa/webhook-*`), never across
//! `/`; a lone `"*"` means any authenticated caller, as in Istio. Callers
//! without a client certificate (plain text, or `PeerAuthentication`
//! `PERMISSIVE`) have no identity and can never obtain `high`; use
//! `PeerAuthentication` `STRICT` if they must not get in at all.
//!
//! # A global limit across many Envoy replicas
//!
//! The buckets are per Envoy (shared by its worker threads, not between
//! pods). For a limit across all replicas, keep them as a local first line
//! and add Envoy's global rate-limit service
//! (`envoy.filters.http.ratelimit` + e.g. `envoyproxy/ratelimit`), keyed on
//! the `x-callback-priority-admitted` request header that callback-guard
//! sets after admission (clients cannot forge it: the filter removes any
//! copy they send). The rate-limit filter must come after the wasm filter
//! in the HTTP filter chain so it sees the header:
//!
//! ```yaml
//! # HTTP filters, in this order
//! - name: envoy.filters.http.wasm          # callback-guard
//! - name: envoy.filters.http.ratelimit
//!   typed_config:
//!     "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
//!     domain: callback-guard
//!     failure_mode_deny: false             # fail open, like the local buckets
//!     enable_x_ratelimit_headers: DRAFT_VERSION_03
//!     rate_limit_service:
//!       transport_api_version: V3
//!       grpc_service: { envoy_grpc: { cluster_name: ratelimit } }
//! - name: envoy.filters.http.router
//!
//! # on the route (or virtual host)
//! rate_limits:
//! - actions:
//!   - request_headers:
//!       header_name: x-callback-priority-admitted
//!       descriptor_key: callback_priority
//!       skip_if_absent: true
//! ```
//!
//! ```yaml
//! # envoyproxy/ratelimit service configuration
//! domain: callback-guard
//! descriptors:
//!   - key: callback_priority
//!     value: high
//!     rate_limit: { unit: second, requests_per_unit: 1000 }
//!   - key: callback_priority
//!     value: normal
//!     rate_limit: { unit: second, requests_per_unit: 300 }
//!   - key: callback_priority
//!     value: low
//!     rate_limit: { unit: second, requests_per_unit: 50 }
//! ```
//!
//! In Istio the same two pieces are applied with an `EnvoyFilter`
//! (`HTTP_FILTER` patch inserting the rate-limit filter after the wasm
//! filter, `HTTP_ROUTE` patch adding `rate_limits`), as in Istio's "Enabling
//! Rate Limits using Envoy" task.

pub mod bucket;
pub mod principal;
#[cfg(feature = "rego")]
pub mod rego;
pub mod rules;

use crate::core::names::{code, header};
use crate::core::reply::LocalReply;
use crate::core::shared::{SharedStore, StoreError};
use bucket::Draw;
pub use bucket::{Cause, ChannelLimit};
pub use bucket::{Limits, Take};
use rules::{Effect, Rule};

/// A request priority (`admission.rules[].priority`, the priority header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    Normal,
    Low,
}

impl Priority {
    /// Every priority, highest first (e.g. to declare the metrics).
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Normal => "normal",
            Self::Low => "low",
        }
    }

    /// A configuration value: exactly `high`, `normal` or `low`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "high" => Some(Self::High),
            "normal" => Some(Self::Normal),
            "low" => Some(Self::Low),
            _ => None,
        }
    }

    /// The priority header's value: trimmed, case-insensitive; absent or
    /// unknown is `normal`.
    pub fn from_header(value: Option<&str>) -> Self {
        let Some(value) = value.map(str::trim) else {
            return Self::Normal;
        };
        if value.eq_ignore_ascii_case("high") {
            Self::High
        } else if value.eq_ignore_ascii_case("low") {
            Self::Low
        } else {
            Self::Normal
        }
    }
}

/// Outcome of [`AdmissionPolicy::decide`]; `decision` label of
/// `callback_admission_total` is [`Decision::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted at the requested priority.
    Admitted(Priority),
    /// Asked for `high`, not allowed, admitted as `normal`.
    Demoted(Priority),
    /// Refused by policy: 403.
    Denied(Priority),
    /// Over its rate limit ([`Cause::RateLimited`]) or shed for capacity
    /// ([`Cause::Capacity`]): 429 with `retry-after` seconds.
    Shed {
        priority: Priority,
        retry_after_s: u64,
        cause: Cause,
    },
}

impl Decision {
    /// The local reply for a refused request (`None` when it goes on).
    pub fn refusal(self) -> Option<LocalReply> {
        match self {
            Self::Admitted(_) | Self::Demoted(_) => None,
            Self::Shed {
                retry_after_s,
                cause,
                ..
            } => {
                let (code, detail) = match cause {
                    Cause::RateLimited => (
                        code::RATE_LIMITED,
                        "callback over its rate limit; retry later",
                    ),
                    Cause::Capacity => (code::SHED, "callback shed under load; retry later"),
                };
                Some(
                    LocalReply::new(429, code, detail)
                        .with_header(header::RETRY_AFTER, retry_after_s.to_string()),
                )
            }
            Self::Denied(priority) => Some(LocalReply::new(
                403,
                code::PRIORITY_REJECTED,
                format!(
                    "priority {} is not allowed for this caller",
                    priority.as_str()
                ),
            )),
        }
    }

    /// Every value of [`Decision::as_str`] (the `decision` label).
    pub const LABELS: [&'static str; 5] = [
        "admitted",
        "demoted",
        "denied",
        code::SHED,
        code::RATE_LIMITED,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admitted(_) => "admitted",
            Self::Demoted(_) => "demoted",
            Self::Denied(_) => "denied",
            Self::Shed {
                cause: Cause::RateLimited,
                ..
            } => code::RATE_LIMITED,
            Self::Shed {
                cause: Cause::Capacity,
                ..
            } => code::SHED,
        }
    }

    /// The `priority` label: the admitted priority, or the one the request
    /// would have had.
    pub fn priority(self) -> Priority {
        match self {
            Self::Admitted(p) | Self::Demoted(p) | Self::Denied(p) => p,
            Self::Shed { priority, .. } => priority,
        }
    }

    /// The priority to forward as `x-callback-priority-admitted`, if the
    /// request goes upstream.
    pub fn admitted(self) -> Option<Priority> {
        match self {
            Self::Admitted(p) | Self::Demoted(p) => Some(p),
            Self::Denied(_) | Self::Shed { .. } => None,
        }
    }
}

/// What happens to a `high` request no `allow` rule admits
/// (`admission.unauthorized_high`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum UnauthorizedHigh {
    #[default]
    Demote,
    Reject,
}

/// `admission`, compiled.
#[derive(Debug)]
pub struct AdmissionPolicy {
    priority_header: String,
    rules: Vec<Rule>,
    unauthorized_high: UnauthorizedHigh,
    limits: Limits,
    /// `policy`: the Rego policy, evaluated before the rules.
    #[cfg(feature = "rego")]
    rego: Option<rego::RegoPolicy>,
}

impl AdmissionPolicy {
    /// The priority and `capacity` buckets.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The policy from its checked parts (`config` compiles them):
    /// `priority_header` lower case, the rules in order, the buckets.
    pub fn new(
        priority_header: String,
        rules: Vec<Rule>,
        unauthorized_high: UnauthorizedHigh,
        limits: Limits,
        #[cfg(feature = "rego")] rego: Option<rego::RegoPolicy>,
    ) -> Self {
        Self {
            priority_header,
            rules,
            unauthorized_high,
            limits,
            #[cfg(feature = "rego")]
            rego,
        }
    }

    /// The Rego policy (`policy`), if configured.
    #[cfg(feature = "rego")]
    pub fn rego(&self) -> Option<&rego::RegoPolicy> {
        self.rego.as_ref()
    }

    /// Request header carrying the requested priority (lower case).
    pub fn priority_header(&self) -> &str {
        &self.priority_header
    }

    /// Whether [`classify`](Self::classify) can depend on the caller's
    /// identity for this requested priority: only when some rule is about
    /// that priority (or, for a demoted `high`, about `normal`). Lets the
    /// filter skip the peer-certificate property lookup otherwise.
    pub fn needs_identity(&self, requested: Option<&str>) -> bool {
        let asked = Priority::from_header(requested);
        self.rules.iter().any(|r| {
            r.priority == asked
                || (asked == Priority::High
                    && self.unauthorized_high == UnauthorizedHigh::Demote
                    && r.priority == Priority::Normal)
        })
    }

    /// The rules' verdict alone, without buckets or shared data:
    /// `Admitted`, `Demoted` or `Denied`, never `Shed`.
    pub fn classify(&self, requested: Option<&str>, identity: Option<&str>) -> Decision {
        // Only a well-formed SPIFFE ID is an identity; anything else in the
        // URI SAN is no identity (issue #12: a SAN without `spiffe://`).
        let identity = identity.and_then(principal::spiffe_id);
        let asked = Priority::from_header(requested);
        match rules::first_match(&self.rules, asked, identity) {
            Some(Effect::Deny) => Decision::Denied(asked),
            Some(Effect::Allow) => Decision::Admitted(asked),
            None if asked != Priority::High => Decision::Admitted(asked),
            None => match self.unauthorized_high {
                UnauthorizedHigh::Reject => Decision::Denied(Priority::High),
                UnauthorizedHigh::Demote => {
                    match rules::first_match(&self.rules, Priority::Normal, identity) {
                        Some(Effect::Deny) => Decision::Denied(Priority::Normal),
                        _ => Decision::Demoted(Priority::Normal),
                    }
                }
            },
        }
    }

    /// Classifies and admits one request: `requested` is the priority
    /// header's value, `identity` the peer's SPIFFE ID (None without mTLS).
    /// Only the bucket draw touches `store`; its failure is the `Err`.
    pub fn decide(
        &self,
        store: &dyn SharedStore,
        requested: Option<&str>,
        identity: Option<&str>,
        now_ms: u64,
    ) -> Result<Decision, StoreError> {
        self.draw(store, self.classify(requested, identity), now_ms)
    }

    /// The buckets' part of [`decide`](Self::decide) for a decision the
    /// rules already took ([`classify`](Self::classify)): `Shed` when a
    /// bucket refuses; `Denied` passes through without a draw. On a signed
    /// channel the filter classifies at the request headers and draws only
    /// once the signature verified, so forged requests never spend the
    /// tokens verified callbacks need.
    pub fn draw(
        &self,
        store: &dyn SharedStore,
        decision: Decision,
        now_ms: u64,
    ) -> Result<Decision, StoreError> {
        let Some(priority) = decision.admitted() else {
            return Ok(decision);
        };
        Ok(match self.limits.draw(store, priority, now_ms)? {
            Draw::Taken => decision,
            Draw::Refused {
                retry_after_s,
                cause,
            } => Decision::Shed {
                priority,
                retry_after_s,
                cause,
            },
        })
    }

    /// [`draw`](Self::draw), failing open: when shared data fails the
    /// classified decision stands and the error comes back for the log.
    pub fn draw_fail_open(
        &self,
        store: &dyn SharedStore,
        decision: Decision,
        now_ms: u64,
    ) -> (Decision, Option<StoreError>) {
        match self.draw(store, decision, now_ms) {
            Ok(d) => (d, None),
            Err(e) => (decision, Some(e)),
        }
    }

    /// [`decide`](Self::decide), failing open: when shared data fails the
    /// request gets the rules' verdict ([`classify`](Self::classify)) and the
    /// error comes back for the log line.
    pub fn decide_fail_open(
        &self,
        store: &dyn SharedStore,
        requested: Option<&str>,
        identity: Option<&str>,
        now_ms: u64,
    ) -> (Decision, Option<StoreError>) {
        self.draw_fail_open(store, self.classify(requested, identity), now_ms)
    }
}

/// The whole bucket step for a classified decision: the channel's own
/// `limits` first, then the admission buckets. Fails open: when shared
/// data fails, the decision stands and the error comes back for the log.
pub fn draw_all(
    admission: Option<&AdmissionPolicy>,
    channel: Option<&ChannelLimit>,
    store: &dyn SharedStore,
    decision: Decision,
    now_ms: u64,
) -> (Decision, Option<StoreError>) {
    let Some(priority) = decision.admitted() else {
        return (decision, None);
    };
    let mut error = None;
    if let Some(limit) = channel {
        match limit.draw(store, now_ms) {
            Ok(Draw::Refused {
                retry_after_s,
                cause,
            }) => {
                let shed = Decision::Shed {
                    priority,
                    retry_after_s,
                    cause,
                };
                return (shed, None);
            }
            Ok(Draw::Taken) => {}
            Err(e) => error = Some(e),
        }
    }
    match admission {
        Some(policy) => {
            let (d, e) = policy.draw_fail_open(store, decision, now_ms);
            (d, e.or(error))
        }
        None => (decision, error),
    }
}

/// Takes up to `want` draws for `priority` at once: the channel's own
/// `limits` first, then the admission buckets, never more from one than
/// the other allows (what the channel's bucket gave beyond that goes
/// back). A worker's lease of this Envoy's buckets
/// (`core::request::store::LocalLeases`) spends them one per request.
pub fn take_all(
    admission: Option<&AdmissionPolicy>,
    channel: Option<&ChannelLimit>,
    store: &dyn SharedStore,
    priority: Priority,
    want: u32,
    now_ms: u64,
) -> Result<Take, StoreError> {
    let mut granted = want;
    if let Some(limit) = channel {
        let take = limit.take(store, want, now_ms)?;
        if take.granted == 0 {
            return Ok(take);
        }
        granted = take.granted;
    }
    let Some(policy) = admission else {
        return Ok(Take::all(granted));
    };
    let take = policy.limits().take(store, priority, granted, now_ms);
    let kept = take.as_ref().map_or(0, |t| t.granted);
    if let Some(limit) = channel
        && kept < granted
    {
        // A failed refund costs at most this lease's tokens, once.
        let _ = limit.refund(store, granted - kept, now_ms);
    }
    take
}

//! Fleet-wide state (issue #15): dedup marks and token buckets kept in
//! Redis, shared by every replica, instead of in one Envoy's shared data.
//!
//! Upstream Envoy gives a wasm filter no Redis client, so the filter asks
//! Redis over HTTP through an Envoy cluster (`dispatch_http_call`), pausing
//! the request until the answer or the timeout. This module is the pure
//! part of that: what to ask ([`Query`]), how a query becomes an HTTP
//! request for the store's HTTP front and how the front's answer becomes a
//! typed [`Answer`] ([`Front`], implemented for webdis in [`webdis`]), how
//! a worker leases tokens in batches ([`lease`]), and how it backs off a
//! store that fails ([`Health`], [`ErrorLog`]). No host call happens here.
//!
//! # The operations are Lua scripts
//! Every operation is one Redis script, so each is atomic in Redis and the
//! HTTP front only has to pass `EVALSHA` (and `EVAL`, to load a script
//! after Redis restarted with an empty script cache):
//!
//! | query | script | what it does atomically |
//! |---|---|---|
//! | [`Query::DedupBegin`] | `dedup_begin.lua` | `SET key f:<token> NX PX in_flight`; else says in flight / delivered with the key's `PTTL` |
//! | [`Query::DedupCommit`] | `dedup_commit.lua` | `SET key d PX window` (a 2xx is final, whoever's mark the key held) |
//! | [`Query::DedupForget`] | `dedup_forget.lua` | `DEL key` only while it holds this attempt's in-flight mark |
//! | [`Query::Lease`] | `lease.lua` | refills 1 to 4 buckets with the Redis clock and takes the same number of tokens from each, all or nothing per token |
//!
//! Plain `SET NX PX` alone is atomic too (webdis passes it), but it cannot
//! tell an in-flight retry from a delivered duplicate, and "delete only if
//! still ours" and a token bucket need a read and a write in one step:
//! scripts are the smallest way to get that from a stock Redis.
//!
//! # Keys
//! All under the configured `key_prefix` (default `cg:`):
//! `<prefix>dedup:<channel>:<32 hex>` (the first 128 bits of SHA-256 of the
//! dedup key of [`crate::core::dedup::DedupPolicy::delivery_key`], the
//! key that cannot be planted), and `<prefix>{b}:<bucket>` for buckets
//! (`adm:high|normal|low|capacity`, `limit:<channel>`); the `{b}` hash tag
//! keeps the buckets one request draws from on one Redis Cluster slot.

pub mod dedup;
pub mod lease;
pub mod limits;
pub mod stream;
pub mod webdis;

use crate::core::admission::bucket::Limit;
use crate::core::dedup::DedupOutcome;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// One Lua script the store runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Script {
    /// Name, for logs and the `op` label.
    pub name: &'static str,
    pub source: &'static str,
}

impl Script {
    /// Lowercase hex SHA-1 of the source: the `EVALSHA` handle.
    pub fn sha1_hex(&self) -> String {
        hex(&Sha1::digest(self.source.as_bytes()))
    }
}

pub const DEDUP_BEGIN: Script = Script {
    name: "dedup_begin",
    source: include_str!("dedup_begin.lua"),
};
pub const DEDUP_COMMIT: Script = Script {
    name: "dedup_commit",
    source: include_str!("dedup_commit.lua"),
};
pub const DEDUP_FORGET: Script = Script {
    name: "dedup_forget",
    source: include_str!("dedup_forget.lua"),
};
pub const LEASE: Script = Script {
    name: "lease",
    source: include_str!("lease.lua"),
};
/// Every script, e.g. to preload them (`SCRIPT LOAD`).
pub const SCRIPTS: [Script; 4] = [DEDUP_BEGIN, DEDUP_COMMIT, DEDUP_FORGET, LEASE];

/// `op` label values of `callback_state_errors_total`: the script names.
pub const OPS: [&str; 4] = [
    DEDUP_BEGIN.name,
    DEDUP_COMMIT.name,
    DEDUP_FORGET.name,
    LEASE.name,
];

/// Most buckets one lease draws from (channel limit, priority, capacity).
pub const MAX_LEASE_BUCKETS: usize = 4;
/// Most tokens one lease asks for.
pub const MAX_LEASE_TOKENS: u32 = 1000;

/// What to do when the store does not answer in time or answers an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Decide with this Envoy's own shared data, as without `state`
    /// (default): never a 5xx for the store.
    Local,
    /// Answer `503` (for operators who prefer refusing to double delivery).
    Reject,
}

/// The HTTP front the store is reached through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// webdis (JSON over HTTP, `GET /EVALSHA/...`).
    Webdis,
}

/// A compiled `state` section.
#[derive(Debug, Clone, PartialEq)]
pub struct StatePolicy {
    /// Envoy cluster of the HTTP front.
    pub cluster: String,
    /// `:authority` of the calls.
    pub authority: String,
    /// How long a call may take before the fallback applies.
    pub timeout_ms: u32,
    /// Prefix of every key.
    pub key_prefix: String,
    pub on_unavailable: Fallback,
    pub protocol: Protocol,
    /// `Authorization` header value (`Basic ...`) for the front, if any.
    pub authorization: Option<String>,
    pub lease: lease::LeaseConfig,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open (fallback without asking).
    pub breaker_open_ms: u64,
}

impl StatePolicy {
    /// The dedup key of a delivery on `channel` (see the module doc).
    /// `delivery_key` is [`crate::core::dedup::DedupPolicy::delivery_key`].
    pub fn dedup_key(&self, channel: &str, delivery_key: &str) -> String {
        let digest = Sha256::digest(delivery_key.as_bytes());
        format!(
            "{}dedup:{channel}:{}",
            self.key_prefix,
            hex(digest.get(..16).unwrap_or_default())
        )
    }

    /// The key of a bucket: `adm:<priority>`, `adm:capacity` or
    /// `limit:<channel>`.
    pub fn bucket_key(&self, bucket: &str) -> String {
        format!("{}{{b}}:{bucket}", self.key_prefix)
    }

    /// The front that speaks [`Self::protocol`].
    pub fn front(&self) -> &'static dyn Front {
        match self.protocol {
            Protocol::Webdis => &webdis::Webdis,
        }
    }

    /// The HTTP request for `query` (`full`: send the script's source, to
    /// load it after a [`StateError::NoScript`]).
    pub fn request(&self, query: &Query, full: bool) -> HttpRequest {
        let mut req = self.front().request(&query.call(), full);
        req.headers
            .insert(0, (":authority".into(), self.authority.clone()));
        if let Some(auth) = &self.authorization {
            req.headers.push(("authorization".into(), auth.clone()));
        }
        req
    }

    /// The typed answer to `query` from the front's HTTP answer (`status`
    /// 0: none came, e.g. a timeout or a reset).
    pub fn answer(&self, query: &Query, status: u32, body: &[u8]) -> Result<Answer, StateError> {
        let values = self.front().parse(status, body)?;
        query.decode(&values)
    }
}

/// One bucket a lease draws from.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseBucket {
    /// [`StatePolicy::bucket_key`].
    pub key: String,
    pub limit: Limit,
    /// Tokens the bucket must hold for one draw: 1, or the capacity
    /// reserve of the priority ([`crate::core::admission::bucket::capacity_reserve`]).
    pub level: f64,
}

impl LeaseBucket {
    /// How long an untouched bucket key lives: the time to refill from
    /// empty to full, plus a second (a missing key reads as full).
    pub fn idle_ttl_ms(&self) -> u64 {
        let fill_ms = (self.limit.burst / self.limit.rps * 1000.0).ceil();
        // `as` saturates; bounded to a day so a slow bucket still expires.
        (fill_ms as u64).saturating_add(1000).min(86_400_000)
    }
}

/// What the filter asks the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// First sight of a delivery: mark it in flight with `token`.
    DedupBegin {
        key: String,
        token: String,
        in_flight_ms: u64,
    },
    /// The upstream answered 2xx: delivered for `window_ms`.
    DedupCommit {
        key: String,
        token: String,
        window_ms: u64,
    },
    /// The attempt failed: forget the mark if it is still `token`'s.
    DedupForget { key: String, token: String },
    /// Up to `want` tokens from every bucket of `buckets`.
    Lease {
        buckets: Vec<LeaseBucket>,
        want: u32,
    },
}

/// A script call: the script, its keys and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub script: Script,
    pub keys: Vec<String>,
    pub args: Vec<String>,
}

impl Query {
    /// The script this query runs (its name is the metric's `op`).
    pub fn script(&self) -> Script {
        match self {
            Self::DedupBegin { .. } => DEDUP_BEGIN,
            Self::DedupCommit { .. } => DEDUP_COMMIT,
            Self::DedupForget { .. } => DEDUP_FORGET,
            Self::Lease { .. } => LEASE,
        }
    }

    /// The script call. Numbers are written as integers or with at most
    /// 6 decimals; a lease is clamped to 1..=[`MAX_LEASE_TOKENS`] tokens
    /// and its first [`MAX_LEASE_BUCKETS`] buckets.
    pub fn call(&self) -> Call {
        let script = self.script();
        let (keys, args) = match self {
            Self::DedupBegin {
                key,
                token,
                in_flight_ms,
            } => (
                vec![key.clone()],
                vec![token.clone(), in_flight_ms.max(&1).to_string()],
            ),
            Self::DedupCommit {
                key,
                token,
                window_ms,
            } => (
                vec![key.clone()],
                vec![token.clone(), window_ms.max(&1).to_string()],
            ),
            Self::DedupForget { key, token } => (vec![key.clone()], vec![token.clone()]),
            Self::Lease { buckets, want } => {
                let buckets = buckets.get(..MAX_LEASE_BUCKETS).unwrap_or(buckets);
                let mut args = vec![want.clamp(&1, &MAX_LEASE_TOKENS).to_string()];
                for b in buckets {
                    args.push(number(b.limit.rps));
                    args.push(number(b.limit.burst));
                    args.push(number(b.level));
                    args.push(b.idle_ttl_ms().to_string());
                }
                (buckets.iter().map(|b| b.key.clone()).collect(), args)
            }
        };
        Call { script, keys, args }
    }

    /// The typed answer from the script's integer reply.
    pub fn decode(&self, values: &[i64]) -> Result<Answer, StateError> {
        let bad = || StateError::Malformed("unexpected script reply");
        let ms = |v: i64| u64::try_from(v).unwrap_or(0);
        match self {
            Self::DedupBegin { .. } => match values {
                [0, _] => Ok(Answer::Dedup(DedupOutcome::First)),
                [1, ttl] => Ok(Answer::Dedup(DedupOutcome::InFlight {
                    retry_after_s: ms(*ttl).div_ceil(1000).max(1),
                })),
                [2, _] => Ok(Answer::Dedup(DedupOutcome::Duplicate)),
                _ => Err(bad()),
            },
            Self::DedupCommit { .. } => match values {
                [v @ (0 | 1)] => Ok(Answer::Committed { was_ours: *v == 1 }),
                _ => Err(bad()),
            },
            Self::DedupForget { .. } => match values {
                [v @ (0 | 1)] => Ok(Answer::Forgotten { deleted: *v == 1 }),
                _ => Err(bad()),
            },
            Self::Lease { want, buckets } => match values {
                [granted, retry, mask] => {
                    let granted = u32::try_from(*granted).map_err(|_| bad())?;
                    if granted > (*want).clamp(1, MAX_LEASE_TOKENS) {
                        return Err(StateError::Malformed("lease granted more than asked"));
                    }
                    let refused = u32::try_from(*mask).map_err(|_| bad())?;
                    if refused >> buckets.len().min(MAX_LEASE_BUCKETS) != 0 {
                        return Err(bad());
                    }
                    Ok(Answer::Lease(LeaseGrant {
                        granted,
                        retry_after_ms: ms(*retry),
                        refused,
                    }))
                }
                _ => Err(bad()),
            },
        }
    }
}

/// What the store answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// To [`Query::DedupBegin`]: `First` (now in flight, ours),
    /// `InFlight` or `Duplicate`.
    Dedup(DedupOutcome),
    /// To [`Query::DedupCommit`].
    Committed { was_ours: bool },
    /// To [`Query::DedupForget`].
    Forgotten { deleted: bool },
    /// To [`Query::Lease`].
    Lease(LeaseGrant),
}

/// Tokens a lease got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseGrant {
    pub granted: u32,
    /// With nothing granted: ms until the refusing buckets allow a draw.
    pub retry_after_ms: u64,
    /// Bit `i` set: bucket `i` of the query refused.
    pub refused: u32,
}

/// Why a query got no usable answer. Every variant leads to the
/// configured [`Fallback`]; none is a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// No answer (timeout, reset, cluster unknown): HTTP status 0.
    NoAnswer,
    /// The front could not reach Redis (webdis: `503`).
    Unavailable,
    /// The front refused the command (webdis ACL: `403`).
    Forbidden,
    /// Any other HTTP status.
    Http(u32),
    /// Redis does not know the script (restarted): send it in full.
    NoScript,
    /// Redis answered an error (message cut to 160 bytes).
    Redis(String),
    /// The answer could not be read.
    Malformed(&'static str),
}

impl StateError {
    /// A short reason for logs.
    pub fn reason(&self) -> String {
        match self {
            Self::NoAnswer => "no answer (timeout or connection failure)".into(),
            Self::Unavailable => "the HTTP front cannot reach Redis (503)".into(),
            Self::Forbidden => "the HTTP front refused the command (403: check its ACL)".into(),
            Self::Http(s) => format!("HTTP {s}"),
            Self::NoScript => "script not loaded".into(),
            Self::Redis(m) => format!("Redis error: {m}"),
            Self::Malformed(m) => format!("malformed answer: {m}"),
        }
    }
}

/// An HTTP request for the front (`dispatch_http_call` arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Pseudo-headers first (`:method`, `:path`, `:authority`), then the rest.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One HTTP front to Redis. Another front (another HTTP bridge, a sidecar
/// speaking another dialect) is one more implementation.
pub trait Front: Sync {
    /// The request running `call` (`full`: the script's source instead of
    /// its SHA-1). `:authority` and authorization are added by
    /// [`StatePolicy::request`].
    fn request(&self, call: &Call, full: bool) -> HttpRequest;
    /// The script's integer reply from the HTTP status and body.
    fn parse(&self, status: u32, body: &[u8]) -> Result<Vec<i64>, StateError>;
}

/// Consecutive-failure breaker: after `failures` errors in a row the store
/// is not asked for `open_ms` (the fallback applies at once, so a dead
/// store costs no timeout per request); then one probe goes through, and
/// its success closes the breaker again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    failures: u32,
    open_until_ms: u64,
    probing: bool,
}

impl Health {
    /// Whether to ask the store now. While open: no; once open time has
    /// passed, yes for one probe at a time.
    pub fn allow(&mut self, policy: &StatePolicy, now_ms: u64) -> bool {
        if self.failures < policy.breaker_failures {
            return true;
        }
        if now_ms < self.open_until_ms || self.probing {
            return false;
        }
        self.probing = true;
        true
    }

    pub fn success(&mut self) {
        *self = Self::default();
    }

    /// A failure; `true` when it opened (or re-opened) the breaker.
    pub fn failure(&mut self, policy: &StatePolicy, now_ms: u64) -> bool {
        self.probing = false;
        self.failures = self.failures.saturating_add(1);
        if self.failures >= policy.breaker_failures {
            self.open_until_ms = now_ms.saturating_add(policy.breaker_open_ms);
            return true;
        }
        false
    }

    pub fn is_open(&self, policy: &StatePolicy) -> bool {
        self.failures >= policy.breaker_failures
    }
}

/// At most one store-error log line per [`ErrorLog::PERIOD_MS`] per worker;
/// the next line says how many were left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorLog {
    next_ms: u64,
    suppressed: u64,
}

impl ErrorLog {
    pub const PERIOD_MS: u64 = 10_000;

    /// `Some(suppressed since the last line)` when a line may be written.
    pub fn admit(&mut self, now_ms: u64) -> Option<u64> {
        if now_ms < self.next_ms {
            self.suppressed = self.suppressed.saturating_add(1);
            return None;
        }
        self.next_ms = now_ms.saturating_add(Self::PERIOD_MS);
        Some(std::mem::take(&mut self.suppressed))
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A finite number as Lua's `tonumber` reads it, without exponent.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests;

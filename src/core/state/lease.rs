//! Token leases: how a worker keeps Redis off the per-request path for
//! fleet-wide limits.
//!
//! A worker does not ask Redis for every request. For each combination of
//! buckets a request draws from (its channel's `limits`, its priority's
//! bucket, `capacity` with the priority's shedding reserve) it keeps a
//! [`Lease`]: a few tokens taken from the Redis buckets in one atomic
//! script call, spent locally, one per request, for at most `ttl_ms`.
//!
//! # Sizing
//! A lease asks for what the worker spent in the last `ttl_ms` (at least
//! 1), capped by [`LeaseConfig::cap`]: `max_tokens`, and at most a tenth
//! of what the slowest bucket refills in `ttl_ms` (at least 1). A worker
//! serving `r` requests a second therefore calls Redis about `r / cap`
//! times a second while the buckets have tokens, and while they are empty
//! once per refusal period (the time until a draw would pass, at most
//! `ttl_ms`), not once per request.
//!
//! # What it costs in accuracy
//! Every token is taken from the Redis bucket before it is spent, so the
//! fleet never admits more than the bucket allows in total (`burst` plus
//! `rps` per second since the start). Leasing only moves *when* a token
//! is spent, by at most `ttl_ms`, and *which worker* spends it:
//! - **Over an interval**: a window `[a, b]` may admit up to the tokens
//!   that were leased before `a` and spent in it, at most `W · cap` for
//!   `W` workers in the fleet (e.g. 3 replicas × 2 workers, `cap` 5:
//!   30 requests more than `burst + rps·(b − a)`, in the first `ttl_ms`).
//! - **Under-admission**: tokens of a lease that expires unused (traffic
//!   stopped or moved to another replica) are lost: at most `W · cap` per
//!   `ttl_ms`, only when demand drops.
//! - **Early refusals**: a request may be refused (`429`) while another
//!   worker still holds unused leased tokens.
//! - **Shedding**: a lease for a lower priority was granted while
//!   `capacity` was above its reserve; it may be spent up to `ttl_ms`
//!   after `capacity` fell below it (at most `cap` requests per worker).
//! - A refusal is remembered until the buckets would allow a draw again,
//!   at most `ttl_ms`, so an empty bucket is not asked about per request;
//!   its `retry-after` is the buckets' own wait, which may be longer.
//!
//! `max_tokens: 1` turns leasing off (one Redis call per request, exact).

use crate::core::admission::bucket::MAX_RETRY_AFTER_S;

/// Default of `state.lease.max_tokens`.
pub const DEFAULT_MAX_TOKENS: u32 = 10;
/// Range of `state.lease.max_tokens`.
pub const MAX_MAX_TOKENS: u32 = super::MAX_LEASE_TOKENS;
/// Default of `state.lease.ttl_ms`.
pub const DEFAULT_TTL_MS: u64 = 1000;
/// Range of `state.lease.ttl_ms`.
pub const MIN_TTL_MS: u64 = 10;
pub const MAX_TTL_MS: u64 = 60_000;
/// A lease holds at most this share of what its slowest bucket refills in
/// one `ttl_ms`.
pub const SHARE_OF_REFILL: f64 = 0.1;

/// `state.lease`, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    pub max_tokens: u32,
    pub ttl_ms: u64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            max_tokens: DEFAULT_MAX_TOKENS,
            ttl_ms: DEFAULT_TTL_MS,
        }
    }
}

impl LeaseConfig {
    /// Most tokens one lease takes when the slowest bucket it draws from
    /// refills at `slowest_rps`: `max_tokens`, and at most
    /// [`SHARE_OF_REFILL`] of `slowest_rps · ttl_ms`, at least 1.
    pub fn cap(&self, slowest_rps: f64) -> u32 {
        let share = (slowest_rps * self.ttl_ms as f64 / 1000.0 * SHARE_OF_REFILL).floor();
        // `as` saturates (NaN → 0); the clamp bounds both ends.
        (share as u32).clamp(1, self.max_tokens.max(1))
    }
}

/// What a request does with the worker's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A leased token was taken: admitted.
    Take,
    /// The buckets refused recently: refused without asking, for
    /// `retry_after_ms`; `refused` as in [`super::LeaseGrant`].
    Refuse { retry_after_ms: u64, refused: u32 },
    /// Ask the store for `want` tokens ([`super::Query::Lease`]), then
    /// call [`Lease::granted`].
    Ask { want: u32 },
}

/// One worker's lease on one bucket combination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lease {
    tokens: u32,
    expires_ms: u64,
    /// A refusal is remembered until then (at most `ttl_ms`)…
    refused_until_ms: u64,
    /// …and answers `retry-after` until then (the buckets' own wait, which
    /// may be longer).
    retry_until_ms: u64,
    refused: u32,
    /// Demand: tokens spent in the current and the last `ttl_ms` window.
    window_start_ms: u64,
    used_now: u32,
    used_last: u32,
}

impl Lease {
    /// Tokens held (spendable until they expire).
    pub fn tokens(&self, now_ms: u64) -> u32 {
        if now_ms < self.expires_ms {
            self.tokens
        } else {
            0
        }
    }

    /// What the next request does; `cap` is [`LeaseConfig::cap`] for the
    /// buckets of this lease.
    pub fn step(&mut self, config: &LeaseConfig, cap: u32, now_ms: u64) -> Step {
        self.roll(config, now_ms);
        if self.tokens(now_ms) > 0 {
            self.tokens -= 1;
            self.used_now = self.used_now.saturating_add(1);
            return Step::Take;
        }
        self.tokens = 0;
        if now_ms < self.refused_until_ms {
            return Step::Refuse {
                retry_after_ms: self.retry_until_ms.saturating_sub(now_ms).max(1),
                refused: self.refused,
            };
        }
        let demand = self.used_now.max(self.used_last);
        Step::Ask {
            want: demand.clamp(1, cap.max(1)),
        }
    }

    /// The store's answer to an [`Step::Ask`]: with tokens, one is spent
    /// by the asking request and the rest join the lease for `ttl_ms`;
    /// without, the refusal is remembered for `retry_after_ms` (at most
    /// `ttl_ms`).
    pub fn granted(&mut self, config: &LeaseConfig, grant: super::LeaseGrant, now_ms: u64) -> Step {
        self.roll(config, now_ms);
        if grant.granted == 0 {
            let wait = grant.retry_after_ms.clamp(1, MAX_RETRY_AFTER_S * 1000);
            self.refused_until_ms = now_ms.saturating_add(wait.min(config.ttl_ms.max(1)));
            self.retry_until_ms = now_ms.saturating_add(wait);
            self.refused = grant.refused;
            return Step::Refuse {
                retry_after_ms: wait,
                refused: grant.refused,
            };
        }
        self.refused_until_ms = 0;
        self.used_now = self.used_now.saturating_add(1);
        self.tokens = self
            .tokens(now_ms)
            .saturating_add(grant.granted.saturating_sub(1));
        self.expires_ms = now_ms.saturating_add(config.ttl_ms);
        Step::Take
    }

    /// Drops what is held (the store failed and the fallback decides, or
    /// the configuration changed).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    fn roll(&mut self, config: &LeaseConfig, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.window_start_ms);
        if elapsed >= config.ttl_ms {
            // A window with no traffic in between means no recent demand.
            self.used_last = if elapsed < 2 * config.ttl_ms {
                self.used_now
            } else {
                0
            };
            self.used_now = 0;
            self.window_start_ms = now_ms;
        }
    }
}

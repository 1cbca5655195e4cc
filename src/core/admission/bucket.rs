//! Token buckets shared by every worker thread of one Envoy.
//!
//! All four buckets (`high`, `normal`, `low`, `capacity`) live in ONE
//! shared-data key, [`STATE_KEY`], as 65 bytes: a format byte, then per
//! bucket the tokens (`f64`) and the last refill time in ms (`u64`), little
//! endian. One key means one compare-and-swap covers the whole draw: a
//! request takes a token from its priority bucket and from `capacity`
//! together or from neither, so a refusal by one bucket never burns a token
//! of the other and no refund step (which could itself fail) is needed. It
//! also costs one shared-data read and one write per draw instead of two of
//! each; a worker takes several draws at once for fast buckets
//! ([`Limits::take`], leased by `core::request::store::LocalLeases`). Every
//! admitted request touches `capacity` anyway, so one key is not more
//! contended than two would be.
//!
//! Buckets refill continuously at `rps` tokens per second up to `burst` and
//! start full. A clock that goes backwards (workers read the time
//! independently) refills nothing and never moves `last_ms` back, so it
//! cannot mint tokens later either.

use super::Priority;
use crate::core::shared::{SharedStore, StoreError, update};

/// The one shared-data key holding every admission bucket.
pub const STATE_KEY: &str = "cg:adm:buckets";
/// Bumped if the layout changes; any other value reads as "all full".
const FORMAT: u8 = 1;
const SLOT_BYTES: usize = 16;
/// Encoded size of [`BucketTable`].
pub const STATE_BYTES: usize = 1 + 4 * SLOT_BYTES;

/// Smallest `rps` accepted: one token every 1000 s (about 17 minutes).
/// Anything slower is a configuration mistake (`1e-300` loaded once and
/// answered `retry-after: 18446744073709551615`).
pub const MIN_RPS: f64 = 0.001;
/// Largest `rps` accepted: far above what one proxy serves (the benches use
/// it as "unlimited"), small enough that token arithmetic stays exact in an
/// `f64`.
pub const MAX_RPS: f64 = 1_000_000_000.0;
/// Smallest `burst`: a bucket must hold at least one request.
pub const MIN_BURST: f64 = 1.0;
/// Largest `burst` accepted.
pub const MAX_BURST: f64 = 1_000_000_000.0;
/// Upper bound of the `retry-after` the filter answers, in seconds. A
/// client told to come back in days would not; a client that retries after
/// five minutes and is refused again just gets a new `retry-after`.
pub const MAX_RETRY_AFTER_S: u64 = 300;

/// `rps` tokens per second, at most `burst` (both checked by `config`:
/// [`MIN_RPS`]..=[`MAX_RPS`], [`MIN_BURST`]..=[`MAX_BURST`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub rps: f64,
    pub burst: f64,
}

/// One bucket's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketState {
    pub tokens: f64,
    pub last_ms: u64,
}

impl BucketState {
    pub fn full(limit: Limit, now_ms: u64) -> Self {
        Self {
            tokens: limit.burst,
            last_ms: now_ms,
        }
    }

    /// Adds what accrued since `last_ms`, capped at `burst` (also when the
    /// burst shrank through a config change).
    pub fn refill(self, limit: Limit, now_ms: u64) -> Self {
        if now_ms <= self.last_ms {
            return Self {
                tokens: self.tokens.min(limit.burst),
                last_ms: self.last_ms,
            };
        }
        let elapsed_ms = (now_ms - self.last_ms) as f64;
        Self {
            tokens: (self.tokens + elapsed_ms * limit.rps / 1000.0).min(limit.burst),
            last_ms: now_ms,
        }
    }

    /// Whole seconds until the bucket holds `level` tokens, at least 1 and
    /// at most [`MAX_RETRY_AFTER_S`].
    pub fn retry_after_s(self, limit: Limit, level: f64) -> u64 {
        self.retry_after_ms(limit, level).div_ceil(1000)
    }

    /// The same wait in ms, at least 1 and at most [`MAX_RETRY_AFTER_S`]
    /// seconds (a lease remembers a refusal for less than a second).
    pub fn retry_after_ms(self, limit: Limit, level: f64) -> u64 {
        let wait_ms = ((level - self.tokens) * 1000.0 / limit.rps).ceil();
        // `as` saturates (NaN → 0, +inf → u64::MAX); clamp bounds both ends.
        (wait_ms as u64).clamp(1, MAX_RETRY_AFTER_S * 1000)
    }

    /// How many draws in a row leave at least `level` tokens before each:
    /// `tokens - (k - 1) >= level`.
    fn draws_allowed(self, level: f64) -> u32 {
        if self.tokens < level {
            return 0;
        }
        // `as` saturates: a huge bucket allows `u32::MAX` draws.
        ((self.tokens - level).floor() as u32).saturating_add(1)
    }
}

/// The four buckets as stored under [`STATE_KEY`]; `None` = never used.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BucketTable {
    pub high: Option<BucketState>,
    pub normal: Option<BucketState>,
    pub low: Option<BucketState>,
    pub capacity: Option<BucketState>,
}

impl BucketTable {
    /// Anything that is not a well-formed state (absent key, other format,
    /// corrupt tokens) reads as unused buckets, i.e. full.
    pub fn decode(bytes: Option<&[u8]>) -> Self {
        let Some(bytes) = bytes else {
            return Self::default();
        };
        let (Some(&FORMAT), Some(body)) = (bytes.first(), bytes.get(1..)) else {
            return Self::default();
        };
        if bytes.len() != STATE_BYTES {
            return Self::default();
        }
        let mut slots = body.chunks_exact(SLOT_BYTES).map(decode_slot);
        let mut next = || slots.next().flatten();
        Self {
            high: next(),
            normal: next(),
            low: next(),
            capacity: next(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(STATE_BYTES);
        out.push(FORMAT);
        for slot in [self.high, self.normal, self.low, self.capacity] {
            let (tokens, last_ms) = slot.map_or((f64::NAN, 0), |s| (s.tokens, s.last_ms));
            out.extend_from_slice(&tokens.to_le_bytes());
            out.extend_from_slice(&last_ms.to_le_bytes());
        }
        out
    }

    fn slot_mut(&mut self, priority: Priority) -> &mut Option<BucketState> {
        match priority {
            Priority::High => &mut self.high,
            Priority::Normal => &mut self.normal,
            Priority::Low => &mut self.low,
        }
    }
}

fn decode_slot(chunk: &[u8]) -> Option<BucketState> {
    let tokens = f64::from_le_bytes(chunk.get(..8)?.try_into().ok()?);
    let last_ms = u64::from_le_bytes(chunk.get(8..16)?.try_into().ok()?);
    (tokens.is_finite() && tokens >= 0.0).then_some(BucketState { tokens, last_ms })
}

/// Share of the capacity burst a priority may not dig into: `low` is shed
/// once capacity is below half full, `normal` below a fifth, `high` only
/// when it is empty.
pub fn capacity_reserve(priority: Priority) -> f64 {
    match priority {
        Priority::High => 0.0,
        Priority::Normal => 0.2,
        Priority::Low => 0.5,
    }
}

/// Why a draw was refused: the `decision` label and reply code of a 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The caller's own rate limit: its priority's bucket or its channel's
    /// `limits` (`rate_limited`).
    RateLimited,
    /// Load shedding: the shared `capacity` bucket keeps its reserve for
    /// higher priorities (`shed`).
    Capacity,
}

/// Result of one draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draw {
    Taken,
    Refused { retry_after_s: u64, cause: Cause },
}

/// Result of taking up to `want` draws at once (a worker's lease of this
/// Envoy's buckets, see `core::request::store::LocalLeases`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    /// Draws taken, each one every bucket allowed (0: refused).
    pub granted: u32,
    /// With none taken: ms until the refusing buckets allow one draw.
    pub retry_after_ms: u64,
    /// With none taken: which bucket refused.
    pub cause: Cause,
}

impl Take {
    /// All `want` draws taken.
    pub fn all(want: u32) -> Self {
        Self {
            granted: want,
            retry_after_ms: 0,
            cause: Cause::RateLimited,
        }
    }

    /// The single draw of a take of one (`retry-after` in whole seconds).
    fn draw(self) -> Draw {
        if self.granted > 0 {
            Draw::Taken
        } else {
            Draw::Refused {
                retry_after_s: self.retry_after_ms.div_ceil(1000),
                cause: self.cause,
            }
        }
    }
}

/// The configured buckets; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    pub high: Option<Limit>,
    pub normal: Option<Limit>,
    pub low: Option<Limit>,
    pub capacity: Option<Limit>,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        self.high.is_none()
            && self.normal.is_none()
            && self.low.is_none()
            && self.capacity.is_none()
    }

    pub fn for_priority(&self, priority: Priority) -> Option<Limit> {
        match priority {
            Priority::High => self.high,
            Priority::Normal => self.normal,
            Priority::Low => self.low,
        }
    }

    /// Takes one token for `priority` from the shared state (both buckets
    /// or neither). Without any bucket for it, touches no shared data.
    pub fn draw(
        &self,
        store: &dyn SharedStore,
        priority: Priority,
        now_ms: u64,
    ) -> Result<Draw, StoreError> {
        self.take(store, priority, 1, now_ms).map(Take::draw)
    }

    /// Takes up to `want` draws for `priority` in one compare-and-swap.
    /// Without any bucket for it, touches no shared data.
    pub fn take(
        &self,
        store: &dyn SharedStore,
        priority: Priority,
        want: u32,
        now_ms: u64,
    ) -> Result<Take, StoreError> {
        if self.for_priority(priority).is_none() && self.capacity.is_none() {
            return Ok(Take::all(want));
        }
        update(store, STATE_KEY, |bytes| {
            let mut table = BucketTable::decode(bytes);
            let take = self.take_from(&mut table, priority, want, now_ms);
            (table.encode(), take)
        })
    }

    /// The pure step of [`Limits::draw`]: refills the buckets involved and
    /// takes from both when both allow it.
    pub fn draw_from(&self, table: &mut BucketTable, priority: Priority, now_ms: u64) -> Draw {
        self.take_from(table, priority, 1, now_ms).draw()
    }

    /// The pure step of [`Limits::take`]: refills the buckets involved and
    /// takes as many draws (at most `want`) as both allow, each leaving
    /// the priority's shedding reserve in `capacity`.
    pub fn take_from(
        &self,
        table: &mut BucketTable,
        priority: Priority,
        want: u32,
        now_ms: u64,
    ) -> Take {
        let own = self.for_priority(priority).map(|limit| {
            let slot = table.slot_mut(priority);
            let state = refilled(*slot, limit, now_ms);
            (limit, state, 1.0)
        });
        let shared = self.capacity.map(|limit| {
            let state = refilled(table.capacity, limit, now_ms);
            let level = (capacity_reserve(priority) * limit.burst).max(1.0);
            (limit, state, level)
        });
        let allows = |b: &Option<(Limit, BucketState, f64)>| {
            b.map_or(u32::MAX, |(_, s, l)| s.draws_allowed(l))
        };
        let granted = want.min(allows(&own)).min(allows(&shared));
        let refused = |b: &Option<(Limit, BucketState, f64)>| {
            b.filter(|(_, state, level)| state.tokens < *level)
                .map(|(limit, state, level)| state.retry_after_ms(limit, level))
        };
        let taken = |s: BucketState| BucketState {
            tokens: s.tokens - f64::from(granted),
            ..s
        };
        if let Some((_, state, _)) = own {
            *table.slot_mut(priority) = Some(taken(state));
        }
        if let Some((_, state, _)) = shared {
            table.capacity = Some(taken(state));
        }
        if granted > 0 {
            return Take::all(granted);
        }
        Take {
            granted,
            retry_after_ms: refused(&own).max(refused(&shared)).unwrap_or(1),
            // The caller's own limit names the refusal when it refuses too.
            cause: if refused(&own).is_some() {
                Cause::RateLimited
            } else {
                Cause::Capacity
            },
        }
    }
}

fn refilled(slot: Option<BucketState>, limit: Limit, now_ms: u64) -> BucketState {
    slot.map_or_else(
        || BucketState::full(limit, now_ms),
        |s| s.refill(limit, now_ms),
    )
}

/// `channels[].limits`: one more bucket, per channel, so one noisy
/// provider cannot starve the others. It lives in its own shared-data key
/// (`cg:limit:<channel>`), drawn before the admission buckets: a request it
/// refuses never touches them. Draws the admission buckets then refuse
/// are given back ([`ChannelLimit::refund`], best effort: a failed refund
/// loses those draws once, never admits more).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelLimit {
    key: String,
    limit: Limit,
}

impl ChannelLimit {
    pub fn new(channel: &str, limit: Limit) -> Self {
        Self {
            key: Self::state_key(channel),
            limit,
        }
    }

    /// The shared-data key of `channel`'s bucket.
    pub fn state_key(channel: &str) -> String {
        format!("cg:limit:{channel}")
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The configured rate and burst.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Takes one token (compare-and-swap on the channel's key).
    pub fn draw(&self, store: &dyn SharedStore, now_ms: u64) -> Result<Draw, StoreError> {
        self.take(store, 1, now_ms).map(Take::draw)
    }

    /// Takes up to `want` tokens in one compare-and-swap.
    pub fn take(
        &self,
        store: &dyn SharedStore,
        want: u32,
        now_ms: u64,
    ) -> Result<Take, StoreError> {
        update(store, &self.key, |bytes| {
            let state = self.refilled(bytes, now_ms);
            let granted = want.min(state.draws_allowed(1.0));
            if granted == 0 {
                let take = Take {
                    granted,
                    retry_after_ms: state.retry_after_ms(self.limit, 1.0),
                    cause: Cause::RateLimited,
                };
                return (encode_channel(state), take);
            }
            let taken = BucketState {
                tokens: state.tokens - f64::from(granted),
                ..state
            };
            (encode_channel(taken), Take::all(granted))
        })
    }

    /// Gives back `n` tokens taken by [`take`](Self::take) that the
    /// admission buckets then refused (up to `burst`).
    pub fn refund(&self, store: &dyn SharedStore, n: u32, now_ms: u64) -> Result<(), StoreError> {
        update(store, &self.key, |bytes| {
            let state = self.refilled(bytes, now_ms);
            let back = BucketState {
                tokens: (state.tokens + f64::from(n)).min(self.limit.burst),
                ..state
            };
            (encode_channel(back), ())
        })
    }

    fn refilled(&self, bytes: Option<&[u8]>, now_ms: u64) -> BucketState {
        decode_channel(bytes).map_or_else(
            || BucketState::full(self.limit, now_ms),
            |s| s.refill(self.limit, now_ms),
        )
    }
}

fn decode_channel(bytes: Option<&[u8]>) -> Option<BucketState> {
    match bytes? {
        [FORMAT, slot @ ..] if slot.len() == SLOT_BYTES => decode_slot(slot),
        _ => None,
    }
}

fn encode_channel(state: BucketState) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + SLOT_BYTES);
    out.push(FORMAT);
    out.extend_from_slice(&state.tokens.to_le_bytes());
    out.extend_from_slice(&state.last_ms.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::shared::MemoryStore;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const T0: u64 = 1_700_000_000_000;

    fn limit(rps: f64, burst: f64) -> Limit {
        Limit { rps, burst }
    }

    fn only_normal(rps: f64, burst: f64) -> Limits {
        Limits {
            normal: Some(limit(rps, burst)),
            ..Limits::default()
        }
    }

    /// Draws until refused at a fixed time; returns how many were taken.
    fn drain(limits: &Limits, table: &mut BucketTable, p: Priority, now: u64) -> (usize, u64) {
        for taken in 0..10_000 {
            if let Draw::Refused { retry_after_s, .. } = limits.draw_from(table, p, now) {
                return (taken, retry_after_s);
            }
        }
        panic!("never refused");
    }

    #[test]
    fn starts_full_and_allows_burst() {
        let limits = only_normal(10.0, 5.0);
        let mut table = BucketTable::default();
        assert_eq!(drain(&limits, &mut table, Priority::Normal, T0), (5, 1));
    }

    #[test]
    fn refills_continuously_and_caps_at_burst() {
        let l = limit(10.0, 5.0);
        let empty = BucketState {
            tokens: 0.0,
            last_ms: T0,
        };
        assert_eq!(empty.refill(l, T0 + 100).tokens, 1.0);
        assert_eq!(empty.refill(l, T0 + 250).tokens, 2.5);
        assert_eq!(empty.refill(l, T0 + 60_000).tokens, 5.0);
        assert_eq!(empty.refill(l, T0 + 250).last_ms, T0 + 250);

        let limits = only_normal(10.0, 5.0);
        let mut table = BucketTable::default();
        drain(&limits, &mut table, Priority::Normal, T0);
        // 350 ms at 10 rps: 3.5 tokens, 3 whole requests.
        assert_eq!(drain(&limits, &mut table, Priority::Normal, T0 + 350).0, 3);
        // An hour later: still only the burst.
        assert_eq!(
            drain(&limits, &mut table, Priority::Normal, T0 + 3_600_000).0,
            5
        );
    }

    #[test]
    fn shrinking_burst_caps_stored_tokens() {
        let s = BucketState {
            tokens: 100.0,
            last_ms: T0,
        };
        assert_eq!(s.refill(limit(1.0, 10.0), T0).tokens, 10.0);
        assert_eq!(s.refill(limit(1.0, 10.0), T0 + 5).tokens, 10.0);
    }

    #[test]
    fn retry_after_is_the_real_wait_rounded_up() {
        let at = |tokens, rps| {
            BucketState {
                tokens,
                last_ms: T0,
            }
            .retry_after_s(limit(rps, 10.0), 1.0)
        };
        assert_eq!(at(0.0, 10.0), 1); // 0.1 s → 1
        assert_eq!(at(0.0, 0.5), 2); // 2 s
        assert_eq!(at(0.0, 0.3), 4); // 3.33 s → 4
        assert_eq!(at(0.5, 0.1), 5); // half a token at 0.1/s
        assert_eq!(at(0.0, 1.0 / 60.0), 60);
        assert_eq!(at(2.0, 1.0), 1); // never below 1
        // Waiting for a reserve level, not just one token.
        let s = BucketState {
            tokens: 2.0,
            last_ms: T0,
        };
        assert_eq!(s.retry_after_s(limit(2.0, 100.0), 50.0), 24);
    }

    #[test]
    fn retry_after_is_capped() {
        let empty = BucketState {
            tokens: 0.0,
            last_ms: T0,
        };
        // The slowest bucket accepted: 1000 s to the next token, capped.
        assert_eq!(
            empty.retry_after_s(limit(MIN_RPS, 1.0), 1.0),
            MAX_RETRY_AFTER_S
        );
        assert_eq!(empty.retry_after_s(limit(1.0, 10.0), 300.0), 300);
        assert_eq!(empty.retry_after_s(limit(1.0, 10.0), 301.0), 300);
        // Whatever the arithmetic gives (a limit built by hand, bypassing
        // compile), the answer stays in range.
        assert_eq!(empty.retry_after_s(limit(1e-300, 1.0), 1.0), 300);
        assert_eq!(empty.retry_after_s(limit(f64::NAN, 1.0), 1.0), 1);
        // A reserve level far above the tokens (a large capacity bucket).
        assert_eq!(
            empty.retry_after_s(limit(MIN_RPS, MAX_BURST), MAX_BURST * 0.5),
            MAX_RETRY_AFTER_S
        );
    }

    #[test]
    fn clock_going_backwards_mints_nothing() {
        let limits = only_normal(10.0, 5.0);
        let mut table = BucketTable::default();
        drain(&limits, &mut table, Priority::Normal, T0);
        // Earlier times: nothing, and last_ms does not move back...
        assert_eq!(
            drain(&limits, &mut table, Priority::Normal, T0 - 10_000).0,
            0
        );
        assert_eq!(table.normal.unwrap().last_ms, T0);
        // ...so returning to T0 mints nothing either.
        assert_eq!(drain(&limits, &mut table, Priority::Normal, T0).0, 0);
        assert_eq!(drain(&limits, &mut table, Priority::Normal, T0 + 100).0, 1);
    }

    #[test]
    fn capacity_sheds_low_before_normal_before_high() {
        let limits = Limits {
            capacity: Some(limit(1.0, 100.0)),
            ..Limits::default()
        };
        let mut table = BucketTable::default();
        // Low may take while >= 50 tokens remain: 51 takes (100 → 49).
        let (low, low_retry) = drain(&limits, &mut table, Priority::Low, T0);
        assert_eq!(low, 51);
        assert_eq!(low_retry, 1); // 49 → 50 at 1 rps
        // Normal takes down to the fifth: 49 → 19.
        let (normal, normal_retry) = drain(&limits, &mut table, Priority::Normal, T0);
        assert_eq!(normal, 30);
        assert_eq!(normal_retry, 1);
        assert_eq!(drain(&limits, &mut table, Priority::Low, T0), (0, 31));
        // High takes until empty.
        assert_eq!(drain(&limits, &mut table, Priority::High, T0), (19, 1));
        assert_eq!(table.capacity.unwrap().tokens, 0.0);
        assert_eq!(drain(&limits, &mut table, Priority::Normal, T0), (0, 20));
        assert_eq!(drain(&limits, &mut table, Priority::Low, T0), (0, 50));
    }

    #[test]
    fn refusal_by_one_bucket_costs_the_other_nothing() {
        let limits = Limits {
            low: Some(limit(1.0, 10.0)),
            capacity: Some(limit(1.0, 10.0)),
            ..Limits::default()
        };
        let mut table = BucketTable::default();
        // Capacity reserve (5) refuses low after 6 draws; low bucket keeps 4.
        assert_eq!(drain(&limits, &mut table, Priority::Low, T0).0, 6);
        assert_eq!(table.low.unwrap().tokens, 4.0);
        assert_eq!(table.capacity.unwrap().tokens, 4.0);
        // Own bucket refuses: capacity is untouched.
        let limits = Limits {
            high: Some(limit(1.0, 2.0)),
            capacity: Some(limit(1.0, 10.0)),
            ..Limits::default()
        };
        let mut table = BucketTable::default();
        assert_eq!(drain(&limits, &mut table, Priority::High, T0), (2, 1));
        assert_eq!(table.capacity.unwrap().tokens, 8.0);
    }

    #[test]
    fn retry_after_takes_the_longer_wait_when_both_refuse() {
        let limits = Limits {
            low: Some(limit(1.0, 1.0)),
            capacity: Some(limit(0.1, 1.5)),
            ..Limits::default()
        };
        let mut table = BucketTable::default();
        // Own bucket: 1 s to the next token; capacity: 0.5 token at 0.1/s.
        assert_eq!(drain(&limits, &mut table, Priority::Low, T0), (1, 5));
    }

    #[test]
    fn state_round_trips_and_tolerates_garbage() {
        let table = BucketTable {
            high: Some(BucketState {
                tokens: 1.5,
                last_ms: T0,
            }),
            normal: None,
            low: Some(BucketState {
                tokens: 0.0,
                last_ms: 7,
            }),
            capacity: Some(BucketState {
                tokens: 300.0,
                last_ms: u64::MAX,
            }),
        };
        let bytes = table.encode();
        assert_eq!(bytes.len(), STATE_BYTES);
        assert_eq!(BucketTable::decode(Some(&bytes)), table);
        assert_eq!(BucketTable::decode(None), BucketTable::default());
        assert_eq!(
            BucketTable::decode(Some(&bytes[..20])),
            BucketTable::default()
        );
        assert_eq!(BucketTable::decode(Some(b"")), BucketTable::default());
        let mut other_format = bytes.clone();
        other_format[0] = 9;
        assert_eq!(
            BucketTable::decode(Some(&other_format)),
            BucketTable::default()
        );
        let mut negative = bytes;
        negative[1..9].copy_from_slice(&(-3.0f64).to_le_bytes());
        assert_eq!(BucketTable::decode(Some(&negative)).high, None);
    }

    #[test]
    fn shared_store_holds_one_bounded_key() {
        let store = MemoryStore::new();
        let limits = Limits {
            high: Some(limit(1.0, 1.0)),
            normal: Some(limit(1.0, 1.0)),
            low: Some(limit(1.0, 1.0)),
            capacity: Some(limit(100.0, 100.0)),
        };
        for p in [Priority::High, Priority::Normal, Priority::Low] {
            assert_eq!(limits.draw(&store, p, T0), Ok(Draw::Taken));
            assert_eq!(
                limits.draw(&store, p, T0),
                Ok(Draw::Refused {
                    retry_after_s: 1,
                    cause: Cause::RateLimited
                })
            );
        }
        assert_eq!(store.len(), 1);
        let (bytes, _) = store.get(STATE_KEY).unwrap().unwrap();
        assert_eq!(bytes.len(), STATE_BYTES);
        assert_eq!(
            BucketTable::decode(Some(&bytes)).capacity.unwrap().tokens,
            97.0
        );
    }

    #[test]
    fn unlimited_touches_no_shared_data() {
        let store = MemoryStore::new();
        let limits = only_normal(1.0, 1.0);
        assert_eq!(limits.draw(&store, Priority::High, T0), Ok(Draw::Taken));
        assert!(store.is_empty());
    }

    #[test]
    fn channel_limits_have_their_own_bucket() {
        let store = MemoryStore::new();
        let ch = ChannelLimit::new("github", limit(1.0, 2.0));
        assert_eq!(ch.draw(&store, T0), Ok(Draw::Taken));
        assert_eq!(ch.draw(&store, T0), Ok(Draw::Taken));
        assert_eq!(
            ch.draw(&store, T0),
            Ok(Draw::Refused {
                retry_after_s: 1,
                cause: Cause::RateLimited
            })
        );
        assert_eq!(ch.draw(&store, T0 + 1_000), Ok(Draw::Taken));
        // Another channel is not affected.
        let other = ChannelLimit::new("stripe", limit(1.0, 1.0));
        assert_eq!(other.draw(&store, T0), Ok(Draw::Taken));
        assert_eq!(store.len(), 2);
        assert!(store.get("cg:limit:github").unwrap().is_some());
    }

    #[test]
    fn capacity_refusals_are_shedding_own_limits_are_rate_limits() {
        let store = MemoryStore::new();
        let only_capacity = Limits {
            capacity: Some(limit(0.001, 1.0)),
            ..Limits::default()
        };
        assert_eq!(
            only_capacity.draw(&store, Priority::High, T0),
            Ok(Draw::Taken)
        );
        assert!(matches!(
            only_capacity.draw(&store, Priority::High, T0),
            Ok(Draw::Refused {
                cause: Cause::Capacity,
                ..
            })
        ));
    }
}

//! What a request asks of the state shared between workers (today
//! proxy-wasm shared data, see [`crate::core::shared`]) while it runs:
//! the questions whose answer decides the request ([`Query`]: the bucket
//! draw of admission, the dedup check) and the marks it leaves behind
//! ([`StoreWrite`]: delivered, forget). A query may be answered later
//! than it is asked (a remote store); the request waits for it, see
//! [`crate::core::request`].

use crate::core::admission::{self, AdmissionPolicy, Decision, Priority};
use crate::core::dedup::DedupOutcome;
use crate::core::policy::ChannelPolicy;
use crate::core::shared::SharedStore;
use crate::core::state::lease::{Lease, LeaseConfig, Step};
use crate::core::state::{LeaseGrant, limits};
use std::collections::HashMap;

/// A question to the state store that a step of the request waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Draw the buckets (the channel's `limits`, then admission's) for an
    /// admitted decision of the rules.
    AdmissionDraw { decision: Decision, now_ms: u64 },
    /// Remember a delivery id in flight, or say it was seen already.
    DedupCheck { key: String, now_unix_s: u64 },
}

/// The store's answer to a [`Query`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The decision after the bucket draw.
    Admission(Decision),
    /// The dedup verdict on the delivery id.
    Dedup(DedupOutcome),
    /// No answer (store error, timeout, contention). Every query fails
    /// open: the rules' decision stands, an unchecked delivery goes on.
    Unavailable,
    /// The fleet store (`state`) did not answer and `state.on_unavailable`
    /// is `reject`: the request is refused (`503` `state_unavailable`)
    /// rather than decided without the fleet's state.
    Refused,
}

/// A mark the request leaves in the store; nothing waits for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreWrite {
    /// The upstream took the delivery: a retry is a duplicate now.
    DedupDelivered { key: String, now_unix_s: u64 },
    /// The delivery was not taken: let the provider's retry through.
    DedupForget { key: String },
}

/// Answers `query` from `store` now (the synchronous path).
pub fn answer(
    query: &Query,
    admission: Option<&AdmissionPolicy>,
    ch: &ChannelPolicy,
    store: &dyn SharedStore,
) -> Answer {
    match query {
        Query::AdmissionDraw { decision, now_ms } => {
            // Shared state unavailable: the rules' verdict stands (fail open).
            let (decision, _store_error) =
                admission::draw_all(admission, ch.limit.as_ref(), store, *decision, *now_ms);
            Answer::Admission(decision)
        }
        Query::DedupCheck { key, now_unix_s } => match &ch.dedup {
            Some(dedup) => match dedup.check(store, &ch.name, key, *now_unix_s) {
                Ok(outcome) => Answer::Dedup(outcome),
                Err(_) => Answer::Unavailable,
            },
            None => Answer::Unavailable,
        },
    }
}

/// One worker's leases of this Envoy's token buckets (local state), so
/// that most admitted requests touch no shared data: per (channel,
/// priority) a [`Lease`] of a few draws taken from every bucket the
/// request draws from in one compare-and-swap per bucket key
/// ([`admission::take_all`]), spent one per request.
///
/// Leasing starts only where it cannot be seen: a lease holds at most
/// [`LocalLeases::CONFIG`]`.max_tokens` draws and at most a tenth of what
/// the slowest bucket refills in `ttl_ms` (100 ms), so a bucket slower
/// than 200 rps is drawn exactly, one compare-and-swap per request, as
/// before. Faster buckets never admit more than they allow in total; a
/// worker may spend a draw up to 100 ms after it was taken, and up to
/// `W × cap` draws (W workers) may be held unused when traffic stops (they
/// expire). A refusal is remembered for up to 100 ms, so a flood against an
/// empty bucket does not write shared data per request either; its
/// `retry-after` is the buckets' own.
#[derive(Debug, Default)]
pub struct LocalLeases {
    leases: HashMap<(usize, Priority), Lease>,
}

impl LocalLeases {
    /// How this Envoy's buckets are leased to its workers.
    pub const CONFIG: LeaseConfig = LeaseConfig {
        max_tokens: 10,
        ttl_ms: 100,
    };
    /// Refusal bits of a local take: the caller's own bucket (the
    /// channel's `limits` or its priority's bucket), then `capacity`.
    const OWN: u32 = 0b01;
    const CAPACITY: u32 = 0b10;

    /// The bucket draw for `decision` on channel `index`: from this
    /// worker's lease, or a new lease taken from `store`. Fails open, as
    /// [`answer`] does: when shared data fails, the decision stands.
    pub fn draw(
        &mut self,
        admission: Option<&AdmissionPolicy>,
        (index, ch): (usize, &ChannelPolicy),
        store: &dyn SharedStore,
        decision: Decision,
        now_ms: u64,
    ) -> Decision {
        let Some(priority) = decision.admitted() else {
            return decision;
        };
        let channel = ch.limit.as_ref();
        let limits = admission.map(AdmissionPolicy::limits);
        let slowest = [
            channel.map(|c| c.limit()),
            limits.and_then(|l| l.for_priority(priority)),
            limits.and_then(|l| l.capacity),
        ]
        .into_iter()
        .flatten()
        .map(|l| l.rps)
        .reduce(f64::min);
        let Some(slowest) = slowest else {
            return decision; // no bucket: nothing to draw
        };
        let lease = self.leases.entry((index, priority)).or_default();
        let step = match lease.step(&Self::CONFIG, Self::CONFIG.cap(slowest), now_ms) {
            Step::Ask { want } => {
                match admission::take_all(admission, channel, store, priority, want, now_ms) {
                    Ok(take) => {
                        let own = take.cause == admission::Cause::RateLimited;
                        let grant = LeaseGrant {
                            granted: take.granted,
                            retry_after_ms: take.retry_after_ms,
                            refused: if own { Self::OWN } else { Self::CAPACITY },
                        };
                        lease.granted(&Self::CONFIG, grant, now_ms)
                    }
                    Err(_) => {
                        lease.clear();
                        return decision;
                    }
                }
            }
            step => step,
        };
        limits::after(step, decision, Self::OWN).unwrap_or(decision)
    }
}

/// Applies `write` to `store` now. A failed mark is not retried: at worst
/// a retry is forwarded once more, or waits out the in-flight mark.
pub fn write(write: &StoreWrite, ch: &ChannelPolicy, store: &dyn SharedStore) {
    let Some(dedup) = &ch.dedup else { return };
    let _ = match write {
        StoreWrite::DedupDelivered { key, now_unix_s } => {
            dedup.delivered(store, &ch.name, key, *now_unix_s)
        }
        StoreWrite::DedupForget { key } => dedup.forget(store, &ch.name, key),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::admission::bucket::{Limit, Limits, STATE_KEY};
    use crate::core::admission::{ChannelLimit, UnauthorizedHigh};
    use crate::core::policy::testing;
    use crate::core::shared::MemoryStore;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const T0: u64 = 1_700_000_000_000;
    const NORMAL: Decision = Decision::Admitted(Priority::Normal);

    fn admission(normal: Limit, capacity: Option<Limit>) -> AdmissionPolicy {
        AdmissionPolicy::new(
            "x-callback-priority".into(),
            Vec::new(),
            UnauthorizedHigh::Demote,
            Limits {
                normal: Some(normal),
                capacity,
                ..Limits::default()
            },
            #[cfg(feature = "rego")]
            None,
        )
    }

    /// Writes to `key` so far (the memory store's CAS counts them).
    fn writes(store: &MemoryStore, key: &str) -> u32 {
        store.get(key).unwrap().map_or(0, |(_, cas)| cas)
    }

    #[test]
    fn a_fast_bucket_is_leased_in_batches_and_never_overspent() {
        let fast = Limit {
            rps: 1e6,
            burst: 1000.0,
        };
        let adm = admission(fast, None);
        let ch = testing::channel("pay");
        let store = MemoryStore::new();
        let mut leases = LocalLeases::default();
        for _ in 0..1000 {
            assert_eq!(
                leases.draw(Some(&adm), (0, &ch), &store, NORMAL, T0),
                NORMAL
            );
        }
        // One write per lease: the lease grows with demand up to 10.
        let w = writes(&store, STATE_KEY);
        assert!((100..=120).contains(&w), "{w} writes for 1000 draws");
        // The 1001st draw at the same instant: the bucket is empty.
        let refused = leases.draw(Some(&adm), (0, &ch), &store, NORMAL, T0);
        assert!(matches!(refused, Decision::Shed { .. }), "{refused:?}");
        // Remembered until a draw could pass (1 ms at this rate): no write.
        let w = writes(&store, STATE_KEY);
        let again = leases.draw(Some(&adm), (0, &ch), &store, NORMAL, T0);
        assert!(matches!(again, Decision::Shed { .. }), "{again:?}");
        assert_eq!(writes(&store, STATE_KEY), w);
        // Then the bucket is asked again, and has refilled.
        assert_eq!(
            leases.draw(Some(&adm), (0, &ch), &store, NORMAL, T0 + 1),
            NORMAL
        );
        assert_eq!(writes(&store, STATE_KEY), w + 1);
    }

    #[test]
    fn a_slow_bucket_is_drawn_exactly_with_its_own_retry_after() {
        // 0.5 rps: a lease would be a tiny part of a token: one draw per
        // request, exactly as without leases.
        let slow = Limit {
            rps: 0.5,
            burst: 3.0,
        };
        let adm = admission(slow, None);
        let ch = testing::channel("pay");
        let store = MemoryStore::new();
        let mut leases = LocalLeases::default();
        for _ in 0..3 {
            assert_eq!(
                leases.draw(Some(&adm), (0, &ch), &store, NORMAL, T0),
                NORMAL
            );
        }
        assert_eq!(
            leases.draw(Some(&adm), (0, &ch), &store, NORMAL, T0),
            Decision::Shed {
                priority: Priority::Normal,
                retry_after_s: 2,
                cause: admission::Cause::RateLimited,
            }
        );
        // Two seconds later one token is back, and only one.
        assert_eq!(
            leases.draw(Some(&adm), (0, &ch), &store, NORMAL, T0 + 2000),
            NORMAL
        );
        assert!(matches!(
            leases.draw(Some(&adm), (0, &ch), &store, NORMAL, T0 + 2000),
            Decision::Shed { .. }
        ));
    }

    #[test]
    fn the_channel_limit_gets_back_what_admission_refused() {
        let mut ch = testing::channel("pay");
        let channel_limit = Limit {
            rps: 1e6,
            burst: 100.0,
        };
        ch.limit = Some(ChannelLimit::new("pay", channel_limit));
        // Capacity keeps a fifth of 10 for `high`: 8 normal draws.
        let adm = admission(
            Limit {
                rps: 1e6,
                burst: 1000.0,
            },
            Some(Limit {
                rps: 1e-3,
                burst: 10.0,
            }),
        );
        let store = MemoryStore::new();
        let take = admission::take_all(
            Some(&adm),
            ch.limit.as_ref(),
            &store,
            Priority::Normal,
            50,
            T0,
        )
        .unwrap();
        assert_eq!(
            take.granted, 9,
            "10 tokens, a reserve of 2: draws at 10..=2"
        );
        // The channel's bucket lost 9 tokens, not 50.
        let left = ch
            .limit
            .as_ref()
            .unwrap()
            .take(&store, 1000, T0)
            .unwrap()
            .granted;
        assert_eq!(left, 91);
        // Refused by capacity alone: `shed`.
        let shed = admission::take_all(Some(&adm), None, &store, Priority::Normal, 1, T0).unwrap();
        assert_eq!(shed.granted, 0);
        assert_eq!(shed.cause, admission::Cause::Capacity);
    }
}

//! A channel's `limits` through the fleet store: the worker's [`Lease`]
//! on the channel's Redis bucket answers most draws without a store call;
//! what a lease step means for the request's admission decision.
//!
//! Only `channels[].limits` is leased; the `admission` buckets (priority
//! and `capacity`) are still drawn from the Envoy's shared data after the
//! channel's token was taken, as [`crate::core::admission::draw_all`] does.
//!
//! [`Lease`]: super::lease::Lease

use super::lease::Step;
use super::{LeaseBucket, Query, StatePolicy};
use crate::core::admission::Decision;
use crate::core::admission::bucket::{Cause, Limit};

/// The Redis bucket of `channel`'s `limits`.
pub fn channel_bucket(policy: &StatePolicy, channel: &str, limit: Limit) -> LeaseBucket {
    LeaseBucket {
        key: policy.bucket_key(&format!("limit:{channel}")),
        limit,
        level: 1.0,
    }
}

/// The lease query for `want` tokens of `channel`'s bucket.
pub fn lease_query(policy: &StatePolicy, channel: &str, limit: Limit, want: u32) -> Query {
    Query::Lease {
        buckets: vec![channel_bucket(policy, channel, limit)],
        want,
    }
}

/// What a lease step means for the rules' `decision` (an admitted one):
/// `Some(Ok(()))` a token was taken, go on with the admission buckets;
/// `Some(Err(shed))` the channel is over its limit (`429`
/// `rate_limited`); `None` ask the store.
pub fn after(step: Step, decision: Decision) -> Option<Result<(), Decision>> {
    match step {
        Step::Take => Some(Ok(())),
        Step::Refuse { retry_after_ms, .. } => {
            let priority = decision.admitted()?;
            Some(Err(Decision::Shed {
                priority,
                retry_after_s: retry_after_ms.div_ceil(1000).max(1),
                cause: Cause::RateLimited,
            }))
        }
        Step::Ask { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::admission::Priority;
    use crate::core::state::lease::LeaseConfig;
    use crate::core::state::{Fallback, Protocol};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn policy() -> StatePolicy {
        StatePolicy {
            cluster: "front".into(),
            authority: "webdis".into(),
            timeout_ms: 50,
            key_prefix: "cg:".into(),
            on_unavailable: Fallback::Local,
            protocol: Protocol::Webdis,
            authorization: None,
            lease: LeaseConfig::default(),
            breaker_failures: 3,
            breaker_open_ms: 1000,
        }
    }

    #[test]
    fn the_channel_bucket_is_under_the_hash_tag() {
        let limit = Limit {
            rps: 20.0,
            burst: 5.0,
        };
        let q = lease_query(&policy(), "pay", limit, 2);
        let Query::Lease { buckets, want } = q else {
            panic!()
        };
        assert_eq!(want, 2);
        assert_eq!(buckets[0].key, "cg:{b}:limit:pay");
        assert_eq!(buckets[0].level, 1.0);
    }

    #[test]
    fn a_refusal_is_a_rate_limited_shed_with_whole_seconds() {
        let d = Decision::Admitted(Priority::Normal);
        assert_eq!(after(Step::Take, d), Some(Ok(())));
        assert_eq!(after(Step::Ask { want: 1 }, d), None);
        assert_eq!(
            after(
                Step::Refuse {
                    retry_after_ms: 1200,
                    refused: 1
                },
                d
            ),
            Some(Err(Decision::Shed {
                priority: Priority::Normal,
                retry_after_s: 2,
                cause: Cause::RateLimited
            }))
        );
    }
}

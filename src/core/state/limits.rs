//! The buckets of an admitted request through the fleet store: its
//! channel's `limits`, its priority's bucket and `capacity` (with the
//! priority's shedding reserve), all drawn at once by one lease. The
//! worker's [`Lease`] on that combination answers most draws without a
//! store call; what a lease step means for the admission decision.
//!
//! [`Lease`]: super::lease::Lease

use super::lease::Step;
use super::{LeaseBucket, Query, StatePolicy};
use crate::core::admission::bucket::{Cause, Limit, Limits, capacity_reserve};
use crate::core::admission::{Decision, Priority};

/// The Redis bucket of `channel`'s `limits`.
pub fn channel_bucket(policy: &StatePolicy, channel: &str, limit: Limit) -> LeaseBucket {
    LeaseBucket {
        key: policy.bucket_key(&format!("limit:{channel}")),
        limit,
        level: 1.0,
    }
}

/// The buckets one admitted request of `priority` on `channel` draws from,
/// in the order the lease script gets them, and the mask of those that
/// are the caller's own rate limit (a refusal by one of them is
/// `rate_limited`, by `capacity` alone `shed`). No buckets: nothing to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Draw {
    pub buckets: Vec<LeaseBucket>,
    pub own_mask: u32,
    /// The worker's lease of this combination.
    pub lease_key: String,
}

impl Draw {
    pub fn new(
        policy: &StatePolicy,
        channel: &str,
        channel_limit: Option<Limit>,
        admission: Option<&Limits>,
        priority: Priority,
    ) -> Self {
        let mut buckets = Vec::new();
        let mut own_mask = 0;
        if let Some(limit) = channel_limit {
            own_mask |= 1 << buckets.len();
            buckets.push(channel_bucket(policy, channel, limit));
        }
        if let Some(limits) = admission {
            if let Some(limit) = limits.for_priority(priority) {
                own_mask |= 1 << buckets.len();
                buckets.push(LeaseBucket {
                    key: policy.bucket_key(&format!("adm:{}", priority.as_str())),
                    limit,
                    level: 1.0,
                });
            }
            if let Some(limit) = limits.capacity {
                buckets.push(LeaseBucket {
                    key: policy.bucket_key("adm:capacity"),
                    limit,
                    level: (capacity_reserve(priority) * limit.burst).max(1.0),
                });
            }
        }
        Self {
            buckets,
            own_mask,
            lease_key: format!("{channel}/{}", priority.as_str()),
        }
    }

    /// The slowest refill of the buckets (for [`super::lease::LeaseConfig::cap`]).
    pub fn slowest_rps(&self) -> f64 {
        self.buckets
            .iter()
            .map(|b| b.limit.rps)
            .fold(f64::INFINITY, f64::min)
    }

    /// The lease query for `want` tokens of every bucket.
    pub fn query(&self, want: u32) -> Query {
        Query::Lease {
            buckets: self.buckets.clone(),
            want,
        }
    }

    /// What a lease step means for the rules' `decision`, see [`after`].
    pub fn after(&self, step: Step, decision: Decision) -> Option<Decision> {
        after(step, decision, self.own_mask)
    }
}

/// What a lease step means for the rules' `decision` (an admitted one):
/// `Some(decision)` taken (unchanged) or refused (`Shed`); `None`: ask the
/// store. `own_mask`: the refusing buckets that are the caller's own rate
/// limit (`rate_limited`; by `capacity` alone it is `shed`).
pub fn after(step: Step, decision: Decision, own_mask: u32) -> Option<Decision> {
    match step {
        Step::Take => Some(decision),
        Step::Refuse {
            retry_after_ms,
            refused,
        } => Some(Decision::Shed {
            priority: decision.admitted()?,
            retry_after_s: retry_after_ms.div_ceil(1000).max(1),
            cause: if refused & own_mask != 0 || refused == 0 {
                Cause::RateLimited
            } else {
                Cause::Capacity
            },
        }),
        Step::Ask { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn limits() -> Limits {
        Limits {
            normal: Some(Limit {
                rps: 20.0,
                burst: 10.0,
            }),
            capacity: Some(Limit {
                rps: 100.0,
                burst: 50.0,
            }),
            ..Limits::default()
        }
    }

    #[test]
    fn a_draw_names_every_bucket_under_the_hash_tag() {
        let d = Draw::new(
            &policy(),
            "pay",
            Some(Limit {
                rps: 5.0,
                burst: 5.0,
            }),
            Some(&limits()),
            Priority::Normal,
        );
        let keys: Vec<&str> = d.buckets.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "cg:{b}:limit:pay",
                "cg:{b}:adm:normal",
                "cg:{b}:adm:capacity"
            ]
        );
        assert_eq!(d.own_mask, 0b011);
        assert_eq!(d.buckets[2].level, 10.0);
        assert_eq!(d.slowest_rps(), 5.0);
        assert_eq!(d.lease_key, "pay/normal");
        let Query::Lease { want, .. } = d.query(3) else {
            panic!()
        };
        assert_eq!(want, 3);
        // High has no bucket of its own here: only capacity, no reserve.
        let h = Draw::new(&policy(), "pay", None, Some(&limits()), Priority::High);
        assert_eq!(h.buckets.len(), 1);
        assert_eq!(h.own_mask, 0);
        assert_eq!(h.buckets[0].level, 1.0);
        assert!(
            Draw::new(&policy(), "pay", None, None, Priority::Low)
                .buckets
                .is_empty()
        );
    }

    #[test]
    fn a_refusal_names_its_cause_with_whole_seconds() {
        let d = Draw::new(&policy(), "pay", None, Some(&limits()), Priority::Normal);
        let normal = Decision::Admitted(Priority::Normal);
        assert_eq!(d.after(Step::Take, normal), Some(normal));
        assert_eq!(d.after(Step::Ask { want: 1 }, normal), None);
        let shed = |cause| Decision::Shed {
            priority: Priority::Normal,
            retry_after_s: 2,
            cause,
        };
        let refuse = |refused| Step::Refuse {
            retry_after_ms: 1200,
            refused,
        };
        assert_eq!(
            d.after(refuse(0b01), normal),
            Some(shed(Cause::RateLimited))
        );
        assert_eq!(
            d.after(refuse(0b11), normal),
            Some(shed(Cause::RateLimited))
        );
        assert_eq!(d.after(refuse(0b10), normal), Some(shed(Cause::Capacity)));
    }
}

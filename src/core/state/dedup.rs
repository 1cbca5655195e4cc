//! Dedup through the fleet store: how the request's dedup question and
//! marks ([`crate::core::request::store`]) become store queries, and how
//! the store's answer (or its absence) becomes the request's answer.
//!
//! One request, one attempt token: `dedup_begin` marks the delivery in
//! flight with it; the upstream's `2xx` sends `dedup_commit` (delivered
//! for `window_s`), any other end `dedup_forget` (deleted only while the
//! key still holds this attempt's mark). When the store does not answer,
//! [`fallback`] decides: `local` answers from this Envoy's shared data (the
//! marks then stay local too, see [`Marks`]), `reject` refuses the request.

use super::{Answer as StateAnswer, Fallback, Query, StateError, StatePolicy};
use crate::core::request::store::{Answer, StoreWrite};

/// Where this request's dedup mark lives, so its later marks go to the
/// same place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Marks {
    /// No fleet dedup check (yet): marks go to shared data as without `state`.
    #[default]
    Local,
    /// The store marked the delivery in flight with this attempt's token.
    Fleet { key: String, token: String },
}

/// The `dedup_begin` query for `delivery_key` on `channel`, with this
/// attempt's `token` (random per request) and the channel's `in_flight_s`.
pub fn begin(
    policy: &StatePolicy,
    channel: &str,
    delivery_key: &str,
    token: String,
    in_flight_s: u64,
) -> Query {
    Query::DedupBegin {
        key: policy.dedup_key(channel, delivery_key),
        token,
        in_flight_ms: in_flight_s.saturating_mul(1000),
    }
}

/// The request's answer from the store's answer to `dedup_begin`, and
/// where its marks go from now on; `None` when the store gave no usable
/// answer (apply [`fallback`]).
pub fn begun(query: &Query, result: &Result<StateAnswer, StateError>) -> Option<(Answer, Marks)> {
    let (Query::DedupBegin { key, token, .. }, Ok(StateAnswer::Dedup(outcome))) = (query, result)
    else {
        return None;
    };
    let marks = Marks::Fleet {
        key: key.clone(),
        token: token.clone(),
    };
    Some((Answer::Dedup(*outcome), marks))
}

/// What the request is told when the store did not answer: `None` for
/// `local` (answer from shared data, as without `state`), `Refused` for
/// `reject`.
pub fn fallback(policy: &StatePolicy) -> Option<Answer> {
    match policy.on_unavailable {
        Fallback::Local => None,
        Fallback::Reject => Some(Answer::Refused),
    }
}

/// The store query for a request's `write`, when its mark is in the fleet
/// store (`None`: the mark is local, write shared data). Commit and forget
/// are sent without waiting for their answer.
pub fn mark(marks: &Marks, write: &StoreWrite, window_s: u64) -> Option<Query> {
    let Marks::Fleet { key, token } = marks else {
        return None;
    };
    Some(match write {
        StoreWrite::DedupDelivered { .. } => Query::DedupCommit {
            key: key.clone(),
            token: token.clone(),
            window_ms: window_s.saturating_mul(1000),
        },
        StoreWrite::DedupForget { .. } => Query::DedupForget {
            key: key.clone(),
            token: token.clone(),
        },
    })
}

/// The `dedup_forget` of a `dedup_begin` whose answer never came (the
/// request ended first): the store may hold its in-flight mark.
pub fn abandoned(begin: &Query) -> Option<Query> {
    match begin {
        Query::DedupBegin { key, token, .. } => Some(Query::DedupForget {
            key: key.clone(),
            token: token.clone(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::dedup::DedupOutcome;
    use crate::core::state::Protocol;
    use crate::core::state::lease::LeaseConfig;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn policy(on_unavailable: Fallback) -> StatePolicy {
        StatePolicy {
            cluster: "front".into(),
            authority: "webdis".into(),
            timeout_ms: 50,
            key_prefix: "cg:".into(),
            on_unavailable,
            protocol: Protocol::Webdis,
            authorization: None,
            lease: LeaseConfig::default(),
            breaker_failures: 3,
            breaker_open_ms: 1000,
        }
    }

    #[test]
    fn begin_uses_the_hashed_key_and_in_flight_ms() {
        let p = policy(Fallback::Local);
        let q = begin(&p, "pay", "msg_1", "t1".into(), 60);
        assert_eq!(
            q,
            Query::DedupBegin {
                key: p.dedup_key("pay", "msg_1"),
                token: "t1".into(),
                in_flight_ms: 60_000
            }
        );
    }

    #[test]
    fn an_answer_makes_the_marks_fleet_marks() {
        let p = policy(Fallback::Local);
        let q = begin(&p, "pay", "msg_1", "t1".into(), 60);
        let ok = Ok(StateAnswer::Dedup(DedupOutcome::Duplicate));
        let (answer, marks) = begun(&q, &ok).unwrap();
        assert_eq!(answer, Answer::Dedup(DedupOutcome::Duplicate));
        let commit = StoreWrite::DedupDelivered {
            key: "msg_1".into(),
            now_unix_s: 5,
        };
        assert_eq!(
            mark(&marks, &commit, 30),
            Some(Query::DedupCommit {
                key: p.dedup_key("pay", "msg_1"),
                token: "t1".into(),
                window_ms: 30_000
            })
        );
        let forget = StoreWrite::DedupForget {
            key: "msg_1".into(),
        };
        assert!(matches!(
            mark(&marks, &forget, 30),
            Some(Query::DedupForget { .. })
        ));
    }

    #[test]
    fn no_answer_falls_back_and_marks_stay_local() {
        let q = begin(&policy(Fallback::Local), "pay", "m", "t".into(), 1);
        assert_eq!(begun(&q, &Err(StateError::NoAnswer)), None);
        assert_eq!(begun(&q, &Err(StateError::Unavailable)), None);
        assert_eq!(fallback(&policy(Fallback::Local)), None);
        assert_eq!(fallback(&policy(Fallback::Reject)), Some(Answer::Refused));
        let w = StoreWrite::DedupForget { key: "m".into() };
        assert_eq!(mark(&Marks::Local, &w, 1), None);
        assert_eq!(
            abandoned(&q),
            Some(Query::DedupForget {
                key: policy(Fallback::Local).dedup_key("pay", "m"),
                token: "t".into()
            })
        );
    }
}

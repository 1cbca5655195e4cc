//! What a request asks of the state shared between workers (today
//! proxy-wasm shared data, see [`crate::core::shared`]) while it runs:
//! the questions whose answer decides the request ([`Query`]: the bucket
//! draw of admission, the dedup check) and the marks it leaves behind
//! ([`StoreWrite`]: delivered, forget). A query may be answered later
//! than it is asked (a remote store); the request waits for it, see
//! [`crate::core::request`].

use crate::core::admission::{self, AdmissionPolicy, Decision};
use crate::core::dedup::DedupOutcome;
use crate::core::policy::ChannelPolicy;
use crate::core::shared::SharedStore;

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

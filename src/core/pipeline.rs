//! What happens to a channel's callback once its whole body is in: the
//! order of the body checks, as one pure function.
//!
//! Order and why:
//! 1. **signature** on the original bytes: nothing unverified goes further,
//!    not even to the empty check (a forged `{}` or `x-callback-status:
//!    204` is a `401` like any other, never a `204` or an empty count). A
//!    content-encoded (e.g. gzip) body is verified as sent.
//! 2. **empty**: an empty callback needs nothing else (on an unsigned
//!    channel this is the first step).
//! 3. **encoding**: a masking channel refuses a content-encoded body with
//!    `415` ([`refuse_encoded`]), before dedup could remember its id.
//! 4. **contract**: a channel's JSON Schema ([`check_contract`]), on the
//!    verified bytes as sent and before anything is drawn or remembered:
//!    a body that can never be accepted takes no admission token and
//!    leaves no dedup id (`422`, or `400 bad_json` if it is not JSON).
//! 5. **admission** buckets of a signed channel, drawn only now.
//! 6. **dedup** after verification, so forged requests cannot plant ids.
//! 7. **mask** last: it changes the bytes the signature was computed over.
//!
//! Steps 5 and 6 ask the state store ([`Query`]); [`BodyCheck`] stops
//! there and goes on with the answer, so the answer may come later (see
//! [`crate::core::request`]). [`inspect_body`] runs the whole sequence
//! with a store that answers at once.

use crate::core::admission::{AdmissionPolicy, ChannelLimit, Decision};
use crate::core::contract::Breach;
use crate::core::dedup::DedupOutcome;
use crate::core::empty;
use crate::core::encoding;
use crate::core::headers::Headers;
use crate::core::mask::{MaskError, Masker};
use crate::core::metrics::{ChannelStats, Stat};
use crate::core::names::{code, metric};
use crate::core::policy::{ChannelPolicy, EmptyAction};
use crate::core::reply::LocalReply;
use crate::core::request::store::{self, Answer, Query, StoreWrite};
use crate::core::shared::SharedStore;
use crate::core::signature::FailureReason;

/// Something worth counting; [`Event::stat`] names its metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Empty,
    SignatureVerified,
    SignatureFailed(FailureReason),
    Duplicate,
    Masked(u64),
    Rejected(&'static str),
    /// The admission decision taken after verification (signed channels).
    Admission(Decision),
}

impl Event {
    /// The stat (named once by the channel's policy) and increment for
    /// this event.
    pub fn stat(self, stats: &ChannelStats) -> (Stat, u64) {
        match self {
            Self::Empty => (stats.empty.clone(), 1),
            Self::SignatureVerified => (stats.signature_verified.clone(), 1),
            Self::SignatureFailed(r) => (stats.signature_failed(r), 1),
            Self::Duplicate => (stats.duplicates.clone(), 1),
            Self::Masked(n) => (stats.masked_fields.clone(), n),
            Self::Rejected(reason) => (stats.rejected(reason), 1),
            Self::Admission(decision) => (stats.admission(decision), 1),
        }
    }
}

/// Admission still owed by a request on a signed channel: the rules'
/// verdict from the request headers, whose bucket draw waits until the
/// signature verified.
#[derive(Debug, Clone, Copy)]
pub struct PendingAdmission<'a> {
    pub admission: Option<&'a AdmissionPolicy>,
    pub channel: Option<&'a ChannelLimit>,
    pub decision: Decision,
    pub now_ms: u64,
}

/// What to do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyAction {
    Reply(LocalReply),
    Forward {
        /// Replacement body (masked), when it changed.
        body: Option<Vec<u8>>,
        /// Remembered by dedup; forgotten again if the upstream fails, so
        /// the provider's retry is not answered as a duplicate.
        dedup_key: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyVerdict {
    pub action: BodyAction,
    pub events: Vec<Event>,
    /// The scheme that verified (for `x-verified-signature`), also on
    /// replies (a duplicate was verified too).
    pub verified: Option<&'static str>,
    /// Refused after dedup remembered the delivery in flight: forget it,
    /// so a corrected redelivery is not told to wait.
    pub forget: Option<String>,
}

/// Whether the body checks of `ch` read the time (`BodyInput::now_unix_s`,
/// `PendingAdmission::now_ms`): only the signature's tolerance, dedup and a
/// bucket draw still owed do; otherwise the host clock is not read.
pub fn needs_time(ch: &ChannelPolicy, admission_pending: bool) -> bool {
    ch.signature.is_some() || ch.dedup.is_some() || admission_pending
}

/// Input of [`inspect_body`].
pub struct BodyInput<'a> {
    pub headers: &'a Headers,
    pub body: &'a [u8],
    /// The headers said the callback is empty (`x-callback-status: 204`).
    pub empty_by_header: bool,
    /// The time, when [`needs_time`] (else anything).
    pub now_unix_s: u64,
    /// Drawn right after the signature verified, before dedup remembers
    /// the delivery.
    pub admission: Option<PendingAdmission<'a>>,
}

/// The body checks in one go, with the state store answering at once:
/// [`BodyCheck`] driven to its verdict.
pub fn inspect_body(
    ch: &ChannelPolicy,
    input: &BodyInput<'_>,
    store: &dyn SharedStore,
) -> BodyVerdict {
    let admission = input.admission.and_then(|p| p.admission);
    let mut check = BodyCheck::new(input);
    let mut step = check.start(ch, input.headers, input.body);
    loop {
        match step {
            BodyStep::Query(query) => {
                let answer = store::answer(&query, admission, ch, store);
                step = check.resume(ch, input.headers, input.body, answer);
            }
            BodyStep::Done(verdict) => {
                if let Some(key) = &verdict.forget {
                    store::write(&StoreWrite::DedupForget { key: key.clone() }, ch, store);
                }
                return verdict;
            }
        }
    }
}

/// The next thing the body checks need: the store's answer to a query,
/// or nothing more (the verdict).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyStep {
    Query(Query),
    Done(BodyVerdict),
}

/// The body checks of one request as a resumable sequence: [`start`]
/// runs until the first question to the state store (or the verdict),
/// [`resume`] takes the answer and goes on from there, never re-running
/// an earlier step. The headers and body must be the same on every call.
///
/// [`start`]: BodyCheck::start
/// [`resume`]: BodyCheck::resume
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyCheck {
    now_unix_s: u64,
    empty_by_header: bool,
    /// The rules' decision and the time of its draw (signed channels).
    admission: Option<(Decision, u64)>,
    events: Vec<Event>,
    verified: Option<&'static str>,
    waiting: Waiting,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Waiting {
    Nothing,
    Admission(Decision),
    Dedup(String),
}

impl BodyCheck {
    pub fn new(input: &BodyInput<'_>) -> Self {
        Self {
            now_unix_s: input.now_unix_s,
            empty_by_header: input.empty_by_header,
            admission: input.admission.map(|p| (p.decision, p.now_ms)),
            events: Vec::new(),
            verified: None,
            waiting: Waiting::Nothing,
        }
    }

    fn reply(&mut self, reply: LocalReply) -> BodyStep {
        self.done(BodyAction::Reply(reply), None)
    }

    fn done(&mut self, action: BodyAction, forget: Option<String>) -> BodyStep {
        BodyStep::Done(BodyVerdict {
            action,
            events: std::mem::take(&mut self.events),
            verified: self.verified,
            forget,
        })
    }

    /// Runs the checks up to the first query to the store.
    pub fn start(&mut self, ch: &ChannelPolicy, headers: &Headers, body: &[u8]) -> BodyStep {
        let encoded = encoding::is_encoded(headers);
        if let Some(dedup) = &ch.dedup
            && dedup.id_malformed(headers)
        {
            // Two ids (or a non-ASCII one): the service could see another
            // copy than the one deduplicated. Checked before the signature,
            // so a refused request never counts as verified.
            if ch.signature.is_some() {
                self.events
                    .push(Event::SignatureFailed(FailureReason::Malformed));
                return self.reply(signature_reply(FailureReason::Malformed));
            }
            self.events
                .push(Event::Rejected(metric::REJECTED_BAD_DELIVERY_ID));
            return self.reply(LocalReply::new(
                400,
                code::BAD_DELIVERY_ID,
                "callback delivery id is repeated or not ASCII",
            ));
        }
        if let Some(verifier) = &ch.signature {
            match verifier.verify(headers, body, self.now_unix_s) {
                Ok(()) => {
                    self.events.push(Event::SignatureVerified);
                    self.verified = Some(verifier.scheme());
                }
                Err(reason) => {
                    self.events.push(Event::SignatureFailed(reason));
                    return self.reply(signature_reply(reason));
                }
            }
        }

        if self.empty_by_header || empty::empty_body_as_sent(body, encoded) {
            self.events.push(Event::Empty);
            if ch.empty_action == EmptyAction::Reply {
                return self.reply(LocalReply::empty_callback());
            }
        }

        if let Some(refusal) = refuse_encoded(ch, encoded) {
            self.events
                .push(Event::Rejected(metric::REJECTED_UNSUPPORTED_ENCODING));
            return self.reply(refusal);
        }

        if let Some((refusal, event)) = check_contract(ch, body) {
            self.events.push(event);
            return self.reply(refusal);
        }

        match self.admission {
            // Only an admitted decision has buckets to draw from.
            Some((decision, now_ms)) if decision.admitted().is_some() => {
                self.waiting = Waiting::Admission(decision);
                BodyStep::Query(Query::AdmissionDraw { decision, now_ms })
            }
            Some((decision, _)) => self.admitted(ch, headers, body, decision),
            None => self.dedup(ch, headers, body),
        }
    }

    /// Goes on with the store's answer to the query `start` or the last
    /// `resume` returned.
    pub fn resume(
        &mut self,
        ch: &ChannelPolicy,
        headers: &Headers,
        body: &[u8],
        answer: Answer,
    ) -> BodyStep {
        match std::mem::replace(&mut self.waiting, Waiting::Nothing) {
            Waiting::Admission(classified) => {
                let decision = match answer {
                    Answer::Admission(decision) => decision,
                    _ => classified,
                };
                self.admitted(ch, headers, body, decision)
            }
            Waiting::Dedup(key) => {
                match answer {
                    Answer::Dedup(DedupOutcome::Duplicate) => {
                        self.events.push(Event::Duplicate);
                        self.reply(LocalReply::duplicate())
                    }
                    Answer::Dedup(DedupOutcome::InFlight { retry_after_s }) => {
                        self.events
                            .push(Event::Rejected(metric::REJECTED_IN_PROGRESS));
                        self.reply(LocalReply::in_progress(retry_after_s))
                    }
                    Answer::Refused => {
                        self.events
                            .push(Event::Rejected(metric::REJECTED_STATE_UNAVAILABLE));
                        self.reply(LocalReply::state_unavailable())
                    }
                    // A store failure must not lose the callback: forward
                    // it (fail open).
                    _ => self.mask(ch, headers, body, Some(key)),
                }
            }
            // Nothing asked: a stray answer changes nothing.
            Waiting::Nothing => self.dedup(ch, headers, body),
        }
    }

    fn admitted(
        &mut self,
        ch: &ChannelPolicy,
        headers: &Headers,
        body: &[u8],
        decision: Decision,
    ) -> BodyStep {
        self.events.push(Event::Admission(decision));
        if let Some(refusal) = decision.refusal() {
            return self.reply(refusal);
        }
        self.dedup(ch, headers, body)
    }

    fn dedup(&mut self, ch: &ChannelPolicy, headers: &Headers, body: &[u8]) -> BodyStep {
        if let Some(dedup) = &ch.dedup
            && let Some(key) = dedup.delivery_key(headers, body)
        {
            self.waiting = Waiting::Dedup(key.clone());
            return BodyStep::Query(Query::DedupCheck {
                key,
                now_unix_s: self.now_unix_s,
            });
        }
        self.mask(ch, headers, body, None)
    }

    fn mask(
        &mut self,
        ch: &ChannelPolicy,
        headers: &Headers,
        body: &[u8],
        dedup_key: Option<String>,
    ) -> BodyStep {
        let mut new_body = None;
        if let Some(masker) = &ch.mask
            && Masker::applies(headers.get("content-type"), body)
            && !body.is_empty()
        {
            match masker.mask(body) {
                Ok(masked) => {
                    if masked.count > 0 {
                        self.events.push(Event::Masked(masked.count));
                        new_body = Some(masked.body);
                    }
                }
                Err(err) => {
                    self.events.push(Event::Rejected(metric::REJECTED_BAD_JSON));
                    let detail = match err {
                        MaskError::BadJson => "callback body claims JSON but does not parse",
                        MaskError::TooDeep => {
                            "callback body nests JSON deeper than the filter accepts"
                        }
                    };
                    let reply = LocalReply::new(400, code::BAD_JSON, detail);
                    return self.done(BodyAction::Reply(reply), dedup_key);
                }
            }
        }
        self.done(
            BodyAction::Forward {
                body: new_body,
                dedup_key,
            },
            None,
        )
    }
}

/// `contract`: every body that reaches this step must be JSON satisfying
/// the channel's schema. An empty body (no bytes, whitespace, `{}`, `[]`,
/// `null`) forwarded by `empty.action: forward` has nothing to satisfy and
/// is not checked; a body with content is checked even when the headers
/// call it empty (`x-callback-status: 204`). A content-encoded body never
/// gets here (`415`).
fn check_contract(ch: &ChannelPolicy, body: &[u8]) -> Option<(LocalReply, Event)> {
    let contract = ch.contract.as_ref()?;
    if empty::empty_body(body) {
        return None;
    }
    match contract.check(body).err()? {
        Breach::NotJson => Some((
            LocalReply::new(400, code::BAD_JSON, "callback body is not JSON"),
            Event::Rejected(metric::REJECTED_BAD_JSON),
        )),
        Breach::Violations(v) => Some((
            LocalReply::contract(&v),
            Event::Rejected(metric::REJECTED_CONTRACT),
        )),
    }
}

/// A masking channel cannot mask a content-encoded body (it cannot read
/// it) and must not forward it unmasked: `415`, whatever the content-type
/// claims, since the filter cannot see what the encoded bytes hold. The
/// same holds for a channel with a `contract`: it cannot check them.
/// Channels without `mask` or `contract` forward encoded bodies as they are.
fn refuse_encoded(ch: &ChannelPolicy, encoded: bool) -> Option<LocalReply> {
    (encoded && (ch.mask.is_some() || ch.contract.is_some())).then(LocalReply::unsupported_encoding)
}

fn signature_reply(reason: FailureReason) -> LocalReply {
    let (code, detail) = match reason {
        FailureReason::Missing => (code::SIGNATURE_MISSING, "callback signature is missing"),
        FailureReason::Malformed => (code::SIGNATURE_MALFORMED, "callback signature is malformed"),
        FailureReason::Mismatch => (
            code::SIGNATURE_MISMATCH,
            "callback signature does not verify",
        ),
        FailureReason::Expired => (
            code::SIGNATURE_EXPIRED,
            "callback timestamp is outside the accepted tolerance",
        ),
    };
    LocalReply::new(401, code, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::policy::testing::{channel, dedup, github, mask};
    use crate::core::shared::MemoryStore;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn run(ch: &ChannelPolicy, body: &[u8]) -> BodyVerdict {
        run_with(ch, &[("content-type", "application/json")], body)
    }

    fn run_with(ch: &ChannelPolicy, headers: &[(&str, &str)], body: &[u8]) -> BodyVerdict {
        let headers: Headers = headers.iter().copied().collect();
        let input = BodyInput {
            headers: &headers,
            body,
            empty_by_header: false,
            now_unix_s: 1_700_000_000,
            admission: None,
        };
        inspect_body(ch, &input, &MemoryStore::new())
    }

    #[test]
    fn empty_body_is_answered_204_by_default() {
        let ch = channel("a");
        let v = run(&ch, b" {} ");
        assert_eq!(v.events, [Event::Empty]);
        assert!(matches!(v.action, BodyAction::Reply(ref r) if r.status == 204));
    }

    #[test]
    fn empty_body_with_forward_is_counted_and_forwarded() {
        let ch = ChannelPolicy {
            empty_action: EmptyAction::Forward,
            ..channel("a")
        };
        let v = run(&ch, b"null");
        assert_eq!(v.events, [Event::Empty]);
        assert!(matches!(v.action, BodyAction::Forward { body: None, .. }));
    }

    #[test]
    fn plain_body_is_forwarded_untouched() {
        let ch = channel("a");
        let v = run(&ch, br#"{"a":1}"#);
        assert!(v.events.is_empty());
        assert_eq!(
            v.action,
            BodyAction::Forward {
                body: None,
                dedup_key: None
            }
        );
    }

    fn run_signed(
        ch: &ChannelPolicy,
        headers: &[(&str, &str)],
        body: &[u8],
        by_header: bool,
    ) -> BodyVerdict {
        let mut pairs: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        pairs.extend_from_slice(headers);
        let headers: Headers = pairs.into_iter().collect();
        let input = BodyInput {
            headers: &headers,
            body,
            empty_by_header: by_header,
            now_unix_s: 1_700_000_000,
            admission: None,
        };
        inspect_body(ch, &input, &MemoryStore::new())
    }

    #[test]
    fn on_a_signed_channel_the_signature_comes_before_the_empty_check() {
        let ch = ChannelPolicy {
            signature: Some(github("s3cret")),
            ..channel("gh")
        };
        // Forged or unsigned `{}`, or an empty-by-header claim: 401, and
        // nothing is counted as empty.
        for (headers, by_header) in [
            (vec![], false),
            (vec![("x-hub-signature-256", "sha256=00")], false),
            (vec![], true),
        ] {
            let v = run_signed(&ch, &headers, b"{}", by_header);
            assert!(
                matches!(v.action, BodyAction::Reply(ref r) if r.status == 401),
                "{v:?}"
            );
            assert!(!v.events.contains(&Event::Empty), "{v:?}");
        }
        // Verified: the empty callback is answered 204 and counted.
        let sig = {
            use hmac::{Hmac, Mac};
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
            mac.update(b"{}");
            let tag: Vec<String> = mac
                .finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("sha256={}", tag.concat())
        };
        let v = run_signed(&ch, &[("x-hub-signature-256", &sig)], b"{}", false);
        assert_eq!(v.events, [Event::SignatureVerified, Event::Empty]);
        assert!(matches!(v.action, BodyAction::Reply(ref r) if r.status == 204));
        assert_eq!(v.verified, Some("github"));
    }

    const GZIP_JSON: &[(&str, &str)] = &[
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];
    /// gzip of `{"phone":"+8613812345678"}`'s first bytes: any non-JSON
    /// bytes do, the filter never decodes them.
    const GZIP_BYTES: &[u8] = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xabV*";

    #[test]
    fn encoded_body_on_a_masking_channel_is_refused_415() {
        let mut ch = ChannelPolicy {
            mask: Some(mask(&["phone"])),
            ..channel("a")
        };
        ch.dedup = Some(dedup(&ch, 60, Some("x-id")));
        for ct in ["application/json", "text/plain", "application/octet-stream"] {
            let v = run_with(
                &ch,
                &[
                    ("content-type", ct),
                    ("content-encoding", "gzip"),
                    ("x-id", "1"),
                ],
                GZIP_BYTES,
            );
            assert_eq!(v.events, [Event::Rejected("unsupported_encoding")], "{ct}");
            let BodyAction::Reply(r) = &v.action else {
                panic!("{ct}: {v:?}")
            };
            assert_eq!((r.status, r.code), (415, "unsupported_encoding"));
            assert!(
                r.headers
                    .contains(&("accept-encoding".into(), "identity".into()))
            );
        }
        // Even bytes that happen to read as JSON (`{}` under a made-up
        // coding) are neither empty nor masked nor forwarded.
        let v = run_with(&ch, &[("content-encoding", "x-custom")], b"{}");
        assert_eq!(v.events, [Event::Rejected("unsupported_encoding")]);
        // identity is no encoding.
        let v = run_with(
            &ch,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "identity"),
            ],
            br#"{"phone":"1"}"#,
        );
        assert_eq!(v.events, [Event::Masked(1)]);
    }

    #[test]
    fn encoded_body_is_verified_as_sent_and_forwarded_unchanged_without_mask() {
        use hmac::{Hmac, Mac};
        let ch = ChannelPolicy {
            signature: Some(github("s3cret")),
            ..channel("a")
        };
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(GZIP_BYTES);
        let sig: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let sig = format!("sha256={sig}");
        let mut headers = GZIP_JSON.to_vec();
        headers.push(("x-hub-signature-256", &sig));
        let v = run_with(&ch, &headers, GZIP_BYTES);
        assert_eq!(v.events, [Event::SignatureVerified]);
        assert!(matches!(v.action, BodyAction::Forward { body: None, .. }));
        assert_eq!(v.verified, Some("github"));
        // A bad signature is still a 401 first, also on a masking channel.
        let ch = ChannelPolicy {
            mask: Some(mask(&["phone"])),
            signature: Some(github("s3cret")),
            ..channel("a")
        };
        let v = run_with(&ch, GZIP_JSON, GZIP_BYTES);
        assert!(matches!(v.action, BodyAction::Reply(ref r) if r.status == 401));
        let v = run_with(&ch, &headers, GZIP_BYTES);
        assert_eq!(
            v.events,
            [
                Event::SignatureVerified,
                Event::Rejected("unsupported_encoding")
            ]
        );
        assert_eq!(v.verified, Some("github"));
    }

    #[test]
    fn an_encoded_body_is_empty_only_without_bytes() {
        let ch = channel("a");
        let v = run_with(&ch, GZIP_JSON, b"");
        assert_eq!(v.events, [Event::Empty]);
        // `{}` under gzip is not `{}`: forwarded as sent.
        let v = run_with(&ch, GZIP_JSON, b"{}");
        assert!(v.events.is_empty());
        assert!(matches!(v.action, BodyAction::Forward { body: None, .. }));
    }

    #[test]
    fn a_body_refused_after_dedup_is_not_left_in_flight() {
        let mut ch = ChannelPolicy {
            mask: Some(mask(&["phone"])),
            ..channel("a")
        };
        ch.dedup = Some(dedup(&ch, 60, None));
        let store = MemoryStore::new();
        let headers = json_with_id("m1");
        let input = |body: &'static [u8]| body_input(&headers, body, None);
        let bad = inspect_body(&ch, &input(br#"{"phone":"#), &store);
        assert!(matches!(bad.action, BodyAction::Reply(ref r) if r.status == 400));
        // The same bad body again: refused again, not "in progress".
        let again = inspect_body(&ch, &input(br#"{"phone":"#), &store);
        assert!(
            matches!(again.action, BodyAction::Reply(ref r) if r.status == 400),
            "{again:?}"
        );
    }

    #[test]
    fn json_behind_a_byte_order_mark_never_escapes_masking() {
        let ch = ChannelPolicy {
            mask: Some(mask(&["phone"])),
            ..channel("a")
        };
        let v = run_with(
            &ch,
            &[("content-type", "text/plain")],
            b"\xEF\xBB\xBF{\"phone\":\"+8613812345678\"}",
        );
        assert!(
            matches!(v.action, BodyAction::Reply(ref r) if r.status == 400),
            "{v:?}"
        );
    }

    /// A JSON callback's headers with delivery id `id` (`webhook-id`).
    fn json_with_id(id: &str) -> Headers {
        [("content-type", "application/json"), ("webhook-id", id)]
            .into_iter()
            .collect()
    }

    /// The body checks' input; `admitted`: the rules admitted the request
    /// at its headers as that decision and the bucket draw is still owed
    /// (a signed channel).
    fn body_input<'a>(
        headers: &'a Headers,
        body: &'a [u8],
        admitted: Option<Decision>,
    ) -> BodyInput<'a> {
        BodyInput {
            headers,
            body,
            empty_by_header: false,
            now_unix_s: 1_700_000_000,
            admission: admitted.map(|decision| PendingAdmission {
                admission: None,
                channel: None,
                decision,
                now_ms: 5,
            }),
        }
    }

    #[test]
    fn the_body_check_stops_at_each_store_question_and_goes_on_from_there() {
        use crate::core::admission::Priority;
        let mut ch = ChannelPolicy {
            mask: Some(mask(&["phone"])),
            ..channel("a")
        };
        ch.dedup = Some(dedup(&ch, 60, None));
        let headers = json_with_id("m1");
        let body = br#"{"phone":"1"}"#;
        let admitted = Decision::Admitted(Priority::Normal);
        let input = body_input(&headers, body, Some(admitted));
        let mut check = BodyCheck::new(&input);
        assert_eq!(
            check.start(&ch, &headers, body),
            BodyStep::Query(Query::AdmissionDraw {
                decision: admitted,
                now_ms: 5
            })
        );
        let step = check.resume(&ch, &headers, body, Answer::Admission(admitted));
        let BodyStep::Query(Query::DedupCheck { key, now_unix_s }) = step else {
            panic!("{step:?}")
        };
        assert!(key.starts_with("m1"), "{key}");
        assert_eq!(now_unix_s, 1_700_000_000);
        // The store did not answer: fail open, masked and forwarded with
        // the key (to forget if the upstream fails).
        let BodyStep::Done(verdict) = check.resume(&ch, &headers, body, Answer::Unavailable) else {
            panic!()
        };
        assert_eq!(
            verdict.events,
            [Event::Admission(admitted), Event::Masked(1)]
        );
        assert!(matches!(
            verdict.action,
            BodyAction::Forward { body: Some(_), dedup_key: Some(ref k), .. } if *k == key
        ));
        // A shed answer refuses before dedup is asked.
        let mut check = BodyCheck::new(&input);
        check.start(&ch, &headers, body);
        let shed = Decision::Shed {
            priority: Priority::Normal,
            retry_after_s: 2,
            cause: crate::core::admission::Cause::Capacity,
        };
        let BodyStep::Done(verdict) = check.resume(&ch, &headers, body, Answer::Admission(shed))
        else {
            panic!()
        };
        assert!(matches!(verdict.action, BodyAction::Reply(ref r) if r.status == 429));
    }

    /// `ch` with `"contract": schema`.
    #[cfg(feature = "contract")]
    fn with_contract(mut ch: ChannelPolicy, schema: serde_json::Value) -> ChannelPolicy {
        ch.contract = Some(crate::core::contract::Contract::compile(&schema).unwrap());
        ch
    }

    /// A channel with a contract (`id` required, `amount` an integer),
    /// masking `phone` and unsigned dedup.
    #[cfg(feature = "contract")]
    fn contract_channel() -> ChannelPolicy {
        let mut ch = with_contract(
            channel("a"),
            serde_json::json!({"type":"object","required":["id"],
                "properties":{"id":{"type":"string"},"amount":{"type":"integer"}}}),
        );
        ch.mask = Some(mask(&["phone"]));
        ch.dedup = Some(dedup(&ch, 60, None));
        ch
    }

    #[cfg(feature = "contract")]
    #[test]
    fn a_body_within_the_contract_is_masked_and_forwarded() {
        let ch = contract_channel();
        let v = run(&ch, br#"{"id":"o1","amount":3,"phone":"+8613812345678"}"#);
        assert_eq!(v.events, [Event::Masked(1)]);
        assert!(matches!(
            v.action,
            BodyAction::Forward { body: Some(_), .. }
        ));
    }

    #[cfg(feature = "contract")]
    #[test]
    fn a_body_outside_the_contract_is_422_and_leaves_no_dedup_id() {
        let ch = contract_channel();
        let store = MemoryStore::new();
        let headers = json_with_id("m1");
        let input = |body: &'static [u8]| body_input(&headers, body, None);
        let bad = inspect_body(&ch, &input(br#"{"amount":"4111111111111111"}"#), &store);
        assert_eq!(bad.events, [Event::Rejected("contract")]);
        let BodyAction::Reply(r) = &bad.action else {
            panic!("{bad:?}")
        };
        assert_eq!((r.status, r.code), (422, "contract"));
        for failure in ["/amount (type)", "/id (required)"] {
            assert!(r.detail.contains(failure), "{}", r.detail);
        }
        assert!(!r.detail.contains("4111"));
        // Not remembered: the corrected redelivery with the same id is a
        // first delivery, not a duplicate or "in progress".
        let good = inspect_body(&ch, &input(br#"{"id":"o1"}"#), &store);
        assert!(
            matches!(
                good.action,
                BodyAction::Forward {
                    dedup_key: Some(_),
                    ..
                }
            ),
            "{good:?}"
        );
    }

    #[cfg(feature = "contract")]
    #[test]
    fn a_body_outside_the_contract_asks_the_store_nothing() {
        use crate::core::admission::Priority;
        let ch = contract_channel();
        let headers = json_with_id("m1");
        let admitted = Decision::Admitted(Priority::Normal);
        let body: &[u8] = br#"{"amount":1}"#;
        let input = body_input(&headers, body, Some(admitted));
        // No admission draw (no token taken), no dedup check (no id
        // planted): the verdict comes at once.
        let step = BodyCheck::new(&input).start(&ch, &headers, body);
        let BodyStep::Done(verdict) = step else {
            panic!("{step:?}")
        };
        assert_eq!(verdict.events, [Event::Rejected("contract")]);
        assert_eq!(verdict.forget, None);
        // Within the contract, the same request asks for its draw first.
        let body: &[u8] = br#"{"id":"o1"}"#;
        let step = BodyCheck::new(&input).start(&ch, &headers, body);
        assert!(
            matches!(step, BodyStep::Query(Query::AdmissionDraw { .. })),
            "{step:?}"
        );
    }

    #[cfg(feature = "contract")]
    #[test]
    fn on_a_contract_channel_every_body_must_be_json() {
        let mut ch = with_contract(channel("a"), serde_json::json!({"type": "object"}));
        ch.empty_action = EmptyAction::Forward;
        for ct in ["application/json", "text/plain"] {
            let v = run_with(&ch, &[("content-type", ct)], b"id=1");
            assert_eq!(v.events, [Event::Rejected("bad_json")], "{ct}");
            assert!(
                matches!(v.action, BodyAction::Reply(ref r) if r.status == 400 && r.code == "bad_json")
            );
        }
        // Encoded: cannot be checked, so refused like on a masking channel.
        let v = run_with(&ch, GZIP_JSON, GZIP_BYTES);
        assert_eq!(v.events, [Event::Rejected("unsupported_encoding")]);
        // An empty callback forwarded by choice has nothing to satisfy.
        for empty in [&b""[..], b" {} ", b"null"] {
            let v = run(&ch, empty);
            assert_eq!(v.events, [Event::Empty]);
            assert!(matches!(v.action, BodyAction::Forward { .. }));
        }
        // A body with content is checked even if the headers call it empty.
        let headers: Headers = [("content-type", "text/plain")].into_iter().collect();
        let input = BodyInput {
            headers: &headers,
            body: b"not json",
            empty_by_header: true,
            now_unix_s: 1_700_000_000,
            admission: None,
        };
        let v = inspect_body(&ch, &input, &MemoryStore::new());
        assert_eq!(v.events, [Event::Empty, Event::Rejected("bad_json")]);
    }

    #[cfg(feature = "contract")]
    #[test]
    fn the_contract_is_checked_after_the_signature() {
        let mut ch = with_contract(channel("gh"), serde_json::json!(false));
        ch.signature = Some(github("s3cret"));
        let v = run_signed(&ch, &[], br#"{"a":1}"#, false);
        assert!(
            matches!(v.action, BodyAction::Reply(ref r) if r.status == 401),
            "{v:?}"
        );
    }

    #[test]
    fn event_stat_names() {
        let stats = ChannelStats::new("p", []);
        let (stat, by) = Event::Rejected(code::TOO_LARGE).stat(&stats);
        assert_eq!(
            (&*stat, by),
            (
                "callback_rejected_total_channel=.=p;.;_reason=.=too_large;.;",
                1
            )
        );
        assert_eq!(Event::Masked(3).stat(&stats).1, 3);
        assert_eq!(
            &*Event::SignatureFailed(FailureReason::Expired)
                .stat(&stats)
                .0,
            "callback_signature_failed_total_channel=.=p;.;_reason=.=expired;.;"
        );
    }
}

//! The record of what the filter decided for one channel request, for
//! Envoy's access log, and the budget that rate-limits refusal log lines.
//!
//! The filter writes the record as JSON into the stream's filter state
//! (`wasm.callback_guard`), once, when the outcome is known: when it
//! answers itself, or when the callback goes upstream. An access log reads
//! it with `%FILTER_STATE(wasm.callback_guard:PLAIN)%` (see
//! `docs/observability.md`). Every field is either a fixed word or a value
//! the filter already validated (channel names from the config, delivery
//! ids that are one visible-ASCII token of at most 256 bytes, trace ids of
//! 32 hex): no body content, no secret, nothing a client can inject.

use crate::core::decimal;
use serde::{Deserialize, Serialize};

/// Filter-state name of the record (Envoy prefixes `wasm.`).
pub const FILTER_STATE_NAME: &str = "callback_guard";

/// Level of the refusal log lines (`refusal_log.level`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// No refusal lines.
    Off,
    Debug,
    #[default]
    Info,
    Warn,
}

/// Default of `refusal_log.per_second`.
pub const DEFAULT_LOG_PER_SECOND: u32 = 10;
/// Largest `refusal_log.per_second`.
pub const MAX_LOG_PER_SECOND: u32 = 1000;

/// What happened to the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// It went upstream.
    Forwarded,
    /// The filter answered it with an outcome (204 empty, 200 duplicate).
    Answered,
    /// The filter refused it (4xx/5xx local reply).
    Refused,
}

impl Verdict {
    /// The word in the record (as its `Serialize` spells it).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forwarded => "forwarded",
            Self::Answered => "answered",
            Self::Refused => "refused",
        }
    }

    /// The verdict of a local reply with this status.
    pub fn of_reply(status: u32) -> Self {
        if status < 400 {
            Self::Answered
        } else {
            Self::Refused
        }
    }
}

/// One request's record. Absent fields are left out of the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionRecord<'a> {
    pub channel: &'a str,
    pub verdict: Verdict,
    /// The local reply's code (`signature_mismatch`, `duplicate`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// The local reply's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    /// The signature scheme that verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<&'a str>,
    /// The cluster routing chose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<&'a str>,
    /// The admitted priority.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<&'a str>,
    /// The Rego admission policy's `reason` (printable ASCII, at most 128
    /// bytes: the policy author's words, see `core::admission::rego`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_reason: Option<&'a str>,
    pub trace_id: &'a str,
}

impl DecisionRecord<'_> {
    /// The record as JSON, the bytes `serde_json` writes for it (its
    /// `Serialize` is the reference the tests hold this to), written by
    /// hand: it is made for every channel request, and its values are
    /// short strings that seldom need an escape.
    pub fn to_json(&self) -> Vec<u8> {
        // A record is about 200 bytes: one allocation instead of a few
        // growing ones.
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"channel\":");
        json_str(&mut out, self.channel);
        out.extend_from_slice(b",\"verdict\":");
        json_str(&mut out, self.verdict.as_str());
        json_field(&mut out, "reason", self.reason);
        if let Some(status) = self.status {
            out.extend_from_slice(b",\"status\":");
            let mut digits = [0; decimal::MAX_DIGITS];
            out.extend_from_slice(decimal::decimal(status.into(), &mut digits).as_bytes());
        }
        json_field(&mut out, "scheme", self.scheme);
        json_field(&mut out, "delivery_id", self.delivery_id);
        json_field(&mut out, "cluster", self.cluster);
        json_field(&mut out, "priority", self.priority);
        json_field(&mut out, "admission_reason", self.admission_reason);
        out.extend_from_slice(b",\"trace_id\":");
        json_str(&mut out, self.trace_id);
        out.push(b'}');
        out
    }

    /// The refusal as one log line (`key=value` pairs, values as in the
    /// record).
    pub fn log_line(&self) -> String {
        let mut line = format!(
            "callback-guard: refused channel={} status={} reason={}",
            self.channel,
            self.status.unwrap_or(0),
            self.reason.unwrap_or("-")
        );
        for (key, value) in [
            ("scheme", self.scheme),
            ("delivery_id", self.delivery_id),
            ("priority", self.priority),
        ] {
            if let Some(v) = value {
                line.push_str(&format!(" {key}={v}"));
            }
        }
        line.push_str(&format!(" trace_id={}", self.trace_id));
        line
    }
}

/// `,"key":"value"` when there is a value (absent fields are left out).
fn json_field(out: &mut Vec<u8>, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        out.push(b',');
        json_str(out, key);
        out.push(b':');
        json_str(out, value);
    }
}

/// `s` as a JSON string, escaped as `serde_json` escapes it (`\"`, `\\`,
/// the short forms of `\b \f \n \r \t`, `\u00XX` for other control bytes).
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
        out.extend_from_slice(bytes);
    } else {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &b in bytes {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0..=0x1f => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]),
                _ => out.push(b),
            }
        }
    }
    out.push(b'"');
}

/// A per-worker token bucket for refusal log lines: at most `per_second`
/// lines a second (bursts up to the same number); the lines it drops are
/// counted and reported on the next line that is written.
#[derive(Debug, Clone)]
pub struct LogBudget {
    per_second: u32,
    tokens: f64,
    last_ms: u64,
    dropped: u64,
}

impl LogBudget {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            tokens: f64::from(per_second),
            last_ms: 0,
            dropped: 0,
        }
    }

    /// `Some(dropped since the last line)` when a line may be written now.
    pub fn take(&mut self, now_ms: u64) -> Option<u64> {
        let rate = f64::from(self.per_second);
        let elapsed_s = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed_s * rate).min(rate);
        self.last_ms = now_ms;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.dropped))
        } else {
            self.dropped = self.dropped.saturating_add(1);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn record() -> DecisionRecord<'static> {
        DecisionRecord {
            channel: "payments",
            verdict: Verdict::Refused,
            reason: Some("signature_mismatch"),
            status: Some(401),
            scheme: None,
            delivery_id: Some("msg_1"),
            cluster: None,
            priority: Some("normal"),
            admission_reason: None,
            trace_id: "0af7651916cd43dd8448eb211c80319c",
        }
    }

    #[test]
    fn the_record_is_json_without_absent_fields() {
        let v: serde_json::Value = serde_json::from_slice(&record().to_json()).unwrap();
        assert_eq!(v["channel"], "payments");
        assert_eq!(v["verdict"], "refused");
        assert_eq!(v["reason"], "signature_mismatch");
        assert_eq!(v["status"], 401);
        assert_eq!(v["delivery_id"], "msg_1");
        assert!(v.get("scheme").is_none() && v.get("cluster").is_none());
        assert_eq!(Verdict::of_reply(204), Verdict::Answered);
        assert_eq!(Verdict::of_reply(200), Verdict::Answered);
        assert_eq!(Verdict::of_reply(429), Verdict::Refused);
    }

    #[test]
    fn the_record_is_what_serde_json_writes_for_it() {
        let full = DecisionRecord {
            scheme: Some("standard-webhooks"),
            cluster: Some("region-a"),
            admission_reason: Some("webhook_processor"),
            ..record()
        };
        let bare = DecisionRecord {
            verdict: Verdict::Forwarded,
            reason: None,
            status: None,
            delivery_id: None,
            priority: None,
            ..record()
        };
        // Every byte that needs an escape, and some that do not.
        let odd: String = (0u8..0x80).map(char::from).chain(['é', '→']).collect();
        let escaped = DecisionRecord {
            channel: &odd,
            verdict: Verdict::Answered,
            status: Some(0),
            delivery_id: Some("a\"b\\c"),
            admission_reason: Some(&odd),
            ..full.clone()
        };
        for (r, status) in [(record(), 401), (full, 401), (bare, 0), (escaped, 0)] {
            assert_eq!(
                String::from_utf8(r.to_json()).unwrap(),
                serde_json::to_string(&r).unwrap()
            );
            for status in [status, 7, 10, 4_294_967_295] {
                let r = DecisionRecord {
                    status: Some(status),
                    ..r.clone()
                };
                assert_eq!(r.to_json(), serde_json::to_vec(&r).unwrap());
            }
        }
    }

    #[test]
    fn the_log_line_names_the_refusal() {
        assert_eq!(
            record().log_line(),
            "callback-guard: refused channel=payments status=401 reason=signature_mismatch \
             delivery_id=msg_1 priority=normal trace_id=0af7651916cd43dd8448eb211c80319c"
        );
    }

    #[test]
    fn the_budget_limits_lines_and_reports_what_it_dropped() {
        let mut b = LogBudget::new(2);
        assert_eq!(b.take(1_000), Some(0));
        assert_eq!(b.take(1_000), Some(0));
        assert_eq!(b.take(1_000), None);
        assert_eq!(b.take(1_100), None);
        // Half a second later one token is back: two lines were dropped.
        assert_eq!(b.take(1_600), Some(2));
        assert_eq!(b.take(1_600), None);
    }
}

//! Assertions shared by the e2e tests.

use super::Response;

/// A W3C trace id: 32 lower-case hex digits, not all zero.
pub fn is_trace_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && s != "0".repeat(32)
}

/// The SPEC local reply: `status`, `content-type: application/json`, a body
/// of exactly `error` (equal to `code` when given), `detail` and `trace_id`,
/// the trace id being the `x-callback-trace-id` header.
pub fn local_reply(resp: &Response, status: u16, code: Option<&str>, context: &str) {
    reply_shape(resp, status, "error", code, context);
}

/// A local reply that reports an outcome rather than an error (a
/// duplicate): the same shape with `status` in place of `error`.
pub fn local_outcome(resp: &Response, status: u16, code: &str, context: &str) {
    reply_shape(resp, status, "status", Some(code), context);
}

fn reply_shape(resp: &Response, status: u16, key: &str, code: Option<&str>, context: &str) {
    assert_eq!(resp.status, status, "{context}: {}", resp.body_str());
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "{context}"
    );
    let body = resp.json();
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(3),
        "{context}: {body}"
    );
    match code {
        Some(code) => assert_eq!(body[key], code, "{context}: {body}"),
        None => assert!(
            body[key].as_str().is_some_and(|e| !e.is_empty()),
            "{context}: {body}"
        ),
    }
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{context}: {body}"
    );
    let trace = body["trace_id"].as_str().unwrap_or_default();
    assert!(is_trace_id(trace), "{context}: {body}");
    assert_eq!(resp.header("x-callback-trace-id"), Some(trace), "{context}");
}

/// The filter's one log line for a refused configuration (every error,
/// with its field path).
pub fn config_error_line(log: &str) -> &str {
    log.lines()
        .find(|l| l.contains("callback-guard: invalid configuration"))
        .unwrap_or_else(|| panic!("no configuration error in the log:\n{log}"))
}

//! W3C Trace Context (`traceparent`): keep a valid one, make one when the
//! caller sent none or an invalid one.
//!
//! Format (version 00): `00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>`,
//! lower-case hex, neither id all zeros, version `ff` invalid.

use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: String,
    pub parent_id: String,
    pub flags: String,
    /// The header value to forward.
    pub header: String,
    /// True when this filter made it (the caller sent none or an invalid one).
    pub generated: bool,
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn all_zero(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

/// Parses a `traceparent` value; `None` when it is not valid.
pub fn parse(value: &str) -> Option<TraceParent> {
    let value = value.trim();
    let mut parts = value.split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let parent_id = parts.next()?;
    let flags = parts.next()?;
    let rest_ok = if version == "00" {
        parts.next().is_none()
    } else {
        // Future versions may append fields; only the first four are ours.
        true
    };
    let valid = rest_ok
        && is_lower_hex(version, 2)
        && version != "ff"
        && is_lower_hex(trace_id, 32)
        && !all_zero(trace_id)
        && is_lower_hex(parent_id, 16)
        && !all_zero(parent_id)
        && is_lower_hex(flags, 2);
    valid.then(|| TraceParent {
        trace_id: trace_id.to_string(),
        parent_id: parent_id.to_string(),
        flags: flags.to_string(),
        header: value.to_string(),
        generated: false,
    })
}

/// A new sampled trace from 192 random bits.
pub fn generate(hi: u64, lo: u64, span: u64) -> TraceParent {
    // Zero ids are invalid; the chance is nil but the fix is free.
    let lo = if hi == 0 && lo == 0 { 1 } else { lo };
    let span = if span == 0 { 1 } else { span };
    let mut trace_id = String::with_capacity(32);
    let _ = write!(trace_id, "{hi:016x}{lo:016x}");
    let parent_id = format!("{span:016x}");
    let flags = "01".to_string();
    let header = format!("00-{trace_id}-{parent_id}-{flags}");
    TraceParent {
        trace_id,
        parent_id,
        flags,
        header,
        generated: true,
    }
}

/// The caller's trace if valid, else a new one from `random`.
pub fn ensure(value: Option<&str>, random: impl FnOnce() -> (u64, u64, u64)) -> TraceParent {
    match value.and_then(parse) {
        Some(tp) => tp,
        None => {
            let (hi, lo, span) = random();
            generate(hi, lo, span)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn keeps_valid_w3c_example() {
        let tp = ensure(Some(VALID), || unreachable!());
        assert_eq!(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.header, VALID);
        assert!(!tp.generated);
    }

    #[test]
    fn rejects_invalid_forms() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
        assert!(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
    }

    #[test]
    fn generates_valid_headers() {
        let tp = ensure(Some("garbage"), || (1, 2, 3));
        assert!(tp.generated);
        assert_eq!(
            tp.header,
            "00-00000000000000010000000000000002-0000000000000003-01"
        );
        assert_eq!(
            parse(&tp.header).map(|p| p.trace_id),
            Some(tp.trace_id.clone())
        );
        assert!(parse(&generate(0, 0, 0).header).is_some());
    }
}

//! W3C Trace Context (`traceparent`): keep a valid one, make one when the
//! caller sent none or an invalid one.
//!
//! Format (version 00): `00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>`,
//! lower-case hex, neither id all zeros, version `ff` invalid.

/// Length of a version-00 `traceparent`, and of the first four fields of
/// any version.
pub const LEN: usize = 55;

/// A valid `traceparent`: its first four fields, kept inline (no
/// allocation per request).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// `<version>-<trace-id>-<parent-id>-<flags>`: always [`LEN`] bytes of
    /// ASCII.
    text: [u8; LEN],
    /// True when this filter made it (the caller sent none or an invalid one).
    pub generated: bool,
}

impl std::fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceParent")
            .field("header", &self.header())
            .field("generated", &self.generated)
            .finish()
    }
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
    if !valid {
        return None;
    }
    let mut text = [0; LEN];
    text.copy_from_slice(value.as_bytes().get(..LEN)?);
    Some(TraceParent {
        text,
        generated: false,
    })
}

/// A new sampled trace from 192 random bits.
pub fn generate(hi: u64, lo: u64, span: u64) -> TraceParent {
    // Zero ids are invalid; the chance is nil but the fix is free.
    let lo = if hi == 0 && lo == 0 { 1 } else { lo };
    let span = if span == 0 { 1 } else { span };
    // Hex by hand: `format!` costs several times more, on every callback.
    let mut text = *b"00-________________________________-________________-01";
    put_hex(&mut text, 3, hi);
    put_hex(&mut text, 19, lo);
    put_hex(&mut text, 36, span);
    TraceParent {
        text,
        generated: true,
    }
}

impl TraceParent {
    /// The header value to forward (of a caller's header of a later
    /// version, only its first four fields: the caller's own header is
    /// what goes upstream then).
    pub fn header(&self) -> &str {
        std::str::from_utf8(&self.text).unwrap_or_default()
    }

    /// The 32-hex trace id (its place in a valid header is fixed).
    pub fn trace_id(&self) -> &str {
        self.field(3..35)
    }

    /// The 16-hex parent id.
    pub fn parent_id(&self) -> &str {
        self.field(36..52)
    }

    /// The two hex flag digits.
    pub fn flags(&self) -> &str {
        self.field(53..55)
    }

    fn field(&self, range: std::ops::Range<usize>) -> &str {
        self.text
            .get(range)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

/// `v` as 16 lower-case hex digits, at `at` in `out`.
fn put_hex(out: &mut [u8], at: usize, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, digit) in out.iter_mut().skip(at).take(16).enumerate() {
        let shift = 4 * (15 - i);
        *digit = HEX[((v >> shift) & 0xf) as usize];
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
        assert_eq!(tp.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.header(), VALID);
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
        let later = parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").unwrap();
        assert_eq!(
            later.header(),
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn generates_valid_headers() {
        let tp = ensure(Some("garbage"), || (1, 2, 3));
        assert!(tp.generated);
        assert_eq!(
            tp.header(),
            "00-00000000000000010000000000000002-0000000000000003-01"
        );
        assert_eq!(
            parse(tp.header()).map(|p| p.trace_id().to_string()),
            Some(tp.trace_id().to_string())
        );
        assert!(parse(generate(0, 0, 0).header()).is_some());
        let tp = generate(0x0123_4567_89ab_cdef, u64::MAX, 0xfedc_ba98_7654_3210);
        assert_eq!(
            tp.header(),
            "00-0123456789abcdefffffffffffffffff-fedcba9876543210-01"
        );
        assert_eq!(tp.trace_id(), "0123456789abcdefffffffffffffffff");
        assert_eq!((tp.parent_id(), tp.flags()), ("fedcba9876543210", "01"));
        let kept = parse(VALID).unwrap();
        assert_eq!((kept.parent_id(), kept.flags()), ("00f067aa0ba902b7", "01"));
    }
}

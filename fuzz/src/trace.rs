//! Target `trace`: `traceparent` parsing (`core::trace`).
//!
//! Properties: a value accepted by `parse` is, after trimming, W3C Trace
//! Context: version two lower-case hex digits other than `ff`, exactly four
//! fields for version `00` (55 characters), a 32-hex trace id and a 16-hex
//! parent id that are not all zeros, two hex flag digits; the kept header
//! is that trimmed value's first four fields (all of it for version `00`). `ensure` always yields a header `parse` accepts,
//! the caller's when valid, a generated one otherwise.

use super::util::text;
use callback_guard::core::trace;

pub fn check(data: &[u8]) {
    let value = text(data);
    if let Some(tp) = trace::parse(&value) {
        let v = value.trim();
        assert_eq!(tp.header(), v.get(..55).unwrap_or(v));
        let parts: Vec<&str> = v.split('-').collect();
        assert!(parts.len() >= 4, "{v:?}");
        assert!(lower_hex(parts[0], 2) && parts[0] != "ff", "version {v:?}");
        if parts[0] == "00" {
            assert_eq!(parts.len(), 4, "{v:?}");
            assert_eq!(v.len(), 55, "{v:?}");
        }
        assert_eq!((tp.trace_id(), tp.parent_id()), (parts[1], parts[2]));
        assert_eq!(tp.flags(), parts[3]);
        assert!(lower_hex(tp.trace_id(), 32) && tp.trace_id().bytes().any(|b| b != b'0'));
        assert!(lower_hex(tp.parent_id(), 16) && tp.parent_id().bytes().any(|b| b != b'0'));
        assert!(lower_hex(tp.flags(), 2));
        assert!(!tp.generated);
    }
    // Random bits from the input itself, so generation is fuzzed too
    // (including all-zero ids).
    let mut seed = [0u8; 24];
    for (s, b) in seed.iter_mut().zip(data.iter().rev()) {
        *s = *b;
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&seed[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    let ensured = trace::ensure(Some(&value), || (word(0), word(1), word(2)));
    let reparsed = trace::parse(ensured.header());
    assert!(
        reparsed.is_some(),
        "ensure made an invalid header {:?}",
        ensured.header()
    );
    assert_eq!(ensured.generated, trace::parse(&value).is_none());
    if ensured.generated {
        assert_eq!(ensured.header().len(), 55);
        assert!(ensured.header().starts_with("00-") && ensured.header().ends_with("-01"));
    }
}

fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

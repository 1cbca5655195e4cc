//! Decoding and comparing what a request claims, without panics and in
//! constant time where secrets are involved.

use super::FailureReason;
use crate::core::headers::Headers;
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use subtle::ConstantTimeEq;

/// Standard alphabet; padding optional (some senders drop it), trailing
/// bits must be zero so one signature has exactly one spelling.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Longest timestamp we parse: `u64::MAX` has 20 digits.
const MAX_TIMESTAMP_DIGITS: usize = 20;

/// `true` only when both are non-empty, of equal length and equal; the
/// byte comparison is constant-time (`subtle`). An empty or truncated
/// candidate never matches.
pub(crate) fn ct_eq(expected: &[u8], candidate: &[u8]) -> bool {
    !expected.is_empty()
        && expected.len() == candidate.len()
        && bool::from(expected.ct_eq(candidate))
}

/// The one value of `name`, trimmed; `Missing` when absent or blank,
/// `Malformed` when repeated or not visible ASCII (see
/// [`Headers::single_token`]).
pub(crate) fn header<'a>(headers: &'a Headers, name: &str) -> Result<&'a str, FailureReason> {
    match headers.single_token(name) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(FailureReason::Missing),
        Err(_) => Err(FailureReason::Malformed),
    }
}

/// Strict hex (either case), exactly `len` bytes.
pub(crate) fn hex_exact(text: &str, len: usize) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() != len.checked_mul(2)? {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some(nibble(*hi)? << 4 | nibble(*lo)?),
            _ => None,
        })
        .collect()
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Base64 (standard alphabet), any length; `None` when it does not decode.
pub(crate) fn base64_any(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text).ok()
}

/// Base64 that decodes to exactly `len` bytes.
pub(crate) fn base64_exact(text: &str, len: usize) -> Option<Vec<u8>> {
    // Reject absurd lengths before decoding: 4 chars per 3 bytes, plus padding.
    if text.len() > len.saturating_mul(4) / 3 + 4 {
        return None;
    }
    base64_any(text).filter(|v| v.len() == len)
}

/// A Unix timestamp in whole seconds: ASCII digits only (no sign, no
/// fraction, no spaces), at most 20 of them, fitting in `u64`.
pub(crate) fn timestamp(text: &str) -> Result<u64, FailureReason> {
    if text.is_empty()
        || text.len() > MAX_TIMESTAMP_DIGITS
        || !text.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(FailureReason::Malformed);
    }
    text.parse().map_err(|_| FailureReason::Malformed)
}

/// `Expired` when the timestamp is more than `tolerance_s` away from now,
/// in the past or in the future.
pub(crate) fn fresh(ts: u64, now_unix_s: u64, tolerance_s: u64) -> Result<(), FailureReason> {
    if ts.abs_diff(now_unix_s) <= tolerance_s {
        Ok(())
    } else {
        Err(FailureReason::Expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn ct_eq_needs_equal_non_empty_input() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"", b""));
        assert!(!ct_eq(b"abc", b""));
    }

    #[test]
    fn hex_is_strict() {
        assert_eq!(hex_exact("00ffAb", 3), Some(vec![0, 255, 0xab]));
        assert_eq!(hex_exact("00ff", 3), None);
        assert_eq!(hex_exact("0g", 1), None);
        assert_eq!(hex_exact("0", 1), None);
        assert_eq!(hex_exact("é1", 1), None);
        assert_eq!(hex_exact("", 0), Some(vec![]));
    }

    #[test]
    fn base64_lengths() {
        assert_eq!(base64_exact("AAEC", 3), Some(vec![0, 1, 2]));
        assert_eq!(base64_exact("AAE=", 2), Some(vec![0, 1]));
        assert_eq!(base64_exact("AAE", 2), Some(vec![0, 1]));
        assert_eq!(base64_exact("AAEC", 4), None);
        assert_eq!(base64_exact("AA*C", 3), None);
        assert_eq!(base64_exact(&"A".repeat(10_000), 32), None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp("1614265330"), Ok(1_614_265_330));
        for bad in [
            "",
            "-1",
            "+1",
            "1.5",
            " 1",
            "1e9",
            "99999999999999999999",
            "abc",
        ] {
            assert_eq!(timestamp(bad), Err(FailureReason::Malformed), "{bad:?}");
        }
        assert_eq!(fresh(100, 400, 300), Ok(()));
        assert_eq!(fresh(700, 400, 300), Ok(()));
        assert_eq!(fresh(99, 400, 300), Err(FailureReason::Expired));
        assert_eq!(fresh(701, 400, 300), Err(FailureReason::Expired));
        assert_eq!(fresh(u64::MAX, 0, 300), Err(FailureReason::Expired));
    }
}

//! `Content-Encoding` of a callback body.
//!
//! Signatures are computed by providers over the bytes they send, so a
//! compressed body is verified as it is, compressed. What the filter cannot
//! do is look *inside* it: masking and the empty check read JSON, and an
//! encoded body is not JSON until it is decoded. A body is *encoded* when
//! any `content-encoding` header names a coding other than `identity`;
//! a masking channel refuses it (`415`, see [`crate::core::pipeline`]),
//! since forwarding it would forward unmasked data. Decompressing in the
//! filter was rejected: it would turn a bounded body into an unbounded
//! one (a zip bomb) inside the VM's memory, for little gain.

use crate::core::headers::Headers;

/// Header listing the codings applied to the body (RFC 9110 §8.4).
pub const CONTENT_ENCODING: &str = "content-encoding";

/// True when the body is content-encoded: some `content-encoding` header
/// (every copy counts, each may list several codings) names a coding other
/// than `identity`. Empty entries (`Content-Encoding:` with no value, or
/// `gzip,,`) name nothing; anything else unknown, non-ASCII included,
/// counts as an encoding.
///
/// ```
/// use callback_guard::core::encoding::is_encoded;
/// use callback_guard::core::headers::Headers;
/// let h = |v: &str| -> Headers { [("content-encoding", v)].into_iter().collect() };
/// assert!(is_encoded(&h("gzip")));
/// assert!(is_encoded(&h("identity, br")));
/// assert!(!is_encoded(&h(" Identity ")));
/// assert!(!is_encoded(&Headers::default()));
/// ```
pub fn is_encoded(headers: &Headers) -> bool {
    headers
        .get_all(CONTENT_ENCODING)
        .flat_map(|v| v.split(','))
        .map(|coding| coding.trim_matches([' ', '\t']))
        .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn headers(values: &[&str]) -> Headers {
        values.iter().map(|v| (CONTENT_ENCODING, *v)).collect()
    }

    #[test]
    fn identity_and_absent_are_not_encoded() {
        for values in [
            &[][..],
            &["identity"],
            &["IDENTITY"],
            &[" identity ,identity"],
            &[""],
            &["  "],
            &[",,"],
            &["identity", ""],
        ] {
            assert!(!is_encoded(&headers(values)), "{values:?}");
        }
    }

    #[test]
    fn any_other_coding_is_encoded() {
        for values in [
            &["gzip"][..],
            &["GZip"],
            &["x-gzip"],
            &["br"],
            &["deflate"],
            &["zstd"],
            &["identity, gzip"],
            &["gzip, identity"],
            &["identity", "gzip"],
            &["made-up"],
            &["identit\u{fffd}"],
            &["identity;q=1"],
        ] {
            assert!(is_encoded(&headers(values)), "{values:?}");
        }
    }

    #[test]
    fn other_headers_do_not_count() {
        let h: Headers = [
            ("transfer-encoding", "chunked"),
            ("accept-encoding", "gzip"),
        ]
        .into_iter()
        .collect();
        assert!(!is_encoded(&h));
    }
}

//! Empty callbacks (SPEC `empty`): `x-callback-status: 204`, no body, or a
//! body that is only whitespace, `{}`, `[]` or `null`.

/// True when the headers alone already say the callback is empty (the
/// value of [`crate::core::names::header::STATUS`]).
pub fn empty_by_header(status_header: Option<&str>) -> bool {
    status_header.is_some_and(|v| v.trim() == "204")
}

/// True when a complete body, as sent, counts as empty. A content-encoded
/// body (see [`crate::core::encoding`]) is empty only when it has no bytes
/// at all: its bytes are not JSON, and what they decode to is not looked at
/// (a gzip of `{}` is 20-odd bytes of binary, not `{}`).
pub fn empty_body_as_sent(body: &[u8], encoded: bool) -> bool {
    if encoded {
        body.is_empty()
    } else {
        empty_body(body)
    }
}

/// True when a complete (not content-encoded) body counts as empty.
pub fn empty_body(body: &[u8]) -> bool {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" {
        return true;
    }
    // `{ }` and `[\n]` count too: only whitespace between the brackets.
    match (trimmed.first(), trimmed.last()) {
        (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']')) if trimmed.len() >= 2 => trimmed
            .get(1..trimmed.len() - 1)
            .is_some_and(|inner| inner.iter().all(u8::is_ascii_whitespace)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn empty_forms() {
        for body in [
            &b""[..],
            b"   \r\n\t",
            b"{}",
            b" [ ] ",
            b"null",
            b"\nnull\n",
            b"{\n}",
        ] {
            assert!(empty_body(body), "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn non_empty_forms() {
        for body in [
            &b"{\"a\":1}"[..],
            b"[0]",
            b"nul",
            b"nulll",
            b"\"\"",
            b"0",
            b"{",
            b"}",
            b"[}",
        ] {
            assert!(!empty_body(body), "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn status_header() {
        assert!(empty_by_header(Some("204")));
        assert!(empty_by_header(Some(" 204 ")));
        assert!(!empty_by_header(Some("200")));
        assert!(!empty_by_header(None));
    }

    #[test]
    fn an_encoded_body_is_empty_only_without_bytes() {
        assert!(empty_body_as_sent(b"", true));
        for body in [&b"{}"[..], b"  ", b"null", b"\x1f\x8b\x08\x00"] {
            assert!(!empty_body_as_sent(body, true), "{body:?}");
        }
        assert!(empty_body_as_sent(b" {} ", false));
        assert!(!empty_body_as_sent(b"{\"a\":1}", false));
    }
}

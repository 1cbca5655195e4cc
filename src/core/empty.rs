//! Empty callbacks (SPEC `empty`): `x-callback-status: 204`, no body, or a
//! body that is only whitespace, `{}`, `[]` or `null`.

/// Header a provider sets to say "nothing to deliver".
pub const STATUS_HEADER: &str = "x-callback-status";

/// True when the headers alone already say the callback is empty.
pub fn empty_by_header(status_header: Option<&str>) -> bool {
    status_header.is_some_and(|v| v.trim() == "204")
}

/// True when a complete body counts as empty.
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
}

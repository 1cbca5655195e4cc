//! What a masked value becomes (`mask.strategy`).
//!
//! Every strategy writes the *content* of a JSON string (escaped, without the
//! quotes); the rewriter adds the quotes when it replaces a whole value and
//! splices the content into the original string for a detector finding.
//!
//! - `redact`: the configured `replacement` (default `***`).
//! - `partial`: every character but the last 4 becomes `*`; values shorter
//!   than [`PARTIAL_MIN_CHARS`] are masked entirely, so at least half of a
//!   value is always hidden. Characters are Unicode scalar values. Numbers
//!   are masked as written (`13812345678` → `*******5678`); booleans and
//!   `null` are short, hence fully starred; objects and arrays become `****`
//!   (their text is not worth keeping a tail of, and its length would leak).
//! - `hash`: `sha256:` + the first 16 hex digits of SHA-256 of the decoded
//!   string, or of the raw JSON text of a non-string value.

use sha2::{Digest, Sha256};

/// Values shorter than this are fully masked by `partial`.
pub const PARTIAL_MIN_CHARS: usize = 8;
/// Characters `partial` keeps at the end.
pub const PARTIAL_KEEP_CHARS: usize = 4;
/// The `redact` default.
pub const DEFAULT_REPLACEMENT: &str = "***";

/// A compiled strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// The replacement, already JSON-escaped.
    Redact(Box<str>),
    Partial,
    Hash,
}

/// The kind of a non-string value being replaced whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Raw {
    /// A number or a literal (`true`, `false`, `null`).
    Scalar,
    /// An object or an array.
    Container,
}

impl Strategy {
    pub(crate) const NAMES: [&'static str; 3] = ["redact", "partial", "hash"];

    pub(crate) fn parse(name: &str, replacement: Option<&str>) -> Option<Self> {
        match name {
            "redact" => {
                let mut escaped = Vec::new();
                escape_into(replacement.unwrap_or(DEFAULT_REPLACEMENT), &mut escaped);
                // Escaping ASCII bytes of valid UTF-8 keeps it valid UTF-8.
                String::from_utf8(escaped)
                    .ok()
                    .map(|s| Self::Redact(s.into()))
            }
            "partial" => Some(Self::Partial),
            "hash" => Some(Self::Hash),
            _ => None,
        }
    }

    /// Writes the escaped replacement for a (decoded) string value.
    pub(crate) fn write_str(&self, value: &str, out: &mut Vec<u8>) {
        match self {
            Self::Redact(r) => out.extend_from_slice(r.as_bytes()),
            Self::Partial => partial(value, out),
            Self::Hash => hash(value.as_bytes(), out),
        }
    }

    /// Writes the escaped replacement for a non-string value, given its raw
    /// JSON text.
    pub(crate) fn write_raw(&self, raw: &str, kind: Raw, out: &mut Vec<u8>) {
        match (self, kind) {
            (Self::Partial, Raw::Container) => out.extend_from_slice(b"****"),
            (Self::Partial | Self::Redact(_), _) => self.write_str(raw, out),
            (Self::Hash, _) => hash(raw.as_bytes(), out),
        }
    }
}

fn partial(value: &str, out: &mut Vec<u8>) {
    let chars = value.chars().count();
    if chars < PARTIAL_MIN_CHARS {
        out.resize(out.len() + chars, b'*');
        return;
    }
    let masked = chars - PARTIAL_KEEP_CHARS;
    out.resize(out.len() + masked, b'*');
    let tail_at = value
        .char_indices()
        .nth(masked)
        .map_or(value.len(), |(i, _)| i);
    escape_into(value.get(tail_at..).unwrap_or(""), out);
}

fn hash(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"sha256:");
    for byte in Sha256::digest(bytes).iter().take(8) {
        for nibble in [byte >> 4, byte & 0x0f] {
            out.push(HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'));
        }
    }
}

/// Appends `s` as the content of a JSON string: `"`, `\` and control
/// characters escaped, everything else (including non-ASCII) as is.
pub(crate) fn escape_into(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut from = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let short = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0..=0x1f => 0,
            _ => continue,
        };
        out.extend_from_slice(bytes.get(from..i).unwrap_or(&[]));
        if short != 0 {
            out.extend_from_slice(&[b'\\', short]);
        } else {
            let hex = |n: u8| HEX.get(usize::from(n)).copied().unwrap_or(b'0');
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(c >> 4), hex(c & 0x0f)]);
        }
        from = i + 1;
    }
    out.extend_from_slice(bytes.get(from..).unwrap_or(&[]));
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn s(strategy: &Strategy, value: &str) -> String {
        let mut out = Vec::new();
        strategy.write_str(value, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn raw(strategy: &Strategy, value: &str, kind: Raw) -> String {
        let mut out = Vec::new();
        strategy.write_raw(value, kind, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn redact() {
        let default = Strategy::parse("redact", None).unwrap();
        assert_eq!(s(&default, "secret"), "***");
        assert_eq!(raw(&default, "{\"a\":1}", Raw::Container), "***");
        let custom = Strategy::parse("redact", Some("<\"masked\"\n>")).unwrap();
        assert_eq!(s(&custom, "x"), r#"<\"masked\"\n>"#);
    }

    #[test]
    fn partial_keeps_last_four() {
        let p = Strategy::Partial;
        let cases = [
            ("13812345678", "*******5678"),
            ("4111 1111 1111 1111", "***************1111"),
            ("12345678", "****5678"),
            ("1234567", "*******"),
            ("abc", "***"),
            ("", ""),
            ("用户名字是张三丰啊", "*****张三丰啊"),
            ("abcd\"e\\f\n", "*****e\\\\f\\n"),
        ];
        for (value, want) in cases {
            assert_eq!(s(&p, value), want, "{value:?}");
        }
        assert_eq!(raw(&p, "13812345678", Raw::Scalar), "*******5678");
        assert_eq!(raw(&p, "true", Raw::Scalar), "****");
        assert_eq!(raw(&p, "[1,2,3,4,5,6,7,8]", Raw::Container), "****");
    }

    #[test]
    fn hash_is_sha256_prefix() {
        // sha256("abc") = ba7816bf8f01cfea414140de5dae2223...
        assert_eq!(s(&Strategy::Hash, "abc"), "sha256:ba7816bf8f01cfea");
        assert_eq!(
            raw(&Strategy::Hash, "abc", Raw::Scalar),
            "sha256:ba7816bf8f01cfea"
        );
        // sha256("") = e3b0c44298fc1c14...
        assert_eq!(s(&Strategy::Hash, ""), "sha256:e3b0c44298fc1c14");
    }

    #[test]
    fn escapes() {
        let mut out = Vec::new();
        escape_into("a\"b\\c\u{1}\u{1f}\u{8}\u{c}\r\t/é😀", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"a\"b\\c\u0001\u001f\b\f\r\t/é😀"#
        );
    }

    #[test]
    fn unknown_name() {
        assert!(Strategy::parse("shred", None).is_none());
    }
}

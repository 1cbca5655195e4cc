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
//! - `hash`: `hmac-sha256:` + the first 32 hex digits (128 bits) of
//!   HMAC-SHA256, keyed by `hash_key`, of the decoded string, or of the raw
//!   JSON text of a non-string value. Equal values still hash equal (the
//!   service can join on them), but without the key nobody can recompute a
//!   hash: an unkeyed SHA-256 of a phone number was reversed by hashing
//!   every number of the plan, in well under a second.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// What `hash` writes before the hex digits.
pub const HASH_PREFIX: &str = "hmac-sha256:";
/// Hex digits of the MAC kept by `hash` (128 bits).
pub const HASH_HEX_DIGITS: usize = 32;
/// Shortest `hash_key` accepted, in bytes.
pub const MIN_HASH_KEY_BYTES: usize = 16;

/// The `hash` key, ready to use. Its `Debug` never shows the key.
#[derive(Clone)]
pub(crate) struct HashKey {
    key: Box<[u8]>,
    mac: Hmac<Sha256>,
}

impl HashKey {
    /// None when the key is shorter than [`MIN_HASH_KEY_BYTES`].
    pub(crate) fn new(key: &[u8]) -> Option<Self> {
        if key.len() < MIN_HASH_KEY_BYTES {
            return None;
        }
        let mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
        Some(Self {
            key: key.into(),
            mac,
        })
    }
}

impl PartialEq for HashKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for HashKey {}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

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
    /// HMAC-SHA256 under the channel's `hash_key`.
    Hash(Box<HashKey>),
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
    /// The strategy `name`; `hash` needs `hash_key` (None without one).
    pub(crate) fn parse(
        name: &str,
        replacement: Option<&str>,
        hash_key: Option<HashKey>,
    ) -> Option<Self> {
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
            "hash" => hash_key.map(|k| Self::Hash(Box::new(k))),
            _ => None,
        }
    }

    /// Writes the escaped replacement for a (decoded) string value.
    pub(crate) fn write_str(&self, value: &str, out: &mut Vec<u8>) {
        match self {
            Self::Redact(r) => out.extend_from_slice(r.as_bytes()),
            Self::Partial => partial(value, out),
            Self::Hash(key) => hash(key, value.as_bytes(), out),
        }
    }

    /// Writes the escaped replacement for a non-string value, given its raw
    /// JSON text.
    pub(crate) fn write_raw(&self, raw: &str, kind: Raw, out: &mut Vec<u8>) {
        match (self, kind) {
            (Self::Partial, Raw::Container) => out.extend_from_slice(b"****"),
            (Self::Partial | Self::Redact(_), _) => self.write_str(raw, out),
            (Self::Hash(key), _) => hash(key, raw.as_bytes(), out),
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

fn hash(key: &HashKey, bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(HASH_PREFIX.as_bytes());
    let mut mac = key.mac.clone();
    mac.update(bytes);
    for byte in mac.finalize().into_bytes().iter().take(HASH_HEX_DIGITS / 2) {
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
        let default = Strategy::parse("redact", None, None).unwrap();
        assert_eq!(s(&default, "secret"), "***");
        assert_eq!(raw(&default, "{\"a\":1}", Raw::Container), "***");
        let custom = Strategy::parse("redact", Some("<\"masked\"\n>"), None).unwrap();
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

    const KEY: &[u8] = b"0123456789abcdef-test-key";

    fn hasher(key: &[u8]) -> Strategy {
        Strategy::parse("hash", None, HashKey::new(key)).unwrap()
    }

    #[test]
    fn hash_is_keyed_hmac_sha256() {
        // HMAC-SHA256(KEY, "abc"), first 32 hex, from Python's hmac module.
        let h = hasher(KEY);
        assert_eq!(s(&h, "abc"), "hmac-sha256:34a0a7cb6c0fe06f19d1bca5f9ec105b");
        assert_eq!(raw(&h, "abc", Raw::Scalar), s(&h, "abc"));
        let out = s(&h, "");
        assert_eq!(out.len(), HASH_PREFIX.len() + HASH_HEX_DIGITS);
        // Another key, another hash: nobody without the key can recompute it.
        assert_ne!(s(&hasher(b"another-key-of-16+bytes"), "abc"), s(&h, "abc"));
    }

    #[test]
    fn hash_needs_a_long_enough_key() {
        assert!(Strategy::parse("hash", None, None).is_none());
        assert!(HashKey::new(&KEY[..MIN_HASH_KEY_BYTES - 1]).is_none());
        assert!(HashKey::new(&KEY[..MIN_HASH_KEY_BYTES]).is_some());
        let shown = format!("{:?}", hasher(KEY));
        assert!(!shown.contains("0123456789"), "{shown}");
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
        assert!(Strategy::parse("shred", None, None).is_none());
    }
}

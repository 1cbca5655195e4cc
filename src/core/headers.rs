//! A request's headers as one immutable snapshot: the host adapter fetches
//! the map once, the core looks names up without further host calls.
//!
//! The host hands over raw bytes, and Envoy accepts bytes 0x80-0xFF in
//! header values. They are kept as data (converted lossily, so an invalid
//! byte becomes U+FFFD and the value is no longer ASCII); headers that
//! decide security are read through [`Headers::single_token`], which
//! refuses anything but one visible-ASCII value.

use crate::core::abi_map;
use std::borrow::Cow;

/// Header pairs with lower-case names (HTTP/2 and Envoy already lower-case
/// them; we normalise anyway so lookups never miss on case).
///
/// Every name and value lives in one string, one after the other: reading
/// the host's map costs two allocations, not two per header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    text: String,
    spans: Vec<Span>,
}

/// One pair in [`Headers::text`]: the name is `start..name_end`, the value
/// `name_end..value_end`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: usize,
    name_end: usize,
    value_end: usize,
}

impl Headers {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        let mut headers = Self::default();
        for (k, v) in &pairs {
            headers.push(k, v);
        }
        headers
    }

    /// From the host's raw pairs; names and values that are not UTF-8 are
    /// converted lossily (never an error: they are data).
    pub fn from_bytes(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        let mut headers = Self::default();
        for (k, v) in &pairs {
            headers.push(&text(k), &text(v));
        }
        headers
    }

    /// From the host's encoded map (see [`crate::core::abi_map`]), as
    /// [`Headers::from_bytes`] of its pairs, without a copy per header.
    pub fn from_map(bytes: &[u8]) -> Self {
        let mut headers = Self {
            text: String::with_capacity(bytes.len()),
            spans: Vec::with_capacity(abi_map::pair_count(bytes)),
        };
        // Names and values lie one after the other, separated by NULs (valid
        // UTF-8 themselves): one check of them all usually serves every
        // pair; a piece the check does not cover is decoded on its own.
        let valid = abi_map::strings_start(bytes)
            .and_then(|start| Some((start, std::str::from_utf8(bytes.get(start..)?).ok()?)));
        let piece = |range: std::ops::Range<usize>| match valid {
            Some((start, all)) => all
                .get(range.start.wrapping_sub(start)..range.end.wrapping_sub(start))
                .map_or_else(|| text(bytes.get(range).unwrap_or_default()), Cow::Borrowed),
            None => text(bytes.get(range).unwrap_or_default()),
        };
        abi_map::for_each_span(bytes, |k, v| headers.push(&piece(k), &piece(v)));
        headers
    }

    fn push(&mut self, name: &str, value: &str) {
        let start = self.text.len();
        self.text.push_str(name);
        if let Some(name) = self.text.get_mut(start..) {
            name.make_ascii_lowercase();
        }
        let name_end = self.text.len();
        self.text.push_str(value);
        self.spans.push(Span {
            start,
            name_end,
            value_end: self.text.len(),
        });
    }

    /// Every (name, value), in order.
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.spans.iter().map(|s| {
            let name = self.text.get(s.start..s.name_end).unwrap_or_default();
            (name, self.value(s))
        })
    }

    fn value(&self, s: &Span) -> &str {
        self.text.get(s.name_end..s.value_end).unwrap_or_default()
    }

    /// The pairs named `name`: lengths first, then bytes, so a miss costs
    /// a comparison of two numbers.
    fn find<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Span> + 'a {
        let text = self.text.as_bytes();
        self.spans.iter().filter(move |s| {
            s.name_end.wrapping_sub(s.start) == name.len()
                && text.get(s.start..s.name_end) == Some(name.as_bytes())
        })
    }

    /// The one value of a header that a security decision reads (signature,
    /// timestamp, delivery id), trimmed: `Ok(None)` when absent or blank,
    /// `Err` when it occurs more than once or holds anything but visible
    /// ASCII (a second copy could reach the service next to the verified
    /// one; a non-ASCII byte is never part of a real signature or id).
    pub fn single_token(&self, name: &str) -> Result<Option<&str>, HeaderError> {
        let mut values = self.find(name).map(|s| self.value(s));
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(HeaderError::Repeated);
        }
        let value = first.trim_matches([' ', '\t']);
        if !value.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(HeaderError::NotAscii);
        }
        Ok((!value.is_empty()).then_some(value))
    }

    /// First value of `name` (give it in lower case).
    pub fn get(&self, name: &str) -> Option<&str> {
        let s = self.find(name).next()?;
        Some(self.value(s))
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.find(name).map(|s| self.value(s))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs()
    }
}

/// Bytes as text, lossily (`from_utf8` first: the usual valid header is
/// checked much faster than by the lossy decoder).
fn text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Why [`Headers::single_token`] refused a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// The header occurs more than once.
    Repeated,
    /// The value holds a byte outside visible ASCII and space.
    NotAscii,
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Headers {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut headers = Self::default();
        for (k, v) in iter {
            headers.push(k.as_ref(), v.as_ref());
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn lookups_are_case_insensitive_on_names() {
        let h: Headers = [("Webhook-Id", "a"), ("x", "1"), ("X", "2")]
            .into_iter()
            .collect();
        assert_eq!(h.get("webhook-id"), Some("a"));
        assert_eq!(h.get_all("x").collect::<Vec<_>>(), ["1", "2"]);
        assert!(!h.contains("missing"));
    }

    #[test]
    fn from_the_host_map_as_from_its_pairs() {
        let pairs = vec![
            (b":path".to_vec(), b"/cb".to_vec()),
            (b"X-Note".to_vec(), b"caf\xe9".to_vec()),
            (b"x".to_vec(), b"".to_vec()),
            (b"x".to_vec(), b"2".to_vec()),
        ];
        let map = crate::core::abi_map::serialize_map(&pairs);
        let h = Headers::from_map(&map);
        assert_eq!(h, Headers::from_bytes(pairs));
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [
                (":path", "/cb"),
                ("x-note", "caf\u{fffd}"),
                ("x", ""),
                ("x", "2")
            ]
        );
        assert_eq!(h.get_all("x").collect::<Vec<_>>(), ["", "2"]);
        assert_eq!(Headers::from_map(&[]), Headers::default());
        // Invalid UTF-8 in one value: that value alone is decoded lossily.
        let pairs = vec![
            (b"a".to_vec(), b"\xff\xfe".to_vec()),
            (b"b".to_vec(), "caf\u{e9}".as_bytes().to_vec()),
        ];
        let map = crate::core::abi_map::serialize_map(&pairs);
        assert_eq!(Headers::from_map(&map), Headers::from_bytes(pairs));
        assert_eq!(Headers::from_map(&map).get("b"), Some("caf\u{e9}"));
    }

    #[test]
    fn raw_bytes_are_data() {
        let h = Headers::from_bytes(vec![
            (b"X-Note".to_vec(), b"caf\xe9".to_vec()),
            (b"webhook-id".to_vec(), b"msg_\xff".to_vec()),
        ]);
        assert_eq!(h.get("x-note"), Some("caf\u{fffd}"));
        assert_eq!(h.single_token("webhook-id"), Err(HeaderError::NotAscii));
    }

    #[test]
    fn single_token_refuses_repeats_and_controls() {
        let h: Headers = [
            ("a", " v1,abc "),
            ("b", "x"),
            ("b", "y"),
            ("c", "  "),
            ("d", "a\u{1}b"),
            ("e", "caf\u{e9}"),
        ]
        .into_iter()
        .collect();
        assert_eq!(h.single_token("a"), Ok(Some("v1,abc")));
        assert_eq!(h.single_token("b"), Err(HeaderError::Repeated));
        assert_eq!(h.single_token("c"), Ok(None));
        assert_eq!(h.single_token("d"), Err(HeaderError::NotAscii));
        assert_eq!(h.single_token("e"), Err(HeaderError::NotAscii));
        assert_eq!(h.single_token("missing"), Ok(None));
    }
}

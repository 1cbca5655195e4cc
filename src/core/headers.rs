//! A request's headers as one immutable snapshot: the host adapter fetches
//! the map once, the core looks names up without further host calls.
//!
//! The host hands over raw bytes, and Envoy accepts bytes 0x80-0xFF in
//! header values. They are kept as data (converted lossily, so an invalid
//! byte becomes U+FFFD and the value is no longer ASCII); headers that
//! decide security are read through [`Headers::single_token`], which
//! refuses anything but one visible-ASCII value.

/// Header pairs with lower-case names (HTTP/2 and Envoy already lower-case
/// them; we normalise anyway so lookups never miss on case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pairs: Vec<(String, String)>,
}

impl Headers {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        let mut pairs = pairs;
        for (k, _) in &mut pairs {
            k.make_ascii_lowercase();
        }
        Self { pairs }
    }

    /// From the host's raw pairs; names and values that are not UTF-8 are
    /// converted lossily (never an error: they are data).
    pub fn from_bytes(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        Self::new(
            pairs
                .into_iter()
                .map(|(k, v)| (lossy(k), lossy(v)))
                .collect(),
        )
    }

    /// The one value of a header that a security decision reads (signature,
    /// timestamp, delivery id), trimmed: `Ok(None)` when absent or blank,
    /// `Err` when it occurs more than once or holds anything but visible
    /// ASCII (a second copy could reach the service next to the verified
    /// one; a non-ASCII byte is never part of a real signature or id).
    pub fn single_token(&self, name: &str) -> Result<Option<&str>, HeaderError> {
        let mut values = self
            .pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
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
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
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

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Self::new(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
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

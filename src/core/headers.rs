//! A request's headers as one immutable snapshot: the host adapter fetches
//! the map once, the core looks names up without further host calls.

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
}

//! Field selectors (`mask.fields`).
//!
//! Two forms, told apart by their spelling:
//!
//! - a *plain key* (`phone`: no `.`, no `[`) matches a member with that key
//!   at any depth, including the top level;
//! - a *path* (`customer.email`, `items[*].card_number`, `[*].phone`) is
//!   anchored at the root: dotted keys, `[*]` for every element of an array.
//!
//! Keys match case-insensitively by default (`phone` also selects `Phone`
//! and `PHONE`; Unicode lower case, so `É` matches `é`): a provider that
//! changes its key spelling must not slip PII past the mask. `case_sensitive`
//! turns that off. Selectors are stored lower-cased, and each key of the
//! body is lower-cased while it is compared, without allocating.
//!
//! Paths are compiled into a trie. The concrete path of a JSON value is
//! deterministic (keys go to key children, array elements to the `[*]`
//! child), so while the rewriter walks the document it only carries one
//! `Option<NodeId>` per open container — no backtracking, no re-scans.

/// Index of a trie node; the root is 0.
pub(crate) type NodeId = u32;

const ROOT: NodeId = 0;

#[derive(Debug, Default)]
struct Node {
    /// Key children; few per node in practice, so a linear scan with a
    /// length check beats hashing.
    keys: Vec<(Box<str>, NodeId)>,
    /// The `[*]` child.
    any_index: Option<NodeId>,
    /// A selector ends here: the value at this position is masked whole.
    terminal: bool,
}

/// Where a value sits relative to the selectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hit {
    /// A selector ends here: replace the whole value.
    Mask,
    /// Not selected; descendants may be, via this trie node (or, with
    /// `None`, only through plain keys).
    Descend(Option<NodeId>),
}

/// The compiled `fields`.
#[derive(Debug, Default)]
pub(crate) struct Selectors {
    /// Plain keys, matched at any depth.
    any_depth: Vec<Box<str>>,
    /// Path trie; empty when there are no path selectors.
    nodes: Vec<Node>,
    /// Keys compare exactly; otherwise every stored key is lower case and
    /// body keys are lower-cased to compare.
    case_sensitive: bool,
}

impl Selectors {
    /// Parses and validates every selector; an error is the index of the
    /// selector in `fields` and the reason. A
    /// selector written twice is an error; with case-insensitive keys two
    /// spellings of one selector (`phone`, `Phone`) are accepted as one, so
    /// a configuration that listed both before keeps loading.
    pub(crate) fn new(fields: &[String], case_sensitive: bool) -> Result<Self, (usize, String)> {
        let mut sel = Selectors {
            case_sensitive,
            ..Selectors::default()
        };
        let mut seen = std::collections::HashSet::new();
        for (i, field) in fields.iter().enumerate() {
            if !seen.insert(field.as_str()) {
                return Err((i, format!("duplicate field selector {field:?}")));
            }
            // Lower case maps no character to `.`, `[`, `]` or `*`, so the
            // folded selector parses to the same steps.
            let folded = if case_sensitive {
                field.clone()
            } else {
                field.to_lowercase()
            };
            let steps = parse(&folded).map_err(|reason| (i, reason))?;
            match steps {
                Parsed::Key(key) => sel.add_key(key),
                Parsed::Path(steps) => sel.add_path(&steps),
            };
        }
        Ok(sel)
    }

    /// Whether the stored selector key `stored` (lower case when keys are
    /// case-insensitive) names the body key `key`; `key_ascii` is
    /// `key.is_ascii()`, computed once per key by the caller.
    fn key_eq(&self, stored: &str, key: &str, key_ascii: bool) -> bool {
        if self.case_sensitive {
            stored == key
        } else if key_ascii {
            // Lengths first; a non-ASCII byte of `stored` never equals an
            // ASCII one, as in the char-wise comparison below.
            stored.eq_ignore_ascii_case(key)
        } else {
            stored.chars().eq(key.chars().flat_map(char::to_lowercase))
        }
    }

    /// True when no selector is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.any_depth.is_empty() && self.nodes.is_empty()
    }

    /// The state of the document root.
    pub(crate) fn root(&self) -> Hit {
        match self.nodes.first() {
            // A path selector never selects the root itself (no empty paths).
            Some(_) => Hit::Descend(Some(ROOT)),
            None => Hit::Descend(None),
        }
    }

    /// True when a member key in an object at trie state `node` could
    /// select anything, i.e. the key is worth decoding and comparing.
    pub(crate) fn keys_matter(&self, node: Option<NodeId>) -> bool {
        !self.any_depth.is_empty()
            || node
                .and_then(|n| self.node(n))
                .is_some_and(|n| !n.keys.is_empty())
    }

    /// The member `key` of an object whose own trie state is `node`.
    pub(crate) fn member(&self, node: Option<NodeId>, key: &str) -> Hit {
        let ascii = !self.case_sensitive && key.is_ascii();
        if self.any_depth.iter().any(|k| self.key_eq(k, key, ascii)) {
            return Hit::Mask;
        }
        let child = node.and_then(|n| self.node(n)).and_then(|n| {
            n.keys
                .iter()
                .find(|(k, _)| self.key_eq(k, key, ascii))
                .map(|(_, c)| *c)
        });
        self.enter(child)
    }

    /// An element of an array whose own trie state is `node`.
    pub(crate) fn element(&self, node: Option<NodeId>) -> Hit {
        self.enter(node.and_then(|n| self.node(n)).and_then(|n| n.any_index))
    }

    fn enter(&self, child: Option<NodeId>) -> Hit {
        match child {
            Some(c) if self.node(c).is_some_and(|n| n.terminal) => Hit::Mask,
            other => Hit::Descend(other),
        }
    }

    fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id as usize)
    }

    fn add_key(&mut self, key: &str) -> bool {
        if self.any_depth.iter().any(|k| **k == *key) {
            return false;
        }
        self.any_depth.push(key.into());
        true
    }

    fn add_path(&mut self, steps: &[Step<'_>]) -> bool {
        if self.nodes.is_empty() {
            self.nodes.push(Node::default());
        }
        let mut at = ROOT;
        for step in steps {
            at = self.child_or_insert(at, step);
        }
        match self.nodes.get_mut(at as usize) {
            Some(n) if !n.terminal => {
                n.terminal = true;
                true
            }
            _ => false,
        }
    }

    fn child_or_insert(&mut self, at: NodeId, step: &Step<'_>) -> NodeId {
        let next = NodeId::try_from(self.nodes.len()).unwrap_or(NodeId::MAX);
        let Some(node) = self.nodes.get_mut(at as usize) else {
            return at;
        };
        let existing = match step {
            Step::Key(k) => node
                .keys
                .iter()
                .find(|(name, _)| **name == **k)
                .map(|(_, c)| *c),
            Step::AnyIndex => node.any_index,
        };
        if let Some(c) = existing {
            return c;
        }
        match step {
            Step::Key(k) => node.keys.push(((*k).into(), next)),
            Step::AnyIndex => node.any_index = Some(next),
        }
        self.nodes.push(Node::default());
        next
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Step<'a> {
    Key(&'a str),
    AnyIndex,
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed<'a> {
    Key(&'a str),
    Path(Vec<Step<'a>>),
}

/// Parses one selector. Grammar:
///
/// ```text
/// selector := key                       (no '.', '[' or ']': any depth)
///           | segment ('.' segment)*    (anchored at the root)
/// segment  := name ('[*]')* | ('[*]')+  (a bare '[*]…' only first)
/// ```
fn parse(field: &str) -> Result<Parsed<'_>, String> {
    if field.is_empty() {
        return Err("empty field selector".into());
    }
    if !field.contains(['.', '[', ']']) {
        return Ok(Parsed::Key(field));
    }
    let mut steps = Vec::new();
    for (i, segment) in field.split('.').enumerate() {
        let (name, mut rest) = match segment.find(['[', ']']) {
            Some(at) => (
                segment.get(..at).unwrap_or(""),
                segment.get(at..).unwrap_or(""),
            ),
            None => (segment, ""),
        };
        if name.is_empty() && (i > 0 || rest.is_empty()) {
            return Err(format!("empty segment in field selector {field:?}"));
        }
        if !name.is_empty() {
            steps.push(Step::Key(name));
        }
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("[*]") {
                steps.push(Step::AnyIndex);
                rest = after;
            } else if rest.starts_with('[') && rest.contains(']') {
                return Err(format!(
                    "only [*] is supported inside brackets, in field selector {field:?}"
                ));
            } else {
                return Err(format!("unbalanced brackets in field selector {field:?}"));
            }
        }
    }
    Ok(Parsed::Path(steps))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn compile(fields: &[&str]) -> Result<Selectors, (usize, String)> {
        let fields: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
        Selectors::new(&fields, true)
    }

    fn insensitive(fields: &[&str]) -> Selectors {
        let fields: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
        Selectors::new(&fields, false).unwrap()
    }

    #[test]
    fn keys_match_case_insensitively_by_default() {
        let s = insensitive(&["phone", "Customer.EMAIL", "Straße", "ÉTAT"]);
        let Hit::Descend(root) = s.root() else {
            panic!()
        };
        for key in ["phone", "Phone", "PHONE", "pHoNe"] {
            assert_eq!(s.member(None, key), Hit::Mask, "{key}");
        }
        for key in ["straße", "STRAßE", "état", "État", "ÉTAT"] {
            assert_eq!(s.member(None, key), Hit::Mask, "{key}");
        }
        for key in ["phone2", "phon", "telephone", "ph one", "strasse"] {
            assert_eq!(s.member(None, key), Hit::Descend(None), "{key}");
        }
        let Hit::Descend(customer) = s.member(root, "CUSTOMER") else {
            panic!()
        };
        assert_eq!(s.member(customer, "Email"), Hit::Mask);
        // Case variants are one selector, not a duplicate error...
        let s = insensitive(&["phone", "PHONE", "a.b", "A.B"]);
        assert_eq!(s.member(None, "Phone"), Hit::Mask);
        // ...but the same string twice still is.
        let fields = vec!["Phone".to_string(), "Phone".to_string()];
        assert!(Selectors::new(&fields, false).is_err());
    }

    #[test]
    fn case_sensitive_keys_match_exactly() {
        let s = compile(&["phone", "customer.email"]).unwrap();
        let Hit::Descend(root) = s.root() else {
            panic!()
        };
        assert_eq!(s.member(None, "phone"), Hit::Mask);
        assert_eq!(s.member(None, "Phone"), Hit::Descend(None));
        assert_eq!(s.member(root, "Customer"), Hit::Descend(None));
        // Different spellings are different selectors then.
        assert!(compile(&["phone", "Phone"]).is_ok());
    }

    #[test]
    fn parses_selectors() {
        use Step::*;
        let cases: &[(&str, Parsed<'_>)] = &[
            ("phone", Parsed::Key("phone")),
            ("first name", Parsed::Key("first name")),
            (
                "customer.email",
                Parsed::Path(vec![Key("customer"), Key("email")]),
            ),
            (
                "items[*].card_number",
                Parsed::Path(vec![Key("items"), AnyIndex, Key("card_number")]),
            ),
            ("[*].phone", Parsed::Path(vec![AnyIndex, Key("phone")])),
            ("m[*][*]", Parsed::Path(vec![Key("m"), AnyIndex, AnyIndex])),
            ("[*]", Parsed::Path(vec![AnyIndex])),
        ];
        for (field, want) in cases {
            assert_eq!(parse(field).as_ref(), Ok(want), "{field}");
        }
    }

    #[test]
    fn rejects_bad_selectors() {
        let cases = [
            ("", "empty field selector"),
            ("a..b", "empty segment"),
            (".a", "empty segment"),
            ("a.", "empty segment"),
            ("a.[*]", "empty segment"),
            ("a[0]", "only [*]"),
            ("a[x].b", "only [*]"),
            ("a[*", "unbalanced"),
            ("a]", "unbalanced"),
            ("a[*]b", "unbalanced"),
            ("a[*]]", "unbalanced"),
        ];
        for (field, want) in cases {
            let err = compile(&["ok", field]).unwrap_err();
            assert_eq!(err.0, 1, "{field}");
            assert!(err.1.contains(want), "{field}: {}", err.1);
        }
    }

    #[test]
    fn rejects_duplicates() {
        for fields in [&["phone", "phone"][..], &["a.b", "a.b"], &["a[*]", "a[*]"]] {
            let err = compile(fields).unwrap_err();
            assert_eq!(err.0, 1);
            assert!(err.1.contains("duplicate"), "{}", err.1);
        }
    }

    #[test]
    fn walks_the_trie() {
        let s = compile(&[
            "phone",
            "customer.email",
            "items[*].card_number",
            "a.b",
            "a.b.c",
        ])
        .unwrap();
        let Hit::Descend(root) = s.root() else {
            panic!()
        };
        assert!(root.is_some());
        assert_eq!(s.member(None, "phone"), Hit::Mask);
        assert_eq!(s.member(root, "phone"), Hit::Mask);
        assert_eq!(s.member(root, "email"), Hit::Descend(None));
        let Hit::Descend(customer) = s.member(root, "customer") else {
            panic!()
        };
        assert_eq!(s.member(customer, "email"), Hit::Mask);
        assert_eq!(s.member(customer, "customer"), Hit::Descend(None));
        let Hit::Descend(items) = s.member(root, "items") else {
            panic!()
        };
        assert_eq!(s.member(items, "card_number"), Hit::Descend(None));
        let Hit::Descend(item) = s.element(items) else {
            panic!()
        };
        assert!(item.is_some());
        assert_eq!(s.member(item, "card_number"), Hit::Mask);
        assert_eq!(s.element(item), Hit::Descend(None));
        // A terminal node masks whole even when longer paths go through it.
        let Hit::Descend(a) = s.member(root, "a") else {
            panic!()
        };
        assert_eq!(s.member(a, "b"), Hit::Mask);
    }

    #[test]
    fn no_paths_means_no_trie() {
        let s = compile(&["phone"]).unwrap();
        assert_eq!(s.root(), Hit::Descend(None));
        assert!(s.keys_matter(None));
        let s = compile(&[]).unwrap();
        assert!(s.is_empty());
        assert!(!s.keys_matter(None));
    }
}

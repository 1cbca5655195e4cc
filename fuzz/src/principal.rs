//! Target `principal`: SPIFFE principal patterns
//! (`core::admission::principal::Principal`).
//!
//! Properties, against a reference glob matcher written here (dynamic
//! programming over one segment): when `parse` accepts a pattern,
//! `matches(identity)` is true exactly when, after dropping a leading
//! `spiffe://` from both, the pattern is `*` and the identity is not empty,
//! or both have the same number of `/`-separated segments, no identity
//! segment is empty, and each pattern segment matches its identity segment
//! with `*` standing for any run of characters.

use super::util::{fields, text};
use callback_guard::core::admission::principal::Principal;

const SCHEME: &str = "spiffe://";

pub fn check(data: &[u8]) {
    let [pattern, identity] = fields::<2>(data);
    let (pattern, identity) = (text(pattern), text(identity));
    let Ok(compiled) = Principal::parse(&pattern) else {
        return;
    };
    let got = compiled.matches(&identity);
    let want = reference(&pattern, &identity);
    assert_eq!(got, want, "pattern {pattern:?} identity {identity:?}");
}

fn reference(pattern: &str, identity: &str) -> bool {
    if pattern == "*" {
        return !identity.is_empty();
    }
    let p = pattern.strip_prefix(SCHEME).unwrap_or(pattern);
    let id = identity.strip_prefix(SCHEME).unwrap_or(identity);
    let ps: Vec<&str> = p.split('/').collect();
    let is: Vec<&str> = id.split('/').collect();
    ps.len() == is.len()
        && ps
            .iter()
            .zip(&is)
            .all(|(p, i)| !i.is_empty() && glob(p.as_bytes(), i.as_bytes()))
}

/// `*` matches any run of bytes; everything else itself.
fn glob(p: &[u8], s: &[u8]) -> bool {
    // can[j]: p[..i] matches s[..j].
    let mut can = vec![false; s.len() + 1];
    can[0] = true;
    for &pc in p {
        let mut next = vec![false; s.len() + 1];
        if pc == b'*' {
            let mut any = false;
            for j in 0..=s.len() {
                any |= can[j];
                next[j] = any;
            }
        } else {
            for j in 0..s.len() {
                next[j + 1] = can[j] && s[j] == pc;
            }
        }
        can = next;
    }
    can[s.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_glob() {
        assert!(glob(b"webhook-*", b"webhook-a"));
        assert!(glob(b"*-x-*", b"a-x-b"));
        assert!(!glob(b"a*b*c", b"acb"));
        assert!(reference("spiffe://td/ns/*/sa/a*", "td/ns/x/sa/ab"));
        assert!(!reference("td/ns/*", "td/ns/"));
        assert!(!reference("td/*", "td/a/b"));
    }
}

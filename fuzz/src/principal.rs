//! Target `principal`: caller identities
//! (`core::admission::principal::spiffe_id`) and SPIFFE principal patterns
//! (`core::admission::principal::Principal`).
//!
//! Properties, against references written here (the SPIFFE ID grammar, and
//! a glob matcher by dynamic programming over one segment):
//! - `spiffe_id` accepts exactly the well-formed SPIFFE IDs: `spiffe://`,
//!   a trust domain of 1..=255 bytes of `[a-z0-9._-]`, then one or more
//!   `/` segments, each non-empty, not `.` or `..`, of `[A-Za-z0-9._-]`;
//!   at most 2048 bytes; and returns its input unchanged;
//! - `Principal::parse` accepts exactly `*`, or (after an optional
//!   `spiffe://`, the Istio `source.principal` form having none) at least
//!   two `/` segments, each non-empty, not `.` or `..`, without `**`, of
//!   `[a-z0-9._*-]` (trust domain) or `[A-Za-z0-9._*-]` (path);
//! - `matches(identity)` is true exactly when, after dropping a leading
//!   `spiffe://` from both, the pattern is `*` and the identity is not
//!   empty, or both have the same number of `/`-separated segments, no
//!   identity segment is empty, and each pattern segment matches its
//!   identity segment with `*` standing for any run of characters;
//! - what admission decides (`spiffe_id` then `matches`): a pattern admits
//!   only well-formed SPIFFE IDs, whatever its own spelling.

use super::util::{fields, text};
use callback_guard::core::admission::principal::{Principal, spiffe_id};

const SCHEME: &str = "spiffe://";

pub fn check(data: &[u8]) {
    let [pattern, identity] = fields::<2>(data);
    let (pattern, identity) = (text(pattern), text(identity));
    let well_formed = reference_spiffe_id(&identity);
    assert_eq!(
        spiffe_id(&identity),
        well_formed.then_some(identity.as_str()),
        "spiffe_id({identity:?})"
    );
    let compiled = Principal::parse(&pattern);
    assert_eq!(
        compiled.is_ok(),
        reference_pattern(&pattern),
        "parse({pattern:?}): {compiled:?}"
    );
    let Ok(compiled) = compiled else {
        return;
    };
    let got = compiled.matches(&identity);
    let want = reference(&pattern, &identity);
    assert_eq!(got, want, "pattern {pattern:?} identity {identity:?}");
    let admitted = spiffe_id(&identity).is_some_and(|id| compiled.matches(id));
    assert_eq!(
        admitted,
        well_formed && want,
        "admission: pattern {pattern:?} identity {identity:?}"
    );
}

/// The SPIFFE ID grammar (SPIFFE ID spec, as go-spiffe parses it).
fn reference_spiffe_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix(SCHEME) else {
        return false;
    };
    let mut segments = rest.split('/');
    let td = segments.next().unwrap_or("");
    let td_ok = (1..=255).contains(&td.len())
        && td
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_'));
    let path: Vec<&str> = segments.collect();
    id.len() <= 2048
        && td_ok
        && !path.is_empty()
        && path.iter().all(|s| {
            !s.is_empty()
                && *s != "."
                && *s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        })
}

/// Which patterns `Principal::parse` must accept.
fn reference_pattern(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let body = pattern.strip_prefix(SCHEME).unwrap_or(pattern);
    let segments: Vec<&str> = body.split('/').collect();
    !pattern.contains("**")
        && segments.len() >= 2
        && segments.iter().enumerate().all(|(i, s)| {
            !s.is_empty()
                && *s != "."
                && *s != ".."
                && s.bytes().all(|b| {
                    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'*')
                        || (i > 0 && b.is_ascii_uppercase())
                })
        })
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
        assert!(reference_spiffe_id(
            "spiffe://cluster.local/ns/default/sa/a.b_c-D"
        ));
        for bad in [
            "cluster.local/ns/x",
            "SPIFFE://td/x",
            "spiffe://td",
            "spiffe://td/",
            "spiffe://td/a//b",
            "spiffe://td/./b",
            "spiffe://TD/x",
            "spiffe://td:80/x",
            "spiffe://td/x%41",
            "spiffe://u@td/x",
        ] {
            assert!(!reference_spiffe_id(bad), "{bad}");
        }
        assert!(reference_pattern("cluster.local/ns/*/sa/web*"));
        assert!(reference_pattern("spiffe://*.local/ns/x"));
        for bad in [
            "",
            "td",
            "spiffe://td",
            "td/**",
            "Td/x",
            "td/a b",
            "td/.",
            "https://td/x",
        ] {
            assert!(!reference_pattern(bad), "{bad}");
        }
    }

    #[test]
    #[should_panic(expected = "admission")]
    fn oracle_flags_an_istio_form_identity_admitted() {
        // `matches` alone takes the scheme-less form; admission must not.
        let compiled = Principal::parse("cluster.local/ns/*").unwrap();
        let identity = "cluster.local/ns/x";
        assert_eq!(
            compiled.matches(identity),
            reference_spiffe_id(identity) && reference("cluster.local/ns/*", identity),
            "admission"
        );
    }
}

//! Principal patterns: SPIFFE IDs with `*` wildcards inside one segment.
//!
//! Both sides are normalised by dropping a leading `spiffe://`, so Istio's
//! `source.principal` form (`cluster.local/ns/default/sa/x`) and the URI SAN
//! form (`spiffe://cluster.local/ns/default/sa/x`) are the same principal.
//! After that a principal is `/`-separated segments, the first being the
//! trust domain; a pattern matches an identity with exactly as many
//! segments, segment by segment. `*` matches any run of characters (possibly
//! none) inside one segment and never crosses a `/`. The pattern `"*"` on its
//! own is Istio's "any authenticated identity".

const SPIFFE_SCHEME: &str = "spiffe://";
/// Longest SPIFFE ID accepted from a certificate (the SPIFFE ID spec's
/// URI length limit).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;
/// Longest trust domain accepted (SPIFFE ID spec).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// The caller identity a certificate's URI SAN gives, or `None`.
///
/// Only a well-formed SPIFFE ID counts (SPIFFE ID spec, as go-spiffe parses
/// it): exactly `spiffe://`, a trust domain of lower-case letters, digits,
/// `.`, `-`, `_` (at most 255 bytes), then a path of one or more `/`
/// segments, each non-empty, not `.` or `..`, of letters, digits, `.`, `-`,
/// `_`; at most 2048 bytes in all; no query, fragment, port, user info or
/// percent-encoding. Anything else (`cluster.local/ns/default/sa/x`
/// without the scheme, `SPIFFE://...`, `spiffe://td/a//b`, a bare trust
/// domain) is "no identity", which never matches an `allow` rule.
///
/// ```
/// use callback_guard::core::admission::principal::spiffe_id;
/// let id = "spiffe://cluster.local/ns/default/sa/webhook-processor";
/// assert_eq!(spiffe_id(id), Some(id));
/// assert_eq!(spiffe_id("cluster.local/ns/default/sa/webhook-processor"), None);
/// ```
pub fn spiffe_id(uri_san: &str) -> Option<&str> {
    if uri_san.len() > MAX_SPIFFE_ID_LEN {
        return None;
    }
    let rest = uri_san.strip_prefix(SPIFFE_SCHEME)?;
    let (trust_domain, path) = rest.split_once('/')?;
    let td_ok = !trust_domain.is_empty()
        && trust_domain.len() <= MAX_TRUST_DOMAIN_LEN
        && trust_domain.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        });
    let path_ok = path.split('/').all(|segment| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    });
    (td_ok && path_ok).then_some(uri_san)
}

/// A compiled principal pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `"*"`: any identity (never the absence of one).
    Any,
    /// Segment patterns, trust domain first.
    Segments(Vec<Segment>),
}

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Exact(String),
    /// `*`: any (non-empty) segment.
    Any,
    /// The literal pieces around the `*`s: `webhook-*` is `["webhook-", ""]`,
    /// `*-processor` is `["", "-processor"]`.
    Glob(Vec<String>),
}

impl Principal {
    /// Validates and compiles one pattern; the error is a human reason (the
    /// caller adds the field path).
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("empty principal".into());
        }
        if pattern.chars().any(char::is_whitespace) {
            return Err(format!("principal {pattern:?} contains whitespace"));
        }
        if pattern == "*" {
            return Ok(Self::Any);
        }
        if pattern.contains("**") {
            return Err(format!(
                "principal {pattern:?}: `**` is not supported; `*` matches within one segment"
            ));
        }
        let body = match pattern.strip_prefix(SPIFFE_SCHEME) {
            Some(rest) => rest,
            None if pattern.contains("://") || pattern.contains(':') => {
                return Err(format!(
                    "principal {pattern:?}: scheme must be spiffe:// (or none, as in Istio's source.principal)"
                ));
            }
            None => pattern,
        };
        let mut segments = Vec::new();
        for (i, raw) in body.split('/').enumerate() {
            check_segment(pattern, raw, i == 0)?;
            segments.push(if raw == "*" {
                Segment::Any
            } else if raw.contains('*') {
                Segment::Glob(raw.split('*').map(str::to_string).collect())
            } else {
                Segment::Exact(raw.to_string())
            });
        }
        if segments.len() < 2 {
            return Err(format!(
                "principal {pattern:?} names only a trust domain; a workload's SPIFFE ID has a path (e.g. {pattern}/ns/<namespace>/sa/<service-account>)"
            ));
        }
        Ok(Self::Segments(segments))
    }

    /// Does this pattern admit `identity` (URI SAN or `source.principal`
    /// form)? No allocation.
    pub fn matches(&self, identity: &str) -> bool {
        let segments = match self {
            Self::Any => return !identity.is_empty(),
            Self::Segments(segments) => segments,
        };
        let mut parts = normalise(identity).split('/');
        for segment in segments {
            match parts.next() {
                Some(part) if segment.matches(part) => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }
}

impl Segment {
    fn matches(&self, part: &str) -> bool {
        // Identity segments are never empty in a valid SPIFFE ID; an empty
        // one (`ns//sa`) matches nothing, not even `*`.
        if part.is_empty() {
            return false;
        }
        match self {
            Self::Exact(s) => s == part,
            Self::Any => true,
            Self::Glob(pieces) => glob_matches(pieces, part),
        }
    }
}

/// Drops the `spiffe://` scheme so both principal spellings compare equal.
pub fn normalise(identity: &str) -> &str {
    identity.strip_prefix(SPIFFE_SCHEME).unwrap_or(identity)
}

/// `pieces` are the literals between `*`s (at least two of them): the first
/// is a prefix, the last a suffix, the middle ones appear in order between.
fn glob_matches(pieces: &[String], text: &str) -> bool {
    let (first, rest) = match pieces.split_first() {
        Some(split) => split,
        None => return false,
    };
    let (last, middle) = match rest.split_last() {
        Some(split) => split,
        None => return text == first,
    };
    // A leading or trailing `*` leaves an empty piece: nothing to compare.
    if text.len() < first.len() + last.len()
        || (!first.is_empty() && !text.starts_with(first.as_str()))
        || (!last.is_empty() && !text.ends_with(last.as_str()))
    {
        return false;
    }
    let mut window = match text.get(first.len()..text.len() - last.len()) {
        Some(window) => window,
        None => return false,
    };
    for piece in middle {
        match window.find(piece.as_str()) {
            Some(at) => window = window.get(at + piece.len()..).unwrap_or(""),
            None => return false,
        }
    }
    true
}

/// SPIFFE ID character rules (trust domain: lower-case letters, digits,
/// `.-_`; path segments: letters, digits, `.-_`, not `.` or `..`), plus `*`.
fn check_segment(pattern: &str, raw: &str, trust_domain: bool) -> Result<(), String> {
    if raw.is_empty() {
        let what = if trust_domain {
            "trust domain"
        } else {
            "path segment"
        };
        return Err(format!("principal {pattern:?} has an empty {what}"));
    }
    if raw == "." || raw == ".." {
        return Err(format!(
            "principal {pattern:?}: `.` and `..` are not SPIFFE path segments"
        ));
    }
    let allowed = |c: char| {
        c == '*'
            || c.is_ascii_digit()
            || matches!(c, '.' | '-' | '_')
            || c.is_ascii_lowercase()
            || (!trust_domain && c.is_ascii_uppercase())
    };
    match raw.chars().find(|c| !allowed(*c)) {
        None => Ok(()),
        Some(c) if trust_domain && c.is_ascii_uppercase() => Err(format!(
            "principal {pattern:?}: the trust domain must be lower case"
        )),
        Some(c) => Err(format!(
            "principal {pattern:?}: character {c:?} is not allowed in a SPIFFE ID"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const WP: &str = "spiffe://cluster.local/ns/default/sa/webhook-processor";

    fn p(pattern: &str) -> Principal {
        Principal::parse(pattern).unwrap()
    }

    #[test]
    fn exact_matches_itself_only() {
        let exact = p(WP);
        assert!(exact.matches(WP));
        for near_miss in [
            "spiffe://cluster.local/ns/default/sa/webhook-processor-evil",
            "spiffe://cluster.local/ns/default/sa/webhook-processo",
            "spiffe://cluster.local/ns/default/sa/webhook-processor/extra",
            "spiffe://cluster.local/ns/default/sa/webhook-processor/",
            "spiffe://cluster.local/ns/default/sa",
            "spiffe://cluster.local/ns/default/webhook-processor",
            "spiffe://evil.local/ns/default/sa/webhook-processor",
            "spiffe://cluster.local.evil/ns/default/sa/webhook-processor",
            "spiffe://cluster.local/ns/other/sa/webhook-processor",
            "spiffe://cluster.local/ns/default/sa/Webhook-processor",
            "spiffe://cluster.local//ns/default/sa/webhook-processor",
            "https://cluster.local/ns/default/sa/webhook-processor",
            "SPIFFE://cluster.local/ns/default/sa/webhook-processor",
            "spiffe:/cluster.local/ns/default/sa/webhook-processor",
            "xspiffe://cluster.local/ns/default/sa/webhook-processor",
            " spiffe://cluster.local/ns/default/sa/webhook-processor",
            "",
        ] {
            assert!(!exact.matches(near_miss), "{near_miss:?} must not match");
        }
    }

    #[test]
    fn istio_form_is_accepted_on_either_side() {
        let istio = "cluster.local/ns/default/sa/webhook-processor";
        assert!(p(WP).matches(istio));
        assert!(p(istio).matches(WP));
        assert!(p(istio).matches(istio));
        assert_eq!(p(istio), p(WP));
        assert!(!p(istio).matches("cluster.local/ns/default/sa/webhook-processor-evil"));
    }

    #[test]
    fn star_stays_inside_one_segment() {
        let ns = p("spiffe://cluster.local/ns/*/sa/webhook-processor");
        assert!(ns.matches(WP));
        assert!(ns.matches("spiffe://cluster.local/ns/payments/sa/webhook-processor"));
        assert!(!ns.matches("spiffe://cluster.local/ns/a/b/sa/webhook-processor"));
        assert!(!ns.matches("spiffe://cluster.local/ns//sa/webhook-processor"));
        assert!(!ns.matches("spiffe://cluster.local/ns/sa/webhook-processor"));

        let tail = p("spiffe://cluster.local/ns/default/sa/*");
        assert!(tail.matches(WP));
        assert!(!tail.matches("spiffe://cluster.local/ns/default/sa/a/b"));
        assert!(!tail.matches("spiffe://cluster.local/ns/default/sa"));
        assert!(!tail.matches("spiffe://cluster.local/ns/default/sa/"));

        let td = p("spiffe://*/ns/default/sa/webhook-processor");
        assert!(td.matches("spiffe://prod.example/ns/default/sa/webhook-processor"));
        assert!(!td.matches("spiffe://a/b/ns/default/sa/webhook-processor"));
    }

    #[test]
    fn partial_segment_wildcards() {
        let prefix = p("spiffe://cluster.local/ns/*/sa/webhook-*");
        assert!(prefix.matches(WP));
        assert!(prefix.matches("spiffe://cluster.local/ns/x/sa/webhook-"));
        assert!(!prefix.matches("spiffe://cluster.local/ns/x/sa/webhook"));
        assert!(!prefix.matches("spiffe://cluster.local/ns/x/sa/my-webhook-processor"));
        assert!(!prefix.matches("spiffe://cluster.local/ns/x/sa/webhook-processor/evil"));

        let suffix = p("cluster.local/ns/default/sa/*-processor");
        assert!(suffix.matches(WP));
        assert!(!suffix.matches("spiffe://cluster.local/ns/default/sa/webhook-processor-evil"));
        assert!(!suffix.matches("spiffe://cluster.local/ns/default/sa/processor"));

        let both = p("cluster.local/ns/default/sa/web*-pro*or");
        assert!(both.matches(WP));
        assert!(both.matches("cluster.local/ns/default/sa/web-pro-or"));
        assert!(both.matches("cluster.local/ns/default/sa/web-proor"));
        assert!(!both.matches("cluster.local/ns/default/sa/web-prxor"));
        assert!(!both.matches("cluster.local/ns/default/sa/webpro-or"));
        // Overlapping prefix and suffix must not share characters.
        assert!(!p("cluster.local/ab*ba").matches("cluster.local/aba"));
        assert!(p("cluster.local/ab*ba").matches("cluster.local/abba"));
    }

    #[test]
    fn lone_star_is_any_identity() {
        let any = p("*");
        assert!(any.matches(WP));
        assert!(any.matches("cluster.local/ns/x/sa/y"));
        assert!(!any.matches(""));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for (bad, why) in [
            ("", "empty"),
            ("spiffe://", "empty trust domain"),
            ("spiffe://cluster.local/ns/**/sa/x", "`**`"),
            (
                "spiffe://cluster.local/ns/default/sa/web hook",
                "whitespace",
            ),
            ("spiffe://cluster.local/ns/default/sa/x\t", "whitespace"),
            ("https://cluster.local/ns/default/sa/x", "scheme"),
            ("SPIFFE://cluster.local/ns/default/sa/x", "scheme"),
            ("spiffe:cluster.local/ns/default/sa/x", "scheme"),
            (
                "spiffe://cluster.local/ns/default/sa/",
                "empty path segment",
            ),
            ("spiffe://cluster.local//ns/default", "empty path segment"),
            ("/ns/default/sa/x", "empty trust domain"),
            ("spiffe://Cluster.local/ns/default/sa/x", "lower case"),
            ("spiffe://cluster.local/ns/../sa/x", "`..`"),
            ("spiffe://cluster.local/ns/default/sa/x?y", "not allowed"),
            ("spiffe://cluster.local/ns/default/sa/x%41", "not allowed"),
        ] {
            let err = Principal::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn only_well_formed_spiffe_ids_are_identities() {
        for good in [
            WP,
            "spiffe://example.org/Workload-A",
            "spiffe://a_b-c.9/x",
            "spiffe://td/a/b/c/d/e.f_g-h",
        ] {
            assert_eq!(spiffe_id(good), Some(good), "{good:?}");
        }
        let long_td = format!("spiffe://{}/x", "a".repeat(MAX_TRUST_DOMAIN_LEN + 1));
        let long_id = format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID_LEN));
        for bad in [
            // Issue #12: no scheme, yet admitted as `high` before.
            "cluster.local/ns/default/sa/webhook-processor",
            "//cluster.local/ns/default/sa/webhook-processor",
            "SPIFFE://cluster.local/ns/default/sa/webhook-processor",
            "Spiffe://cluster.local/ns/default/sa/webhook-processor",
            "spiffe:/cluster.local/ns/default/sa/webhook-processor",
            "spiffe:cluster.local/ns/default/sa/webhook-processor",
            "https://cluster.local/ns/default/sa/webhook-processor",
            "urn:spiffe:cluster.local/ns/default/sa/webhook-processor",
            " spiffe://cluster.local/ns/default/sa/webhook-processor",
            "spiffe://cluster.local/ns/default/sa/webhook-processor ",
            "spiffe://cluster.local",
            "spiffe://cluster.local/",
            "spiffe:///ns/default/sa/x",
            "spiffe://Cluster.local/ns/default/sa/x",
            "spiffe://cluster.local:443/ns/default/sa/x",
            "spiffe://user@cluster.local/ns/default/sa/x",
            "spiffe://cluster.local/ns//sa/x",
            "spiffe://cluster.local/ns/default/sa/x/",
            "spiffe://cluster.local/ns/./sa/x",
            "spiffe://cluster.local/ns/../sa/x",
            "spiffe://cluster.local/ns/default/sa/x?y=1",
            "spiffe://cluster.local/ns/default/sa/x#y",
            "spiffe://cluster.local/ns/default/sa/x%41",
            "spiffe://cluster.local/ns/default/sa/wébhook",
            "",
            &long_td,
            &long_id,
        ] {
            assert_eq!(spiffe_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_bare_trust_domain_is_not_a_principal() {
        for bad in ["spiffe://cluster.local", "cluster.local", "spiffe://*"] {
            let err = Principal::parse(bad).unwrap_err();
            assert!(err.contains("only a trust domain"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn path_segments_may_use_upper_case() {
        assert!(p("spiffe://example.org/Workload-A").matches("spiffe://example.org/Workload-A"));
        assert!(!p("spiffe://example.org/Workload-A").matches("spiffe://example.org/workload-a"));
    }
}

//! Target `channel`: where a request goes (`core::policy::Policy::route`, i.e.
//! `core::channel::route` through a compiled policy) and the canonical path
//! (`core::channel::canonical_path`).
//!
//! The policy (below) has a guard prefix `/callbacks/`, signed channels
//! inside it (one restricted to a host, one case-sensitive), an unsigned
//! one inside it, and a signed channel outside any guard (`/hooks/`).
//!
//! The property that matters is **no bypass**: the harness reads the path
//! every way a lenient service behind the proxy might — as sent, decoded
//! once, twice or three times (every `%XX`, lossily), with `;` parameters
//! cut before any of those decodings or after them, with `\` read as `/`
//! (literal ones only, or also decoded ones) or not, with dot segments
//! resolved (merging slashes, or RFC 3986 style keeping empty segments,
//! then perhaps merging them) or not, with slashes merged or not, and
//! compared ASCII-case-insensitively (a case-sensitive channel: exactly),
//! also with non-ASCII letters folded as Java's `equalsIgnoreCase` does
//! (Kelvin sign as `k`, `ſ` as `s`) — and the host with port, trailing dot
//! and case ignored. Then:
//! - a reading that lands in a **signed** channel: the filter routes the
//!   request to that channel or refuses it, never `Pass` nor another one;
//! - a reading under the guard prefix: never `Pass`;
//! - no stray match: `Channel(i)` means some reading lands in channel `i`;
//! - `canonical_path` starts with `/` and holds no `\`, `//`, `;` or dot
//!   segment.
//!
//! The readings are written here, never through the filter's code.

use super::util::{fields, text};
use callback_guard::config;
use callback_guard::core::channel::{Route, canonical_path};
use callback_guard::core::policy::Policy;
use std::collections::HashSet;

const HOST: &str = "hooks.example.com";
const GUARD: &str = "/callbacks/";
const SECRET: &str = "whsec_ZnV6ei1jaGFubmVsLXNlY3JldA==";

/// (prefix, hosts, case-sensitive, signed), in the policy's order.
const CHANNELS: [(&str, &[&str], bool, bool); 5] = [
    ("/callbacks/payments", &[HOST], false, true),
    ("/callbacks/github", &[], false, true),
    ("/callbacks/logistics", &[], false, false),
    ("/callbacks/Exact/", &[], true, true),
    ("/hooks/", &[], false, true),
];

/// Built once per thread: `Policy` is not `Sync` (the Rego engine inside
/// an admission policy uses `Rc`), and leaked so it lives as long as the
/// harness.
fn policy() -> &'static Policy {
    thread_local! {
        static POLICY: &'static Policy = Box::leak(Box::new(build_policy()));
    }
    POLICY.with(|p| *p)
}

fn build_policy() -> Policy {
    {
        let channels: Vec<String> = CHANNELS
            .iter()
            .enumerate()
            .map(|(i, (prefix, hosts, case_sensitive, signed))| {
                let hosts = if hosts.is_empty() {
                    String::new()
                } else {
                    format!(r#","hosts":["{}"]"#, hosts.join(r#"",""#))
                };
                let signature = if *signed {
                    format!(
                        r#","signature":{{"scheme":"standard-webhooks","secrets":[{{"value":"{SECRET}"}}]}}"#
                    )
                } else {
                    String::new()
                };
                format!(
                    r#"{{"name":"c{i}","match":{{"path_prefix":"{prefix}","case_sensitive":{case_sensitive}{hosts}}}{signature}}}"#
                )
            })
            .collect();
        let json = format!(
            r#"{{"reject_unmatched":["{GUARD}"],"channels":[{}]}}"#,
            channels.join(",")
        );
        let p = match config::load(json.as_bytes(), &|_| None) {
            Ok(p) => p,
            Err(e) => panic!("fuzz policy does not load: {e}"),
        };
        for (c, (_, _, _, signed)) in p.channels.iter().zip(CHANNELS) {
            assert_eq!(c.signature.is_some(), signed);
        }
        p
    }
}

pub fn check(data: &[u8]) {
    let [path, authority] = fields::<2>(data);
    let (path, authority) = (text(path), text(authority));
    let route = policy().route(&path, &authority);
    verify(&path, &authority, route);
}

/// The properties, for the route the filter chose.
fn verify(path: &str, authority: &str, route: Route) {
    let bare = path.split(['?', '#']).next().unwrap_or(path);
    let canonical = canonical_path(bare);
    assert!(canonical_shape(&canonical), "{bare:?} -> {canonical:?}");

    // Envoy passes only origin-form paths (`/...`) to filters.
    if !bare.starts_with('/') {
        return;
    }
    let host = reference_host(authority);
    let readings = readings(bare);
    let mut landed = vec![false; CHANNELS.len()];
    for r in &readings {
        if let Some(i) = landing(r, &host) {
            landed[i] = true;
            if CHANNELS[i].3 {
                assert!(
                    route == Route::Channel(i) || matches!(route, Route::Refuse(_)),
                    "bypass: {path:?} on {authority:?} reads as {r:?} (signed channel {i}), routed {route:?}"
                );
            }
        }
        if starts_folded(r, GUARD) {
            assert_ne!(route, Route::Pass, "guard bypass: {path:?} reads as {r:?}");
        }
    }
    if let Route::Channel(i) = route {
        assert!(
            landed.get(i) == Some(&true),
            "stray match: {path:?} on {authority:?} routed to channel {i}"
        );
    }
}

/// The first channel a reading fits (prefix and host).
fn landing(reading: &str, host: &str) -> Option<usize> {
    CHANNELS
        .iter()
        .position(|(prefix, hosts, case_sensitive, _)| {
            let fits = if *case_sensitive {
                reading.starts_with(prefix)
            } else {
                starts_folded(reading, prefix)
            };
            fits && (hosts.is_empty() || hosts.contains(&host))
        })
}

/// `s` starts with `prefix`, ASCII case ignored.
fn starts_folded(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// The host as a virtual-host match reads it: user info and port dropped,
/// trailing dots dropped, lower case.
fn reference_host(authority: &str) -> String {
    let a = authority.trim_matches([' ', '\t']);
    let a = match a.rfind('@') {
        Some(at) => &a[at + 1..],
        None => a,
    };
    let host = if let Some(rest) = a.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match a.rsplit_once(':') {
            Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => a,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Decoding rounds a service may apply.
const MAX_DECODES: usize = 3;

/// Every reading of `raw` (no query) a lenient service might make.
fn readings(raw: &str) -> HashSet<String> {
    // The path decoded 0, 1, ... times (while a `%` is left).
    let mut chain = vec![raw.to_string()];
    while chain.len() <= MAX_DECODES {
        let Some(last) = chain.last().filter(|s| s.contains('%')) else {
            break;
        };
        let next = full_decode(last);
        chain.push(next);
    }
    let mut bases: HashSet<String> = chain.iter().cloned().collect();
    // `;` parameters cut before decoding round `cut` (or after the last).
    for (cut, at) in chain.iter().enumerate() {
        if !at.contains(';') {
            continue;
        }
        let mut s = strip_params(at);
        bases.insert(s.clone());
        for _ in cut..chain.len() - 1 {
            if !s.contains('%') {
                break;
            }
            s = full_decode(&s);
            bases.insert(s.clone());
        }
    }
    // `\` as `/` for literal backslashes only (before decoding).
    if raw.contains('\\') {
        let mut s = raw.replace('\\', "/");
        for round in 0..=MAX_DECODES {
            if round > 0 {
                if !s.contains('%') {
                    break;
                }
                s = full_decode(&s);
            }
            bases.insert(strip_params(&s));
            bases.insert(s.clone());
        }
    }
    let mut out = HashSet::new();
    for base in bases {
        let slashed = base.contains('\\').then(|| base.replace('\\', "/"));
        for b in std::iter::once(&base).chain(slashed.as_ref()) {
            out.insert(merge_slashes(b));
            out.insert(resolve(b, true));
            let rfc = resolve(b, false);
            out.insert(merge_slashes(&rfc));
            out.insert(rfc);
            out.insert(b.clone());
        }
    }
    let unicode: Vec<String> = out
        .iter()
        .filter(|r| !r.is_ascii())
        .map(|r| java_fold(r))
        .collect();
    out.extend(unicode);
    out
}

/// What Java's char-wise case-insensitive comparison (`equalsIgnoreCase`,
/// Spring's case-insensitive matching) makes of non-ASCII letters: one
/// whose upper case is a single ASCII letter, or whose lower case starts
/// with one, compares as that letter.
fn java_fold(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() {
                return c;
            }
            let mut upper = c.to_uppercase();
            if let (Some(u), None) = (upper.next(), upper.next())
                && u.is_ascii()
            {
                return u.to_ascii_lowercase();
            }
            match c.to_lowercase().next() {
                Some(l) if l.is_ascii() => l,
                _ => c,
            }
        })
        .collect()
}

/// Every `%XX` decoded (invalid escapes kept), bytes read as lossy UTF-8.
fn full_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Each segment cut at its first `;`.
fn strip_params(s: &str) -> String {
    s.split('/')
        .map(|seg| seg.split(';').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("/")
}

fn merge_slashes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// Dot segments resolved; `merge`: empty segments dropped as well
/// (otherwise RFC 3986 `remove_dot_segments`, where `..` may remove an
/// empty segment). A trailing `.` or `..` leaves a trailing `/`.
fn resolve(s: &str, merge: bool) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut pieces = s.split('/');
    // What precedes the first '/' (empty for an absolute path).
    let first = pieces.next().unwrap_or("");
    if !first.is_empty() {
        out.push(first);
    }
    let mut directory = false;
    for seg in pieces {
        directory = matches!(seg, "" | "." | "..");
        match seg {
            "." => {}
            "" if merge => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    let mut r = String::with_capacity(s.len() + 1);
    for seg in &out {
        r.push('/');
        r.push_str(seg);
    }
    if r.is_empty() || (directory && !r.ends_with('/')) {
        r.push('/');
    }
    r
}

/// What a canonical path may not hold. (It may hold an escape of an
/// unreserved character: one that the decoding round assembled, `%%32e`
/// giving `%2e`; the canonical path is one decoding round by design.)
fn canonical_shape(p: &str) -> bool {
    p.starts_with('/')
        && !p.contains('\\')
        && !p.contains("//")
        && !p.contains(';')
        && !p.split('/').any(|s| s == "." || s == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_readings() {
        let r = readings("/x/%252e%252e/callbacks/payments");
        assert!(r.contains("/callbacks/payments"), "{r:?}");
        let r = readings(r"/a\..\callbacks;x=1/payments");
        assert!(r.contains("/callbacks/payments"), "{r:?}");
        let r = readings("/callbacks/a/..//b");
        assert!(r.contains("/callbacks//b"), "{r:?}");
        assert!(r.contains("/callbacks/b"), "{r:?}");
        let r = readings("/a//../b");
        assert!(r.contains("/a/b"), "{r:?}");
        let r = readings("/hoo%E2%84%AAs/a");
        assert!(r.contains("/hooks/a"), "{r:?}");
        assert_eq!(
            java_fold("\u{17F}\u{130}\u{131}\u{e9}\u{df}"),
            "sii\u{e9}\u{df}"
        );
        assert_eq!(resolve("/a/b/..", true), "/a/");
        assert_eq!(resolve("/a/./", false), "/a/");
        assert_eq!(reference_host("U@Hooks.Example.com.:443"), HOST);
        assert_eq!(reference_host("[::1]:80"), "::1");
    }

    #[test]
    fn policy_routes_the_plain_cases() {
        let p = policy();
        assert_eq!(p.route("/callbacks/payments/x", HOST), Route::Channel(0));
        assert_eq!(p.route("/callbacks/payments/x", "other"), {
            Route::Refuse(callback_guard::core::channel::Refusal::NoChannel)
        });
        assert_eq!(p.route("/hooks/a", "x"), Route::Channel(4));
        assert_eq!(p.route("/else", "x"), Route::Pass);
    }

    #[test]
    #[should_panic(expected = "bypass: ")]
    fn oracle_flags_a_bypass() {
        verify("/x/%2e%2e/hooks/a", "h", Route::Pass);
    }

    #[test]
    #[should_panic(expected = "bypass: ")]
    fn oracle_flags_another_channel() {
        verify("/callbacks/logistics/..%2fgithub", HOST, Route::Channel(2));
    }

    #[test]
    #[should_panic(expected = "guard bypass")]
    fn oracle_flags_a_guard_bypass() {
        verify("/CALLBACKS%252fx", "h", Route::Pass);
    }

    #[test]
    #[should_panic(expected = "stray match")]
    fn oracle_flags_a_stray_match() {
        verify("/callbacks/payments", "other.example", Route::Channel(0));
    }
}

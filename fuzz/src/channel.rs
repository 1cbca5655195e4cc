//! Target `channel`: path normalisation (`core::channel::normalize_path`)
//! and channel matching through a compiled policy
//! (`config::Policy::channel_for`).
//!
//! Properties, against a reference normaliser written here (one
//! percent-decoding pass of unreserved characters and `/`, then RFC 3986
//! dot-segment removal with merged slashes):
//! - `normalize_path` equals the reference;
//! - no bypass: a request whose query-less path, as a lenient upstream
//!   would read it, is the channel prefix or lies under it (whole
//!   segments), on the channel's host, is matched by that channel;
//! - no stray match: a matched channel's prefix starts the raw or the
//!   normalised path, and its host list holds the authority's host.

use super::util::{fields, text};
use callback_guard::config::{self, Policy};
use callback_guard::core::channel::{Route, canonical_path as normalize_path};
use std::sync::OnceLock;

const PREFIX: &str = "/callbacks/payments";
const HOST: &str = "hooks.example.com";
const ANY_HOST_PREFIX: &str = "/hooks/";

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let json = format!(
            r#"{{"channels":[
                {{"name":"payments","match":{{"path_prefix":"{PREFIX}","hosts":["{HOST}"]}}}},
                {{"name":"any-host","match":{{"path_prefix":"{ANY_HOST_PREFIX}"}}}}]}}"#
        );
        match config::load(json.as_bytes(), &|_| None) {
            Ok(p) => p,
            Err(e) => panic!("fuzz policy does not load: {e}"),
        }
    })
}

pub fn check(data: &[u8]) {
    let [path, authority] = fields::<2>(data);
    let (path, authority) = (text(path), text(authority));

    let bare = path.split(['?', '#']).next().unwrap_or(&path);
    let reference = reference_normalise(bare);
    assert_eq!(normalize_path(bare), reference, "normalising {bare:?}");

    let got = match policy().route(&path, &authority) {
        Route::Channel(i) => Some(i),
        _ => None,
    };
    let host = host_of(&authority);
    // Whole segments: `/callbacks/payments` covers `/callbacks/payments/x`,
    // not `/callbacks/paymentsx`; `/hooks/` covers what starts with it.
    let under = |prefix: &str| {
        reference.starts_with(prefix)
            && (prefix.ends_with('/')
                || reference.len() == prefix.len()
                || reference[prefix.len()..].starts_with('/'))
    };
    // Envoy passes only origin-form paths (`/...`); `./x` or `x` never
    // reach the filter, and no upstream resolves them against a prefix.
    let origin_form = bare.starts_with('/');
    if origin_form && under(PREFIX) && host.eq_ignore_ascii_case(HOST) {
        assert_eq!(
            got,
            Some(0),
            "bypass: {path:?} on {authority:?} (reads as {reference:?})"
        );
    } else if origin_form && under(ANY_HOST_PREFIX) && got != Some(0) {
        assert_eq!(got, Some(1), "bypass: {path:?} (reads as {reference:?})");
    }
    let starts = |prefix: &str| bare.starts_with(prefix) || reference.starts_with(prefix);
    match got {
        Some(0) => {
            assert!(starts(PREFIX), "stray match of {path:?}");
            assert!(host.eq_ignore_ascii_case(HOST), "stray host {authority:?}");
        }
        Some(1) => assert!(starts(ANY_HOST_PREFIX), "stray match of {path:?}"),
        Some(n) => panic!("channel {n} does not exist"),
        None => {}
    }
}

/// The host of an `:authority`: `[v6]` without brackets, or the text
/// before a `:port` of digits.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

fn reference_normalise(path: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            let c = h * 16 + l;
            if c.is_ascii_alphanumeric() || b"-._~/".contains(&c) {
                decoded.push(c);
                i += 3;
                continue;
            }
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    // Only ASCII was decoded: still UTF-8.
    let decoded = String::from_utf8_lossy(&decoded).into_owned();
    let mut stack: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    let mut out = String::new();
    for s in &stack {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (decoded.ends_with('/') && !stack.is_empty()) {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_normaliser() {
        assert_eq!(reference_normalise("/a//b/./c/../%64"), "/a/b/d");
        assert_eq!(reference_normalise("/a/%2F%2e%2E/b/"), "/b/");
        assert_eq!(reference_normalise("/%3F/%e9"), "/%3F/%e9");
        assert_eq!(reference_normalise(""), "/");
        assert_eq!(host_of("[::1]:80"), "::1");
        assert_eq!(host_of("h.example:x"), "h.example:x");
    }
}

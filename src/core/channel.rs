//! Which channel a request belongs to.

/// `match` of a channel: a path prefix and, optionally, a host list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMatch {
    path_prefix: String,
    /// Lower case, without port. Empty = any host.
    hosts: Vec<String>,
}

impl ChannelMatch {
    pub fn new(path_prefix: String, hosts: Vec<String>) -> Self {
        Self { path_prefix, hosts }
    }

    /// `path` is the `:path` pseudo-header (query included), `authority`
    /// the `:authority` (port allowed, case-insensitive).
    pub fn matches(&self, path: &str, authority: &str) -> bool {
        self.matches_target(&RequestTarget::new(path, authority))
    }

    /// [`matches`](Self::matches) for a target parsed once per request.
    pub fn matches_target(&self, target: &RequestTarget<'_>) -> bool {
        let prefix = self.path_prefix.as_str();
        let path_fits = target.path.starts_with(prefix)
            || target
                .normalized
                .as_deref()
                .is_some_and(|n| n.starts_with(prefix));
        if !path_fits {
            return false;
        }
        if self.hosts.is_empty() {
            return true;
        }
        self.hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(target.host))
    }
}

/// A request's path and host as channel matching needs them, computed once
/// per request: the path without query, its normalised form only when it
/// has something to normalise (so ordinary requests allocate nothing), and
/// the host without port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget<'a> {
    path: &'a str,
    normalized: Option<String>,
    host: &'a str,
}

impl<'a> RequestTarget<'a> {
    pub fn new(path: &'a str, authority: &'a str) -> Self {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let needs = path.contains("//") || path.contains("/.") || path.contains('%');
        Self {
            path,
            normalized: needs.then(|| normalize_path(path)),
            host: strip_port(authority),
        }
    }
}

/// The path a lenient upstream would see: percent-encoded unreserved
/// characters and `/` decoded, repeated slashes merged, `.` and `..`
/// segments resolved (RFC 3986 §5.2.4). Matching the normalised path too
/// means `/callbacks//payments` or `/callbacks/./%70ayments` cannot slip
/// past a channel to a service that normalises paths itself.
pub fn normalize_path(path: &str) -> String {
    let decoded = percent_decode_unreserved(path);
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (decoded.ends_with('/') && !segments.is_empty()) {
        out.push('/');
    }
    out
}

fn percent_decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (bytes.get(i + 1), bytes.get(i + 2))
            && let (Some(h), Some(l)) = ((*h as char).to_digit(16), (*l as char).to_digit(16))
        {
            let c = (h * 16 + l) as u8;
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'/') {
                out.push(c as char);
                i += 3;
                continue;
            }
        }
        // Multi-byte UTF-8 is copied through char by char.
        match path.get(i..).and_then(|rest| rest.chars().next()) {
            Some(ch) => {
                out.push(ch);
                i += ch.len_utf8();
            }
            None => break,
        }
    }
    out
}

fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn prefix_and_hosts() {
        let m = ChannelMatch::new(
            "/callbacks/payments".into(),
            vec!["hooks.example.com".into()],
        );
        assert!(m.matches("/callbacks/payments", "hooks.example.com"));
        assert!(m.matches("/callbacks/payments/x?y=1", "Hooks.Example.com:8443"));
        assert!(!m.matches("/callbacks/pay", "hooks.example.com"));
        assert!(!m.matches("/callbacks/payments", "evil.example.com"));
        assert!(!m.matches("/other?/callbacks/payments", "hooks.example.com"));
    }

    #[test]
    fn path_tricks_still_match() {
        let m = ChannelMatch::new("/callbacks/payments".into(), vec![]);
        for p in [
            "/callbacks//payments",
            "//callbacks/payments/",
            "/callbacks/./payments",
            "/callbacks/x/../payments",
            "/callbacks/%70ayments",
            "/callbacks%2Fpayments",
            "/callbacks%2fpayments?x=1",
        ] {
            assert!(m.matches(p, ""), "{p}");
        }
        // Either form matching is enough: erring towards checking is safe.
        assert!(m.matches("/callbacks/payments/../other", ""));
        for p in [
            "/callbacks/payment",
            "/callbacks/other",
            "/%2e%2e/callbacks/pay",
        ] {
            assert!(!m.matches(p, ""), "{p}");
        }
    }

    #[test]
    fn normalize_keeps_utf8_and_reserved_escapes() {
        assert_eq!(normalize_path("/a/%C3%A9/é/%3F"), "/a/%C3%A9/é/%3F");
        assert_eq!(normalize_path("/../.."), "/");
        assert_eq!(normalize_path(""), "/");
        assert_eq!(normalize_path("/a/b/"), "/a/b/");
    }

    #[test]
    fn any_host_and_ipv6() {
        let m = ChannelMatch::new("/cb".into(), vec![]);
        assert!(m.matches("/cb", ""));
        let v6 = ChannelMatch::new("/cb".into(), vec!["::1".into()]);
        assert!(v6.matches("/cb", "[::1]:10000"));
    }
}

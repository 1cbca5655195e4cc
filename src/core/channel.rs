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
        let path = path.split(['?', '#']).next().unwrap_or(path);
        if !path.starts_with(&self.path_prefix) {
            return false;
        }
        if self.hosts.is_empty() {
            return true;
        }
        let host = strip_port(authority);
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }
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
    fn any_host_and_ipv6() {
        let m = ChannelMatch::new("/cb".into(), vec![]);
        assert!(m.matches("/cb", ""));
        let v6 = ChannelMatch::new("/cb".into(), vec!["::1".into()]);
        assert!(v6.matches("/cb", "[::1]:10000"));
    }
}

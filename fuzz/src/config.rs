//! Target `config`: the plugin configuration (`config::load`, i.e. parse
//! and compile).
//!
//! Properties: no input panics; a refused document gets a non-empty
//! reason that never contains a secret, whether it came from the VM
//! environment or inline (`secrets[].value`); an accepted one gives a
//! policy whose channels have unique names and bounded body limits, that
//! loads the same way twice, and that answers a request lookup.

use callback_guard::config;

/// What every environment variable starting with `S` holds (a valid
/// `whsec_` key, usable by every scheme); other names are unset.
pub const ENV_SECRET: &str = "whsec_ZnV6ei1lbnYtc2VjcmV0LXZhbHVl";

fn env(name: &str) -> Option<String> {
    name.starts_with('S').then(|| ENV_SECRET.to_string())
}

pub fn check(data: &[u8]) {
    match config::load(data, &env) {
        Ok(policy) => {
            let mut names: Vec<&str> = policy.channels.iter().map(|c| c.name.as_str()).collect();
            let count = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), count, "duplicate channel names accepted");
            for c in &policy.channels {
                assert!((1..=64 * 1024 * 1024).contains(&c.max_body_bytes));
            }
            let again = config::load(data, &env).map(|p| p.channels.len());
            assert_eq!(again.ok(), Some(count), "second load differs");
            let _ = policy.route("/callbacks/payments", "hooks.example.com:443");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty());
            // (Unless the document itself holds that text: then it is
            // the document being quoted.)
            let quoted = data
                .windows(ENV_SECRET.len())
                .any(|w| w == ENV_SECRET.as_bytes());
            assert!(
                quoted || !message.contains(ENV_SECRET),
                "env secret in error: {message}"
            );
            for secret in inline_secrets(data) {
                if secret.chars().count() >= 8 && message.contains(&secret) {
                    assert_not_echoed(data, &secret, &message);
                }
            }
        }
    }
}

/// `channels[*].signature.secrets[*].value` strings of the document.
fn inline_secrets(data: &[u8]) -> Vec<String> {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ch in doc["channels"].as_array().into_iter().flatten() {
        for s in ch["signature"]["secrets"].as_array().into_iter().flatten() {
            if let Some(v) = s["value"].as_str() {
                out.push(v.to_string());
            }
        }
    }
    out
}

/// The message contains `secret`: fine when the same text comes from
/// elsewhere (a channel name, fixed wording). Swap the secret's every
/// occurrence for other text of the same shape and reload: if the new
/// message carries the stand-in, it was the secret that was printed.
fn assert_not_echoed(data: &[u8], secret: &str, message: &str) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let stand_in: String = secret
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if c.is_ascii_alphanumeric() {
                if i % 2 == 0 { 'Q' } else { 'z' }
            } else {
                c
            }
        })
        .collect();
    if stand_in == secret || text.contains(&stand_in) || text.matches(secret).count() != 1 {
        return;
    }
    if let Err(e) = config::load(text.replace(secret, &stand_in).as_bytes(), &env) {
        assert!(
            !e.to_string().contains(&stand_in),
            "inline secret echoed in error: {message}"
        );
    }
}

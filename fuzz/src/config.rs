//! Target `config`: the plugin configuration (`config::load`, i.e. parse
//! and compile).
//!
//! Properties: no input panics; `config::check` (every error) and
//! `config::load` (the first) agree: both accept or both refuse, and
//! `load`'s error is the first `check` lists; every listed error has a
//! field path or reason and never contains a secret, whether it came from
//! the VM environment or inline (`signature.secrets[].value`,
//! `mask.hash_key.value`, `resign.secret.value`); an accepted document
//! gives a policy within the documented bounds (unique channel names, no
//! shadowed channel, body limits, guard prefixes, dedup windows and id
//! capacity, mask depth), that loads the same way twice and routes a
//! request.

use callback_guard::config;
use callback_guard::core::channel::{MAX_PREFIX_LEN, canonical_path};
use callback_guard::core::dedup::{MAX_IN_FLIGHT_S, MAX_MAX_IDS, MAX_WINDOW_S};
use callback_guard::core::mask::MAX_MAX_DEPTH;

/// Documented bounds not exported by the crate: `max_body_bytes` (64 MiB)
/// and the number of `reject_unmatched` prefixes.
const MAX_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
const MAX_GUARDS: usize = 64;

/// What every environment variable starting with `S` holds (a valid
/// `whsec_` key, usable by every scheme); other names are unset.
pub const ENV_SECRET: &str = "whsec_ZnV6ei1lbnYtc2VjcmV0LXZhbHVl";

fn env(name: &str) -> Option<String> {
    name.starts_with('S').then(|| ENV_SECRET.to_string())
}

pub fn check(data: &[u8]) {
    let checked = config::check(data, &env);
    let loaded = config::load(data, &env);
    match (checked, loaded) {
        (Ok(policy), Ok(again)) => {
            assert_eq!(
                policy.channels.len(),
                again.channels.len(),
                "second load differs"
            );
            accepted(&policy);
        }
        (Err(errors), Err(first)) => {
            let list = errors.as_slice();
            assert!(!list.is_empty());
            assert_eq!(
                list[0].to_string(),
                first.to_string(),
                "load's error is not check's first"
            );
            for e in list {
                refused(data, &e.to_string());
            }
        }
        (c, l) => panic!(
            "check and load disagree: check {}, load {}",
            if c.is_ok() { "accepts" } else { "refuses" },
            if l.is_ok() { "accepts" } else { "refuses" }
        ),
    }
}

fn accepted(policy: &callback_guard::core::policy::Policy) {
    let mut names: Vec<&str> = policy.channels.iter().map(|c| c.name.as_str()).collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count, "duplicate channel names accepted");
    for (i, c) in policy.channels.iter().enumerate() {
        assert!((1..=MAX_MAX_BODY_BYTES).contains(&c.max_body_bytes));
        for earlier in &policy.channels[..i] {
            assert!(
                !earlier.matcher.shadows(&c.matcher),
                "channel {:?} can never match",
                c.name
            );
        }
        if let Some(d) = &c.dedup {
            assert!((1..=MAX_WINDOW_S).contains(&d.window_s));
            assert!((1..=MAX_IN_FLIGHT_S).contains(&d.in_flight_s));
            assert!((1..=MAX_MAX_IDS as usize).contains(&d.max_ids()));
        }
        if let Some(m) = &c.mask {
            assert!((1..=MAX_MAX_DEPTH).contains(&m.max_depth()));
        }
    }
    assert!(policy.guards.len() <= MAX_GUARDS);
    for g in &policy.guards {
        assert!(g.len() <= MAX_PREFIX_LEN && g.starts_with('/'), "{g:?}");
        assert_eq!(&canonical_path(g), g, "guard not canonical");
        assert_eq!(&g.to_ascii_lowercase(), g, "guard not lower case");
    }
    let _ = policy.route("/callbacks/payments", "hooks.example.com:443");
}

fn refused(data: &[u8], message: &str) {
    assert!(!message.is_empty());
    // (Unless the document itself holds that text: then it is the
    // document being quoted.)
    let quoted = data
        .windows(ENV_SECRET.len())
        .any(|w| w == ENV_SECRET.as_bytes());
    assert!(
        quoted || !message.contains(ENV_SECRET),
        "env secret in error: {message}"
    );
    for secret in inline_secrets(data) {
        if secret.chars().count() >= 8 && message.contains(&secret) {
            assert_not_echoed(data, &secret, message);
        }
    }
}

/// Inline secret values of the document: `channels[*].signature.secrets[*]`,
/// `channels[*].mask.hash_key`, `channels[*].resign.secret`.
fn inline_secrets(data: &[u8]) -> Vec<String> {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ch in doc["channels"].as_array().into_iter().flatten() {
        let listed = ch["signature"]["secrets"].as_array().into_iter().flatten();
        for s in listed.chain([&ch["mask"]["hash_key"], &ch["resign"]["secret"]]) {
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
    if let Err(errors) = config::check(text.replace(secret, &stand_in).as_bytes(), &env) {
        for e in errors.as_slice() {
            assert!(
                !e.to_string().contains(&stand_in),
                "inline secret echoed in error: {message}"
            );
        }
    }
}

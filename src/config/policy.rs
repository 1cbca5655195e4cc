//! Compiles the whole document into the runtime [`Policy`].

use super::{
    ConfigError, ConfigErrors, ConfigSpec, EnvLookup, FieldPath, admission, channel, routing,
};
use crate::core::channel as matching;
use crate::core::policy::{ChannelPolicy, Policy};
use std::collections::HashSet;

/// Compiles every section, going on past a failing one so that all errors
/// are reported. `indices[i]` is the position of `spec.channels[i]` in the
/// document, when channels that did not parse were left out (`None`: the
/// same position).
pub(super) fn compile(
    spec: &ConfigSpec,
    indices: Option<&[usize]>,
    env: EnvLookup<'_>,
) -> Result<Policy, ConfigErrors> {
    let root = FieldPath::root();
    let mut errors = Vec::new();
    let known_clusters =
        routing::compile_known_clusters(spec.routing.as_ref(), &root.key("routing"))
            .unwrap_or_else(|e| {
                errors.push(e);
                None
            });
    let mut names = HashSet::new();
    // (position in the document, compiled channel)
    let mut channels: Vec<(usize, ChannelPolicy)> = Vec::with_capacity(spec.channels.len());
    for (i, ch) in spec.channels.iter().enumerate() {
        let at = indices.and_then(|ix| ix.get(i).copied()).unwrap_or(i);
        let path = root.key("channels").index(at);
        if !names.insert(ch.name.as_str()) {
            errors.push(
                path.key("name")
                    .error(format!("duplicate channel name {:?}", ch.name)),
            );
        }
        let compiled = match channel::compile(ch, &path, env, known_clusters) {
            Ok(c) => c,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if compiled.resign.is_some() && spec.hold_headers == Some(false) {
            errors.push(path.key("resign").error(
                "needs hold_headers: true (in stream mode the headers leave before the body is \
                 verified, so they cannot carry a signature of it)",
            ));
        }
        if let Some((j, earlier)) = channels
            .iter()
            .find(|(_, c)| c.matcher.shadows(&compiled.matcher))
        {
            errors.push(path.key("match").error(format!(
                "never matches: channels[{j}] ({:?}) comes first and fits every request this one would; list the more specific channel first",
                earlier.name
            )));
            continue;
        }
        channels.push((at, compiled));
    }
    let guards = compile_guards(
        spec.reject_unmatched.as_deref(),
        &root.key("reject_unmatched"),
    )
    .unwrap_or_else(|e| {
        errors.push(e);
        Vec::new()
    });
    let admission = match &spec.admission {
        Some(a) => admission::compile_admission(a, &root.key("admission"))
            .map_err(|e| errors.push(e))
            .ok(),
        None => None,
    };
    let cluster_header =
        routing::compile_cluster_header(spec.routing.as_ref(), &root.key("routing"))
            .unwrap_or_else(|e| {
                errors.push(e);
                String::new()
            });
    let refusal_log = super::log::compile(spec.refusal_log.as_ref(), &root.key("refusal_log"))
        .unwrap_or_else(|e| {
            errors.push(e);
            crate::core::policy::RefusalLog::default()
        });
    let state = spec.state.as_ref().and_then(|s| {
        super::state::compile(s, &root.key("state"), env)
            .map_err(|e| errors.push(e))
            .ok()
    });
    let dead_letter = spec.dead_letter.as_ref().and_then(|d| {
        super::deadletter::compile(d, &root.key("dead_letter"), state.as_ref())
            .map_err(|e| errors.push(e))
            .ok()
    });
    if let Some(errors) = ConfigErrors::from_vec(errors) {
        return Err(errors);
    }
    Ok(Policy {
        channels: channels.into_iter().map(|(_, c)| c).collect(),
        admission,
        cluster_header: cluster_header.into(),
        hold_headers: spec.hold_headers.unwrap_or(true),
        refusal_log,
        dead_letter,
        guards,
        state,
    })
}

/// Most guard prefixes in `reject_unmatched`.
pub const MAX_GUARDS: usize = 64;

fn compile_guards(list: Option<&[String]>, path: &FieldPath) -> Result<Vec<String>, ConfigError> {
    let list = list.unwrap_or_default();
    if list.len() > MAX_GUARDS {
        return Err(path.error(format!("at most {MAX_GUARDS} guard prefixes")));
    }
    let mut guards: Vec<String> = Vec::with_capacity(list.len());
    for (i, prefix) in list.iter().enumerate() {
        matching::canonical_prefix(prefix).map_err(|reason| path.index(i).error(reason))?;
        let folded = prefix.to_ascii_lowercase();
        if guards.contains(&folded) {
            return Err(path
                .index(i)
                .error(format!("duplicate guard prefix {prefix:?}")));
        }
        guards.push(folded);
    }
    Ok(guards)
}

#[cfg(test)]
mod tests {
    use crate::config::load;
    use crate::core::channel::{Refusal, Route};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn err(doc: &str) -> String {
        load(doc.as_bytes(), &|_| None).unwrap_err().to_string()
    }

    const DEMO: &str = r#"{"reject_unmatched": ["/callbacks/"], "channels": [
        {"name": "payments", "match": {"path_prefix": "/callbacks/payments", "hosts": ["Hooks.Example.com."]}},
        {"name": "logistics", "match": {"path_prefix": "/callbacks/logistics"}},
        {"name": "exact", "match": {"path_prefix": "/callbacks/Exact", "case_sensitive": true}}]}"#;

    #[test]
    fn routes_on_the_canonical_path_host_and_guards() {
        let p = load(DEMO.as_bytes(), &|_| None).unwrap();
        assert_eq!(p.guards, vec!["/callbacks/".to_string()]);
        let host = "hooks.example.com.:80";
        assert_eq!(p.route("/callbacks;x=1/payments", host), Route::Channel(0));
        assert_eq!(p.route("/CALLBACKS/PAYMENTS", host), Route::Channel(0));
        assert_eq!(p.route(r"/callbacks\payments", host), Route::Channel(0));
        assert_eq!(
            p.route("/callbacks/logistics/../payments", host),
            Route::Refuse(Refusal::AmbiguousPath)
        );
        assert_eq!(
            p.route("/callbacks/payments", "other.example.com"),
            Route::Refuse(Refusal::NoChannel)
        );
        assert_eq!(p.route("/callbacks/Exact/x", ""), Route::Channel(2));
        assert_eq!(
            p.route("/callbacks/exact/x", ""),
            Route::Refuse(Refusal::NoChannel)
        );
        assert_eq!(p.route("/health", host), Route::Pass);
    }

    #[test]
    fn guard_prefixes_are_validated_with_their_path() {
        for (doc, want) in [
            (
                r#"{"reject_unmatched": ["callbacks/"]}"#,
                "reject_unmatched[0]: must start with '/'",
            ),
            (
                r#"{"reject_unmatched": ["/a/", "/callbacks//"]}"#,
                "reject_unmatched[1]: \"/callbacks//\" is not a canonical path",
            ),
            (
                r#"{"reject_unmatched": ["/callbacks/", "/Callbacks/"]}"#,
                "reject_unmatched[1]: duplicate guard prefix",
            ),
            (
                r#"{"reject_unmatched": ["/callbacks/?x"]}"#,
                "reject_unmatched[0]: \"/callbacks/?x\": character '?'",
            ),
            (
                r#"{"reject_unmatched": "/callbacks/"}"#,
                "reject_unmatched: invalid type",
            ),
        ] {
            let e = err(doc);
            assert!(e.starts_with(want), "{doc}: {e}");
        }
        let many: Vec<String> = (0..=super::MAX_GUARDS)
            .map(|i| format!("\"/g{i}/\""))
            .collect();
        let e = err(&format!(r#"{{"reject_unmatched": [{}]}}"#, many.join(",")));
        assert!(e.starts_with("reject_unmatched: at most"), "{e}");
        assert!(
            load(br#"{"reject_unmatched": []}"#, &|_| None)
                .unwrap()
                .guards
                .is_empty()
        );
    }

    #[test]
    fn channel_match_is_validated_with_its_path() {
        let ch = |m: &str| format!(r#"{{"channels": [{{"name": "a", "match": {m}}}]}}"#);
        for (m, want) in [
            (
                r#"{"path_prefix": "/callbacks/./payments"}"#,
                "channels[0].match.path_prefix: \"/callbacks/./payments\" is not a canonical path",
            ),
            (
                r#"{"path_prefix": "/cb", "hosts": ["a.example", "x/y"]}"#,
                "channels[0].match.hosts[1]: \"x/y\" is not a host name",
            ),
            (
                r#"{"path_prefix": "/cb", "hosts": ["."]}"#,
                "channels[0].match.hosts[0]",
            ),
            (
                r#"{"path_prefix": "/cb", "case_sensitive": "yes"}"#,
                "channels[0].match.case_sensitive: invalid type",
            ),
        ] {
            let e = err(&ch(m));
            assert!(e.starts_with(want), "{m}: {e}");
        }
    }

    #[test]
    fn a_channel_an_earlier_one_hides_is_refused() {
        let e = err(r#"{"channels": [
            {"name": "all", "match": {"path_prefix": "/callbacks/"}},
            {"name": "payments", "match": {"path_prefix": "/callbacks/payments"}}]}"#);
        assert!(
            e.starts_with("channels[1].match: never matches: channels[0] (\"all\")"),
            "{e}"
        );
        // The specific one first is fine.
        load(
            br#"{"channels": [
            {"name": "payments", "match": {"path_prefix": "/callbacks/payments"}},
            {"name": "all", "match": {"path_prefix": "/callbacks/"}}]}"#,
            &|_| None,
        )
        .unwrap();
    }
}

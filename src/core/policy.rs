//! The compiled, immutable runtime policy: what the filter consults at
//! request time. `config` builds it (checking every field and naming its
//! path); nothing here knows the JSON document.

use crate::core::admission::{AdmissionPolicy, ChannelLimit};
use crate::core::channel::{self as matching, ChannelMatch, Methods, Route};
use crate::core::deadletter::DeadLetterPolicy;
use crate::core::decision::{DEFAULT_LOG_PER_SECOND, LogLevel};
use crate::core::dedup::DedupPolicy;
use crate::core::mask::Masker;
use crate::core::metrics::ChannelStats;
use crate::core::resign::Resigner;
use crate::core::routing::RoutingPolicy;
use crate::core::signature::Verifier;
use serde::Deserialize;

/// Everything the filter needs at request time, validated.
#[derive(Debug)]
pub struct Policy {
    pub channels: Vec<ChannelPolicy>,
    pub admission: Option<AdmissionPolicy>,
    /// Header the Envoy route's `cluster_header` reads (lower case).
    pub cluster_header: std::rc::Rc<str>,
    /// Hold a channel request's headers until its body is checked
    /// (default); `false` is stream mode (see [`crate::core::hold`]).
    pub hold_headers: bool,
    /// How refusals are logged.
    pub refusal_log: RefusalLog,
    /// Where copies of failed callbacks go.
    pub dead_letter: Option<DeadLetterPolicy>,
    /// `reject_unmatched`: canonical, lower-case guard prefixes.
    pub guards: Vec<String>,
    /// `state`: fleet-wide dedup and limits (issue #15).
    pub state: Option<crate::core::state::StatePolicy>,
}

/// One channel, compiled.
#[derive(Debug)]
pub struct ChannelPolicy {
    pub name: String,
    /// `match.methods`.
    pub methods: Methods,
    /// `resign`: sign the forwarded body for the service.
    pub resign: Option<Resigner>,
    /// `limits`: the channel's own bucket.
    pub limit: Option<ChannelLimit>,
    pub matcher: ChannelMatch,
    pub max_body_bytes: u64,
    pub empty_action: EmptyAction,
    pub signature: Option<Verifier>,
    pub dedup: Option<DedupPolicy>,
    pub mask: Option<Masker>,
    /// `contract`: the body's JSON Schema, compiled.
    pub contract: Option<crate::core::contract::Contract>,
    pub routing: Option<RoutingPolicy>,
    /// Its per-request stat names, built once (see [`crate::core::metrics`]).
    pub stats: ChannelStats,
}

/// Channels for core tests, built with the typed constructors (no
/// configuration layer: `core` never depends on `config`).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::core::dedup::{DEFAULT_IN_FLIGHT_S, DEFAULT_MAX_IDS};
    use crate::core::signature::{Algorithm, HmacKey};

    /// `{"name": name, "match": {"path_prefix": "/"}}` with every default.
    pub(crate) fn channel(name: &str) -> ChannelPolicy {
        ChannelPolicy {
            name: name.to_string(),
            methods: Methods::default(),
            resign: None,
            limit: None,
            matcher: ChannelMatch::new("/", false, &[]),
            max_body_bytes: 1024 * 1024,
            empty_action: EmptyAction::default(),
            signature: None,
            dedup: None,
            mask: None,
            contract: None,
            routing: None,
            stats: ChannelStats::new(name, []),
        }
    }

    /// `"signature": {"scheme": "github", "secrets": [{"value": secret}]}`.
    pub(crate) fn github(secret: &str) -> Verifier {
        Verifier::github(vec![
            HmacKey::new(Algorithm::Sha256, secret.as_bytes()).unwrap(),
        ])
    }

    /// `"mask": {"fields": [fields...]}`.
    pub(crate) fn mask(fields: &[&str]) -> Masker {
        let fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
        Masker::new(&fields, false).unwrap()
    }

    /// `"dedup": {"window_s": window_s, "id_header": id_header}` on `ch`
    /// (with `allow_unsigned` when `ch` has no signature).
    pub(crate) fn dedup(ch: &ChannelPolicy, window_s: u64, id_header: Option<&str>) -> DedupPolicy {
        DedupPolicy::new(
            window_s,
            DEFAULT_IN_FLIGHT_S,
            DEFAULT_MAX_IDS,
            id_header,
            ch.signature.as_ref().map(Verifier::scheme_kind),
        )
    }
}

impl Policy {
    /// Where a request goes: the first channel whose match fits its
    /// canonical path and host, a 404 under a guard prefix, or through
    /// (see [`crate::core::channel`]).
    pub fn route(&self, path: &str, authority: &str) -> Route {
        matching::route(
            &self.channels,
            |c| &c.matcher,
            &self.guards,
            path,
            authority,
        )
    }
}

/// What to do with an empty callback.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum EmptyAction {
    /// Answer 204 at the proxy; the upstream never sees it.
    #[default]
    Reply,
    /// Count it and forward it.
    Forward,
}

/// `refusal_log`, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalLog {
    pub level: LogLevel,
    pub per_second: u32,
}

impl Default for RefusalLog {
    fn default() -> Self {
        Self {
            level: LogLevel::Info,
            per_second: DEFAULT_LOG_PER_SECOND,
        }
    }
}

//! The compiled, immutable runtime policy.

use super::{ConfigError, ConfigSpec, EnvLookup, FieldPath, admission, channel, routing};
use crate::core::admission::AdmissionPolicy;
use crate::core::channel::{ChannelMatch, RequestTarget};
use crate::core::dedup::DedupPolicy;
use crate::core::mask::Masker;
use crate::core::routing::RoutingPolicy;
use crate::core::signature::Verifier;
use std::collections::HashSet;

pub const DEFAULT_CLUSTER_HEADER: &str = "x-callback-cluster";

/// Everything the filter needs at request time, validated.
#[derive(Debug)]
pub struct Policy {
    pub channels: Vec<ChannelPolicy>,
    pub admission: Option<AdmissionPolicy>,
    /// Header the Envoy route's `cluster_header` reads (lower case).
    pub cluster_header: String,
    /// Hold a channel request's headers until its body is checked
    /// (default); `false` is stream mode (see [`crate::core::hold`]).
    pub hold_headers: bool,
    /// How refusals are logged.
    pub refusal_log: super::RefusalLog,
}

/// One channel, compiled.
#[derive(Debug)]
pub struct ChannelPolicy {
    pub name: String,
    pub matcher: ChannelMatch,
    pub max_body_bytes: u64,
    pub empty_action: channel::EmptyAction,
    pub signature: Option<Verifier>,
    pub dedup: Option<DedupPolicy>,
    pub mask: Option<Masker>,
    pub routing: Option<RoutingPolicy>,
}

impl Policy {
    /// The index of the first channel whose match fits (SPEC: first match
    /// wins).
    pub fn channel_for(&self, path: &str, authority: &str) -> Option<usize> {
        let target = RequestTarget::new(path, authority);
        self.channels
            .iter()
            .position(|c| c.matcher.matches_target(&target))
    }
}

pub(super) fn compile(spec: &ConfigSpec, env: EnvLookup<'_>) -> Result<Policy, ConfigError> {
    let root = FieldPath::root();
    let known_clusters =
        routing::compile_known_clusters(spec.routing.as_ref(), &root.key("routing"))?;
    let mut names = HashSet::new();
    let mut channels = Vec::with_capacity(spec.channels.len());
    for (i, ch) in spec.channels.iter().enumerate() {
        let path = root.key("channels").index(i);
        if !names.insert(ch.name.as_str()) {
            return Err(path
                .key("name")
                .error(format!("duplicate channel name {:?}", ch.name)));
        }
        channels.push(channel::compile(ch, &path, env, known_clusters)?);
    }
    let admission = match &spec.admission {
        Some(a) => Some(admission::compile(a, &root.key("admission"))?),
        None => None,
    };
    let cluster_header =
        routing::compile_cluster_header(spec.routing.as_ref(), &root.key("routing"))?;
    Ok(Policy {
        channels,
        admission,
        cluster_header,
        hold_headers: spec.hold_headers.unwrap_or(true),
        refusal_log: super::log::compile(spec.refusal_log.as_ref(), &root.key("refusal_log"))?,
    })
}

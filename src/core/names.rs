//! Every user-facing name, defined once: the headers the filter reads and
//! sets, the `error` codes of its local replies, and its metric names and
//! label keys (SPEC "Headers", "Local replies", "Metrics"). The rest of the
//! crate, the tests and the tools refer to these constants instead of
//! spelling the strings again.

/// Request and response header names (lower case).
pub mod header {
    /// Request: the provider's status hint; `204` marks an empty callback.
    pub const STATUS: &str = "x-callback-status";
    /// Request: the requested priority (default of
    /// `admission.priority_header`).
    pub const PRIORITY: &str = "x-callback-priority";
    /// Request, set by the filter: the routed cluster (default of
    /// `routing.cluster_header`, read by the Envoy route).
    pub const CLUSTER: &str = "x-callback-cluster";
    /// Request (and response in stream mode), set by the filter: the
    /// verified signature scheme.
    pub const VERIFIED_SIGNATURE: &str = "x-verified-signature";
    /// Request, set by the filter: the admitted priority.
    pub const PRIORITY_ADMITTED: &str = "x-callback-priority-admitted";
    /// Response, set by the filter: the trace id of the request.
    pub const TRACE_ID: &str = "x-callback-trace-id";
    /// Response of a suppressed redelivery.
    pub const DUPLICATE: &str = "x-callback-duplicate";
    /// Response of a `409`/`429`: seconds to wait.
    pub const RETRY_AFTER: &str = "retry-after";

    /// Headers only the filter sets: removed from every request before
    /// anything reads it (the configured cluster header too).
    pub const SET_BY_FILTER: [&str; 3] = [VERIFIED_SIGNATURE, CLUSTER, PRIORITY_ADMITTED];

    /// Standard Webhooks: delivery id, timestamp, signature (also the
    /// headers of `resign`).
    pub const WEBHOOK_ID: &str = "webhook-id";
    pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
    pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
    /// Svix: delivery id, timestamp, signature.
    pub const SVIX_ID: &str = "svix-id";
    pub const SVIX_TIMESTAMP: &str = "svix-timestamp";
    pub const SVIX_SIGNATURE: &str = "svix-signature";
    /// GitHub: delivery id, signature, legacy SHA-1 signature.
    pub const GITHUB_DELIVERY: &str = "x-github-delivery";
    pub const GITHUB_SIGNATURE_256: &str = "x-hub-signature-256";
    pub const GITHUB_SIGNATURE_SHA1: &str = "x-hub-signature";
    /// Shopify: delivery id, signature.
    pub const SHOPIFY_WEBHOOK_ID: &str = "x-shopify-webhook-id";
    pub const SHOPIFY_HMAC: &str = "x-shopify-hmac-sha256";
    /// Stripe: signature (with its timestamp).
    pub const STRIPE_SIGNATURE: &str = "stripe-signature";
    /// Slack: signature, timestamp.
    pub const SLACK_SIGNATURE: &str = "x-slack-signature";
    pub const SLACK_TIMESTAMP: &str = "x-slack-request-timestamp";
}

/// The `error` field of the filter's local replies (`status` for the
/// non-error ones); the rejections also count under these as the `reason`
/// of `callback_rejected_total`.
pub mod code {
    pub const EMPTY_CALLBACK: &str = "empty_callback";
    pub const TOO_LARGE: &str = "too_large";
    pub const BAD_JSON: &str = "bad_json";
    pub const UNSUPPORTED_ENCODING: &str = "unsupported_encoding";
    pub const BAD_DELIVERY_ID: &str = "bad_delivery_id";
    pub const DUPLICATE: &str = "duplicate";
    pub const IN_PROGRESS: &str = "in_progress";
    /// The fleet state store did not answer and `state.on_unavailable` is
    /// `reject` (`503`).
    pub const STATE_UNAVAILABLE: &str = "state_unavailable";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const SHED: &str = "shed";
    pub const PRIORITY_REJECTED: &str = "priority_rejected";
    pub const POLICY_ERROR: &str = "policy_error";
    pub const NO_CHANNEL: &str = "no_channel";
    pub const AMBIGUOUS_PATH: &str = "ambiguous_path";
    pub const CONTRACT: &str = "contract";
    /// The 401s of a failed signature, one per
    /// [`crate::core::signature::FailureReason`].
    pub const SIGNATURE_MISSING: &str = "signature_missing";
    pub const SIGNATURE_MALFORMED: &str = "signature_malformed";
    pub const SIGNATURE_MISMATCH: &str = "signature_mismatch";
    pub const SIGNATURE_EXPIRED: &str = "signature_expired";
}

/// Metric names (see [`crate::core::metrics`] for the label encoding).
pub mod metric {
    pub const REQUESTS_TOTAL: &str = "callback_requests_total";
    pub const EMPTY_TOTAL: &str = "callback_empty_total";
    pub const SIGNATURE_VERIFIED_TOTAL: &str = "callback_signature_verified_total";
    pub const SIGNATURE_FAILED_TOTAL: &str = "callback_signature_failed_total";
    pub const DUPLICATES_TOTAL: &str = "callback_duplicates_total";
    pub const MASKED_FIELDS_TOTAL: &str = "callback_masked_fields_total";
    pub const REJECTED_TOTAL: &str = "callback_rejected_total";
    pub const ADMISSION_TOTAL: &str = "callback_admission_total";
    /// Rego policy evaluations (`admission.policy`; labels `decision`: see
    /// [`crate::core::admission::rego::SOURCES`], `reason`: a declared reason,
    /// `other` or `none`).
    pub const ADMISSION_POLICY_TOTAL: &str = "callback_admission_policy_total";
    pub const ROUTED_TOTAL: &str = "callback_routed_total";
    pub const UPSTREAM_FAILURES_TOTAL: &str = "callback_upstream_failures_total";
    pub const DURATION_MS: &str = "callback_duration_ms";
    /// Dead-letter copies, by `channel` and `result` (`sent`, `failed`,
    /// `dropped`; see [`crate::core::deadletter`]).
    pub const DEADLETTER_TOTAL: &str = "callback_deadletter_total";
    /// Fleet-state store calls that failed (timeout, front or Redis down, an
    /// error answer), by `op` ([`crate::core::state::OPS`]); the configured
    /// `state.on_unavailable` fallback decided instead.
    pub const STATE_ERRORS_TOTAL: &str = "callback_state_errors_total";
    /// Requests refused by channel selection (label `reason`: `no_channel`,
    /// `ambiguous_path`; see [`crate::core::channel::Refusal`]).
    pub const UNMATCHED_TOTAL: &str = "callback_unmatched_total";

    /// `reason` of `callback_rejected_total`: a content-encoded body on a
    /// masking or `contract` channel (answered `415`).
    pub const REJECTED_UNSUPPORTED_ENCODING: &str = super::code::UNSUPPORTED_ENCODING;
    /// `reason` of `callback_rejected_total`: a delivery-id header repeated or
    /// not ASCII on an unsigned dedup channel (answered `400`).
    pub const REJECTED_BAD_DELIVERY_ID: &str = super::code::BAD_DELIVERY_ID;
    /// `reason` of `callback_rejected_total`: a body that claims JSON (or
    /// must be JSON, on a `contract` channel) and does not parse (answered
    /// `400`).
    pub const REJECTED_BAD_JSON: &str = super::code::BAD_JSON;
    /// `reason` of `callback_rejected_total`: a body that breaks its
    /// channel's `contract` (answered `422`).
    pub const REJECTED_CONTRACT: &str = super::code::CONTRACT;
    /// `reason` of `callback_rejected_total`: a retry while another attempt of
    /// the delivery is in flight (answered `409`).
    pub const REJECTED_IN_PROGRESS: &str = super::code::IN_PROGRESS;
    /// `reason` of `callback_rejected_total`: the fleet state store did not
    /// answer and `state.on_unavailable` is `reject` (answered `503`).
    pub const REJECTED_STATE_UNAVAILABLE: &str = super::code::STATE_UNAVAILABLE;
}

/// Metric label keys.
pub mod label {
    pub const CHANNEL: &str = "channel";
    pub const REASON: &str = "reason";
    pub const PRIORITY: &str = "priority";
    pub const DECISION: &str = "decision";
    pub const CLUSTER: &str = "cluster";
    pub const RESULT: &str = "result";
    /// `callback_state_errors_total`: the store operation (script name).
    pub const OP: &str = "op";

    /// Every label key we emit, for the `stats_tags` the configs ship.
    pub const ALL: [&str; 7] = [CHANNEL, REASON, PRIORITY, DECISION, CLUSTER, RESULT, OP];
}

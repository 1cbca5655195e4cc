//! Metric names and Istio-style label encoding.
//!
//! A labelled stat is one proxy stat whose name carries the labels:
//! `callback_empty_total_channel=.=payments;.;`; with several labels each
//! starts with `_` (`..._channel=.=a;.;_reason=.=missing;.;`) so one regex per
//! label, `(_<label>=\.=(.*?);\.;)`, cuts it out cleanly. The shipped bootstrap's
//! `stats_tags` (and Istio's `extraStatTags`) cut each `_<label>=.=<v>;.;`
//! out of the name again and turn it into a real tag, so Prometheus sees
//! `callback_empty_total{channel="payments"}`.

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
/// masking channel (answered `415`).
pub const REJECTED_UNSUPPORTED_ENCODING: &str = "unsupported_encoding";
/// `reason` of `callback_rejected_total`: a delivery-id header repeated or
/// not ASCII on an unsigned dedup channel (answered `400`).
pub const REJECTED_BAD_DELIVERY_ID: &str = "bad_delivery_id";
/// `reason` of `callback_rejected_total`: a retry while another attempt of
/// the delivery is in flight (answered `409`).
pub const REJECTED_IN_PROGRESS: &str = "in_progress";
/// `reason` of `callback_rejected_total`: the fleet state store did not
/// answer and `state.on_unavailable` is `reject` (answered `503`).
pub const REJECTED_STATE_UNAVAILABLE: &str = "state_unavailable";

/// Every label name we emit, for the `stats_tags` the configs ship.
pub const LABELS: [&str; 7] = [
    "channel", "reason", "priority", "decision", "cluster", "result", "op",
];

/// `base` followed by `_<label>=.=<value>;.;` for each label.
pub fn stat_name(base: &str, labels: &[(&str, &str)]) -> String {
    let mut name = String::with_capacity(base.len() + labels.len() * 24);
    name.push_str(base);
    for (label, value) in labels {
        name.push('_');
        name.push_str(label);
        name.push_str("=.=");
        push_sanitized(&mut name, value);
        name.push_str(";.;");
    }
    name
}

/// Label values must not contain the encoding's own separators; cluster
/// names come from user config, so anything outside a safe set becomes `_`.
fn push_sanitized(out: &mut String, value: &str) {
    if value.is_empty() {
        out.push('_');
        return;
    }
    out.extend(value.chars().map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':') {
            c
        } else {
            '_'
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn istio_style_names() {
        assert_eq!(
            stat_name(EMPTY_TOTAL, &[("channel", "payments")]),
            "callback_empty_total_channel=.=payments;.;"
        );
        assert_eq!(
            stat_name(
                SIGNATURE_FAILED_TOTAL,
                &[("channel", "a"), ("reason", "missing")]
            ),
            "callback_signature_failed_total_channel=.=a;.;_reason=.=missing;.;"
        );
    }

    #[test]
    fn values_cannot_break_the_encoding() {
        assert_eq!(
            stat_name("m", &[("cluster", "a;.;b=.=c d")]),
            "m_cluster=.=a___b___c_d;.;"
        );
        assert_eq!(stat_name("m", &[("cluster", "")]), "m_cluster=.=_;.;");
    }
}

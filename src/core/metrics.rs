//! Metric names and Istio-style label encoding.
//!
//! A labelled stat is one proxy stat whose name carries the labels:
//! `callback_empty_total_channel=.=payments;.;`; with several labels each
//! starts with `_` (`..._channel=.=a;.;_reason=.=missing;.;`) so one regex per
//! label, `(_<label>=\.=(.*?);\.;)`, cuts it out cleanly. The shipped bootstrap's
//! `stats_tags` (and Istio's `extraStatTags`) cut each `_<label>=.=<v>;.;`
//! out of the name again and turn it into a real tag, so Prometheus sees
//! `callback_empty_total{channel="payments"}`.

//! Names and label keys live in [`crate::core::names`].

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
    use crate::core::names::label::{CHANNEL, CLUSTER, REASON};
    use crate::core::names::metric::{EMPTY_TOTAL, SIGNATURE_FAILED_TOTAL};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn istio_style_names() {
        assert_eq!(
            stat_name(EMPTY_TOTAL, &[(CHANNEL, "payments")]),
            "callback_empty_total_channel=.=payments;.;"
        );
        assert_eq!(
            stat_name(
                SIGNATURE_FAILED_TOTAL,
                &[(CHANNEL, "a"), (REASON, "missing")]
            ),
            "callback_signature_failed_total_channel=.=a;.;_reason=.=missing;.;"
        );
    }

    #[test]
    fn values_cannot_break_the_encoding() {
        assert_eq!(
            stat_name("m", &[(CLUSTER, "a;.;b=.=c d")]),
            "m_cluster=.=a___b___c_d;.;"
        );
        assert_eq!(stat_name("m", &[(CLUSTER, "")]), "m_cluster=.=_;.;");
    }
}

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
//!
//! **Per request, no name is built.** A compiled channel carries its stat
//! names ([`ChannelStats`], one [`Stat`] per closed label value: every
//! rejection reason, signature failure, admission decision, routed
//! cluster); an effect carries a clone of one (a reference count), and the
//! worker finds its host metric id by the name's address ([`StatIds`]),
//! so neither a `String` nor a hash of one is made per increment. Only an
//! open label value (an upstream cluster the routing does not know)
//! builds its name for one use.

use crate::core::admission::{Decision, Priority};
use crate::core::names::{code, label, metric};
use crate::core::signature::FailureReason;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

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

/// A stat name as an effect carries it: one of a compiled policy's names
/// (shared), or a name built for one use.
#[derive(Debug, Clone)]
pub enum Stat {
    /// Built once by the compiled policy; the worker keys its metric id on
    /// this allocation.
    Shared(Rc<str>),
    /// Built for one use (an open label value).
    Once(String),
}

impl Stat {
    /// `base` with `labels` (see [`stat_name`]), to be shared.
    pub fn shared(base: &str, labels: &[(&str, &str)]) -> Self {
        Self::Shared(Rc::from(stat_name(base, labels)))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Shared(name) => name,
            Self::Once(name) => name,
        }
    }
}

impl std::ops::Deref for Stat {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Stat {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Stat {}

/// The reasons `callback_rejected_total` counts (its closed `reason` set).
const REJECTED_REASONS: [&str; 7] = [
    code::TOO_LARGE,
    metric::REJECTED_BAD_JSON,
    metric::REJECTED_UNSUPPORTED_ENCODING,
    metric::REJECTED_CONTRACT,
    metric::REJECTED_IN_PROGRESS,
    metric::REJECTED_BAD_DELIVERY_ID,
    metric::REJECTED_STATE_UNAVAILABLE,
];

/// Every per-request stat of one channel, named once when the policy is
/// compiled.
#[derive(Debug, Clone)]
pub struct ChannelStats {
    channel: String,
    pub requests: Stat,
    pub empty: Stat,
    pub signature_verified: Stat,
    pub duplicates: Stat,
    pub masked_fields: Stat,
    pub duration: Stat,
    /// By [`FailureReason::ALL`] position.
    signature_failed: Vec<Stat>,
    /// By [`REJECTED_REASONS`] position.
    rejected: Vec<Stat>,
    /// By `Priority::ALL` × `Decision::LABELS` position.
    admission: Vec<Stat>,
    /// By routing cluster index: `callback_routed_total`,
    /// `callback_upstream_failures_total`.
    routed: Vec<(Stat, Stat)>,
}

impl ChannelStats {
    /// The stats of channel `channel` whose routing (if any) picks among
    /// `clusters`.
    pub fn new<'a>(channel: &str, clusters: impl IntoIterator<Item = &'a str>) -> Self {
        let ch = (label::CHANNEL, channel);
        let one = |base| Stat::shared(base, &[ch]);
        Self {
            channel: channel.to_string(),
            requests: one(metric::REQUESTS_TOTAL),
            empty: one(metric::EMPTY_TOTAL),
            signature_verified: one(metric::SIGNATURE_VERIFIED_TOTAL),
            duplicates: one(metric::DUPLICATES_TOTAL),
            masked_fields: one(metric::MASKED_FIELDS_TOTAL),
            duration: one(metric::DURATION_MS),
            signature_failed: FailureReason::ALL
                .iter()
                .map(|r| {
                    Stat::shared(
                        metric::SIGNATURE_FAILED_TOTAL,
                        &[ch, (label::REASON, r.as_str())],
                    )
                })
                .collect(),
            rejected: REJECTED_REASONS
                .iter()
                .map(|r| Stat::shared(metric::REJECTED_TOTAL, &[ch, (label::REASON, r)]))
                .collect(),
            admission: Priority::ALL
                .iter()
                .flat_map(|p| Decision::LABELS.iter().map(move |d| (p.as_str(), *d)))
                .map(|(p, d)| Stat::Shared(Rc::from(admission_name(channel, p, d))))
                .collect(),
            routed: clusters
                .into_iter()
                .map(|c| {
                    let labels = [ch, (label::CLUSTER, c)];
                    (
                        Stat::shared(metric::ROUTED_TOTAL, &labels),
                        Stat::shared(metric::UPSTREAM_FAILURES_TOTAL, &labels),
                    )
                })
                .collect(),
        }
    }

    /// `callback_signature_failed_total` for `reason`.
    pub fn signature_failed(&self, reason: FailureReason) -> Stat {
        FailureReason::ALL
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.signature_failed.get(i))
            .cloned()
            .unwrap_or_else(|| {
                self.once(
                    metric::SIGNATURE_FAILED_TOTAL,
                    &[(label::REASON, reason.as_str())],
                )
            })
    }

    /// `callback_rejected_total` for `reason`.
    pub fn rejected(&self, reason: &str) -> Stat {
        REJECTED_REASONS
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.rejected.get(i))
            .cloned()
            .unwrap_or_else(|| self.once(metric::REJECTED_TOTAL, &[(label::REASON, reason)]))
    }

    /// `callback_admission_total` for `decision`.
    pub fn admission(&self, decision: Decision) -> Stat {
        let priority = decision.priority();
        let p = Priority::ALL.iter().position(|p| *p == priority);
        let d = Decision::LABELS
            .iter()
            .position(|d| *d == decision.as_str());
        p.zip(d)
            .and_then(|(p, d)| self.admission.get(p * Decision::LABELS.len() + d))
            .cloned()
            .unwrap_or_else(|| {
                Stat::Once(admission_name(
                    &self.channel,
                    priority.as_str(),
                    decision.as_str(),
                ))
            })
    }

    /// `callback_routed_total` to `cluster` (at `index` among the routing
    /// clusters).
    pub fn routed(&self, index: Option<usize>, cluster: &str) -> Stat {
        match index.and_then(|i| self.routed.get(i)) {
            Some((routed, _)) => routed.clone(),
            None => self.once(metric::ROUTED_TOTAL, &[(label::CLUSTER, cluster)]),
        }
    }

    /// `callback_upstream_failures_total` of `cluster` (at `index` among
    /// the routing clusters, if it is one).
    pub fn upstream_failures(&self, index: Option<usize>, cluster: &str) -> Stat {
        match index.and_then(|i| self.routed.get(i)) {
            Some((_, failures)) => failures.clone(),
            None => self.once(
                metric::UPSTREAM_FAILURES_TOTAL,
                &[(label::CLUSTER, cluster)],
            ),
        }
    }

    /// A stat of this channel with one more label, built for one use.
    fn once(&self, base: &str, more: &[(&str, &str)]) -> Stat {
        let mut labels = vec![(label::CHANNEL, self.channel.as_str())];
        labels.extend_from_slice(more);
        Stat::Once(stat_name(base, &labels))
    }
}

fn admission_name(channel: &str, priority: &str, decision: &str) -> String {
    stat_name(
        metric::ADMISSION_TOTAL,
        &[
            (label::CHANNEL, channel),
            (label::PRIORITY, priority),
            (label::DECISION, decision),
        ],
    )
}

/// A worker's metric ids: by name, and by the address of a [`Stat::Shared`]
/// name (an id found once per shared name; the name is kept alive here so
/// its address is never reused while it is a key). `define` asks the host
/// for a new id.
#[derive(Debug, Default)]
pub struct StatIds {
    by_name: HashMap<String, u32>,
    by_shared: HashMap<usize, (Rc<str>, u32), BuildHasherDefault<AddressHasher>>,
}

/// Hashes the address key of [`StatIds`]: a multiply and a fold spread an
/// address (already unique) over the table, at a fraction of SipHash's
/// cost per increment.
#[derive(Debug, Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let h = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(u64::try_from(n).unwrap_or(u64::MAX));
    }
}

impl StatIds {
    /// The id of `stat`, defining it (`define`) the first time.
    pub fn id(&mut self, stat: &Stat, define: impl FnOnce(&str) -> Option<u32>) -> Option<u32> {
        match stat {
            Stat::Shared(name) => {
                let key = Rc::as_ptr(name).cast::<u8>() as usize;
                if let Some((_, id)) = self.by_shared.get(&key) {
                    return Some(*id);
                }
                let id = self.id_by_name(name, define)?;
                self.by_shared.insert(key, (name.clone(), id));
                Some(id)
            }
            Stat::Once(name) => self.id_by_name(name, define),
        }
    }

    /// The id of the stat named `name`, defining it the first time.
    pub fn id_by_name(
        &mut self,
        name: &str,
        define: impl FnOnce(&str) -> Option<u32>,
    ) -> Option<u32> {
        if let Some(id) = self.by_name.get(name) {
            return Some(*id);
        }
        let id = define(name)?;
        self.by_name.insert(name.to_string(), id);
        Some(id)
    }

    /// Drops the shared names of earlier policies (a new configuration).
    pub fn forget_shared(&mut self) {
        self.by_shared.clear();
    }
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
    fn channel_stats_are_named_once_and_shared() {
        let stats = ChannelStats::new("pay", ["r1", "r2"]);
        let a = stats.rejected(code::TOO_LARGE);
        let b = stats.rejected(code::TOO_LARGE);
        assert_eq!(
            &*a,
            "callback_rejected_total_channel=.=pay;.;_reason=.=too_large;.;"
        );
        assert!(matches!((&a, &b), (Stat::Shared(x), Stat::Shared(y)) if Rc::ptr_eq(x, y)));
        assert_eq!(
            &*stats.admission(Decision::Demoted(Priority::Low)),
            "callback_admission_total_channel=.=pay;.;_priority=.=low;.;_decision=.=demoted;.;"
        );
        assert_eq!(
            &*stats.signature_failed(FailureReason::Expired),
            stat_name(
                metric::SIGNATURE_FAILED_TOTAL,
                &[(CHANNEL, "pay"), (REASON, FailureReason::Expired.as_str())]
            )
        );
        assert_eq!(
            &*stats.routed(Some(1), "r2"),
            "callback_routed_total_channel=.=pay;.;_cluster=.=r2;.;"
        );
        // A cluster outside the routing: named for this one use.
        let other = stats.upstream_failures(None, "xds-7");
        assert!(matches!(other, Stat::Once(_)));
        assert_eq!(
            &*other,
            "callback_upstream_failures_total_channel=.=pay;.;_cluster=.=xds-7;.;"
        );
    }

    #[test]
    fn stat_ids_define_each_name_once() {
        let stats = ChannelStats::new("pay", []);
        let mut ids = StatIds::default();
        let defined = std::cell::RefCell::new(Vec::new());
        let define = |name: &str| {
            defined.borrow_mut().push(name.to_string());
            Some(u32::try_from(defined.borrow().len()).unwrap())
        };
        let requests = ids.id(&stats.requests, define);
        assert_eq!(ids.id(&stats.requests.clone(), define), requests);
        // The same name built for one use finds the same id.
        let once = Stat::Once(stats.requests.to_string());
        assert_eq!(ids.id(&once, define), requests);
        assert_eq!(ids.id(&stats.empty, define), Some(2));
        assert_eq!(defined.borrow().len(), 2);
        // A new policy's names (other allocations) map to the same ids.
        ids.forget_shared();
        let again = ChannelStats::new("pay", []);
        assert_eq!(ids.id(&again.requests, define), requests);
        assert_eq!(defined.borrow().len(), 2);
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

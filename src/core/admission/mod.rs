//! Priority admission and shedding (SPEC `admission`). STUB: API the filter calls.

use crate::config::{AdmissionSpec, ConfigError, FieldPath};
use crate::core::shared::{SharedStore, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    High,
    Normal,
    Low,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Normal => "normal",
            Self::Low => "low",
        }
    }
}

/// Outcome of [`AdmissionPolicy::decide`]; `decision` label of
/// `callback_admission_total` is [`Decision::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted at the requested priority.
    Admitted(Priority),
    /// Asked for `high`, not allowed, admitted as `normal`.
    Demoted(Priority),
    /// Refused by policy: 403.
    Denied(Priority),
    /// Over its bucket or shed for capacity: 429 with `retry-after` seconds.
    Shed {
        priority: Priority,
        retry_after_s: u64,
    },
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admitted(_) => "admitted",
            Self::Demoted(_) => "demoted",
            Self::Denied(_) => "denied",
            Self::Shed { .. } => "shed",
        }
    }
}

#[derive(Debug)]
pub struct AdmissionPolicy {
    priority_header: String,
}

impl AdmissionPolicy {
    pub fn compile(spec: &AdmissionSpec, _path: &FieldPath) -> Result<Self, ConfigError> {
        Ok(Self {
            priority_header: spec
                .priority_header
                .clone()
                .unwrap_or_else(|| "x-callback-priority".to_string())
                .to_ascii_lowercase(),
        })
    }

    pub fn priority_header(&self) -> &str {
        &self.priority_header
    }

    /// Classifies and admits one request: `requested` is the priority
    /// header's value, `identity` the peer's SPIFFE ID (None without mTLS).
    pub fn decide(
        &self,
        _store: &dyn SharedStore,
        _requested: Option<&str>,
        _identity: Option<&str>,
        _now_ms: u64,
    ) -> Result<Decision, StoreError> {
        Ok(Decision::Admitted(Priority::Normal))
    }
}

//! Delivery dedup (SPEC `dedup`). STUB: API the filter calls.

use crate::config::{ConfigError, DedupSpec, FieldPath, SignatureSpec};
use crate::core::headers::Headers;
use crate::core::shared::{SharedStore, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupOutcome {
    /// First delivery inside the window: forward it (it is now remembered).
    First,
    /// Seen inside the window: answer 200 + `x-callback-duplicate: true`.
    Duplicate,
}

#[derive(Debug)]
pub struct DedupPolicy {
    pub window_s: u64,
}

impl DedupPolicy {
    pub fn compile(
        spec: &DedupSpec,
        _signature: Option<&SignatureSpec>,
        path: &FieldPath,
    ) -> Result<Self, ConfigError> {
        if spec.window_s == 0 {
            return Err(path.key("window_s").error("must be at least 1"));
        }
        Ok(Self {
            window_s: spec.window_s,
        })
    }

    /// The delivery id of a request (headers first, then the body).
    pub fn delivery_id(&self, _headers: &Headers, _body: &[u8]) -> Option<String> {
        None
    }

    /// Remembers `id` for `channel` and says whether it was already seen.
    pub fn check(
        &self,
        _store: &dyn SharedStore,
        _channel: &str,
        _id: &str,
        _now_unix_s: u64,
    ) -> Result<DedupOutcome, StoreError> {
        Ok(DedupOutcome::First)
    }

    /// Forgets `id` again (the upstream failed; let the retry through).
    pub fn forget(
        &self,
        _store: &dyn SharedStore,
        _channel: &str,
        _id: &str,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

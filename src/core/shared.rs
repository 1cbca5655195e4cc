//! State shared by every worker thread of one Envoy (proxy-wasm shared
//! data), seen through a small trait so the algorithms that use it (dedup,
//! token buckets, routing health) are unit-tested with [`MemoryStore`].
//!
//! Shared data never evicts: every user of this trait stores a bounded
//! number of keys of bounded size.

use std::cell::RefCell;
use std::collections::HashMap;

/// Why a shared-data operation did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Someone else wrote the key since we read it (compare-and-swap lost).
    CasMismatch,
    /// Conflicts kept happening past the retry bound.
    Contended,
    /// The host refused the call.
    Host,
}

/// Key/value store with compare-and-swap.
pub trait SharedStore {
    /// The value and its CAS token, or `None` when the key was never set.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    /// Writes `value`. With `cas: Some(token)` the write only happens if the
    /// key is unchanged since the read that returned `token`; with `None` it
    /// is unconditional (used to create a key).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// How often [`update`] retries a lost compare-and-swap before giving up.
pub const MAX_CAS_RETRIES: usize = 8;

/// Read-modify-write with bounded retries: `f` gets the current value (if
/// any) and returns the new value and a result for the caller.
pub fn update<T>(
    store: &dyn SharedStore,
    key: &str,
    mut f: impl FnMut(Option<&[u8]>) -> (Vec<u8>, T),
) -> Result<T, StoreError> {
    for _ in 0..MAX_CAS_RETRIES {
        let current = store.get(key)?;
        let (value, cas) = match &current {
            Some((v, cas)) => (Some(v.as_slice()), Some(*cas)),
            None => (None, None),
        };
        let (new, out) = f(value);
        match store.set(key, &new, cas) {
            Ok(()) => return Ok(out),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Contended)
}

/// Creates `key` with an empty value if it does not exist yet.
///
/// The host only compares-and-swaps keys that exist: two workers creating
/// the same key at the same moment both succeed, and one write is lost. The
/// root context calls this for its keys when the configuration loads,
/// before traffic, so request-time updates always find the key and CAS
/// holds. Every user of a key reads an empty value as its initial state.
pub fn create_if_absent(store: &dyn SharedStore, key: &str) -> Result<(), StoreError> {
    if store.get(key)?.is_none() {
        store.set(key, &[], None)?;
    }
    Ok(())
}

/// Recent reads of shared data, kept per worker for `ttl_ms`: for state a
/// request may see slightly stale (routing weights), so that reading it
/// costs a host call only every `ttl_ms` instead of on every request.
/// Writes through a view go to the real store and drop the cached entry.
/// Holds one entry per key read, so it is bounded by the keys its users
/// read (one per routed channel).
#[derive(Debug)]
pub struct ReadCache {
    ttl_ms: u64,
    entries: RefCell<HashMap<String, CachedRead>>,
}

/// A read (value and CAS token, or absent) and when it was made.
type CachedRead = (Option<(Vec<u8>, u32)>, u64);

impl ReadCache {
    pub fn new(ttl_ms: u64) -> Self {
        Self {
            ttl_ms,
            entries: RefCell::new(HashMap::new()),
        }
    }

    /// A [`SharedStore`] over `inner` that answers reads from the cache
    /// while they are younger than the TTL at `now_ms`.
    pub fn view<'a>(&'a self, inner: &'a dyn SharedStore, now_ms: u64) -> CachedView<'a> {
        CachedView {
            cache: self,
            inner,
            now_ms,
        }
    }

    pub fn invalidate(&self, key: &str) {
        self.entries.borrow_mut().remove(key);
    }
}

/// See [`ReadCache::view`].
pub struct CachedView<'a> {
    cache: &'a ReadCache,
    inner: &'a dyn SharedStore,
    now_ms: u64,
}

impl SharedStore for CachedView<'_> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        if let Some((value, at)) = self.cache.entries.borrow().get(key)
            && self.now_ms >= *at
            && self.now_ms - *at < self.cache.ttl_ms
        {
            return Ok(value.clone());
        }
        let value = self.inner.get(key)?;
        self.cache
            .entries
            .borrow_mut()
            .insert(key.to_string(), (value.clone(), self.now_ms));
        Ok(value)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        self.cache.invalidate(key);
        self.inner.set(key, value, cas)
    }
}

/// In-memory [`SharedStore`] for tests and native tools; CAS tokens count
/// writes like Envoy's.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(self.entries.borrow().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut entries = self.entries.borrow_mut();
        let next = match (entries.get(key), cas) {
            (Some((_, current)), Some(expected)) if *current != expected => {
                return Err(StoreError::CasMismatch);
            }
            (Some((_, current)), _) => current.wrapping_add(1),
            (None, _) => 1,
        };
        entries.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
}

/// Test doubles shared by the modules that use shared data.
#[cfg(test)]
pub(crate) mod testing {
    use super::{SharedStore, StoreError};

    /// A store whose host calls all fail.
    pub(crate) struct BrokenStore;

    impl SharedStore for BrokenStore {
        fn get(&self, _: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            Err(StoreError::Host)
        }
        fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
            Err(StoreError::Host)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn update_reads_modifies_and_writes() {
        let store = MemoryStore::new();
        for expected in 1..=3u8 {
            let got = update(&store, "k", |v| {
                let n = v.and_then(|v| v.first().copied()).unwrap_or(0) + 1;
                (vec![n], n)
            })
            .unwrap();
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn stale_cas_is_refused() {
        let store = MemoryStore::new();
        store.set("k", b"a", None).unwrap();
        let (_, cas) = store.get("k").unwrap().unwrap();
        store.set("k", b"b", Some(cas)).unwrap();
        assert_eq!(
            store.set("k", b"c", Some(cas)),
            Err(StoreError::CasMismatch)
        );
    }

    #[test]
    fn create_if_absent_keeps_existing_values() {
        let store = MemoryStore::new();
        create_if_absent(&store, "k").unwrap();
        assert_eq!(store.get("k").unwrap().map(|(v, _)| v), Some(vec![]));
        store.set("k", b"data", None).unwrap();
        create_if_absent(&store, "k").unwrap();
        assert_eq!(
            store.get("k").unwrap().map(|(v, _)| v),
            Some(b"data".to_vec())
        );
    }

    #[test]
    fn read_cache_serves_fresh_reads_and_refetches_stale_ones() {
        let store = MemoryStore::new();
        store.set("k", b"v1", None).unwrap();
        let cache = ReadCache::new(100);
        assert_eq!(
            cache.view(&store, 1_000).get("k").unwrap().map(|(v, _)| v),
            Some(b"v1".to_vec())
        );
        store.set("k", b"v2", None).unwrap();
        // Within the TTL: the cached value.
        assert_eq!(
            cache.view(&store, 1_099).get("k").unwrap().map(|(v, _)| v),
            Some(b"v1".to_vec())
        );
        // Past it (or with a clock that went backwards): fetched again.
        assert_eq!(
            cache.view(&store, 1_100).get("k").unwrap().map(|(v, _)| v),
            Some(b"v2".to_vec())
        );
        store.set("k", b"v3", None).unwrap();
        assert_eq!(
            cache.view(&store, 900).get("k").unwrap().map(|(v, _)| v),
            Some(b"v3".to_vec())
        );
        // A write through the view drops the entry.
        cache.view(&store, 901).set("k", b"v4", None).unwrap();
        assert_eq!(
            cache.view(&store, 902).get("k").unwrap().map(|(v, _)| v),
            Some(b"v4".to_vec())
        );
        // Absent keys are cached as absent too.
        assert_eq!(cache.view(&store, 903).get("none").unwrap(), None);
    }

    struct AlwaysConflict;
    impl SharedStore for AlwaysConflict {
        fn get(&self, _: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            Ok(Some((vec![], 1)))
        }
        fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
            Err(StoreError::CasMismatch)
        }
    }

    #[test]
    fn retries_are_bounded() {
        assert_eq!(
            update(&AlwaysConflict, "k", |_| (vec![], ())),
            Err(StoreError::Contended)
        );
    }
}

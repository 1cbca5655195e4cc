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

//! The properties callback-guard's fuzz targets check, as plain functions
//! of the fuzzer's bytes.
//!
//! Each module's `check` panics (an assertion) when a property fails; a
//! panic anywhere below it (in the filter's code) is a crash as well. The
//! fuzz targets in `fuzz_targets/` call these functions, and the stable
//! test `tests/fuzz_regressions.rs` of the main crate includes this file
//! and replays every input under `fuzz/regressions/<target>/` and
//! `fuzz/seeds/<target>/` through the same check, so a finding stays a
//! regression test on the pinned toolchain (`make test`).
//!
//! Only crates the main crate already depends on are used here (serde_json,
//! hmac, sha1, sha2, base64, ed25519-dalek), so the include compiles there.
//! The oracles compute MACs, normalised paths and glob matches on their
//! own, never through the filter's code.

pub mod channel;
pub mod config;
pub mod dedup;
pub mod headers;
pub mod mask;
pub mod principal;
pub mod signature;
pub mod trace;
mod util;

/// A target's check.
pub type Check = fn(&[u8]);

/// Every target by name (the directory names under `fuzz/regressions/`,
/// `fuzz/seeds/` and `fuzz/corpus/`, and the `[[bin]]` names).
pub const TARGETS: [(&str, Check); 8] = [
    ("config", config::check),
    ("mask", mask::check),
    ("signature", signature::check),
    ("trace", trace::check),
    ("channel", channel::check),
    ("principal", principal::check),
    ("dedup", dedup::check),
    ("headers", headers::check),
];

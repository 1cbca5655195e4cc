//! The pure core: every decision the filter makes, as plain Rust with no
//! `proxy_wasm` types. It runs in native unit tests and, unchanged, under
//! `wasm-bindgen-test` on `wasm32-unknown-unknown`.

pub mod abi_map;
pub mod admission;
pub mod channel;
pub mod contract;
pub mod deadletter;
pub mod decimal;
pub mod decision;
pub mod dedup;
pub mod empty;
pub mod encoding;
pub mod headers;
pub mod hold;
pub mod mask;
pub mod metrics;
pub mod names;
pub mod pipeline;
pub mod policy;
pub mod reply;
pub mod request;
pub mod resign;
pub mod rng;
pub mod routing;
pub mod shared;
pub mod signature;
pub mod state;
pub mod trace;

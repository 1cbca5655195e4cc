//! callback-guard: a proxy-wasm HTTP filter that governs webhook
//! (callback) traffic. See README.md and SPEC.md.
//!
//! Layout: [`config`] parses and compiles the plugin configuration into a
//! [`core::policy::Policy`]; [`core`] holds every decision as plain Rust; `host`
//! is the only code that talks to the proxy; `filter` holds the thin
//! root and HTTP contexts.

pub mod config;
pub mod core;

// The shell is only entered from the wasm entry point; natively it is
// compiled (and linted) but never called.
#[cfg(feature = "filter")]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod filter;
#[cfg(feature = "filter")]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod host;

#[cfg(all(feature = "filter", target_arch = "wasm32"))]
proxy_wasm::main! {{
    filter::install();
}}

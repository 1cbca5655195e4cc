//! The proxy-wasm contexts: a root context per plugin configuration and an
//! HTTP context per request. They ask the core what to do and map the
//! answer to actions, headers and local replies; every host call goes
//! through [`crate::host`].

mod http_context;
mod root_context;
#[allow(dead_code)] // the request flow uses it in the next step of issue #15
pub(crate) mod state;
mod worker;

use crate::host;

/// Called once when the VM starts (`proxy_wasm::main!`).
pub fn install() {
    // With `panic = "abort"` a panic still kills the VM; at least say where.
    std::panic::set_hook(Box::new(|info| {
        host::log_critical(&format!("callback-guard panicked: {info}"));
    }));
    proxy_wasm::set_root_context(|_| Box::new(root_context::Root::new()));
}

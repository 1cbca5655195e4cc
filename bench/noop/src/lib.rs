//! A proxy-wasm HTTP filter that does nothing: every callback keeps the
//! default (`Action::Continue`). The benchmark's control for "any wasm filter".

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

struct Root;
impl Context for Root {}
impl RootContext for Root {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop;
impl Context for Noop {}
impl HttpContext for Noop {}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(Root));
}}

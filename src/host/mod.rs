//! The host adapter: the only code that talks to the proxy.
//!
//! Every call goes through [`abi`], our own declarations of the proxy-wasm
//! imports, and its status is handled here: a surprising host answer
//! becomes a logged fallback, never a panic (a panic kills the VM, and
//! every later request on that worker fails). Host data is read as bytes:
//! header values are converted with `from_utf8_lossy`, so a byte 0x80-0xFF
//! is data (the core refuses it where it matters, see
//! [`crate::core::headers`]), never a crash.
//!
//! Audit of the proxy-wasm SDK (0.2.5) as this filter uses it:
//!
//! | SDK surface | can panic on | used here |
//! |---|---|---|
//! | `hostcalls::get_map`, `get_map_value`, `get_map_bytes` (names), `get_http_*_header(s)` | non-UTF-8 names/values (`from_utf8().unwrap()`) | no: [`abi::get_map_bytes`] / [`abi::get_map_value`] return bytes |
//! | every other `hostcalls::*` (`log`, `get_buffer`, `set_buffer`, `set_map_value`, `remove_map_value`, `get_property`, `send_http_response`, `get/set_shared_data`, `define/increment/record_metric`, `get_current_time`, `set_tick_period`) | any status outside its `match` (`panic!("unexpected status")`); a status outside `types::Status` is UB in its extern declaration | no: [`abi`] returns `u32` statuses as [`abi::HostError`] |
//! | `Context`/`HttpContext` helper methods (`get_http_request_header`, `set_http_request_header`, `send_http_response`, ...) | they `unwrap()` the hostcalls above | never called |
//! | `hostcalls::dispatch_http_call` (dead-letter copies, fleet-state calls) | statuses other than `Ok`/`BadArgument`/`InternalFailure`, which Envoy's `httpCall` does not return | used, for this one call: the SDK's dispatcher must register the token, or it panics on the answer |
//! | `dispatcher` (`proxy_on_*` exports) | host protocol violations only: unknown context or token ids, `set_effective_context` failing | used (the SDK's context dispatch); not reachable from request data |
//! | `proxy_on_memory_allocate` | allocation failure (abort) | used: the host writes returned data there |
//!
//! The filter code itself has no `unwrap`/`expect`/`panic` outside tests
//! (clippy denies them), and the release build aborts on a panic anyway.

pub mod abi;

use crate::core::headers::Headers;
use crate::core::metrics::{Stat, StatIds};
use crate::core::shared::{SharedStore, StoreError};

pub fn log_info(message: &str) {
    let _ = abi::log(abi::LOG_INFO, message);
}

pub fn log_warn(message: &str) {
    let _ = abi::log(abi::LOG_WARN, message);
}

pub fn log_error(message: &str) {
    let _ = abi::log(abi::LOG_ERROR, message);
}

pub fn log_critical(message: &str) {
    let _ = abi::log(abi::LOG_CRITICAL, message);
}

/// Logs at the refusal-log level (`Off` logs nothing).
pub fn log_at(level: crate::core::decision::LogLevel, message: &str) {
    use crate::core::decision::LogLevel;
    let level = match level {
        LogLevel::Off => return,
        LogLevel::Debug => abi::LOG_DEBUG,
        LogLevel::Info => abi::LOG_INFO,
        LogLevel::Warn => abi::LOG_WARN,
    };
    let _ = abi::log(level, message);
}

/// Stores `value` as the stream's filter state `wasm.<name>` (readable by
/// access logs as `%FILTER_STATE(wasm.<name>:PLAIN)%`).
pub fn set_filter_state(name: &str, value: &[u8]) {
    let _ = abi::set_property(&[name], value);
}

/// Host wall clock in milliseconds since the Unix epoch (0 if unavailable).
pub fn now_ms() -> u64 {
    abi::current_time_ns().map(|ns| ns / 1_000_000).unwrap_or(0)
}

/// Asks for `on_tick` every `ms` milliseconds.
pub fn set_tick_period_ms(ms: u64) {
    let ms = u32::try_from(ms).unwrap_or(u32::MAX);
    if let Err(status) = abi::set_tick_period_ms(ms) {
        log_warn(&format!(
            "callback-guard: cannot set the tick period: {status:?}"
        ));
    }
}

/// The plugin configuration bytes (empty when none was given).
pub fn plugin_configuration() -> Vec<u8> {
    abi::get_buffer(abi::BUFFER_PLUGIN_CONFIGURATION, 0, usize::MAX)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// 64 random bits from the WASI random source (std's hash keys are drawn
/// from `random_get`), mixed with the clock so a host without it still
/// gives distinct seeds.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    h.finish()
}

/// Reads a VM environment variable (Envoy `vm_config.environment_variables`,
/// Istio `vmConfig.env`).
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

// ---- request / response headers -------------------------------------------

/// The request headers as one snapshot; values that are not UTF-8 are kept
/// (lossily) as data.
pub fn request_headers() -> Headers {
    Headers::from_map(&abi::get_map_bytes(abi::MAP_HTTP_REQUEST_HEADERS).unwrap_or_default())
}

pub fn set_request_header(name: &str, value: &str) {
    let _ = abi::replace_map_value(abi::MAP_HTTP_REQUEST_HEADERS, name, value.as_bytes());
}

pub fn remove_request_header(name: &str) {
    let _ = abi::remove_map_value(abi::MAP_HTTP_REQUEST_HEADERS, name);
}

/// A response header's value; `None` when absent or not UTF-8.
pub fn response_header(name: &str) -> Option<String> {
    let bytes = abi::get_map_value(abi::MAP_HTTP_RESPONSE_HEADERS, name)
        .ok()
        .flatten()?;
    String::from_utf8(bytes).ok()
}

pub fn set_response_header(name: &str, value: &str) {
    let _ = abi::replace_map_value(abi::MAP_HTTP_RESPONSE_HEADERS, name, value.as_bytes());
}

// ---- request body ---------------------------------------------------------

/// The buffered request body (`size` is the total buffered so far).
pub fn request_body(size: usize) -> Option<Vec<u8>> {
    if size == 0 {
        return Some(Vec::new());
    }
    abi::get_buffer(abi::BUFFER_HTTP_REQUEST_BODY, 0, size)
        .ok()
        .map(Option::unwrap_or_default)
}

/// Replaces the whole buffered request body (`old_size` bytes) with `body`.
pub fn replace_request_body(old_size: usize, body: &[u8]) -> bool {
    abi::set_buffer(abi::BUFFER_HTTP_REQUEST_BODY, 0, old_size, body).is_ok()
}

// ---- local replies ----------------------------------------------------------

pub fn send_reply(status: u32, headers: &[(&str, &str)], body: &[u8]) -> bool {
    match abi::send_local_response(status, headers, body) {
        Ok(()) => true,
        Err(status) => {
            log_error(&format!("callback-guard: local reply {status:?} failed"));
            false
        }
    }
}

// ---- properties ---------------------------------------------------------------

/// A string property such as `["connection", "uri_san_peer_certificate"]`;
/// `None` when absent, empty or not UTF-8.
pub fn property_string(path: &[&str]) -> Option<String> {
    let bytes = abi::get_property(path).ok().flatten()?;
    let s = String::from_utf8(bytes).ok()?;
    (!s.is_empty()).then_some(s)
}

/// The peer's SPIFFE ID from its mTLS certificate, if any.
pub fn peer_spiffe_id() -> Option<String> {
    property_string(&["connection", "uri_san_peer_certificate"])
}

// ---- outgoing calls -------------------------------------------------------------

/// POSTs `body` to `cluster`; the answer comes to the calling context's
/// `on_http_call_response` with the returned token. This one call goes
/// through the SDK's `hostcalls::dispatch_http_call`, because the SDK's
/// dispatcher must register the token to route the answer (it `expect`s a
/// registered token). That wrapper handles `Ok`, `BadArgument` (unknown
/// cluster) and `InternalFailure`, the statuses Envoy's `httpCall` returns.
pub fn dispatch_post(
    cluster: &str,
    path: &str,
    authority: &str,
    body: &[u8],
    timeout_ms: u32,
) -> Option<u32> {
    let headers = vec![
        (":method", "POST"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/json"),
    ];
    abi::count_http_call();
    proxy_wasm::hostcalls::dispatch_http_call(
        cluster,
        headers,
        Some(body),
        Vec::new(),
        std::time::Duration::from_millis(u64::from(timeout_ms)),
    )
    .ok()
}

/// Sends an outgoing HTTP call with these headers (pseudo-headers
/// included) and body; the answer comes to the calling context's
/// `on_http_call_response` with the returned token (`None`: not sent, e.g.
/// an unknown cluster). Same SDK wrapper as [`dispatch_post`], for the
/// same reason.
pub fn dispatch_call(
    cluster: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout_ms: u32,
) -> Option<u32> {
    abi::count_http_call();
    proxy_wasm::hostcalls::dispatch_http_call(
        cluster,
        headers.to_vec(),
        body,
        Vec::new(),
        std::time::Duration::from_millis(u64::from(timeout_ms)),
    )
    .ok()
}

/// The body of the answer to an outgoing call (`size` from
/// `on_http_call_response`), at most `max` bytes; empty when none.
pub fn call_response_body(size: usize, max: usize) -> Vec<u8> {
    abi::get_buffer(abi::BUFFER_HTTP_CALL_RESPONSE_BODY, 0, size.min(max))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Resumes the request this HTTP context paused (after its outgoing call
/// answered). `false` when the host refused (the stream is gone).
pub fn resume_request() -> bool {
    abi::continue_stream(abi::STREAM_HTTP_REQUEST).is_ok()
}

/// The `:status` of the answer to an outgoing call (0 when none).
pub fn call_response_status() -> u32 {
    abi::get_map_value(abi::MAP_HTTP_CALL_RESPONSE_HEADERS, ":status")
        .ok()
        .flatten()
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

// ---- shared data --------------------------------------------------------------

/// Proxy shared data: one store per VM id, shared by every worker thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct SharedData;

impl SharedStore for SharedData {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        abi::get_shared_data(key).map_err(|_| StoreError::Host)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        // A CAS token of 0 means "unconditional" to the host, the same as None.
        match abi::set_shared_data(key, value, cas.unwrap_or(0)) {
            Ok(()) => Ok(()),
            Err(e) if e.is_cas_mismatch() => Err(StoreError::CasMismatch),
            Err(_) => Err(StoreError::Host),
        }
    }
}

// ---- metrics ------------------------------------------------------------------

/// The worker's metric ids (see [`StatIds`]). Each worker's VM defines a
/// stat once and reuses the id (every `define_metric` call would allocate
/// a new id for the same stat). Label values come from the configuration,
/// so the set is bounded.
#[derive(Debug, Default)]
pub struct Metrics {
    ids: StatIds,
}

fn define(kind: u32) -> impl FnOnce(&str) -> Option<u32> {
    move |name| match abi::define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log_warn(&format!(
                "callback-guard: cannot define metric {name}: {status:?}"
            ));
            None
        }
    }
}

fn increment_id(id: u32, by: u64) {
    let _ = abi::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
}

impl Metrics {
    pub fn increment(&mut self, stat: &Stat, by: u64) {
        if by == 0 {
            return;
        }
        if let Some(id) = self.ids.id(stat, define(abi::METRIC_COUNTER)) {
            increment_id(id, by);
        }
    }

    /// A counter outside the request path, by name.
    pub fn increment_name(&mut self, name: &str, by: u64) {
        if by == 0 {
            return;
        }
        if let Some(id) = self.ids.id_by_name(name, define(abi::METRIC_COUNTER)) {
            increment_id(id, by);
        }
    }

    /// Defines a counter at zero so dashboards see it before the first event.
    pub fn declare_counter(&mut self, name: &str) {
        let _ = self.ids.id_by_name(name, define(abi::METRIC_COUNTER));
    }

    pub fn record(&mut self, stat: &Stat, value: u64) {
        if let Some(id) = self.ids.id(stat, define(abi::METRIC_HISTOGRAM)) {
            let _ = abi::record_metric(id, value);
        }
    }

    /// A new configuration: forget the stat names of the old one.
    pub fn forget_shared(&mut self) {
        self.ids.forget_shared();
    }
}

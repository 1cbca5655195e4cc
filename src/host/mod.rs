//! The host adapter: the only code that calls the proxy. Every call goes
//! through `proxy_wasm::hostcalls` and its `Result` is handled here, so a
//! surprising host status becomes a logged fallback, never a panic (a
//! panic kills the VM and every later request on that worker fails).

use crate::core::headers::Headers;
use crate::core::shared::{SharedStore, StoreError};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};
use std::collections::HashMap;
use std::time::UNIX_EPOCH;

pub fn log_info(message: &str) {
    let _ = hostcalls::log(LogLevel::Info, message);
}

pub fn log_warn(message: &str) {
    let _ = hostcalls::log(LogLevel::Warn, message);
}

pub fn log_error(message: &str) {
    let _ = hostcalls::log(LogLevel::Error, message);
}

pub fn log_critical(message: &str) {
    let _ = hostcalls::log(LogLevel::Critical, message);
}

/// Host wall clock in milliseconds since the Unix epoch (0 if unavailable).
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Asks for `on_tick` every `ms` milliseconds.
pub fn set_tick_period_ms(ms: u64) {
    if let Err(status) = hostcalls::set_tick_period(std::time::Duration::from_millis(ms)) {
        log_warn(&format!(
            "callback-guard: cannot set the tick period: {status:?}"
        ));
    }
}

/// The plugin configuration bytes (empty when none was given).
pub fn plugin_configuration() -> Vec<u8> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
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

pub fn request_headers() -> Headers {
    Headers::new(hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default())
}

pub fn set_request_header(name: &str, value: &str) {
    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
}

pub fn remove_request_header(name: &str) {
    let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
}

pub fn response_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpResponseHeaders, name)
        .ok()
        .flatten()
}

pub fn set_response_header(name: &str, value: &str) {
    let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value));
}

// ---- request body ---------------------------------------------------------

/// The buffered request body (`size` is the total buffered so far).
pub fn request_body(size: usize) -> Option<Vec<u8>> {
    if size == 0 {
        return Some(Vec::new());
    }
    hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
        .ok()
        .map(Option::unwrap_or_default)
}

/// Replaces the whole buffered request body (`old_size` bytes) with `body`.
pub fn replace_request_body(old_size: usize, body: &[u8]) -> bool {
    hostcalls::set_buffer(BufferType::HttpRequestBody, 0, old_size, body).is_ok()
}

// ---- local replies ----------------------------------------------------------

pub fn send_reply(status: u32, headers: &[(&str, &str)], body: &[u8]) -> bool {
    let body = (!body.is_empty()).then_some(body);
    match hostcalls::send_http_response(status, headers.to_vec(), body) {
        Ok(()) => true,
        Err(status) => {
            log_error(&format!("callback-guard: local reply {status:?} failed"));
            false
        }
    }
}

// ---- properties ---------------------------------------------------------------

/// A string property such as `["connection", "uri_san_peer_certificate"]`.
pub fn property_string(path: &[&str]) -> Option<String> {
    let bytes = hostcalls::get_property(path.to_vec()).ok().flatten()?;
    let s = String::from_utf8(bytes).ok()?;
    (!s.is_empty()).then_some(s)
}

/// The peer's SPIFFE ID from its mTLS certificate, if any.
pub fn peer_spiffe_id() -> Option<String> {
    property_string(&["connection", "uri_san_peer_certificate"])
}

// ---- shared data --------------------------------------------------------------

/// Proxy shared data: one store per VM id, shared by every worker thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct SharedData;

impl SharedStore for SharedData {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), cas)) => Ok(Some((value, cas.unwrap_or(0)))),
            Ok((None, _)) => Ok(None),
            Err(_) => Err(StoreError::Host),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        // A CAS token of 0 means "unconditional" to the host, the same as None.
        match hostcalls::set_shared_data(key, Some(value), cas.filter(|c| *c != 0)) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(_) => Err(StoreError::Host),
        }
    }
}

// ---- metrics ------------------------------------------------------------------

/// Metric ids by stat name. Each worker's VM defines a stat once and reuses
/// the id (every `define_metric` call would allocate a new id for the same
/// stat). Label values come from the configuration, so the map is bounded.
#[derive(Debug, Default)]
pub struct Metrics {
    ids: HashMap<String, u32>,
}

impl Metrics {
    fn id(&mut self, kind: MetricType, name: String) -> Option<u32> {
        if let Some(id) = self.ids.get(&name) {
            return Some(*id);
        }
        match hostcalls::define_metric(kind, &name) {
            Ok(id) => {
                self.ids.insert(name, id);
                Some(id)
            }
            Err(status) => {
                log_warn(&format!(
                    "callback-guard: cannot define metric {name}: {status:?}"
                ));
                None
            }
        }
    }

    pub fn increment(&mut self, name: String, by: u64) {
        if by == 0 {
            return;
        }
        if let Some(id) = self.id(MetricType::Counter, name) {
            let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }

    /// Defines a counter at zero so dashboards see it before the first event.
    pub fn declare_counter(&mut self, name: String) {
        let _ = self.id(MetricType::Counter, name);
    }

    pub fn record(&mut self, name: String, value: u64) {
        if let Some(id) = self.id(MetricType::Histogram, name) {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

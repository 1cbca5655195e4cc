//! The proxy-wasm ABI calls the filter makes, declared here instead of
//! going through `proxy_wasm::hostcalls`.
//!
//! Why not the SDK's wrappers: every one of them `panic!`s on a status it
//! does not expect, its map readers `unwrap()` UTF-8 conversions of header
//! names and values (Envoy accepts bytes 0x80-0xFF in values, so one
//! Latin-1 header killed the VM), and its extern declarations return a Rust
//! enum, which is undefined behaviour for a status the enum does not list.
//! Here every import returns the raw `u32`, every status becomes a
//! [`HostError`], and maps are parsed with bounds checks into bytes
//! ([`crate::core::abi_map`], pure and fuzzed). The
//! SDK still provides the exports (`proxy_on_*`, the allocator the host
//! writes returned data into) and the context dispatch.
//!
//! The only `unsafe` of the crate lives here: raw pointers handed to the
//! host, and taking ownership of buffers the host allocated through the
//! SDK's `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes,
//! so `Vec::from_raw_parts(ptr, size, size)` is its exact layout).
#![allow(unsafe_code)]

use crate::core::abi_map::{serialize_map, serialize_path};
use std::ptr::{null, null_mut};

/// A status other than `Ok` from the host (raw ABI value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

impl HostError {
    pub const NOT_FOUND: u32 = 1;
    pub const CAS_MISMATCH: u32 = 8;

    pub fn is_not_found(self) -> bool {
        self.0 == Self::NOT_FOUND
    }

    pub fn is_cas_mismatch(self) -> bool {
        self.0 == Self::CAS_MISMATCH
    }
}

pub type HostResult<T> = Result<T, HostError>;

const OK: u32 = 0;

// ABI enum values (proxy-wasm ABI 0.2.1).
pub const LOG_DEBUG: u32 = 1;
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;
pub const LOG_CRITICAL: u32 = 5;

pub const BUFFER_HTTP_REQUEST_BODY: u32 = 0;
pub const BUFFER_HTTP_CALL_RESPONSE_BODY: u32 = 4;
pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;

pub const MAP_HTTP_REQUEST_HEADERS: u32 = 0;
pub const MAP_HTTP_RESPONSE_HEADERS: u32 = 2;
pub const MAP_HTTP_CALL_RESPONSE_HEADERS: u32 = 6;

pub const STREAM_HTTP_REQUEST: u32 = 0;

pub const METRIC_COUNTER: u32 = 0;
pub const METRIC_HISTOGRAM: u32 = 2;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
}

/// Native builds (unit tests, the CLI) compile the adapter but never call
/// it: every import answers "not found".
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments, clippy::missing_safety_doc)]
mod native {
    pub unsafe fn proxy_log(_: u32, _: *const u8, _: usize) -> u32 {
        1
    }
    pub unsafe fn proxy_get_current_time_nanoseconds(_: *mut u64) -> u32 {
        1
    }
    pub unsafe fn proxy_set_tick_period_milliseconds(_: u32) -> u32 {
        1
    }
    pub unsafe fn proxy_get_buffer_bytes(
        _: u32,
        _: usize,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
    ) -> u32 {
        1
    }
    pub unsafe fn proxy_set_buffer_bytes(
        _: u32,
        _: usize,
        _: usize,
        _: *const u8,
        _: usize,
    ) -> u32 {
        1
    }
    pub unsafe fn proxy_get_header_map_pairs(_: u32, _: *mut *mut u8, _: *mut usize) -> u32 {
        1
    }
    pub unsafe fn proxy_get_header_map_value(
        _: u32,
        _: *const u8,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
    ) -> u32 {
        1
    }
    pub unsafe fn proxy_replace_header_map_value(
        _: u32,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
    ) -> u32 {
        1
    }
    pub unsafe fn proxy_remove_header_map_value(_: u32, _: *const u8, _: usize) -> u32 {
        1
    }
    pub unsafe fn proxy_set_property(_: *const u8, _: usize, _: *const u8, _: usize) -> u32 {
        1
    }
    pub unsafe fn proxy_get_property(
        _: *const u8,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
    ) -> u32 {
        1
    }
    pub unsafe fn proxy_send_local_response(
        _: u32,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: i32,
    ) -> u32 {
        1
    }
    pub unsafe fn proxy_get_shared_data(
        _: *const u8,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
        _: *mut u32,
    ) -> u32 {
        1
    }
    pub unsafe fn proxy_set_shared_data(
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: u32,
    ) -> u32 {
        1
    }
    pub unsafe fn proxy_define_metric(_: u32, _: *const u8, _: usize, _: *mut u32) -> u32 {
        1
    }
    pub unsafe fn proxy_increment_metric(_: u32, _: i64) -> u32 {
        1
    }
    pub unsafe fn proxy_record_metric(_: u32, _: u64) -> u32 {
        1
    }
    pub unsafe fn proxy_continue_stream(_: u32) -> u32 {
        1
    }
}
#[cfg(not(target_arch = "wasm32"))]
use native::*;

fn check(status: u32) -> HostResult<()> {
    if status == OK {
        Ok(())
    } else {
        Err(HostError(status))
    }
}

/// Takes ownership of a host-returned buffer (null: nothing returned).
fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: the host wrote `size` bytes into memory it obtained from the
    // SDK's `proxy_on_memory_allocate(size)`, a `Box<[u8]>` of exactly
    // `size` bytes that nobody else owns.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

pub fn log(level: u32, message: &str) -> HostResult<()> {
    count(Call::Log);
    // SAFETY: pointer and length of a live `&str`.
    check(unsafe { proxy_log(level, message.as_ptr(), message.len()) })
}

pub fn current_time_ns() -> HostResult<u64> {
    count(Call::CurrentTime);
    let mut t = 0u64;
    // SAFETY: `t` outlives the call.
    check(unsafe { proxy_get_current_time_nanoseconds(&mut t) })?;
    Ok(t)
}

pub fn set_tick_period_ms(period: u32) -> HostResult<()> {
    count(Call::SetTickPeriod);
    // SAFETY: no pointers.
    check(unsafe { proxy_set_tick_period_milliseconds(period) })
}

/// Bytes `start..start+max` of a buffer; `Ok(None)` when there is none.
pub fn get_buffer(buffer: u32, start: usize, max: usize) -> HostResult<Option<Vec<u8>>> {
    count(Call::GetBuffer);
    let mut data = null_mut();
    let mut size = 0usize;
    // SAFETY: out-pointers to live locals.
    let status = unsafe { proxy_get_buffer_bytes(buffer, start, max, &mut data, &mut size) };
    match check(status) {
        Ok(()) => Ok(owned(data, size)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn set_buffer(buffer: u32, start: usize, size: usize, value: &[u8]) -> HostResult<()> {
    count(Call::SetBuffer);
    // SAFETY: pointer and length of a live slice.
    check(unsafe { proxy_set_buffer_bytes(buffer, start, size, value.as_ptr(), value.len()) })
}

/// Every pair of a header map, names and values as raw bytes.
/// A whole header map in the ABI's encoding (see
/// [`crate::core::abi_map`]); empty when the host gave nothing.
pub fn get_map_bytes(map: u32) -> HostResult<Vec<u8>> {
    count(Call::GetMapPairs);
    let mut data = null_mut();
    let mut size = 0usize;
    // SAFETY: out-pointers to live locals.
    check(unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) })?;
    Ok(owned(data, size).unwrap_or_default())
}

/// One header's value as raw bytes; `Ok(None)` when absent.
pub fn get_map_value(map: u32, key: &str) -> HostResult<Option<Vec<u8>>> {
    count(Call::GetMapValue);
    let mut data = null_mut();
    let mut size = 0usize;
    // SAFETY: key slice is live; out-pointers to live locals.
    let status =
        unsafe { proxy_get_header_map_value(map, key.as_ptr(), key.len(), &mut data, &mut size) };
    match check(status) {
        Ok(()) => Ok(Some(owned(data, size).unwrap_or_default())),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn replace_map_value(map: u32, key: &str, value: &[u8]) -> HostResult<()> {
    count(Call::ReplaceMapValue);
    // SAFETY: pointers and lengths of live slices.
    check(unsafe {
        proxy_replace_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len())
    })
}

pub fn remove_map_value(map: u32, key: &str) -> HostResult<()> {
    count(Call::RemoveMapValue);
    // SAFETY: pointer and length of a live slice.
    check(unsafe { proxy_remove_header_map_value(map, key.as_ptr(), key.len()) })
}

/// A property's raw value; `Ok(None)` when the host has none.
pub fn get_property(path: &[&str]) -> HostResult<Option<Vec<u8>>> {
    count(Call::GetProperty);
    let serialized = serialize_path(path);
    let mut data = null_mut();
    let mut size = 0usize;
    // SAFETY: the path buffer is live; out-pointers to live locals.
    let status =
        unsafe { proxy_get_property(serialized.as_ptr(), serialized.len(), &mut data, &mut size) };
    match check(status) {
        Ok(()) => Ok(owned(data, size)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sets a property of the stream; Envoy keeps it as filter state under
/// `wasm.<path>`, readable by access logs (`%FILTER_STATE(wasm.<path>:PLAIN)%`).
pub fn set_property(path: &[&str], value: &[u8]) -> HostResult<()> {
    count(Call::SetProperty);
    let serialized = serialize_path(path);
    // SAFETY: pointers and lengths of live buffers.
    check(unsafe {
        proxy_set_property(
            serialized.as_ptr(),
            serialized.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

pub fn send_local_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> HostResult<()> {
    count(Call::SendLocalResponse);
    let serialized = serialize_map(headers);
    let (body_ptr, body_len) = if body.is_empty() {
        (null(), 0)
    } else {
        (body.as_ptr(), body.len())
    };
    // SAFETY: pointers and lengths of live buffers (or null with 0).
    check(unsafe {
        proxy_send_local_response(
            status,
            null(),
            0,
            body_ptr,
            body_len,
            serialized.as_ptr(),
            serialized.len(),
            -1,
        )
    })
}

/// A shared-data value and its CAS token; `Ok(None)` when the key is absent.
pub fn get_shared_data(key: &str) -> HostResult<Option<(Vec<u8>, u32)>> {
    count(Call::GetSharedData);
    let mut data = null_mut();
    let mut size = 0usize;
    let mut cas = 0u32;
    // SAFETY: key slice is live; out-pointers to live locals.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match check(status) {
        Ok(()) => Ok(Some((owned(data, size).unwrap_or_default(), cas))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes a shared-data value; `cas` 0 is unconditional.
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> HostResult<()> {
    count(Call::SetSharedData);
    // SAFETY: pointers and lengths of live slices.
    check(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

pub fn define_metric(kind: u32, name: &str) -> HostResult<u32> {
    count(Call::DefineMetric);
    let mut id = 0u32;
    // SAFETY: name slice is live; out-pointer to a live local.
    check(unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, by: i64) -> HostResult<()> {
    count(Call::IncrementMetric);
    // SAFETY: no pointers.
    check(unsafe { proxy_increment_metric(id, by) })
}

pub fn record_metric(id: u32, value: u64) -> HostResult<()> {
    count(Call::RecordMetric);
    // SAFETY: no pointers.
    check(unsafe { proxy_record_metric(id, value) })
}

/// Resumes a stream the filter paused (`STREAM_HTTP_REQUEST` after an
/// outgoing call answered, e.g. the fleet-state store).
pub fn continue_stream(stream: u32) -> HostResult<()> {
    count(Call::ContinueStream);
    // SAFETY: no pointers.
    check(unsafe { proxy_continue_stream(stream) })
}

/// Counts one `proxy_http_call`: outgoing calls go through the SDK's
/// wrapper (its dispatcher must register the token, see
/// `host::dispatch_call`), which counts them here.
pub fn count_http_call() {
    count(Call::Dispatch);
}

// ---- host call counting (cargo feature `hostcall-count`, off by default) ----
//
// `make bench` builds a variant with this feature to report host calls per
// request per scenario (BENCHMARKS.md). Every public function above counts
// itself once per call, under its ABI import's name, in an Envoy counter
// `cg_hostcall.<import>` (all VMs of one Envoy add to the same stat). The
// counter updates are raw imports, so they do not count themselves. Without
// the feature `count` is an empty inline function: the default build is
// unchanged.

/// The ABI imports wrapped above, one per public function.
#[derive(Debug, Clone, Copy)]
enum Call {
    Log,
    CurrentTime,
    SetTickPeriod,
    GetBuffer,
    SetBuffer,
    GetMapPairs,
    GetMapValue,
    ReplaceMapValue,
    RemoveMapValue,
    GetProperty,
    SetProperty,
    SendLocalResponse,
    GetSharedData,
    SetSharedData,
    DefineMetric,
    IncrementMetric,
    RecordMetric,
    ContinueStream,
    Dispatch,
}

#[cfg(not(feature = "hostcall-count"))]
#[inline(always)]
fn count(_: Call) {}

#[cfg(feature = "hostcall-count")]
impl Call {
    const ALL: usize = Call::Dispatch as usize + 1;

    fn import_name(self) -> &'static str {
        match self {
            Call::Log => "proxy_log",
            Call::CurrentTime => "proxy_get_current_time_nanoseconds",
            Call::SetTickPeriod => "proxy_set_tick_period_milliseconds",
            Call::GetBuffer => "proxy_get_buffer_bytes",
            Call::SetBuffer => "proxy_set_buffer_bytes",
            Call::GetMapPairs => "proxy_get_header_map_pairs",
            Call::GetMapValue => "proxy_get_header_map_value",
            Call::ReplaceMapValue => "proxy_replace_header_map_value",
            Call::RemoveMapValue => "proxy_remove_header_map_value",
            Call::GetProperty => "proxy_get_property",
            Call::SetProperty => "proxy_set_property",
            Call::SendLocalResponse => "proxy_send_local_response",
            Call::GetSharedData => "proxy_get_shared_data",
            Call::SetSharedData => "proxy_set_shared_data",
            Call::DefineMetric => "proxy_define_metric",
            Call::IncrementMetric => "proxy_increment_metric",
            Call::RecordMetric => "proxy_record_metric",
            Call::ContinueStream => "proxy_continue_stream",
            Call::Dispatch => "proxy_http_call",
        }
    }
}

#[cfg(feature = "hostcall-count")]
fn count(call: Call) {
    use std::sync::atomic::{AtomicU32, Ordering};
    const UNDEFINED: u32 = u32::MAX;
    static IDS: [AtomicU32; Call::ALL] = [const { AtomicU32::new(UNDEFINED) }; Call::ALL];
    let slot = &IDS[call as usize];
    let mut id = slot.load(Ordering::Relaxed);
    if id == UNDEFINED {
        let name = format!("cg_hostcall.{}", call.import_name());
        // SAFETY: name slice is live; out-pointer to a live local.
        if unsafe { proxy_define_metric(METRIC_COUNTER, name.as_ptr(), name.len(), &mut id) } != OK
        {
            return;
        }
        slot.store(id, Ordering::Relaxed);
    }
    // SAFETY: no pointers.
    let _ = unsafe { proxy_increment_metric(id, 1) };
}

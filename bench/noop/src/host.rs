//! The host calls the floor makes, declared here with raw `u32` statuses
//! (as callback-guard's src/host/abi.rs does), instead of the SDK's
//! `hostcalls::*`, which `panic!` on a status they do not expect. A failed
//! call is ignored: the floor measures the call, not its answer.
//! The SDK still provides the exports and the allocator the host writes
//! returned data into (`proxy_on_memory_allocate`, a boxed slice).

#![allow(unsafe_code)]

use std::ptr::null_mut;

const OK: u32 = 0;
pub const BUFFER_HTTP_REQUEST_BODY: u32 = 0;
pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;
pub const MAP_HTTP_REQUEST_HEADERS: u32 = 0;
pub const MAP_HTTP_RESPONSE_HEADERS: u32 = 2;
pub const METRIC_COUNTER: u32 = 0;
pub const METRIC_GAUGE: u32 = 1;
pub const METRIC_HISTOGRAM: u32 = 2;
pub const LOG_ERROR: u32 = 4;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
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
}

/// Takes ownership of a buffer the host allocated with the SDK's
/// `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes).
fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: the host returned `data` from proxy_on_memory_allocate(size),
    // which leaked a Box<[u8]> of length `size`; we free it exactly once.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

pub fn log_error(message: &str) {
    // SAFETY: the slice is live for the call.
    let _ = unsafe { proxy_log(LOG_ERROR, message.as_ptr(), message.len()) };
}

pub fn current_time_ns() -> u64 {
    let mut t = 0;
    // SAFETY: out-pointer to a live local.
    let _ = unsafe { proxy_get_current_time_nanoseconds(&mut t) };
    t
}

pub fn get_buffer(buffer: u32, start: usize, max: usize) -> Option<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: out-pointers to live locals.
    let status = unsafe { proxy_get_buffer_bytes(buffer, start, max, &mut data, &mut size) };
    let bytes = owned(data, size);
    (status == OK).then_some(bytes).flatten()
}

pub fn set_buffer(buffer: u32, start: usize, size: usize, value: &[u8]) {
    // SAFETY: the slice is live for the call.
    let _ = unsafe { proxy_set_buffer_bytes(buffer, start, size, value.as_ptr(), value.len()) };
}

/// The map's serialized bytes (the floor does not parse them: that is
/// the filter's own work).
pub fn get_map_pairs(map: u32) -> Option<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: out-pointers to live locals.
    let _ = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
    owned(data, size)
}

pub fn get_map_value(map: u32, key: &str) -> Option<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: key slice live; out-pointers to live locals.
    let _ =
        unsafe { proxy_get_header_map_value(map, key.as_ptr(), key.len(), &mut data, &mut size) };
    owned(data, size)
}

pub fn replace_map_value(map: u32, key: &str, value: &[u8]) {
    // SAFETY: both slices are live for the call.
    let _ = unsafe {
        proxy_replace_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len())
    };
}

/// `path` already serialized (NUL-separated segments).
pub fn get_property(path: &[u8]) -> Option<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: path slice live; out-pointers to live locals.
    let _ = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    owned(data, size)
}

pub fn set_property(path: &[u8], value: &[u8]) {
    // SAFETY: both slices are live for the call.
    let _ = unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) };
}

/// (value, cas); cas 0 when the key is absent.
pub fn get_shared_data(key: &str) -> (Option<Vec<u8>>, u32) {
    let (mut data, mut size, mut cas) = (null_mut(), 0, 0);
    // SAFETY: key slice live; out-pointers to live locals.
    let _ =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    (owned(data, size), cas)
}

pub fn set_shared_data(key: &str, value: &[u8], cas: u32) {
    // SAFETY: both slices are live for the call.
    let _ =
        unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
}

pub fn define_metric(kind: u32, name: &str) -> Option<u32> {
    let mut id = 0;
    // SAFETY: name slice live; out-pointer to a live local.
    let status = unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
    (status == OK).then_some(id)
}

pub fn increment_metric(id: u32, by: i64) {
    // SAFETY: no pointers.
    let _ = unsafe { proxy_increment_metric(id, by) };
}

pub fn record_metric(id: u32, value: u64) {
    // SAFETY: no pointers.
    let _ = unsafe { proxy_record_metric(id, value) };
}

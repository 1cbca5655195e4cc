#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| callback_guard_fuzz::signature::check(data));

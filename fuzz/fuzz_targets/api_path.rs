//! Fuzz target `api_path`: see `file_restore_fuzz_checks::api_path` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| file_restore_fuzz_checks::api_path(data));

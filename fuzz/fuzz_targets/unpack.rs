//! Fuzz target `unpack`: see `file_restore_fuzz_checks::unpack` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| file_restore_fuzz_checks::unpack(data));

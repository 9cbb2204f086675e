//! Fuzz target `fsmagic`: see `file_restore_fuzz_checks::fsmagic` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| file_restore_fuzz_checks::fsmagic(data));

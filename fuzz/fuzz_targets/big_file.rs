//! Fuzz target `big_file`: see `file_restore_fuzz_checks::big_file` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| file_restore_fuzz_checks::big_file(data));

//! Fuzz target `image_header`: see `file_restore_fuzz_checks::image_header` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| file_restore_fuzz_checks::image_header(data));

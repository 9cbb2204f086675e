//! Fuzz target `find_answer`: see `file_restore_fuzz_checks::find_answer` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| file_restore_fuzz_checks::find_answer(data));

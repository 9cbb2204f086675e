//! End-to-end test support for file-restore: the runner, the driver of the real
//! `file-restore` binary, the fixture index and manifest comparison. The suite
//! itself is `e2e/main.rs` (`cargo test -p file-restore-tests --test e2e`).

pub mod cli;
pub mod fixtures;
pub mod harness;
pub mod manifest;
pub mod sys;

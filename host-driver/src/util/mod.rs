//! The bottom layer: plain helpers every other folder may use, tied to no
//! VM, guest or source: spawning and watching processes, the install
//! directories and boot-file lookup, terminal-safe text, the clock and
//! progress bars. Imports nothing from the crate.

pub mod install;
pub mod process;
pub mod progress;
pub mod text;

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

//! A VM's run directory (`<base>/vm-<random>`, 0700): the names of the
//! files in it, the logs kept in the base directory after a failed start,
//! and how its logs are created.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Console log file in the run directory.
pub const CONSOLE_LOG: &str = "console.log";
/// QEMU stdout + stderr in the run directory.
pub const QEMU_STDERR: &str = "qemu.stderr";
/// Sidecar log in the run directory.
pub const SIDECAR_LOG: &str = "vhost-device-vsock.log";
/// QMP socket in the run directory.
pub const QMP_SOCKET: &str = "qmp.sock";
/// vhost-user control socket (sidecar ↔ QEMU) in the run directory.
pub const VHOST_USER_SOCKET: &str = "vhu.sock";
/// Host-side hybrid vsock socket in the run directory.
pub const HYBRID_SOCKET: &str = "vm.vsock";
/// Console log kept after a failed start (in the base directory).
pub const FAILED_CONSOLE_LOG: &str = "last-failed-console.log";
/// QEMU stderr kept after a failed start (in the base directory).
pub const FAILED_QEMU_STDERR: &str = "last-failed-qemu.stderr";
/// vsock sidecar log kept after a failed start (in the base directory).
pub const FAILED_SIDECAR_LOG: &str = "last-failed-vsock-sidecar.log";

/// Opens (truncating) a log file readable only by the owner.
pub(crate) fn create_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

//! Errors of [`crate::vm::launch::start_vm`], with the log tails that explain them.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::{VHOST_USER_BINARY, VHOST_USER_INSTALL_HINT};
use crate::guest::client::ClientError;
use crate::helper::initrd::InitrdError;
use crate::qemu::Accel;

/// Tails of the logs of a VM that failed to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureLogs {
    /// Where the full console log is kept.
    pub console_log: PathBuf,
    /// Its last lines.
    pub console_tail: String,
    /// Last lines of QEMU's stderr (and of the sidecar's log, if any).
    pub stderr_tail: String,
}

impl fmt::Display for FailureLogs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "console log: {}", self.console_log.display())?;
        if !self.console_tail.trim().is_empty() {
            write!(f, "\n--- console (last lines) ---\n{}", self.console_tail)?;
        }
        if !self.stderr_tail.trim().is_empty() {
            write!(f, "\n--- qemu stderr ---\n{}", self.stderr_tail)?;
        }
        Ok(())
    }
}

/// Why a VM could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The guest kernel is missing or unreadable.
    #[error("guest kernel {path}: {source}")]
    Kernel {
        /// The kernel path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A disk image is missing or its spec is invalid.
    #[error("disk image {path}: {reason}")]
    Image {
        /// The image path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Building the per-VM initramfs failed.
    #[error(transparent)]
    Initrd(#[from] InitrdError),
    /// The run directory could not be created.
    #[error("cannot create run directory {path}: {source}")]
    RunDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A required program is missing.
    #[error("{program} not found{hint}")]
    MissingProgram {
        /// What was looked for.
        program: PathBuf,
        /// How to get it (may be empty).
        hint: String,
    },
    /// No vsock transport is usable.
    #[error("no vsock transport: /dev/vhost-vsock is not usable ({vhost_vsock_error}) and {VHOST_USER_BINARY} is not on PATH nor in /usr/local/lib/file-restore or /usr/lib/file-restore; install it with `{VHOST_USER_INSTALL_HINT}`")]
    NoTransport {
        /// Why `/dev/vhost-vsock` did not open.
        vhost_vsock_error: String,
    },
    /// Kernel vsock was requested but `/dev/vhost-vsock` does not open.
    #[error("kernel vsock requested but /dev/vhost-vsock is not usable: {0}")]
    KernelVsockUnavailable(#[source] io::Error),
    /// KVM was requested but `/dev/kvm` does not open.
    #[error("KVM requested but /dev/kvm is not usable: {0}")]
    KvmUnavailable(#[source] io::Error),
    /// A process could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The vhost-user sidecar did not come up.
    #[error("vsock sidecar {program} failed: {detail}\n--- its log ({log}) ---\n{log_tail}")]
    Sidecar {
        /// The program.
        program: PathBuf,
        /// What happened.
        detail: String,
        /// Its log file.
        log: PathBuf,
        /// The log's last lines.
        log_tail: String,
    },
    /// QEMU exited before the daemon answered.
    #[error("VM ({accel}) exited before its daemon answered ({status})\n{logs}")]
    VmExited {
        /// The accelerator it ran under.
        accel: Accel,
        /// QEMU's exit status.
        status: String,
        /// Log tails.
        logs: FailureLogs,
    },
    /// The daemon did not answer in time.
    #[error("VM ({accel}) did not answer within {after:?} (last error: {last_error})\n{logs}")]
    NotReady {
        /// The accelerator it ran under.
        accel: Accel,
        /// The time limit.
        after: Duration,
        /// The last probe error.
        last_error: String,
        /// Log tails.
        logs: FailureLogs,
    },
    /// This start was stopped because a VM started at the same time under
    /// another accelerator answered first (see `start_vm`'s race); never the
    /// error of a whole start.
    #[error("the {accel} VM was stopped: a VM under the other accelerator answered first")]
    Superseded {
        /// The accelerator of the stopped VM.
        accel: Accel,
    },
    /// `file-restore-helper` refused the request or failed before it
    /// could exec QEMU.
    #[error("{helper} did not start QEMU ({status}): {message} (log: {log})")]
    Helper {
        /// The helper binary.
        helper: PathBuf,
        /// Its error lines (without the `file-restore-helper: ` prefix).
        message: String,
        /// Its exit status.
        status: String,
        /// The log holding its stderr.
        log: PathBuf,
    },
    /// Every CID of the user's block was in use.
    #[error(
        "no free vsock CID in {first}..={last} (this user's block): all in use; stop some VMs \
         (`file-restore stop --all`) or use --transport vhost-user"
    )]
    CidsExhausted {
        /// The block's first CID.
        first: u32,
        /// Its last CID.
        last: u32,
    },
    /// The daemon answered but refused us (wrong ticket, API version) or
    /// did not prove it knows the ticket.
    #[error("VM started but its daemon refused the host driver: {source}\n{logs}")]
    Daemon {
        /// The daemon's answer.
        #[source]
        source: Box<ClientError>,
        /// Log tails.
        logs: FailureLogs,
    },
}

//! The request `file-restore` sends to `file-restore-helper`, and the checks
//! the helper applies to it.
//!
//! `file-restore-helper` is the only binary that may be installed setuid
//! root (kernel vsock needs `/dev/vhost-vsock`, root-only on most hosts). It
//! must not become a confused deputy, so it takes one narrow request and
//! never anything that becomes a free-form QEMU option:
//!
//! 1. The CLI spawns the helper and writes **one** JSON [`HelperRequest`] on
//!    its stdin, then closes it (at most [`MAX_REQUEST_BYTES`]; unknown
//!    fields are refused). Example:
//!    ```json
//!    {"version":1,"action":"start","qemu":"/usr/bin/qemu-system-x86_64",
//!     "kernel":"/usr/local/lib/file-restore/vmlinux",
//!     "initramfs":"/usr/local/lib/file-restore/initramfs.img","ticket":"<hex>",
//!     "disks":[{"source":{"path":"/srv/img/disk.qcow2"},"format":"qcow2","serial":"disk"}],
//!     "memory_mib":256,"cpus":1,"accel":"tcg",
//!     "transport":{"kind":"vhost-user","socket":"/run/user/1000/file-restore/vms/vm-x/vhu.sock"},
//!     "run_dir":"/run/user/1000/file-restore/vms/vm-x",
//!     "console_log":"/run/user/1000/file-restore/vms/vm-x/console.log",
//!     "qmp_socket":"/run/user/1000/file-restore/vms/vm-x/qmp.sock"}
//!    ```
//! 2. [`HelperRequest::validate`] checks it without touching the file system
//!    (ranges, format allow-list, serials, absolute plain paths, files inside
//!    the run directory); [`BootPolicy`] decides which kernel, initramfs and
//!    QEMU binary may be used: when the helper runs with more rights than
//!    its caller (setuid, setgid or file capabilities) only the installed
//!    ones ([`crate::util::install::INSTALL_DIRS`] or root-owned files beside the
//!    helper, and [`QEMU_PATHS`]); otherwise any, since it then has no more
//!    rights than the user.
//!    A kernel vsock CID must lie in the invoking user's own block
//!    ([`cids`], [`HelperRequest::check_cid_for`]).
//! 3. The helper opens `/dev/vhost-vsock` while privileged (kernel
//!    transport only), then drops to the real uid/gid for good
//!    ([`checks::drop_privileges`]).
//! 4. As the invoking user it checks the run directory
//!    ([`checks::check_run_dir`]) and every disk ([`checks::check_disk`]),
//!    builds the per-VM initramfs (the ticket appended, in a sealed memfd)
//!    and execs QEMU with a scrubbed environment; the command line comes
//!    from [`HelperRequest::vm_config`] and [`crate::qemu::VmConfig::to_args`].
//!
//! **Images and backing files.** Images are passed as paths (or, for a
//! caller that holds one, as an inherited descriptor). Paths are used rather
//! than descriptors because qcow2 backing files and vmdk extents are
//! resolved relative to the image's own path, which `/dev/fd/N` breaks. The
//! helper never opens an image with privileges: it checks each one by
//! opening it read-only **after** dropping to the invoking user's ids (so an
//! image that user cannot read is refused with an error naming it), and
//! QEMU, which runs as that user, opens the image and every backing file
//! itself, so the kernel enforces the user's rights on the whole chain. (Which
//! backing files are acceptable at all, inside the store root, is checked by
//! the CLI before the helper is asked: `source::check_backing_chain`.)
//!
//! Folder: what `file-restore-helper` reads and checks ([`HelperRequest`],
//! [`checks`], [`cids`], the boot-file policy) and the per-VM initramfs
//! with its ticket ([`initrd`]). May import `qemu` and `util` only.

pub mod checks;
pub mod cids;
pub mod initrd;
mod policy;
pub use policy::{helper_is_setuid_root, locate_helper, BootPolicy};

use std::collections::HashSet;
use std::io::{self, Read};
use std::ops::RangeInclusive;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::helper::initrd::InitrdError;
use crate::qemu::{Accel, DiskSpec, TransportSpec, VmConfig, MAX_SERIAL_LEN};

/// The helper's file name.
pub const HELPER_NAME: &str = "file-restore-helper";
/// Environment variable overriding where the CLI finds the helper.
pub const HELPER_ENV: &str = "FILE_RESTORE_HELPER";
/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest request accepted on stdin.
pub const MAX_REQUEST_BYTES: usize = 64 << 10;
/// Disk image formats the helper passes to QEMU.
pub const ALLOWED_FORMATS: &[&str] = &[
    "raw",
    "qcow2",
    "vmdk",
    "vhdx",
    "vdi",
    "qed",
    "vpc",
    "parallels",
];
/// The QEMU binaries a privileged helper may exec.
pub const QEMU_PATHS: &[&str] = &[
    "/usr/bin/qemu-system-x86_64",
    "/usr/local/bin/qemu-system-x86_64",
];
/// Accepted guest RAM, MiB.
pub const MEMORY_MIB: RangeInclusive<u32> = 64..=4096;
/// Accepted virtual CPU counts.
pub const CPUS: RangeInclusive<u32> = 1..=4;
/// Most disks per VM. QEMU's microvm without ACPI has 8 virtio-mmio
/// transports (the 16 more on its second IO-APIC need ACPI to be found), and
/// the vsock device and the tools disk take two: a 7th disk made QEMU fail
/// with "No 'virtio-bus' bus found".
pub const MAX_DISKS: usize = 6;
/// The kernel vsock device.
pub const VHOST_VSOCK_DEVICE: &str = "/dev/vhost-vsock";
/// Start of every message the helper prints; the CLI recognises its errors by it.
pub const MESSAGE_PREFIX: &str = "file-restore-helper: ";
/// Exit status of a refused request (invalid, not allowed).
pub const EXIT_REFUSED: u8 = 2;
/// Exit status of a failure while carrying out a valid request.
pub const EXIT_FAILED: u8 = 1;
/// Ticket length limits (the CLI's tickets are 32 hex digits).
const TICKET_LEN: RangeInclusive<usize> = 16..=128;

/// What to do (only one action exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Start a VM: exec QEMU in place of the helper (same pid).
    Start,
}

/// Where a disk's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum DiskSource {
    /// An absolute path to an image file or block device; QEMU opens it
    /// (and its backing files) as the invoking user.
    Path(PathBuf),
    /// A descriptor the caller opened and the helper inherits (> 2); QEMU
    /// opens it as `/dev/fd/N`.
    Fd(RawFd),
    /// An `nbd://` or `nbd+unix://` URI.
    Nbd(String),
}

/// One disk of the VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskRequest {
    /// Its bytes.
    pub source: DiskSource,
    /// QEMU format, one of [`ALLOWED_FORMATS`].
    pub format: String,
    /// virtio serial, `[A-Za-z0-9_.-]{1,20}`, unique in the request.
    pub serial: String,
}

/// How the VM's vsock device is provided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TransportRequest {
    /// In-kernel vhost-vsock: the helper opens `/dev/vhost-vsock` and passes
    /// it to QEMU as `vhostfd`.
    Kernel {
        /// The guest's context id: one of the invoking user's block
        /// ([`cids::cid_range`]).
        cid: u32,
    },
    /// A vhost-user sidecar (started by the CLI) serving this socket, a
    /// file directly in `run_dir`.
    VhostUser {
        /// The sidecar's vhost-user socket.
        socket: PathBuf,
    },
}

/// The one request the helper reads from stdin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelperRequest {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// What to do.
    pub action: Action,
    /// QEMU binary (absolute); default: the first of [`QEMU_PATHS`] that
    /// exists. A privileged helper accepts only [`QEMU_PATHS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu: Option<PathBuf>,
    /// Guest kernel (absolute).
    pub kernel: PathBuf,
    /// Base initramfs (absolute); the helper appends the ticket in memory.
    pub initramfs: PathBuf,
    /// The storage-tools image (absolute), attached read-only after the
    /// disks; a privileged helper accepts only an installed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<PathBuf>,
    /// The VM's ticket (`[A-Za-z0-9_-]`, 16 to 128 characters).
    pub ticket: String,
    /// Disks, in order (1 to [`MAX_DISKS`]).
    pub disks: Vec<DiskRequest>,
    /// Guest RAM, [`MEMORY_MIB`].
    pub memory_mib: u32,
    /// Virtual CPUs, [`CPUS`].
    pub cpus: u32,
    /// Accelerator (`kvm` or `tcg`).
    pub accel: Accel,
    /// vsock device.
    pub transport: TransportRequest,
    /// The VM's private run directory: absolute, owned by the invoking
    /// user, not writable by group or others.
    pub run_dir: PathBuf,
    /// Console log: a file directly in `run_dir`.
    pub console_log: PathBuf,
    /// QMP socket: a file directly in `run_dir`.
    pub qmp_socket: PathBuf,
}

/// Why the helper refused or failed a request. Refusals
/// ([`HelperError::is_refusal`]) exit with [`EXIT_REFUSED`].
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// stdin could not be read.
    #[error("cannot read the request from stdin: {0}")]
    Read(#[source] io::Error),
    /// More than [`MAX_REQUEST_BYTES`] on stdin.
    #[error("request refused: larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not a valid request (bad JSON, an unknown or missing field).
    #[error("request refused: {0}; the CLI and the helper must come from the same build")]
    Parse(#[source] serde_json::Error),
    /// A protocol version this build does not speak.
    #[error(
        "request refused: protocol version {got}, this helper speaks {PROTOCOL_VERSION}; \
         install the CLI and the helper from the same build"
    )]
    Version {
        /// The version asked for.
        got: u32,
    },
    /// A field with a value that is not allowed.
    #[error("request refused: {field}: {reason}")]
    Invalid {
        /// The field (`disks[1].format`, `memory_mib`, …).
        field: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// A kernel, initramfs or QEMU binary that may not be used.
    #[error("request refused: {what} '{path}': {reason}")]
    BootFile {
        /// `kernel`, `initramfs` or `QEMU binary`.
        what: &'static str,
        /// The path asked for.
        path: PathBuf,
        /// Why, and what is allowed.
        reason: String,
    },
    /// A disk the invoking user may not use.
    #[error("request refused: disk image '{image}' {reason}")]
    Image {
        /// The path, `/dev/fd/N` or URI.
        image: String,
        /// Why.
        reason: String,
    },
    /// A run directory not owned by the invoking user.
    #[error("request refused: run directory '{path}' {reason}")]
    RunDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `/dev/vhost-vsock` did not open.
    #[error(
        "cannot open {VHOST_VSOCK_DEVICE}: {0}; load the vhost_vsock module, install \
         file-restore-helper setuid root, or use --transport vhost-user"
    )]
    VhostVsock(#[source] io::Error),
    /// Dropping privileges failed or did not stick.
    #[error("cannot drop privileges to uid {uid}/gid {gid}: {detail}; not starting QEMU")]
    Privileges {
        /// The invoking user.
        uid: u32,
        /// Their group.
        gid: u32,
        /// What failed.
        detail: String,
    },
    /// The per-VM initramfs could not be built.
    #[error(transparent)]
    Initramfs(#[from] InitrdError),
    /// Preparing descriptors or stdin for QEMU failed.
    #[error("cannot prepare QEMU's descriptors: {0}")]
    Descriptors(#[source] io::Error),
    /// exec of QEMU failed.
    #[error("cannot exec {program}: {source}")]
    Exec {
        /// The QEMU binary.
        program: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl HelperError {
    /// True for refusals (invalid or not allowed), false for failures.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            HelperError::TooLarge { .. }
                | HelperError::Parse(_)
                | HelperError::Version { .. }
                | HelperError::Invalid { .. }
                | HelperError::BootFile { .. }
                | HelperError::Image { .. }
                | HelperError::RunDir { .. }
        )
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> HelperError {
    HelperError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Reads and parses one request: at most [`MAX_REQUEST_BYTES`], unknown
/// fields refused.
pub fn read_request(input: impl Read) -> Result<HelperRequest, HelperError> {
    let mut buf = Vec::with_capacity(4096);
    input
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(HelperError::Read)?;
    if buf.len() > MAX_REQUEST_BYTES {
        return Err(HelperError::TooLarge {
            limit: MAX_REQUEST_BYTES,
        });
    }
    serde_json::from_slice(&buf).map_err(HelperError::Parse)
}

/// True for an absolute path made of plain components only (no `.`, `..`,
/// empty components, trailing `/` or NUL), so what is checked is exactly
/// what QEMU opens.
pub fn is_plain_absolute(path: &Path) -> bool {
    let b = path.as_os_str().as_bytes();
    b.len() > 1
        && b[0] == b'/'
        && !b.contains(&0)
        && b[1..]
            .split(|&c| c == b'/')
            .all(|seg| !seg.is_empty() && seg != b"." && seg != b"..")
}

/// True for a disk serial: `[A-Za-z0-9_.-]{1,20}`.
pub fn is_valid_serial(serial: &str) -> bool {
    (1..=MAX_SERIAL_LEN).contains(&serial.len())
        && serial
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl HelperRequest {
    /// Checks everything that needs no file system: version, ranges, the
    /// format allow-list, serials, descriptors, URIs and that every path is
    /// absolute and plain, with the console log, QMP and vhost-user sockets
    /// directly inside `run_dir`.
    pub fn validate(&self) -> Result<(), HelperError> {
        if self.version != PROTOCOL_VERSION {
            return Err(HelperError::Version { got: self.version });
        }
        for (field, path) in [
            ("kernel", &self.kernel),
            ("initramfs", &self.initramfs),
            ("run_dir", &self.run_dir),
        ]
        .into_iter()
        .chain(self.qemu.as_ref().map(|q| ("qemu", q)))
        .chain(self.tools.as_ref().map(|t| ("tools", t)))
        {
            if !is_plain_absolute(path) {
                return Err(invalid(
                    field,
                    format!(
                        "'{}' must be an absolute path without '.', '..' or '//'",
                        path.display()
                    ),
                ));
            }
        }
        let ticket_ok = TICKET_LEN.contains(&self.ticket.len())
            && self
                .ticket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if !ticket_ok {
            return Err(invalid(
                "ticket",
                format!(
                    "must be {}..={} characters of [A-Za-z0-9_-]",
                    TICKET_LEN.start(),
                    TICKET_LEN.end()
                ),
            ));
        }
        if !MEMORY_MIB.contains(&self.memory_mib) {
            return Err(invalid(
                "memory_mib",
                format!(
                    "{} is outside {}..={}",
                    self.memory_mib,
                    MEMORY_MIB.start(),
                    MEMORY_MIB.end()
                ),
            ));
        }
        if !CPUS.contains(&self.cpus) {
            return Err(invalid(
                "cpus",
                format!("{} is outside {}..={}", self.cpus, CPUS.start(), CPUS.end()),
            ));
        }
        self.validate_disks()?;
        let mut in_run_dir = vec![
            ("console_log", &self.console_log),
            ("qmp_socket", &self.qmp_socket),
        ];
        match &self.transport {
            TransportRequest::Kernel { cid } => {
                if !(3..u32::MAX).contains(cid) {
                    return Err(invalid(
                        "transport.cid",
                        format!("{cid} is reserved; use 3..=4294967294"),
                    ));
                }
            }
            TransportRequest::VhostUser { socket } => in_run_dir.push(("transport.socket", socket)),
        }
        let mut seen = HashSet::new();
        for (field, path) in in_run_dir {
            let inside = is_plain_absolute(path) && path.parent() == Some(self.run_dir.as_path());
            if !inside {
                return Err(invalid(
                    field,
                    format!(
                        "'{}' must be a file directly inside run_dir '{}'",
                        path.display(),
                        self.run_dir.display()
                    ),
                ));
            }
            if !seen.insert(path) {
                return Err(invalid(
                    field,
                    format!("'{}' is used twice", path.display()),
                ));
            }
        }
        Ok(())
    }

    fn validate_disks(&self) -> Result<(), HelperError> {
        if self.disks.is_empty() || self.disks.len() > MAX_DISKS {
            return Err(invalid(
                "disks",
                format!(
                    "{} disks given; 1..={MAX_DISKS} allowed (the restore VM has no slots \
                     for more: give a directory holding at most {MAX_DISKS} of the images)",
                    self.disks.len()
                ),
            ));
        }
        let mut serials = HashSet::new();
        let mut fds = HashSet::new();
        for (i, d) in self.disks.iter().enumerate() {
            let field = |f: &str| format!("disks[{i}].{f}");
            if !ALLOWED_FORMATS.contains(&d.format.as_str()) {
                return Err(invalid(
                    field("format"),
                    format!(
                        "{:?} is not allowed; use one of {}",
                        d.format,
                        ALLOWED_FORMATS.join(", ")
                    ),
                ));
            }
            if !is_valid_serial(&d.serial) {
                return Err(invalid(
                    field("serial"),
                    format!("{:?} must match [A-Za-z0-9_.-]{{1,20}}", d.serial),
                ));
            }
            if !serials.insert(d.serial.as_str()) {
                return Err(invalid(
                    field("serial"),
                    format!("{:?} is used by two disks", d.serial),
                ));
            }
            match &d.source {
                DiskSource::Path(p) if !is_plain_absolute(p) => {
                    return Err(invalid(
                        field("source.path"),
                        format!(
                            "'{}' must be an absolute path without '.', '..' or '//'",
                            p.display()
                        ),
                    ));
                }
                DiskSource::Path(_) => {}
                DiskSource::Fd(fd) => {
                    if *fd <= 2 || !fds.insert(*fd) {
                        return Err(invalid(
                            field("source.fd"),
                            format!("{fd} must be an inherited descriptor above 2, used once"),
                        ));
                    }
                }
                DiskSource::Nbd(uri) => {
                    let is_nbd = crate::qemu::nbd::is_nbd_uri(uri);
                    if !is_nbd || uri.contains('\0') {
                        return Err(invalid(
                            field("source.nbd"),
                            format!("{uri:?} is not a valid nbd:// or nbd+unix:// URI"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The descriptors of [`DiskSource::Fd`] disks.
    pub fn inherited_fds(&self) -> Vec<RawFd> {
        self.disks
            .iter()
            .filter_map(|d| match d.source {
                DiskSource::Fd(fd) => Some(fd),
                _ => None,
            })
            .collect()
    }

    /// The QEMU configuration of a validated request: the initramfs as the
    /// `/dev/fd/N` of the per-VM memfd, the kernel vsock (if any) as the
    /// descriptor of `/dev/vhost-vsock` the helper opened.
    pub fn vm_config(&self, initramfs_fd_path: String, vhostfd: Option<RawFd>) -> VmConfig {
        VmConfig {
            kernel: self.kernel.clone(),
            initramfs_fd_path,
            tools: self.tools.clone(),
            disks: self
                .disks
                .iter()
                .map(|d| DiskSpec {
                    path: match &d.source {
                        DiskSource::Path(p) => p.clone(),
                        DiskSource::Fd(fd) => PathBuf::from(format!("/dev/fd/{fd}")),
                        DiskSource::Nbd(uri) => PathBuf::from(uri),
                    },
                    format: d.format.clone(),
                    serial: d.serial.clone(),
                })
                .collect(),
            memory_mib: self.memory_mib,
            cpus: self.cpus,
            accel: self.accel,
            transport: match &self.transport {
                TransportRequest::Kernel { cid } => TransportSpec::Kernel { cid: *cid, vhostfd },
                TransportRequest::VhostUser { socket } => TransportSpec::VhostUser {
                    socket: socket.clone(),
                },
            },
            console_log: self.console_log.clone(),
            qmp_socket: self.qmp_socket.clone(),
        }
    }
}

#[cfg(test)]
mod tests;

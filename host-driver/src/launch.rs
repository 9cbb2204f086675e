//! Starting a restore VM: choose transport and accelerator, start the vsock
//! sidecar (as the user) and QEMU through `file-restore-helper` (which
//! builds the per-VM initramfs with the ticket and execs QEMU; both are
//! detached, so the VM outlives this invocation and is reused by later ones)
//! and wait until the daemon answers.
//!
//! Failures are reported with the tail of the guest console and of QEMU's
//! stderr; nothing is left running and the VM's run directory is removed (its
//! logs are kept as `last-failed-console.log`, `last-failed-qemu.stderr` and
//! `last-failed-vsock-sidecar.log` in the base directory; the error names them).

use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::ops::RangeInclusive;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::guest::client::DaemonClient;
use crate::guest::transport::VsockAddr;
use crate::helper::cids::{cid_range, no_range_reason};
use crate::helper::initrd::{self, InitrdError};
use crate::helper::{self, DiskRequest, DiskSource, ALLOWED_FORMATS};
use crate::keeper::KeeperOptions;
use crate::qemu::{self, Accel};
use crate::util::process::{find_program, tail_lines};
use crate::vm_process::{
    self, disk_source, plain_absolute, AttemptError, LaunchPlan, TransportPlan,
};

#[path = "launch_accel.rs"]
mod accel;
#[path = "launch_error.rs"]
mod error;
pub use accel::KVM_UNUSABLE_FILE;
use accel::{choose_accels, plan_attempts, remember_kvm_unusable};
pub use error::{FailureLogs, LaunchError};

/// Installing the vhost-user vsock backend.
pub const VHOST_USER_INSTALL_HINT: &str = "cargo install vhost-device-vsock --locked";
/// Name of the vhost-user vsock sidecar binary.
pub const VHOST_USER_BINARY: &str = "vhost-device-vsock";
/// Console log kept after a failed start (in the base directory).
pub const FAILED_CONSOLE_LOG: &str = "last-failed-console.log";
/// QEMU stderr kept after a failed start (in the base directory).
pub const FAILED_QEMU_STDERR: &str = "last-failed-qemu.stderr";
/// vsock sidecar log kept after a failed start (in the base directory).
pub const FAILED_SIDECAR_LOG: &str = "last-failed-vsock-sidecar.log";
/// Lines of console/stderr quoted in errors.
const TAIL_LINES: usize = 20;

/// Which accelerator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelPreference {
    /// KVM when `/dev/kvm` opens and the guest answers under it, else TCG.
    #[default]
    Auto,
    /// KVM only.
    Kvm,
    /// TCG only.
    Tcg,
}

/// Which vsock transport to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportPreference {
    /// Kernel vsock when `/dev/vhost-vsock` opens, else the vhost-user sidecar.
    #[default]
    Auto,
    /// Kernel vsock (`vhost-vsock-device`).
    Kernel,
    /// vhost-user vsock through `vhost-device-vsock`.
    VhostUser,
}

/// One disk image to attach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSpec {
    /// The image file, `/dev/fd/N` for a descriptor this process holds open
    /// (the helper and QEMU inherit it under the same number, close-on-exec
    /// or not), or an `nbd://` / `nbd+unix://` URI.
    pub path: PathBuf,
    /// QEMU format (`raw`, `qcow2`, …).
    pub format: String,
    /// The disk's name in the guest (sanitized into its serial).
    pub name: String,
}

/// Time limits of a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchTimeouts {
    /// Until the daemon answers under TCG.
    pub tcg_ready: Duration,
    /// Until the daemon answers under KVM (then TCG is tried, in auto mode).
    /// The guest answers in under a second even under TCG; a KVM that does not
    /// work may leave QEMU running with the vCPU stopped (seen on PVM hosts),
    /// so this is what the first start after a host boot loses there.
    pub kvm_ready: Duration,
    /// Limit of one readiness probe (connect + answer).
    pub probe: Duration,
    /// Until the vhost-user sidecar's socket appears.
    pub sidecar_ready: Duration,
}

impl Default for LaunchTimeouts {
    fn default() -> Self {
        LaunchTimeouts {
            tcg_ready: Duration::from_secs(60),
            kvm_ready: Duration::from_secs(5),
            probe: Duration::from_secs(3),
            sidecar_ready: Duration::from_secs(5),
        }
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// Guest kernel (`vmlinux` for the faster PVH boot, or a bzImage).
    pub kernel: PathBuf,
    /// The base initramfs (the per-VM ticket is appended in memory).
    pub initramfs: PathBuf,
    /// The storage-tools image (lvm, mdadm, cryptsetup; attached read-only
    /// for the guest to use when a disk holds LVM, md or LUKS); the default
    /// is `tools.img` beside the initramfs, when it is there.
    pub tools: Option<PathBuf>,
    /// Disks, in order.
    pub images: Vec<ImageSpec>,
    /// Accelerator choice.
    pub accel: AccelPreference,
    /// Transport choice.
    pub transport: TransportPreference,
    /// Directory under which the private per-VM run directory is created
    /// (created with mode 0700 if missing).
    pub base_dir: PathBuf,
    /// Time limits.
    pub timeouts: LaunchTimeouts,
    /// QEMU binary (looked up on `$PATH` without a `/`). A setuid helper
    /// accepts only [`helper::QEMU_PATHS`].
    pub qemu_binary: PathBuf,
    /// `file-restore-helper`; `None`: [`helper::locate_helper`].
    pub helper_binary: Option<PathBuf>,
    /// vhost-user vsock sidecar binary (without a `/`: looked up on `$PATH`,
    /// then in the install directories).
    pub vhost_user_binary: PathBuf,
    /// The daemon's vsock port.
    pub port: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Guest RAM; `None`: [`qemu::memory_for_disks`].
    pub memory_mib: Option<u32>,
    /// The host-side keeper of the VM's lifetime and console log
    /// ([`crate::keeper`]); `None`: none (the VM then lives until its
    /// guest powers it off or it is stopped).
    pub keeper: Option<KeeperOptions>,
}

impl LaunchOptions {
    /// Options with defaults: auto accelerator and transport, default
    /// timeouts, binaries from `$PATH`, port 1024, 1 CPU.
    pub fn new(
        kernel: impl Into<PathBuf>,
        initramfs: impl Into<PathBuf>,
        images: Vec<ImageSpec>,
        base_dir: impl Into<PathBuf>,
    ) -> Self {
        let initramfs: PathBuf = initramfs.into();
        let tools = initramfs.with_file_name(file_restore_initramfs::TOOLS_FILE);
        LaunchOptions {
            kernel: kernel.into(),
            tools: tools.is_file().then_some(tools),
            initramfs,
            images,
            accel: AccelPreference::Auto,
            transport: TransportPreference::Auto,
            base_dir: base_dir.into(),
            timeouts: LaunchTimeouts::default(),
            qemu_binary: qemu::QEMU_BINARY.into(),
            helper_binary: None,
            vhost_user_binary: VHOST_USER_BINARY.into(),
            port: file_restore_wire::DEFAULT_PORT,
            cpus: 1,
            memory_mib: None,
            keeper: Some(KeeperOptions::default()),
        }
    }
}

/// A started VM: everything later invocations need to reach, check and stop
/// it. Stored in the VM map (JSON).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningVm {
    /// QEMU's pid.
    pub pid: u32,
    /// The vhost-user sidecar's pid, when there is one.
    pub sidecar_pid: Option<u32>,
    /// Where the daemon listens.
    pub addr: VsockAddr,
    /// The VM's ticket (secret: the map file is 0600).
    pub ticket: String,
    /// The accelerator it runs under.
    pub accel: Accel,
    /// Its private run directory.
    pub run_dir: PathBuf,
    /// Its console log.
    pub console_log: PathBuf,
    /// Its QMP socket.
    pub qmp_socket: PathBuf,
    /// Start time, seconds since the epoch.
    pub started_at: u64,
}

impl fmt::Debug for RunningVm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningVm")
            .field("pid", &self.pid)
            .field("sidecar_pid", &self.sidecar_pid)
            .field("addr", &self.addr)
            .field("ticket", &"<redacted>")
            .field("accel", &self.accel)
            .field("run_dir", &self.run_dir)
            .field("started_at", &self.started_at)
            .finish()
    }
}

impl RunningVm {
    /// A client for this VM's daemon.
    pub fn client(&self) -> DaemonClient {
        DaemonClient::new(self.addr.clone(), self.ticket.clone())
    }
}

/// Starts a VM with `opts` and waits until its daemon answers an
/// authenticated status call.
pub async fn start_vm(opts: LaunchOptions) -> Result<RunningVm, LaunchError> {
    check_inputs(&opts)?;
    let qemu_binary =
        find_program(&opts.qemu_binary).ok_or_else(|| LaunchError::MissingProgram {
            program: opts.qemu_binary.clone(),
            hint: " (install qemu-system-x86)".into(),
        })?;
    // Resolved, so that a setuid helper can match it against its fixed list.
    let qemu_binary = std::fs::canonicalize(&qemu_binary).unwrap_or(qemu_binary);
    let helper = match &opts.helper_binary {
        Some(h) => h.clone(),
        None => helper::locate_helper().map_err(|hint| LaunchError::MissingProgram {
            program: helper::HELPER_NAME.into(),
            hint: format!(": {hint}"),
        })?,
    };
    let transport = choose_transport(&opts, &helper)?;
    let accels = choose_accels(opts.accel, &opts.base_dir)?;
    let run_dir = create_run_dir(&opts.base_dir)?;
    // The helper takes plain absolute paths only.
    let kernel = plain_absolute(&opts.kernel);
    let initramfs = plain_absolute(&opts.initramfs);
    let tools = opts.tools.as_deref().map(plain_absolute);
    let binaries = Binaries {
        helper: &helper,
        qemu: &qemu_binary,
        kernel: &kernel,
        initramfs: &initramfs,
        tools: tools.as_deref(),
    };
    let result = start_in(&opts, binaries, transport, &accels, &run_dir).await;
    if let (Ok(vm), Some(keeper)) = (&result, &opts.keeper) {
        crate::keeper::spawn(vm, keeper).await;
    }
    if result.is_err() {
        keep_failure_logs(&opts.base_dir, &run_dir);
        if let Err(e) = std::fs::remove_dir_all(&run_dir) {
            log::warn!("cannot remove run directory {}: {e}", run_dir.display());
        }
    }
    result
}

/// The helper and what it is asked to run, resolved.
#[derive(Clone, Copy)]
struct Binaries<'a> {
    helper: &'a Path,
    qemu: &'a Path,
    kernel: &'a Path,
    initramfs: &'a Path,
    tools: Option<&'a Path>,
}

/// The transport once chosen (sidecar binary resolved).
#[derive(Debug, Clone)]
enum ChosenTransport {
    /// Kernel vsock with a CID from this user's block.
    Kernel {
        cids: RangeInclusive<u32>,
    },
    VhostUser {
        sidecar: PathBuf,
    },
}

async fn start_in(
    opts: &LaunchOptions,
    binaries: Binaries<'_>,
    transport: ChosenTransport,
    accels: &[Accel],
    run_dir: &Path,
) -> Result<RunningVm, LaunchError> {
    let ticket = initrd::new_ticket()?;
    let names: Vec<&str> = opts.images.iter().map(|i| i.name.as_str()).collect();
    let serials = qemu::disk_serials(&names);
    let disks: Vec<DiskRequest> = opts
        .images
        .iter()
        .zip(serials)
        .map(|(i, serial)| DiskRequest {
            source: disk_source(&i.path),
            format: i.format.clone(),
            serial,
        })
        .collect();

    let attempts = plan_attempts(accels, &opts.timeouts);
    for (n, &(accel, ready_timeout)) in attempts.iter().enumerate() {
        let next = attempts.get(n + 1).map(|a| a.0);
        // Kernel vsock: this user's CIDs, in turn while QEMU finds them taken.
        let block = match &transport {
            ChosenTransport::Kernel { cids } => cids.clone(),
            ChosenTransport::VhostUser { .. } => 0..=0,
        };
        let mut cids = block.clone();
        let mut cid = cids.next().unwrap_or_default();
        loop {
            let transport_plan = match &transport {
                ChosenTransport::Kernel { .. } => TransportPlan::Kernel { cid },
                ChosenTransport::VhostUser { sidecar } => TransportPlan::VhostUser {
                    sidecar: sidecar.clone(),
                },
            };
            let plan = LaunchPlan {
                helper: binaries.helper,
                qemu_binary: binaries.qemu,
                run_dir,
                accel,
                transport: transport_plan,
                kernel: binaries.kernel,
                initramfs: binaries.initramfs,
                tools: binaries.tools,
                disks: &disks,
                memory_mib: opts
                    .memory_mib
                    .unwrap_or_else(|| qemu::memory_for_disks(opts.images.len())),
                cpus: opts.cpus,
                port: opts.port,
                ticket: &ticket,
                ready_timeout,
                timeouts: opts.timeouts,
            };
            match vm_process::launch_once(&plan).await {
                Ok(vm) => return Ok(vm),
                Err(AttemptError::CidInUse) => {
                    let Some(next_cid) = cids.next() else {
                        return Err(LaunchError::CidsExhausted {
                            first: *block.start(),
                            last: *block.end(),
                        });
                    };
                    log::debug!("vsock CID {cid} in use, trying {next_cid}");
                    cid = next_cid;
                }
                // Only a VM that died or stayed silent is worth another
                // accelerator; a daemon that refuses us would refuse again.
                // The same accelerator again only for a silent VM (a guest
                // that exited, e.g. panicked, would do so again).
                Err(AttemptError::Failed(err))
                    if next.is_some()
                        && (matches!(*err, LaunchError::NotReady { .. })
                            || (next != Some(accel)
                                && matches!(*err, LaunchError::VmExited { .. }))) =>
                {
                    if next == Some(accel) {
                        log::warn!(
                            "the VM did not answer within {ready_timeout:?}; starting a fresh one once: {err}"
                        );
                    } else {
                        if accel == Accel::Kvm {
                            remember_kvm_unusable(&opts.base_dir, &err.to_string());
                        }
                        log::info!(
                            "{accel} did not work, retrying with the next accelerator: {err}"
                        );
                    }
                    let console = run_dir.join(vm_process::CONSOLE_LOG);
                    let _ = std::fs::rename(&console, run_dir.join(format!("console.{accel}.log")));
                    break;
                }
                Err(AttemptError::Failed(err)) => {
                    return Err(with_kept_log_paths(*err, &opts.base_dir))
                }
            }
        }
    }
    unreachable!("choose_accels never returns an empty list")
}

/// Points an error's log paths at where the logs are kept after cleanup
/// (see [`keep_failure_logs`]).
fn with_kept_log_paths(mut err: LaunchError, base_dir: &Path) -> LaunchError {
    match &mut err {
        LaunchError::VmExited { logs, .. }
        | LaunchError::NotReady { logs, .. }
        | LaunchError::Daemon { logs, .. } => logs.console_log = base_dir.join(FAILED_CONSOLE_LOG),
        LaunchError::Sidecar { log, .. } => *log = base_dir.join(FAILED_SIDECAR_LOG),
        LaunchError::Helper { log, .. } => *log = base_dir.join(FAILED_QEMU_STDERR),
        _ => {}
    }
    err
}

/// Moves the logs of a failed start from the run directory to the base directory.
fn keep_failure_logs(base_dir: &Path, run_dir: &Path) {
    for (from, to) in [
        (vm_process::CONSOLE_LOG, FAILED_CONSOLE_LOG),
        (vm_process::QEMU_STDERR, FAILED_QEMU_STDERR),
        (vm_process::SIDECAR_LOG, FAILED_SIDECAR_LOG),
    ] {
        let from = run_dir.join(from);
        // Never leave an older failure's log next to this one's.
        let _ = std::fs::remove_file(base_dir.join(to));
        if from.exists() {
            if let Err(e) = std::fs::rename(&from, base_dir.join(to)) {
                log::warn!("cannot keep {}: {e}", from.display());
            }
        }
    }
}

/// Collects the log tails of a failed VM in `run_dir`.
pub(crate) fn failure_logs(run_dir: &Path) -> FailureLogs {
    let console_log = run_dir.join(vm_process::CONSOLE_LOG);
    let mut stderr_tail = tail_lines(&run_dir.join(vm_process::QEMU_STDERR), TAIL_LINES);
    let sidecar = tail_lines(&run_dir.join(vm_process::SIDECAR_LOG), TAIL_LINES);
    if !sidecar.trim().is_empty() {
        stderr_tail.push_str("\n--- vsock sidecar log ---\n");
        stderr_tail.push_str(&sidecar);
    }
    FailureLogs {
        console_tail: tail_lines(&console_log, TAIL_LINES),
        console_log,
        stderr_tail,
    }
}

fn check_inputs(opts: &LaunchOptions) -> Result<(), LaunchError> {
    let kernel_error = |source| LaunchError::Kernel {
        path: opts.kernel.clone(),
        source,
    };
    match std::fs::metadata(&opts.kernel) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(kernel_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            )))
        }
        Err(source) => return Err(kernel_error(source)),
    }
    // QEMU would print something obscure (or boot nothing) for a file that is not a
    // kernel; say what it is instead.
    match file_restore_initramfs::check_kernel(&opts.kernel) {
        Ok(_) => {}
        Err(file_restore_initramfs::Error::NotAKernel { reason, .. }) => {
            return Err(kernel_error(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a bootable kernel: {reason}"),
            )))
        }
        Err(e) => return Err(kernel_error(io::Error::other(e.to_string()))),
    }
    File::open(&opts.initramfs).map_err(|source| InitrdError::ReadBase {
        path: opts.initramfs.clone(),
        source,
    })?;
    if opts.images.is_empty() {
        return Err(LaunchError::Image {
            path: PathBuf::new(),
            reason: "no disk images given".into(),
        });
    }
    for image in &opts.images {
        let bad = |reason: String| LaunchError::Image {
            path: image.path.clone(),
            reason,
        };
        if !ALLOWED_FORMATS.contains(&image.format.as_str()) {
            return Err(bad(format!(
                "invalid format name {:?}; file-restore-helper accepts {}",
                image.format,
                ALLOWED_FORMATS.join(", ")
            )));
        }
        if image.path.to_str().is_none() {
            return Err(bad(
                "the path is not valid UTF-8, which the helper request cannot carry; rename it"
                    .into(),
            ));
        }
        if let DiskSource::Path(path) = disk_source(&image.path) {
            std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        }
    }
    Ok(())
}

fn open_rw(path: &str) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

/// The vhost-user sidecar: a path as is; a bare name on `$PATH`, else in
/// the install directories (the Debian package ships it in
/// `/usr/lib/file-restore`).
fn find_sidecar(binary: &Path) -> Option<PathBuf> {
    find_program(binary).or_else(|| {
        let name = binary.to_str().filter(|n| !n.contains('/'))?;
        crate::util::install::find_installed(name)
    })
}

fn choose_transport(opts: &LaunchOptions, helper: &Path) -> Result<ChosenTransport, LaunchError> {
    let sidecar = || {
        find_sidecar(&opts.vhost_user_binary).ok_or_else(|| LaunchError::MissingProgram {
            program: opts.vhost_user_binary.clone(),
            hint: format!(
                " on PATH nor in {}; install it with `{VHOST_USER_INSTALL_HINT}`",
                crate::util::install::INSTALL_DIRS.join(" or ")
            ),
        })
    };
    // The helper opens /dev/vhost-vsock: it is usable when we can open it,
    // or when the helper is setuid root and the device exists; and only
    // with CIDs of this user's block (see helper::cids).
    let uid = nix::unistd::getuid().as_raw();
    let kernel_vsock = || -> io::Result<RangeInclusive<u32>> {
        let cids = cid_range(uid).ok_or_else(|| io::Error::other(no_range_reason(uid)))?;
        match open_rw(helper::VHOST_VSOCK_DEVICE) {
            Ok(_) => Ok(cids),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                let is_device = std::fs::metadata(helper::VHOST_VSOCK_DEVICE)
                    .is_ok_and(|m| m.file_type().is_char_device());
                if is_device && helper::helper_is_setuid_root(helper) {
                    Ok(cids)
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    };
    match opts.transport {
        TransportPreference::Kernel => kernel_vsock()
            .map(|cids| ChosenTransport::Kernel { cids })
            .map_err(LaunchError::KernelVsockUnavailable),
        TransportPreference::VhostUser => Ok(ChosenTransport::VhostUser {
            sidecar: sidecar()?,
        }),
        TransportPreference::Auto => match kernel_vsock() {
            Ok(cids) => Ok(ChosenTransport::Kernel { cids }),
            Err(e) => match sidecar() {
                Ok(sidecar) => Ok(ChosenTransport::VhostUser { sidecar }),
                Err(_) => Err(LaunchError::NoTransport {
                    vhost_vsock_error: e.to_string(),
                }),
            },
        },
    }
}

/// Creates `base_dir` (0700 if new) and a fresh `vm-<random>` directory (0700) in it.
fn create_run_dir(base_dir: &Path) -> Result<PathBuf, LaunchError> {
    let dir_err = |path: &Path, source| LaunchError::RunDir {
        path: path.to_path_buf(),
        source,
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(base_dir)
        .map_err(|e| dir_err(base_dir, e))?;
    for _ in 0..16 {
        let suffix = initrd::new_ticket()?;
        let dir = base_dir.join(format!("vm-{}", &suffix[..12]));
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(dir_err(&dir, e)),
        }
    }
    Err(dir_err(
        base_dir,
        io::Error::new(io::ErrorKind::AlreadyExists, "no free run directory name"),
    ))
}

/// Opens (truncating) a log file readable only by the owner.
pub(crate) fn create_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
#[path = "launch_tests.rs"]
mod tests;

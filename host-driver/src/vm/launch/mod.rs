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
//!
//! Folder: [`start_vm`] and the retry loop here; the options
//! (`options.rs`), accelerator and transport choice (`choose.rs`), input
//! checks (`checks.rs`), one attempt (`attempt.rs`: sidecar, helper,
//! readiness wait) and the errors (`error.rs`). May import the rest of
//! `vm`, `guest`, `helper`, `qemu` and `util`; only `manager` imports it.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

use crate::helper::initrd;
use crate::helper::{self, DiskRequest};
use crate::qemu::{self, Accel};
use crate::util::process::{find_program, tail_lines};
use crate::vm::{run_dir, RunningVm};

mod attempt;
mod checks;
mod choose;
mod error;
mod options;

use attempt::{disk_source, plain_absolute, AttemptError, LaunchPlan, TransportPlan};
use checks::check_inputs;
use choose::{
    choose_accels, choose_transport, plan_attempts, remember_kvm_unusable, remember_kvm_works,
    AccelPlan, ChosenTransport,
};
pub use choose::{KVM_UNUSABLE_FILE, KVM_WORKS_FILE};
pub use error::{FailureLogs, LaunchError};
pub use options::{AccelPreference, ImageSpec, LaunchOptions, LaunchTimeouts, TransportPreference};

/// Installing the vhost-user vsock backend.
pub const VHOST_USER_INSTALL_HINT: &str = "cargo install vhost-device-vsock --locked";
/// Name of the vhost-user vsock sidecar binary.
pub const VHOST_USER_BINARY: &str = "vhost-device-vsock";
/// Lines of console/stderr quoted in errors.
const TAIL_LINES: usize = 20;

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
    let result = match accels {
        AccelPlan::InTurn(accels) => {
            match start_in_new_dir(&opts, binaries, transport, &accels, None).await {
                Ok(vm) => Ok(vm),
                Err((err, run_dir)) => Err(discard(&opts.base_dir, &run_dir, err, true)),
            }
        }
        AccelPlan::Race => race(&opts, binaries, transport).await,
    };
    if let (Ok(vm), Some(keeper)) = (&result, &opts.keeper) {
        crate::vm::keeper::spawn(vm, keeper).await;
    }
    result
}

/// A start in a run directory of its own; on failure, the error and that
/// directory (for [`discard`]).
async fn start_in_new_dir(
    opts: &LaunchOptions,
    binaries: Binaries<'_>,
    transport: ChosenTransport,
    accels: &[Accel],
    stop: Option<watch::Receiver<bool>>,
) -> Result<RunningVm, (LaunchError, PathBuf)> {
    let run_dir = create_run_dir(&opts.base_dir).map_err(|e| (e, PathBuf::new()))?;
    start_in(opts, binaries, transport, accels, &run_dir, stop)
        .await
        .map_err(|e| (e, run_dir))
}

/// Removes the run directory of a failed start (nothing runs in it any more),
/// first moving its logs to the base directory when they explain the error
/// reported; gives the error back.
fn discard(base_dir: &Path, run_dir: &Path, err: LaunchError, keep_logs: bool) -> LaunchError {
    if run_dir.as_os_str().is_empty() {
        return err;
    }
    if keep_logs {
        keep_failure_logs(base_dir, run_dir);
    }
    if let Err(e) = std::fs::remove_dir_all(run_dir) {
        log::warn!("cannot remove run directory {}: {e}", run_dir.display());
    }
    err
}

/// KVM and TCG at once ([`AccelPlan::Race`]): the first VM whose daemon
/// answers is kept and the other attempt stopped (its processes killed and
/// reaped, its run directory removed). What KVM did is remembered for the
/// rest of the host's boot: a KVM guest that answered, or one that failed or
/// was overtaken by a TCG guest (an emulated CPU is ~5-10 times slower, so a
/// KVM that loses does not run the guest properly).
async fn race(
    opts: &LaunchOptions,
    binaries: Binaries<'_>,
    transport: ChosenTransport,
) -> Result<RunningVm, LaunchError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let kvm = start_in_new_dir(
        opts,
        binaries,
        transport.clone(),
        &[Accel::Kvm],
        Some(stop_rx.clone()),
    );
    let tcg = start_in_new_dir(opts, binaries, transport, &[Accel::Tcg], Some(stop_rx));
    tokio::pin!(kvm, tcg);
    let (kvm_result, tcg_result) = tokio::select! {
        k = &mut kvm => {
            if k.is_ok() {
                let _ = stop_tx.send(true);
            }
            (k, tcg.await)
        }
        t = &mut tcg => {
            if t.is_ok() {
                let _ = stop_tx.send(true);
            }
            (kvm.await, t)
        }
    };
    match (kvm_result, tcg_result) {
        (Ok(vm), tcg) => {
            remember_kvm_works(&opts.base_dir);
            match tcg {
                // Both answered in the same instant: the TCG one goes.
                Ok(extra) => {
                    if let Err(e) = crate::vm::teardown::stop_vm(&extra, Duration::ZERO).await {
                        log::warn!("cannot stop the second VM of a race: {e}");
                    }
                }
                Err((err, dir)) => {
                    discard(&opts.base_dir, &dir, err, false);
                }
            }
            log::debug!("KVM answered first");
            Ok(vm)
        }
        (Err((kvm_err, kvm_dir)), tcg) => {
            if matches!(
                kvm_err,
                LaunchError::Superseded { .. }
                    | LaunchError::NotReady { .. }
                    | LaunchError::VmExited { .. }
            ) {
                remember_kvm_unusable(&opts.base_dir, &kvm_err.to_string());
            } else {
                log::info!("the KVM VM of the race did not start: {kvm_err}");
            }
            discard(&opts.base_dir, &kvm_dir, kvm_err, false);
            match tcg {
                Ok(vm) => Ok(vm),
                Err((err, dir)) => Err(discard(&opts.base_dir, &dir, err, true)),
            }
        }
    }
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

async fn start_in(
    opts: &LaunchOptions,
    binaries: Binaries<'_>,
    transport: ChosenTransport,
    accels: &[Accel],
    run_dir: &Path,
    stop: Option<watch::Receiver<bool>>,
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
                stop: stop.clone(),
            };
            match attempt::launch_once(&plan).await {
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
                    let console = run_dir.join(run_dir::CONSOLE_LOG);
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
        | LaunchError::Daemon { logs, .. } => {
            logs.console_log = base_dir.join(run_dir::FAILED_CONSOLE_LOG)
        }
        LaunchError::Sidecar { log, .. } => *log = base_dir.join(run_dir::FAILED_SIDECAR_LOG),
        LaunchError::Helper { log, .. } => *log = base_dir.join(run_dir::FAILED_QEMU_STDERR),
        _ => {}
    }
    err
}

/// Moves the logs of a failed start from the run directory to the base directory.
fn keep_failure_logs(base_dir: &Path, run_dir: &Path) {
    for (from, to) in [
        (run_dir::CONSOLE_LOG, run_dir::FAILED_CONSOLE_LOG),
        (run_dir::QEMU_STDERR, run_dir::FAILED_QEMU_STDERR),
        (run_dir::SIDECAR_LOG, run_dir::FAILED_SIDECAR_LOG),
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
    let console_log = run_dir.join(run_dir::CONSOLE_LOG);
    let mut stderr_tail = tail_lines(&run_dir.join(run_dir::QEMU_STDERR), TAIL_LINES);
    let sidecar = tail_lines(&run_dir.join(run_dir::SIDECAR_LOG), TAIL_LINES);
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

#[cfg(test)]
mod tests;

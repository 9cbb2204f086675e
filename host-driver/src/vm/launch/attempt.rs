//! One attempt at starting a VM with a fixed accelerator and transport: the
//! vsock sidecar (vhost-user only), QEMU through `file-restore-helper`, and
//! the wait for the daemon. [`super`] (the launch) decides what to try and in
//! which order.
//!
//! QEMU is never spawned directly: the helper gets one
//! [`HelperRequest`] on stdin, checks it, builds the per-VM initramfs and
//! execs QEMU in its own place, so the pid spawned here is QEMU's.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Child;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{failure_logs, LaunchError, LaunchTimeouts};
use crate::guest::client::{ClientError, DaemonClient};
use crate::guest::ready::ReadySignal;
use crate::guest::transport::VsockAddr;
use crate::helper::{
    self, Action, DiskRequest, DiskSource, HelperRequest, TransportRequest, MESSAGE_PREFIX,
    PROTOCOL_VERSION,
};
use crate::qemu::Accel;
use crate::util::process::{spawn_detached, spawn_detached_with_stdin, tail_lines};
use crate::util::unix_now;
use crate::vm::run_dir::{
    create_log, CONSOLE_LOG, HYBRID_SOCKET, QEMU_STDERR, QMP_SOCKET, SIDECAR_LOG, VHOST_USER_SOCKET,
};
use crate::vm::RunningVm;

/// Guest CID given to the per-VM sidecar (any value > 2 works: it is private).
const SIDECAR_GUEST_CID: u32 = 3;
/// First and largest pause between readiness probes. A failed probe costs
/// well under a millisecond (the sidecar resets at once while the guest does
/// not listen), so the cap is kept low: the pause is pure added boot latency
/// (on average half the cap).
const PROBE_DELAY_FIRST: Duration = Duration::from_millis(25);
const PROBE_DELAY_MAX: Duration = Duration::from_millis(50);

/// The transport of one attempt.
#[derive(Debug, Clone)]
pub(crate) enum TransportPlan {
    Kernel { cid: u32 },
    VhostUser { sidecar: PathBuf },
}

/// Everything one attempt needs.
pub(crate) struct LaunchPlan<'a> {
    pub helper: &'a Path,
    pub qemu_binary: &'a Path,
    pub run_dir: &'a Path,
    pub accel: Accel,
    pub transport: TransportPlan,
    pub kernel: &'a Path,
    pub initramfs: &'a Path,
    pub tools: Option<&'a Path>,
    pub disks: &'a [DiskRequest],
    pub memory_mib: u32,
    pub cpus: u32,
    pub port: u32,
    pub ticket: &'a str,
    pub ready_timeout: Duration,
    pub timeouts: LaunchTimeouts,
    /// Set to `true` when another start won a race (see `start_vm`): the
    /// attempt then stops its VM and ends with [`LaunchError::Superseded`].
    pub stop: Option<watch::Receiver<bool>>,
}

/// How an attempt failed.
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// QEMU could not claim the kernel vsock CID: try the next one.
    CidInUse,
    /// Anything else (with logs collected and processes gone).
    Failed(Box<LaunchError>),
}

impl From<LaunchError> for AttemptError {
    fn from(e: LaunchError) -> Self {
        AttemptError::Failed(Box::new(e))
    }
}

/// Why the daemon did not become ready.
enum NotReady {
    QemuExited(String),
    SidecarExited(String),
    Timeout(String),
    Refused(ClientError),
    Superseded,
}

/// Starts the sidecar (if any) and QEMU and waits for the daemon. On failure
/// both processes are killed and reaped before this returns.
pub(crate) async fn launch_once(plan: &LaunchPlan<'_>) -> Result<RunningVm, AttemptError> {
    let run_dir = plan.run_dir;
    let console_log = run_dir.join(CONSOLE_LOG);
    let qmp_socket = run_dir.join(QMP_SOCKET);
    let _ = std::fs::remove_file(&qmp_socket);

    let (mut sidecar, ready, addr, transport) = match &plan.transport {
        TransportPlan::Kernel { cid } => (
            None,
            None,
            VsockAddr::Kernel {
                cid: *cid,
                port: plan.port,
            },
            TransportRequest::Kernel { cid: *cid },
        ),
        TransportPlan::VhostUser { sidecar } => {
            let ready = ReadySignal::bind(&run_dir.join(HYBRID_SOCKET)).map_err(|source| {
                LaunchError::Spawn {
                    program: sidecar.clone(),
                    source,
                }
            })?;
            let child = start_sidecar(plan, sidecar).await?;
            (
                Some(child),
                Some(ready),
                VsockAddr::HybridUnix {
                    path: run_dir.join(HYBRID_SOCKET),
                    port: plan.port,
                },
                TransportRequest::VhostUser {
                    socket: run_dir.join(VHOST_USER_SOCKET),
                },
            )
        }
    };

    let request = HelperRequest {
        version: PROTOCOL_VERSION,
        action: Action::Start,
        qemu: Some(plan.qemu_binary.to_path_buf()),
        kernel: plan.kernel.to_path_buf(),
        initramfs: plan.initramfs.to_path_buf(),
        tools: plan.tools.map(Path::to_path_buf),
        ticket: plan.ticket.to_string(),
        disks: plan.disks.to_vec(),
        memory_mib: plan.memory_mib,
        cpus: plan.cpus,
        accel: plan.accel,
        transport,
        run_dir: run_dir.to_path_buf(),
        console_log: console_log.clone(),
        qmp_socket: qmp_socket.clone(),
    };
    let mut qemu = match start_helper(plan, &request).await {
        Ok(child) => child,
        Err(source) => {
            if let Some(s) = sidecar.as_mut() {
                kill_and_reap(s).await;
            }
            return Err(LaunchError::Spawn {
                program: plan.helper.to_path_buf(),
                source,
            }
            .into());
        }
    };
    log::debug!(
        "started {} through {} ({}) pid {:?} in {}",
        plan.qemu_binary.display(),
        plan.helper.display(),
        plan.accel,
        qemu.id(),
        run_dir.display()
    );

    let outcome = wait_ready(plan, &addr, ready.as_ref(), &mut qemu, sidecar.as_mut()).await;
    if let Err(why) = outcome {
        kill_and_reap(&mut qemu).await;
        if let Some(s) = sidecar.as_mut() {
            kill_and_reap(s).await;
        }
        return Err(attempt_error(plan, why));
    }
    let (Some(pid), sidecar_pid) = (qemu.id(), sidecar.as_ref().and_then(Child::id)) else {
        // QEMU was reaped between the answer and now: it is gone.
        if let Some(s) = sidecar.as_mut() {
            kill_and_reap(s).await;
        }
        return Err(attempt_error(plan, NotReady::QemuExited("unknown".into())));
    };
    // Dropping the handles leaves both running; tokio reaps them if they end
    // while this process still lives.
    Ok(RunningVm {
        pid,
        sidecar_pid,
        addr,
        ticket: plan.ticket.to_string(),
        accel: plan.accel,
        run_dir: run_dir.to_path_buf(),
        console_log,
        qmp_socket,
        started_at: unix_now(),
    })
}

/// Turns a readiness failure into the attempt's error, reading the logs.
fn attempt_error(plan: &LaunchPlan<'_>, why: NotReady) -> AttemptError {
    let logs = failure_logs(plan.run_dir);
    if let NotReady::QemuExited(status) = &why {
        if let Some(message) = helper_message(&logs.stderr_tail) {
            return LaunchError::Helper {
                helper: plan.helper.to_path_buf(),
                message,
                status: status.clone(),
                log: plan.run_dir.join(QEMU_STDERR),
            }
            .into();
        }
    }
    let err = match why {
        NotReady::QemuExited(status) => {
            if matches!(plan.transport, TransportPlan::Kernel { .. })
                && is_cid_in_use(&format!("{}\n{}", logs.stderr_tail, logs.console_tail))
            {
                return AttemptError::CidInUse;
            }
            LaunchError::VmExited {
                accel: plan.accel,
                status,
                logs,
            }
        }
        NotReady::SidecarExited(status) => LaunchError::VmExited {
            accel: plan.accel,
            status: format!("its vsock sidecar exited: {status}"),
            logs,
        },
        NotReady::Timeout(last_error) => LaunchError::NotReady {
            accel: plan.accel,
            after: plan.ready_timeout,
            last_error,
            logs,
        },
        NotReady::Superseded => LaunchError::Superseded { accel: plan.accel },
        NotReady::Refused(source) => LaunchError::Daemon {
            source: Box::new(source),
            logs,
        },
    };
    err.into()
}

/// QEMU's message when another VM holds the kernel vsock CID.
pub(crate) fn is_cid_in_use(text: &str) -> bool {
    text.contains("unable to set guest cid")
        && (text.contains("Address already in use") || text.contains("EADDRINUSE"))
}

/// The helper's own error lines (it stopped before exec'ing QEMU), if any.
fn helper_message(stderr_tail: &str) -> Option<String> {
    let lines: Vec<&str> = stderr_tail
        .lines()
        .filter_map(|l| l.strip_prefix(MESSAGE_PREFIX))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// Spawns the helper (detached, in its own session, stdout and stderr to
/// QEMU's log, the disks' descriptors inherited) and writes the request to
/// its stdin. The helper execs QEMU, so the child is QEMU.
async fn start_helper(plan: &LaunchPlan<'_>, request: &HelperRequest) -> std::io::Result<Child> {
    let json = serde_json::to_vec(request)?;
    let log = create_log(&plan.run_dir.join(QEMU_STDERR))?;
    let mut child = spawn_detached_with_stdin(
        plan.helper,
        &[],
        &log,
        &request.inherited_fds(),
        Stdio::piped(),
    )?;
    if let Some(mut stdin) = child.stdin.take() {
        // The request is far below a pipe's capacity; a helper that died
        // early (EPIPE) is reported by the readiness wait with its log.
        let written = tokio::time::timeout(Duration::from_secs(5), async {
            stdin.write_all(&json).await?;
            stdin.shutdown().await
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::debug!("writing the request to {}: {e}", plan.helper.display()),
            Err(_) => log::debug!("writing the request to {} timed out", plan.helper.display()),
        }
    }
    Ok(child)
}

/// How the helper gets an image: `/dev/fd/N` as an inherited descriptor, an
/// NBD URI as such, anything else as an absolute path (made plain, as the
/// helper requires, by resolving it when it holds `.` or `..`).
pub(crate) fn disk_source(path: &Path) -> DiskSource {
    if let Some(fd) = inherited_fd(path) {
        return DiskSource::Fd(fd);
    }
    if let Some(uri) = path
        .to_str()
        .filter(|p| p.starts_with("nbd://") || p.starts_with("nbd+unix://"))
    {
        return DiskSource::Nbd(uri.to_string());
    }
    DiskSource::Path(plain_absolute(path))
}

/// `path` as an absolute path without `.`/`..` components (resolved only
/// when needed, so an image keeps the name its relative backing files are
/// resolved against).
pub(crate) fn plain_absolute(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if helper::is_plain_absolute(&abs) {
        abs
    } else {
        std::fs::canonicalize(path).unwrap_or(abs)
    }
}

/// The descriptor number of a `/dev/fd/N` path.
pub(crate) fn inherited_fd(path: &Path) -> Option<RawFd> {
    path.to_str()?
        .strip_prefix("/dev/fd/")?
        .parse()
        .ok()
        .filter(|fd| *fd > 2)
}

fn describe_exit(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("status unknown: {e}"),
    }
}

/// Once QEMU answers on QMP (its devices, the vsock CID included, are set
/// up) and, with a `ready` signal (vhost-user), once the guest has sent it
/// (see [`crate::guest::ready`]), polls the daemon (liveness, then an
/// authenticated status; each connection begins with the guest's ticket
/// proof) with a growing pause, while watching QEMU and the sidecar for an
/// early exit.
async fn wait_ready(
    plan: &LaunchPlan<'_>,
    addr: &VsockAddr,
    ready: Option<&ReadySignal>,
    qemu: &mut Child,
    sidecar: Option<&mut Child>,
) -> Result<(), NotReady> {
    let deadline = Instant::now() + plan.ready_timeout;
    // A Mutex (not a RefCell) keeps the start future Send, so that it can run
    // on a spawned task.
    let last_error = Mutex::new(String::from(match ready {
        Some(_) => "the guest never signalled that its vsock is up",
        None => "no answer yet",
    }));
    let note = |e: &ClientError| {
        if let Ok(mut last) = last_error.lock() {
            *last = crate::util::text::error_chain(e);
        }
    };
    let exited = async {
        match sidecar {
            Some(s) => tokio::select! {
                st = qemu.wait() => NotReady::QemuExited(describe_exit(st)),
                st = s.wait() => NotReady::SidecarExited(describe_exit(st)),
            },
            None => NotReady::QemuExited(describe_exit(qemu.wait().await)),
        }
    };
    let probing = async {
        // Not before QEMU holds the vsock CID (see crate::qemu::qmp): until then a
        // kernel vsock connection would reach whichever VM has it now.
        crate::qemu::qmp::answered(&plan.run_dir.join(QMP_SOCKET)).await;
        if let Some(ready) = ready {
            if let Err(e) = ready.wait().await {
                log::warn!("waiting for the guest's ready signal: {e}; probing anyway");
            }
            if let Ok(mut last) = last_error.lock() {
                *last = String::from("no answer yet");
            }
        }
        let mut delay = PROBE_DELAY_FIRST;
        loop {
            let limit = plan
                .timeouts
                .probe
                .min(deadline.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(10));
            let client = DaemonClient::new(addr.clone(), plan.ticket).with_timeouts(limit, limit);
            match client.status_liveness().await {
                Ok(_) => match client.status(false).await {
                    Ok(_) => return Ok(()),
                    Err(
                        e @ (ClientError::Daemon { .. }
                        | ClientError::ApiVersion { .. }
                        | ClientError::NoProof { .. }
                        | ClientError::TicketRejected { .. }),
                    ) => return Err(NotReady::Refused(e)),
                    Err(e) => note(&e),
                },
                // A guest that answered but cannot prove the ticket would not
                // learn it by waiting.
                Err(e @ (ClientError::ApiVersion { .. } | ClientError::NoProof { .. })) => {
                    return Err(NotReady::Refused(e))
                }
                Err(e) => note(&e),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 3 / 2).min(PROBE_DELAY_MAX);
        }
    };
    let superseded = async {
        match plan.stop.clone() {
            // `wait_for` ends at once when it is set already; an error means the
            // sender is gone, which never stops anything.
            Some(mut stop) => {
                if stop.wait_for(|stop| *stop).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        why = exited => Err(why),
        r = probing => r,
        () = superseded => Err(NotReady::Superseded),
        _ = tokio::time::sleep_until(deadline) => {
            Err(NotReady::Timeout(last_error.lock().map(|l| l.clone()).unwrap_or_default()))
        }
    }
}

/// Starts `vhost-device-vsock` for this VM and waits for its vhost-user socket.
async fn start_sidecar(plan: &LaunchPlan<'_>, program: &Path) -> Result<Child, AttemptError> {
    let run_dir = plan.run_dir;
    let vhu = run_dir.join(VHOST_USER_SOCKET);
    let uds = run_dir.join(HYBRID_SOCKET);
    let log_path = run_dir.join(SIDECAR_LOG);
    for stale in [&vhu, &uds] {
        let _ = std::fs::remove_file(stale);
    }
    let fail = |detail: String| LaunchError::Sidecar {
        program: program.to_path_buf(),
        detail,
        log: log_path.clone(),
        log_tail: tail_lines(&log_path, 20),
    };
    let args: Vec<OsString> = vec![
        "--guest-cid".into(),
        SIDECAR_GUEST_CID.to_string().into(),
        "--socket".into(),
        vhu.clone().into(),
        "--uds-path".into(),
        uds.into(),
    ];
    let mut child = create_log(&log_path)
        .and_then(|log| spawn_detached(program, &args, &log, &[]))
        .map_err(|source| LaunchError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
    let deadline = Instant::now() + plan.timeouts.sidecar_ready;
    loop {
        if vhu.exists() {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(fail(format!("exited at start ({status})")).into());
        }
        if Instant::now() >= deadline {
            kill_and_reap(&mut child).await;
            return Err(fail(format!(
                "its socket {} did not appear within {:?}",
                vhu.display(),
                plan.timeouts.sidecar_ready
            ))
            .into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SIGKILLs a child we spawned and waits for it.
async fn kill_and_reap(child: &mut Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

#[cfg(test)]
mod tests;

//! `file-restore-helper`: starts one restore VM's QEMU for `file-restore`.
//!
//! The only file-restore binary that may be installed setuid root (kernel
//! vsock needs `/dev/vhost-vsock`, root-only on most hosts). It reads one
//! JSON request on stdin (see `file_restore::helper`), validates
//! it (a kernel vsock CID must be in the caller's own block), opens
//! `/dev/vhost-vsock` if the request asks for kernel vsock (the one
//! privileged step), drops to the invoking user's real uid/gid for good,
//! checks the run directory and disks as that user, builds the per-VM
//! initramfs and execs QEMU in its place (so QEMU keeps the helper's pid)
//! with a scrubbed environment. Without setuid it does the same with the
//! user's own rights.
//!
//! Errors go to stderr as one line starting with `file-restore-helper: `;
//! exit status 2 for a refused request, 1 for a failure.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::Context;
use file_restore::helper::initrd;
use file_restore::helper::{
    checks, read_request, BootPolicy, HelperError, TransportRequest, EXIT_FAILED, EXIT_REFUSED,
    MAX_REQUEST_BYTES, MESSAGE_PREFIX,
};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// The only environment QEMU gets.
const QEMU_ENV: &[(&str, &str)] = &[("PATH", "/usr/bin:/bin"), ("LANG", "C")];

const USAGE: &str = "\
usage: file-restore-helper [--print-command] < request.json

Starts a file-restore VM's QEMU from one JSON request on stdin (written by the
file-restore CLI; at most 64 KiB; see the file_restore::helper docs).
The request is validated, /dev/vhost-vsock is opened if kernel vsock is asked
for, privileges are dropped to the invoking user for good, disks are checked
as that user, and QEMU is exec'd in place of the helper.

  --print-command  do everything but exec: print QEMU's command line as JSON
  --help, --version";

fn main() -> ExitCode {
    let mut print_only = false;
    for arg in std::env::args_os().skip(1) {
        match arg.to_str() {
            Some("--print-command") => print_only = true,
            Some("--help" | "-h") => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Some("--version" | "-V") => {
                println!("file-restore-helper {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("{MESSAGE_PREFIX}unexpected argument {arg:?}\n{USAGE}");
                return ExitCode::from(EXIT_REFUSED);
            }
        }
    }
    match run(print_only) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The library's errors already quote their causes.
            match e.downcast_ref::<HelperError>() {
                Some(h) => {
                    eprintln!("{MESSAGE_PREFIX}{h}");
                    ExitCode::from(if h.is_refusal() {
                        EXIT_REFUSED
                    } else {
                        EXIT_FAILED
                    })
                }
                None => {
                    eprintln!("{MESSAGE_PREFIX}{e:#}");
                    ExitCode::from(EXIT_FAILED)
                }
            }
        }
    }
}

fn run(print_only: bool) -> anyhow::Result<()> {
    let user = checks::invoking_user()?;
    let req = read_request(io::stdin().lock())?;
    req.validate()?;
    // A kernel vsock CID from the caller's own block only, so that no user
    // can take the CIDs another user's VMs are started with.
    req.check_cid_for(user.uid)?;
    // Before the helper opens anything itself: a disk descriptor must be
    // one the caller passed, never one of ours.
    for fd in req.inherited_fds() {
        checks::check_inherited_fd(fd)?;
    }
    let exe = std::fs::read_link("/proc/self/exe").ok();
    let policy = BootPolicy::new(user.privileged, exe.as_deref());
    policy.check_boot_files(&req)?;
    let qemu = policy.qemu_binary(&req)?;

    // The one privileged step.
    let vhost = match req.transport {
        TransportRequest::Kernel { .. } => Some(checks::open_vhost_vsock()?),
        TransportRequest::VhostUser { .. } => None,
    };
    checks::drop_privileges(&user)?;

    // From here on: the invoking user's rights only.
    checks::check_run_dir(&req, user.uid)?;
    for disk in &req.disks {
        checks::check_disk(disk, user.uid)?;
    }
    std::fs::File::open(&req.kernel).map_err(|e| HelperError::BootFile {
        what: "kernel",
        path: req.kernel.clone(),
        reason: format!("cannot be read by uid {}: {e}", user.uid),
    })?;
    let initrd = initrd::build_vm_initrd(&req.initramfs, &req.ticket)?;
    let vhostfd = vhost.as_ref().map(AsRawFd::as_raw_fd);
    let args = req.vm_config(initrd.fd_path(), vhostfd).to_args();
    if print_only {
        return print_command(&qemu, &args);
    }
    let mut keep = req.inherited_fds();
    keep.push(initrd.raw_fd());
    keep.extend(vhostfd);
    prepare_descriptors(&keep).map_err(HelperError::Descriptors)?;
    // SAFETY: umask only changes this process's file creation mask.
    unsafe { libc::umask(0o077) };
    let err = Command::new(&qemu)
        .args(&args)
        .env_clear()
        .envs(QEMU_ENV.iter().copied())
        .current_dir("/")
        .exec();
    Err(HelperError::Exec {
        program: qemu,
        source: err,
    }
    .into())
}

/// `{"program": …, "args": […]}` on stdout.
fn print_command(program: &Path, args: &[OsString]) -> anyhow::Result<()> {
    let out = serde_json::json!({
        "program": program.to_string_lossy(),
        "args": args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>(),
        "env": QEMU_ENV.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "max_request_bytes": MAX_REQUEST_BYTES,
    });
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{out}").context("cannot write the command to stdout")?;
    Ok(())
}

/// stdin from `/dev/null` (the request pipe is not QEMU's business); every
/// descriptor above 2 close-on-exec except `keep`, whose flag is cleared.
fn prepare_descriptors(keep: &[RawFd]) -> io::Result<()> {
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: dup2 on two valid descriptors.
    if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(null);
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in open {
        let Ok(bits) = fcntl(fd, FcntlArg::F_GETFD) else {
            continue; // the read_dir descriptor, closed by now
        };
        let mut flags = FdFlag::from_bits_truncate(bits);
        flags.set(FdFlag::FD_CLOEXEC, !keep.contains(&fd));
        fcntl(fd, FcntlArg::F_SETFD(flags))?;
    }
    Ok(())
}

//! The host's own hold on a VM's lifetime and console log: a small process,
//! `file-restore-keeper`, started (detached, as the user) next to every VM.
//!
//! The guest's idle watchdog powers an unused VM off, but a guest whose
//! kernel a crafted filesystem owns never does, and it can print to its
//! serial console without end. So the keeper, once a second:
//!
//! - ends when QEMU has ended;
//! - stops the VM ([`crate::vm::teardown::stop_vm`]: API stop, QMP quit, SIGKILL,
//!   sidecar, run directory) once no invocation has used it for
//!   [`KeeperOptions::idle_limit`]. "Used" is host-side state only, never an
//!   answer of the guest: every invocation that uses the VM holds a shared
//!   `flock` on [`IN_USE_FILE`] in its run directory for as long as it runs
//!   and sets the file's mtime when it starts ([`mark_in_use`]);
//! - keeps the console log at most [`KeeperOptions::console_cap`] bytes (plus
//!   what the guest writes within one second): past the cap the file is cut
//!   back and ends with [`CAP_MARKER`]. QEMU appends to it (`append=on`), so
//!   cutting it does not leave a hole for QEMU to fill.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::vm::RunningVm;

/// Name of the keeper binary (installed next to the helper).
pub const KEEPER_NAME: &str = "file-restore-keeper";
/// The keeper's log in the run directory.
pub const KEEPER_LOG: &str = "keeper.log";
/// The usage file in a VM's run directory (see the module documentation).
pub const IN_USE_FILE: &str = "in-use";
/// The line that ends a console log cut at its cap.
pub const CAP_MARKER: &[u8] =
    b"\n[file-restore: console log capped here; the rest was discarded]\n";
/// How often the keeper looks.
const TICK: Duration = Duration::from_secs(1);

/// The keeper's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeeperOptions {
    /// Stop the VM after this long without use: the daemon's default idle
    /// timeout (600 s) plus a margin of 60 s, so a well-behaved guest always
    /// powers itself off first.
    pub idle_limit: Duration,
    /// Largest console log in bytes (4 MiB).
    pub console_cap: u64,
}

impl Default for KeeperOptions {
    fn default() -> Self {
        KeeperOptions {
            idle_limit: Duration::from_secs(600 + 60),
            console_cap: 4 << 20,
        }
    }
}

/// The locks this process holds on the VMs it uses, kept until it exits.
static HELD: Mutex<Vec<InUse>> = Mutex::new(Vec::new());

/// A shared hold on a VM's [`IN_USE_FILE`]; released on drop.
#[derive(Debug)]
pub struct InUse {
    _file: File,
}

/// Takes a shared hold on the VM of `run_dir` and marks it used now.
pub fn hold(run_dir: &Path) -> io::Result<InUse> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(run_dir.join(IN_USE_FILE))?;
    flock(&file, libc::LOCK_SH)?;
    file.set_modified(SystemTime::now())?;
    Ok(InUse { _file: file })
}

/// [`hold`] for the rest of this process's life (what the CLI and `serve`
/// do with each VM they use). Errors are logged: a VM that cannot be marked
/// is only stopped sooner.
pub fn mark_in_use(run_dir: &Path) {
    match hold(run_dir) {
        Ok(h) => {
            if let Ok(mut held) = HELD.lock() {
                held.push(h);
            }
        }
        Err(e) => log::warn!("cannot mark {} as in use: {e}", run_dir.display()),
    }
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Seconds since the VM of `run_dir` was last used: 0 while some process
/// holds it, else since the usage file's mtime (or `started`, without one).
fn idle_for(run_dir: &Path, started: SystemTime) -> Duration {
    let path = run_dir.join(IN_USE_FILE);
    let Ok(file) = File::open(&path) else {
        return SystemTime::now()
            .duration_since(started)
            .unwrap_or_default();
    };
    if flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_err() {
        return Duration::ZERO;
    }
    let last = file
        .metadata()
        .and_then(|m| m.modified())
        .unwrap_or(started);
    SystemTime::now().duration_since(last).unwrap_or_default()
}

/// Cuts `log` back to `cap` bytes ending with [`CAP_MARKER`] once it is
/// longer. Returns whether it cut.
pub fn cap_console(log: &Path, cap: u64) -> io::Result<bool> {
    let len = match std::fs::symlink_metadata(log) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= cap {
        return Ok(false);
    }
    let mut f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(log)?;
    let keep = cap.saturating_sub(CAP_MARKER.len() as u64);
    f.set_len(keep)?;
    // QEMU appends; so does this write (the file offset of a fresh
    // descriptor is 0, and the file now ends at `keep`).
    use std::io::Seek;
    f.seek(io::SeekFrom::Start(keep))?;
    f.write_all(CAP_MARKER)?;
    Ok(true)
}

/// Reads the VM to keep (its [`RunningVm`] JSON, at most 64 KiB) from `input`.
pub fn read_vm(input: impl Read) -> io::Result<RunningVm> {
    let mut buf = Vec::new();
    input.take(64 * 1024 + 1).read_to_end(&mut buf)?;
    if buf.len() > 64 * 1024 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "request over 64 KiB",
        ));
    }
    serde_json::from_slice(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The keeper's loop: returns when QEMU has ended or once it has stopped the VM.
pub async fn keep(vm: &RunningVm, opts: &KeeperOptions) {
    let started = SystemTime::now();
    let mut capped = false;
    loop {
        if !crate::vm::teardown::is_alive(vm) {
            return;
        }
        match cap_console(&vm.console_log, opts.console_cap) {
            Ok(true) if !capped => {
                capped = true;
                log::warn!(
                    "console log {} reached {} bytes: capped",
                    vm.console_log.display(),
                    opts.console_cap
                );
            }
            Ok(_) => {}
            Err(e) => log::warn!("capping {}: {e}", vm.console_log.display()),
        }
        let idle = idle_for(&vm.run_dir, started);
        if idle >= opts.idle_limit {
            log::warn!(
                "VM in {} unused for {} s (limit {} s): stopping it",
                vm.run_dir.display(),
                idle.as_secs(),
                opts.idle_limit.as_secs()
            );
            if let Err(e) = crate::vm::teardown::stop_vm(vm, Duration::from_secs(4)).await {
                log::warn!("stopping the VM in {}: {e}", vm.run_dir.display());
            }
            return;
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Finds the keeper binary like the helper: next to this executable (or
/// one up from `deps/`), the install directories, `$PATH`.
pub fn locate_keeper() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join(KEEPER_NAME));
            if dir.file_name() == Some(std::ffi::OsStr::new("deps")) {
                if let Some(up) = dir.parent() {
                    candidates.push(up.join(KEEPER_NAME));
                }
            }
        }
    }
    candidates.extend(
        crate::util::install::install_dirs()
            .into_iter()
            .map(|d| d.join(KEEPER_NAME)),
    );
    candidates
        .into_iter()
        .find(|p| crate::util::process::is_executable(p))
        .or_else(|| crate::util::process::find_program(Path::new(KEEPER_NAME)))
}

/// Starts `file-restore-keeper` for `vm` (detached, as the user; its log is
/// `keeper.log` in the run directory). A keeper that cannot start is
/// reported, not fatal: the VM then relies on its guest's idle watchdog.
pub(crate) async fn spawn(vm: &RunningVm, opts: &KeeperOptions) {
    use tokio::io::AsyncWriteExt;
    let Some(program) = locate_keeper() else {
        log::warn!(
            "{} not found (next to this program, in the install directories or on $PATH): \
             the VM in {} is not stopped by the host when unused, and its console log is not capped",
            KEEPER_NAME,
            vm.run_dir.display()
        );
        return;
    };
    let args: Vec<std::ffi::OsString> = vec![
        "--idle-limit".into(),
        opts.idle_limit.as_secs().max(1).to_string().into(),
        "--console-cap".into(),
        opts.console_cap.to_string().into(),
    ];
    let spawned = crate::vm::run_dir::create_log(&vm.run_dir.join(KEEPER_LOG)).and_then(|log| {
        crate::util::process::spawn_detached_with_stdin(
            &program,
            &args,
            &log,
            &[],
            std::process::Stdio::piped(),
        )
    });
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            log::warn!("cannot start {}: {e}", program.display());
            return;
        }
    };
    let json = match serde_json::to_vec(vm) {
        Ok(j) => j,
        Err(e) => {
            log::warn!("cannot describe the VM to {}: {e}", program.display());
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let written = tokio::time::timeout(Duration::from_secs(5), async {
            stdin.write_all(&json).await?;
            stdin.shutdown().await
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            log::warn!("cannot hand the VM to {}", program.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_is_cut_at_the_cap_with_a_marker() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        std::fs::write(&log, vec![b'a'; 1000]).unwrap();
        assert!(!cap_console(&log, 1000).unwrap());
        std::fs::write(&log, vec![b'a'; 5000]).unwrap();
        assert!(cap_console(&log, 1000).unwrap());
        let got = std::fs::read(&log).unwrap();
        assert_eq!(got.len(), 1000);
        assert!(got.ends_with(CAP_MARKER));
        assert!(!cap_console(&dir.path().join("none"), 10).unwrap());
    }

    #[test]
    fn a_holder_keeps_the_vm_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        assert!(idle_for(dir.path(), long_ago) >= Duration::from_secs(3599));
        let held = hold(dir.path()).unwrap();
        assert_eq!(idle_for(dir.path(), long_ago), Duration::ZERO);
        drop(held);
        // Released: idle since the mtime set by `hold`, i.e. about now.
        assert!(idle_for(dir.path(), long_ago) < Duration::from_secs(5));
    }
}

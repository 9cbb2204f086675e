//! Stopping a VM that may have been started by another invocation (so it is
//! not necessarily our child): politely through the API, then through QMP,
//! then with SIGKILL, always checking that the pid still belongs to that VM.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::qemu::escape_option_value;
use crate::qemu::qmp::Qmp;
use crate::util::process::{cmdline, pid_alive, send_signal, wait_gone};
use crate::vm::RunningVm;

/// Program-name hint for QEMU in `/proc/<pid>/cmdline`.
const QEMU_HINT: &str = "qemu";
/// Limit of the API stop call and of the QMP exchange.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a SIGKILLed process may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Failure to stop a VM completely.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    /// A process survived SIGKILL.
    #[error("{what} (pid {pid}) of VM {run_dir} is still running after SIGKILL")]
    StillRunning {
        /// "QEMU" or "vsock sidecar".
        what: &'static str,
        /// Its pid.
        pid: u32,
        /// The VM's run directory.
        run_dir: PathBuf,
    },
    /// The run directory could not be removed.
    #[error("cannot remove run directory {path}: {source}")]
    RemoveRunDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// True when the VM's QEMU process is running (and is still that VM's QEMU,
/// not an unrelated process that reused the pid).
pub fn is_alive(vm: &RunningVm) -> bool {
    process_matches(vm.pid, QEMU_HINT, &vm.run_dir)
}

/// Stops `vm`: API `stop` (errors ignored), QMP `quit` if it is still up
/// after half of `grace`, SIGKILL after the rest of `grace`; then the
/// sidecar is stopped and the run directory removed.
pub async fn stop_vm(vm: &RunningVm, grace: Duration) -> Result<(), TeardownError> {
    if is_alive(vm) {
        let client = vm.client().with_timeouts(CONTROL_TIMEOUT, CONTROL_TIMEOUT);
        if let Err(e) = client.stop().await {
            log::debug!("API stop of {} failed: {e}", vm.run_dir.display());
        }
        if !wait_gone(vm.pid, grace / 2).await {
            match tokio::time::timeout(CONTROL_TIMEOUT, qmp_quit(&vm.qmp_socket)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::debug!("QMP quit via {} failed: {e}", vm.qmp_socket.display()),
                Err(_) => log::debug!("QMP quit via {} timed out", vm.qmp_socket.display()),
            }
            if !wait_gone(vm.pid, grace / 2).await {
                kill_checked(vm.pid, QEMU_HINT, "QEMU", &vm.run_dir).await?;
            }
        }
    }
    if let Some(pid) = vm.sidecar_pid {
        // The sidecar's argv names sockets in the run directory.
        if process_matches(pid, "", &vm.run_dir) {
            send_signal(pid, Signal::SIGTERM);
            if !wait_gone(pid, Duration::from_secs(1)).await {
                kill_checked(pid, "", "vsock sidecar", &vm.run_dir).await?;
            }
        }
    }
    remove_run_dir(&vm.run_dir)
}

/// SIGKILLs `pid` if it still matches, and waits for it to go.
async fn kill_checked(
    pid: u32,
    hint: &str,
    what: &'static str,
    run_dir: &Path,
) -> Result<(), TeardownError> {
    if process_matches(pid, hint, run_dir) {
        send_signal(pid, Signal::SIGKILL);
        if !wait_gone(pid, KILL_WAIT).await {
            return Err(TeardownError::StillRunning {
                what,
                pid,
                run_dir: run_dir.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Removes a run directory, refusing anything not named like one (`vm-…`),
/// so that a corrupted VM map cannot make us delete an unrelated directory.
fn remove_run_dir(dir: &Path) -> Result<(), TeardownError> {
    let ours = dir
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("vm-"));
    if !ours {
        log::warn!(
            "not removing {}: not a file-restore run directory",
            dir.display()
        );
        return Ok(());
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(TeardownError::RemoveRunDir {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Sends `qmp_capabilities` then `quit` over the QMP socket.
async fn qmp_quit(socket: &Path) -> io::Result<()> {
    let mut qmp = Qmp::connect(socket).await?;
    // QEMU answers {"return": {}} and closes; either is fine.
    let _ = qmp.execute("quit").await;
    Ok(())
}

/// True when `pid` is alive, its program name contains `program_hint` and
/// one of its arguments mentions `run_dir` (raw or comma-escaped): a guard
/// against killing an unrelated process that reused the pid.
pub(crate) fn process_matches(pid: u32, program_hint: &str, run_dir: &Path) -> bool {
    if !pid_alive(pid) {
        return false;
    }
    let Some(argv) = cmdline(pid) else {
        return false;
    };
    cmdline_matches(&argv, program_hint, run_dir)
}

fn cmdline_matches(argv: &[Vec<u8>], program_hint: &str, run_dir: &Path) -> bool {
    let Some(argv0) = argv.first() else {
        return false;
    };
    let name = Path::new(OsStr::from_bytes(argv0))
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default();
    if !contains(&name, program_hint.as_bytes()) {
        return false;
    }
    let raw = run_dir.as_os_str().as_bytes();
    let escaped = escape_option_value(run_dir.as_os_str());
    argv[1..]
        .iter()
        .any(|a| contains(a, raw) || contains(a, escaped.as_bytes()))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::UnixListener;

    #[test]
    fn refuses_foreign_run_dir() {
        let dir = tempfile::tempdir().unwrap();
        let foreign = dir.path().join("home");
        std::fs::create_dir(&foreign).unwrap();
        remove_run_dir(&foreign).unwrap();
        assert!(foreign.exists());
        let ours = dir.path().join("vm-abc");
        std::fs::create_dir(&ours).unwrap();
        std::fs::write(ours.join("console.log"), b"x").unwrap();
        remove_run_dir(&ours).unwrap();
        assert!(!ours.exists());
        remove_run_dir(&ours).unwrap();
    }

    #[tokio::test]
    async fn qmp_exchange() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut lines = BufReader::new(r).lines();
            w.write_all(b"{\"QMP\": {\"version\": {}}}\n")
                .await
                .unwrap();
            let mut got = Vec::new();
            for _ in 0..2 {
                got.push(lines.next_line().await.unwrap().unwrap());
                w.write_all(b"{\"return\": {}}\n").await.unwrap();
            }
            got
        });
        qmp_quit(&path).await.unwrap();
        let got = server.await.unwrap();
        assert_eq!(
            got,
            [r#"{"execute":"qmp_capabilities"}"#, r#"{"execute":"quit"}"#]
        );
    }

    #[test]
    fn cmdline_guard() {
        let argv: Vec<Vec<u8>> = vec![
            b"/usr/bin/qemu-system-x86_64".to_vec(),
            b"-chardev".to_vec(),
            b"file,id=con0,path=/run/a,,b/vm-1/console.log".to_vec(),
        ];
        assert!(cmdline_matches(&argv, "qemu", Path::new("/run/a,b/vm-1")));
        assert!(!cmdline_matches(&argv, "qemu", Path::new("/run/a,b/vm-2")));
        assert!(!cmdline_matches(
            &argv,
            "vhost-device-vsock",
            Path::new("/run/a,b/vm-1")
        ));
        assert!(!cmdline_matches(&[], "qemu", Path::new("/x")));
    }
}

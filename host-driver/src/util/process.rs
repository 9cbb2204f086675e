//! Process helpers for VMs and sidecars that outlive the invocation that
//! started them: spawning into a new session, checking by pid (not as a
//! child) whether a process is still the one we started, signalling it, and
//! reading the tail of its logs.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Spawns `program` in its own session (so it survives us and our terminal),
/// stdin from `/dev/null`, stdout and stderr to `log`.
///
/// The descriptors in `inherit` have their close-on-exec flag cleared in the
/// child only, so it sees them under the same numbers.
pub(crate) fn spawn_detached(
    program: &Path,
    args: &[OsString],
    log: &File,
    inherit: &[RawFd],
) -> io::Result<tokio::process::Child> {
    spawn_detached_with_stdin(program, args, log, inherit, Stdio::null())
}

/// [`spawn_detached`] with the given stdin (e.g. a pipe for a request).
pub(crate) fn spawn_detached_with_stdin(
    program: &Path,
    args: &[OsString],
    log: &File,
    inherit: &[RawFd],
    stdin: Stdio,
) -> io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(stdin)
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .kill_on_drop(false);
    let inherit = inherit.to_vec();
    // SAFETY: the closure runs between fork and exec and only calls the
    // async-signal-safe setsid(2) and fcntl(2), reading a Vec allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            for &fd in &inherit {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// True when `pid` exists and is not a zombie.
pub(crate) fn pid_alive(pid: u32) -> bool {
    if pid <= 1 || pid > i32::MAX as u32 {
        return false;
    }
    if kill(Pid::from_raw(pid as i32), None).is_err() {
        return false;
    }
    // A zombie still answers kill(0); it is dead for our purposes.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// When `pid` started (clock ticks after boot, `/proc/<pid>/stat` field 22),
/// `None` when it does not exist or is a zombie. A pid and its start time
/// name one process: a reused pid has another start time.
pub(crate) fn pid_start_time(pid: u32) -> Option<u64> {
    if !pid_alive(pid) {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name: state is field 3, starttime field 22.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// The argument vector of `pid`, from `/proc/<pid>/cmdline`.
pub(crate) fn cmdline(pid: u32) -> Option<Vec<Vec<u8>>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(<[u8]>::to_vec)
            .collect(),
    )
}

/// Sends `signal` to `pid`; errors (already gone) are ignored.
pub(crate) fn send_signal(pid: u32, signal: Signal) {
    if pid > 1 && pid <= i32::MAX as u32 {
        let _ = kill(Pid::from_raw(pid as i32), signal);
    }
}

/// Waits until `pid` is gone (or a zombie), up to `limit`. True when gone.
pub(crate) async fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !pid_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last `n` lines of a (log) file, reading at most its last 64 KiB;
/// empty when it cannot be read. Terminal control sequences and other
/// control characters are removed (the text comes from the guest and is
/// printed to a terminal). When a `Kernel panic` line falls before the
/// tail, it is put in front of it, since it says why the guest died.
pub fn tail_lines(path: &Path, n: usize) -> String {
    const MAX: u64 = 64 << 10;
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX && f.seek(SeekFrom::Start(len - MAX)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let text = strip_control(&String::from_utf8_lossy(&buf));
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut out: Vec<&str> = lines[..start]
        .iter()
        .filter(|l| l.contains("Kernel panic"))
        .copied()
        .collect();
    if !out.is_empty() {
        out.push("[...]");
    }
    out.extend_from_slice(&lines[start..]);
    out.join("\n")
}

/// Removes ANSI escape sequences and control characters other than newline and tab.
fn strip_control(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    // CSI: parameters and intermediates up to a final byte @..~.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Whether `p` is a regular file (after symlinks) with an execute bit.
pub(crate) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds an executable: a path with a `/` as is, else the first match on `$PATH`.
pub(crate) fn find_program(name: &Path) -> Option<PathBuf> {
    if name.as_os_str().as_bytes().contains(&b'/') {
        return is_executable(name).then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_name_one_process() {
        let me = std::process::id();
        let t = pid_start_time(me).unwrap();
        assert_eq!(pid_start_time(me), Some(t));
        assert_eq!(pid_start_time(0), None);
        assert_eq!(pid_start_time(u32::MAX), None);
    }

    #[test]
    fn self_is_alive_and_bogus_pids_are_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(1));
        assert!(!pid_alive(u32::MAX));
    }

    #[test]
    fn tail_of_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail_lines(&p, 2), "c\nd");
        assert_eq!(tail_lines(&p, 10), "a\nb\nc\nd");
        assert_eq!(tail_lines(&dir.path().join("none"), 3), "");
        std::fs::write(&p, "boot\nKernel panic - not syncing: x\nbt1\nbt2\nbt3\n").unwrap();
        assert_eq!(
            tail_lines(&p, 2),
            "Kernel panic - not syncing: x\n[...]\nbt2\nbt3"
        );
    }

    #[test]
    fn control_sequences_removed() {
        assert_eq!(
            strip_control("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS\r\nok\x07\tx"),
            "SeaBIOS\nok\tx"
        );
    }

    #[test]
    fn program_lookup() {
        assert!(find_program(Path::new("sh")).is_some());
        assert!(find_program(Path::new("/bin/sh")).is_some());
        assert!(find_program(Path::new("surely-not-a-program-xyz")).is_none());
    }
}

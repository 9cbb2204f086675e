//! Running commands with a time limit, hashing with `sha256sum`, finding the
//! processes a test run started, and small formatting helpers.

use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// What a finished (or killed) command left behind.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub cmd: String,
    /// Exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Captured stdout (empty when it went to a file).
    pub stdout: Vec<u8>,
    /// Captured stderr (lossy UTF-8).
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
    /// Whether the time limit killed it.
    pub timed_out: bool,
}

impl Output {
    /// stdout as lossy UTF-8.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// A few lines that say what ran and how it ended (for failure messages).
    pub fn describe(&self) -> String {
        let end = match (self.timed_out, self.code) {
            (true, _) => format!(
                "was killed after {:.1} s (time limit)",
                self.elapsed.as_secs_f64()
            ),
            (false, Some(c)) => format!("exited {c} after {:.2} s", self.elapsed.as_secs_f64()),
            (false, None) => "was ended by a signal".to_string(),
        };
        let mut s = format!("`{}` {end}", self.cmd);
        let err = self.stderr.trim_end();
        if !err.is_empty() {
            let _ = write!(
                s,
                "\n    stderr: {}",
                clip(err, 1500).replace('\n', "\n            ")
            );
        }
        if !self.stdout.is_empty() {
            let out = self.stdout_str();
            let _ = write!(
                s,
                "\n    stdout: {}",
                clip(out.trim_end(), 600).replace('\n', "\n            ")
            );
        }
        s
    }

    /// Fails unless the command exited 0.
    pub fn check(self) -> Result<Output> {
        if self.code != Some(0) || self.timed_out {
            bail!("{}", self.describe());
        }
        Ok(self)
    }
}

/// Shortens `s` to about `max` bytes (on a char boundary), saying how much was left off.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &s[..end], s.len() - end)
}

/// Quotes an argument for display.
pub fn shell_quote(a: &OsStr) -> String {
    let s = String::from_utf8_lossy(a.as_bytes());
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Where a command's stdout goes.
pub enum Stdout<'a> {
    /// Captured in [`Output::stdout`].
    Capture,
    /// Written to this file (created or truncated).
    File(&'a Path),
    /// A pipe whose reading end is closed before the command starts, as for
    /// `cmd | head` once head has gone: every write fails with EPIPE.
    ClosedPipe,
}

/// Runs `cmd` with an optional stdin, killing it after `limit`.
pub fn run(
    mut cmd: Command,
    stdin: Option<Vec<u8>>,
    stdout: Stdout<'_>,
    limit: Duration,
) -> Result<Output> {
    let shown = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    match stdout {
        Stdout::Capture => {
            cmd.stdout(Stdio::piped());
        }
        Stdout::File(p) => {
            let f = std::fs::File::create(p)
                .with_context(|| format!("cannot create {}", p.display()))?;
            cmd.stdout(f);
        }
        Stdout::ClosedPipe => {
            let mut fds = [0; 2];
            // SAFETY: pipe2 writes two new descriptors into `fds` on success.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                return Err(std::io::Error::last_os_error()).context("cannot make a pipe");
            }
            // SAFETY: both descriptors are new and owned by nothing else.
            let (reader, writer) = unsafe {
                use std::os::fd::FromRawFd;
                (
                    std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                    std::os::fd::OwnedFd::from_raw_fd(fds[1]),
                )
            };
            drop(reader);
            cmd.stdout(Stdio::from(writer));
        }
    }
    cmd.stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run `{shown}`"))?;
    let writer = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => Some(thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })),
        _ => None,
    };
    let out_reader = child.stdout.take().map(|mut p| {
        thread::spawn(move || {
            let mut v = Vec::new();
            let _ = p.read_to_end(&mut v);
            v
        })
    });
    let mut err_pipe = child.stderr.take().context("no stderr pipe")?;
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let mut timed_out = false;
    let mut nap = Duration::from_millis(1);
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait()?;
        }
        thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = out_reader
        .map(|r| r.join().unwrap_or_default())
        .unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    Ok(Output {
        cmd: shown,
        code: status.code(),
        signal: std::os::unix::process::ExitStatusExt::signal(&status),
        stdout,
        stderr,
        elapsed,
        timed_out,
    })
}

/// Runs a system tool and fails with its output unless it exits 0.
pub fn tool<I, S>(program: &str, args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(program);
    c.args(args);
    run(c, None, Stdout::Capture, Duration::from_secs(600))?.check()
}

/// The hex SHA-256 of some bytes (`sha256sum`: fast even in a debug build).
pub fn sha256_bytes(data: &[u8]) -> Result<String> {
    let out = run(
        Command::new("sha256sum"),
        Some(data.to_vec()),
        Stdout::Capture,
        Duration::from_secs(300),
    )?
    .check()?;
    parse_sum(&out.stdout)
}

/// The hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let out = tool("sha256sum", [OsStr::new("--"), path.as_os_str()])?;
    parse_sum(&out.stdout)
}

fn parse_sum(out: &[u8]) -> Result<String> {
    let s = String::from_utf8_lossy(out);
    let hex = s.split_whitespace().next().unwrap_or("");
    if hex.len() != 64 {
        bail!("sha256sum printed {s:?}");
    }
    Ok(hex.to_string())
}

/// A process whose command line names a given string.
#[derive(Debug, Clone)]
pub struct Proc {
    /// Its pid.
    pub pid: i32,
    /// argv joined with spaces (lossy).
    pub cmdline: String,
}

/// Live (non-zombie) processes whose command line contains `needle`, except this one.
pub fn processes_mentioning(needle: &str) -> Vec<Proc> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me || is_zombie(pid) {
            continue;
        }
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(Proc {
                pid,
                cmdline: cmdline.trim_end().to_string(),
            });
        }
    }
    found.sort_by_key(|p| p.pid);
    found
}

/// QEMU and vhost-device-vsock processes whose command line contains `needle`.
pub fn vm_processes_mentioning(needle: &str) -> Vec<Proc> {
    processes_mentioning(needle)
        .into_iter()
        .filter(|p| {
            let argv0 = p.cmdline.split(' ').next().unwrap_or("");
            argv0.contains("qemu-system") || argv0.contains("vhost-device-vsock")
        })
        .collect()
}

/// Whether the process is gone or a zombie.
pub fn is_zombie(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
        Err(_) => true,
    }
}

/// Whether the process no longer runs (gone or a zombie).
pub fn is_dead(pid: i32) -> bool {
    is_zombie(pid)
}

/// Waits until `pid` no longer runs; false after `limit`.
pub fn wait_dead(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if is_dead(pid) {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    is_dead(pid)
}

/// Sends SIGKILL.
pub fn kill9(pid: i32) -> Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
        bail!("kill -9 {pid}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM` (UTC) of a Unix time, as the CLI's text output prints it.
pub fn format_utc_minutes(secs: i64) -> String {
    let (y, mo, d, h, mi, _) = file_restore_wire::civil_from_unix(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}")
}

/// A Unix time with its UTC date, for messages.
pub fn show_time(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = file_restore_wire::civil_from_unix(secs);
    format!("{secs} ({y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC)")
}

/// A path made from raw bytes.
pub fn path_from_bytes(b: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(b))
}

/// Lossy display of raw path bytes.
pub fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(format_utc_minutes(0), "1970-01-01 00:00");
        assert_eq!(format_utc_minutes(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(format_utc_minutes(4_102_444_800), "2100-01-01 00:00");
    }

    #[test]
    fn run_captures_and_limits() {
        let mut c = Command::new("sh");
        c.args(["-c", "cat; echo err >&2; exit 3"]);
        let o = run(
            c,
            Some(b"in".to_vec()),
            Stdout::Capture,
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(o.code, Some(3));
        assert_eq!(o.stdout, b"in");
        assert_eq!(o.stderr, "err\n");
        let mut c = Command::new("sleep");
        c.arg("5");
        let o = run(c, None, Stdout::Capture, Duration::from_millis(100)).unwrap();
        assert!(o.timed_out && o.code.is_none());
    }

    #[test]
    fn sha256_of_abc() {
        assert_eq!(
            sha256_bytes(b"abc").unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

//! The storage tools: Debian's lvm, mdadm, cryptsetup and OpenZFS on the read-only
//! tools disk the host attaches (serial [`TOOLS_SERIAL`], built by
//! `scripts/build-tools-image.sh`).
//!
//! The disk is mounted on first need only — when a disk carries an LVM, md
//! or LUKS signature — so VMs of plain disks never read it. Each tool runs
//! through the image's own dynamic loader with `--library-path`, with a
//! cleared environment, no udev, a time limit and bounded output; stdin is
//! either closed or carries exactly one secret (a passphrase), which is never
//! on a command line, in the environment or in a log line.

use crate::pid1;
use file_restore_wire::TOOLS_SERIAL;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where the tools disk is mounted.
const MOUNT_POINT: &str = "/run/tools";

/// The loader inside the image.
const LOADER: &str = "lib/ld-linux-x86-64.so.2";

/// Output kept of a tool's stdout or stderr; the rest is read and dropped.
const MAX_OUTPUT: usize = 4 << 20;

/// What a tool run gave.
#[derive(Debug)]
pub struct Output {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Its standard output (at most [`MAX_OUTPUT`] bytes).
    pub stdout: Vec<u8>,
    /// Its standard error, lossily decoded and trimmed.
    pub stderr: String,
}

impl Output {
    /// True for exit code 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// The last lines of stderr, for error messages (at most ~400 bytes).
    pub fn stderr_tail(&self) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let mut tail = lines[lines.len().saturating_sub(3)..].join("; ");
        if tail.len() > 400 {
            let mut cut = tail.len() - 400;
            while !tail.is_char_boundary(cut) {
                cut += 1;
            }
            tail = format!("…{}", &tail[cut..]);
        }
        tail
    }
}

/// The mounted tools image.
#[derive(Debug)]
pub struct Tools {
    root: PathBuf,
}

static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();

/// The tools, mounting their disk on the first call. The error says why
/// they are not there (no tools disk attached, a mount failure).
pub fn get() -> Result<&'static Tools, String> {
    TOOLS.get_or_init(mount).as_ref().map_err(Clone::clone)
}

/// Finds the tools disk by its serial and mounts it read-only.
fn mount() -> Result<Tools, String> {
    let dev = find_tools_disk().ok_or_else(|| {
        "the storage tools disk is not attached to this VM (tools.img missing next to the \
         initramfs on the host: reinstall file-restore), so LVM, md RAID and LUKS cannot be \
         opened"
            .to_string()
    })?;
    std::fs::create_dir_all(MOUNT_POINT)
        .map_err(|e| format!("cannot create {MOUNT_POINT}: {e}"))?;
    let flags = nix::mount::MsFlags::MS_RDONLY
        | nix::mount::MsFlags::MS_NOSUID
        | nix::mount::MsFlags::MS_NODEV;
    let started = Instant::now();
    nix::mount::mount(
        Some(&dev),
        MOUNT_POINT,
        Some("squashfs"),
        flags,
        None::<&str>,
    )
    .map_err(|e| format!("cannot mount the storage tools disk {}: {e}", dev.display()))?;
    for dir in ["/run/lock/lvm", "/run/lvm", "/run/cryptsetup", "/run/mdadm"] {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {dir}: {e}"))?;
    }
    log::info!(
        "storage tools mounted from {} in {} ms",
        dev.display(),
        started.elapsed().as_millis()
    );
    Ok(Tools {
        root: PathBuf::from(MOUNT_POINT),
    })
}

/// The device node of the disk whose virtio serial is [`TOOLS_SERIAL`].
fn find_tools_disk() -> Option<PathBuf> {
    let rd = std::fs::read_dir("/sys/block").ok()?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("vd") {
            continue;
        }
        if is_tools_disk(&e.path()) {
            return super::blockdev::node(&name).ok();
        }
    }
    None
}

/// Whether the sysfs block directory `dir` is the tools disk.
pub fn is_tools_disk(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("serial")).is_ok_and(|s| s.trim() == TOOLS_SERIAL)
}

impl Tools {
    /// A kernel module on the tools disk (`lib/modules/<file>`: OpenZFS's
    /// `spl.ko` and `zfs.ko`).
    pub fn module_path(&self, file: &str) -> PathBuf {
        self.root.join("lib/modules").join(file)
    }

    /// Runs `tool` (`lvm`, `mdadm`, `cryptsetup`, `dmsetup`, `zpool`, `zfs`) with `args`;
    /// `secret`, when given, is written to its stdin and stdin closed. Ends
    /// it after `limit`.
    pub fn run(
        &self,
        tool: &str,
        args: &[&str],
        secret: Option<&[u8]>,
        limit: Duration,
    ) -> Result<Output, String> {
        let mut cmd = Command::new(self.root.join(LOADER));
        cmd.arg("--library-path")
            .arg(self.root.join("lib"))
            .arg(self.root.join("bin").join(tool))
            .args(args)
            .env_clear()
            .env("PATH", self.root.join("bin"))
            .env("HOME", "/run")
            .env("LANG", "C")
            .env("LVM_SYSTEM_DIR", self.root.join("etc/lvm"))
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .env("DM_DISABLE_UDEV", "1")
            // zpool/zfs: the module is loaded by the daemon, devices are named
            // without udev, and no hostid file exists.
            .env("ZFS_MODULE_LOADING", "no")
            .env("ZPOOL_IMPORT_UDEV_TIMEOUT_MS", "0")
            .env("ZFS_VDEV_DEVID_OPT_OUT", "YES")
            .stdin(if secret.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child =
            pid1::spawn_owned(&mut cmd).map_err(|e| format!("cannot run {tool}: {e}"))?;
        let pid = child.id();
        let result = collect(&mut child, secret, limit);
        pid1::release_child(pid);
        let out = result.map_err(|e| format!("{tool}: {e}"))?;
        log::debug!(
            "{tool} {} -> {:?} in {} ms",
            args.join(" "),
            out.code,
            started.elapsed().as_millis()
        );
        Ok(out)
    }
}

/// Feeds the secret, reads both streams (bounded) and waits, killing the
/// child once `limit` has passed.
fn collect(
    child: &mut std::process::Child,
    secret: Option<&[u8]>,
    limit: Duration,
) -> Result<Output, String> {
    if let (Some(secret), Some(mut stdin)) = (secret, child.stdin.take()) {
        // A tool that exits without reading gives EPIPE: its exit code says more.
        let _ = stdin.write_all(secret);
    }
    let readers = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .map(|r| r.map(|r| std::thread::spawn(move || read_bounded(r))));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer after {} s; stopped", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    };
    let [stdout, stderr] = readers.map(|h| h.and_then(|h| h.join().ok()).unwrap_or_default());
    Ok(Output {
        code: status.code(),
        stdout,
        stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
    })
}

fn read_bounded(mut r: Box<dyn Read + Send>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_keeps_the_last_lines_and_bounds_them() {
        let o = Output {
            code: Some(5),
            stdout: Vec::new(),
            stderr: "a\n\nb\nc\nd".into(),
        };
        assert_eq!(o.stderr_tail(), "b; c; d");
        let long = Output {
            code: Some(1),
            stdout: Vec::new(),
            stderr: "é".repeat(500),
        };
        assert!(long.stderr_tail().len() <= 404);
    }
}

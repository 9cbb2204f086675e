//! Running `qemu-img info` and reading its JSON.
//!
//! `qemu-img info` without `--backing-chain` reads only the image's own
//! header: it does not open the backing file (nor a qcow2 external data
//! file), which is what lets the chain walk validate each backing file
//! before anything opens it.
//!
//! Every call runs under [`QEMU_IMG_TIMEOUT`] ([`output`]): a `qemu-img`
//! stuck on a file (a hung NFS mount, a device that never answers) is killed
//! and the error names the file, instead of hanging the restore.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::SourceError;

/// The `qemu-img` binary (looked up in `PATH`).
pub const QEMU_IMG: &str = "qemu-img";

/// How long one `qemu-img` call may take before it is killed.
pub const QEMU_IMG_TIMEOUT: Duration = Duration::from_secs(10);

/// What `qemu-img info --output=json` reports about one image.
#[derive(Debug, Clone, Deserialize)]
pub struct ImgInfo {
    /// The file name as qemu-img opened it.
    pub filename: String,
    /// The format driver (`qcow2`, `raw`, `vmdk`, …).
    pub format: String,
    /// Guest-visible size in bytes.
    #[serde(rename = "virtual-size")]
    pub virtual_size: u64,
    /// The backing file name as written in the header.
    #[serde(rename = "backing-filename", default)]
    pub backing_filename: Option<String>,
    /// The backing file's format, when the header records it.
    #[serde(rename = "backing-filename-format", default)]
    pub backing_format: Option<String>,
    /// Format-specific details (qcow2 data file, vmdk extents, …).
    #[serde(rename = "format-specific", default)]
    pub format_specific: Option<serde_json::Value>,
}

impl ImgInfo {
    /// Other files this image makes QEMU open besides its backing file: a
    /// qcow2 external data file, vmdk extents. Each as `(what, file name)`.
    pub fn external_files(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let Some(spec) = &self.format_specific else {
            return out;
        };
        let data = &spec["data"];
        if let Some(f) = data["data-file"].as_str() {
            out.push(("external data file", f.to_string()));
        }
        if let Some(extents) = data["extents"].as_array() {
            for e in extents {
                if let Some(f) = e["filename"].as_str() {
                    out.push(("vmdk extent", f.to_string()));
                }
            }
        }
        out
    }
}

fn run(path: &Path, format: Option<&str>, chain: bool) -> Result<Vec<u8>, SourceError> {
    let mut cmd = Command::new(QEMU_IMG);
    cmd.args(["info", "--output=json", "-U"]);
    if chain {
        cmd.arg("--backing-chain");
    }
    if let Some(f) = format {
        cmd.args(["-f", f]);
    }
    // Callers pass absolute paths, so the argument can never be taken for an
    // option or a `protocol:` prefix.
    cmd.arg(path);
    let out = output(&mut cmd, path)?;
    if !out.status.success() {
        return Err(SourceError::NotAnImage {
            path: path.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// `qemu-img info --output=json -U [-f FORMAT] PATH`: the image's own header,
/// without opening its backing file.
pub fn info(path: &Path, format: Option<&str>) -> Result<ImgInfo, SourceError> {
    let out = run(path, format, false)?;
    serde_json::from_slice(&out).map_err(|e| SourceError::QemuImgOutput {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// `qemu-img info --backing-chain --output=json -U [-f FORMAT] PATH`: every
/// member of the chain, top first. This opens the backing files, so call it
/// only after each of them has been validated.
pub fn info_chain(path: &Path, format: Option<&str>) -> Result<Vec<ImgInfo>, SourceError> {
    let out = run(path, format, true)?;
    serde_json::from_slice(&out).map_err(|e| SourceError::QemuImgOutput {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Runs `cmd` (a `qemu-img` call about `path`) with stdin closed and its
/// output captured, killing it after [`QEMU_IMG_TIMEOUT`].
pub fn output(cmd: &mut Command, path: &Path) -> Result<Output, SourceError> {
    output_within(cmd, path, QEMU_IMG_TIMEOUT)
}

/// [`output`] with an explicit limit. On timeout the child is killed and
/// reaped, and [`SourceError::QemuImgTimeout`] names `path`.
pub(super) fn output_within(
    cmd: &mut Command,
    path: &Path,
    limit: Duration,
) -> Result<Output, SourceError> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| SourceError::QemuImgRun { source: e })?;
    // Drain both pipes in threads so a chatty child never blocks on a full
    // pipe while we wait for it.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                kill(&mut child);
                // The reader threads end when the killed child's pipes
                // close; they are not waited for.
                return Err(SourceError::QemuImgTimeout {
                    path: path.to_path_buf(),
                    secs: limit.as_secs_f64(),
                });
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                kill(&mut child);
                return Err(SourceError::QemuImgRun { source: e });
            }
        }
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            // A read error leaves what was read; the exit status decides.
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

fn kill(child: &mut Child) {
    // Kill only this child (by its handle), then reap it.
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stuck_call_is_killed_and_names_the_file() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let start = Instant::now();
        let e = output_within(
            &mut cmd,
            Path::new("/srv/x.qcow2"),
            Duration::from_millis(200),
        )
        .expect_err("timeout")
        .to_string();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(e.contains("/srv/x.qcow2") && e.contains("timed out"), "{e}");
    }

    #[test]
    fn output_is_captured() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = output(&mut cmd, Path::new("/x")).unwrap();
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status.code(), Some(3));
    }
}

//! Running `qemu-img info` and reading its JSON.
//!
//! `qemu-img info` without `--backing-chain` reads only the image's own
//! header: it does not open the backing file (nor a qcow2 external data
//! file), which is what lets the chain walk validate each backing file
//! before anything opens it.

use std::path::Path;
use std::process::Command;

use serde::Deserialize;

use super::SourceError;

/// The `qemu-img` binary (looked up in `PATH`).
pub const QEMU_IMG: &str = "qemu-img";

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
    let out = cmd
        .output()
        .map_err(|e| SourceError::QemuImgRun { source: e })?;
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

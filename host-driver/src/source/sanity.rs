//! The host's only judgements of an image, before a VM starts.
//!
//! The host never judges what an image holds: every file QEMU can open boots,
//! and the guest names what it finds on it, or why it cannot read it (an APFS
//! container, a filesystem it has no driver for, nothing at all). Reading
//! content on the host would mean a second, weaker detector that refuses what
//! the guest could read. Two things are decided here:
//!
//! - a lone SOURCE file under 1 KiB is no disk image at all (not even a
//!   partition table fits), so it is refused with its size;
//! - a format `qemu-img check` understands (qcow2, vmdk, vhdx, ...) is checked.
//!   A damaged one (corrupt refcounts, truncated) is still opened, read-only
//!   as always, because that is when a user most needs what it still holds;
//!   the finding is returned and shown to the user as a warning. An image QEMU
//!   cannot open at all fails earlier, in `qemu-img info`.

use super::{qemu_img, SourceError, QEMU_IMG};
use crate::util::text::terminal_safe;
use std::path::Path;
use std::process::Command;

/// Formats `qemu-img check` can verify (it fails for the others).
const CHECKABLE: &[&str] = &["qcow2", "qed", "vdi", "vhdx", "parallels", "vmdk"];

/// The smallest file taken as a disk image: below this not even a partition
/// table fits.
const MIN_IMAGE_LEN: u64 = 1024;

/// Checks that `path` (in `format`) is worth attaching. Refuses a tiny raw
/// file only when `raw_must_hold_a_disk` (a lone SOURCE file; a small blank
/// disk in a snapshot directory is normal). Returns what `qemu-img check`
/// found wrong with an image that is opened anyway.
pub fn check_content(
    path: &Path,
    format: &str,
    raw_must_hold_a_disk: bool,
) -> Result<Option<String>, SourceError> {
    if format == "raw" {
        if raw_must_hold_a_disk {
            check_size(path)?;
        }
        return Ok(None);
    }
    if CHECKABLE.contains(&format) {
        return check_with_qemu_img(path, format);
    }
    Ok(None)
}

fn check_size(path: &Path) -> Result<(), SourceError> {
    let meta = std::fs::metadata(path).map_err(|e| SourceError::Stat {
        path: path.to_path_buf(),
        source: e,
    })?;
    // A block device's metadata length is 0: only regular files are measured.
    if meta.is_file() && meta.len() < MIN_IMAGE_LEN {
        return Err(SourceError::NotADisk {
            path: path.to_path_buf(),
            reason: format!(
                "it is only {} bytes long (a disk image holds at least {MIN_IMAGE_LEN})",
                meta.len()
            ),
        });
    }
    Ok(())
}

/// Runs `qemu-img check`; `Some(finding)` when it reports more than leaked
/// clusters (which are harmless for reading).
fn check_with_qemu_img(path: &Path, format: &str) -> Result<Option<String>, SourceError> {
    let mut cmd = Command::new(QEMU_IMG);
    cmd.args(["check", "-U", "--output=json", "-f", format])
        .arg(path);
    let out = qemu_img::output(&mut cmd, path)?;
    // 0: clean; 3: leaked clusters only.
    if matches!(out.status.code(), Some(0) | Some(3)) {
        return Ok(None);
    }
    // The JSON is qemu-img's, about an untrusted file: only numbers are taken.
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut parts = Vec::new();
    for (key, what) in [
        ("corruptions", "corruptions"),
        ("check-errors", "check errors"),
    ] {
        if let Some(n) = json.get(key).and_then(|v| v.as_u64()).filter(|n| *n > 0) {
            parts.push(format!("{n} {what}"));
        }
    }
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if let Some(end) = json.get("image-end-offset").and_then(|v| v.as_u64()) {
        if end > file_len {
            parts.push(format!(
                "data should reach byte {end} but the file ends at {file_len}"
            ));
        }
    }
    if parts.is_empty() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().map(str::trim).find(|l| !l.is_empty());
        parts.push(match first {
            Some(line) => {
                let line: String = line.chars().take(300).collect();
                terminal_safe(&line).into_owned()
            }
            None => format!("it exited with {}", out.status),
        });
    }
    Ok(Some(format!("qemu-img check: {}", parts.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};

    /// Content is the guest's to judge: only a file too small to be a disk
    /// is refused, with its size.
    #[test]
    fn only_a_tiny_raw_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notes.img");
        std::fs::write(&p, "just some text\n".repeat(500)).unwrap();
        assert_eq!(check_content(&p, "raw", true).unwrap(), None);
        let tiny = dir.path().join("tiny.img");
        std::fs::write(&tiny, b"x").unwrap();
        let e = check_content(&tiny, "raw", true).unwrap_err().to_string();
        assert!(e.contains("tiny.img") && e.contains("only 1 bytes"), "{e}");
        // In a snapshot directory, a tiny blank disk is no mistake.
        assert_eq!(check_content(&tiny, "raw", false).unwrap(), None);
    }

    /// A qcow2 of a 64 MiB ext4 filesystem.
    fn qcow2_of_ext4(dir: &Path) -> std::path::PathBuf {
        let raw = dir.join("d.raw");
        std::fs::File::create(&raw)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        assert!(Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&raw)
            .status()
            .unwrap()
            .success());
        let q = dir.join("d.qcow2");
        assert!(Command::new(QEMU_IMG)
            .args(["convert", "-O", "qcow2"])
            .arg(&raw)
            .arg(&q)
            .status()
            .unwrap()
            .success());
        q
    }

    #[test]
    fn truncated_qcow2_is_opened_with_a_finding() {
        let dir = tempfile::tempdir().unwrap();
        let q = qcow2_of_ext4(dir.path());
        assert_eq!(check_content(&q, "qcow2", true).unwrap(), None);
        let f = std::fs::OpenOptions::new().write(true).open(&q).unwrap();
        f.set_len(100 * 1024).unwrap();
        let w = check_content(&q, "qcow2", true).unwrap().unwrap();
        assert!(
            w.starts_with("qemu-img check: ") && w.contains("but the file ends at 102400"),
            "{w}"
        );
    }

    /// Zeroed refcounts of clusters in use: `qemu-img check` counts
    /// corruptions, yet every byte of data is still there to read.
    #[test]
    fn qcow2_with_a_damaged_refcount_block_is_opened_with_a_finding() {
        let dir = tempfile::tempdir().unwrap();
        let q = qcow2_of_ext4(dir.path());
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&q)
            .unwrap();
        let mut header = [0u8; 64];
        f.read_exact(&mut header).unwrap();
        let cluster = 1u64 << u32::from_be_bytes(header[20..24].try_into().unwrap());
        let table = u64::from_be_bytes(header[48..56].try_into().unwrap());
        f.seek(SeekFrom::Start(table)).unwrap();
        let mut entry = [0u8; 8];
        f.read_exact(&mut entry).unwrap();
        let block = u64::from_be_bytes(entry);
        assert!(block > 0, "the image has a refcount block");
        f.seek(SeekFrom::Start(block)).unwrap();
        f.write_all(&vec![0u8; cluster as usize]).unwrap();
        drop(f);
        let w = check_content(&q, "qcow2", true).unwrap().unwrap();
        assert!(w.contains("corruptions"), "{w}");
    }
}

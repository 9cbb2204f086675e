//! Refusing files that are no usable disk image, before a VM starts.
//!
//! `qemu-img info` accepts any file as raw data, and a truncated qcow2 still
//! has a readable header. Booting a VM for either only to show an empty
//! `unknown` bucket helps nobody, so: a raw image must begin with a
//! partition table or a known filesystem (superblock magic, the same
//! detection the guest uses), and a format `qemu-img check` understands must
//! check without corruption. Reading a few header bytes on the host is not
//! mounting: no filesystem code parses them.

use super::{qemu_img, SourceError, QEMU_IMG};
use std::io::Read;
use std::path::Path;
use std::process::Command;

/// Formats `qemu-img check` can verify (it fails for the others).
const CHECKABLE: &[&str] = &["qcow2", "qed", "vdi", "vhdx", "parallels", "vmdk"];

/// Checks that `path` (in `format`) holds something worth attaching; the
/// raw-content check only when `raw_must_hold_a_disk`.
pub fn check_content(
    path: &Path,
    format: &str,
    raw_must_hold_a_disk: bool,
) -> Result<(), SourceError> {
    if format == "raw" {
        return if raw_must_hold_a_disk {
            check_raw(path)
        } else {
            Ok(())
        };
    }
    if CHECKABLE.contains(&format) {
        return check_with_qemu_img(path, format);
    }
    Ok(())
}

fn check_raw(path: &Path) -> Result<(), SourceError> {
    let mut f = std::fs::File::open(path).map_err(|e| SourceError::Stat {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut buf = Vec::with_capacity(file_restore_fsmagic::PROBE_LEN);
    (&mut f)
        .take(file_restore_fsmagic::PROBE_LEN as u64)
        .read_to_end(&mut buf)
        .map_err(|e| SourceError::Stat {
            path: path.to_path_buf(),
            source: e,
        })?;
    if buf.len() < 1024 {
        return Err(SourceError::NotADisk {
            path: path.to_path_buf(),
            reason: format!("it is only {} bytes long", buf.len()),
        });
    }
    let fs = file_restore_fsmagic::detect(&buf);
    if fs == file_restore_fsmagic::FsType::Apfs {
        return Err(SourceError::NoDriver {
            path: path.to_path_buf(),
            reason: file_restore_fsmagic::APFS_REASON,
        });
    }
    if fs != file_restore_fsmagic::FsType::Unknown
        || file_restore_fsmagic::has_partition_table(&buf)
    {
        return Ok(());
    }
    Err(SourceError::NotADisk {
        path: path.to_path_buf(),
        reason: "qemu-img reads it as raw bytes, and its start holds neither a partition table (MBR/GPT) \
                 nor a known filesystem, LVM, swap or LUKS signature"
            .into(),
    })
}

fn check_with_qemu_img(path: &Path, format: &str) -> Result<(), SourceError> {
    let mut cmd = Command::new(QEMU_IMG);
    cmd.args(["check", "-U", "--output=json", "-f", format])
        .arg(path);
    let out = qemu_img::output(&mut cmd, path)?;
    // 0: clean; 3: leaked clusters only (harmless for reading).
    match out.status.code() {
        Some(0) | Some(3) => Ok(()),
        _ => {
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
                        "data should reach byte {end} but the file has {file_len}"
                    ));
                }
            }
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if parts.is_empty() && !stderr.is_empty() {
                parts.push(stderr);
            }
            if parts.is_empty() {
                parts.push(format!("qemu-img check exited with {}", out.status));
            }
            Err(SourceError::Damaged {
                path: path.to_path_buf(),
                detail: format!("qemu-img check: {}", parts.join(", ")),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real APFS container (apfsprogs' mkapfs) is named, not called "no disk".
    #[test]
    fn apfs_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mac.img");
        std::fs::File::create(&p)
            .unwrap()
            .set_len(512 << 20)
            .unwrap();
        let out = Command::new("mkapfs").arg(&p).output();
        let out = out.unwrap_or_else(|e| panic!("mkapfs missing ({e}): run scripts/deps.sh"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let e = check_content(&p, "raw", true).unwrap_err().to_string();
        assert!(
            e.contains("mac.img") && e.contains("APFS: no Linux driver can read it"),
            "{e}"
        );
        assert!(!e.contains("does not look like a disk image"), "{e}");
    }

    #[test]
    fn text_file_is_not_a_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notes.img");
        std::fs::write(&p, "just some text\n".repeat(500)).unwrap();
        let e = check_content(&p, "raw", true).unwrap_err().to_string();
        assert!(
            e.contains("notes.img") && e.contains("does not look like a disk image"),
            "{e}"
        );
        let tiny = dir.path().join("tiny.img");
        std::fs::write(&tiny, b"x").unwrap();
        assert!(check_content(&tiny, "raw", true)
            .unwrap_err()
            .to_string()
            .contains("only 1 bytes"));
    }

    #[test]
    fn partition_table_or_filesystem_is_a_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk.img");
        std::fs::File::create(&p).unwrap().set_len(8 << 20).unwrap();
        let st = Command::new("sfdisk")
            .arg("-q")
            .arg(&p)
            .stdin(std::process::Stdio::piped())
            .spawn();
        let mut child = st.expect("sfdisk (make deps)");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"label: gpt\n,4M\n")
            .unwrap();
        assert!(child.wait().unwrap().success());
        check_content(&p, "raw", true).expect("GPT disk accepted");
        let fs = dir.path().join("fs.img");
        std::fs::File::create(&fs)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        assert!(Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&fs)
            .status()
            .unwrap()
            .success());
        check_content(&fs, "raw", true).expect("bare ext4 accepted");
    }

    #[test]
    fn truncated_qcow2_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("d.raw");
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
        let q = dir.path().join("d.qcow2");
        assert!(Command::new(QEMU_IMG)
            .args(["convert", "-O", "qcow2"])
            .arg(&raw)
            .arg(&q)
            .status()
            .unwrap()
            .success());
        check_content(&q, "qcow2", true).expect("intact qcow2 accepted");
        let f = std::fs::OpenOptions::new().write(true).open(&q).unwrap();
        f.set_len(100 * 1024).unwrap();
        let e = check_content(&q, "qcow2", true).unwrap_err().to_string();
        assert!(e.contains("d.qcow2") && e.contains("damaged"), "{e}");
    }
}

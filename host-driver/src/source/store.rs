//! A backup store's layout as `versions` and the web UI's catalog read it:
//! `<store>/<vmid>/<kind>-<epoch>/` directories each holding one snapshot's
//! disk images, the VM's directory holding no images itself.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::IMAGE_EXTENSIONS;

/// At most this many entries of a VM's directory are looked at.
const MAX_SNAPSHOT_SCAN: usize = 20_000;

/// The time a snapshot directory's name gives: `qemu-1700000000` → 1700000000.
pub fn epoch_of(name: &str) -> Option<i64> {
    let (_, digits) = name.rsplit_once('-')?;
    digits.parse().ok()
}

/// Whether `p` is named like a disk image (by its extension).
pub fn is_image_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// One snapshot of a VM's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The snapshot's directory.
    pub dir: PathBuf,
    /// Its name (`qemu-1700000000`).
    pub label: String,
    /// Its time: the `-<epoch>` of the name, else the directory's mtime.
    pub time: Option<i64>,
}

/// The snapshots of `dir` when it is a VM's directory of snapshots (no
/// image files of its own, subdirectories that hold some), newest first;
/// `None` for anything else. Symlinks are not followed.
pub fn snapshots_in(dir: &Path) -> Option<Vec<Snapshot>> {
    let meta = std::fs::symlink_metadata(dir).ok()?;
    if !meta.is_dir() {
        return None;
    }
    let mut budget = MAX_SNAPSHOT_SCAN;
    let (files, dirs) = children(dir, &mut budget);
    if files.iter().any(|f| is_image_name(f)) {
        return None;
    }
    let mut out: Vec<Snapshot> = dirs
        .into_iter()
        .filter(|d| children(d, &mut budget).0.iter().any(|f| is_image_name(f)))
        .map(|d| {
            let label = d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let time = epoch_of(&label).or_else(|| mtime(&d));
            Snapshot {
                dir: d,
                label,
                time,
            }
        })
        .collect();
    if out.is_empty() {
        return None;
    }
    out.sort_by(|a, b| b.time.cmp(&a.time).then(b.label.cmp(&a.label)));
    Some(out)
}

/// The modification time of `p` (not followed), seconds since the epoch.
pub fn mtime(p: &Path) -> Option<i64> {
    std::fs::symlink_metadata(p).ok().map(|m| m.mtime())
}

/// The plain files and directories of `dir` (symlinks and anything else
/// skipped), looking at no more than `budget` entries in all.
pub fn children(dir: &Path, budget: &mut usize) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (files, dirs);
    };
    for e in rd.flatten() {
        if *budget == 0 {
            break;
        }
        *budget -= 1;
        match e.file_type() {
            Ok(t) if t.is_file() => files.push(e.path()),
            Ok(t) if t.is_dir() => dirs.push(e.path()),
            _ => {}
        }
    }
    (files, dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vm_directory_lists_its_snapshots_newest_first() {
        let t = tempfile::tempdir().unwrap();
        let vm = t.path().join("100");
        for s in ["qemu-1700000000", "qemu-1700003600", "empty-1800000000"] {
            std::fs::create_dir_all(vm.join(s)).unwrap();
        }
        std::fs::write(vm.join("qemu-1700000000/drive-scsi0.qcow2"), b"").unwrap();
        std::fs::write(vm.join("qemu-1700003600/drive-scsi0.raw"), b"").unwrap();
        let s = snapshots_in(&vm).unwrap();
        let labels: Vec<&str> = s.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["qemu-1700003600", "qemu-1700000000"]);
        assert_eq!(s[0].time, Some(1_700_003_600));
        // A snapshot directory itself, and an image file, are not VM directories.
        assert!(snapshots_in(&vm.join("qemu-1700000000")).is_none());
        assert!(snapshots_in(&vm.join("qemu-1700000000/drive-scsi0.qcow2")).is_none());
    }
}

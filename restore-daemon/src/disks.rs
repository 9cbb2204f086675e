//! Disks and buckets: what the daemon can serve.
//!
//! In the VM, disks are the virtio block devices in `/sys/block/vd*`, named by
//! their virtio serial (set by the host). Partitions come from sysfs, so GPT,
//! MBR and logical partitions (5+) keep the kernel's numbering; a disk
//! without partitions is one `raw/raw` bucket. What is built on them (md
//! arrays, LVM volumes, opened LUKS containers) is added by
//! [`crate::scan`]. In dev mode the buckets are given on the command line
//! instead (loop devices with offsets).

use crate::bucket::{Bucket, Disk, MountState, PublishedPhase};
use crate::probe;
use crate::stacks::{blockdev, tools};
use crate::vpath::BucketKind;
use file_restore_fsmagic::FsType;
use std::fs;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Reads a sysfs attribute, trimmed.
fn sys_attr(dir: &Path, attr: &str) -> Option<String> {
    fs::read_to_string(dir.join(attr))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Makes a bucket from a device node, naming what it holds with libblkid
/// ([`crate::probe`]; for LUKS also its version).
pub fn probe_bucket(kind: BucketKind, name: String, device: PathBuf) -> std::io::Result<Bucket> {
    let mut f = fs::File::open(&device)?;
    let size = f.seek(SeekFrom::End(0))?;
    drop(f);
    let found = probe::detect(&device)?;
    let encryption = match found.fstype {
        FsType::Luks => Some(format!("LUKS{}", found.version.as_deref().unwrap_or(""))),
        FsType::Bitlocker => Some("BitLocker".to_owned()),
        _ => None,
    };
    let locked = encryption.as_ref().map(|_| {
        let kname = device.file_name().map(|n| n.to_string_lossy().into_owned());
        !kname.is_some_and(|k| crate::stacks::is_open_container(&k))
    });
    Ok(Bucket {
        kind,
        name,
        device,
        dataset: None,
        size,
        fstype: found.fstype,
        not_mountable: found.unmountable_reason(),
        type_name: found.name,
        label: found.label,
        locked,
        encryption,
        error: None,
        mount: Mutex::new(MountState::NotMounted),
        phase: PublishedPhase::default(),
    })
}

/// A bucket that cannot be read at all, with the reason (its device node,
/// if it has one, is never opened).
pub fn broken_bucket(kind: BucketKind, name: String, error: String) -> Bucket {
    Bucket {
        kind,
        name,
        device: PathBuf::new(),
        dataset: None,
        size: 0,
        fstype: FsType::Unknown,
        type_name: FsType::Unknown.name().to_owned(),
        label: None,
        not_mountable: None,
        encryption: None,
        locked: None,
        error: Some(error),
        mount: Mutex::new(MountState::NotMounted),
        phase: PublishedPhase::default(),
    }
}

/// The bucket of a ZFS filesystem or snapshot: mounted by its name
/// `dataset`, no device. `encryption` and `locked` for a dataset with
/// native encryption, whose key may not be loaded yet.
pub fn dataset_bucket(
    name: String,
    dataset: String,
    size: u64,
    encryption: Option<String>,
    locked: bool,
) -> Bucket {
    let not_mountable = locked.then(|| {
        format!(
            "it is encrypted ({}) and its key is not loaded: give its passphrase with \
             --key-file FILE",
            encryption.as_deref().unwrap_or("ZFS")
        )
    });
    Bucket {
        kind: BucketKind::Zfs,
        name,
        device: PathBuf::new(),
        label: Some(dataset.clone()),
        dataset: Some(dataset),
        size,
        fstype: FsType::Zfs,
        type_name: FsType::Zfs.name().to_owned(),
        not_mountable,
        locked: encryption.as_ref().map(|_| locked),
        encryption,
        error: None,
        mount: Mutex::new(MountState::NotMounted),
        phase: PublishedPhase::default(),
    }
}

/// Turns a virtio serial into a path-safe disk name.
fn disk_name(serial: Option<String>, kernel_name: &str) -> String {
    let s = serial.unwrap_or_default();
    let cleaned: String = s
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '/' { '_' } else { c })
        .collect();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        kernel_name.to_owned()
    } else {
        cleaned
    }
}

/// Sorts buckets by kind, then numerically, then by name.
pub fn sort_buckets(buckets: &mut [std::sync::Arc<Bucket>]) {
    buckets.sort_by(|a, b| numeric_then_name(a, b));
}

fn numeric_then_name(a: &Bucket, b: &Bucket) -> std::cmp::Ordering {
    let key = |x: &Bucket| {
        (
            x.kind.name(),
            x.name.parse::<u64>().unwrap_or(u64::MAX),
            x.name.clone(),
        )
    };
    key(a).cmp(&key(b))
}

/// Scans one sysfs block device (e.g. `/sys/block/vda`).
pub fn scan_disk(sys_dir: &Path) -> std::io::Result<Disk> {
    let kname = sys_dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = disk_name(sys_attr(sys_dir, "serial"), &kname);
    let mut buckets = Vec::new();
    let mut parts: Vec<(u64, String)> = Vec::new();
    for ent in fs::read_dir(sys_dir)?.flatten() {
        let pname = ent.file_name().to_string_lossy().into_owned();
        if !pname.starts_with(&kname) {
            continue;
        }
        if let Some(num) = sys_attr(&ent.path(), "partition").and_then(|p| p.parse::<u64>().ok()) {
            parts.push((num, pname));
        }
    }
    parts.sort();
    for (num, pname) in parts {
        let pdir = sys_dir.join(&pname);
        // An MBR extended partition is a 1 KiB stub that only holds the
        // chain of logical partitions: nothing to serve.
        let sectors = sys_attr(&pdir, "size")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        if sectors <= 2 {
            continue;
        }
        let node = match blockdev::node(&pname) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("disk {name}: partition {num} ({pname}): no device node: {e}");
                continue;
            }
        };
        match probe_bucket(BucketKind::Part, num.to_string(), node) {
            Ok(b) => buckets.push(b),
            Err(e) => log::warn!("disk {name}: partition {num} ({pname}): cannot read: {e}"),
        }
    }
    if buckets.is_empty() {
        let node = blockdev::node(&kname)?;
        let b = probe_bucket(BucketKind::Raw, "raw".into(), node)?;
        buckets.push(b);
    }
    buckets.sort_by(numeric_then_name);
    for b in &buckets {
        log::info!(
            "disk {name}: {}/{} {} ({} bytes) on {}",
            b.kind.name(),
            b.name,
            b.type_name,
            b.size,
            b.device.display()
        );
    }
    Ok(Disk {
        name,
        kname,
        buckets: buckets.into_iter().map(std::sync::Arc::new).collect(),
    })
}

/// Scans all virtio disks (`/sys/block/vd*`) but the tools disk, in kernel
/// name order: partitions or the whole disk, nothing built on them.
pub fn scan_virtio_disks() -> Vec<Disk> {
    let mut names: Vec<PathBuf> = match fs::read_dir("/sys/block") {
        Ok(rd) => rd
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("vd"))
            .filter(|e| !tools::is_tools_disk(&e.path()))
            .map(|e| e.path())
            .collect(),
        Err(e) => {
            log::error!("cannot read /sys/block: {e}");
            return Vec::new();
        }
    };
    // vda < vdb < … < vdz < vdaa
    names.sort_by_key(|p| {
        let n = p
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        (n.len(), n)
    });
    let mut disks: Vec<Disk> = Vec::new();
    for dir in names {
        match scan_disk(&dir) {
            Ok(mut d) => {
                // Names must be unique in paths: the host makes serials unique,
                // but never trust it blindly.
                if disks.iter().any(|o| o.name == d.name) {
                    let kname = dir
                        .file_name()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    log::warn!(
                        "duplicate disk serial {:?}: using kernel name {kname}",
                        d.name
                    );
                    d.name = kname;
                }
                disks.push(d);
            }
            Err(e) => log::error!("cannot scan {}: {e}", dir.display()),
        }
    }
    disks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_names() {
        assert_eq!(disk_name(Some("drive-scsi0".into()), "vda"), "drive-scsi0");
        assert_eq!(disk_name(Some("".into()), "vda"), "vda");
        assert_eq!(disk_name(None, "vdb"), "vdb");
        assert_eq!(disk_name(Some("..".into()), "vdc"), "vdc");
        assert_eq!(disk_name(Some("a/b".into()), "vdc"), "a_b");
    }
}

//! ZFS volumes as block devices: `/dev/zdN` (minors in steps of 16, the
//! partitions in between), named by the `BLKZNAME` ioctl — what udev's
//! `zvol_id` asks, as the guest has no udev.

use super::super::blockdev;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// ZFS_MAX_DATASET_NAME_LEN: the size of BLKZNAME's buffer.
const NAME_LEN: usize = 256;

// BLKZNAME = _IOR(0x12, 125, char[ZFS_MAX_DATASET_NAME_LEN]) (OpenZFS's
// include/sys/fs/zfs.h).
nix::ioctl_read!(blkzname, 0x12, 125, [u8; NAME_LEN]);

/// The volume device names in /sys/block (`zd0`, `zd16`), partitions not.
fn zd_devices() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/block")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("zd") && n[2..].bytes().all(|b| b.is_ascii_digit()))
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|n| (n.len(), n.clone()));
    v
}

/// The ZFS name of the volume device `kname`.
fn name_of(kname: &str) -> Option<String> {
    use std::os::fd::AsRawFd;
    let node = blockdev::node(kname).ok()?;
    let f = std::fs::File::open(node).ok()?;
    let mut buf = [0u8; NAME_LEN];
    // SAFETY: the fd is open and the buffer has the size the ioctl writes.
    unsafe { blkzname(f.as_raw_fd(), &mut buf) }.ok()?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
    let name = std::str::from_utf8(&buf[..end]).ok()?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// The devices of `volumes` (full names), waiting up to `limit` for them to
/// appear (OpenZFS creates them in the background after an import).
pub fn wait_for(volumes: &[String], limit: Duration) -> BTreeMap<String, String> {
    let deadline = Instant::now() + limit;
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    loop {
        for k in zd_devices() {
            if found.values().any(|v| *v == k) {
                continue;
            }
            if let Some(n) = name_of(&k) {
                found.insert(n, k);
            }
        }
        let missing: Vec<&String> = volumes.iter().filter(|v| !found.contains_key(*v)).collect();
        if missing.is_empty() || Instant::now() >= deadline {
            if !missing.is_empty() {
                log::warn!(
                    "zfs: no device appeared for volume(s) {:?} within {} s",
                    missing,
                    limit.as_secs()
                );
            }
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The partitions of the volume device `kname`: `(N, kname)` in order.
pub fn partitions(kname: &str) -> Vec<(u64, String)> {
    let dir = std::path::Path::new("/sys/block").join(kname);
    let mut parts: Vec<(u64, String)> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if !n.starts_with(kname) {
                        return None;
                    }
                    let num = std::fs::read_to_string(e.path().join("partition")).ok()?;
                    Some((num.trim().parse::<u64>().ok()?, n))
                })
                .collect()
        })
        .unwrap_or_default();
    parts.sort();
    parts
}

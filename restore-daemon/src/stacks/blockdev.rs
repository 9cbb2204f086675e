//! Block devices as sysfs shows them: which exist, what they are built on
//! (`slaves/`, partitions) and their device nodes.
//!
//! The graph decides under which disks a device appears: a VG or an md
//! array built from several disks of a SOURCE appears under each of them.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// How deep a stack may be (disk → md → LUKS → LVM → LUKS …): a loop in a
/// crafted graph cannot recurse forever.
const MAX_DEPTH: usize = 16;

fn class_dir(kname: &str) -> PathBuf {
    Path::new("/sys/class/block").join(kname)
}

/// Reads a sysfs attribute of a block device, trimmed.
pub fn attr(kname: &str, attr: &str) -> Option<String> {
    fs::read_to_string(class_dir(kname).join(attr))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Size in bytes (sysfs counts 512-byte sectors).
pub fn size(kname: &str) -> u64 {
    attr(kname, "size")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        .saturating_mul(512)
}

/// The kernel names in a sysfs directory of links (`slaves`, `holders`).
fn links(kname: &str, dir: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(class_dir(kname).join(dir))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The devices `kname` is built on (an md array's members, a dm device's
/// underlying devices).
pub fn slaves(kname: &str) -> Vec<String> {
    links(kname, "slaves")
}

/// The devices built on `kname`.
pub fn holders(kname: &str) -> Vec<String> {
    links(kname, "holders")
}

/// The whole disk a partition belongs to (`vda` for `vda2`).
fn partition_parent(kname: &str) -> Option<String> {
    attr(kname, "partition")?;
    let real = fs::canonicalize(class_dir(kname)).ok()?;
    real.parent()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// The whole disks (`vda`, `vdb`) under `kname`, through partitions and
/// every layer of slaves.
pub fn base_disks(kname: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    collect_base(kname, 0, &mut out);
    out
}

fn collect_base(kname: &str, depth: usize, out: &mut BTreeSet<String>) {
    if depth > MAX_DEPTH {
        return;
    }
    if let Some(parent) = partition_parent(kname) {
        out.insert(parent);
        return;
    }
    let below = slaves(kname);
    if below.is_empty() {
        out.insert(kname.to_owned());
    }
    for s in below {
        collect_base(&s, depth + 1, out);
    }
}

/// The device-mapper, md and ZFS volume devices that exist now (`dm-0`,
/// `md127`, `zd0`).
pub fn derived_devices() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir("/sys/block")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("dm-") || n.starts_with("md") || n.starts_with("zd"))
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|n| (n.len(), n.clone()));
    v
}

/// The kernel name of the block device `major:minor`.
pub fn kname_of_devno(major: u64, minor: u64) -> Option<String> {
    let link = fs::read_link(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    link.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// A device-mapper device's uuid (`LVM-…`, `CRYPT-LUKS2-…`).
pub fn dm_uuid(kname: &str) -> Option<String> {
    attr(kname, "dm/uuid")
}

/// `/dev/<kname>`, made from the sysfs `dev` attribute when devtmpfs has
/// not made it (yet).
pub fn node(kname: &str) -> std::io::Result<PathBuf> {
    let node = Path::new("/dev").join(kname);
    if node.exists() {
        return Ok(node);
    }
    let dev = attr(kname, "dev").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{kname}: no dev attribute in sysfs"),
        )
    })?;
    let (major, minor) = dev
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{kname}: bad dev attribute {dev:?}"),
            )
        })?;
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(major, minor),
    )
    .map_err(std::io::Error::from)?;
    Ok(node)
}

/// Whether a name may be a bucket name component: what LVM allows in VG
/// and LV names (`[A-Za-z0-9+_.-]`), not `.` or `..`, at most 128 bytes.
/// Names from metadata on a disk are untrusted; the tools check them too.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'_' | b'.' | b'-'))
}

/// `name` made safe as a bucket name component: other bytes become `_`.
pub fn safe_name(name: &str) -> String {
    let s: String = name
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s == "." || s == ".." {
        "_".repeat(s.len().max(1))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_safe_name("vg-main.1"));
        assert!(!is_safe_name(".."));
        assert!(!is_safe_name("a/b"));
        assert!(!is_safe_name(""));
        assert_eq!(safe_name("host:my array/x"), "host_my_array_x");
        assert_eq!(safe_name(".."), "__");
        assert_eq!(safe_name(""), "_");
    }
}

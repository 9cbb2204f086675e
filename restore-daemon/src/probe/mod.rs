//! What a block device holds, named by util-linux's libblkid.
//!
//! libblkid is the detector `mount`, udev and `blkid` use: about a hundred
//! filesystem, RAID-member and crypto signatures with their labels and
//! versions, maintained with the tools that make them. The daemon asks it
//! instead of growing its own magic tables, so a bucket is named even when
//! the guest cannot read it (`reiserfs`, `BitLocker`, ...), and
//! the user learns why. It is linked statically (`build.rs`); [`ffi`] holds
//! the few calls used, [`Detected`] what the rest of the daemon sees.
//!
//! `fsmagic` is kept for the one thing libblkid does not say: whether a UFS
//! is UFS1 or UFS2, which the kernel's mount option needs.

mod ffi;

use file_restore_fsmagic::FsType;
use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The longest label kept (characters); labels come from untrusted images.
const MAX_LABEL: usize = 256;

/// What a device holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// How the daemon treats it (mount options, stacks); `Unknown` for what
    /// it cannot open, whatever its name.
    pub fstype: FsType,
    /// The type's name as shown to users: libblkid's `TYPE` (`ext4`,
    /// `crypto_LUKS`, `BitLocker`, `reiserfs`), or `unknown`.
    pub name: String,
    /// The filesystem's label, when it has a non-empty one.
    pub label: Option<String>,
    /// libblkid's `VERSION` (`1.0`, `FAT32`, LUKS `2`), when it says one.
    pub version: Option<String>,
    /// libblkid's `UUID` (a filesystem's, an LVM PV's), when it says one.
    pub uuid: Option<String>,
    /// For `name` `ambiguous`: the signatures that contradict each other.
    pub conflicts: Vec<String>,
}

impl Detected {
    fn unknown() -> Self {
        Detected {
            fstype: FsType::Unknown,
            name: FsType::Unknown.name().to_owned(),
            label: None,
            version: None,
            uuid: None,
            conflicts: Vec::new(),
        }
    }

    /// Why this cannot be mounted, or `None` when it can.
    pub fn unmountable_reason(&self) -> Option<String> {
        if self.fstype != FsType::Unknown {
            return self.fstype.unmountable_reason().map(str::to_owned);
        }
        Some(match self.name.as_str() {
            "unknown" => "no known filesystem was found on it".to_owned(),
            "jbd" => "it is an ext3/ext4 external journal and holds no files".into(),
            "xfs_external_log" => "it is an XFS external log device and holds no files".into(),
            "squashfs3" => "squashfs 3 is not supported by Linux".into(),
            "swsuspend" => "it is a hibernation image in a swap area and holds no files".into(),
            // mdadm finds an IMSM member's slot by the disk's SCSI or NVMe serial
            // number, and virtio disks answer neither inquiry.
            "isw_raid_member" => "it is a member of an Intel RST (IMSM) firmware RAID set, \
                 which mdadm assembles only on disks whose serial numbers it can read (virtio \
                 disks have none it reads); a RAID1 member's partitions are listed as those of \
                 a plain disk"
                .into(),
            n if n.ends_with("_raid_member") => format!(
                "it is a member of a {} firmware RAID set, which this version cannot assemble yet",
                n.trim_end_matches("_raid_member")
            ),
            "ambiguous" => format!(
                "it carries several signatures ({}) that contradict each other, so it is not \
                 mounted",
                self.conflicts.join(", ")
            ),
            n => format!("{n}: the restore VM has no driver for it"),
        })
    }
}

/// Probes the device (or file) at `path` read-only.
pub fn detect(path: &Path) -> io::Result<Detected> {
    let found = probe(path)?;
    let Some(sig) = found else {
        return Ok(Detected::unknown());
    };
    let fstype = match sig.kind.as_str() {
        // libblkid says "ufs" for both layouts; the mount option needs which.
        "ufs" => std::fs::File::open(path)
            .and_then(|mut f| file_restore_fsmagic::probe_device(&mut f))
            .ok()
            .filter(|t| matches!(t, FsType::Ufs1 | FsType::Ufs2))
            .unwrap_or(FsType::Unknown),
        other => fs_type_of(other),
    };
    Ok(Detected {
        fstype,
        name: sig.kind,
        label: sig.label,
        version: sig.version,
        uuid: sig.uuid,
        conflicts: sig.conflicts,
    })
}

/// The daemon's type for a libblkid `TYPE`; `Unknown` for the rest.
fn fs_type_of(blkid_type: &str) -> FsType {
    match blkid_type {
        "ext2" => FsType::Ext2,
        "ext3" => FsType::Ext3,
        "ext4" | "ext4dev" => FsType::Ext4,
        "xfs" => FsType::Xfs,
        "btrfs" => FsType::Btrfs,
        "vfat" => FsType::Vfat,
        "exfat" => FsType::Exfat,
        "iso9660" => FsType::Iso9660,
        "udf" => FsType::Udf,
        "squashfs" => FsType::Squashfs,
        "f2fs" => FsType::F2fs,
        "hfsplus" => FsType::Hfsplus,
        "hfs" => FsType::Hfs,
        "ntfs" => FsType::Ntfs,
        "erofs" => FsType::Erofs,
        "jfs" => FsType::Jfs,
        "reiserfs" => FsType::Reiserfs,
        "nilfs2" => FsType::Nilfs2,
        "minix" => FsType::Minix,
        "romfs" => FsType::Romfs,
        "cramfs" => FsType::Cramfs,
        "hpfs" => FsType::Hpfs,
        "befs" => FsType::Befs,
        "bfs" => FsType::Bfs,
        "sysv" | "xenix" => FsType::Sysv,
        "vxfs" => FsType::Vxfs,
        "qnx4" => FsType::Qnx4,
        "gfs2" => FsType::Gfs2,
        "ocfs2" => FsType::Ocfs2,
        "apfs" => FsType::Apfs,
        "LVM2_member" => FsType::LvmPv,
        "swap" => FsType::Swap,
        "crypto_LUKS" => FsType::Luks,
        "BitLocker" => FsType::Bitlocker,
        // DDF (SNIA's firmware-RAID format: LSI/Avago MegaRAID, Adaptec, mdadm):
        // mdadm assembles its containers and volumes like md's own arrays.
        "linux_raid_member" | "ddf_raid_member" => FsType::MdMember,
        "zfs_member" => FsType::ZfsMember,
        _ => FsType::Unknown,
    }
}

/// One signature libblkid found.
#[derive(Debug)]
struct Signature {
    kind: String,
    label: Option<String>,
    version: Option<String>,
    uuid: Option<String>,
    conflicts: Vec<String>,
}

/// Frees the probe however the caller leaves.
struct Probe(ffi::BlkidProbe);

impl Drop for Probe {
    fn drop(&mut self) {
        // SAFETY: the pointer came from blkid_new_probe_from_filename, is not
        // null, and is freed once.
        unsafe { ffi::blkid_free_probe(self.0) }
    }
}

impl Probe {
    /// The value of `name` in the current result, lossy UTF-8.
    fn value(&self, name: &CStr) -> Option<String> {
        let mut data: *const std::os::raw::c_char = std::ptr::null();
        let mut len: usize = 0;
        // SAFETY: a live probe; libblkid points `data` at a NUL-terminated
        // string it owns until the next probe call, copied out at once.
        let rc =
            unsafe { ffi::blkid_probe_lookup_value(self.0, name.as_ptr(), &mut data, &mut len) };
        if rc != 0 || data.is_null() {
            return None;
        }
        // SAFETY: see above; libblkid's values are NUL-terminated.
        let s = unsafe { CStr::from_ptr(data) }.to_string_lossy();
        let s: String = s.chars().take(MAX_LABEL).collect();
        (!s.is_empty()).then_some(s)
    }
}

/// The signature on `path`; `None` when libblkid finds none. Several
/// conflicting signatures come back as kind `ambiguous`, naming them.
fn probe(path: &Path) -> io::Result<Option<Signature>> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a device path"))?;
    // SAFETY: a valid C string; libblkid opens the file read-only.
    let raw = unsafe { ffi::blkid_new_probe_from_filename(c.as_ptr()) };
    if raw.is_null() {
        return Err(io::Error::last_os_error());
    }
    let pr = Probe(raw);
    // SAFETY: a live probe, for all the calls below.
    let rc = unsafe {
        ffi::blkid_probe_enable_partitions(pr.0, 0);
        ffi::blkid_probe_enable_superblocks(pr.0, 1);
        ffi::blkid_probe_set_superblocks_flags(
            pr.0,
            ffi::SUBLKS_LABEL
                | ffi::SUBLKS_UUID
                | ffi::SUBLKS_TYPE
                | ffi::SUBLKS_USAGE
                | ffi::SUBLKS_VERSION,
        );
        ffi::blkid_do_safeprobe(pr.0)
    };
    match rc {
        0 => {
            let Some(kind) = pr.value(c"TYPE") else {
                return Ok(None);
            };
            Ok(Some(Signature {
                kind,
                label: pr.value(c"LABEL"),
                version: pr.value(c"VERSION"),
                uuid: pr.value(c"UUID"),
                conflicts: Vec::new(),
            }))
        }
        1 => Ok(None),
        -2 => {
            // Ambiguous: name every signature (at most a few; bounded anyway).
            let mut kinds: Vec<String> = Vec::new();
            // SAFETY: a live probe; do_probe steps through the matches.
            unsafe { ffi::blkid_reset_probe(pr.0) };
            while kinds.len() < 8 && unsafe { ffi::blkid_do_probe(pr.0) } == 0 {
                if let Some(k) = pr.value(c"TYPE") {
                    if !kinds.contains(&k) {
                        kinds.push(k);
                    }
                }
            }
            Ok(Some(Signature {
                kind: "ambiguous".into(),
                label: None,
                version: None,
                uuid: None,
                conflicts: kinds,
            }))
        }
        _ => Err(io::Error::other(format!(
            "libblkid could not probe {}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests;

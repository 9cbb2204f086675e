//! Filesystem types, and detection from superblock magic.
//!
//! [`FsType`] is the guest daemon's vocabulary: what it mounts, with which
//! options, and what it cannot. The daemon names what a device holds with
//! util-linux's libblkid (`restore-daemon/src/probe/`); the magic tables
//! here remain for what libblkid does not say (UFS1 or UFS2, which the
//! mount option needs) and are fuzzed as untrusted-input parsers.

use std::fmt;
use std::io::{Read, Seek, SeekFrom};

/// How many bytes at the start of a device detection needs (btrfs's
/// superblock at 64 KiB and UFS2's at 64 KiB + 1372 are the farthest).
pub const PROBE_LEN: usize = 72 * 1024;

/// A detected filesystem (or other content) type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    /// ext2 (no journal).
    Ext2,
    /// ext3 (journal, no ext4 features).
    Ext3,
    /// ext4.
    Ext4,
    /// XFS.
    Xfs,
    /// Btrfs.
    Btrfs,
    /// FAT12/16/32.
    Vfat,
    /// exFAT.
    Exfat,
    /// ISO 9660 (CD/DVD image).
    Iso9660,
    /// SquashFS.
    Squashfs,
    /// UDF.
    Udf,
    /// F2FS.
    F2fs,
    /// HFS+ (or HFSX).
    Hfsplus,
    /// UFS1 (4.4BSD layout).
    Ufs1,
    /// UFS2.
    Ufs2,
    /// NTFS (mounted with the kernel's ntfs3 driver).
    Ntfs,
    /// EROFS (read-only compressed images, e.g. Android and container layers).
    Erofs,
    /// JFS (IBM's journaled filesystem).
    Jfs,
    /// HFS (classic Mac OS; an HFS wrapper around HFS+ is detected as HFS+).
    Hfs,
    /// ReiserFS 3.x (older Linux installations; the kernel dropped it after 6.12).
    Reiserfs,
    /// NILFS2 (log-structured).
    Nilfs2,
    /// Minix (v1-v3).
    Minix,
    /// romfs (read-only, embedded).
    Romfs,
    /// cramfs (read-only, compressed, embedded).
    Cramfs,
    /// HPFS (OS/2).
    Hpfs,
    /// BeFS (BeOS, Haiku).
    Befs,
    /// BFS (SCO UnixWare boot filesystem).
    Bfs,
    /// System V / Xenix / Coherent.
    Sysv,
    /// Veritas VxFS (read by Linux's freevxfs).
    Vxfs,
    /// QNX4.
    Qnx4,
    /// GFS2 (Red Hat's cluster filesystem; read with a local lock protocol).
    Gfs2,
    /// OCFS2 (Oracle's cluster filesystem; read without cluster services).
    Ocfs2,
    /// An APFS container (Apple); no Linux driver reads it.
    Apfs,
    /// An LVM2 physical volume.
    LvmPv,
    /// Linux swap.
    Swap,
    /// A LUKS encrypted volume.
    Luks,
    /// A BitLocker volume (named by libblkid in the guest, never by [`detect`]).
    Bitlocker,
    /// A member of a Linux md RAID array (any metadata version).
    MdMember,
    /// A member (vdev) of a ZFS pool (named by libblkid in the guest, never by
    /// [`detect`]).
    ZfsMember,
    /// A ZFS dataset or snapshot of an imported pool (mounted by its name).
    Zfs,
    /// Nothing recognised.
    Unknown,
}

/// Why an APFS container is refused, wherever it is.
pub const APFS_REASON: &str = "APFS: no Linux driver can read it";

impl FsType {
    /// The name shown to users and reported over the API.
    pub fn name(self) -> &'static str {
        match self {
            FsType::Ext2 => "ext2",
            FsType::Ext3 => "ext3",
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Btrfs => "btrfs",
            FsType::Vfat => "vfat",
            FsType::Exfat => "exfat",
            FsType::Iso9660 => "iso9660",
            FsType::Squashfs => "squashfs",
            FsType::Udf => "udf",
            FsType::F2fs => "f2fs",
            FsType::Hfsplus => "hfsplus",
            FsType::Ufs1 => "ufs1",
            FsType::Ufs2 => "ufs2",
            FsType::Ntfs => "ntfs",
            FsType::Erofs => "erofs",
            FsType::Jfs => "jfs",
            FsType::Hfs => "hfs",
            FsType::Reiserfs => "reiserfs",
            FsType::Nilfs2 => "nilfs2",
            FsType::Minix => "minix",
            FsType::Romfs => "romfs",
            FsType::Cramfs => "cramfs",
            FsType::Hpfs => "hpfs",
            FsType::Befs => "befs",
            FsType::Bfs => "bfs",
            FsType::Sysv => "sysv",
            FsType::Vxfs => "vxfs",
            FsType::Qnx4 => "qnx4",
            FsType::Gfs2 => "gfs2",
            FsType::Ocfs2 => "ocfs2",
            FsType::Apfs => "apfs",
            FsType::LvmPv => "LVM2_member",
            FsType::Swap => "swap",
            FsType::Luks => "crypto_LUKS",
            FsType::Bitlocker => "BitLocker",
            FsType::MdMember => "linux_raid_member",
            FsType::ZfsMember => "zfs_member",
            FsType::Zfs => "zfs",
            FsType::Unknown => "unknown",
        }
    }

    /// Why this type cannot be mounted, or `None` when it can.
    pub fn unmountable_reason(self) -> Option<&'static str> {
        match self {
            FsType::Swap => Some("it is a swap area and holds no files"),
            FsType::Luks => Some(
                "it is LUKS encrypted: give its passphrase with --key-file FILE; its content then \
                 appears as a luks/ bucket",
            ),
            FsType::Bitlocker => Some(
                "it is BitLocker encrypted: give its password or recovery password with \
                 --key-file FILE; its content then appears as a bitlocker/ bucket",
            ),
            FsType::LvmPv => Some(
                "it is an LVM2 physical volume: its logical volumes are the lvm/<VG>/<LV> buckets",
            ),
            FsType::MdMember => {
                Some("it is a member of an md RAID array: the array is the md/<name> bucket")
            }
            FsType::ZfsMember => Some(
                "it is a member of a ZFS pool: its datasets are the zfs/<pool>/<dataset> buckets",
            ),
            FsType::Apfs => Some(APFS_REASON),
            FsType::Unknown => Some("no known filesystem was found on it"),
            _ => None,
        }
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn at(buf: &[u8], off: usize, magic: &[u8]) -> bool {
    buf.get(off..off + magic.len()) == Some(magic)
}

fn le16(buf: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(buf.get(off..off + 2)?.try_into().ok()?))
}

fn le32(buf: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(buf.get(off..off + 4)?.try_into().ok()?))
}

fn be32(buf: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(buf.get(off..off + 4)?.try_into().ok()?))
}

fn ext_flavour(buf: &[u8]) -> FsType {
    const SB: usize = 1024;
    let compat = le32(buf, SB + 92).unwrap_or(0);
    let incompat = le32(buf, SB + 96).unwrap_or(0);
    let ro_compat = le32(buf, SB + 100).unwrap_or(0);
    // extents, 64bit, flex_bg, mmp, ..., or ro_compat features ext3 never had.
    let ext4_incompat = 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x1000 | 0x10000;
    let ext4_ro_compat = 0x8 | 0x10 | 0x20 | 0x40 | 0x400;
    if incompat & ext4_incompat != 0 || ro_compat & ext4_ro_compat != 0 {
        FsType::Ext4
    } else if compat & 0x4 != 0 {
        FsType::Ext3
    } else {
        FsType::Ext2
    }
}

fn is_vfat(buf: &[u8]) -> bool {
    if !at(buf, 510, &[0x55, 0xAA]) {
        return false;
    }
    let fat_label =
        at(buf, 54, b"FAT12   ") || at(buf, 54, b"FAT16   ") || at(buf, 82, b"FAT32   ");
    let bytes_per_sector = le16(buf, 11).unwrap_or(0);
    let sane_bps = matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096);
    let jump = matches!(buf.first(), Some(0xEB) | Some(0xE9));
    fat_label && sane_bps && jump
}

/// md superblock magic (little-endian on disk for 1.x, host order — little
/// on x86 — for 0.90).
const MD_MAGIC: u32 = 0xa92b_4efc;

/// Whether `buf` starts with an md superblock of major version `major`
/// (0 for 0.90, 1 for 1.x).
fn is_md_superblock(buf: &[u8], major: u32) -> bool {
    le32(buf, 0) == Some(MD_MAGIC) && le32(buf, 4) == Some(major)
}

/// Where md keeps superblocks at the end of a member of `size` bytes, with
/// their major version: 0.90 in the last 64 KiB-aligned 64 KiB block, 1.0 at
/// least 8 KiB from the end, 4 KiB aligned.
pub fn md_tail_superblocks(size: u64) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    if size >= 0x2_0000 {
        out.push(((size & !0xFFFF) - 0x1_0000, 0));
    }
    if size >= 0x3000 {
        out.push(((size - 0x2000) & !0xFFF, 1));
    }
    out
}

/// Which version of LUKS a header at the start of `buf` is (1 or 2).
pub fn luks_version(buf: &[u8]) -> Option<u16> {
    if !at(buf, 0, b"LUKS\xba\xbe") && !at(buf, 0, b"SKUL\xba\xbe") {
        return None;
    }
    let v = u16::from_be_bytes(buf.get(6..8)?.try_into().ok()?);
    matches!(v, 1 | 2).then_some(v)
}

/// Detects the type from the first bytes of a device (ideally [`PROBE_LEN`]).
/// md members with their superblock at the end (metadata 0.90 and 1.0) need
/// [`probe_device`], which also reads there.
pub fn detect(buf: &[u8]) -> FsType {
    // md 1.1 (at 0) and 1.2 (at 4 KiB) first: a member of a RAID1 can hold
    // a filesystem's magic too, and mounting a member alone is wrong.
    if is_md_superblock(buf, 1) || buf.get(4096..).is_some_and(|b| is_md_superblock(b, 1)) {
        return FsType::MdMember;
    }
    if at(buf, 0, b"LUKS\xba\xbe") {
        return FsType::Luks;
    }
    if at(buf, 0, b"XFSB") {
        return FsType::Xfs;
    }
    if at(buf, 0, b"hsqs") {
        return FsType::Squashfs;
    }
    if at(buf, 0x10040, b"_BHRfS_M") {
        return FsType::Btrfs;
    }
    if le16(buf, 1024 + 56) == Some(0xEF53) {
        return ext_flavour(buf);
    }
    if le32(buf, 1024) == Some(0xF2F5_2010) {
        return FsType::F2fs;
    }
    if at(buf, 1024, b"H+") || at(buf, 1024, b"HX") {
        return FsType::Hfsplus;
    }
    if at(buf, 1024, b"BD") {
        // An HFS master directory block; drEmbedSigWord says whether it only wraps
        // an HFS+ volume (which the hfsplus driver mounts through the wrapper).
        return if at(buf, 1024 + 0x7C, b"H+") {
            FsType::Hfsplus
        } else {
            FsType::Hfs
        };
    }
    if le32(buf, 1024) == Some(0xE0F5_E1E2) {
        return FsType::Erofs;
    }
    // The container superblock's object header is 32 bytes; nx_magic follows.
    if at(buf, 32, b"NXSB") {
        return FsType::Apfs;
    }
    if at(buf, 32768, b"JFS1") {
        return FsType::Jfs;
    }
    if at(buf, 3, b"EXFAT   ") {
        return FsType::Exfat;
    }
    if at(buf, 3, b"NTFS    ") {
        return FsType::Ntfs;
    }
    for sector in 0..4 {
        if at(buf, sector * 512, b"LABELONE") && at(buf, sector * 512 + 24, b"LVM2 001") {
            return FsType::LvmPv;
        }
    }
    if at(buf, 4096 - 10, b"SWAPSPACE2") || at(buf, 4096 - 10, b"SWAP-SPACE") {
        return FsType::Swap;
    }
    if at(buf, 0x8001, b"CD001") {
        return FsType::Iso9660;
    }
    let udf_nsr = [0x8001usize, 0x8801, 0x9001, 0x9801]
        .iter()
        .any(|&o| at(buf, o, b"NSR02") || at(buf, o, b"NSR03"));
    if udf_nsr {
        return FsType::Udf;
    }
    const UFS_MAGIC: u32 = 0x0001_1954;
    const UFS2_MAGIC: u32 = 0x1954_0119;
    // Linux reads UFS2 at 64 KiB and UFS1 at 8 KiB. A UFS2 superblock at 64 KiB
    // decides first: NetBSD's makefs also leaves a UFS2 superblock at 8 KiB.
    let magic_at = |sb: usize, magics: &[u32]| {
        let off = sb + 1372;
        [le32(buf, off), be32(buf, off)]
            .iter()
            .any(|m| m.is_some_and(|m| magics.contains(&m)))
    };
    if magic_at(65536, &[UFS2_MAGIC]) {
        return FsType::Ufs2;
    }
    if magic_at(8192, &[UFS_MAGIC, UFS2_MAGIC]) {
        return FsType::Ufs1;
    }
    if magic_at(65536, &[UFS_MAGIC]) {
        return FsType::Ufs2;
    }
    if is_vfat(buf) {
        return FsType::Vfat;
    }
    FsType::Unknown
}

/// Whether the first bytes hold an MBR or GPT partition table.
pub fn has_partition_table(buf: &[u8]) -> bool {
    at(buf, 512, b"EFI PART") || at(buf, 510, &[0x55, 0xAA])
}

/// Reads up to [`PROBE_LEN`] bytes from `reader` and detects the type.
pub fn probe(reader: &mut impl Read) -> std::io::Result<FsType> {
    let mut buf = vec![0u8; PROBE_LEN];
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(detect(&buf))
}

/// Like [`probe`] on a whole device: also recognises md members whose
/// superblock sits at the end (0.90, 1.0), which take precedence over what
/// the start says (a RAID1 member with metadata 1.0 starts with the
/// filesystem itself).
pub fn probe_device<R: Read + Seek>(dev: &mut R) -> std::io::Result<FsType> {
    let size = dev.seek(SeekFrom::End(0))?;
    for (off, major) in md_tail_superblocks(size) {
        dev.seek(SeekFrom::Start(off))?;
        let mut sb = [0u8; 8];
        if dev.read_exact(&mut sb).is_ok() && is_md_superblock(&sb, major) {
            return Ok(FsType::MdMember);
        }
    }
    dev.seek(SeekFrom::Start(0))?;
    probe(dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_short_buffers_are_unknown() {
        assert_eq!(detect(&[]), FsType::Unknown);
        assert_eq!(detect(&[0u8; 100]), FsType::Unknown);
        assert_eq!(detect(&vec![0u8; PROBE_LEN]), FsType::Unknown);
    }

    #[test]
    fn md_superblocks() {
        let mut b = vec![0u8; 8192];
        b[4096..4100].copy_from_slice(&MD_MAGIC.to_le_bytes());
        b[4100..4104].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(detect(&b), FsType::MdMember);
        // 1.0 at the end of a member that starts like ext4.
        let size = 1024 * 1024u64;
        let mut dev = vec![0u8; size as usize];
        dev[1024 + 56..1024 + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
        let mut c = std::io::Cursor::new(dev.clone());
        assert_eq!(probe_device(&mut c).unwrap(), FsType::Ext2);
        let (off, major) = md_tail_superblocks(size)[1];
        assert_eq!((off, major), (size - 8192, 1));
        dev[off as usize..off as usize + 4].copy_from_slice(&MD_MAGIC.to_le_bytes());
        dev[off as usize + 4..off as usize + 8].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            probe_device(&mut std::io::Cursor::new(dev)).unwrap(),
            FsType::MdMember
        );
        // Tiny devices have no tail slots and are no error.
        assert!(md_tail_superblocks(100).is_empty());
        assert_eq!(
            probe_device(&mut std::io::Cursor::new(vec![0u8; 100])).unwrap(),
            FsType::Unknown
        );
    }

    #[test]
    fn luks_versions() {
        let mut b = vec![0u8; 16];
        assert_eq!(luks_version(&b), None);
        b[0..6].copy_from_slice(b"LUKS\xba\xbe");
        b[7] = 2;
        assert_eq!(luks_version(&b), Some(2));
        b[7] = 1;
        assert_eq!(luks_version(&b), Some(1));
        b[7] = 9;
        assert_eq!(luks_version(&b), None);
    }

    #[test]
    fn partition_tables() {
        let mut b = vec![0u8; 1024];
        assert!(!has_partition_table(&b));
        b[510] = 0x55;
        b[511] = 0xAA;
        assert!(has_partition_table(&b));
        let mut g = vec![0u8; 1024];
        g[512..520].copy_from_slice(b"EFI PART");
        assert!(has_partition_table(&g));
    }

    #[test]
    fn synthetic_magics() {
        let mut b = vec![0u8; PROBE_LEN];
        b[0x10040..0x10048].copy_from_slice(b"_BHRfS_M");
        assert_eq!(detect(&b), FsType::Btrfs);
        let mut b = vec![0u8; PROBE_LEN];
        b[4086..4096].copy_from_slice(b"SWAPSPACE2");
        assert_eq!(detect(&b), FsType::Swap);
        let mut b = vec![0u8; PROBE_LEN];
        b[0..6].copy_from_slice(b"LUKS\xba\xbe");
        assert_eq!(detect(&b), FsType::Luks);
        let mut b = vec![0u8; PROBE_LEN];
        b[1024..1028].copy_from_slice(&0xE0F5_E1E2u32.to_le_bytes());
        assert_eq!(detect(&b), FsType::Erofs);
        let mut b = vec![0u8; PROBE_LEN];
        b[32768..32772].copy_from_slice(b"JFS1");
        assert_eq!(detect(&b), FsType::Jfs);
        let mut b = vec![0u8; PROBE_LEN];
        b[1024..1026].copy_from_slice(b"BD");
        assert_eq!(detect(&b), FsType::Hfs);
        b[1024 + 0x7C..1024 + 0x7E].copy_from_slice(b"H+");
        assert_eq!(detect(&b), FsType::Hfsplus);
    }

    /// Real images made by the real mkfs tools (installed by `make deps`).
    #[test]
    fn detects_real_mkfs_output() {
        use std::process::Command;
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&str, &[&str], FsType)] = &[
            ("ext2", &["mkfs.ext2", "-q", "-F"], FsType::Ext2),
            ("ext3", &["mkfs.ext3", "-q", "-F"], FsType::Ext3),
            ("ext4", &["mkfs.ext4", "-q", "-F"], FsType::Ext4),
            ("xfs", &["mkfs.xfs", "-q", "-f"], FsType::Xfs),
            ("btrfs", &["mkfs.btrfs", "-q", "-f"], FsType::Btrfs),
            ("vfat", &["mkfs.vfat"], FsType::Vfat),
            ("fat32", &["mkfs.vfat", "-F", "32"], FsType::Vfat),
            ("exfat", &["mkfs.exfat"], FsType::Exfat),
            ("swap", &["mkswap"], FsType::Swap),
            ("ntfs", &["mkntfs", "-F", "-Q", "-q"], FsType::Ntfs),
            // apfsprogs (Debian's): a real container, as macOS would make it.
            ("apfs", &["mkapfs"], FsType::Apfs),
        ];
        for (name, cmd, want) in cases {
            let img = dir.path().join(format!("{name}.img"));
            std::fs::File::create(&img)
                .unwrap()
                .set_len(320 << 20)
                .unwrap();
            let out = Command::new(cmd[0]).args(&cmd[1..]).arg(&img).output();
            let out = out.unwrap_or_else(|e| panic!("{} missing ({e}): run make deps", cmd[0]));
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let got = probe(&mut std::fs::File::open(&img).unwrap()).unwrap();
            assert_eq!(got, *want, "{name}");
        }
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("f"), "x").unwrap();
        let sq = dir.path().join("sq.img");
        let st = Command::new("mksquashfs")
            .arg(&src)
            .arg(&sq)
            .args(["-quiet", "-noappend"])
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(
            probe(&mut std::fs::File::open(&sq).unwrap()).unwrap(),
            FsType::Squashfs
        );
        let iso = dir.path().join("x.iso");
        let st = Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-R", "-o"])
            .arg(&iso)
            .arg(&src)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(
            probe(&mut std::fs::File::open(&iso).unwrap()).unwrap(),
            FsType::Iso9660
        );
    }
}

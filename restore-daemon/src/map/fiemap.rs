//! `FS_IOC_FIEMAP`: a file's extents as the filesystem knows them, with
//! physical offsets on the filesystem's block device.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `_IOWR('f', 11, struct fiemap)` (struct fiemap is 32 bytes).
const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;

/// The last extent of the file.
pub const EXTENT_LAST: u32 = 0x1;
/// Data location unknown.
pub const EXTENT_UNKNOWN: u32 = 0x2;
/// Location still pending (delayed allocation).
pub const EXTENT_DELALLOC: u32 = 0x4;
/// Data is not stored as-is (compressed, or otherwise encoded).
pub const EXTENT_ENCODED: u32 = 0x8;
/// Data is encrypted by the filesystem.
pub const EXTENT_DATA_ENCRYPTED: u32 = 0x80;
/// Extent offsets may not be block aligned.
pub const EXTENT_NOT_ALIGNED: u32 = 0x100;
/// Data mixed with metadata (inline in the inode).
pub const EXTENT_DATA_INLINE: u32 = 0x200;
/// Several files' tails packed into one block.
pub const EXTENT_DATA_TAIL: u32 = 0x400;
/// Space allocated but never written: reads as zeros.
pub const EXTENT_UNWRITTEN: u32 = 0x800;

/// Flags that mean the extent's bytes on the device are not the file's bytes.
pub const NOT_PLAIN: u32 = EXTENT_UNKNOWN
    | EXTENT_DELALLOC
    | EXTENT_ENCODED
    | EXTENT_DATA_ENCRYPTED
    | EXTENT_NOT_ALIGNED
    | EXTENT_DATA_INLINE
    | EXTENT_DATA_TAIL;

/// Extents asked for per ioctl call.
const BATCH: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RawExtent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

#[repr(C)]
struct Request {
    start: u64,
    length: u64,
    flags: u32,
    mapped_extents: u32,
    extent_count: u32,
    reserved: u32,
    extents: [RawExtent; BATCH],
}

/// One extent as FIEMAP reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Offset in the file.
    pub logical: u64,
    /// Offset on the filesystem's device.
    pub physical: u64,
    /// Length in bytes.
    pub length: u64,
    /// `EXTENT_*` flags.
    pub flags: u32,
}

/// The extents of `fd` that overlap `[start, start + length)`, at most
/// [`BATCH`] of them; an empty answer means no more extents in the range.
pub fn extents(fd: BorrowedFd<'_>, start: u64, length: u64) -> io::Result<Vec<Extent>> {
    let mut req = Box::new(Request {
        start,
        length,
        flags: 0,
        mapped_extents: 0,
        extent_count: BATCH as u32,
        reserved: 0,
        extents: [RawExtent::default(); BATCH],
    });
    // SAFETY: `req` is a valid, writable `struct fiemap` with room for
    // `extent_count` extents, alive for the call.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            FS_IOC_FIEMAP as _,
            &mut *req as *mut Request,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = (req.mapped_extents as usize).min(BATCH);
    Ok(req.extents[..n]
        .iter()
        .map(|e| Extent {
            logical: e.logical,
            physical: e.physical,
            length: e.length,
            flags: e.flags,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_kernel() {
        assert_eq!(std::mem::size_of::<RawExtent>(), 56);
        assert_eq!(std::mem::offset_of!(Request, extents), 32);
    }

    /// FIEMAP on a file of the test host's own filesystem (skipped where
    /// the filesystem has no FIEMAP, e.g. tmpfs, overlayfs).
    #[test]
    fn maps_a_written_file() {
        use std::io::Write;
        let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")).unwrap();
        let p = dir.path().join("f");
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(&vec![7u8; 1 << 20]).unwrap();
        f.sync_all().unwrap();
        use std::os::fd::AsFd;
        match extents(f.as_fd(), 0, 1 << 20) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                eprintln!("skipped: no FIEMAP on this filesystem");
            }
            r => {
                let ext = r.unwrap();
                assert!(!ext.is_empty());
                assert_eq!(ext[0].logical, 0);
                let total: u64 = ext.iter().map(|e| e.length).sum();
                assert!(total >= 1 << 20, "{ext:?}");
            }
        }
    }
}

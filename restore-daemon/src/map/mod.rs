//! `GET /api/map`: where a regular file's bytes lie on the VM's disks, so
//! that the host can copy a big file from QEMU's read-only export of the
//! same disks instead of through the guest (docs/ARCHITECTURE.md, "Big
//! files").
//!
//! FIEMAP gives the extents on the filesystem's device ([`fiemap`]); the
//! device's place on the disks ([`devmap`]) turns them into disk offsets.
//! Whatever is not the file's bytes as stored (compressed, encrypted or
//! inline extents, btrfs's logical addresses, dm-crypt, RAID, thin
//! volumes) is answered as unmappable with the reason, and the host
//! streams it through the guest as before.

mod devmap;
mod fiemap;

use crate::bucket::Bucket;
use crate::error::ApiError;
use crate::extract::open_regular;
use crate::listing::bucket_root;
use crate::stacks::tools;
use crate::state::State;
use crate::vpath::{self, VPath};
use file_restore_fsmagic::FsType;
use file_restore_wire::map::{FileMap, MapExtent, MAX_EXTENTS_PER_PAGE};
use std::os::fd::AsFd;
use std::sync::Arc;

/// Answers one page of the map of the file at `path`, from file offset `from`.
pub async fn map(state: Arc<State>, path: VPath, from: u64) -> Result<FileMap, ApiError> {
    tokio::task::spawn_blocking(move || map_blocking(&state, &path, from))
        .await
        .map_err(|e| ApiError::internal(format!("map task failed: {e}")))?
}

/// Why the filesystem's FIEMAP answers cannot be used, if they cannot.
fn fs_unmappable(fstype: FsType, type_name: &str) -> Option<String> {
    match fstype {
        // vfat and exfat have no FIEMAP in the guest kernel (6.1, 6.12).
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 | FsType::Xfs | FsType::Ntfs => None,
        FsType::Btrfs => Some("btrfs: its extent addresses are logical, not disk offsets".into()),
        _ => Some(format!(
            "{type_name}: files are mapped on ext2/3/4, XFS and NTFS only"
        )),
    }
}

fn map_blocking(state: &State, path: &VPath, from: u64) -> Result<FileMap, ApiError> {
    let VPath::Inside {
        disk,
        kind,
        bucket,
        rest,
    } = path
    else {
        return Err(ApiError::bad_request(format!(
            "'{}' is not inside a bucket: map needs a path like /<disk>/part/<n>/<file>",
            String::from_utf8_lossy(&vpath::canonical(path))
        )));
    };
    let label = String::from_utf8_lossy(&vpath::canonical(path)).into_owned();
    let root = bucket_root(state, disk, *kind, bucket)?;
    let (_, b) = state.bucket(disk, *kind, bucket)?;
    let (file, st) = open_regular(&root, rest, &label)?;
    let size = st.st_size.max(0) as u64;
    let unmappable = |why: String| {
        log::debug!("map {label}: not mappable: {why}");
        Ok(FileMap {
            size,
            unmappable: Some(why),
            extents: Vec::new(),
            next: None,
        })
    };
    if from > size {
        return Err(ApiError::bad_request(format!(
            "from={from} is past the end of {label} ({size} bytes)"
        )));
    }
    if let Some(why) = fs_unmappable(b.fstype, &b.type_name) {
        return unmappable(why);
    }
    let slices = match devmap::slices(&b.kname(), tools::get().ok()) {
        Ok(s) => s,
        Err(why) => return unmappable(format!("its device: {why}")),
    };
    let disks = state.disks();
    let disk_name = |kname: &str| {
        disks
            .iter()
            .find(|d| !d.kname.is_empty() && d.kname == kname)
            .map(|d| d.name.clone())
    };
    let mut page = Page::new(from, size);
    let mut full = false;
    while !full && page.pos < size && page.extents.len() < MAX_EXTENTS_PER_PAGE {
        let (before, count) = (page.pos, page.extents.len());
        let found = match fiemap::extents(file.as_fd(), page.pos, size - page.pos) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                // ntfs3 has none for compressed and encrypted files.
                return unmappable(format!(
                    "{}: the filesystem gives no extent map for this file (FIEMAP not supported)",
                    b.type_name
                ));
            }
            Err(e) => return Err(ApiError::io(&label, &e)),
        };
        let Some(last) = found.last().copied() else {
            page.zeros_to(size);
            break;
        };
        for e in found {
            if e.flags & fiemap::NOT_PLAIN != 0 {
                return unmappable(flag_reason(e.flags));
            }
            match page.add(&e, b.as_ref(), &slices, &disk_name) {
                Ok(true) => {}
                Ok(false) => {
                    full = true;
                    break;
                }
                Err(why) => return unmappable(why),
            }
        }
        if full {
            break;
        }
        if last.flags & fiemap::EXTENT_LAST != 0 && page.extents.len() < MAX_EXTENTS_PER_PAGE {
            page.zeros_to(size);
        }
        if page.pos == before && page.extents.len() == count {
            // Extents that all end before the position: never loop on them.
            return unmappable("FIEMAP answers made no progress".into());
        }
    }
    let next = (page.pos < size).then_some(page.pos);
    Ok(FileMap {
        size,
        unmappable: None,
        extents: page.extents,
        next,
    })
}

/// The page being built: extents that tile the file from its start to `pos`.
struct Page {
    pos: u64,
    size: u64,
    extents: Vec<MapExtent>,
}

impl Page {
    fn new(from: u64, size: u64) -> Page {
        Page {
            pos: from,
            size,
            extents: Vec::new(),
        }
    }

    fn push(&mut self, length: u64, disk: Option<String>, disk_offset: u64) {
        if length == 0 {
            return;
        }
        self.extents.push(MapExtent {
            offset: self.pos,
            length,
            disk,
            disk_offset,
        });
        self.pos += length;
    }

    /// Zeros (a hole) up to `end`.
    fn zeros_to(&mut self, end: u64) {
        if end > self.pos {
            self.push(end - self.pos, None, 0);
        }
    }

    /// Adds the part of `e` past `pos` (and the hole before it). `Ok(false)`:
    /// the page is full, `e` was left for the next page.
    fn add(
        &mut self,
        e: &fiemap::Extent,
        b: &Bucket,
        slices: &[devmap::Slice],
        disk_name: &dyn Fn(&str) -> Option<String>,
    ) -> Result<bool, String> {
        let start = e.logical.max(self.pos);
        let end = e.logical.saturating_add(e.length).min(self.size);
        if end <= start {
            return Ok(true);
        }
        let mut pieces = Vec::new();
        if e.flags & fiemap::EXTENT_UNWRITTEN == 0 {
            let phys = e
                .physical
                .checked_add(start - e.logical)
                .filter(|p| p.saturating_add(end - start) <= b.size)
                .ok_or_else(|| {
                    format!(
                        "an extent at {} lies past the end of its device ({} bytes)",
                        e.physical, b.size
                    )
                })?;
            for (kname, off, len) in devmap::translate(slices, phys, end - start)? {
                let name = disk_name(&kname)
                    .ok_or_else(|| format!("{kname} is not one of the VM's disks"))?;
                pieces.push((Some(name), off, len));
            }
        } else {
            pieces.push((None, 0, end - start));
        }
        let hole = usize::from(start > self.pos);
        if !self.extents.is_empty()
            && self.extents.len() + hole + pieces.len() > MAX_EXTENTS_PER_PAGE
        {
            return Ok(false);
        }
        self.zeros_to(start);
        for (disk, off, len) in pieces {
            self.push(len, disk, off);
        }
        Ok(true)
    }
}

/// Why an extent with these flags is not the file's bytes as stored.
fn flag_reason(flags: u32) -> String {
    let what = if flags & fiemap::EXTENT_ENCODED != 0 {
        "compressed or encoded"
    } else if flags & fiemap::EXTENT_DATA_ENCRYPTED != 0 {
        "encrypted by the filesystem"
    } else if flags & (fiemap::EXTENT_DATA_INLINE | fiemap::EXTENT_DATA_TAIL) != 0 {
        "stored inline with metadata"
    } else if flags & fiemap::EXTENT_DELALLOC != 0 {
        "not allocated yet"
    } else {
        "at an unknown or unaligned place"
    };
    format!("its data is {what} (FIEMAP flags {flags:#x})")
}

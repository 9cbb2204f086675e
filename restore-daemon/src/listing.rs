//! Listings: the virtual levels (disks, bucket types, buckets) and
//! directories inside a mounted bucket.
//!
//! Directory listings are streamed as a JSON array while `readdir` runs, so
//! a directory of 100,000 entries costs the same memory as one of ten.
//! Entries come in readdir order; clients sort. Symlinks are never followed
//! (lstat) and report their target.

use crate::bucket::Bucket;
use crate::confine::{self, Last, Root};
use crate::error::ApiError;
use crate::mounts;
use crate::state::State;
use crate::stream::{self, ChannelBody};
use crate::vpath::{self, BucketKind, VPath};
use file_restore_wire::{encode_path, Entry, EntryType};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::sync::Arc;

fn virtual_entry(path: &[u8], text: &str, leaf: bool) -> Entry {
    Entry {
        filepath: encode_path(path),
        text: text.to_owned(),
        entry_type: EntryType::Virtual,
        leaf,
        size: None,
        mtime: None,
        target: None,
        fstype: None,
        label: None,
        encryption: None,
        locked: None,
        error: None,
        path: None,
    }
}

/// Lists a virtual level (`/`, `/<disk>`, `/<disk>/<type>`).
pub fn list_virtual(state: &State, path: &VPath) -> Result<Vec<Entry>, ApiError> {
    let parent = vpath::canonical(path);
    match path {
        VPath::Root => Ok(state
            .disks()
            .iter()
            .map(|d| virtual_entry(&vpath::join(&parent, d.name.as_bytes()), &d.name, false))
            .collect()),
        VPath::Disk(name) => {
            let d = state.disk(name)?;
            Ok(d.kinds()
                .iter()
                .map(|k| virtual_entry(&vpath::join(&parent, k.name().as_bytes()), k.name(), false))
                .collect())
        }
        VPath::Kind(name, kind) => {
            let d = state.disk(name)?;
            let of_kind: Vec<&Arc<Bucket>> = d.buckets.iter().filter(|b| b.kind == *kind).collect();
            if of_kind.is_empty() {
                return Err(ApiError::not_found(format!(
                    "disk '{name}' has no {} buckets; it has: {}",
                    kind.name(),
                    d.kinds()
                        .iter()
                        .map(|k| k.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            if kind.name_components() == 1 {
                return Ok(of_kind
                    .iter()
                    .map(|b| bucket_entry(&parent, b, &b.name))
                    .collect());
            }
            // lvm: the VGs first, their LVs one level down.
            let mut groups: Vec<&str> = of_kind
                .iter()
                .filter_map(|b| b.name.split_once('/').map(|(g, _)| g))
                .collect();
            groups.dedup();
            Ok(groups
                .iter()
                .map(|g| virtual_entry(&vpath::join(&parent, g.as_bytes()), g, false))
                .collect())
        }
        VPath::Group { disk, kind, group } => {
            let d = state.disk(disk)?;
            let prefix = format!("{group}/");
            let entries: Vec<Entry> = d
                .buckets
                .iter()
                .filter(|b| b.kind == *kind)
                .filter_map(|b| Some((b, b.name.strip_prefix(&prefix)?)))
                .map(|(b, rest)| bucket_entry(&parent, b, rest))
                .collect();
            if entries.is_empty() {
                return Err(ApiError::not_found(format!(
                    "disk '{disk}' has no {} group '{group}'",
                    kind.name()
                )));
            }
            Ok(entries)
        }
        VPath::Inside { .. } => Err(ApiError::internal("list_virtual called for a bucket path")),
    }
}

/// The entry of a bucket, named `text` below `parent`.
fn bucket_entry(parent: &[u8], b: &Bucket, text: &str) -> Entry {
    let mut e = virtual_entry(
        &vpath::join(parent, text.as_bytes()),
        text,
        b.error.is_some() || mounts::mount_options(b.fstype).is_none(),
    );
    e.size = Some(b.size);
    e.fstype = Some(b.type_name.clone());
    e.label = b.label.clone();
    e.encryption = b.encryption.clone();
    e.locked = b.locked;
    e.error = b.error.clone();
    e
}

/// Mounts the bucket (if needed) and opens its confined root.
pub fn bucket_root(
    state: &State,
    disk: &str,
    kind: BucketKind,
    bucket: &str,
) -> Result<Root, ApiError> {
    let (d, b) = state.bucket(disk, kind, bucket)?;
    let mp = mounts::ensure_mounted(&d.name, &b, &state.mount_base)?;
    Root::open(&mp)
        .map_err(|e| ApiError::io(&format!("bucket {disk}/{}/{bucket}", kind.name()), &e))
}

/// Describes `name` in the directory `dir` without following it (`dir`
/// itself when `name` is empty).
pub fn describe(dir: &OwnedFd, name: &[u8], full_path: &[u8]) -> Entry {
    let text = String::from_utf8_lossy(name).into_owned();
    let mut e = Entry {
        filepath: encode_path(full_path),
        text,
        entry_type: EntryType::File,
        leaf: true,
        size: None,
        mtime: None,
        target: None,
        fstype: None,
        label: None,
        encryption: None,
        locked: None,
        error: None,
        path: None,
    };
    let st = if name.is_empty() {
        confine::fstat(dir)
    } else {
        confine::lstat_at(dir, name)
    };
    if let Ok(st) = st {
        fill_from_stat(&mut e, &st);
        if e.entry_type == EntryType::Symlink {
            // The same read as the archive writer's, so a listing shows the
            // target a tar of the link would carry, or the same refusal.
            match confine::readlink_at(dir, name, st.st_size.max(0) as u64) {
                Ok(t) => e.target = Some(String::from_utf8_lossy(&t).into_owned()),
                Err(err) => e.error = Some(format!("cannot read the symlink's target: {err}")),
            }
        }
    }
    e
}

/// The entry type a stat's mode says.
pub fn type_of_mode(mode: libc::mode_t) -> EntryType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => EntryType::Directory,
        libc::S_IFLNK => EntryType::Symlink,
        libc::S_IFCHR => EntryType::CharDevice,
        libc::S_IFBLK => EntryType::BlockDevice,
        libc::S_IFIFO => EntryType::Fifo,
        libc::S_IFSOCK => EntryType::Socket,
        _ => EntryType::File,
    }
}

/// Sets type, leaf, size and mtime from a stat.
pub fn fill_from_stat(e: &mut Entry, st: &libc::stat) {
    e.entry_type = type_of_mode(st.st_mode);
    e.leaf = e.entry_type != EntryType::Directory;
    e.size = (e.entry_type != EntryType::Directory).then_some(st.st_size.max(0) as u64);
    e.mtime = Some(st.st_mtime);
}

/// Lists a path inside a bucket: a directory's entries (streamed), or the
/// entry itself for anything else.
pub async fn list_inside(
    state: std::sync::Arc<State>,
    path: VPath,
) -> Result<ChannelBody, ApiError> {
    let VPath::Inside {
        disk,
        kind,
        bucket,
        rest,
    } = path.clone()
    else {
        return Err(ApiError::internal("list_inside called for a virtual path"));
    };
    let canonical = vpath::canonical(&path);
    let label = String::from_utf8_lossy(&canonical).into_owned();
    let ((), body) = stream::spawn_stream(
        move || {
            let root = bucket_root(&state, &disk, kind, &bucket)?;
            let fd = root
                .open_at(&rest, libc::O_PATH, Last::NoFollow)
                .map_err(|e| ApiError::io(&label, &e))?;
            let st = confine::fstat(&fd).map_err(|e| ApiError::io(&label, &e))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                // Not a directory: the listing is the entry itself.
                let mut e = describe(&fd, b"", &canonical);
                e.text = String::from_utf8_lossy(rest.rsplit(|&c| c == b'/').next().unwrap_or(b""))
                    .into_owned();
                return Ok(((), Listing::Single(Box::new(e))));
            }
            let dir = root
                .open_at(&rest, libc::O_RDONLY | libc::O_DIRECTORY, Last::NoFollow)
                .map_err(|e| ApiError::io(&label, &e))?;
            Ok(((), Listing::Dir(dir, canonical)))
        },
        |listing, w| match listing {
            Listing::Single(e) => {
                w.write_all(b"[")?;
                serde_json::to_writer(&mut *w, &e)?;
                w.write_all(b"]")
            }
            Listing::Dir(dir, canonical) => write_dir(&dir, &canonical, w),
        },
    )
    .await?;
    Ok(body)
}

enum Listing {
    Single(Box<Entry>),
    Dir(OwnedFd, Vec<u8>),
}

fn write_dir(dir: &OwnedFd, parent: &[u8], w: &mut impl Write) -> io::Result<()> {
    w.write_all(b"[")?;
    let mut first = true;
    confine::for_each_entry(dir, |name| -> io::Result<()> {
        let e = describe(dir, name, &vpath::join(parent, name));
        if !first {
            w.write_all(b",")?;
        }
        first = false;
        serde_json::to_writer(&mut *w, &e)?;
        Ok(())
    })?;
    w.write_all(b"]")
}

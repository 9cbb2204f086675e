//! Directory archives streamed as tar (pax) or zip: the confined walk here,
//! one sink per format (`tar`, `zip`). Imports: this folder's modules and
//! the daemon's `confine` (descriptor-relative opens), nothing else.
//!
//! A confined walk ([`walk`]) visits a directory tree through descriptors
//! only: each child is opened relative to its parent with `O_NOFOLLOW` and
//! `RESOLVE_BENEATH`, so nothing in the image can redirect the walk. What it
//! finds goes to an [`ArchiveSink`], one per output format. Nothing is
//! buffered whole: file data streams from the disk to the sink.

mod tar;
mod zip;

pub use self::tar::TarSink;
pub use self::zip::ZipSink;

use crate::confine;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// Deepest directory nesting the walk follows before refusing.
const MAX_DEPTH: usize = 512;
/// Largest xattr value carried into an archive.
const MAX_XATTR_VALUE: usize = 64 * 1024;

/// Metadata of one archive entry.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// Permission bits (without the file type).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Size in bytes (regular files).
    pub size: u64,
    /// Device number (character and block devices).
    pub rdev: u64,
    /// Extended attributes (name, value).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    fn from_stat(st: &libc::stat) -> Meta {
        Meta {
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime: st.st_mtime,
            size: st.st_size.max(0) as u64,
            rdev: st.st_rdev,
            xattrs: Vec::new(),
        }
    }
}

/// Kinds of special files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// Character device.
    Char,
    /// Block device.
    Block,
    /// Named pipe.
    Fifo,
}

/// Receives the entries of a walk, in order (a directory before its children).
pub trait ArchiveSink {
    /// A directory.
    fn dir(&mut self, path: &[u8], meta: &Meta) -> io::Result<()>;
    /// A regular file with its content.
    fn file(&mut self, path: &[u8], meta: &Meta, data: &mut File) -> io::Result<()>;
    /// Whether the sink can store hard links; if not, every name of a file
    /// is written with its content.
    fn supports_hardlinks(&self) -> bool;
    /// A second (or later) name of a file already written as `first`.
    fn hardlink(&mut self, path: &[u8], meta: &Meta, first: &[u8]) -> io::Result<()>;
    /// A symbolic link.
    fn symlink(&mut self, path: &[u8], meta: &Meta, target: &[u8]) -> io::Result<()>;
    /// A device node or fifo.
    fn special(&mut self, path: &[u8], meta: &Meta, kind: Special) -> io::Result<()>;
    /// Writes the archive's end.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

fn read_xattrs(fd: &OwnedFd) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    // SAFETY: buffer valid for its length.
    let n = unsafe { libc::flistxattr(fd.as_raw_fd(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(cname) = std::ffi::CString::new(name) else {
            continue;
        };
        let mut value = vec![0u8; MAX_XATTR_VALUE];
        // SAFETY: buffer valid for its length; name is NUL-terminated.
        let len = unsafe {
            libc::fgetxattr(
                fd.as_raw_fd(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len >= 0 {
            value.truncate(len as usize);
            out.push((name.to_vec(), value));
        }
    }
    out
}

/// Walks the tree below `start` (already opened, any type) and feeds `sink`,
/// naming entries below `prefix` (the archive's top-level name).
pub fn walk(
    start_dir: &OwnedFd,
    start_name: &[u8],
    prefix: &[u8],
    sink: &mut dyn ArchiveSink,
) -> io::Result<()> {
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    visit(start_dir, start_name, prefix.to_vec(), 0, sink, &mut links)
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = parent.to_vec();
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

fn with_path(e: io::Error, path: &[u8]) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", String::from_utf8_lossy(path)))
}

/// Visits the entry `name` inside the directory `parent` (or, with an empty
/// name, `parent` itself).
fn visit(
    parent: &OwnedFd,
    name: &[u8],
    path: Vec<u8>,
    depth: usize,
    sink: &mut dyn ArchiveSink,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!(
            "{}: directories nested deeper than {MAX_DEPTH} levels",
            String::from_utf8_lossy(&path)
        )));
    }
    let st = if name.is_empty() {
        confine::fstat(parent)
    } else {
        confine::lstat_at(parent, name)
    }
    .map_err(|e| with_path(e, &path))?;
    let mut meta = Meta::from_stat(&st);
    let open = |flags: i32| -> io::Result<OwnedFd> {
        if name.is_empty() {
            confine::open_child_self(parent, flags)
        } else {
            confine::open_child(parent, name, flags)
        }
    };
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            let dir = open(libc::O_RDONLY | libc::O_DIRECTORY).map_err(|e| with_path(e, &path))?;
            meta.xattrs = read_xattrs(&dir);
            sink.dir(&path, &meta)?;
            let mut names: Vec<Vec<u8>> = Vec::new();
            confine::for_each_entry(&dir, |n| -> io::Result<()> {
                names.push(n.to_vec());
                Ok(())
            })
            .map_err(|e| with_path(e, &path))?;
            names.sort();
            for child in names {
                let child_path = join(&path, &child);
                visit(&dir, &child, child_path, depth + 1, sink, links)?;
            }
            Ok(())
        }
        libc::S_IFREG => {
            let key = (st.st_dev, st.st_ino);
            let track = st.st_nlink > 1 && sink.supports_hardlinks();
            if track {
                if let Some(first) = links.get(&key) {
                    return sink.hardlink(&path, &meta, first);
                }
            }
            // O_NONBLOCK: should the entry have become a FIFO since the
            // lstat, the open must not wait for a writer; the type is
            // checked again on the descriptor.
            let fd = open(libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY)
                .map_err(|e| with_path(e, &path))?;
            let st2 = confine::fstat(&fd).map_err(|e| with_path(e, &path))?;
            if st2.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Err(io::Error::other(format!(
                    "{}: changed from a regular file while the archive was written",
                    String::from_utf8_lossy(&path)
                )));
            }
            meta.xattrs = read_xattrs(&fd);
            let mut file = File::from(fd);
            sink.file(&path, &meta, &mut file).map_err(|e| {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    e
                } else {
                    with_path(e, &path)
                }
            })?;
            if track {
                links.insert(key, path);
            }
            Ok(())
        }
        libc::S_IFLNK => {
            let target = confine::readlink_at(parent, name, st.st_size.max(0) as u64)
                .map_err(|e| with_path(e, &path))?;
            sink.symlink(&path, &meta, &target)
        }
        libc::S_IFCHR => sink.special(&path, &meta, Special::Char),
        libc::S_IFBLK => sink.special(&path, &meta, Special::Block),
        libc::S_IFIFO => sink.special(&path, &meta, Special::Fifo),
        _ => {
            log::debug!("skipping socket {}", String::from_utf8_lossy(&path));
            Ok(())
        }
    }
}

//! Safe host-side unpacking of a tar stream (the daemon's directory archive)
//! into a TARGET directory.
//!
//! The `tar` crate is used only to read headers and data; every file system
//! object is created here, relative to a descriptor of TARGET, one path
//! component at a time:
//! - entry paths are normalized; absolute paths and `..` are refused;
//! - each parent directory is opened with `openat2(RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS)` from its parent's descriptor, so a symlink
//!   (including one created earlier from the same archive) can never
//!   redirect a later entry outside TARGET;
//! - symlinks are created with any target text but never followed;
//! - hard links may only point at entries unpacked earlier from the archive;
//! - regular files are written under a temporary name in their directory,
//!   fsynced and renamed into place, so a broken transfer or a full disk
//!   never leaves a half-written file under its final name;
//! - existing files are kept unless [`UnpackOptions::overwrite`];
//! - mode and mtime are kept (directories' after their contents), less the
//!   umask and without set-id bits; directories that already existed in
//!   TARGET keep their own mode and times;
//! - device nodes and FIFOs are skipped (counted in [`UnpackStats`]);
//! - with [`UnpackOptions::same_owner`] the image's owners (as root), set-id
//!   bits and special files are restored, and the umask is not applied;
//! - TARGET itself is opened without following a symlink, and no mode
//!   change ever follows one;
//! - extension headers are capped (`guard::MAX_EXTENSION`) and GNU sparse
//!   entries refused before the `tar` crate reads them; runs of zero blocks
//!   in files become holes.
//!
//! Folder: the entry point and options here, the per-entry work
//! (`unpacker.rs`), descriptor-relative file system calls (`fsops.rs`),
//! data with holes (`holes.rs`) and the header guard (`guard.rs`). May import `util` only.

mod fsops;
mod guard;
mod holes;
#[cfg(test)]
mod tests;
mod unpacker;

use std::fs;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use unpacker::Unpacker;

/// How to unpack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Replace existing files, symlinks and links (never directories).
    pub overwrite: bool,
    /// Leading path components to drop from every entry (as `tar
    /// --strip-components`); entries with no component left are skipped.
    pub strip_components: usize,
    /// Restore what the image says beyond names and data (`--same-owner`):
    /// owners (when running as root), set-id bits, FIFOs and device nodes
    /// (devices only as root), and modes without the umask. Off, files are
    /// owned by the invoking user, get no set-id bits, respect the umask,
    /// and special files are skipped.
    pub same_owner: bool,
    /// The umask applied to modes without [`Self::same_owner`]; `None`: the
    /// process's.
    pub umask: Option<u32>,
}

/// What an unpack created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Regular files written.
    pub files: u64,
    /// Directory entries handled.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hard links created.
    pub hardlinks: u64,
    /// Named pipes created.
    pub fifos: u64,
    /// Device nodes created.
    pub devices: u64,
    /// Device nodes and FIFOs skipped (without `same_owner`; devices also
    /// when not root).
    pub skipped_special: u64,
    /// Entries of unsupported types skipped with a warning.
    pub skipped: u64,
    /// Bytes of file data written.
    pub bytes: u64,
}

/// Errors of [`unpack_tar`]. Each names the entry or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// TARGET cannot be created or opened.
    #[error("cannot use the target directory '{path}': {source}")]
    Target {
        /// TARGET.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// An entry that would escape TARGET or is otherwise unsafe.
    #[error("refused archive entry '{entry}': {reason}; nothing was written for it")]
    Refused {
        /// The entry's name as in the archive.
        entry: String,
        /// Why.
        reason: String,
    },
    /// An existing file that is not overwritten.
    #[error(
        "'{path}' already exists: not overwriting it (use --overwrite to replace existing files)"
    )]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// The disk (or quota) is full.
    #[error("no space left on device while writing '{path}': {source}")]
    NoSpace {
        /// The file being written.
        path: PathBuf,
        /// The error (ENOSPC or EDQUOT).
        source: io::Error,
    },
    /// Reading an entry's data from the stream failed.
    #[error("the archive stream broke while reading entry '{entry}': {source}")]
    Broken {
        /// The entry.
        entry: String,
        /// The read error.
        source: io::Error,
    },
    /// The stream ended early.
    #[error("the archive is truncated: {detail}; the transfer was cut off")]
    Truncated {
        /// Where it ended.
        detail: String,
    },
    /// The stream holds an extension header over `guard::MAX_EXTENSION`.
    #[error("refused the tar archive: {detail}; the rest of the stream was not read")]
    TooLarge {
        /// Which header and its size.
        detail: String,
    },
    /// The stream is not a readable tar archive.
    #[error("cannot read the tar archive: {source}")]
    Archive {
        /// The error.
        source: io::Error,
    },
    /// A file system call failed.
    #[error("cannot {action} '{path}': {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Counts the bytes read and how many of the last ones were zeros, to tell
/// a proper end-of-archive block from a stream that just stopped.
struct CountingReader<R> {
    inner: R,
    total: u64,
    trailing_zeros: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let data = &buf[..n];
        self.total += n as u64;
        match data.iter().rposition(|&b| b != 0) {
            None => self.trailing_zeros += n as u64,
            Some(i) => self.trailing_zeros = (n - i - 1) as u64,
        }
        Ok(n)
    }
}

/// Metadata of one entry, pax values taking precedence over the header.
struct Meta {
    mode: u32,
    mtime: (i64, u32),
    uid: u32,
    gid: u32,
    /// pax `GNU.sparse.*` records: a GNU sparse file (refused).
    gnu_sparse: bool,
}

/// A directory whose mode and mtime are set after all entries.
struct DirMeta {
    rel: PathBuf,
    meta: Meta,
}

/// The process's umask, read without changing it (`/proc/self/status`),
/// else by setting and restoring it.
pub fn process_umask() -> u32 {
    if let Ok(s) = fs::read_to_string("/proc/self/status") {
        if let Some(v) = s.lines().find_map(|l| l.strip_prefix("Umask:")) {
            if let Ok(m) = u32::from_str_radix(v.trim(), 8) {
                return m;
            }
        }
    }
    // SAFETY: umask cannot fail; the old value is put back at once.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old);
        old as u32
    }
}

/// Unpacks the tar stream `reader` into `target` (created if missing).
///
/// Stops at the first refused entry or error; entries unpacked before it
/// stay, each complete. See the module documentation for the rules.
pub fn unpack_tar<R: Read>(
    reader: R,
    target: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let target_err = |e| UnpackError::Target {
        path: target.to_path_buf(),
        source: e,
    };
    fs::create_dir_all(target).map_err(target_err)?;
    let root: OwnedFd = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(target)
        .map_err(|e| {
            let is_link = fs::symlink_metadata(target).is_ok_and(|m| m.file_type().is_symlink());
            if is_link {
                target_err(io::Error::new(
                    e.kind(),
                    "it is a symlink, which is not followed: give the directory itself",
                ))
            } else {
                target_err(e)
            }
        })?
        .into();
    // SAFETY: geteuid cannot fail.
    let is_root = unsafe { libc::geteuid() } == 0;
    let umask = opts.umask.unwrap_or_else(process_umask) & 0o777;
    let mut u = Unpacker::new(root, target, opts, is_root, umask);
    let mut archive = tar::Archive::new(guard::TarGuard::new(CountingReader {
        inner: reader,
        total: 0,
        trailing_zeros: 0,
    }));
    let mut last_end = 0u64;
    for entry in archive.entries().map_err(archive_err)? {
        let mut entry = entry.map_err(archive_err)?;
        last_end = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
        u.entry(&mut entry)?;
    }
    let counter = archive.into_inner().into_inner();
    if counter.total < last_end + 512 || counter.trailing_zeros < counter.total - last_end {
        return Err(UnpackError::Truncated {
            detail: format!(
                "the stream ended after {} bytes without the end-of-archive marker",
                counter.total
            ),
        });
    }
    u.finish_dirs()?;
    Ok(u.into_stats())
}

fn archive_err(e: io::Error) -> UnpackError {
    if let Some(g) = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<guard::GuardError>())
    {
        return match g {
            guard::GuardError::Sparse { entry } => UnpackError::Refused {
                entry: entry.clone(),
                reason: "GNU sparse tar entries are not supported".into(),
            },
            guard::GuardError::ExtensionTooLarge { .. } => UnpackError::TooLarge {
                detail: g.to_string(),
            },
        };
    }
    let msg = e.to_string();
    if e.kind() == io::ErrorKind::UnexpectedEof
        || msg.contains("EOF")
        || msg.contains("failed to read entire block")
    {
        UnpackError::Truncated {
            detail: e.to_string(),
        }
    } else {
        UnpackError::Archive { source: e }
    }
}

/// Normalizes an entry path: `.` dropped, `..` and absolute paths refused,
/// then `strip` leading components dropped. `None`: nothing left.
fn normalize(raw: &Path, strip: usize) -> Result<Option<PathBuf>, String> {
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("its path contains '..'".into()),
            Component::RootDir | Component::Prefix(_) => return Err("its path is absolute".into()),
        }
    }
    if parts.len() <= strip {
        return Ok(None);
    }
    Ok(Some(parts[strip..].iter().collect()))
}

/// Parses a pax time: `[-]SECONDS[.FRACTION]`.
fn parse_pax_time(s: &str) -> Option<(i64, u32)> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nanos: u32 = digits.parse().ok()?;
    if s.starts_with('-') && nanos > 0 {
        // -1.5 s is 2 s before the epoch plus 0.5 s.
        return Some((secs - 1, 1_000_000_000 - nanos));
    }
    Some((secs, nanos))
}

fn read_meta<R: Read>(entry: &mut tar::Entry<R>) -> Result<Meta, UnpackError> {
    let h = entry.header();
    let mut meta = Meta {
        mode: h.mode().unwrap_or(0o644),
        mtime: (h.mtime().unwrap_or(0).min(i64::MAX as u64) as i64, 0),
        uid: h.uid().unwrap_or(0).min(u64::from(u32::MAX)) as u32,
        gid: h.gid().unwrap_or(0).min(u64::from(u32::MAX)) as u32,
        gnu_sparse: false,
    };
    if let Some(exts) = entry.pax_extensions().map_err(archive_err)? {
        for ext in exts.flatten() {
            if ext.key_bytes().starts_with(b"GNU.sparse.") {
                meta.gnu_sparse = true;
            }
            let (Ok(key), Ok(value)) = (ext.key(), ext.value()) else {
                continue;
            };
            match key {
                "mtime" => {
                    if let Some(t) = parse_pax_time(value) {
                        meta.mtime = t;
                    }
                }
                "uid" => meta.uid = value.parse().unwrap_or(meta.uid),
                "gid" => meta.gid = value.parse().unwrap_or(meta.gid),
                _ => {}
            }
        }
    }
    Ok(meta)
}

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
//! - mode and mtime are kept (directories' after their contents), owners
//!   only with [`UnpackOptions::preserve_owner`] when running as root.

mod fsops;
#[cfg(test)]
mod tests;
mod unpacker;

use std::fs;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use unpacker::Unpacker;

/// How to unpack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Replace existing files, symlinks and links (never directories).
    pub overwrite: bool,
    /// Leading path components to drop from every entry (as `tar
    /// --strip-components`); entries with no component left are skipped.
    pub strip_components: usize,
    /// Keep owners and set-id bits; takes effect only when running as root
    /// (effective uid 0). Also needed to create device nodes.
    pub preserve_owner: bool,
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
    /// Entries skipped with a warning (devices when not root, unknown types).
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
}

/// A directory whose mode and mtime are set after all entries.
struct DirMeta {
    rel: PathBuf,
    meta: Meta,
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
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(target)
        .map_err(target_err)?
        .into();
    // SAFETY: geteuid cannot fail.
    let is_root = unsafe { libc::geteuid() } == 0;
    let mut u = Unpacker::new(root, target, opts, is_root && opts.preserve_owner);
    let mut archive = tar::Archive::new(CountingReader {
        inner: reader,
        total: 0,
        trailing_zeros: 0,
    });
    let mut last_end = 0u64;
    for entry in archive.entries().map_err(archive_err)? {
        let mut entry = entry.map_err(archive_err)?;
        // Bytes stored in the archive (a sparse file's data is shorter than its size).
        let stored = if entry.header().entry_type() == EntryType::GNUSparse {
            entry.header().entry_size().unwrap_or(0)
        } else {
            entry.size()
        };
        last_end = entry.raw_file_position() + stored.div_ceil(512) * 512;
        u.entry(&mut entry)?;
    }
    let counter = archive.into_inner();
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
    };
    if let Some(exts) = entry.pax_extensions().map_err(archive_err)? {
        for ext in exts.flatten() {
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

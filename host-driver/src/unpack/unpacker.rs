//! Creating each kind of entry beneath TARGET (see the parent module).

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::fsops;
use super::holes::HoleWriter;
use super::{normalize, read_meta, DirMeta, Meta, UnpackError, UnpackOptions, UnpackStats};
use crate::util::text::terminal_safe;

fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

pub(super) struct Unpacker<'a> {
    root: OwnedFd,
    target: &'a Path,
    opts: &'a UnpackOptions,
    /// Running as root: devices can be created, owners set.
    is_root: bool,
    /// `same_owner` and root: owners are set.
    can_chown: bool,
    /// Applied to modes without `same_owner`.
    umask: u32,
    stats: UnpackStats,
    /// Entries (files, links, symlinks) created from this archive: the only
    /// allowed hard-link targets.
    unpacked: HashSet<PathBuf>,
    dirs: Vec<DirMeta>,
    /// Directories this unpack created (explicitly or as missing parents):
    /// only these get the archive's mode and times.
    created_dirs: RefCell<HashSet<PathBuf>>,
    tmp_seq: u64,
}

impl<'a> Unpacker<'a> {
    /// An unpacker writing beneath the open directory `root` (TARGET).
    pub(super) fn new(
        root: OwnedFd,
        target: &'a Path,
        opts: &'a UnpackOptions,
        is_root: bool,
        umask: u32,
    ) -> Self {
        Unpacker {
            root,
            target,
            opts,
            is_root,
            can_chown: is_root && opts.same_owner,
            umask,
            stats: UnpackStats::default(),
            unpacked: HashSet::new(),
            dirs: Vec::new(),
            created_dirs: RefCell::new(HashSet::new()),
            tmp_seq: 0,
        }
    }

    /// What was created.
    pub(super) fn into_stats(self) -> UnpackStats {
        self.stats
    }

    /// The mode a new non-directory gets.
    fn file_mode(&self, mode: u32) -> u32 {
        if self.opts.same_owner {
            mode & 0o7777
        } else {
            mode & 0o777 & !self.umask
        }
    }

    /// The mode a new directory gets (the sticky bit is harmless).
    fn dir_mode(&self, mode: u32) -> u32 {
        if self.opts.same_owner {
            mode & 0o7777
        } else {
            mode & 0o1777 & !self.umask
        }
    }

    fn io_err(&self, action: &'static str, rel: &Path, e: io::Error) -> UnpackError {
        UnpackError::Io {
            action,
            path: self.target.join(rel),
            source: e,
        }
    }

    /// Unpacks one entry.
    pub(super) fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw_bytes = entry.path_bytes().into_owned();
        let raw = Path::new(OsStr::from_bytes(&raw_bytes));
        let display = raw.display().to_string();
        let refused = |reason: String| UnpackError::Refused {
            entry: display.clone(),
            reason,
        };
        let rel = match normalize(raw, self.opts.strip_components).map_err(refused)? {
            Some(r) => r,
            None => return Ok(()),
        };
        let meta = read_meta(entry)?;
        if kind == EntryType::GNUSparse || meta.gnu_sparse {
            return Err(refused("GNU sparse tar entries are not supported".into()));
        }
        let old_style_dir = kind == EntryType::Regular && raw_bytes.ends_with(b"/");
        match kind {
            EntryType::Directory => self.dir(&rel, &display, meta),
            _ if old_style_dir => self.dir(&rel, &display, meta),
            EntryType::Regular | EntryType::Continuous => self.file(entry, &rel, &display, &meta),
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| refused("a symlink without a target".into()))?;
                let target = CString::new(target)
                    .map_err(|_| refused("the symlink target contains a NUL byte".into()))?;
                self.symlink(&target, &rel, &display, &meta)
            }
            EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .ok_or_else(|| refused("a hard link without a target".into()))?;
                self.hardlink(Path::new(OsStr::from_bytes(&link)), &rel, &display, &meta)
            }
            EntryType::Fifo | EntryType::Char | EntryType::Block if !self.opts.same_owner => {
                log::info!(
                    "skipped special file '{}' (--same-owner creates them)",
                    terminal_safe(&display)
                );
                self.stats.skipped_special += 1;
                Ok(())
            }
            EntryType::Fifo => self.special(&rel, &display, &meta, libc::S_IFIFO, 0),
            EntryType::Char | EntryType::Block => {
                if !self.is_root {
                    log::warn!(
                        "skipped device node '{}': devices are created only as root",
                        terminal_safe(&display)
                    );
                    self.stats.skipped_special += 1;
                    return Ok(());
                }
                let h = entry.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                let ifmt = if kind == EntryType::Char {
                    libc::S_IFCHR
                } else {
                    libc::S_IFBLK
                };
                self.special(&rel, &display, &meta, ifmt, libc::makedev(major, minor))
            }
            other => {
                log::warn!(
                    "skipped archive entry '{}' of unsupported type {other:?}",
                    terminal_safe(&display)
                );
                self.stats.skipped += 1;
                Ok(())
            }
        }
    }

    /// Opens the parent directory of `rel` beneath TARGET (creating missing
    /// levels when `create`), refusing symlinks and non-directories on the
    /// way. Returns it and the last component.
    fn open_parent(
        &self,
        rel: &Path,
        display: &str,
        create: bool,
    ) -> Result<(OwnedFd, CString), UnpackError> {
        let comps: Vec<&OsStr> = rel.iter().collect();
        let Some((last, parents)) = comps.split_last() else {
            return Err(UnpackError::Refused {
                entry: display.into(),
                reason: "empty path".into(),
            });
        };
        let bad_name = |_| UnpackError::Refused {
            entry: display.into(),
            reason: "its path contains a NUL byte".into(),
        };
        let mut cur: Option<OwnedFd> = None;
        let mut prefix = PathBuf::new();
        for c in parents {
            prefix.push(c);
            let name = fsops::cstr(c).map_err(bad_name)?;
            let dir = cur.as_ref().map_or(self.root.as_fd(), |f| f.as_fd());
            if create {
                match fsops::mkdir(dir, &name, 0o755) {
                    Ok(()) => {
                        self.created_dirs.borrow_mut().insert(prefix.clone());
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(self.io_err("create directory", &prefix, e)),
                }
            }
            let next = fsops::open_dir_beneath(dir, &name).map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::ENOTDIR) | Some(libc::EXDEV) => {
                    UnpackError::Refused {
                        entry: display.into(),
                        reason: format!(
                            "'{}' inside the target is a symlink or not a directory",
                            prefix.display()
                        ),
                    }
                }
                _ => self.io_err("open directory", &prefix, e),
            })?;
            cur = Some(next);
        }
        let fd = match cur {
            Some(f) => f,
            None => self
                .root
                .try_clone()
                .map_err(|e| self.io_err("open directory", Path::new(""), e))?,
        };
        Ok((fd, fsops::cstr(last).map_err(bad_name)?))
    }

    /// Fails early when `name` exists and may not be replaced.
    fn check_existing(
        &self,
        dir: BorrowedFd<'_>,
        name: &CString,
        rel: &Path,
    ) -> Result<(), UnpackError> {
        let st = fsops::lstat(dir, name).map_err(|e| self.io_err("examine", rel, e))?;
        let Some(st) = st else { return Ok(()) };
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR || !self.opts.overwrite {
            return Err(UnpackError::Exists {
                path: self.target.join(rel),
            });
        }
        Ok(())
    }

    fn next_tmp_name(&mut self) -> CString {
        self.tmp_seq += 1;
        let name = format!(".file-restore-{}-{}.tmp", std::process::id(), self.tmp_seq);
        CString::new(name).unwrap_or_default()
    }

    /// Creates something at a fresh temporary name with `make`,
    /// retrying on a name clash; returns the name.
    fn create_tmp<T>(
        &mut self,
        rel: &Path,
        mut make: impl FnMut(&CString) -> io::Result<T>,
    ) -> Result<(CString, T), UnpackError> {
        for _ in 0..100 {
            let tmp = self.next_tmp_name();
            match make(&tmp) {
                Ok(v) => return Ok((tmp, v)),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(e) if is_no_space(&e) => {
                    return Err(UnpackError::NoSpace {
                        path: self.target.join(rel),
                        source: e,
                    })
                }
                Err(e) => return Err(self.io_err("create", rel, e)),
            }
        }
        Err(self.io_err("create", rel, io::Error::from_raw_os_error(libc::EEXIST)))
    }

    /// Renames the finished temporary `tmp` to `name`; removes it on failure.
    fn place(
        &mut self,
        dir: BorrowedFd<'_>,
        tmp: &CString,
        name: &CString,
        rel: &Path,
    ) -> Result<(), UnpackError> {
        fsops::rename(dir, tmp, name, !self.opts.overwrite).map_err(|e| {
            let _ = fsops::unlink(dir, tmp);
            match e.raw_os_error() {
                Some(libc::EEXIST) | Some(libc::EISDIR) | Some(libc::ENOTEMPTY) => {
                    UnpackError::Exists {
                        path: self.target.join(rel),
                    }
                }
                _ => self.io_err("rename into place", rel, e),
            }
        })?;
        self.unpacked.insert(rel.to_path_buf());
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        rel: &Path,
        display: &str,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let (dir, name) = self.open_parent(rel, display, true)?;
        self.check_existing(dir.as_fd(), &name, rel)?;
        let (tmp, mut file) =
            self.create_tmp(rel, |t| fsops::create_file(dir.as_fd(), t, 0o600))?;
        match self.write_data(entry, &mut file, rel, display, meta) {
            Ok(n) => {
                drop(file);
                self.place(dir.as_fd(), &tmp, &name, rel)?;
                self.stats.files += 1;
                self.stats.bytes += n;
                Ok(())
            }
            Err(e) => {
                drop(file);
                let _ = fsops::unlink(dir.as_fd(), &tmp);
                Err(e)
            }
        }
    }

    /// Copies the entry's data into `file`, then sets owner, mode and mtime
    /// and fsyncs. Returns the bytes written.
    fn write_data<R: Read>(
        &self,
        entry: &mut tar::Entry<R>,
        file: &mut File,
        rel: &Path,
        display: &str,
        meta: &Meta,
    ) -> Result<u64, UnpackError> {
        let write_err = |e: io::Error| {
            if is_no_space(&e) {
                UnpackError::NoSpace {
                    path: self.target.join(rel),
                    source: e,
                }
            } else {
                self.io_err("write", rel, e)
            }
        };
        let size = entry.size();
        let mut buf = vec![0u8; 128 * 1024];
        let mut written = 0u64;
        let mut holes = HoleWriter::new(file);
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(UnpackError::Broken {
                        entry: display.into(),
                        source: e,
                    })
                }
            };
            holes.write(&buf[..n]).map_err(write_err)?;
            written += n as u64;
        }
        if written < size {
            return Err(UnpackError::Truncated {
                detail: format!("entry '{display}' ended after {written} of {size} bytes"),
            });
        }
        holes.finish().map_err(write_err)?;
        let fd = file.as_fd();
        if self.can_chown {
            fsops::chown_fd(fd, meta.uid, meta.gid).map_err(|e| self.io_err("chown", rel, e))?;
        }
        fsops::chmod_fd(fd, self.file_mode(meta.mode)).map_err(|e| self.io_err("chmod", rel, e))?;
        fsops::set_mtime_fd(fd, meta.mtime).map_err(|e| self.io_err("set the mtime of", rel, e))?;
        file.sync_all().map_err(write_err)?;
        Ok(written)
    }

    fn dir(&mut self, rel: &Path, display: &str, meta: Meta) -> Result<(), UnpackError> {
        let (dir, name) = self.open_parent(rel, display, true)?;
        match fsops::mkdir(dir.as_fd(), &name, 0o700) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                // Merging into an existing directory is fine, and it keeps
                // its own mode and times; anything else in its place is
                // replaced only with --overwrite.
                match fsops::open_dir_beneath(dir.as_fd(), &name) {
                    Ok(_) if !self.created_dirs.borrow().contains(rel) => {
                        self.stats.dirs += 1;
                        return Ok(());
                    }
                    Ok(_) => {}
                    Err(_) if self.opts.overwrite => {
                        fsops::unlink(dir.as_fd(), &name)
                            .and_then(|()| fsops::mkdir(dir.as_fd(), &name, 0o700))
                            .map_err(|e| self.io_err("replace with a directory", rel, e))?;
                    }
                    Err(_) => {
                        return Err(UnpackError::Exists {
                            path: self.target.join(rel),
                        })
                    }
                }
            }
            Err(e) => return Err(self.io_err("create directory", rel, e)),
        }
        self.created_dirs.borrow_mut().insert(rel.to_path_buf());
        self.dirs.push(DirMeta {
            rel: rel.to_path_buf(),
            meta,
        });
        self.stats.dirs += 1;
        Ok(())
    }

    fn symlink(
        &mut self,
        target: &CString,
        rel: &Path,
        display: &str,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let (dir, name) = self.open_parent(rel, display, true)?;
        self.check_existing(dir.as_fd(), &name, rel)?;
        let (tmp, ()) = self.create_tmp(rel, |t| fsops::symlink(target, dir.as_fd(), t))?;
        let finish = || -> io::Result<()> {
            if self.can_chown {
                fsops::chown_at(dir.as_fd(), &tmp, meta.uid, meta.gid)?;
            }
            fsops::set_mtime_at(dir.as_fd(), &tmp, meta.mtime)
        };
        if let Err(e) = finish() {
            let _ = fsops::unlink(dir.as_fd(), &tmp);
            return Err(self.io_err("set the metadata of", rel, e));
        }
        self.place(dir.as_fd(), &tmp, &name, rel)?;
        self.stats.symlinks += 1;
        Ok(())
    }

    fn hardlink(
        &mut self,
        link: &Path,
        rel: &Path,
        display: &str,
        _meta: &Meta,
    ) -> Result<(), UnpackError> {
        let refused = |reason: String| UnpackError::Refused {
            entry: display.into(),
            reason,
        };
        let src = normalize(link, self.opts.strip_components)
            .map_err(|r| refused(format!("the hard link target '{}': {r}", link.display())))?
            .ok_or_else(|| refused("the hard link target is empty".into()))?;
        if src == rel {
            // A link to itself: the entry is already there.
            return Ok(());
        }
        if !self.unpacked.contains(&src) {
            return Err(refused(format!(
                "the hard link target '{}' is not an entry unpacked earlier from this archive",
                link.display()
            )));
        }
        let (src_dir, src_name) = self.open_parent(&src, display, false)?;
        let (dir, name) = self.open_parent(rel, display, true)?;
        self.check_existing(dir.as_fd(), &name, rel)?;
        let (tmp, ()) = self.create_tmp(rel, |t| {
            fsops::hardlink(src_dir.as_fd(), &src_name, dir.as_fd(), t)
        })?;
        self.place(dir.as_fd(), &tmp, &name, rel)?;
        self.stats.hardlinks += 1;
        Ok(())
    }

    fn special(
        &mut self,
        rel: &Path,
        display: &str,
        meta: &Meta,
        ifmt: libc::mode_t,
        dev: libc::dev_t,
    ) -> Result<(), UnpackError> {
        let (dir, name) = self.open_parent(rel, display, true)?;
        self.check_existing(dir.as_fd(), &name, rel)?;
        let (tmp, ()) =
            self.create_tmp(rel, |t| fsops::mknod(dir.as_fd(), t, ifmt | 0o600, dev))?;
        let mode = self.file_mode(meta.mode);
        let finish = || -> io::Result<()> {
            if self.can_chown {
                fsops::chown_at(dir.as_fd(), &tmp, meta.uid, meta.gid)?;
            }
            fsops::chmod_at(dir.as_fd(), &tmp, mode)?;
            fsops::set_mtime_at(dir.as_fd(), &tmp, meta.mtime)
        };
        if let Err(e) = finish() {
            let _ = fsops::unlink(dir.as_fd(), &tmp);
            return Err(self.io_err("set the metadata of", rel, e));
        }
        self.place(dir.as_fd(), &tmp, &name, rel)?;
        if ifmt == libc::S_IFIFO {
            self.stats.fifos += 1;
        } else {
            self.stats.devices += 1;
        }
        Ok(())
    }

    /// Sets owner, mode and mtime of the directories, deepest first, after
    /// everything inside them is written.
    pub(super) fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.rel.components().count()));
        for d in dirs {
            let display = d.rel.display().to_string();
            let (parent, name) = self.open_parent(&d.rel, &display, false)?;
            let fd = fsops::open_dir_beneath(parent.as_fd(), &name)
                .map_err(|e| self.io_err("open directory", &d.rel, e))?;
            let mode = self.dir_mode(d.meta.mode);
            let apply = || -> io::Result<()> {
                if self.can_chown {
                    fsops::chown_fd(fd.as_fd(), d.meta.uid, d.meta.gid)?;
                }
                fsops::chmod_fd(fd.as_fd(), mode)?;
                fsops::set_mtime_fd(fd.as_fd(), d.meta.mtime)
            };
            apply().map_err(|e| self.io_err("set the metadata of", &d.rel, e))?;
        }
        Ok(())
    }
}

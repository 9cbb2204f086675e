//! The walk of one bucket, or of a directory in it: depth first, one open
//! directory per level (at most [`MAX_DEPTH`] + 1 descriptors), in readdir
//! order. Every step is confined as every other read of the daemon: a child
//! is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_XDEV)` ([`confine::open_child`]), so symlinks are never
//! followed and no other mount is entered. The type comes from readdir's
//! `d_type` where the filesystem gives one; an entry is `lstat`ed only when
//! a size or time filter needs it or when it matches, so a name search over
//! 100,000 files costs little more than the readdirs.

use super::events::{Events, Flow};
use super::filter::Filter;
use crate::confine;
use crate::listing::{self, type_of_mode};
use file_restore_wire::find::MAX_DEPTH;
use file_restore_wire::{vpath, EntryType};
use std::io::{self, Write};
use std::os::fd::{IntoRawFd, OwnedFd};

/// Walks below one directory of one bucket.
pub struct Walker<'a, W: Write> {
    /// What matches.
    pub filter: &'a Filter,
    /// Where lines go.
    pub out: &'a mut Events<W>,
    /// The canonical API path of the bucket (`/disk/part/1`): a match's full
    /// path is this followed by its in-bucket path.
    pub prefix: Vec<u8>,
}

fn entry_type(t: nix::dir::Type) -> EntryType {
    use nix::dir::Type;
    match t {
        Type::Directory => EntryType::Directory,
        Type::Symlink => EntryType::Symlink,
        Type::File => EntryType::File,
        Type::CharacterDevice => EntryType::CharDevice,
        Type::BlockDevice => EntryType::BlockDevice,
        Type::Fifo => EntryType::Fifo,
        Type::Socket => EntryType::Socket,
    }
}

impl<W: Write> Walker<'_, W> {
    fn full(&self, rel: &[u8]) -> Vec<u8> {
        let mut p = self.prefix.clone();
        p.extend_from_slice(rel);
        p
    }

    /// Tests the start of a walk that is not a directory (a file named by
    /// the request's path): its own name and in-bucket path.
    pub fn single(&mut self, fd: &OwnedFd, rel: &[u8]) -> io::Result<Flow> {
        let st = confine::fstat(fd)?;
        let t = type_of_mode(st.st_mode);
        let name = rel.rsplit(|&c| c == b'/').next().unwrap_or(b"");
        self.out.visit()?;
        if self.filter.name_and_path(name, rel)
            && self.filter.entry_type(t)
            && self.filter.stat(t, st.st_size.max(0) as u64, st.st_mtime)
        {
            let full = self.full(rel);
            let mut e = listing::describe(fd, b"", &full);
            e.text = String::from_utf8_lossy(name).into_owned();
            return self.out.matched(e);
        }
        Ok(Flow::Go)
    }

    /// Walks the directory `dir`, whose in-bucket path is `rel` (empty for
    /// the bucket's root), `depth` levels below the start.
    pub fn walk(&mut self, dir: &OwnedFd, rel: &mut Vec<u8>, depth: usize) -> io::Result<Flow> {
        // Dup so that closing the DIR stream does not close the caller's fd.
        let dup = dir.try_clone()?;
        let mut d = match nix::dir::Dir::from_fd(dup.into_raw_fd()) {
            Ok(d) => d,
            Err(e) => {
                let at = self.full(rel);
                self.out
                    .skip(&at, &format!("cannot read the directory: {e}"))?;
                return Ok(Flow::Go);
            }
        };
        for ent in d.iter() {
            let ent = match ent {
                Ok(e) => e,
                Err(e) => {
                    let at = self.full(rel);
                    self.out
                        .skip(&at, &format!("reading the directory failed: {e}"))?;
                    break;
                }
            };
            let name = ent.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            self.out.visit()?;
            let len = rel.len();
            rel.push(b'/');
            rel.extend_from_slice(name);
            let t = match ent.file_type() {
                Some(t) => Some(entry_type(t)),
                None => confine::lstat_at(dir, name)
                    .ok()
                    .map(|st| type_of_mode(st.st_mode)),
            };
            let flow = match t {
                Some(t) => self.entry(dir, name, t, rel, depth),
                None => {
                    let at = self.full(rel);
                    self.out.skip(&at, "cannot stat it").map(|()| Flow::Go)
                }
            };
            rel.truncate(len);
            if flow? == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Go)
    }

    /// Tests one entry of `dir` and descends into it when it is a directory.
    fn entry(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        t: EntryType,
        rel: &mut Vec<u8>,
        depth: usize,
    ) -> io::Result<Flow> {
        if self.filter.name_and_path(name, rel) && self.filter.entry_type(t) {
            let passes = !self.filter.needs_stat()
                || confine::lstat_at(dir, name)
                    .is_ok_and(|st| self.filter.stat(t, st.st_size.max(0) as u64, st.st_mtime));
            if passes {
                let full = self.full(rel);
                let e = listing::describe(dir, name, &full);
                if self.out.matched(e)? == Flow::Stop {
                    return Ok(Flow::Stop);
                }
            }
        }
        if t != EntryType::Directory {
            return Ok(Flow::Go);
        }
        if depth >= MAX_DEPTH {
            let at = self.full(rel);
            self.out.skip(
                &at,
                &format!("deeper than {MAX_DEPTH} directory levels: not searched"),
            )?;
            return Ok(Flow::Go);
        }
        match confine::open_child(dir, name, libc::O_RDONLY | libc::O_DIRECTORY) {
            Ok(child) => self.walk(&child, rel, depth + 1),
            Err(e) => {
                let at = self.full(rel);
                self.out
                    .skip(&at, &format!("cannot open the directory: {e}"))?;
                Ok(Flow::Go)
            }
        }
    }
}

/// The canonical API path of a bucket.
pub fn bucket_prefix(disk: &str, kind: vpath::BucketKind, bucket: &str) -> Vec<u8> {
    vpath::canonical(&vpath::VPath::Inside {
        disk: disk.to_owned(),
        kind,
        bucket: bucket.to_owned(),
        rest: Vec::new(),
    })
}

//! Unpacker tests with crafted archives (header names written as raw bytes,
//! so `..` and absolute names get through the builder), real files and a
//! real full file system. Shared builders here; the tests by kind in
//! the files beside.

mod headers;
mod metadata;
mod paths;
mod writing;

use super::*;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::process::Command;
use tar::EntryType;

fn header(name: &[u8], kind: EntryType, size: u64, mode: u32, link: Option<&[u8]>) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    {
        let u = h.as_ustar_mut().unwrap();
        u.name.fill(0);
        u.name[..name.len()].copy_from_slice(name);
        if let Some(l) = link {
            u.linkname[..l.len()].copy_from_slice(l);
        }
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    h
}

#[derive(Default)]
struct Arch(Vec<(tar::Header, Vec<u8>)>);

impl Arch {
    fn file(mut self, name: &str, data: &[u8]) -> Self {
        let h = header(
            name.as_bytes(),
            EntryType::Regular,
            data.len() as u64,
            0o644,
            None,
        );
        self.0.push((h, data.to_vec()));
        self
    }
    fn dir(mut self, name: &str, mode: u32) -> Self {
        self.0.push((
            header(name.as_bytes(), EntryType::Directory, 0, mode, None),
            vec![],
        ));
        self
    }
    fn symlink(mut self, name: &str, target: &str) -> Self {
        let h = header(
            name.as_bytes(),
            EntryType::Symlink,
            0,
            0o777,
            Some(target.as_bytes()),
        );
        self.0.push((h, vec![]));
        self
    }
    fn hardlink(mut self, name: &str, target: &str) -> Self {
        let h = header(
            name.as_bytes(),
            EntryType::Link,
            0,
            0o644,
            Some(target.as_bytes()),
        );
        self.0.push((h, vec![]));
        self
    }
    fn bytes(self) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (h, data) in self.0 {
            b.append(&h, data.as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    }
}

fn unpack(bytes: &[u8], target: &Path, opts: &UnpackOptions) -> Result<UnpackStats, UnpackError> {
    unpack_tar(bytes, target, opts)
}

/// All names below `dir`, recursively, relative to it.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn no_temp_files(dir: &Path) {
    let t = tree(dir);
    assert!(
        !t.iter().any(|n| n.contains(".file-restore-")),
        "temp files left: {t:?}"
    );
}

/// A raw entry: header with owner ids, for the metadata tests.
fn owned(name: &str, kind: EntryType, mode: u32, data: &[u8]) -> (tar::Header, Vec<u8>) {
    let mut h = header(name.as_bytes(), kind, data.len() as u64, mode, None);
    h.set_uid(1234);
    h.set_gid(5678);
    if matches!(kind, EntryType::Char) {
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    }
    h.set_cksum();
    (h, data.to_vec())
}

fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// A tar stream whose first header is an extension header of `size` bytes
/// (data included), followed by a small file.
fn with_extension(kind: EntryType, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_path("././@Ext").unwrap();
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, data).unwrap();
    let (fh, fdata) = owned("after", EntryType::Regular, 0o644, b"after");
    b.append(&fh, fdata.as_slice()).unwrap();
    b.into_inner().unwrap()
}

/// One pax record, its length counting itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

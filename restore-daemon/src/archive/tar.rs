//! pax tar output.
//!
//! ustar headers come from the `tar` crate; where a value does not fit a
//! ustar field (long or non-ASCII names and link targets, large ids, times
//! before 1970, xattrs) a pax extended header (`x`) carries it, as POSIX.1-2001
//! specifies. GNU tar, bsdtar and Python's tarfile read the result.

use super::{ArchiveSink, Meta, Special};
use std::fs::File;
use std::io::{self, Read, Write};

const BLOCK: usize = 512;
const USTAR_MAX_ID: u64 = 0o7777777;
const USTAR_MAX_SIZE: u64 = 0o77777777777;

/// Writes a pax tar archive to `W`.
pub struct TarSink<W: Write> {
    out: W,
    pax_seq: u64,
}

impl<W: Write> TarSink<W> {
    /// A sink writing to `out`.
    pub fn new(out: W) -> Self {
        TarSink { out, pax_seq: 0 }
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    fn write_entry(
        &mut self,
        path: &[u8],
        meta: &Meta,
        kind: tar::EntryType,
        link: Option<&[u8]>,
        data: Option<&mut File>,
    ) -> io::Result<()> {
        let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut name = path.to_vec();
        if kind == tar::EntryType::Directory {
            name.push(b'/');
        }
        let ascii_fits =
            |b: &[u8], max: usize| b.len() <= max && b.iter().all(|c| c.is_ascii() && *c != 0);
        if !ascii_fits(&name, 100) {
            pax.push(("path", path.to_vec()));
        }
        if let Some(l) = link {
            if !ascii_fits(l, 100) {
                pax.push(("linkpath", l.to_vec()));
            }
        }
        if u64::from(meta.uid) > USTAR_MAX_ID {
            pax.push(("uid", meta.uid.to_string().into_bytes()));
        }
        if u64::from(meta.gid) > USTAR_MAX_ID {
            pax.push(("gid", meta.gid.to_string().into_bytes()));
        }
        if meta.mtime < 0 || meta.mtime as u64 > USTAR_MAX_SIZE {
            pax.push(("mtime", meta.mtime.to_string().into_bytes()));
        }
        let size = if data.is_some() { meta.size } else { 0 };
        if size > USTAR_MAX_SIZE {
            pax.push(("size", size.to_string().into_bytes()));
        }
        let mut xattr_keys: Vec<String> = Vec::new();
        for (k, _) in &meta.xattrs {
            xattr_keys.push(format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)));
        }
        for (i, (_, v)) in meta.xattrs.iter().enumerate() {
            pax.push((xattr_keys[i].as_str(), v.clone()));
        }
        let non_utf8 = std::str::from_utf8(path).is_err()
            || link.is_some_and(|l| std::str::from_utf8(l).is_err());
        if !pax.is_empty() {
            if non_utf8 {
                pax.insert(0, ("hdrcharset", b"BINARY".to_vec()));
            }
            self.write_pax(&pax)?;
        }

        let mut h = tar::Header::new_ustar();
        set_field(&mut h.as_ustar_mut().expect("ustar header").name, &name);
        if let Some(l) = link {
            set_field(&mut h.as_ustar_mut().expect("ustar header").linkname, l);
        }
        h.set_entry_type(kind);
        h.set_mode(meta.mode);
        h.set_uid(u64::from(meta.uid).min(USTAR_MAX_ID));
        h.set_gid(u64::from(meta.gid).min(USTAR_MAX_ID));
        h.set_mtime(meta.mtime.clamp(0, USTAR_MAX_SIZE as i64) as u64);
        h.set_size(size.min(USTAR_MAX_SIZE));
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(libc::major(meta.rdev))?;
            h.set_device_minor(libc::minor(meta.rdev))?;
        }
        h.set_cksum();
        self.out.write_all(h.as_bytes())?;
        if let Some(f) = data {
            // Copy exactly `size` bytes: a file that changed size under us
            // must not desynchronise the archive.
            let copied = io::copy(&mut f.take(size), &mut self.out)?;
            if copied < size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file shrank while reading ({copied} of {size} bytes)"),
                ));
            }
            self.pad(size)?;
        }
        Ok(())
    }

    fn write_pax(&mut self, records: &[(&str, Vec<u8>)]) -> io::Result<()> {
        let mut body = Vec::new();
        for (k, v) in records {
            body.extend_from_slice(&pax_record(k, v));
        }
        self.pax_seq += 1;
        let mut h = tar::Header::new_ustar();
        let name = format!("PaxHeaders/{}", self.pax_seq);
        set_field(
            &mut h.as_ustar_mut().expect("ustar header").name,
            name.as_bytes(),
        );
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h.set_mtime(0);
        h.set_cksum();
        self.out.write_all(h.as_bytes())?;
        self.out.write_all(&body)?;
        self.pad(body.len() as u64)
    }
}

/// One pax record: `"<len> <key>=<value>\n"`, where len counts itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn set_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field.fill(0);
    field[..n].copy_from_slice(&value[..n]);
}

impl<W: Write> ArchiveSink for TarSink<W> {
    fn dir(&mut self, path: &[u8], meta: &Meta) -> io::Result<()> {
        self.write_entry(path, meta, tar::EntryType::Directory, None, None)
    }

    fn file(&mut self, path: &[u8], meta: &Meta, data: &mut File) -> io::Result<()> {
        self.write_entry(path, meta, tar::EntryType::Regular, None, Some(data))
    }

    fn supports_hardlinks(&self) -> bool {
        true
    }

    fn hardlink(&mut self, path: &[u8], meta: &Meta, first: &[u8]) -> io::Result<()> {
        self.write_entry(path, meta, tar::EntryType::Link, Some(first), None)
    }

    fn symlink(&mut self, path: &[u8], meta: &Meta, target: &[u8]) -> io::Result<()> {
        self.write_entry(path, meta, tar::EntryType::Symlink, Some(target), None)
    }

    fn special(&mut self, path: &[u8], meta: &Meta, kind: Special) -> io::Result<()> {
        let k = match kind {
            Special::Char => tar::EntryType::Char,
            Special::Block => tar::EntryType::Block,
            Special::Fifo => tar::EntryType::Fifo,
        };
        self.write_entry(path, meta, k, None, None)
    }

    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.out.write_all(&[0u8; BLOCK * 2])?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::pax_record;

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record("path", b"abc"), b"12 path=abc\n");
        let long = vec![b'a'; 95];
        let r = pax_record("path", &long);
        let len: usize = std::str::from_utf8(&r[..r.iter().position(|&c| c == b' ').unwrap()])
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, r.len());
    }
}

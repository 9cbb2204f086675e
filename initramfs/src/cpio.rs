//! A streaming writer for the `newc` cpio format (magic `070701`), the format the Linux
//! kernel unpacks as an initramfs, and the per-VM ticket archive.
//!
//! Archives are reproducible: uid/gid and mtime are 0 and inode numbers are assigned in
//! order. The kernel unpacks concatenated archives one after the other (zero padding between
//! them is skipped), which is how the host adds `/ticket` to a copy of the base image without
//! rebuilding it: every archive written here ends on a 512-byte boundary, so the next one
//! starts 4-byte aligned as the unpacker requires.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// `newc` magic.
const MAGIC: &[u8; 6] = b"070701";
/// Size of a `newc` header without the name.
const HEADER_LEN: u64 = 110;
/// Name of the entry that ends an archive.
const TRAILER: &str = "TRAILER!!!";
/// Archives are padded to a multiple of this (the traditional cpio block size).
const BLOCK: u64 = 512;

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const PERM_MASK: u32 = 0o7777;

/// Inode number of the first entry of [`ticket_cpio`], far above anything the base archive
/// uses, so the two archives never share an inode number even if a reader cared.
const TICKET_FIRST_INODE: u32 = 0x7fff_0000;

/// Streams a `newc` cpio archive to `W`.
///
/// Entry names are stored without a leading slash. Modes passed in are permission bits
/// (anything above `0o7777` is ignored); the file type is set by the method used.
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    /// Bytes written so far (for alignment).
    offset: u64,
    /// Inode number of the next entry.
    next_inode: u32,
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive written to `w`; inode numbers start at 1.
    pub fn new(w: W) -> Self {
        Self::with_first_inode(w, 1)
    }

    /// Starts an archive whose inode numbers start at `first_inode`.
    pub fn with_first_inode(w: W, first_inode: u32) -> Self {
        CpioWriter {
            out: w,
            offset: 0,
            next_inode: first_inode.max(1),
        }
    }

    /// Adds a directory with permission bits `mode`.
    pub fn add_dir(&mut self, name: &str, mode: u32) -> io::Result<()> {
        let header = Header::new(S_IFDIR | (mode & PERM_MASK), 2, 0);
        self.write_header(name, &header)
    }

    /// Adds a regular file holding `data`.
    pub fn add_file(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let header = Header::new(S_IFREG | (mode & PERM_MASK), 1, data_len(data)?);
        self.write_header(name, &header)?;
        self.write_all(data)?;
        self.pad(4)
    }

    /// Adds a regular file whose content is streamed from `path` on disk.
    ///
    /// Errors name `path`. The file must not change size while it is copied.
    pub fn add_file_from_path(&mut self, name: &str, mode: u32, path: &Path) -> io::Result<()> {
        let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let file = File::open(path).map_err(with_path)?;
        let size = file.metadata().map_err(with_path)?.len();
        let size32 = u32::try_from(size).map_err(|_| {
            with_path(io::Error::new(
                io::ErrorKind::InvalidInput,
                "file too large for a newc cpio archive (4 GiB limit)",
            ))
        })?;
        let header = Header::new(S_IFREG | (mode & PERM_MASK), 1, size32);
        self.write_header(name, &header)?;
        let copied = io::copy(&mut file.take(size), &mut self.out).map_err(with_path)?;
        self.offset += copied;
        if copied != size {
            return Err(with_path(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file shrank while it was archived ({copied} of {size} bytes)"),
            )));
        }
        self.pad(4)
    }

    /// Adds a symbolic link `name` pointing at `target`.
    pub fn add_symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        let header = Header::new(S_IFLNK | 0o777, 1, data_len(target.as_bytes())?);
        self.write_header(name, &header)?;
        self.write_all(target.as_bytes())?;
        self.pad(4)
    }

    /// Adds a character device node `major:minor`.
    pub fn add_char_device(
        &mut self,
        name: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> io::Result<()> {
        let mut header = Header::new(S_IFCHR | (mode & PERM_MASK), 1, 0);
        header.rdev_major = major;
        header.rdev_minor = minor;
        self.write_header(name, &header)
    }

    /// Writes the `TRAILER!!!` entry, pads the archive to a multiple of 512 bytes and
    /// returns the underlying writer (flushed).
    pub fn finish(mut self) -> io::Result<W> {
        let mut header = Header::new(0, 1, 0);
        header.inode = 0;
        self.write_named_header(TRAILER, &header)?;
        self.pad(BLOCK)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Writes a header for `name`, assigning the next inode number.
    fn write_header(&mut self, name: &str, header: &Header) -> io::Result<()> {
        let name = normalize_name(name)?;
        let mut header = *header;
        header.inode = self.next_inode;
        self.next_inode = self.next_inode.checked_add(1).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many cpio entries (inode numbers exhausted)",
            )
        })?;
        self.write_named_header(name, &header)
    }

    fn write_named_header(&mut self, name: &str, h: &Header) -> io::Result<()> {
        let name_size = data_len(name.as_bytes())? + 1;
        let fields = [
            h.inode,
            h.mode,
            0,
            0,
            h.nlink,
            0,
            h.file_size,
            0,
            0,
            h.rdev_major,
            h.rdev_minor,
            name_size,
            0,
        ];
        let mut buf = Vec::with_capacity(HEADER_LEN as usize + name.len() + 4);
        buf.extend_from_slice(MAGIC);
        for field in fields {
            buf.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        buf.extend_from_slice(name.as_bytes());
        buf.push(0);
        self.write_all(&buf)?;
        self.pad(4)
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.offset += data.len() as u64;
        Ok(())
    }

    /// Writes zero bytes up to the next multiple of `align`.
    fn pad(&mut self, align: u64) -> io::Result<()> {
        let rem = self.offset % align;
        if rem != 0 {
            // At most 511 bytes of padding.
            let zeros = [0u8; BLOCK as usize];
            let n = (align - rem) as usize;
            self.write_all(&zeros[..n])?;
        }
        Ok(())
    }
}

/// The header fields that vary between entries (uid, gid, mtime, device and check are 0).
#[derive(Debug, Clone, Copy)]
struct Header {
    inode: u32,
    mode: u32,
    nlink: u32,
    file_size: u32,
    rdev_major: u32,
    rdev_minor: u32,
}

impl Header {
    fn new(mode: u32, nlink: u32, file_size: u32) -> Self {
        Header {
            inode: 0,
            mode,
            nlink,
            file_size,
            rdev_major: 0,
            rdev_minor: 0,
        }
    }
}

/// Length of `data` as a newc size field.
fn data_len(data: &[u8]) -> io::Result<u32> {
    u32::try_from(data.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "entry too large for a newc cpio archive (4 GiB limit)",
        )
    })
}

/// Strips leading slashes and rejects names the kernel could not use.
fn normalize_name(name: &str) -> io::Result<&str> {
    let stripped = name.trim_start_matches('/');
    let invalid = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cpio entry name {name:?}: {why}"),
        )
    };
    if stripped.is_empty() {
        return Err(invalid("empty name"));
    }
    if stripped.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    if stripped == TRAILER {
        return Err(invalid("reserved for the end-of-archive marker"));
    }
    Ok(stripped)
}

/// A complete `newc` archive holding the single regular file `ticket` (mode 0400) whose
/// content is `ticket`'s bytes, without a newline.
///
/// The host appends it to a copy of the base initramfs; the guest daemon reads `/ticket`.
pub fn ticket_cpio(ticket: &str) -> Vec<u8> {
    let mut writer = CpioWriter::with_first_inode(Vec::with_capacity(1024), TICKET_FIRST_INODE);
    // Writing to a Vec cannot fail, and the name and a ticket are far below the size
    // limit; a ticket over 4 GiB would be a bug in the caller.
    writer
        .add_file("ticket", 0o400, ticket.as_bytes())
        .and_then(|()| writer.finish())
        .expect("writing a small cpio archive to memory cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(archive: &[u8], entry_offset: usize, index: usize) -> u32 {
        let start = entry_offset + 6 + index * 8;
        let text = std::str::from_utf8(&archive[start..start + 8]).unwrap();
        u32::from_str_radix(text, 16).unwrap()
    }

    #[test]
    fn ticket_archive_layout() {
        let archive = ticket_cpio("abc");
        assert_eq!(archive.len() % 512, 0);
        assert_eq!(&archive[..6], MAGIC);
        assert_eq!(field(&archive, 0, 1), S_IFREG | 0o400);
        assert_eq!(field(&archive, 0, 6), 3);
        // Header (110) + "ticket\0" (7) = 117, padded to 120.
        assert_eq!(&archive[120..123], b"abc");
        // The trailer starts 4-byte aligned after the data.
        assert_eq!(&archive[124..130], MAGIC);
        assert_eq!(&archive[124 + 110..124 + 120], b"TRAILER!!!");
    }

    #[test]
    fn names_lose_leading_slash_and_inodes_are_unique() {
        let mut writer = CpioWriter::new(Vec::new());
        writer.add_dir("/etc", 0o755).unwrap();
        writer.add_file("/etc/x", 0o644, b"12345").unwrap();
        let archive = writer.finish().unwrap();
        assert_eq!(&archive[110..114], b"etc\0");
        assert_eq!(field(&archive, 0, 0), 1);
        let second = 116; // 110 + 4 = 114, padded to 116
        assert_eq!(&archive[second..second + 6], MAGIC);
        assert_eq!(field(&archive, second, 0), 2);
        assert_eq!(&archive[second + 110..second + 116], b"etc/x\0");
    }

    #[test]
    fn rejects_bad_names() {
        let mut writer = CpioWriter::new(Vec::new());
        assert!(writer.add_dir("/", 0o755).is_err());
        assert!(writer.add_file("a\0b", 0o644, b"").is_err());
        assert!(writer.add_file("TRAILER!!!", 0o644, b"").is_err());
    }
}

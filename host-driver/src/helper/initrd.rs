//! The per-VM initramfs: the shared base image plus a small cpio holding the
//! VM's ticket, in a private, unlinked, sealed memfd.
//!
//! The kernel unpacks concatenated cpio archives in order, so appending
//! `/ticket` to the base needs no rebuild. The ticket never touches a file
//! system path, argv or the environment: QEMU receives the memfd as an
//! inherited descriptor and opens it as `/dev/fd/N`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

/// Failure building the per-VM initramfs.
#[derive(Debug, thiserror::Error)]
pub enum InitrdError {
    /// The base initramfs could not be read.
    #[error("cannot read initramfs {path}: {source}")]
    ReadBase {
        /// The base initramfs.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The memfd could not be created, written or sealed.
    #[error("cannot build the per-VM initramfs in memory: {0}")]
    Memfd(#[source] io::Error),
    /// No randomness for the ticket.
    #[error("cannot read /dev/urandom for the VM ticket: {0}")]
    Random(#[source] io::Error),
}

/// A fresh ticket: 128 random bits from `/dev/urandom`, as 32 hex digits.
pub fn new_ticket() -> Result<String, InitrdError> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(InitrdError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A per-VM initramfs held in a sealed memfd.
#[derive(Debug)]
pub struct VmInitrd {
    fd: OwnedFd,
}

impl VmInitrd {
    /// The raw descriptor (to be inherited by QEMU).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The path QEMU opens: `/dev/fd/N`.
    pub fn fd_path(&self) -> String {
        format!("/dev/fd/{}", self.raw_fd())
    }
}

/// Copies `base` into a new memfd, pads it to a 4-byte boundary (where the
/// kernel expects the next cpio to start), appends the ticket cpio and seals
/// the result against any change.
///
/// The memfd is close-on-exec; the launcher clears that flag in QEMU only.
pub fn build_vm_initrd(base: &Path, ticket: &str) -> Result<VmInitrd, InitrdError> {
    let read_err = |source| InitrdError::ReadBase {
        path: base.to_path_buf(),
        source,
    };
    let mut src = File::open(base).map_err(read_err)?;
    let fd = memfd_create(
        c"file-restore-initramfs",
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(|e| InitrdError::Memfd(e.into()))?;
    let mut mem = File::from(fd);
    let copied = io::copy(&mut src, &mut mem).map_err(|e| {
        // Tell a read failure of the base from a write failure of the memfd.
        if src.metadata().is_err() {
            read_err(e)
        } else {
            InitrdError::Memfd(e)
        }
    })?;
    let pad = (4 - (copied % 4) as usize) % 4;
    let mut tail = vec![0u8; pad];
    tail.extend_from_slice(&file_restore_initramfs::ticket_cpio(ticket));
    mem.write_all(&tail).map_err(InitrdError::Memfd)?;
    let fd = OwnedFd::from(mem);
    fcntl(
        fd.as_raw_fd(),
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SEAL
                | SealFlag::F_SEAL_SHRINK
                | SealFlag::F_SEAL_GROW
                | SealFlag::F_SEAL_WRITE,
        ),
    )
    .map_err(|e| InitrdError::Memfd(e.into()))?;
    Ok(VmInitrd { fd })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_is_128_bit_hex_and_fresh() {
        let a = new_ticket().unwrap();
        let b = new_ticket().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn memfd_holds_base_padding_and_ticket() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.img");
        std::fs::write(&base, b"0707010").unwrap(); // 7 bytes: needs 1 byte of padding
        let initrd = build_vm_initrd(&base, "abc123").unwrap();
        let content = std::fs::read(initrd.fd_path()).unwrap();
        let cpio = file_restore_initramfs::ticket_cpio("abc123");
        assert_eq!(&content[..7], b"0707010");
        assert_eq!(content[7], 0);
        assert_eq!(&content[8..], &cpio[..]);
        // Sealed: no writes through a new description either.
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(initrd.fd_path())
            .and_then(|mut f| f.write_all(b"x"));
        assert!(w.is_err());
    }

    #[test]
    fn missing_base_names_the_file() {
        let err = build_vm_initrd(Path::new("/nonexistent/initramfs.img"), "t").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/initramfs.img"));
    }
}

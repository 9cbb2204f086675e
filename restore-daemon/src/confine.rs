//! Path resolution confined to a mounted filesystem.
//!
//! Every lookup inside a bucket goes through `openat2(2)` with
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`, relative to a
//! descriptor of the mount's root. The kernel then treats that root as `/`
//! for the whole walk: `..` stops there, absolute symlinks (`/ticket`,
//! `/etc/shadow`) resolve below it, `/proc/self/…`-style magic links are
//! refused, and no other mount can be reached. The guest's own root, where
//! the ticket lives, is out of reach of anything in the image.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::Path;

/// A descriptor of a mount's root that confined lookups start from.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
}

/// Whether the last component of a path is followed when it is a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Last {
    /// Open the symlink itself (lstat semantics).
    NoFollow,
    /// Follow it (still confined).
    Follow,
}

fn openat2(dirfd: i32, path: &[u8], flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    let cpath = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is a plain C struct; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    for _ in 0..8 {
        // SAFETY: valid pointers for the duration of the call; size matches the struct.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                cpath.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if ret >= 0 {
            // SAFETY: the kernel returned a new descriptor that we now own.
            return Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) });
        }
        let err = io::Error::last_os_error();
        // EAGAIN: a concurrent rename raced the walk; try again.
        if err.raw_os_error() != Some(libc::EAGAIN) {
            return Err(err);
        }
    }
    Err(io::Error::from_raw_os_error(libc::EAGAIN))
}

impl Root {
    /// Opens the root of a mounted filesystem.
    pub fn open(mountpoint: &Path) -> io::Result<Root> {
        use std::os::unix::ffi::OsStrExt;
        let fd = openat2(
            libc::AT_FDCWD,
            mountpoint.as_os_str().as_bytes(),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )?;
        Ok(Root { fd })
    }

    /// Resolves `rel` (relative to the root; empty means the root itself) and
    /// opens it with `flags` (e.g. `O_PATH`, `O_RDONLY | O_DIRECTORY`).
    pub fn open_at(&self, rel: &[u8], flags: i32, last: Last) -> io::Result<OwnedFd> {
        let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
        let mut flags = flags;
        if last == Last::NoFollow {
            flags |= libc::O_NOFOLLOW;
        }
        let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV;
        openat2(self.fd.as_raw_fd(), rel, flags, resolve)
    }
}

/// Opens `name` (one component, from readdir) below the directory `dir`
/// without following symlinks and without leaving the mount.
pub fn open_child(dir: &OwnedFd, name: &[u8], flags: i32) -> io::Result<OwnedFd> {
    if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_XDEV;
    openat2(dir.as_raw_fd(), name, flags | libc::O_NOFOLLOW, resolve)
}

/// `fstat` of an open descriptor (an `O_PATH | O_NOFOLLOW` one gives the
/// symlink's own metadata).
pub fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: zeroed stat is valid; fd is open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let ret = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
pub fn lstat_at(dir: &OwnedFd, name: &[u8]) -> io::Result<libc::stat> {
    let cname = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: zeroed stat is valid; pointers live for the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let ret = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            cname.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// Longest symlink target read whole. The kernel returns at most a page
/// less one byte: 4095 on x86_64, 65535 with 64 KiB pages.
pub const MAX_LINK_TARGET: usize = 64 * 1024;

/// Longest target `symlink(2)` creates (`PATH_MAX` less the NUL).
const SYMLINK_MAX: u64 = 4095;

/// `readlinkat(dir, name)`, the whole target; with an empty name, reads the
/// link `dir` itself refers to (an `O_PATH | O_NOFOLLOW` descriptor of a
/// symlink). `claimed` is the link's size from its `lstat`.
///
/// The buffer grows while the kernel fills it, up to [`MAX_LINK_TARGET`]
/// (longer: refused, `InvalidData`). A target shorter than `claimed` where `claimed`
/// exceeds what `symlink(2)` can create is refused (`InvalidData`): the
/// inode of a crafted or damaged filesystem says the target is longer than
/// the kernel returns, and the kernel silently cuts it at a page or block,
/// so what it returns is not the target. Shorter claims are trusted to the
/// kernel (some filesystems, UDF for one, report an encoded size).
pub fn readlink_at(dir: &OwnedFd, name: &[u8], claimed: u64) -> io::Result<Vec<u8>> {
    let cname = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let target = read_growing(|buf| {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe {
            libc::readlinkat(
                dir.as_raw_fd(),
                cname.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    })?;
    check_claimed_length(target.len(), claimed)?;
    Ok(target)
}

/// Calls `read` with a growing buffer until it returns less than the
/// buffer's length (so all of it was read), up to [`MAX_LINK_TARGET`] bytes.
fn read_growing(mut read: impl FnMut(&mut [u8]) -> io::Result<usize>) -> io::Result<Vec<u8>> {
    let mut len = 4096;
    loop {
        let mut buf = vec![0u8; len];
        let n = read(&mut buf)?;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        if len > MAX_LINK_TARGET {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the symlink target is longer than {MAX_LINK_TARGET} bytes: refused"),
            ));
        }
        len = (len * 4).min(MAX_LINK_TARGET + 1);
    }
}

fn check_claimed_length(got: usize, claimed: u64) -> io::Result<()> {
    if claimed > SYMLINK_MAX && (got as u64) < claimed {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the symlink's inode says its target is {claimed} bytes long, but the kernel \
                 returns only {got} (symlink targets are at most {SYMLINK_MAX} bytes; a damaged \
                 or crafted filesystem): refused rather than given truncated"
            ),
        ));
    }
    Ok(())
}

/// Reads all entries of an open directory (not `.` and `..`) in readdir
/// order, calling `f` for each name. Stops at the first error `f` returns.
pub fn for_each_entry<E: From<io::Error>>(
    dir: &OwnedFd,
    mut f: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    // Dup so that closing the DIR stream does not close the caller's fd.
    let dup = dir.try_clone()?;
    let mut d = nix::dir::Dir::from_fd(dup.into_raw_fd()).map_err(io::Error::from)?;
    for ent in d.iter() {
        let ent = ent.map_err(io::Error::from)?;
        let name = ent.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        f(name)?;
    }
    Ok(())
}

/// Reopens what an `O_PATH` descriptor refers to with real access `flags`
/// (the start of a walk, which was resolved with [`Root::open_at`]).
pub fn open_child_self(fd: &OwnedFd, flags: i32) -> io::Result<OwnedFd> {
    if flags & libc::O_DIRECTORY != 0 {
        let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_XDEV;
        return openat2(fd.as_raw_fd(), b".", flags, resolve);
    }
    // A non-directory cannot be reopened through "."; its /proc/self/fd
    // link points at the very inode we resolved (our own descriptor, so the
    // magic link is safe to follow here).
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    openat2(libc::AT_FDCWD, proc_path.as_bytes(), flags, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A readlink that has `target` to give, as the kernel's does.
    fn reader(target: &[u8]) -> impl FnMut(&mut [u8]) -> io::Result<usize> + '_ {
        |buf| {
            let n = target.len().min(buf.len());
            buf[..n].copy_from_slice(&target[..n]);
            Ok(n)
        }
    }

    #[test]
    fn targets_are_read_whole_up_to_the_bound() {
        for len in [0, 1, 4095, 4096, 4097, 20_000, MAX_LINK_TARGET] {
            let target = vec![b'a'; len];
            assert_eq!(read_growing(reader(&target)).unwrap(), target, "{len}");
        }
        let too_long = vec![b'a'; MAX_LINK_TARGET + 1];
        let e = read_growing(reader(&too_long)).unwrap_err();
        assert!(e.to_string().contains("longer than 65536 bytes"), "{e}");
    }

    #[test]
    fn a_target_the_kernel_cut_short_is_refused() {
        assert!(check_claimed_length(4095, 4095).is_ok());
        assert!(check_claimed_length(5000, 5000).is_ok());
        // UDF reports the encoded size, larger than the target text.
        assert!(check_claimed_length(3, 10).is_ok());
        let e = check_claimed_length(4095, 5000).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(
            e.to_string().contains("5000") && e.to_string().contains("4095"),
            "{e}"
        );
    }

    #[test]
    fn real_links_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let long = "t".repeat(4095);
        std::os::unix::fs::symlink(&long, dir.path().join("long")).unwrap();
        let fd: OwnedFd = std::fs::File::open(dir.path()).unwrap().into();
        assert_eq!(readlink_at(&fd, b"long", 4095).unwrap(), long.as_bytes());
    }
}

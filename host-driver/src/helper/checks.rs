//! The helper's steps that touch the system: who invoked it, inherited
//! descriptors, `/dev/vhost-vsock`, dropping privileges for good, and the
//! checks done afterwards as the invoking user (run directory, disks).

use std::fs::{File, OpenOptions};
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::stat::{fstat, SFlag};
use nix::unistd::{getresgid, getresuid, setresgid, setresuid, Gid, Uid};

use super::{DiskRequest, DiskSource, HelperError, HelperRequest, VHOST_VSOCK_DEVICE};

/// The user the helper acts for: its real ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvokingUser {
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// True when the process has more rights than that user: effective or
    /// saved ids differ from the real ones (setuid/setgid), or the kernel
    /// flagged the exec as secure (`AT_SECURE`: also file capabilities).
    pub privileged: bool,
}

/// Reads the process's ids.
pub fn invoking_user() -> Result<InvokingUser, HelperError> {
    let fail = |detail: String| HelperError::Privileges {
        uid: u32::MAX,
        gid: u32::MAX,
        detail,
    };
    let u = getresuid().map_err(|e| fail(format!("getresuid: {e}")))?;
    let g = getresgid().map_err(|e| fail(format!("getresgid: {e}")))?;
    // SAFETY: getauxval has no preconditions; 0 means "not set".
    let secure = unsafe { libc::getauxval(libc::AT_SECURE) } != 0;
    Ok(InvokingUser {
        uid: u.real.as_raw(),
        gid: g.real.as_raw(),
        privileged: u.real != u.effective
            || u.real != u.saved
            || g.real != g.effective
            || g.real != g.saved
            || secure,
    })
}

/// Checks a disk descriptor the caller passed: open, readable, a regular
/// file or block device. Run before the helper opens anything itself, so a
/// request cannot name one of the helper's own descriptors.
pub fn check_inherited_fd(fd: RawFd) -> Result<(), HelperError> {
    let refuse = |reason: String| HelperError::Image {
        image: format!("/dev/fd/{fd}"),
        reason,
    };
    let flags = fcntl(fd, FcntlArg::F_GETFL)
        .map_err(|e| refuse(format!("is not an open descriptor of the caller: {e}")))?;
    if OFlag::from_bits_truncate(flags) & OFlag::O_ACCMODE == OFlag::O_WRONLY {
        return Err(refuse("is open for writing only".into()));
    }
    let st = fstat(fd).map_err(|e| refuse(format!("cannot be examined: {e}")))?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if kind != SFlag::S_IFREG && kind != SFlag::S_IFBLK {
        return Err(refuse(
            "is neither a regular file nor a block device".into(),
        ));
    }
    Ok(())
}

/// Opens `/dev/vhost-vsock` (read-write, close-on-exec; the caller clears
/// the flag for QEMU). Done while privileged: the only thing that is.
pub fn open_vhost_vsock() -> Result<OwnedFd, HelperError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(VHOST_VSOCK_DEVICE)
        .map(OwnedFd::from)
        .map_err(HelperError::VhostVsock)
}

/// Drops to the invoking user's real uid and gid for good:
/// `setresgid(g,g,g)`, `setresuid(u,u,u)`, then verifies that all ids are
/// the user's and (unless the user is root) that `setuid(0)`, `seteuid(0)`
/// and `setgid(0)` fail, and sets `no_new_privs` so nothing exec'd later
/// can gain privileges.
///
/// Supplementary groups are kept as inherited: a setuid exec does not change
/// them, so they are the invoking user's own (e.g. `kvm` for `/dev/kvm`).
pub fn drop_privileges(user: &InvokingUser) -> Result<(), HelperError> {
    let (u, g) = (Uid::from_raw(user.uid), Gid::from_raw(user.gid));
    let fail = |detail: String| HelperError::Privileges {
        uid: user.uid,
        gid: user.gid,
        detail,
    };
    setresgid(g, g, g).map_err(|e| fail(format!("setresgid: {e}")))?;
    setresuid(u, u, u).map_err(|e| fail(format!("setresuid: {e}")))?;
    let ru = getresuid().map_err(|e| fail(format!("getresuid: {e}")))?;
    let rg = getresgid().map_err(|e| fail(format!("getresgid: {e}")))?;
    if [ru.real, ru.effective, ru.saved] != [u, u, u]
        || [rg.real, rg.effective, rg.saved] != [g, g, g]
    {
        return Err(fail(format!("ids after the drop are {ru:?} {rg:?}")));
    }
    if user.uid != 0 {
        let root = Uid::from_raw(0);
        if nix::unistd::setuid(root).is_ok() || nix::unistd::seteuid(root).is_ok() {
            return Err(fail("root could be regained after the drop".into()));
        }
        if user.gid != 0 && nix::unistd::setgid(Gid::from_raw(0)).is_ok() {
            return Err(fail("group root could be regained after the drop".into()));
        }
    }
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes plain integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(fail(format!(
            "PR_SET_NO_NEW_PRIVS: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Checks, as the invoking user, that the run directory is a real directory
/// (not a symlink) owned by `uid` and not writable by group or others.
pub fn check_run_dir(req: &HelperRequest, uid: u32) -> Result<(), HelperError> {
    let refuse = |reason: String| HelperError::RunDir {
        path: req.run_dir.clone(),
        reason,
    };
    let m = std::fs::symlink_metadata(&req.run_dir)
        .map_err(|e| refuse(format!("cannot be examined by uid {uid}: {e}")))?;
    if !m.is_dir() {
        return Err(refuse("is not a directory (symlinks are refused)".into()));
    }
    if m.uid() != uid {
        return Err(refuse(format!(
            "belongs to uid {}, not to the invoking user (uid {uid})",
            m.uid()
        )));
    }
    if m.permissions().mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "is writable by group or others (mode {:o}); it must be private",
            m.permissions().mode() & 0o7777
        )));
    }
    Ok(())
}

/// Checks, as the invoking user (after [`drop_privileges`]), that a disk
/// can be read: a path must be a regular file or block device that opens
/// read-only. Descriptors were checked by [`check_inherited_fd`]; NBD URIs
/// are connected to by QEMU, as the same user.
pub fn check_disk(disk: &DiskRequest, uid: u32) -> Result<(), HelperError> {
    let DiskSource::Path(path) = &disk.source else {
        return Ok(());
    };
    let refuse = |reason: String| HelperError::Image {
        image: path.display().to_string(),
        reason,
    };
    let m = std::fs::metadata(path).map_err(|e| {
        refuse(format!(
            "cannot be examined by uid {uid} (the invoking user): {e}"
        ))
    })?;
    let ft = m.file_type();
    if !ft.is_file() && !ft.is_block_device() {
        return Err(refuse(
            "is neither a regular file nor a block device".into(),
        ));
    }
    let _probe: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            refuse(format!(
                "cannot be read by uid {uid} (the invoking user): {e}; give that user read \
                 access or choose another image"
            ))
        })?;
    Ok(())
}

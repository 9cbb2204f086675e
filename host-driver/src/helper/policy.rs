//! Which kernel, initramfs and QEMU binary the helper accepts, and where the
//! CLI finds the helper.

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{HelperError, HelperRequest, HELPER_ENV, HELPER_NAME, QEMU_PATHS};

/// File names a kernel may have when the helper is privileged.
const KERNEL_NAMES: &[&str] = &[
    file_restore_initramfs::VMLINUX_FILE,
    file_restore_initramfs::VMLINUZ_FILE,
];
/// File names an initramfs may have when the helper is privileged.
const INITRAMFS_NAMES: &[&str] = &[file_restore_initramfs::INITRAMFS_FILE];

/// Which kernel, initramfs and QEMU binary the helper accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootPolicy {
    /// True when the helper has more rights than its caller (setuid,
    /// setgid or file capabilities: `AT_SECURE`); then only installed boot
    /// files and [`QEMU_PATHS`] are accepted.
    pub privileged: bool,
    /// Directories whose root-owned kernel and initramfs are accepted when
    /// privileged: the install directories and the helper's own directory.
    pub trusted_dirs: Vec<PathBuf>,
}

impl BootPolicy {
    /// The policy of a helper installed at `helper_exe`.
    pub fn new(privileged: bool, helper_exe: Option<&Path>) -> BootPolicy {
        let mut trusted_dirs: Vec<PathBuf> = Vec::new();
        // Each directory as named and as resolved (both root-controlled), so
        // that a caller passing resolved paths matches.
        let installed = crate::util::install::INSTALL_DIRS.iter().map(Path::new);
        for dir in installed.chain(helper_exe.and_then(Path::parent)) {
            for d in [Some(dir.to_path_buf()), std::fs::canonicalize(dir).ok()]
                .into_iter()
                .flatten()
            {
                if !trusted_dirs.contains(&d) {
                    trusted_dirs.push(d);
                }
            }
        }
        BootPolicy {
            privileged,
            trusted_dirs,
        }
    }

    /// Checks the request's kernel and initramfs.
    pub fn check_boot_files(&self, req: &HelperRequest) -> Result<(), HelperError> {
        self.check_boot_file("kernel", &req.kernel, KERNEL_NAMES)?;
        self.check_boot_file("initramfs", &req.initramfs, INITRAMFS_NAMES)?;
        match &req.tools {
            Some(t) => {
                self.check_boot_file("tools image", t, &[file_restore_initramfs::TOOLS_FILE])
            }
            None => Ok(()),
        }
    }

    fn check_boot_file(
        &self,
        what: &'static str,
        path: &Path,
        names: &[&str],
    ) -> Result<(), HelperError> {
        if !self.privileged {
            return Ok(());
        }
        let allowed: Vec<String> = self
            .trusted_dirs
            .iter()
            .flat_map(|d| names.iter().map(move |n| d.join(n).display().to_string()))
            .collect();
        let refuse = |reason: String| HelperError::BootFile {
            what,
            path: path.to_path_buf(),
            reason: format!(
                "{reason}; file-restore-helper runs with more rights than you (setuid) and only \
                 boots installed, root-owned files: {} (`make install` puts them there)",
                allowed.join(", ")
            ),
        };
        let name_ok = path
            .file_name()
            .and_then(OsStr::to_str)
            .is_some_and(|n| names.contains(&n));
        let dir_ok = path
            .parent()
            .is_some_and(|p| self.trusted_dirs.iter().any(|d| d == p));
        if !name_ok || !dir_ok {
            return Err(refuse("not an installed boot file".into()));
        }
        // Both the file and its directory must be root's alone, so that
        // nobody else can swap what is checked here.
        for (p, want_dir) in [(path.parent().unwrap_or(path), true), (path, false)] {
            let m = std::fs::symlink_metadata(p)
                .map_err(|e| refuse(format!("cannot examine {}: {e}", p.display())))?;
            let kind_ok = if want_dir { m.is_dir() } else { m.is_file() };
            if !kind_ok || m.uid() != 0 || m.permissions().mode() & 0o022 != 0 {
                return Err(refuse(format!(
                    "{} is not a root-owned {} writable only by root",
                    p.display(),
                    if want_dir { "directory" } else { "file" }
                )));
            }
        }
        Ok(())
    }

    /// The QEMU binary to exec: the requested one (privileged: only one of
    /// [`QEMU_PATHS`]), else the first of [`QEMU_PATHS`] that exists.
    pub fn qemu_binary(&self, req: &HelperRequest) -> Result<PathBuf, HelperError> {
        let allowed = || QEMU_PATHS.iter().map(Path::new);
        let Some(asked) = &req.qemu else {
            return allowed()
                .find(|p| p.is_file())
                .map(Path::to_path_buf)
                .ok_or_else(|| HelperError::BootFile {
                    what: "QEMU binary",
                    path: PathBuf::from(QEMU_PATHS[0]),
                    reason: format!(
                        "none of {} exists; install qemu-system-x86",
                        QEMU_PATHS.join(", ")
                    ),
                });
        };
        if !self.privileged {
            return Ok(asked.clone());
        }
        // Compare with the allowed paths and what they resolve to (both
        // root-controlled); the asked path itself is never resolved here.
        let matching = allowed()
            .find(|p| *p == asked.as_path() || std::fs::canonicalize(p).is_ok_and(|c| c == *asked));
        match matching {
            Some(p) => Ok(p.to_path_buf()),
            None => Err(HelperError::BootFile {
                what: "QEMU binary",
                path: asked.clone(),
                reason: format!(
                    "file-restore-helper runs with more rights than you (setuid) and only \
                     execs {}",
                    QEMU_PATHS.join(" or ")
                ),
            }),
        }
    }
}

/// Where the CLI finds the helper: `$FILE_RESTORE_HELPER`, else beside the
/// running executable (or one level up, for test binaries in
/// `target/*/deps`), else the install directories, else `$PATH`. The error
/// lists the places looked at.
pub fn locate_helper() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(HELPER_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join(HELPER_NAME));
            if dir.file_name() == Some(OsStr::new("deps")) {
                if let Some(up) = dir.parent() {
                    candidates.push(up.join(HELPER_NAME));
                }
            }
        }
    }
    candidates.extend(
        crate::util::install::install_dirs()
            .into_iter()
            .map(|d| d.join(HELPER_NAME)),
    );
    if let Some(found) = candidates
        .iter()
        .find(|p| crate::util::process::is_executable(p))
    {
        return Ok(found.clone());
    }
    if let Some(found) = crate::util::process::find_program(Path::new(HELPER_NAME)) {
        return Ok(found);
    }
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(format!(
        "{HELPER_NAME} not found (looked at ${HELPER_ENV}, {} and $PATH); build it with \
         `cargo build -p file-restore` or install it with `make install`",
        looked.join(", ")
    ))
}

/// True when `helper` is a setuid-root executable on a file system that
/// honours setuid: it can open `/dev/vhost-vsock` for a user who cannot.
pub fn helper_is_setuid_root(helper: &Path) -> bool {
    let setuid_root = std::fs::metadata(helper)
        .is_ok_and(|m| m.is_file() && m.uid() == 0 && m.permissions().mode() & 0o4000 != 0);
    setuid_root
        && nix::sys::statvfs::statvfs(helper)
            .is_ok_and(|s| !s.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID))
}

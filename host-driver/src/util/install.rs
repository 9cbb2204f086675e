//! Where an installed file-restore keeps what is not on `$PATH`: the
//! helper, the guest kernel and initramfs, and the vhost-user vsock backend.
//!
//! `make install` puts them in `$(PREFIX)/lib/file-restore` (PREFIX
//! `/usr/local` by default), the Debian package in `/usr/lib/file-restore`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The fixed install directories: `make install`'s default and the Debian
/// package's. A setuid helper trusts root-owned boot files only here (and
/// in its own directory).
pub const INSTALL_DIRS: &[&str] = &["/usr/local/lib/file-restore", "/usr/lib/file-restore"];

/// The install directories to look in, in order: `<prefix>/lib/file-restore`
/// when the running executable is `<prefix>/bin/…` (so `/usr/bin/file-restore`
/// uses `/usr/lib/file-restore` even when an older `/usr/local` install
/// exists), then [`INSTALL_DIRS`].
pub fn install_dirs() -> Vec<PathBuf> {
    let exe = std::env::current_exe().ok();
    dirs_for(exe.as_deref())
}

fn dirs_for(exe: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(bin) = exe.and_then(Path::parent) {
        if bin.file_name() == Some(OsStr::new("bin")) {
            if let Some(prefix) = bin.parent() {
                dirs.push(prefix.join("lib/file-restore"));
            }
        }
    }
    for d in INSTALL_DIRS.iter().map(PathBuf::from) {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs
}

/// An executable named `name` in one of the [`install_dirs`].
pub fn find_installed(name: &str) -> Option<PathBuf> {
    install_dirs()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| crate::util::process::is_executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_of_the_executable_comes_first() {
        assert_eq!(
            dirs_for(Some(Path::new("/usr/bin/file-restore"))),
            [
                PathBuf::from("/usr/lib/file-restore"),
                PathBuf::from("/usr/local/lib/file-restore")
            ]
        );
        assert_eq!(
            dirs_for(Some(Path::new("/opt/fr/bin/file-restore"))),
            [
                PathBuf::from("/opt/fr/lib/file-restore"),
                PathBuf::from("/usr/local/lib/file-restore"),
                PathBuf::from("/usr/lib/file-restore")
            ]
        );
        // A build tree is no prefix.
        assert_eq!(
            dirs_for(Some(Path::new("/src/target/release/file-restore"))),
            INSTALL_DIRS.iter().map(PathBuf::from).collect::<Vec<_>>()
        );
        assert_eq!(dirs_for(None).len(), INSTALL_DIRS.len());
    }
}

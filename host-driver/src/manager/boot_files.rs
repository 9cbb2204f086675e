//! Where the restore VM's kernel and base initramfs are: the options, the
//! environment, the install directories, the build output.

use std::path::{Path, PathBuf};

use super::ManagerError;

/// Kernel and base initramfs of the restore VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    /// `vmlinux` (PVH) or a bzImage.
    pub kernel: PathBuf,
    /// The base initramfs.
    pub initramfs: PathBuf,
}

/// Finds the boot files: explicit paths, then `FILE_RESTORE_KERNEL` /
/// `FILE_RESTORE_INITRAMFS`, then the install directories
/// ([`crate::util::install::install_dirs`]), then the build output of the
/// repository the running binary was built in.
pub fn locate_boot_files(
    kernel: Option<PathBuf>,
    initramfs: Option<PathBuf>,
) -> Result<BootFiles, ManagerError> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut candidates: Vec<PathBuf> = crate::util::install::install_dirs();
    if let Ok(exe) = std::env::current_exe() {
        // target/{release,debug}/file-restore -> <repo>/build
        if let Some(repo) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
            candidates.push(repo.join("build"));
        }
    }
    // The source tree this binary was compiled from, for a target directory
    // outside it (CARGO_TARGET_DIR).
    if let Some(repo) = Path::new(env!("CARGO_MANIFEST_DIR")).parent() {
        let build = repo.join("build");
        if !candidates.contains(&build) {
            candidates.push(build);
        }
    }
    let from_dirs = |which: &str| -> Option<PathBuf> {
        let names: &[&str] = if which == "kernel" {
            &[
                file_restore_initramfs::VMLINUX_FILE,
                file_restore_initramfs::VMLINUZ_FILE,
            ]
        } else {
            &[file_restore_initramfs::INITRAMFS_FILE]
        };
        candidates
            .iter()
            .flat_map(|d| names.iter().map(move |n| d.join(n)))
            .find(|p| p.is_file())
    };
    let kernel = kernel
        .or_else(|| env("FILE_RESTORE_KERNEL"))
        .or_else(|| from_dirs("kernel"));
    let initramfs = initramfs
        .or_else(|| env("FILE_RESTORE_INITRAMFS"))
        .or_else(|| from_dirs("initramfs"));
    let looked = candidates
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let hint = format!(
        "looked in --kernel/--initramfs, FILE_RESTORE_KERNEL/FILE_RESTORE_INITRAMFS and {looked}; \
         build them with `make build` (or install with `make install`)"
    );
    match (kernel, initramfs) {
        (Some(k), Some(i)) => {
            for p in [&k, &i] {
                if !p.is_file() {
                    return Err(ManagerError::BootFiles(format!(
                        "{} does not exist; {hint}",
                        p.display()
                    )));
                }
            }
            Ok(BootFiles {
                kernel: k,
                initramfs: i,
            })
        }
        (None, _) => Err(ManagerError::BootFiles(format!(
            "no restore VM kernel found; {hint}"
        ))),
        (_, None) => Err(ManagerError::BootFiles(format!(
            "no restore VM initramfs found; {hint}"
        ))),
    }
}

//! Choosing the guest kernel: the newest `/boot/vmlinuz-<version>` that has its modules in
//! `/lib/modules/<version>`, or the one given explicitly.

use std::cmp::Ordering;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::vmlinux::bzimage_release;

/// Where kernels are looked for by default.
pub const DEFAULT_BOOT_DIR: &str = "/boot";
/// Where module trees are looked for by default.
pub const DEFAULT_MODULES_ROOT: &str = "/lib/modules";

/// A kernel image with its release and module tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelChoice {
    /// The kernel image (bzImage, or an ELF vmlinux).
    pub image: PathBuf,
    /// The kernel release, e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// The module tree, normally `/lib/modules/<release>`.
    pub modules_dir: PathBuf,
}

/// Finds the newest `vmlinuz-<version>` in `boot_dir` (by version order) whose module
/// tree `modules_root/<version>` exists.
pub fn find_default_kernel(boot_dir: &Path, modules_root: &Path) -> Result<KernelChoice> {
    let no_kernel = || Error::NoKernel {
        boot_dir: boot_dir.to_path_buf(),
        modules_root: modules_root.to_path_buf(),
    };
    let entries = match fs::read_dir(boot_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_kernel()),
        Err(e) => return Err(Error::io(boot_dir, e)),
    };
    let mut best: Option<KernelChoice> = None;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(boot_dir, e))?;
        let file_name = entry.file_name();
        let Some(release) = file_name.to_str().and_then(|n| n.strip_prefix("vmlinuz-")) else {
            continue;
        };
        let modules_dir = modules_root.join(release);
        if release.is_empty() || !modules_dir.join("modules.dep").is_file() {
            continue;
        }
        let newer = best.as_ref().map_or(true, |b| {
            compare_versions(release, &b.release) == Ordering::Greater
        });
        if newer {
            best = Some(KernelChoice {
                image: entry.path(),
                release: release.to_string(),
                modules_dir,
            });
        }
    }
    best.ok_or_else(no_kernel)
}

/// Works out the release and module tree of an explicitly given kernel image whose
/// content is `image`: from a `vmlinuz-<version>` file name, else the bzImage's version
/// string, else the name of `modules_dir`.
pub fn describe_kernel(
    path: &Path,
    image: &[u8],
    modules_dir: Option<&Path>,
) -> Result<KernelChoice> {
    let from_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| {
            n.strip_prefix("vmlinuz-")
                .or_else(|| n.strip_prefix("vmlinux-"))
        })
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    let from_dir = || {
        modules_dir
            .and_then(|d| d.file_name())
            .and_then(|n| n.to_str())
            .map(str::to_string)
    };
    let release = from_name
        .or_else(|| bzimage_release(image))
        .or_else(from_dir)
        .ok_or_else(|| Error::UnknownRelease {
            kernel: path.to_path_buf(),
        })?;
    let modules_dir = modules_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(DEFAULT_MODULES_ROOT).join(&release));
    Ok(KernelChoice {
        image: path.to_path_buf(),
        release,
        modules_dir,
    })
}

/// Compares kernel versions the way `sort -V` roughly does: runs of digits compare as
/// numbers, everything else as text (`6.1.0-56` is newer than `6.1.0-9`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.is_empty(), b.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let (chunk_a, rest_a) = split_chunk(a);
        let (chunk_b, rest_b) = split_chunk(b);
        let digits_a = chunk_a.starts_with(|c: char| c.is_ascii_digit());
        let digits_b = chunk_b.starts_with(|c: char| c.is_ascii_digit());
        let order = match (digits_a, digits_b) {
            (true, true) => {
                let (ta, tb) = (
                    chunk_a.trim_start_matches('0'),
                    chunk_b.trim_start_matches('0'),
                );
                ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
            }
            // A number sorts after text at the same place (`6.1.10` > `6.1.rc`).
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => chunk_a.cmp(chunk_b),
        };
        if order != Ordering::Equal {
            return order;
        }
        (a, b) = (rest_a, rest_b);
    }
}

/// Splits off the leading run of digits or of non-digits.
fn split_chunk(s: &str) -> (&str, &str) {
    let digits = s.starts_with(|c: char| c.is_ascii_digit());
    let end = s
        .find(|c: char| c.is_ascii_digit() != digits)
        .unwrap_or(s.len());
    s.split_at(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order() {
        assert_eq!(
            compare_versions("6.1.0-56-amd64", "6.1.0-9-amd64"),
            Ordering::Greater
        );
        assert_eq!(
            compare_versions("6.10.0-1-amd64", "6.9.12-amd64"),
            Ordering::Greater
        );
        assert_eq!(
            compare_versions("6.1.0-56-amd64", "6.1.0-56-amd64"),
            Ordering::Equal
        );
        assert_eq!(
            compare_versions("5.10.0-30-amd64", "6.1.0-1-amd64"),
            Ordering::Less
        );
        assert_eq!(compare_versions("6.1", "6.1.0"), Ordering::Less);
    }

    #[test]
    fn picks_newest_kernel_with_modules() {
        let tmp = tempfile::tempdir().unwrap();
        let boot = tmp.path().join("boot");
        let modules = tmp.path().join("modules");
        fs::create_dir_all(&boot).unwrap();
        for release in ["6.1.0-9-amd64", "6.1.0-56-amd64", "6.1.0-60-amd64"] {
            fs::write(boot.join(format!("vmlinuz-{release}")), b"x").unwrap();
        }
        fs::write(boot.join("vmlinuz.old"), b"x").unwrap();
        // 6.1.0-60 has no modules: it is skipped.
        for release in ["6.1.0-9-amd64", "6.1.0-56-amd64"] {
            fs::create_dir_all(modules.join(release)).unwrap();
            fs::write(modules.join(release).join("modules.dep"), b"").unwrap();
        }
        let choice = find_default_kernel(&boot, &modules).unwrap();
        assert_eq!(choice.release, "6.1.0-56-amd64");
        assert_eq!(choice.image, boot.join("vmlinuz-6.1.0-56-amd64"));
        assert_eq!(choice.modules_dir, modules.join("6.1.0-56-amd64"));

        let err = find_default_kernel(&tmp.path().join("none"), &modules).unwrap_err();
        assert!(
            err.to_string()
                .contains("apt-get install linux-image-amd64"),
            "{err}"
        );
    }

    #[test]
    fn explicit_kernel_release() {
        let choice = describe_kernel(Path::new("/x/vmlinuz-6.1.0-56-amd64"), b"", None).unwrap();
        assert_eq!(choice.release, "6.1.0-56-amd64");
        assert_eq!(choice.modules_dir, Path::new("/lib/modules/6.1.0-56-amd64"));
        let choice =
            describe_kernel(Path::new("/x/bzImage"), b"", Some(Path::new("/m/6.2.0"))).unwrap();
        assert_eq!(choice.release, "6.2.0");
        assert!(describe_kernel(Path::new("/x/bzImage"), b"", None).is_err());
    }
}

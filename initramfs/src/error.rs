//! The library's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while building the initramfs or extracting `vmlinux`.
///
/// Every variant that concerns a file names it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// No kernel image was found where the default kernel is looked for.
    #[error(
        "no kernel found in {} (looked for vmlinuz-* with a matching {}/<version>): \
         install one with `apt-get install linux-image-amd64` or pass --kernel",
        boot_dir.display(),
        modules_root.display()
    )]
    NoKernel {
        /// Where kernel images were looked for (normally `/boot`).
        boot_dir: PathBuf,
        /// Where module trees were looked for (normally `/lib/modules`).
        modules_root: PathBuf,
    },

    /// The kernel release could not be worked out for a kernel given explicitly.
    #[error(
        "{}: cannot tell the kernel release (the file is not named vmlinuz-<version> and \
         its bzImage header has no version string): pass --modules-dir",
        kernel.display()
    )]
    UnknownRelease {
        /// The kernel image.
        kernel: PathBuf,
    },

    /// The module directory of the chosen kernel does not exist.
    #[error(
        "{}: no module directory for kernel release {release}: install the matching \
         linux-image package or pass --modules-dir",
        path.display()
    )]
    NoModulesDir {
        /// The kernel release.
        release: String,
        /// The directory that was expected.
        path: PathBuf,
    },

    /// A line of `modules.dep` (or a sibling index) could not be understood.
    #[error("{}:{line}: {message}", path.display())]
    ModuleIndex {
        /// The index file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What was wrong.
        message: String,
    },

    /// No compressed kernel payload was found in a bzImage.
    #[error("no xz, zstd or gzip compressed kernel found in the bzImage ({size} bytes)")]
    NoPayload {
        /// Size of the image that was searched.
        size: usize,
    },

    /// A payload decompressed, but not to an ELF file.
    #[error(
        "the {format} payload at offset {offset} does not decompress to an ELF file: {reason}"
    )]
    BadPayload {
        /// The compression format (`xz`, `zstd`, `gzip`).
        format: &'static str,
        /// Offset of the payload in the bzImage.
        offset: usize,
        /// What went wrong.
        reason: String,
    },

    /// The daemon binary cannot be used as `/init`.
    #[error("{}: {reason}", path.display())]
    BadDaemon {
        /// The daemon binary.
        path: PathBuf,
        /// Why it is unusable.
        reason: String,
    },

    /// Serialising the configuration or `boot.json` failed.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

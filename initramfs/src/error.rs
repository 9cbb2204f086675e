//! The library's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while building the boot files.
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

    /// The kernel given is not an image QEMU can boot.
    #[error("{}: not a bootable kernel: {reason}", path.display())]
    NotAKernel {
        /// The file given as the kernel.
        path: PathBuf,
        /// What it is instead.
        reason: &'static str,
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

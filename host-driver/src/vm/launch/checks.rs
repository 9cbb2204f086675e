//! The input checks of a start, before anything is spawned: the kernel is
//! a bootable kernel, the initramfs opens, every image has an allowed
//! format, a UTF-8 path and exists.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use super::attempt::disk_source;
use super::{LaunchError, LaunchOptions};
use crate::helper::initrd::InitrdError;
use crate::helper::{DiskSource, ALLOWED_FORMATS};

pub(super) fn check_inputs(opts: &LaunchOptions) -> Result<(), LaunchError> {
    let kernel_error = |source| LaunchError::Kernel {
        path: opts.kernel.clone(),
        source,
    };
    match std::fs::metadata(&opts.kernel) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(kernel_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            )))
        }
        Err(source) => return Err(kernel_error(source)),
    }
    // QEMU would print something obscure (or boot nothing) for a file that is not a
    // kernel; say what it is instead.
    match file_restore_initramfs::check_kernel(&opts.kernel) {
        Ok(_) => {}
        Err(file_restore_initramfs::Error::NotAKernel { reason, .. }) => {
            return Err(kernel_error(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a bootable kernel: {reason}"),
            )))
        }
        Err(e) => return Err(kernel_error(io::Error::other(e.to_string()))),
    }
    File::open(&opts.initramfs).map_err(|source| InitrdError::ReadBase {
        path: opts.initramfs.clone(),
        source,
    })?;
    if opts.images.is_empty() {
        return Err(LaunchError::Image {
            path: PathBuf::new(),
            reason: "no disk images given".into(),
        });
    }
    for image in &opts.images {
        let bad = |reason: String| LaunchError::Image {
            path: image.path.clone(),
            reason,
        };
        if !ALLOWED_FORMATS.contains(&image.format.as_str()) {
            return Err(bad(format!(
                "invalid format name {:?}; file-restore-helper accepts {}",
                image.format,
                ALLOWED_FORMATS.join(", ")
            )));
        }
        if image.path.to_str().is_none() {
            return Err(bad(
                "the path is not valid UTF-8, which the helper request cannot carry; rename it"
                    .into(),
            ));
        }
        if let DiskSource::Path(path) = disk_source(&image.path) {
            std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        }
    }
    Ok(())
}

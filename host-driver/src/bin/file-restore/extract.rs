//! `extract`: a file to TARGET or stdout, a directory unpacked into TARGET,
//! or an archive of either.

use crate::output::{driver_error, info};
use anyhow::bail;
use anyhow::Context;
use file_restore::cli::ArchiveFormat;
use file_restore::driver::BlockRestoreDriver;
use file_restore_wire::{Entry, EntryType, ExtractFormat};
use std::io::IsTerminal;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Normalizes a user path: no empty or `.` components, leading `/`.
fn normalize(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
    {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// Whether PATH names a directory-like thing (virtual level, bucket root or
/// directory) rather than a single file.
async fn is_directory(
    driver: &impl BlockRestoreDriver,
    source: &str,
    path: &[u8],
) -> anyhow::Result<Option<Entry>> {
    let norm = normalize(path);
    let depth = norm.split(|&b| b == b'/').filter(|c| !c.is_empty()).count();
    if depth <= 3 {
        return Ok(None);
    }
    let listing = driver
        .list(source, &norm)
        .await
        .map_err(|e| driver_error(e, &norm))?;
    // A non-directory lists as itself: one entry whose path is PATH.
    match listing.as_slice() {
        [single]
            if single.path_bytes().ok().as_deref() == Some(norm.as_slice())
                && single.entry_type != EntryType::Directory =>
        {
            Ok(Some(single.clone()))
        }
        _ => Ok(None),
    }
}

/// The flags of `extract`.
pub struct ExtractOpts {
    /// `--format`.
    pub format: Option<ArchiveFormat>,
    /// `--zstd`.
    pub zstd: bool,
    /// `--overwrite`.
    pub overwrite: bool,
    /// `--same-owner`.
    pub same_owner: bool,
}

/// Extracts PATH of SOURCE's disks as `opts` say (the VM is started or
/// reused by the driver on its first call).
pub async fn extract(
    driver: &impl BlockRestoreDriver,
    source: &str,
    path: &[u8],
    target: Option<&Path>,
    opts: &ExtractOpts,
) -> anyhow::Result<()> {
    let ExtractOpts {
        format,
        zstd,
        overwrite,
        same_owner,
    } = *opts;
    let norm = normalize(path);
    let shown = String::from_utf8_lossy(&norm).into_owned();
    let target = target.filter(|t| t.as_os_str() != "-");
    let file = is_directory(driver, source, &norm).await?;
    let base = norm.rsplit(|&b| b == b'/').next().unwrap_or(b"").to_vec();
    match (format, &file) {
        (None, None) => {
            if zstd {
                bail!("--zstd needs --format zip|tar when extracting a directory");
            }
            let Some(target) = target else {
                bail!("{shown} is a directory: give a TARGET directory to unpack into, or --format zip|tar to write an archive to stdout");
            };
            let stream = driver
                .extract(source, &norm, ExtractFormat::Tar, false, None)
                .await
                .map_err(|e| driver_error(e, &norm))?;
            let unpack_opts = file_restore::sink::extract_unpack_options(overwrite, same_owner);
            let stats = file_restore::sink::unpack_stream(stream, target, unpack_opts).await?;
            info(&format!(
                "unpacked {shown} into {} ({stats})",
                target.display()
            ));
            Ok(())
        }
        _ => {
            let fmt = match format {
                None => ExtractFormat::Plain,
                Some(ArchiveFormat::Zip) => ExtractFormat::Zip,
                Some(ArchiveFormat::Tar) => ExtractFormat::Tar,
            };
            let stream = driver
                .extract(source, &norm, fmt, zstd, None)
                .await
                .map_err(|e| driver_error(e, &norm))?;
            match target {
                None => {
                    if std::io::stdout().is_terminal() && fmt != ExtractFormat::Plain {
                        bail!("refusing to write a {} archive to a terminal: give a TARGET or redirect stdout", fmt.as_str());
                    }
                    file_restore::sink::copy_to_stdout(stream).await
                }
                Some(t) => {
                    let mut dest = t.to_path_buf();
                    if t.is_dir() {
                        let mut name = base.clone();
                        if fmt != ExtractFormat::Plain {
                            name.extend_from_slice(format!(".{}", fmt.as_str()).as_bytes());
                        }
                        if zstd {
                            name.extend_from_slice(b".zst");
                        }
                        dest = t.join(std::ffi::OsStr::from_bytes(&name));
                    }
                    let n = file_restore::sink::write_file_atomically(stream, &dest, overwrite)
                        .await
                        .with_context(|| format!("{} was not written", dest.display()))?;
                    info(&format!("wrote {} ({n} bytes)", dest.display()));
                    Ok(())
                }
            }
        }
    }
}

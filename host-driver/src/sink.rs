//! Where extracted bytes go on the host: stdout, a file written atomically,
//! or a directory unpacked safely. Shows progress on a terminal.
//!
//! Beside the layers, used by the CLI: may import `guest` (the extract
//! stream), `unpack` and `util` only.

use crate::guest::client::{ClientError, ExtractStream, Segment};
use crate::unpack::{self, UnpackOptions, UnpackStats};
use indicatif::ProgressBar;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc;

/// Errors of writing extracted data.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The transfer from the VM broke off.
    #[error("transfer from the restore VM broke off")]
    Transfer(#[from] ClientError),
    /// Writing on the host failed.
    #[error("{what} {path}: {source}")]
    Write {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The target exists.
    #[error("{0} exists; use --overwrite to replace it")]
    Exists(String),
    /// Unpacking failed.
    #[error(transparent)]
    Unpack(#[from] unpack::UnpackError),
}

fn progress(len: Option<u64>) -> ProgressBar {
    crate::util::progress::progress_bar(len, "extracting")
}

/// Copies the stream to stdout.
pub async fn copy_to_stdout(mut stream: ExtractStream) -> anyhow::Result<()> {
    let bar = progress(stream.content_length);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    while let Some(chunk) = stream.next_chunk().await? {
        out.write_all(&chunk).map_err(|e| OutputError::Write {
            what: "writing",
            path: "stdout".into(),
            source: e,
        })?;
        bar.inc(chunk.len() as u64);
    }
    out.flush().map_err(|e| OutputError::Write {
        what: "writing",
        path: "stdout".into(),
        source: e,
    })?;
    bar.finish_and_clear();
    Ok(())
}

/// Writes the stream to `dest` through a temporary file in the same
/// directory, renamed into place only when complete: a broken transfer or a
/// full disk never leaves a partial file under the final name.
pub async fn write_file_atomically(
    mut stream: ExtractStream,
    dest: &Path,
    overwrite: bool,
) -> Result<u64, OutputError> {
    let shown = dest.display().to_string();
    if !overwrite && dest.symlink_metadata().is_ok() {
        return Err(OutputError::Exists(shown));
    }
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".file-restore-")
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|e| OutputError::Write {
            what: "creating a temporary file in",
            path: dir.display().to_string(),
            source: e,
        })?;
    let bar = progress(stream.content_length);
    let mut written = 0u64;
    let write_err = |e| OutputError::Write {
        what: "writing",
        path: shown.clone(),
        source: e,
    };
    while let Some(segment) = stream.next_segment().await? {
        match segment {
            Segment::Data(chunk) => {
                tmp.write_all(&chunk).map_err(write_err)?;
                written += chunk.len() as u64;
                bar.inc(chunk.len() as u64);
            }
            // A hole stays a hole: seek over it (the length is set below).
            Segment::Zeros(n) => {
                let to = i64::try_from(n).map_err(|_| {
                    write_err(std::io::Error::other("a hole larger than a file can be"))
                })?;
                tmp.seek(SeekFrom::Current(to)).map_err(write_err)?;
                written += n;
                bar.inc(n);
            }
        }
    }
    tmp.as_file().set_len(written).map_err(write_err)?;
    // tempfile creates 0600; the result should look like any new file.
    use std::os::unix::fs::PermissionsExt;
    let mode = 0o666 & !current_umask();
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| OutputError::Write {
            what: "setting the mode of",
            path: shown.clone(),
            source: e,
        })?;
    tmp.as_file().sync_all().map_err(|e| OutputError::Write {
        what: "syncing",
        path: shown.clone(),
        source: e,
    })?;
    bar.finish_and_clear();
    let persisted = if overwrite {
        tmp.persist(dest)
    } else {
        tmp.persist_noclobber(dest)
    };
    persisted.map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            OutputError::Exists(shown.clone())
        } else {
            OutputError::Write {
                what: "renaming into place",
                path: shown.clone(),
                source: e.error,
            }
        }
    })?;
    Ok(written)
}

/// The process umask (read by setting and restoring it).
fn current_umask() -> u32 {
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    nix::sys::stat::umask(old);
    old.bits()
}

/// A `Read` over chunks handed across threads.
struct ChunkReader {
    rx: mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.cur = c;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The unpack options of `file-restore extract` (the archive's top-level
/// directory is stripped).
pub fn extract_unpack_options(overwrite: bool, same_owner: bool) -> UnpackOptions {
    UnpackOptions {
        overwrite,
        strip_components: 1,
        same_owner,
        umask: None,
    }
}

/// Unpacks a tar stream from the daemon into `target` (created if missing)
/// with `opts`; returns the summary line ([`unpack_summary`]).
pub async fn unpack_stream(
    mut stream: ExtractStream,
    target: &Path,
    opts: UnpackOptions,
) -> anyhow::Result<String> {
    std::fs::create_dir_all(target).map_err(|e| OutputError::Write {
        what: "creating",
        path: target.display().to_string(),
        source: e,
    })?;
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(8);
    let same_owner = opts.same_owner;
    let target2 = target.to_path_buf();
    let worker = tokio::task::spawn_blocking(move || {
        unpack::unpack_tar(
            ChunkReader {
                rx,
                cur: Vec::new(),
                pos: 0,
            },
            &target2,
            &opts,
        )
    });
    let bar = progress(None);
    let mut transfer_error = None;
    loop {
        match stream.next_chunk().await {
            Ok(Some(chunk)) => {
                bar.inc(chunk.len() as u64);
                if tx.send(chunk.to_vec()).is_err() {
                    break; // the unpacker stopped: its error says why
                }
            }
            Ok(None) => break,
            Err(e) => {
                transfer_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    bar.finish_and_clear();
    let result = worker
        .await
        .map_err(|e| anyhow::anyhow!("unpacker crashed: {e}"))?;
    if let Some(e) = transfer_error {
        return Err(OutputError::Transfer(e).into());
    }
    let s = result?;
    Ok(unpack_summary(&s, same_owner))
}

/// What an unpack did, for the CLI's summary line.
pub fn unpack_summary(s: &UnpackStats, same_owner: bool) -> String {
    let mut parts = vec![
        format!("{} files", s.files),
        format!("{} directories", s.dirs),
        format!("{} symlinks", s.symlinks),
    ];
    if s.hardlinks > 0 {
        parts.push(format!("{} hard links", s.hardlinks));
    }
    if s.fifos + s.devices > 0 {
        parts.push(format!("{} special files", s.fifos + s.devices));
    }
    if s.skipped_special > 0 {
        parts.push(if same_owner {
            format!(
                "{} device nodes skipped (they need root)",
                s.skipped_special
            )
        } else {
            format!(
                "{} special files (devices, FIFOs) skipped (--same-owner creates them)",
                s.skipped_special
            )
        });
    }
    if s.skipped > 0 {
        parts.push(format!(
            "{} entries of unsupported types skipped",
            s.skipped
        ));
    }
    parts.push(format!("{} bytes", s.bytes));
    parts.join(", ")
}

//! `GET /api/extract`: a file's bytes (with HTTP Range) or an archive of a
//! file or directory, optionally zstd-compressed.

use crate::archive::{self, ArchiveSink, TarSink, ZipSink};
use crate::confine::{self, Last};
use crate::error::ApiError;
use crate::listing::bucket_root;
use crate::state::State;
use crate::stream::{self, ChannelBody, ChannelWriter};
use crate::vpath::{self, VPath};
use file_restore_wire::ExtractFormat;
use hyper::StatusCode;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

/// zstd level for `zstd=1`: fast, the guest CPU is the bottleneck under TCG.
const ZSTD_LEVEL: i32 = 3;

/// What the response headers need to know.
#[derive(Debug)]
pub struct Head {
    /// 200 or 206.
    pub status: StatusCode,
    /// MIME type.
    pub content_type: &'static str,
    /// Exact length when known.
    pub content_length: Option<u64>,
    /// `bytes a-b/total` for a 206.
    pub content_range: Option<String>,
    /// Suggested download name.
    pub filename: String,
}

/// A parsed `Range: bytes=…` header (one range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `a-` or `a-b` (inclusive end).
    From(u64, Option<u64>),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// Parses a Range header value; `None` for syntax this server ignores
/// (then the whole file is sent, as RFC 9110 allows).
pub fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return b.parse().ok().map(ByteRange::Suffix);
    }
    let start = a.parse().ok()?;
    let end = if b.is_empty() {
        None
    } else {
        Some(b.parse().ok()?)
    };
    if end.is_some_and(|e| e < start) {
        return None;
    }
    Some(ByteRange::From(start, end))
}

/// Resolves a range against the file size: `Ok(None)` is the whole file,
/// `Err` is 416.
fn resolve_range(range: Option<ByteRange>, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let unsatisfiable = || {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("requested range is outside the file (size {size} bytes)"),
        )
    };
    match range {
        None => Ok(None),
        Some(ByteRange::From(start, end)) => {
            if start >= size {
                return Err(unsatisfiable());
            }
            let end = end.map_or(size - 1, |e| e.min(size - 1));
            Ok(Some((start, end)))
        }
        Some(ByteRange::Suffix(n)) => {
            if n == 0 || size == 0 {
                return Err(unsatisfiable());
            }
            Ok(Some((size.saturating_sub(n), size - 1)))
        }
    }
}

fn base_name(path: &VPath) -> String {
    match path {
        VPath::Inside { rest, bucket, .. } => {
            let last = rest.rsplit(|&c| c == b'/').next().unwrap_or(b"");
            if last.is_empty() || last == b".." {
                // lvm/vg/root is called root, like the last component of any path.
                bucket.rsplit('/').next().unwrap_or(bucket).to_owned()
            } else {
                String::from_utf8_lossy(last).into_owned()
            }
        }
        _ => "download".into(),
    }
}

/// Wraps the writer in zstd when asked and runs `f` on it.
fn with_zstd(
    w: &mut ChannelWriter,
    zstd: bool,
    f: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    if zstd {
        let mut enc = zstd::stream::write::Encoder::new(w, ZSTD_LEVEL)?;
        f(&mut enc)?;
        enc.finish()?;
        Ok(())
    } else {
        f(w)
    }
}

/// Starts an extract stream. The caller holds the concurrency permit; it is
/// moved into the producer and released when the stream ends.
pub async fn extract(
    state: Arc<State>,
    path: VPath,
    format: ExtractFormat,
    zstd: bool,
    range: Option<ByteRange>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<(Head, ChannelBody), ApiError> {
    let VPath::Inside {
        disk,
        kind,
        bucket,
        rest,
    } = path.clone()
    else {
        return Err(ApiError::bad_request(format!(
            "'{}' is not inside a bucket: extract needs a path like /<disk>/part/<n>/<file>",
            String::from_utf8_lossy(&vpath::canonical(&path))
        )));
    };
    if zstd && range.is_some() {
        return Err(ApiError::bad_request(
            "Range cannot be combined with zstd=1",
        ));
    }
    let label = String::from_utf8_lossy(&vpath::canonical(&path)).into_owned();
    let name = base_name(&path);
    let guard = state.watchdog.hold();
    let st2 = state.clone();
    let label2 = label.clone();
    stream::spawn_stream(
        move || {
            let root = bucket_root(&st2, &disk, kind, &bucket)?;
            match format {
                ExtractFormat::Plain => {
                    let (file, st) = open_regular(&root, &rest, &label)?;
                    let size = st.st_size.max(0) as u64;
                    let span = resolve_range(range, size)?;
                    let (status, start, len, content_range) = match span {
                        None => (StatusCode::OK, 0, size, None),
                        Some((a, b)) => (
                            StatusCode::PARTIAL_CONTENT,
                            a,
                            b - a + 1,
                            Some(format!("bytes {a}-{b}/{size}")),
                        ),
                    };
                    let head = Head {
                        status,
                        content_type: if zstd {
                            "application/zstd"
                        } else {
                            "application/octet-stream"
                        },
                        content_length: (!zstd).then_some(len),
                        content_range,
                        filename: if zstd { format!("{name}.zst") } else { name },
                    };
                    Ok((head, Job::Plain(file, start, len)))
                }
                ExtractFormat::Zip | ExtractFormat::Tar => {
                    let fd = root
                        .open_at(&rest, libc::O_PATH, Last::NoFollow)
                        .map_err(|e| ApiError::io(&label, &e))?;
                    let (ext, ctype) = if format == ExtractFormat::Zip {
                        ("zip", "application/zip")
                    } else {
                        ("tar", "application/x-tar")
                    };
                    let head = Head {
                        status: StatusCode::OK,
                        content_type: if zstd { "application/zstd" } else { ctype },
                        content_length: None,
                        content_range: None,
                        filename: format!("{name}.{ext}{}", if zstd { ".zst" } else { "" }),
                    };
                    Ok((head, Job::Archive(fd, format, name.into_bytes())))
                }
            }
        },
        move |job, w| {
            let _permit = permit;
            let _guard = guard;
            match job {
                Job::Plain(mut f, start, len) => with_zstd(w, zstd, |out| {
                    f.seek(SeekFrom::Start(start))?;
                    let copied = io::copy(&mut (&mut f).take(len), out)?;
                    if copied < len {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("{label2}: file ended after {copied} of {len} bytes"),
                        ));
                    }
                    Ok(())
                }),
                Job::Archive(fd, format, prefix) => with_zstd(w, zstd, |out| {
                    let mut sink: Box<dyn ArchiveSink + '_> = if format == ExtractFormat::Zip {
                        Box::new(ZipSink::new(out))
                    } else {
                        Box::new(TarSink::new(out))
                    };
                    archive::walk(&fd, b"", &prefix, sink.as_mut())?;
                    sink.finish()
                }),
            }
        },
    )
    .await
}

/// Opens `rest` below `root` for reading if it is a regular file (after
/// symlinks, confined to the bucket), with its `stat`.
pub fn open_regular(
    root: &confine::Root,
    rest: &[u8],
    label: &str,
) -> Result<(File, libc::stat), ApiError> {
    // O_PATH first: opening a FIFO for reading would block until a writer
    // appears (never, on a read-only image), and opening a device has side
    // effects. Only a regular file is then opened for reading.
    let path_fd = root
        .open_at(rest, libc::O_PATH, Last::Follow)
        .map_err(|e| ApiError::io(label, &e))?;
    let st = confine::fstat(&path_fd).map_err(|e| ApiError::io(label, &e))?;
    check_plain_type(label, st.st_mode)?;
    let fd = root
        .open_at(
            rest,
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
            Last::Follow,
        )
        .map_err(|e| ApiError::io(label, &e))?;
    let st2 = confine::fstat(&fd).map_err(|e| ApiError::io(label, &e))?;
    check_plain_type(label, st2.st_mode)?;
    if (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{label} changed while it was opened"),
        ));
    }
    Ok((File::from(fd), st2))
}

/// Plain extraction serves regular files only; anything else is a 400
/// that says what it is.
fn check_plain_type(label: &str, mode: libc::mode_t) -> Result<(), ApiError> {
    let what = match mode & libc::S_IFMT {
        libc::S_IFREG => return Ok(()),
        libc::S_IFDIR => {
            return Err(ApiError::bad_request(format!(
                "{label} is a directory: use format=zip or format=tar"
            )))
        }
        libc::S_IFIFO => "a FIFO (named pipe)",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        _ => "not a regular file",
    };
    Err(ApiError::bad_request(format!(
        "{label} is {what}, which has no data to extract: only regular files can be \
         extracted as plain data (format=tar records it as an entry)"
    )))
}

enum Job {
    Plain(File, u64, u64),
    Archive(std::os::fd::OwnedFd, ExtractFormat, Vec<u8>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("bytes=0-99"),
            Some(ByteRange::From(0, Some(99)))
        );
        assert_eq!(parse_range("bytes=100-"), Some(ByteRange::From(100, None)));
        assert_eq!(parse_range("bytes=-5"), Some(ByteRange::Suffix(5)));
        assert_eq!(parse_range("bytes=5-1"), None);
        assert_eq!(parse_range("bytes=0-1,3-4"), None);
        assert_eq!(parse_range("items=0-1"), None);
        assert_eq!(
            resolve_range(Some(ByteRange::From(0, Some(1000))), 10).unwrap(),
            Some((0, 9))
        );
        assert_eq!(
            resolve_range(Some(ByteRange::Suffix(3)), 10).unwrap(),
            Some((7, 9))
        );
        assert_eq!(
            resolve_range(Some(ByteRange::Suffix(30)), 10).unwrap(),
            Some((0, 9))
        );
        assert!(resolve_range(Some(ByteRange::From(10, None)), 10).is_err());
        assert!(resolve_range(Some(ByteRange::Suffix(1)), 0).is_err());
    }
}

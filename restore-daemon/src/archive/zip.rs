//! Streaming zip output (data descriptors, no seeking), deflate level 1:
//! under TCG the guest CPU is the bottleneck, and level 1 keeps most of the
//! size win for text at a fraction of the cost.

use super::{ArchiveSink, Meta, Special};
use file_restore_wire::civil_from_unix;
use std::fs::File;
use std::io::{self, Write};
use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{CompressionMethod, DateTime, ZipWriter};

/// Files at least this big get zip64 headers up front (streaming cannot go back).
const LARGE: u64 = 0xFFFF_0000;

/// Writes a zip archive to `W`.
pub struct ZipSink<W: Write> {
    zip: ZipWriter<StreamWriter<W>>,
}

impl<W: Write> ZipSink<W> {
    /// A sink writing to `out`.
    pub fn new(out: W) -> Self {
        ZipSink {
            zip: ZipWriter::new_stream(out),
        }
    }
}

fn zip_err(e: zip::result::ZipError) -> io::Error {
    match e {
        zip::result::ZipError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

fn options(meta: &Meta) -> SimpleFileOptions {
    let (y, mo, d, h, mi, s) = civil_from_unix(meta.mtime);
    let time = u16::try_from(y)
        .ok()
        .and_then(|y| {
            DateTime::from_date_and_time(y, mo as u8, d as u8, h as u8, mi as u8, s as u8).ok()
        })
        .unwrap_or_default();
    SimpleFileOptions::default()
        .last_modified_time(time)
        .unix_permissions(meta.mode)
        .large_file(meta.size >= LARGE)
}

impl<W: Write> ArchiveSink for ZipSink<W> {
    fn dir(&mut self, path: &[u8], meta: &Meta) -> io::Result<()> {
        // An empty entry whose name ends in '/' is a directory to every
        // unzipper; writing it this way keeps non-UTF-8 names byte-exact
        // (add_directory only takes a String).
        let mut name = path.to_vec();
        name.push(b'/');
        let opts = options(meta).compression_method(CompressionMethod::Stored);
        self.zip
            .start_file_with_options(opts.name(&name))
            .map_err(zip_err)
    }

    fn file(&mut self, path: &[u8], meta: &Meta, data: &mut File) -> io::Result<()> {
        let opts = options(meta)
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(1));
        self.zip
            .start_file_with_options(opts.name(path))
            .map_err(zip_err)?;
        io::copy(data, &mut self.zip)?;
        Ok(())
    }

    fn supports_hardlinks(&self) -> bool {
        false
    }

    fn hardlink(&mut self, path: &[u8], _meta: &Meta, first: &[u8]) -> io::Result<()> {
        Err(io::Error::other(format!(
            "zip cannot store hard link {} -> {}",
            String::from_utf8_lossy(path),
            String::from_utf8_lossy(first)
        )))
    }

    /// zip stores symlinks only with UTF-8 names and targets (the zip crate
    /// takes strings here): non-UTF-8 bytes become U+FFFD. tar is exact.
    fn symlink(&mut self, path: &[u8], meta: &Meta, target: &[u8]) -> io::Result<()> {
        self.zip
            .add_symlink(
                String::from_utf8_lossy(path),
                String::from_utf8_lossy(target),
                options(meta),
            )
            .map_err(zip_err)
    }

    fn special(&mut self, path: &[u8], _meta: &Meta, _kind: Special) -> io::Result<()> {
        log::debug!(
            "zip cannot hold device or fifo {}: skipped",
            String::from_utf8_lossy(path)
        );
        Ok(())
    }

    fn finish(self: Box<Self>) -> io::Result<()> {
        let mut w = self.zip.finish().map_err(zip_err)?;
        w.flush()
    }
}

//! A file's data written sequentially with runs of zero blocks left as
//! holes (sparse files come out sparse).

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

/// Block size for holes: an aligned all-zero block of this size is skipped
/// (seeked over) instead of written.
const HOLE_BLOCK: usize = 4096;

/// Writes a file's data sequentially, turning aligned all-zero blocks into
/// holes; [`HoleWriter::finish`] sets the final length.
pub(super) struct HoleWriter<'f> {
    file: &'f mut File,
    /// Logical position (bytes of data so far).
    pos: u64,
    /// Bytes skipped since the last write, not yet seeked over.
    pending: u64,
}

impl<'f> HoleWriter<'f> {
    pub(super) fn new(file: &'f mut File) -> Self {
        HoleWriter {
            file,
            pos: 0,
            pending: 0,
        }
    }

    pub(super) fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let mut i = 0;
        // Start of the run of data bytes not yet written.
        let mut run = 0;
        while i < data.len() {
            let off = (self.pos + i as u64) % HOLE_BLOCK as u64;
            let end = (i + HOLE_BLOCK - off as usize).min(data.len());
            let block = &data[i..end];
            if off == 0 && block.len() == HOLE_BLOCK && block.iter().all(|&b| b == 0) {
                self.flush_run(&data[run..i])?;
                self.pending += HOLE_BLOCK as u64;
                run = end;
            }
            i = end;
        }
        self.flush_run(&data[run..])?;
        self.pos += data.len() as u64;
        Ok(())
    }

    fn flush_run(&mut self, run: &[u8]) -> io::Result<()> {
        if run.is_empty() {
            return Ok(());
        }
        if self.pending > 0 {
            self.file.seek(SeekFrom::Current(self.pending as i64))?;
            self.pending = 0;
        }
        self.file.write_all(run)
    }

    /// Sets the length (a trailing hole is not written at all).
    pub(super) fn finish(self) -> io::Result<()> {
        self.file.set_len(self.pos)
    }
}

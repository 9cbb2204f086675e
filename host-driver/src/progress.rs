//! Progress for long transfers: a bar on stderr (bytes, rate, elapsed) when
//! stderr is a terminal, nothing otherwise, so scripts and pipes see no noise.

use std::io::{self, IsTerminal, Read, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const WITH_TOTAL: &str =
    "{msg} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} {elapsed_precise}";
const WITHOUT_TOTAL: &str = "{spinner} {msg} {bytes} {binary_bytes_per_sec} {elapsed_precise}";

/// A byte progress bar on stderr when it is a terminal, else a hidden one
/// (which still counts, but never draws). `total` is the expected size when
/// known.
pub fn progress_bar(total: Option<u64>, message: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(t) => (ProgressBar::new(t), WITH_TOTAL),
        None => (ProgressBar::no_length(), WITHOUT_TOTAL),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message.to_string());
    bar
}

/// A writer that reports the bytes written through it to a progress bar.
pub struct ProgressWriter<W> {
    inner: W,
    bar: ProgressBar,
}

impl<W: Write> ProgressWriter<W> {
    /// Wraps `inner` with a new [`progress_bar`].
    pub fn new(inner: W, total: Option<u64>, message: &str) -> Self {
        Self::with_bar(inner, progress_bar(total, message))
    }

    /// Wraps `inner`, reporting to `bar`.
    pub fn with_bar(inner: W, bar: ProgressBar) -> Self {
        ProgressWriter { inner, bar }
    }

    /// The bar (its position is the number of bytes written so far).
    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }

    /// Flushes, leaves the bar's final line (size, rate, time) on screen and
    /// returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.inner.flush()?;
        self.bar.finish();
        Ok(self.inner)
    }
}

impl<W: Write> Write for ProgressWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that reports the bytes read through it to a progress bar (for
/// a stream consumed by the unpacker).
pub struct ProgressReader<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> ProgressReader<R> {
    /// Wraps `inner` with a new [`progress_bar`].
    pub fn new(inner: R, total: Option<u64>, message: &str) -> Self {
        ProgressReader {
            inner,
            bar: progress_bar(total, message),
        }
    }

    /// The bar (its position is the number of bytes read so far).
    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }

    /// Leaves the bar's final line on screen and returns the inner reader.
    pub fn finish(self) -> R {
        self.bar.finish();
        self.inner
    }
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bytes_and_passes_them_through() {
        let mut w = ProgressWriter::new(Vec::new(), Some(10), "test");
        w.write_all(b"hello").unwrap();
        w.write_all(b" world").unwrap();
        assert_eq!(w.bar().position(), 11);
        assert_eq!(w.finish().unwrap(), b"hello world");

        let data = vec![3u8; 100_000];
        let mut r = ProgressReader::new(data.as_slice(), None, "test");
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(r.bar().position(), 100_000);
        assert_eq!(out, data);
    }

    #[test]
    fn hidden_when_stderr_is_not_a_terminal() {
        if io::stderr().is_terminal() {
            eprintln!("stderr is a terminal: hidden-bar check skipped");
            return;
        }
        assert!(progress_bar(Some(1), "x").is_hidden());
    }
}

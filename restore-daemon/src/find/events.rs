//! The lines of a find answer as the walk produces them: matches, skips,
//! progress, and the closing summary. Lines are flushed to the client at
//! most every [`FLUSH_EVERY`] (a match found alone is on its way within that
//! time; a burst of matches travels in full chunks), and a progress line
//! goes out every [`PROGRESS_EVERY_MS`] while the walk runs.

use file_restore_wire::find::{
    FindEnd, FindEvent, FindProgress, FindSkip, MAX_FIND_LINE, MAX_FIND_SKIPS, PROGRESS_EVERY_MS,
};
use file_restore_wire::Entry;
use std::io::{self, Write};
use std::time::{Duration, Instant};

/// Longest time a written line waits in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// The clock is read every this many entries looked at.
const CLOCK_EVERY: u64 = 64;

/// Whether the walk goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Go,
    /// Stop: `max` matches were sent and another was found.
    Stop,
}

/// Writes the lines of one find answer and counts them.
pub struct Events<W: Write> {
    w: W,
    max: u64,
    visited: u64,
    matched: u64,
    skipped: u64,
    truncated: bool,
    last_flush: Instant,
    last_progress: Instant,
    dirty: bool,
}

impl<W: Write> Events<W> {
    /// Lines into `w`, at most `max` matches.
    pub fn new(w: W, max: u64) -> Self {
        let now = Instant::now();
        Events {
            w,
            max,
            visited: 0,
            matched: 0,
            skipped: 0,
            truncated: false,
            last_flush: now,
            last_progress: now,
            dirty: false,
        }
    }

    fn line(&mut self, ev: &FindEvent) -> io::Result<()> {
        let mut buf = serde_json::to_vec(ev)?;
        if buf.len() >= MAX_FIND_LINE {
            // Only a match can be this long (a long symlink target of
            // control characters, each escaped six bytes long): sent without
            // its target rather than not at all.
            if let FindEvent::Match(e) = ev {
                let mut e = e.clone();
                e.target = None;
                e.error = Some("the symlink's target is too long to show here".into());
                buf = serde_json::to_vec(&FindEvent::Match(e))?;
            }
            if buf.len() >= MAX_FIND_LINE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a find answer line exceeds its limit",
                ));
            }
        }
        buf.push(b'\n');
        self.w.write_all(&buf)?;
        self.dirty = true;
        Ok(())
    }

    fn flush_if_due(&mut self, now: Instant) -> io::Result<()> {
        if self.dirty && now.duration_since(self.last_flush) >= FLUSH_EVERY {
            self.w.flush()?;
            self.dirty = false;
            self.last_flush = now;
        }
        Ok(())
    }

    /// Counts an entry looked at; sends progress when it is time.
    pub fn visit(&mut self) -> io::Result<()> {
        self.visited += 1;
        if self.visited.is_multiple_of(CLOCK_EVERY) {
            let now = Instant::now();
            if now.duration_since(self.last_progress) >= Duration::from_millis(PROGRESS_EVERY_MS) {
                self.last_progress = now;
                self.line(&FindEvent::Progress(FindProgress {
                    visited: self.visited,
                }))?;
                self.w.flush()?;
                self.dirty = false;
                self.last_flush = now;
            } else {
                self.flush_if_due(now)?;
            }
        }
        Ok(())
    }

    /// Sends a match (its `path` set from `filepath`), or says to stop when
    /// `max` were sent already.
    pub fn matched(&mut self, mut e: Entry) -> io::Result<Flow> {
        if self.matched >= self.max {
            self.truncated = true;
            return Ok(Flow::Stop);
        }
        if e.path.is_none() {
            e.path = e
                .path_bytes()
                .ok()
                .map(|p| String::from_utf8_lossy(&p).into_owned());
        }
        self.line(&FindEvent::Match(e))?;
        self.matched += 1;
        self.flush_if_due(Instant::now())?;
        Ok(Flow::Go)
    }

    /// Reports a place not searched (only counted after [`MAX_FIND_SKIPS`]).
    pub fn skip(&mut self, path: &[u8], reason: &str) -> io::Result<()> {
        self.skipped += 1;
        if self.skipped <= MAX_FIND_SKIPS {
            self.line(&FindEvent::Skip(FindSkip {
                path: String::from_utf8_lossy(path).into_owned(),
                reason: reason.to_owned(),
            }))?;
            self.flush_if_due(Instant::now())?;
        }
        Ok(())
    }

    /// The closing line; flushes.
    pub fn end(mut self) -> io::Result<FindEnd> {
        let end = FindEnd {
            visited: self.visited,
            matched: self.matched,
            skipped: self.skipped,
            truncated: self.truncated,
        };
        self.line(&FindEvent::End(end))?;
        self.w.flush()?;
        Ok(end)
    }
}

//! The streamed answer of a find call (`GET /api/find`), read line by line
//! with every bound the guest could try to break: a line of at most
//! [`MAX_FIND_LINE`] bytes, no more matches than asked for, at most
//! [`MAX_FIND_SKIPS`] skip lines, progress lines no faster than the daemon's
//! pace allows, nothing after the closing `end` line, and an idle limit on
//! every wait (and the caller's deadline on the whole search). An answer that ends without its `end` line broke off, and
//! says so.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Buf;
use file_restore_wire::endpoint;
use file_restore_wire::find::{
    FindEnd, FindEvent, MAX_FIND_LINE, MAX_FIND_SKIPS, PROGRESS_EVERY_MS,
};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::ClientError;
use crate::guest::transport::VsockAddr;

/// Progress lines allowed beyond the daemon's pace (bursts at a bucket's
/// start, clock skew).
const PROGRESS_SLACK: u64 = 16;

/// Splits and checks the lines of a find answer; no I/O, so a hostile
/// stream can be fed to it in tests.
#[derive(Debug)]
pub struct FindLines {
    buf: Vec<u8>,
    max_matches: u64,
    matches: u64,
    skips: u64,
    progress: u64,
    started: Instant,
    end: Option<FindEnd>,
}

fn bad(detail: String) -> ClientError {
    ClientError::BadResponse {
        endpoint: endpoint::FIND,
        detail,
    }
}

impl FindLines {
    /// A reader for an answer that may hold at most `max_matches` matches.
    pub fn new(max_matches: u64) -> FindLines {
        FindLines {
            buf: Vec::new(),
            max_matches,
            matches: 0,
            skips: 0,
            progress: 0,
            started: Instant::now(),
            end: None,
        }
    }

    /// The closing line, once it came.
    pub fn end(&self) -> Option<FindEnd> {
        self.end
    }

    /// Takes the next piece of the body; appends the events of the lines it
    /// completes to `out`.
    pub fn push(
        &mut self,
        mut chunk: &[u8],
        out: &mut VecDeque<FindEvent>,
    ) -> Result<(), ClientError> {
        while !chunk.is_empty() {
            if self.end.is_some() {
                return Err(bad("data after the closing line".into()));
            }
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    if self.buf.len() + i > MAX_FIND_LINE {
                        return Err(self.too_long());
                    }
                    self.buf.extend_from_slice(&chunk[..i]);
                    chunk = &chunk[i + 1..];
                    let line = std::mem::take(&mut self.buf);
                    out.push_back(self.line(&line)?);
                }
                None => {
                    if self.buf.len() + chunk.len() > MAX_FIND_LINE {
                        return Err(self.too_long());
                    }
                    self.buf.extend_from_slice(chunk);
                    chunk = &[];
                }
            }
        }
        Ok(())
    }

    fn too_long(&self) -> ClientError {
        bad(format!("a line longer than {MAX_FIND_LINE} bytes"))
    }

    fn line(&mut self, line: &[u8]) -> Result<FindEvent, ClientError> {
        let ev: FindEvent = serde_json::from_slice(line)
            .map_err(|e| bad(format!("a line that is not a find event: {e}")))?;
        match &ev {
            FindEvent::Match(_) => {
                self.matches += 1;
                if self.matches > self.max_matches {
                    return Err(bad(format!(
                        "more than the {} matches asked for",
                        self.max_matches
                    )));
                }
            }
            FindEvent::Skip(_) => {
                self.skips += 1;
                if self.skips > MAX_FIND_SKIPS {
                    return Err(bad(format!("more than {MAX_FIND_SKIPS} skip lines")));
                }
            }
            FindEvent::Progress(_) => {
                self.progress += 1;
                let allowed = self.started.elapsed().as_millis() as u64 / (PROGRESS_EVERY_MS / 2)
                    + PROGRESS_SLACK;
                if self.progress > allowed {
                    return Err(bad(
                        "progress lines faster than the daemon sends them".into()
                    ));
                }
            }
            FindEvent::End(end) => {
                if end.matched != self.matches {
                    return Err(bad(format!(
                        "the closing line counts {} matches, the answer held {}",
                        end.matched, self.matches
                    )));
                }
                self.end = Some(*end);
            }
        }
        Ok(ev)
    }

    /// At the end of the body: an error unless the closing line came.
    pub fn finish(&self) -> Result<(), ClientError> {
        if self.end.is_none() {
            return Err(bad(
                "the answer broke off before its closing line (the search did not finish)".into(),
            ));
        }
        Ok(())
    }
}

/// A find answer being read: [`FindStream::next`] gives its events in order.
#[derive(Debug)]
pub struct FindStream {
    body: Incoming,
    lines: FindLines,
    ready: VecDeque<FindEvent>,
    addr: VsockAddr,
    idle: Duration,
    done: bool,
}

impl FindStream {
    pub(super) fn new(body: Incoming, max_matches: u64, addr: VsockAddr, idle: Duration) -> Self {
        FindStream {
            body,
            lines: FindLines::new(max_matches),
            ready: VecDeque::new(),
            addr,
            idle,
            done: false,
        }
    }

    /// The next event; `None` after the closing `end` event was given.
    pub async fn next(&mut self) -> Result<Option<FindEvent>, ClientError> {
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Ok(Some(ev));
            }
            if self.done {
                return Ok(None);
            }
            let frame = tokio::time::timeout(self.idle, self.body.frame())
                .await
                .map_err(|_| ClientError::Timeout {
                    what: "waiting for more of the find answer from".into(),
                    addr: self.addr.clone(),
                    after: self.idle,
                })?;
            match frame {
                None => {
                    self.lines.finish()?;
                    self.done = true;
                }
                Some(Err(e)) => {
                    return Err(ClientError::Http {
                        endpoint: endpoint::FIND,
                        addr: self.addr.clone(),
                        source: e,
                    })
                }
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let piece = data.chunk();
                            let n = piece.len();
                            self.lines.push(piece, &mut self.ready)?;
                            data.advance(n);
                        }
                    }
                    if self.lines.end().is_some() {
                        // Nothing may follow the closing line; stop reading.
                        self.done = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use file_restore_wire::find::{FindProgress, FindSkip};
    use file_restore_wire::{encode_path, Entry, EntryType};

    fn entry(i: u64) -> Entry {
        Entry {
            filepath: encode_path(format!("/d/part/1/f{i}").as_bytes()),
            text: format!("f{i}"),
            entry_type: EntryType::File,
            leaf: true,
            size: Some(i),
            mtime: Some(0),
            target: None,
            fstype: None,
            label: None,
            encryption: None,
            locked: None,
            error: None,
            path: Some(format!("/d/part/1/f{i}")),
        }
    }

    fn line(ev: &FindEvent) -> Vec<u8> {
        let mut v = serde_json::to_vec(ev).unwrap();
        v.push(b'\n');
        v
    }

    /// Feeds lines made by `make` until the reader refuses; how many it took.
    fn feed_until_refused(r: &mut FindLines, make: impl Fn(u64) -> Vec<u8>) -> (u64, String) {
        let mut out = VecDeque::new();
        for i in 0..10_000_000u64 {
            if let Err(e) = r.push(&make(i), &mut out) {
                return (i, e.to_string());
            }
            out.clear();
        }
        panic!("an endless stream was read for ever");
    }

    #[test]
    fn an_honest_answer_in_odd_pieces() {
        let mut body = Vec::new();
        body.extend(line(&FindEvent::Match(entry(1))));
        body.extend(line(&FindEvent::Skip(FindSkip {
            path: "/d/part/2".into(),
            reason: "locked".into(),
        })));
        body.extend(line(&FindEvent::Match(entry(2))));
        body.extend(line(&FindEvent::End(FindEnd {
            visited: 9,
            matched: 2,
            skipped: 1,
            truncated: true,
        })));
        let mut r = FindLines::new(2);
        let mut out = VecDeque::new();
        for piece in body.chunks(7) {
            r.push(piece, &mut out).unwrap();
        }
        r.finish().unwrap();
        assert_eq!(out.len(), 4);
        assert!(r.end().unwrap().truncated);
    }

    #[test]
    fn endless_matches_stop_at_the_limit() {
        let mut r = FindLines::new(1000);
        let (n, e) = feed_until_refused(&mut r, |i| line(&FindEvent::Match(entry(i))));
        assert_eq!(n, 1000);
        assert!(e.contains("more than the 1000 matches"), "{e}");
    }

    #[test]
    fn endless_skips_progress_and_blank_bytes_stop() {
        let mut r = FindLines::new(10);
        let skip = FindEvent::Skip(FindSkip {
            path: "/x".into(),
            reason: "y".into(),
        });
        let (n, e) = feed_until_refused(&mut r, |_| line(&skip));
        assert_eq!(n, MAX_FIND_SKIPS);
        assert!(e.contains("skip lines"), "{e}");

        let mut r = FindLines::new(10);
        let progress = FindEvent::Progress(FindProgress { visited: 1 });
        let (n, e) = feed_until_refused(&mut r, |_| line(&progress));
        assert!(n < 100, "{n}");
        assert!(e.contains("progress lines faster"), "{e}");

        // One endless line (no newline ever).
        let mut r = FindLines::new(10);
        let (n, e) = feed_until_refused(&mut r, |_| vec![b'x'; 4096]);
        assert_eq!(n, (MAX_FIND_LINE / 4096) as u64);
        assert!(e.contains("longer than"), "{e}");

        // The daemon sends no blank lines: the first one is refused.
        let mut r = FindLines::new(10);
        let mut out = VecDeque::new();
        assert!(r.push(b"\n\n\n", &mut out).is_err());
    }

    #[test]
    fn a_missing_or_lying_end_is_an_error() {
        let mut r = FindLines::new(5);
        let mut out = VecDeque::new();
        r.push(&line(&FindEvent::Match(entry(1))), &mut out)
            .unwrap();
        assert!(r.finish().unwrap_err().to_string().contains("broke off"));
        let lie = FindEvent::End(FindEnd {
            visited: 1,
            matched: 3,
            skipped: 0,
            truncated: false,
        });
        assert!(r.push(&line(&lie), &mut out).is_err());
        let mut r = FindLines::new(5);
        let end = FindEvent::End(FindEnd {
            visited: 0,
            matched: 0,
            skipped: 0,
            truncated: false,
        });
        let mut twice = line(&end);
        twice.extend(line(&end));
        assert!(r
            .push(&twice, &mut out)
            .unwrap_err()
            .to_string()
            .contains("after"));
    }
}

//! A big file read from the VM's disks instead of through the guest: the
//! daemon's map (`GET /api/map`, paged) is checked into a [`FileLayout`],
//! and a [`MappedReader`] copies its ranges from QEMU's read-only NBD export
//! of the same disks, several reads in flight, delivered in file order.
//!
//! The host never interprets the bytes; it only checks what a lying guest
//! could get wrong on purpose (docs/ARCHITECTURE.md, "Big files"): the
//! extents tile the file exactly (no gaps, no overlaps, nothing past its
//! size), name only the VM's own disks, and lie inside them (checked against
//! each export's size when it is opened). Pages must make progress, and
//! their number, the extents and the time to fetch them are bounded.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use file_restore_wire::map::{FileMap, MAX_EXTENTS_PER_PAGE};
use tokio::sync::mpsc;

use super::{ClientError, DaemonClient};
use crate::nbd::{NbdConn, NbdError};

/// Largest map page body read.
pub const MAX_PAGE_BYTES: usize = 4 << 20;
/// Most extents of one file's whole map.
pub const MAX_EXTENTS: usize = 1 << 20;
/// Most pages of one file's map.
const MAX_PAGES: usize = 1024;
/// How long fetching a whole map may take.
const MAP_TIME: Duration = Duration::from_secs(120);
/// Bytes per NBD read.
const CHUNK: u64 = 8 << 20;
/// Reads in flight.
const IN_FLIGHT: usize = 4;
/// How often a long read tells the daemon it is still in use (its idle
/// watchdog sees no requests while the host reads the disks directly).
const KEEPALIVE: Duration = Duration::from_secs(60);

/// Where a run of the file comes from, after checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Zeros (a hole or unwritten space).
    Zeros,
    /// Bytes of disk number `disk` (an index into [`FileLayout::disks`]) at
    /// this offset.
    Disk(usize, u64),
}

/// A run of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Offset in the file.
    pub offset: u64,
    /// Length (never 0).
    pub length: u64,
    /// Where the bytes are.
    pub source: Source,
}

/// A file's checked map: runs that tile `[0, size)` exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLayout {
    /// The file's size.
    pub size: u64,
    /// The disks the runs name (the daemon's disk names).
    pub disks: Vec<String>,
    /// The runs, in file order.
    pub runs: Vec<Run>,
}

/// What the map says about a file.
#[derive(Debug)]
pub enum MapOutcome {
    /// Its bytes are on the disks, here.
    Layout(FileLayout),
    /// They are not (the daemon's reason), or the file is `size` bytes and
    /// smaller than the caller cared for.
    Stream {
        /// The file's size.
        size: u64,
        /// Why it is streamed.
        reason: String,
    },
}

/// Builds a [`FileLayout`] page by page, checking each page.
#[derive(Debug, Default)]
pub struct LayoutBuilder {
    size: Option<u64>,
    disks: Vec<String>,
    runs: Vec<Run>,
    pages: usize,
}

impl LayoutBuilder {
    /// The offset the next page must start at.
    pub fn pos(&self) -> u64 {
        self.runs.last().map_or(0, |r| r.offset + r.length)
    }

    /// Adds a page that was asked for from [`Self::pos`]. `Ok(None)`: ask
    /// for the next page; `Ok(Some(..))`: the map is complete or unmappable.
    pub fn add(
        &mut self,
        page: FileMap,
        known_disks: &[String],
    ) -> Result<Option<MapOutcome>, String> {
        let from = self.pos();
        self.pages += 1;
        if self.pages > MAX_PAGES {
            return Err(format!("the map has more than {MAX_PAGES} pages"));
        }
        match self.size {
            None => self.size = Some(page.size),
            Some(s) if s != page.size => {
                return Err(format!(
                    "the file's size changed from {s} to {} between pages",
                    page.size
                ))
            }
            Some(_) => {}
        }
        let size = page.size;
        if let Some(reason) = page.unmappable {
            return Ok(Some(MapOutcome::Stream { size, reason }));
        }
        if page.extents.len() > MAX_EXTENTS_PER_PAGE {
            return Err(format!(
                "a page of {} extents (at most {MAX_EXTENTS_PER_PAGE})",
                page.extents.len()
            ));
        }
        if self.runs.len() + page.extents.len() > MAX_EXTENTS {
            return Err(format!("the map has more than {MAX_EXTENTS} extents"));
        }
        let mut pos = from;
        for e in page.extents {
            if e.offset != pos {
                return Err(format!(
                    "extent at {} should start at {pos} (the extents must tile the file: no gap, no overlap)",
                    e.offset
                ));
            }
            let end = e
                .end()
                .filter(|&end| e.length > 0 && end <= size)
                .ok_or_else(|| {
                    format!(
                        "extent {}+{} is empty or ends past the file's size {size}",
                        e.offset, e.length
                    )
                })?;
            let source = match e.disk {
                None => Source::Zeros,
                Some(d) => {
                    if !known_disks.contains(&d) {
                        return Err(format!(
                            "extent names disk {d:?}, which this VM does not have"
                        ));
                    }
                    e.disk_offset
                        .checked_add(e.length)
                        .ok_or_else(|| format!("extent on {d} at {} overflows", e.disk_offset))?;
                    let i = match self.disks.iter().position(|x| *x == d) {
                        Some(i) => i,
                        None => {
                            self.disks.push(d);
                            self.disks.len() - 1
                        }
                    };
                    Source::Disk(i, e.disk_offset)
                }
            };
            self.runs.push(Run {
                offset: e.offset,
                length: e.length,
                source,
            });
            pos = end;
        }
        match page.next {
            Some(next) if next != pos || next <= from || next >= size => Err(format!(
                "the page ends at {pos} but says the next starts at {next} (from {from}, size {size})"
            )),
            Some(_) => Ok(None),
            None if pos != size => Err(format!("the map ends at {pos}, before the file's end {size}")),
            None => Ok(Some(MapOutcome::Layout(FileLayout {
                size,
                disks: std::mem::take(&mut self.disks),
                runs: std::mem::take(&mut self.runs),
            }))),
        }
    }
}

/// Fetches and checks the whole map of `path`; files smaller than
/// `min_size` are not mapped further than the first page.
pub async fn fetch_layout(
    client: &DaemonClient,
    path: &[u8],
    known_disks: &[String],
    min_size: u64,
) -> Result<MapOutcome, MapError> {
    let started = Instant::now();
    let mut b = LayoutBuilder::default();
    loop {
        if started.elapsed() > MAP_TIME {
            return Err(MapError::Bad(format!(
                "the map took longer than {MAP_TIME:?}"
            )));
        }
        let page = client
            .map_page(path, b.pos())
            .await
            .map_err(MapError::Client)?;
        if b.pages == 0 && page.size < min_size && page.unmappable.is_none() {
            return Ok(MapOutcome::Stream {
                size: page.size,
                reason: format!("{} bytes, below the {min_size}-byte threshold", page.size),
            });
        }
        if let Some(done) = b.add(page, known_disks).map_err(MapError::Bad)? {
            return Ok(done);
        }
    }
}

/// Why a map could not be had.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The daemon call failed.
    #[error(transparent)]
    Client(ClientError),
    /// The guest's map failed a check.
    #[error("the guest's map of the file is not acceptable: {0}")]
    Bad(String),
}

/// A piece of a mapped file as it is delivered.
#[derive(Debug)]
pub enum Piece {
    /// Bytes.
    Data(Bytes),
    /// This many zero bytes.
    Zeros(u64),
}

/// Connections to the export, kept for reuse by the reads.
struct Pool {
    socket: PathBuf,
    limit: Duration,
    idle: Mutex<HashMap<String, Vec<NbdConn>>>,
}

impl Pool {
    async fn take(&self, export: &str) -> Result<NbdConn, NbdError> {
        let got = self
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(export)
            .and_then(Vec::pop);
        match got {
            Some(c) => Ok(c),
            // Each read checks that it lies inside the export's size.
            None => NbdConn::connect(&self.socket, export, self.limit).await,
        }
    }

    fn give(&self, export: &str, c: NbdConn) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(export.to_owned())
            .or_default()
            .push(c);
    }
}

/// Reads the bytes `[first, last]` of a file laid out as `layout` from the
/// export at `socket` (`exports[i]` is the export of `layout.disks[i]`),
/// in order, into a channel of at most a few pieces.
pub struct MappedReader {
    rx: mpsc::Receiver<Result<Piece, NbdError>>,
    task: tokio::task::JoinHandle<()>,
    keepalive: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for MappedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MappedReader")
    }
}

impl Drop for MappedReader {
    fn drop(&mut self) {
        self.task.abort();
        self.keepalive.abort();
    }
}

impl MappedReader {
    /// Starts reading; every wait for the export is limited to `limit`.
    /// `daemon` is told every minute that its VM is still in use.
    pub fn start(
        layout: &FileLayout,
        exports: Vec<String>,
        socket: PathBuf,
        (first, last): (u64, u64),
        limit: Duration,
        daemon: DaemonClient,
    ) -> MappedReader {
        let pieces = plan(layout, &exports, first, last);
        let pool = Arc::new(Pool {
            socket,
            limit,
            idle: Mutex::new(HashMap::new()),
        });
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        let task = tokio::spawn(async move {
            let mut flight = VecDeque::new();
            let mut pieces = pieces.into_iter();
            loop {
                while flight.len() < IN_FLIGHT {
                    let Some(p) = pieces.next() else { break };
                    flight.push_back(tokio::spawn(read_piece(pool.clone(), p)));
                }
                let Some(front) = flight.pop_front() else {
                    break;
                };
                let got = match front.await {
                    Ok(r) => r,
                    Err(e) => Err(NbdError::Protocol {
                        export: "?".into(),
                        detail: format!("read task failed: {e}"),
                    }),
                };
                let failed = got.is_err();
                if tx.send(got).await.is_err() || failed {
                    break;
                }
            }
            for f in flight {
                f.abort();
            }
            let conns: Vec<(String, NbdConn)> = pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain()
                .flat_map(|(e, v)| v.into_iter().map(move |c| (e.clone(), c)))
                .collect();
            for (_, c) in conns {
                c.close().await;
            }
        });
        let keepalive = tokio::spawn(async move {
            loop {
                tokio::time::sleep(KEEPALIVE).await;
                if let Err(e) = daemon.status(false).await {
                    log::debug!("keep-alive status call failed: {e}");
                }
            }
        });
        MappedReader {
            rx,
            task,
            keepalive,
        }
    }

    /// The next piece, `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Piece, NbdError>> {
        self.rx.recv().await
    }

    /// [`Self::next`] for a `poll`-style reader.
    pub fn poll_next(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Piece, NbdError>>> {
        self.rx.poll_recv(cx)
    }
}

/// One read (or a run of zeros) of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Planned {
    length: u64,
    /// `(export, offset)`, or `None` for zeros.
    from: Option<(String, u64)>,
}

/// Cuts the runs of `[first, last]` into reads of at most [`CHUNK`] bytes.
fn plan(layout: &FileLayout, exports: &[String], first: u64, last: u64) -> Vec<Planned> {
    let end = last.saturating_add(1).min(layout.size);
    let mut out = Vec::new();
    for r in &layout.runs {
        let (a, b) = (r.offset.max(first), (r.offset + r.length).min(end));
        let mut at = a;
        while at < b {
            let n = (b - at).min(CHUNK);
            let from = match &r.source {
                Source::Zeros => None,
                Source::Disk(i, off) => Some((exports[*i].clone(), off + (at - r.offset))),
            };
            out.push(Planned { length: n, from });
            at += n;
        }
    }
    out
}

async fn read_piece(pool: Arc<Pool>, p: Planned) -> Result<Piece, NbdError> {
    let Some((export, offset)) = p.from else {
        return Ok(Piece::Zeros(p.length));
    };
    let mut c = pool.take(&export).await?;
    let mut buf = vec![0u8; p.length as usize];
    c.read(offset, &mut buf).await?;
    pool.give(&export, c);
    Ok(Piece::Data(Bytes::from(buf)))
}

#[cfg(test)]
mod tests;

//! A reader between the untrusted stream and the `tar` crate that follows
//! the archive's block structure and stops it before the crate buffers
//! anything large.
//!
//! The `tar` crate reads GNU long names and links (`L`, `K`) and pax local
//! headers (`x`) whole into memory before it hands out the entry they
//! describe, whatever size their header claims. This reader sees every
//! header first: an extension header (`x`, `g`, `L`, `K`) larger than
//! [`MAX_EXTENSION`] and a GNU sparse entry (`S`, whose extra header blocks
//! this reader does not follow) are errors before their data is read.
//!
//! It mirrors the crate's own view of the layout: the size of an entry is
//! its header's, or the pax `size` of the `x` header before it (which the
//! crate applies to the next non-extension entry only).

use std::io::{self, Read};

/// Largest extension header accepted (pax `x`/`g`, GNU `L`/`K`).
pub const MAX_EXTENSION: u64 = 1 << 20;

const BLOCK: u64 = 512;

/// Why the guard stopped the stream; carried inside an `io::Error`.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// An extension header over the limit.
    #[error(
        "the archive has a {what} header of {size} bytes, more than the limit of {} bytes",
        MAX_EXTENSION
    )]
    ExtensionTooLarge {
        /// Which kind ("pax extended", "GNU long name", ...).
        what: &'static str,
        /// Its size.
        size: u64,
    },
    /// A GNU sparse entry.
    #[error("refused archive entry '{entry}': GNU sparse tar entries are not supported; nothing was written for it")]
    Sparse {
        /// The entry's name.
        entry: String,
    },
}

enum Phase {
    /// Collecting a 512-byte header.
    Header { buf: Box<[u8; 512]>, filled: usize },
    /// Passing `left` bytes of entry data and padding; `capture` keeps the
    /// first `keep` of them (an extension header's content).
    Data { left: u64, keep: u64, kind: Capture },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Capture {
    None,
    Pax,
    LongName,
}

/// See the module documentation.
pub struct TarGuard<R> {
    inner: R,
    phase: Phase,
    captured: Vec<u8>,
    /// pax data of the pending `x` header (for the next entry).
    pending_pax: Option<Vec<u8>>,
    /// GNU long name of the next entry.
    pending_long_name: Option<Vec<u8>>,
    failed: bool,
}

fn header_phase() -> Phase {
    Phase::Header {
        buf: Box::new([0u8; 512]),
        filled: 0,
    }
}

/// The pax `size` of an `x` header's data, parsed as the `tar` crate does.
fn pax_size(data: &[u8]) -> Option<u64> {
    for ext in tar::PaxExtensions::new(data) {
        let ext = ext.ok()?;
        if ext.key() != Ok("size") {
            continue;
        }
        return ext.value().ok()?.parse().ok();
    }
    None
}

/// The pax `path` of an `x` header's data, if any.
fn pax_path(data: &[u8]) -> Option<Vec<u8>> {
    tar::PaxExtensions::new(data)
        .flatten()
        .find(|e| e.key() == Ok("path"))
        .map(|e| e.value_bytes().to_vec())
}

impl<R: Read> TarGuard<R> {
    /// Guards `inner`.
    pub fn new(inner: R) -> Self {
        TarGuard {
            inner,
            phase: header_phase(),
            captured: Vec::new(),
            pending_pax: None,
            pending_long_name: None,
            failed: false,
        }
    }

    /// The guarded reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// A complete header went by: check it and set up its data phase.
    fn on_header(&mut self, raw: &[u8; 512]) -> Result<Phase, GuardError> {
        if raw.iter().all(|&b| b == 0) {
            // End-of-archive marker (or padding): the next block is read as
            // a header again.
            return Ok(header_phase());
        }
        let h = tar::Header::from_byte_slice(raw);
        let kind = h.entry_type();
        // A header the crate rejects (bad number) ends the archive there;
        // a size of 0 keeps this reader consistent until it does.
        let hsize = h.entry_size().unwrap_or(0);
        let recognized = h.as_ustar().is_some() || h.as_gnu().is_some();
        let ext = match kind {
            tar::EntryType::XHeader => Some(("pax extended", Capture::Pax)),
            tar::EntryType::XGlobalHeader => Some(("pax global", Capture::None)),
            tar::EntryType::GNULongName => Some(("GNU long name", Capture::LongName)),
            tar::EntryType::GNULongLink => Some(("GNU long link", Capture::None)),
            _ => None,
        };
        if let Some((what, _)) = ext {
            if hsize > MAX_EXTENSION {
                return Err(GuardError::ExtensionTooLarge { what, size: hsize });
            }
        }
        // The crate collects `x`, `L` and `K` (with a ustar or GNU magic)
        // for the next entry; anything else is an entry to it, which
        // consumes what was collected. The pax size applies to it unless it
        // is itself an extension header (a `g`, or one without the magic).
        let (size, capture) = match ext {
            Some((_, capture)) if recognized && kind != tar::EntryType::XGlobalHeader => {
                (hsize, capture)
            }
            _ => {
                let pax = self.pending_pax.take();
                let long_name = self.pending_long_name.take();
                if kind == tar::EntryType::GNUSparse {
                    let name = pax
                        .as_deref()
                        .and_then(pax_path)
                        .or(long_name)
                        .unwrap_or_else(|| h.path_bytes().into_owned());
                    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                    return Err(GuardError::Sparse {
                        entry: String::from_utf8_lossy(&name[..end]).into_owned(),
                    });
                }
                let size = match ext {
                    Some(_) => hsize,
                    None => pax.as_deref().and_then(pax_size).unwrap_or(hsize),
                };
                (size, Capture::None)
            }
        };
        let padded = size.div_ceil(BLOCK).saturating_mul(BLOCK);
        if padded == 0 {
            if capture == Capture::Pax {
                self.pending_pax = Some(Vec::new());
            }
            return Ok(header_phase());
        }
        self.captured.clear();
        Ok(Phase::Data {
            left: padded,
            keep: if capture == Capture::None { 0 } else { size },
            kind: capture,
        })
    }

    /// Feeds bytes that just went by through the state machine. Reads are
    /// capped so that `data` never crosses a phase boundary.
    fn advance(&mut self, data: &[u8]) -> Result<(), GuardError> {
        match &mut self.phase {
            Phase::Header { buf, filled } => {
                buf[*filled..*filled + data.len()].copy_from_slice(data);
                *filled += data.len();
                if *filled == 512 {
                    let raw = std::mem::replace(buf, Box::new([0u8; 512]));
                    self.phase = self.on_header(&raw)?;
                }
            }
            Phase::Data { left, keep, kind } => {
                let n = data.len() as u64;
                if *keep > 0 {
                    let k = (*keep).min(n) as usize;
                    self.captured.extend_from_slice(&data[..k]);
                    *keep -= k as u64;
                }
                *left -= n;
                if *left == 0 {
                    let done = std::mem::take(&mut self.captured);
                    match kind {
                        Capture::Pax => self.pending_pax = Some(done),
                        Capture::LongName => self.pending_long_name = Some(done),
                        Capture::None => {}
                    }
                    self.phase = header_phase();
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("the archive was refused earlier"));
        }
        let room = match &self.phase {
            Phase::Header { filled, .. } => 512 - *filled,
            Phase::Data { left, .. } => (*left).min(usize::MAX as u64) as usize,
        };
        let cap = buf.len().min(room);
        let n = self.inner.read(&mut buf[..cap])?;
        if let Err(e) = self.advance(&buf[..n]) {
            self.failed = true;
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(n)
    }
}

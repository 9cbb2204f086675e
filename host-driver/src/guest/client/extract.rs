//! The streaming answer of an extract call, with an idle limit on every wait
//! for data: from the daemon over HTTP, or a big file read from the disks
//! by its map ([`super::mapped`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use file_restore_wire::endpoint;
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use hyper::Response;
use tokio::io::{AsyncRead, ReadBuf};

use super::mapped::{MappedReader, Piece};
use super::ClientError;
use crate::guest::transport::VsockAddr;

/// Zeros handed out for holes of a mapped file.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// A piece of an extract as [`ExtractStream::next_segment`] gives it.
#[derive(Debug)]
pub enum Segment {
    /// Bytes.
    Data(Bytes),
    /// This many zero bytes (a hole of a mapped file): a file sink may seek
    /// over them.
    Zeros(u64),
}

/// Where the bytes come from.
#[derive(Debug)]
enum Origin {
    /// The daemon's HTTP answer.
    Http(Incoming),
    /// QEMU's export of the disks, by the file's map.
    Mapped(MappedReader),
}

/// A streaming extract answer: headers up front, the body chunk by chunk.
///
/// Read it with [`ExtractStream::next_chunk`] or as a [`tokio::io::AsyncRead`]
/// (e.g. with `tokio::io::copy`). A connection that breaks mid-stream is an
/// error, never a silent short file.
#[derive(Debug)]
pub struct ExtractStream {
    /// HTTP status: 200, or 206 for a range.
    pub status: u16,
    /// `Content-Length`, when the daemon knows it (plain files).
    pub content_length: Option<u64>,
    /// `Content-Type` of the answer.
    pub content_type: Option<String>,
    /// `Content-Range` of a 206 answer.
    pub content_range: Option<String>,
    addr: VsockAddr,
    body: Origin,
    pending: Bytes,
    /// Zero bytes still to hand out before the next piece.
    zeros: u64,
    /// Longest wait for the next piece of data.
    idle: Duration,
    /// Armed while [`AsyncRead::poll_read`] waits for data.
    idle_timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ExtractStream {
    pub(super) fn new(resp: Response<Incoming>, addr: VsockAddr, idle: Duration) -> Self {
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let content_length = header(CONTENT_LENGTH).and_then(|v| v.parse().ok());
        let content_type = header(CONTENT_TYPE);
        let content_range = header(CONTENT_RANGE);
        ExtractStream {
            status: resp.status().as_u16(),
            content_length,
            content_type,
            content_range,
            addr,
            body: Origin::Http(resp.into_body()),
            pending: Bytes::new(),
            zeros: 0,
            idle,
            idle_timer: None,
        }
    }

    /// A stream of `content_length` bytes of a file read by its map.
    pub fn mapped(
        reader: MappedReader,
        addr: VsockAddr,
        content_length: u64,
        content_range: Option<String>,
        idle: Duration,
    ) -> Self {
        ExtractStream {
            status: if content_range.is_some() { 206 } else { 200 },
            content_length: Some(content_length),
            content_type: Some("application/octet-stream".into()),
            content_range,
            addr,
            body: Origin::Mapped(reader),
            pending: Bytes::new(),
            zeros: 0,
            idle,
            idle_timer: None,
        }
    }

    /// Whether the bytes come from the disks by the file's map rather
    /// than through the guest.
    pub fn is_mapped(&self) -> bool {
        matches!(self.body, Origin::Mapped(_))
    }

    /// The next piece: data, or (from a mapped file) a run of zeros;
    /// `None` at the end.
    pub async fn next_segment(&mut self) -> Result<Option<Segment>, ClientError> {
        if !self.pending.is_empty() {
            return Ok(Some(Segment::Data(std::mem::take(&mut self.pending))));
        }
        if self.zeros > 0 {
            return Ok(Some(Segment::Zeros(std::mem::take(&mut self.zeros))));
        }
        if let Origin::Mapped(r) = &mut self.body {
            return match r.next().await {
                None => Ok(None),
                Some(Ok(Piece::Data(b))) => Ok(Some(Segment::Data(b))),
                Some(Ok(Piece::Zeros(n))) => Ok(Some(Segment::Zeros(n))),
                Some(Err(e)) => Err(ClientError::Mapped(e)),
            };
        }
        Ok(self.next_chunk().await?.map(Segment::Data))
    }

    /// Zeros from the run being handed out, at most 1 MiB.
    fn take_zeros(&mut self) -> Bytes {
        let n = self.zeros.min(ZEROS.len() as u64);
        self.zeros -= n;
        Bytes::from_static(&ZEROS[..n as usize])
    }

    fn idle_error(&self) -> ClientError {
        ClientError::Timeout {
            what: "waiting for the next data of the extract from".into(),
            addr: self.addr.clone(),
            after: self.idle,
        }
    }

    /// The next piece of data, `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        if !self.pending.is_empty() {
            return Ok(Some(std::mem::take(&mut self.pending)));
        }
        if self.zeros > 0 {
            return Ok(Some(self.take_zeros()));
        }
        let body = match &mut self.body {
            Origin::Http(b) => b,
            Origin::Mapped(r) => {
                return match r.next().await {
                    None => Ok(None),
                    Some(Ok(Piece::Data(b))) => Ok(Some(b)),
                    Some(Ok(Piece::Zeros(n))) => {
                        self.zeros = n;
                        Ok(Some(self.take_zeros()))
                    }
                    Some(Err(e)) => Err(ClientError::Mapped(e)),
                };
            }
        };
        loop {
            let frame = tokio::time::timeout(self.idle, body.frame()).await;
            let Ok(frame) = frame else {
                return Err(self.idle_error());
            };
            match frame {
                None => return Ok(None),
                Some(Err(source)) => {
                    return Err(ClientError::Http {
                        endpoint: endpoint::EXTRACT,
                        addr: self.addr.clone(),
                        source,
                    })
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Ok(Some(data));
                        }
                    }
                }
            }
        }
    }
}

impl AsyncRead for ExtractStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_empty() {
            if this.zeros > 0 {
                this.pending = this.take_zeros();
                break;
            }
            let body = match &mut this.body {
                Origin::Http(b) => b,
                Origin::Mapped(r) => match r.poll_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                    Poll::Ready(Some(Ok(Piece::Data(b)))) => {
                        this.pending = b;
                        continue;
                    }
                    Poll::Ready(Some(Ok(Piece::Zeros(n)))) => {
                        this.zeros = n;
                        continue;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        return Poll::Ready(Err(io::Error::other(e.to_string())))
                    }
                },
            };
            match Pin::new(body).poll_frame(cx) {
                Poll::Pending => {
                    let idle = this.idle;
                    let timer = this
                        .idle_timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            this.idle_error().to_string(),
                        )));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Err(io::Error::other(format!(
                        "extract stream from {} broke: {e}",
                        this.addr
                    ))))
                }
                Poll::Ready(Some(Ok(frame))) => {
                    this.idle_timer = None;
                    if let Ok(data) = frame.into_data() {
                        this.pending = data;
                    }
                }
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

//! The streaming answer of an extract call, with an idle limit on every wait
//! for data.

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

use super::ClientError;
use crate::guest::transport::VsockAddr;

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
    body: Incoming,
    pending: Bytes,
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
            body: resp.into_body(),
            pending: Bytes::new(),
            idle,
            idle_timer: None,
        }
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
        loop {
            let frame = tokio::time::timeout(self.idle, self.body.frame()).await;
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
            match Pin::new(&mut this.body).poll_frame(cx) {
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

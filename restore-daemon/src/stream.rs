//! Bridges blocking producers (directory walks, archive writers, file reads)
//! to streaming HTTP bodies with bounded memory.
//!
//! A [`ChannelWriter`] is a `std::io::Write` that a blocking task writes into;
//! it hands chunks to a bounded channel that the [`ChannelBody`] drains as
//! the client reads. When the client goes away the channel closes and the
//! writer's next write fails with `BrokenPipe`, which stops the producer.

use bytes::Bytes;
use hyper::body::{Body, Frame};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Size of the chunks handed to the body.
pub const CHUNK: usize = 256 * 1024;
/// Chunks buffered between producer and client.
const DEPTH: usize = 4;

/// Creates a connected writer/body pair.
pub fn channel() -> (ChannelWriter, ChannelBody) {
    let (tx, rx) = mpsc::channel(DEPTH);
    (
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        },
        ChannelBody { rx },
    )
}

/// Blocking writer side; call only from blocking threads.
pub struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self, item: Result<Bytes, io::Error>) -> io::Result<()> {
        self.tx
            .blocking_send(item)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }

    /// Ends the stream with an error: the client sees the body break off
    /// instead of a silently truncated, seemingly complete download.
    pub fn fail(mut self, e: io::Error) {
        let _ = self.flush_buf();
        let _ = self.send(Err(e));
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.send(Ok(chunk))
    }
}

impl io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.tx.is_closed() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "client went away",
            ));
        }
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.flush_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf()
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = self.flush_buf();
    }
}

/// The HTTP body fed by a [`ChannelWriter`].
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Runs `prepare` on a blocking thread; if it succeeds, answers with a body
/// that `produce` then fills on the same thread. Errors of `prepare` become
/// the HTTP answer; errors of `produce` (after the answer started) break
/// the body off.
pub async fn spawn_stream<H, T, P, F>(
    prepare: P,
    produce: F,
) -> Result<(H, ChannelBody), crate::error::ApiError>
where
    H: Send + 'static,
    T: Send + 'static,
    P: FnOnce() -> Result<(H, T), crate::error::ApiError> + Send + 'static,
    F: FnOnce(T, &mut ChannelWriter) -> io::Result<()> + Send + 'static,
{
    let (head_tx, head_rx) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let (head, item) = match prepare() {
            Ok(x) => x,
            Err(e) => {
                let _ = head_tx.send(Err(e));
                return;
            }
        };
        let (mut w, body) = channel();
        if head_tx.send(Ok((head, body))).is_err() {
            return;
        }
        let result = produce(item, &mut w).and_then(|()| io::Write::flush(&mut w));
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                log::info!("client went away mid-stream")
            }
            Err(e) => {
                log::warn!("stream failed: {e}");
                w.fail(e);
            }
        }
    });
    head_rx
        .await
        .map_err(|_| crate::error::ApiError::internal("request worker ended unexpectedly"))?
}

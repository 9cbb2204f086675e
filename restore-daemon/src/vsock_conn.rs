//! A vsock connection whose writes survive a transiently full transmit path.
//!
//! When the host drains the vsock device slower than the daemon sends (a loaded
//! host, the vhost-user sidecar behind), packets queue up in the guest, and the
//! kernel's virtio transport fails `write(2)` with `ENOMEM` when it cannot
//! allocate another packet buffer (64 KiB, contiguous: hard to find when the page
//! cache fills the VM's RAM) — or `ENOBUFS`, seen by others when the TX queue is
//! full — instead of blocking or returning `EAGAIN`. tokio-vsock passes the errno
//! up as an ordinary error, hyper ends the connection and a download breaks off in
//! the middle (seen: 4 of 4 tar downloads of 256 MiB failed with the host's two
//! cores busy). Here both mean "try again in a moment": the write is retried after
//! a short pause, for at most [`GIVE_UP_AFTER`] in a row.
//!
//! Each write is also cut to at most [`MAX_WRITE`] bytes. The guest kernel makes
//! one virtio packet per write of up to 64 KiB, and since "vsock/virtio:
//! Allocate nonlinear SKBs for handling large transmit buffers" (Linux 6.17,
//! backported to 6.12 stable: Debian 13's 6.12.118 has it) a packet over ~32 KiB is
//! queued as a header and one descriptor per page. vhost-device-vsock 0.3 (its
//! `virtio-vsock` 0.10) reads a packet's data from the one descriptor after the
//! header only, finds it too short and drops the packet: the stream stalls for
//! good at the first large answer. Packets of at most [`MAX_WRITE`] stay linear
//! (one data descriptor) on every kernel.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Pause before a write that failed transiently is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(2);
/// The largest write passed to the socket: a virtio packet of this payload plus
/// its 44-byte header is still allocated linear (`SKB_WITH_OVERHEAD(32 KiB)` is
/// ~32,400 bytes on x86_64), with room to spare for a larger `skb_shared_info`.
const MAX_WRITE: usize = 28 * 1024;
/// How long writes may keep failing transiently before the error is passed on.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

/// A vsock stream that retries writes failing with `ENOMEM` or `ENOBUFS`.
pub struct VsockConn {
    inner: tokio_vsock::VsockStream,
    pause: Option<Pin<Box<Sleep>>>,
    /// When the current run of transient failures began.
    failing_since: Option<tokio::time::Instant>,
}

impl VsockConn {
    /// Wraps an accepted stream.
    pub fn new(inner: tokio_vsock::VsockStream) -> Self {
        VsockConn {
            inner,
            pause: None,
            failing_since: None,
        }
    }
}

/// Whether a write error only says the transmit path is full for now.
fn queue_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::ENOMEM))
}

impl AsyncRead for VsockConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for VsockConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let buf = &buf[..buf.len().min(MAX_WRITE)];
        loop {
            if let Some(pause) = self.pause.as_mut() {
                ready!(pause.as_mut().poll(cx));
                self.pause = None;
            }
            match Pin::new(&mut self.inner).poll_write(cx, buf) {
                Poll::Ready(Err(e)) if queue_full(&e) => {
                    let now = tokio::time::Instant::now();
                    let since = *self.failing_since.get_or_insert(now);
                    if now.duration_since(since) > GIVE_UP_AFTER {
                        return Poll::Ready(Err(e));
                    }
                    log::debug!("vsock transmit path full ({e}), retrying in {RETRY_PAUSE:?}");
                    self.pause = Some(Box::pin(tokio::time::sleep(RETRY_PAUSE)));
                }
                Poll::Ready(result) => {
                    self.failing_since = None;
                    return Poll::Ready(result);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_enobufs_means_retry() {
        assert!(queue_full(&io::Error::from_raw_os_error(libc::ENOBUFS)));
        assert!(queue_full(&io::Error::from_raw_os_error(libc::ENOMEM)));
        assert!(!queue_full(&io::Error::from_raw_os_error(libc::EPIPE)));
        assert!(!queue_full(&io::Error::from_raw_os_error(libc::ECONNRESET)));
        assert!(!queue_full(&io::Error::other("x")));
    }
}

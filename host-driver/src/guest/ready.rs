//! The guest's "vsock is up" signal, for the vhost-user transport.
//!
//! vhost-device-vsock (0.3) stops serving a VM for good when a host
//! connection arrives after QEMU has mapped the guest's memory but before
//! the guest driver's RX queue is ready: its queue walk fails with "queue not
//! ready", the error ends the sidecar's only vring worker thread, and from
//! then on no connection in either direction is ever answered, although the
//! daemon listens. Probing from the first millisecond of a boot hit that
//! window in about 1 of 100 boots (in 3 of 40 when probing every 0.5 ms).
//!
//! So the host does not connect first: it listens on the sidecar's socket for
//! guest-initiated connections to [`file_restore_wire::READY_PORT`] (`<hybrid socket>_<port>`)
//! and probes the daemon only after the guest has connected there, which it
//! can only do once its virtqueues are live. The signal carries no data and
//! grants nothing: a guest that never sends it just times out like one that
//! never answers.

use std::io;
use std::path::{Path, PathBuf};

/// A bound listener for the ready signal; removes its socket file on drop.
pub(crate) struct ReadySignal {
    listener: tokio::net::UnixListener,
    path: PathBuf,
}

impl ReadySignal {
    /// Binds `<hybrid_socket>_<READY_PORT>` (replacing a stale file).
    pub(crate) fn bind(hybrid_socket: &Path) -> io::Result<ReadySignal> {
        let mut path = hybrid_socket.as_os_str().to_owned();
        path.push(format!("_{}", file_restore_wire::READY_PORT));
        let path = PathBuf::from(path);
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("binding {}: {e}", path.display())))?;
        Ok(ReadySignal { listener, path })
    }

    /// Waits until the guest has connected once.
    pub(crate) async fn wait(&self) -> io::Result<()> {
        let (stream, _) = self.listener.accept().await?;
        drop(stream);
        Ok(())
    }
}

impl Drop for ReadySignal {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signal_is_a_connection_to_the_port_socket() {
        let dir = tempfile::tempdir().unwrap();
        let hybrid = dir.path().join("vm.vsock");
        let signal = ReadySignal::bind(&hybrid).unwrap();
        let port_socket = dir
            .path()
            .join(format!("vm.vsock_{}", file_restore_wire::READY_PORT));
        assert!(port_socket.exists());
        let waiting = tokio::spawn(async move {
            signal.wait().await.unwrap();
            signal
        });
        tokio::net::UnixStream::connect(&port_socket).await.unwrap();
        let signal = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the signal was not seen")
            .unwrap();
        drop(signal);
        assert!(!port_socket.exists(), "the socket file is removed on drop");
    }
}

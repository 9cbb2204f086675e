//! How the host reaches the daemon inside a VM: a vsock stream.
//!
//! Two ways exist, with the same daemon behind them:
//! - **kernel vsock**: the VM has a `vhost-vsock-device` with a guest CID
//!   and the host connects an `AF_VSOCK` socket to `(cid, port)`. This needs
//!   `/dev/vhost-vsock`, which the project's build machines do not have, so
//!   this path is written and unit-tested for its address handling but cannot
//!   be exercised end to end here.
//! - **hybrid Unix socket**: the VM's vsock device is served by a
//!   `vhost-device-vsock` sidecar, which exposes the guest's ports through one
//!   Unix socket. The host connects to it, writes `CONNECT <port>\n`, reads
//!   `OK <hostport>\n` and then speaks to the guest port on the same stream
//!   (the Firecracker "hybrid vsock" convention).
//!
//! Neither says who is at the other end: the client trusts a stream only
//! after the guest proved it knows the VM's ticket (`client/conn.rs`).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;

/// Longest answer line accepted from the hybrid-vsock handshake.
const MAX_HANDSHAKE_LINE: usize = 128;

/// Where a VM's daemon listens, as seen from the host.
///
/// Stored in the VM map (JSON), so its serialized form is part of that file's format.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VsockAddr {
    /// Kernel `AF_VSOCK`: the guest's CID and the daemon's port.
    ///
    /// Needs `/dev/vhost-vsock` on the host (not available on this project's
    /// build machines, which use [`VsockAddr::HybridUnix`] through a sidecar).
    Kernel {
        /// Guest context id (`vhost-vsock-device,guest-cid=N`).
        cid: u32,
        /// Vsock port of the daemon.
        port: u32,
    },
    /// A `vhost-device-vsock` Unix socket (`--uds-path`) and the guest port to
    /// ask for in the `CONNECT` handshake.
    HybridUnix {
        /// The sidecar's host-side Unix socket.
        path: PathBuf,
        /// Vsock port of the daemon.
        port: u32,
    },
}

impl VsockAddr {
    /// The daemon's vsock port.
    pub fn port(&self) -> u32 {
        match self {
            VsockAddr::Kernel { port, .. } | VsockAddr::HybridUnix { port, .. } => *port,
        }
    }
}

impl fmt::Display for VsockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VsockAddr::Kernel { cid, port } => write!(f, "vsock cid {cid} port {port}"),
            VsockAddr::HybridUnix { path, port } => {
                write!(f, "vsock port {port} via {}", path.display())
            }
        }
    }
}

/// Failure to open a stream to a VM's daemon.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The socket could not be connected.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where we tried to connect.
        addr: VsockAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the hybrid-vsock handshake failed.
    #[error("hybrid vsock handshake with {addr} failed: {source}")]
    HandshakeIo {
        /// Where we tried to connect.
        addr: VsockAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The sidecar answered something other than `OK <port>`.
    #[error("hybrid vsock handshake with {addr} refused: expected \"OK <port>\", got {got:?}")]
    HandshakeRefused {
        /// Where we tried to connect.
        addr: VsockAddr,
        /// What was read (lossy UTF-8), without the newline.
        got: String,
    },
}

/// A connected byte stream to the daemon, whichever transport carries it.
#[derive(Debug)]
pub enum VsockStream {
    /// A kernel `AF_VSOCK` stream.
    Kernel(tokio_vsock::VsockStream),
    /// A Unix stream after a successful `CONNECT` handshake.
    Unix(UnixStream),
}

/// Connects to the daemon at `addr`.
///
/// For [`VsockAddr::HybridUnix`] this performs the `CONNECT <port>\n` /
/// `OK <hostport>\n` handshake; the returned stream carries the guest port's
/// bytes. It sets no timeout: wrap the call in `tokio::time::timeout` (the
/// [`crate::guest::client::DaemonClient`] does).
///
/// [`VsockAddr::Kernel`] uses `AF_VSOCK` and cannot succeed on hosts without
/// `/dev/vhost-vsock` (such as this project's build machines).
pub async fn connect(addr: &VsockAddr) -> Result<VsockStream, TransportError> {
    match addr {
        VsockAddr::Kernel { cid, port } => {
            let target = tokio_vsock::VsockAddr::new(*cid, *port);
            tokio_vsock::VsockStream::connect(target)
                .await
                .map(VsockStream::Kernel)
                .map_err(|source| TransportError::Connect {
                    addr: addr.clone(),
                    source,
                })
        }
        VsockAddr::HybridUnix { path, port } => {
            let mut stream =
                UnixStream::connect(path)
                    .await
                    .map_err(|source| TransportError::Connect {
                        addr: addr.clone(),
                        source,
                    })?;
            hybrid_handshake(&mut stream, *port)
                .await
                .map_err(|e| e.into_transport_error(addr))?;
            Ok(VsockStream::Unix(stream))
        }
    }
}

/// Handshake failure before an address is attached to it.
enum HandshakeError {
    Io(io::Error),
    Refused(String),
}

impl HandshakeError {
    fn into_transport_error(self, addr: &VsockAddr) -> TransportError {
        match self {
            HandshakeError::Io(source) => TransportError::HandshakeIo {
                addr: addr.clone(),
                source,
            },
            HandshakeError::Refused(got) => TransportError::HandshakeRefused {
                addr: addr.clone(),
                got,
            },
        }
    }
}

/// Writes `CONNECT <port>\n` and checks the `OK <hostport>\n` answer.
///
/// Reads one byte at a time so that nothing after the newline (the guest's
/// first bytes) is consumed.
async fn hybrid_handshake<S>(stream: &mut S, port: u32) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .await
        .map_err(HandshakeError::Io)?;
    let mut line = Vec::with_capacity(16);
    loop {
        let mut byte = [0u8; 1];
        let n = stream.read(&mut byte).await.map_err(HandshakeError::Io)?;
        if n == 0 {
            let got = String::from_utf8_lossy(&line).into_owned();
            return Err(HandshakeError::Refused(if got.is_empty() {
                "end of stream (is the guest listening on that port?)".to_string()
            } else {
                got
            }));
        }
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
        if line.len() > MAX_HANDSHAKE_LINE {
            return Err(HandshakeError::Refused(
                String::from_utf8_lossy(&line).into_owned(),
            ));
        }
    }
    parse_ok_line(&line).map(|_| ())
}

/// Parses `OK <hostport>` (without the newline) and returns the host port.
fn parse_ok_line(line: &[u8]) -> Result<u32, HandshakeError> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    text.strip_prefix("OK ")
        .and_then(|p| p.trim().parse::<u32>().ok())
        .ok_or_else(|| HandshakeError::Refused(text.to_string()))
}

impl AsyncRead for VsockStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            VsockStream::Kernel(s) => Pin::new(s).poll_read(cx, buf),
            VsockStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for VsockStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            VsockStream::Kernel(s) => Pin::new(s).poll_write(cx, buf),
            VsockStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            VsockStream::Kernel(s) => Pin::new(s).poll_flush(cx),
            VsockStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            VsockStream::Kernel(s) => Pin::new(s).poll_shutdown(cx),
            VsockStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::UnixListener;

    #[test]
    fn addr_json_roundtrip() {
        let a = VsockAddr::HybridUnix {
            path: "/run/x/vm.vsock".into(),
            port: 1024,
        };
        let j = serde_json::to_value(&a).unwrap();
        assert_eq!(j["kind"], "hybrid_unix");
        assert_eq!(j["port"], 1024);
        assert_eq!(serde_json::from_value::<VsockAddr>(j).unwrap(), a);
        let k = VsockAddr::Kernel {
            cid: 42,
            port: 1024,
        };
        let j = serde_json::to_string(&k).unwrap();
        assert_eq!(j, r#"{"kind":"kernel","cid":42,"port":1024}"#);
        assert_eq!(serde_json::from_str::<VsockAddr>(&j).unwrap(), k);
        assert_eq!(k.port(), 1024);
        assert_eq!(k.to_string(), "vsock cid 42 port 1024");
    }

    #[test]
    fn ok_line_parsing() {
        assert_eq!(parse_ok_line(b"OK 1234").ok(), Some(1234));
        assert_eq!(parse_ok_line(b"OK 7\r").ok(), Some(7));
        assert!(parse_ok_line(b"ERR no listener").is_err());
        assert!(parse_ok_line(b"OK").is_err());
        assert!(parse_ok_line(b"OK x").is_err());
    }

    async fn fake_sidecar(answer: &'static [u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm.vsock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut r = BufReader::new(s);
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            assert_eq!(line, "CONNECT 1024\n");
            let mut s = r.into_inner();
            s.write_all(answer).await.unwrap();
            // Echo whatever follows, to check nothing was swallowed.
            let mut buf = [0u8; 5];
            if s.read_exact(&mut buf).await.is_ok() {
                s.write_all(&buf).await.unwrap();
            }
        });
        (dir, path)
    }

    #[tokio::test]
    async fn hybrid_handshake_ok_then_data() {
        let (_dir, path) = fake_sidecar(b"OK 1234\n").await;
        let addr = VsockAddr::HybridUnix { path, port: 1024 };
        let mut s = connect(&addr).await.unwrap();
        s.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
    }

    #[tokio::test]
    async fn hybrid_handshake_refused_names_answer() {
        let (_dir, path) = fake_sidecar(b"NOPE\n").await;
        let addr = VsockAddr::HybridUnix { path, port: 1024 };
        let err = connect(&addr).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, TransportError::HandshakeRefused { .. }));
        assert!(msg.contains("\"NOPE\""), "{msg}");
        assert!(msg.contains("vm.vsock"), "{msg}");
    }

    #[tokio::test]
    async fn missing_socket_is_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        let addr = VsockAddr::HybridUnix {
            path: dir.path().join("absent.sock"),
            port: 1024,
        };
        let err = connect(&addr).await.unwrap_err();
        assert!(matches!(err, TransportError::Connect { .. }));
        assert!(err.to_string().contains("absent.sock"));
    }
}

//! Listeners (vsock in the VM; Unix socket or loopback TCP in dev mode) and
//! the HTTP/1.1 connection loop.

use crate::api;
use crate::state::State;
use anyhow::{bail, Context};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest request head accepted (headers, URI).
const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// Most connections served at once; one more is closed at once (a flood of
/// idle connections must not exhaust the guest's memory or descriptors).
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request head once it started one.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// AF_VSOCK, any CID, this port.
    Vsock(u32),
    /// A Unix socket path (dev mode).
    Unix(PathBuf),
    /// A loopback TCP address (dev mode).
    Tcp(std::net::SocketAddr),
}

impl std::str::FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(ListenAddr::Unix(p.into()));
        }
        if let Some(a) = s.strip_prefix("tcp:") {
            let addr: std::net::SocketAddr = a
                .parse()
                .map_err(|e| format!("bad TCP address {a:?}: {e}"))?;
            if !addr.ip().is_loopback() {
                return Err(format!("dev mode listens on loopback only, not {addr}"));
            }
            return Ok(ListenAddr::Tcp(addr));
        }
        if let Some(p) = s.strip_prefix("vsock:") {
            return p
                .parse()
                .map(ListenAddr::Vsock)
                .map_err(|e| format!("bad vsock port {p:?}: {e}"));
        }
        Err(format!(
            "listen address {s:?} must be unix:PATH, tcp:127.0.0.1:PORT or vsock:PORT"
        ))
    }
}

trait Conn: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Conn for T {}

enum Listener {
    Vsock(tokio_vsock::VsockListener),
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Box<dyn Conn>> {
        Ok(match self {
            Listener::Vsock(l) => Box::new(crate::vsock_conn::VsockConn::new(l.accept().await?.0)),
            Listener::Unix(l) => Box::new(l.accept().await?.0),
            Listener::Tcp(l) => Box::new(l.accept().await?.0),
        })
    }
}

async fn bind(addr: &ListenAddr) -> anyhow::Result<Listener> {
    Ok(match addr {
        ListenAddr::Vsock(port) => {
            // The vsock transport may finish probing a moment after its
            // module loaded: retry briefly before giving up.
            let mut last = None;
            for _ in 0..50 {
                match tokio_vsock::VsockListener::bind(tokio_vsock::VsockAddr::new(
                    libc::VMADDR_CID_ANY,
                    *port,
                )) {
                    Ok(l) => return Ok(Listener::Vsock(l)),
                    Err(e) => last = Some(e),
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            match last {
                Some(e) => {
                    return Err(e).with_context(|| format!("cannot listen on vsock port {port}"))
                }
                None => bail!("cannot listen on vsock port {port}"),
            }
        }
        ListenAddr::Unix(p) => {
            let _ = std::fs::remove_file(p);
            Listener::Unix(
                tokio::net::UnixListener::bind(p)
                    .with_context(|| format!("cannot listen on {}", p.display()))?,
            )
        }
        ListenAddr::Tcp(a) => Listener::Tcp(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a}"))?,
        ),
    })
}

/// Binds `addr` and serves the API on a background task.
///
/// In the VM (`boot_clock`), the first accepted connection is noted on the
/// console with the guest uptime, for boot-time measurements.
pub async fn serve(addr: ListenAddr, state: Arc<State>, boot_clock: bool) -> anyhow::Result<()> {
    let listener = bind(&addr).await?;
    log::info!("listening on {addr:?}");
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        let mut first = boot_clock;
        loop {
            let conn = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            if std::mem::take(&mut first) {
                eprintln!(
                    "restore-daemon: boot: first connection {:.3} s (guest uptime)",
                    crate::pid1::uptime_secs()
                );
            }
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                log::warn!("{MAX_CONNECTIONS} connections open: closing a new one");
                drop(conn);
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let svc = service_fn(move |req| api::handle(state.clone(), req));
                let result = hyper::server::conn::http1::Builder::new()
                    .max_buf_size(MAX_REQUEST_HEAD)
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(conn), svc)
                    .await;
                if let Err(e) = result {
                    let mut msg = e.to_string();
                    let mut cause = std::error::Error::source(&e);
                    while let Some(c) = cause {
                        msg.push_str(&format!(": {c}"));
                        cause = c.source();
                    }
                    log::info!("connection ended: {msg}");
                }
            });
        }
    });
    Ok(())
}

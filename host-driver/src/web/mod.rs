//! `file-restore serve`: a local web UI on the same library as the CLI.
//!
//! One HTTP/1.1 server (hyper) on a loopback address by default; every
//! request must carry the session token (from the printed URL once, then an
//! HttpOnly `SameSite=Strict` cookie) and a `Host` header naming the listen
//! address (`security`). Only the SOURCEs given on the command line and the
//! images and snapshots found under the `--root` directories are reachable
//! (`catalog`); every VM call goes through a [`BlockRestoreDriver`]. The
//! page's HTML, JS and CSS are embedded in the binary (`assets`).
//!
//! Folder: the server, routes, catalog, downloads and archives, the
//! search stream and the Versions answer, the security guard. Every VM call
//! goes through `driver` (or `versions`, one path across a VM's snapshots,
//! on top of it) and nothing else; below them web imports only `source`
//! (the catalog classifies SOURCE arguments and finds images),
//! `helper::initrd::new_ticket` (random session tokens) and `util`.

mod answer;
mod archive;
mod assets;
mod catalog;
mod download;
mod query;
mod routes;
mod search;
mod security;
mod unlock;
mod versions;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::driver::BlockRestoreDriver;
pub use catalog::{Catalog, CatalogEntry};

/// The port `serve` tries first when no `--listen` is given.
pub const DEFAULT_PORT: u16 = 8917;

/// What `serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `--listen`: the address to listen on (default 127.0.0.1:[`DEFAULT_PORT`],
    /// or a free port when that one is taken).
    pub listen: Option<SocketAddr>,
    /// `--allow-remote`: listening on a non-loopback address is allowed.
    pub allow_remote: bool,
    /// `--root DIR`: directories whose images and snapshots are offered.
    pub roots: Vec<PathBuf>,
    /// SOURCE arguments (images, snapshot directories, NBD URIs).
    pub sources: Vec<String>,
}

/// An error that keeps `serve` from running.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A non-loopback address without `--allow-remote`.
    #[error(
        "{0} is not a loopback address: anyone who can reach it and learns the URL can read the \
         images; pass --allow-remote to listen there anyway"
    )]
    RemoteRefused(SocketAddr),
    /// The socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A SOURCE or root could not be used.
    #[error("{0}")]
    Catalog(String),
    /// No randomness for the tokens.
    #[error("cannot make the session token: {0}")]
    Token(String),
    /// Waiting for SIGINT/SIGTERM failed.
    #[error("cannot wait for signals: {0}")]
    Signal(#[source] std::io::Error),
}

/// A listening server, before it serves (the URL is known then).
pub struct Server<D> {
    listener: TcpListener,
    state: Arc<answer::State<D>>,
    url: String,
}

impl<D: BlockRestoreDriver> Server<D> {
    /// Checks the options, builds the catalog and opens the socket.
    pub async fn bind(opts: ServeOptions, driver: Arc<D>) -> Result<Server<D>, ServeError> {
        let catalog = Catalog::new(&opts.sources, &opts.roots).map_err(ServeError::Catalog)?;
        let listener = match opts.listen {
            Some(addr) => {
                if !addr.ip().is_loopback() && !opts.allow_remote {
                    return Err(ServeError::RemoteRefused(addr));
                }
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServeError::Listen { addr, source })?
            }
            None => {
                let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
                let fixed = SocketAddr::new(ip, DEFAULT_PORT);
                match TcpListener::bind(fixed).await {
                    Ok(l) => l,
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                        let any = SocketAddr::new(ip, 0);
                        TcpListener::bind(any)
                            .await
                            .map_err(|source| ServeError::Listen { addr: any, source })?
                    }
                    Err(source) => {
                        return Err(ServeError::Listen {
                            addr: fixed,
                            source,
                        })
                    }
                }
            }
        };
        let addr = listener.local_addr().map_err(|source| ServeError::Listen {
            addr: opts
                .listen
                .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)),
            source,
        })?;
        if !addr.ip().is_loopback() {
            log::warn!(
                "listening on {addr}, which is not a loopback address: the session token travels \
                 over plain HTTP; anyone on the network who learns the URL can read the images"
            );
        }
        let guard = security::Guard::new(addr).map_err(|e| ServeError::Token(e.to_string()))?;
        let url = format!("http://{}/?token={}", guard.authority(), guard.token());
        let state = Arc::new(answer::State::new(driver, catalog, guard));
        Ok(Server {
            listener,
            state,
            url,
        })
    }

    /// The URL to open: `http://ADDR:PORT/?token=…`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves until `shutdown` completes; connections still open then are
    /// dropped.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                a = self.listener.accept() => a,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    log::warn!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let state = self.state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(routes::handle(&state, req).await) }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    log::debug!("web connection: {e}");
                }
            });
        }
    }
}

/// `file-restore serve`: binds, prints the URL on stdout and serves until
/// SIGINT or SIGTERM.
pub async fn serve<D: BlockRestoreDriver>(
    opts: ServeOptions,
    driver: Arc<D>,
) -> Result<(), ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signal)?;
    let server = Server::bind(opts, driver).await?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // A closed stdout must not keep the server from running.
        let _ = writeln!(out, "{}", server.url());
        let _ = out.flush();
    }
    server
        .run(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        })
        .await;
    Ok(())
}

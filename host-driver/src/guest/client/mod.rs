//! HTTP client for the restore daemon's API (see `file_restore_wire`).
//!
//! One vsock connection per request: on a warm VM a new connection and round
//! trip costs about 4 ms, which is far below anything a person notices, and it
//! keeps the client free of connection-pool state. Each connection starts
//! with the guest's proof that it knows the ticket (`conn.rs`).
//!
//! Folder: the client and its errors here, the connection with the proof
//! handshake (`conn.rs`), extract streams (`extract.rs`), a big file read
//! from the disks by its map ([`mapped`]). May import `guest::transport`,
//! `nbd` and `util` only.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use file_restore_wire::{
    encode_path, endpoint, query_escape, Entry, ErrorBody, ExtractFormat, Status, UnlockAnswer,
    UnlockRequest, API_VERSION, TICKET_SCHEME,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HOST, RANGE};
use hyper::{Method, Request, Response};

use crate::guest::transport::{TransportError, VsockAddr};

mod conn;
mod extract;
mod find;
pub mod mapped;
pub use extract::{ExtractStream, Segment};
pub use find::{FindLines, FindStream};

/// Largest JSON answer (listing, status) read into memory.
const MAX_JSON_BODY: usize = 256 << 20;
/// Largest stat answer (one entry).
const MAX_STAT_BODY: usize = 1 << 20;
/// Largest error body read.
const MAX_ERROR_BODY: usize = 64 << 10;
/// How long an error answer's body may take to arrive; after that the error is
/// reported with the status alone (a stalled guest must not hang the CLI).
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// An error talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The stream could not be opened.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Connecting or waiting for the answer took too long.
    #[error("{what} {addr}: no answer within {after:?}")]
    Timeout {
        /// What we were doing ("connecting to", "waiting for the answer of … from").
        what: String,
        /// The daemon's address.
        addr: VsockAddr,
        /// The time limit that passed.
        after: Duration,
    },
    /// HTTP-level failure (connection reset, malformed answer, truncated body).
    // The cause is reported through `source()` only, so that a cause chain
    // ({:#}, error_chain) names it once.
    #[error("HTTP error on {endpoint} at {addr}")]
    Http {
        /// The API endpoint.
        endpoint: &'static str,
        /// The daemon's address.
        addr: VsockAddr,
        /// The underlying error.
        #[source]
        source: hyper::Error,
    },
    /// The daemon answered with a non-2xx status and this message.
    #[error("{endpoint}: daemon answered HTTP {status}: {message}")]
    Daemon {
        /// The API endpoint.
        endpoint: &'static str,
        /// The HTTP status code.
        status: u16,
        /// The daemon's `error` message (or the body, or the status reason).
        message: String,
    },
    /// The answer could not be understood.
    #[error("{endpoint}: unexpected answer from the daemon: {detail}")]
    BadResponse {
        /// The API endpoint.
        endpoint: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The daemon speaks another API version.
    #[error("daemon at {addr} speaks API version {got}, this host driver needs {API_VERSION}: rebuild the initramfs")]
    ApiVersion {
        /// The daemon's address.
        addr: VsockAddr,
        /// The version it reported.
        got: u32,
    },
    /// The guest did not prove that it knows the ticket (see
    /// [`file_restore_wire::proof`]): the ticket was not sent to it and
    /// nothing it said is used.
    #[error("guest at {addr} did not prove it knows the ticket: {detail}; not trusting it")]
    NoProof {
        /// The daemon's address.
        addr: VsockAddr,
        /// What it answered instead.
        detail: String,
    },
    /// A status call with the ticket got the liveness-only answer, which the
    /// daemon gives when it does not accept the ticket.
    #[error("daemon at {addr} does not accept this VM's ticket (status answered liveness only)")]
    TicketRejected {
        /// The daemon's address.
        addr: VsockAddr,
    },
    /// Reading a big file from the disks through QEMU's export failed.
    #[error("reading the file from the disks through QEMU's NBD export")]
    Mapped(#[source] crate::nbd::NbdError),
    /// The request could not be built (e.g. a ticket with control characters).
    #[error("cannot build request for {endpoint}: {detail}")]
    Request {
        /// The API endpoint.
        endpoint: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl ClientError {
    /// The HTTP status when the daemon answered with an error.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ClientError::Daemon { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The daemon's own error message, when it sent one.
    pub fn daemon_message(&self) -> Option<&str> {
        match self {
            ClientError::Daemon { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// A client for one VM's daemon: where it listens and the ticket it expects.
#[derive(Clone)]
pub struct DaemonClient {
    addr: VsockAddr,
    ticket: String,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl fmt::Debug for DaemonClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DaemonClient")
            .field("addr", &self.addr)
            .field("ticket", &"<redacted>")
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

impl DaemonClient {
    /// Default limit for connecting (including the hybrid handshake and the
    /// guest's ticket proof).
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default limit for the answer's headers (bodies may stream for longer).
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
    /// Limit for a stat answer with a hash: the guest reads the whole file
    /// first (a few GiB at the guest's speed under TCG).
    pub const HASH_TIMEOUT: Duration = Duration::from_secs(1800);

    /// A client for the daemon at `addr` with `ticket`, default timeouts.
    pub fn new(addr: VsockAddr, ticket: impl Into<String>) -> Self {
        DaemonClient {
            addr,
            ticket: ticket.into(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
        }
    }

    /// Sets the connect and response-header time limits.
    pub fn with_timeouts(mut self, connect: Duration, response: Duration) -> Self {
        self.connect_timeout = connect;
        self.response_timeout = response;
        self
    }

    /// The longest wait for an answer (and for each piece of a stream).
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// The daemon's address.
    pub fn addr(&self) -> &VsockAddr {
        &self.addr
    }

    /// Full status (with the ticket). `keep_timeout` asks the daemon not to
    /// count this call as activity (so the idle watchdog keeps running).
    ///
    /// A liveness-only answer (the daemon's reply to a ticket it does not
    /// accept) is [`ClientError::TicketRejected`].
    pub async fn status(&self, keep_timeout: bool) -> Result<Status, ClientError> {
        let uri = if keep_timeout {
            format!("{}?keep-timeout=1", endpoint::STATUS)
        } else {
            endpoint::STATUS.to_string()
        };
        let resp = self
            .send(Method::GET, endpoint::STATUS, &uri, true, None)
            .await?;
        let status: Status = self.json(endpoint::STATUS, resp).await?;
        let status = self.check_version(status)?;
        if status.uptime.is_none()
            && status.scan.is_none()
            && status.disks.is_none()
            && status.timeout_left.is_none()
        {
            return Err(ClientError::TicketRejected {
                addr: self.addr.clone(),
            });
        }
        Ok(status)
    }

    /// Liveness only: status without the ticket (the daemon fills in little
    /// more than `api_version` and `alive`).
    pub async fn status_liveness(&self) -> Result<Status, ClientError> {
        let resp = self
            .send(Method::GET, endpoint::STATUS, endpoint::STATUS, false, None)
            .await?;
        let status: Status = self.json(endpoint::STATUS, resp).await?;
        self.check_version(status)
    }

    /// Lists the entries below `path` (raw bytes, e.g. `b"/"` or `b"/disk0/part/1/etc"`).
    pub async fn list(&self, path: &[u8]) -> Result<Vec<Entry>, ClientError> {
        let uri = format!(
            "{}?path={}",
            endpoint::LIST,
            query_escape(&encode_path(path))
        );
        let resp = self
            .send(Method::GET, endpoint::LIST, &uri, true, None)
            .await?;
        let body = self.body(endpoint::LIST, resp).await?;
        parse_listing(&body)
    }

    /// Starts an extract stream of `path`.
    ///
    /// `range` is an HTTP byte range `(first, last)` with `last` inclusive
    /// (`None`: to the end); only meaningful for [`ExtractFormat::Plain`].
    pub async fn extract(
        &self,
        path: &[u8],
        format: ExtractFormat,
        zstd: bool,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<ExtractStream, ClientError> {
        let uri = extract_uri(path, format, zstd);
        let range = range.map(|(first, last)| match last {
            Some(last) => format!("bytes={first}-{last}"),
            None => format!("bytes={first}-"),
        });
        let resp = self
            .send(Method::GET, endpoint::EXTRACT, &uri, true, range)
            .await?;
        Ok(ExtractStream::new(
            resp,
            self.addr.clone(),
            self.response_timeout,
        ))
    }

    /// One page of the map of the regular file at `path`, from file offset
    /// `from` (`GET /api/map`). Checked by [`mapped::FileLayout`], not here.
    pub async fn map_page(
        &self,
        path: &[u8],
        from: u64,
    ) -> Result<file_restore_wire::map::FileMap, ClientError> {
        let uri = format!(
            "{}?path={}&from={from}",
            endpoint::MAP,
            query_escape(&encode_path(path))
        );
        let resp = self
            .send(Method::GET, endpoint::MAP, &uri, true, None)
            .await?;
        self.json_at_most(endpoint::MAP, resp, mapped::MAX_PAGE_BYTES)
            .await
    }

    /// Starts a search below `path` (`GET /api/find`); the matches arrive
    /// while the guest walks ([`FindStream::next`]).
    pub async fn find(
        &self,
        path: &[u8],
        query: &file_restore_wire::find::FindQuery,
    ) -> Result<FindStream, ClientError> {
        let uri = format!(
            "{}?path={}{}",
            endpoint::FIND,
            query_escape(&encode_path(path)),
            query.to_query()
        );
        let resp = self
            .send(Method::GET, endpoint::FIND, &uri, true, None)
            .await?;
        Ok(FindStream::new(
            resp.into_body(),
            query.max_results,
            self.addr.clone(),
            self.response_timeout,
        ))
    }

    /// One entry (`GET /api/stat`), with the SHA-256 of a regular file's
    /// content when `hash` is set. Hashing reads the whole file in the guest,
    /// so that answer may take up to [`Self::HASH_TIMEOUT`].
    pub async fn stat(
        &self,
        path: &[u8],
        hash: bool,
    ) -> Result<file_restore_wire::find::StatAnswer, ClientError> {
        let mut uri = format!(
            "{}?path={}",
            endpoint::STAT,
            query_escape(&encode_path(path))
        );
        let client = if hash {
            uri.push_str("&hash=sha256");
            self.clone()
                .with_timeouts(self.connect_timeout, Self::HASH_TIMEOUT)
        } else {
            self.clone()
        };
        let resp = client
            .send(Method::GET, endpoint::STAT, &uri, true, None)
            .await?;
        let answer: file_restore_wire::find::StatAnswer = client
            .json_at_most(endpoint::STAT, resp, MAX_STAT_BODY)
            .await?;
        if answer
            .sha256
            .as_ref()
            .is_some_and(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(ClientError::BadResponse {
                endpoint: endpoint::STAT,
                detail: "sha256 is not 64 hex digits".into(),
            });
        }
        Ok(answer)
    }

    /// Sends passphrases for the VM's locked LUKS containers; the answer
    /// says what became of each container. The passphrases travel only in
    /// this request's body, on the ticket-authenticated connection.
    pub async fn unlock(&self, passphrases: &[Vec<u8>]) -> Result<UnlockAnswer, ClientError> {
        let req = UnlockRequest {
            passphrases: passphrases.iter().map(|p| encode_path(p)).collect(),
        };
        let body = serde_json::to_vec(&req).map_err(|e| ClientError::Request {
            endpoint: endpoint::UNLOCK,
            detail: e.to_string(),
        })?;
        drop(req);
        let resp = self
            .send_body(
                Method::POST,
                endpoint::UNLOCK,
                endpoint::UNLOCK,
                true,
                None,
                Bytes::from(body),
            )
            .await?;
        self.json(endpoint::UNLOCK, resp).await
    }

    /// Asks the daemon to power the VM off.
    pub async fn stop(&self) -> Result<(), ClientError> {
        let resp = self
            .send(Method::POST, endpoint::STOP, endpoint::STOP, true, None)
            .await?;
        // Drain the (small) body; the VM may go away while we read it.
        let _ = Limited::new(resp.into_body(), MAX_ERROR_BODY)
            .collect()
            .await;
        Ok(())
    }

    fn check_version(&self, status: Status) -> Result<Status, ClientError> {
        if status.api_version != API_VERSION {
            return Err(ClientError::ApiVersion {
                addr: self.addr.clone(),
                got: status.api_version,
            });
        }
        Ok(status)
    }

    /// Opens a connection (the guest proves it knows the ticket first), sends
    /// one request on it, returns a 2xx answer or the daemon's error.
    async fn send(
        &self,
        method: Method,
        endpoint: &'static str,
        uri: &str,
        auth: bool,
        range: Option<String>,
    ) -> Result<Response<Incoming>, ClientError> {
        self.send_body(method, endpoint, uri, auth, range, Bytes::new())
            .await
    }

    /// [`Self::send`] with a request body.
    async fn send_body(
        &self,
        method: Method,
        endpoint: &'static str,
        uri: &str,
        auth: bool,
        range: Option<String>,
        body: Bytes,
    ) -> Result<Response<Incoming>, ClientError> {
        let timeout_err = |what: String, after| ClientError::Timeout {
            what,
            addr: self.addr.clone(),
            after,
        };
        let http_err = |source| ClientError::Http {
            endpoint,
            addr: self.addr.clone(),
            source,
        };

        let mut sender = conn::open(&self.addr, &self.ticket, self.connect_timeout).await?;
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(HOST, "localhost");
        if auth {
            builder = builder.header(AUTHORIZATION, format!("{TICKET_SCHEME} {}", self.ticket));
        }
        if let Some(range) = range {
            builder = builder.header(RANGE, range);
        }
        let req = builder
            .body(Full::new(body))
            .map_err(|e| ClientError::Request {
                endpoint,
                detail: e.to_string(),
            })?;

        let resp = tokio::time::timeout(self.response_timeout, sender.send_request(req))
            .await
            .map_err(|_| {
                timeout_err(
                    format!("waiting for the answer of {endpoint} from"),
                    self.response_timeout,
                )
            })?
            .map_err(http_err)?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(error_from_response(endpoint, resp).await)
        }
    }

    /// A JSON answer's body, at most [`MAX_JSON_BODY`] bytes.
    /// The whole body must arrive within the response timeout: a guest that
    /// sends the head and then stalls gets a timeout, not a hang.
    async fn body(
        &self,
        endpoint: &'static str,
        resp: Response<Incoming>,
    ) -> Result<Bytes, ClientError> {
        self.body_at_most(endpoint, resp, MAX_JSON_BODY).await
    }

    /// [`Self::body`] with its own size limit.
    async fn body_at_most(
        &self,
        endpoint: &'static str,
        resp: Response<Incoming>,
        max: usize,
    ) -> Result<Bytes, ClientError> {
        let collect = Limited::new(resp.into_body(), max).collect();
        Ok(tokio::time::timeout(self.response_timeout, collect)
            .await
            .map_err(|_| ClientError::Timeout {
                what: format!("reading the answer of {endpoint} from"),
                addr: self.addr.clone(),
                after: self.response_timeout,
            })?
            .map_err(|e| ClientError::BadResponse {
                endpoint,
                detail: format!("reading the body from {}: {e}", self.addr),
            })?
            .to_bytes())
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &'static str,
        resp: Response<Incoming>,
    ) -> Result<T, ClientError> {
        self.json_at_most(endpoint, resp, MAX_JSON_BODY).await
    }

    /// [`Self::json`] with its own size limit.
    async fn json_at_most<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &'static str,
        resp: Response<Incoming>,
        max: usize,
    ) -> Result<T, ClientError> {
        let body = self.body_at_most(endpoint, resp, max).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::BadResponse {
            endpoint,
            detail: format!("invalid JSON: {e}"),
        })
    }
}

/// The query for an extract call.
fn extract_uri(path: &[u8], format: ExtractFormat, zstd: bool) -> String {
    let mut uri = format!(
        "{}?path={}&format={}",
        endpoint::EXTRACT,
        query_escape(&encode_path(path)),
        format.as_str()
    );
    if zstd {
        uri.push_str("&zstd=1");
    }
    uri
}

/// A listing: a bare array of entries, or an object holding it under
/// `entries` or `data` (other fields ignored). Deserialized straight into
/// [`Entry`] values, never through an untyped `serde_json::Value` tree
/// (several times the size of the entries for a large directory).
struct Listing(Vec<Entry>);

impl<'de> serde::Deserialize<'de> for Listing {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Listing;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of entries, or an object with `entries` or `data`")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Listing, A::Error> {
                let mut out = Vec::new();
                while let Some(e) = seq.next_element::<Entry>()? {
                    out.push(e);
                }
                Ok(Listing(out))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Listing, A::Error> {
                let mut found: Option<Vec<Entry>> = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if found.is_none() && (key == "entries" || key == "data") {
                        found = Some(map.next_value()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                found
                    .map(Listing)
                    .ok_or_else(|| serde::de::Error::missing_field("entries"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a listing body (see `Listing`).
pub fn parse_listing(body: &[u8]) -> Result<Vec<Entry>, ClientError> {
    serde_json::from_slice::<Listing>(body)
        .map(|l| l.0)
        .map_err(|e| ClientError::BadResponse {
            endpoint: endpoint::LIST,
            detail: format!("not a list of entries: {e}"),
        })
}

/// Turns a non-2xx answer into [`ClientError::Daemon`], keeping the daemon's message.
async fn error_from_response(endpoint: &'static str, resp: Response<Incoming>) -> ClientError {
    let status = resp.status();
    let collect = Limited::new(resp.into_body(), MAX_ERROR_BODY).collect();
    let body = match tokio::time::timeout(ERROR_BODY_TIMEOUT, collect).await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(_)) | Err(_) => Bytes::new(),
    };
    ClientError::Daemon {
        endpoint,
        status: status.as_u16(),
        message: error_message(status, &body),
    }
}

/// The `error` field of a JSON error body, else the body text, else the status reason.
fn error_message(status: hyper::StatusCode, body: &[u8]) -> String {
    if let Ok(e) = serde_json::from_slice::<ErrorBody>(body) {
        return e.error;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("no error message")
            .to_string()
    } else {
        text.chars().take(500).collect()
    }
}

#[cfg(test)]
mod tests;

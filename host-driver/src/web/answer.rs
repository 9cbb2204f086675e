//! What every route of the web API shares, below the router and the
//! handlers of their own modules (`search`, `versions`): the server's state,
//! JSON and error answers, a driver error as an answer, and the request's
//! source checked against the catalog.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use file_restore_wire::decode_path;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::catalog::Catalog;
use super::query::param;
use super::security::Guard;
use crate::driver::{BlockRestoreDriver, DriverError};
use crate::util::text::error_chain;

/// The body of every answer.
pub type Body = BoxBody<Bytes, io::Error>;

/// What the handlers share.
pub struct State<D> {
    pub(super) driver: Arc<D>,
    pub(super) catalog: Catalog,
    pub(super) guard: Guard,
}

impl<D: BlockRestoreDriver> State<D> {
    /// The state of one server.
    pub fn new(driver: Arc<D>, catalog: Catalog, guard: Guard) -> State<D> {
        State {
            driver,
            catalog,
            guard,
        }
    }
}

pub(super) fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).map_err(|n| match n {}).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub(super) fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(v) => full(status, "application/json", v),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("JSON: {e}")),
    }
}

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    #[derive(Serialize)]
    struct E {
        error: String,
    }
    let body = serde_json::to_vec(&E {
        error: message.into(),
    })
    .unwrap_or_else(|_| b"{\"error\":\"?\"}".to_vec());
    full(status, "application/json", body)
}

/// A driver error as an answer: the daemon's status and own message where it
/// refused, 502 where no VM could be had.
pub(super) fn driver_error(e: &DriverError) -> Response<Body> {
    let status = match e {
        DriverError::Client(c) => c
            .http_status()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .filter(|s| s.is_client_error() || s.is_server_error())
            .unwrap_or(StatusCode::BAD_GATEWAY),
        DriverError::Open { .. } => StatusCode::BAD_GATEWAY,
        DriverError::Manager(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match e {
        DriverError::Client(c) => c
            .daemon_message()
            .map(str::to_owned)
            .unwrap_or_else(|| error_chain(c)),
        other => error_chain(other),
    };
    error(status, message)
}

/// A refused request: its status and message.
pub(super) struct Fail(pub(super) StatusCode, pub(super) String);

impl Fail {
    /// The error answer.
    pub(super) fn answer(self) -> Response<Body> {
        error(self.0, self.1)
    }
}

/// The `source` (which must be in the catalog) and the decoded `path`.
pub(super) fn source_and_path<D>(
    state: &State<D>,
    q: Option<&str>,
) -> Result<(String, Vec<u8>), Fail> {
    let bad = |m: String| Fail(StatusCode::BAD_REQUEST, m);
    let source = param(q, "source").ok_or_else(|| bad("missing source".into()))?;
    if !state.catalog.contains(&source) {
        return Err(Fail(
            StatusCode::FORBIDDEN,
            "refused: that source is not one of this server's SOURCEs or roots".into(),
        ));
    }
    let path = match param(q, "path") {
        None => b"/".to_vec(),
        Some(p) => decode_path(&p).map_err(|e| bad(e.to_string()))?,
    };
    if path.first() != Some(&b'/') {
        return Err(bad("path must start with /".into()));
    }
    Ok((source, path))
}

//! `GET /api/find?source=ID&path=B64&name=…`: the guest's search below a
//! path of a catalog source, passed on to the browser as JSON Lines while it
//! runs.
//!
//! The filters are the daemon's (`name`, `iname`, `regex`, `type`,
//! `min-size`, `max-size`, `newer`, `older`, `max`; see
//! [`FindQuery::from_pairs`]), at most [`DEFAULT_MAX_RESULTS`] matches unless
//! `max` says otherwise. Each [`FindEvent`] becomes one line as soon as the
//! driver's [`FindStream`](crate::driver::FindStream) yields it (a small
//! bounded channel between the two, so a slow browser slows the walk and a
//! closed tab ends it). A search that cannot start is an ordinary JSON error
//! answer; one that breaks off after the first line ends the body with a
//! last line `{"error": "…"}` instead of an `end` line.
//!
//! [`DEFAULT_MAX_RESULTS`]: file_restore_wire::find::DEFAULT_MAX_RESULTS

use std::io;

use bytes::Bytes;
use file_restore_wire::find::{FindEvent, FindQuery};
use http_body_util::BodyExt;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;
use tokio::sync::mpsc;

use super::answer::{driver_error, error, source_and_path, Body, State};
use super::download::StreamBody;
use super::query::pairs;
use crate::driver::BlockRestoreDriver;
use crate::util::text::error_chain;

/// Lines in flight between the guest's walk and the browser.
const CHANNEL_LINES: usize = 64;

/// The content type of the answer.
pub const JSONL: &str = "application/jsonl";

/// One line of the answer: `event` as JSON and a newline.
fn line(event: &impl Serialize) -> Bytes {
    let mut v = serde_json::to_vec(event)
        .unwrap_or_else(|e| format!("{{\"error\":\"JSON: {e}\"}}").into_bytes());
    v.push(b'\n');
    Bytes::from(v)
}

/// The last line of a search that broke off.
fn error_line(message: String) -> Bytes {
    #[derive(Serialize)]
    struct E {
        error: String,
    }
    line(&E { error: message })
}

/// Answers `GET /api/find`.
pub async fn find<D: BlockRestoreDriver>(state: &State<D>, q: Option<&str>) -> Response<Body> {
    let (source, path) = match source_and_path(state, q) {
        Ok(sp) => sp,
        Err(f) => return f.answer(),
    };
    let Some(all) = pairs(q) else {
        return error(
            StatusCode::BAD_REQUEST,
            "a query parameter is not percent-encoded",
        );
    };
    let query = match FindQuery::from_pairs(all.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(query) => query,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad search: {e}")),
    };
    let mut stream = match state.driver.find(&source, &path, &query).await {
        Ok(s) => s,
        Err(e) => return driver_error(&e),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(CHANNEL_LINES);
    tokio::spawn(async move {
        loop {
            let (bytes, last) = match stream.next().await {
                Ok(Some(ev)) => {
                    let last = matches!(ev, FindEvent::End(_));
                    (line(&ev), last)
                }
                Ok(None) => break,
                Err(e) => (
                    error_line(format!(
                        "the search below {} broke off: {}",
                        String::from_utf8_lossy(&path),
                        error_chain(&e)
                    )),
                    true,
                ),
            };
            // A closed channel: the browser went away; dropping the stream
            // closes the vsock connection, which ends the walk in the guest.
            if tx.send(Ok(bytes)).await.is_err() || last {
                break;
            }
        }
    });
    let mut r = Response::new(StreamBody::from_channel(rx, None).boxed());
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSONL));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use file_restore_wire::find::FindEnd;

    #[test]
    fn lines_are_one_json_object_each() {
        let end = line(&FindEvent::End(FindEnd {
            visited: 2,
            matched: 1,
            skipped: 0,
            truncated: true,
        }));
        assert_eq!(
            &end[..],
            b"{\"end\":{\"visited\":2,\"matched\":1,\"skipped\":0,\"truncated\":true}}\n"
        );
        let err = error_line("a \"bad\"\nthing".into());
        assert_eq!(&err[..], b"{\"error\":\"a \\\"bad\\\"\\nthing\"}\n");
    }
}

//! The web API and the page: every request passes [`Guard::check`](super::security::Guard::check), every
//! source it names must be in the [`Catalog`](super::catalog::Catalog), every VM call goes through the
//! [`BlockRestoreDriver`]. What the routes share (the state, answers, the
//! checked source) is in `answer.rs`, below this router and the handlers of
//! `search.rs` and `versions.rs`.
//!
//! | call | answer |
//! |---|---|
//! | `GET /?token=T` | sets the session cookie, redirects to `/` |
//! | `GET /` | the page |
//! | `GET /assets/…` | its script and style |
//! | `GET /api/sources` | `{"sources": [CatalogEntry…], "single": id or null}` |
//! | `GET /api/list?source=ID&path=B64` | the Entry array, directories first, by name |
//! | `GET /api/download?source=ID&path=B64[&format=zip\|tar.zst]` | the file (Range honoured) or the archive |
//! | `GET /api/archive?source=ID&path=B64&path=B64…` | the selected paths as one tar |
//! | `GET /api/find?source=ID&path=B64&name=…` | the search below the path, streamed as JSON Lines (`search`) |
//! | `GET /api/versions?source=ID&path=B64[&hash=1]` | the path in every snapshot of the source's VM (`versions`) |
//! | `GET /api/status` | the VMs of this catalog's sources (`VmReport`s) |
//! | `POST /api/stop?name=NAME` | stops that VM (CSRF header needed) |
//! | `POST /api/unlock?source=ID`, body `{"passphrase": "…"}` | tries it on the source's locked LUKS containers (CSRF header needed): the `UnlockAnswer` |
//!
//! Errors are `{"error": "…"}` with the daemon's status where it refused
//! (404, 422 for a bucket that cannot be mounted, …).

use bytes::Bytes;
use file_restore_wire::{decode_path, Entry, EntryType, ExtractFormat};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use super::answer::{driver_error, error, full, json, source_and_path, Body, Fail, State};
use super::assets;
use super::download::{self, RangeAsk};
use super::query::{param, params};
use super::security::{self, Access};
use crate::driver::{BlockRestoreDriver, DriverError};

/// Handles one request; never fails (errors are answers).
pub async fn handle<D: BlockRestoreDriver>(
    state: &State<D>,
    req: Request<Incoming>,
) -> Response<Body> {
    let mut resp = route(state, req).await;
    security::harden(resp.headers_mut());
    resp
}

async fn route<D: BlockRestoreDriver>(state: &State<D>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let q = query.as_deref();
    let url_token = if path == "/" && req.method() == Method::GET {
        param(q, "token")
    } else {
        None
    };
    let access = match state
        .guard
        .check(req.method(), req.headers(), url_token.as_deref())
    {
        Ok(a) => a,
        Err(r) => return error(r.status, r.message),
    };
    let needed = if path == "/api/stop" || path == "/api/unlock" {
        Method::POST
    } else {
        Method::GET
    };
    if req.method() != needed {
        let m = req.method();
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} needs {needed}, not {m}"),
        );
    }
    match path.as_str() {
        "/" if access == Access::UrlToken => {
            let mut r = full(StatusCode::SEE_OTHER, "text/plain", "");
            let h = r.headers_mut();
            h.insert(header::LOCATION, HeaderValue::from_static("/"));
            if let Ok(v) = HeaderValue::from_str(&state.guard.set_cookie()) {
                h.insert(header::SET_COOKIE, v);
            }
            r
        }
        "/" => full(
            StatusCode::OK,
            "text/html; charset=utf-8",
            assets::index_html(state.guard.csrf()),
        ),
        "/api/sources" => {
            state.catalog.rescan();
            #[derive(Serialize)]
            struct Sources<'a> {
                sources: Vec<super::CatalogEntry>,
                single: Option<&'a str>,
            }
            json(
                StatusCode::OK,
                &Sources {
                    sources: state.catalog.entries(),
                    single: state.catalog.single_source(),
                },
            )
        }
        "/api/list" => match source_and_path(state, q) {
            Ok((source, vpath)) => match state.driver.list(&source, &vpath).await {
                Ok(mut entries) => {
                    sort_entries(&mut entries);
                    json(StatusCode::OK, &entries)
                }
                Err(e) => driver_error(&e),
            },
            Err(f) => f.answer(),
        },
        "/api/download" => match source_and_path(state, q) {
            Ok((source, vpath)) => {
                let range = req
                    .headers()
                    .get(header::RANGE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let if_range = req
                    .headers()
                    .get(header::IF_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                download(
                    state,
                    &source,
                    &vpath,
                    param(q, "format").as_deref(),
                    range,
                    if_range,
                )
                .await
            }
            Err(f) => f.answer(),
        },
        "/api/archive" => match selection_paths(state, q) {
            Ok(Selection {
                source,
                first,
                rest,
            }) => {
                let name = if rest.is_empty() {
                    format!("{}.tar", base_name(&first))
                } else {
                    "selection.tar".to_string()
                };
                match super::archive::selection(state.driver.clone(), source, first, rest).await {
                    Ok(body) => {
                        let mut r = Response::new(body.boxed());
                        let h = r.headers_mut();
                        h.insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/x-tar"),
                        );
                        if let Ok(v) = HeaderValue::from_str(&download::content_disposition(&name))
                        {
                            h.insert(header::CONTENT_DISPOSITION, v);
                        }
                        r
                    }
                    Err(e) => driver_error(&e),
                }
            }
            Err(f) => f.answer(),
        },
        "/api/find" => super::search::find(state, q).await,
        "/api/versions" => super::versions::versions(state, q).await,
        "/api/status" => match visible_vms(state).await {
            Ok(vms) => json(StatusCode::OK, &vms),
            Err(e) => driver_error(&e),
        },
        "/api/stop" => stop(state, param(q, "name")).await,
        "/api/unlock" => unlock(state, q, req.into_body()).await,
        p => match assets::asset(p) {
            Some((content_type, bytes)) => {
                let mut r = full(StatusCode::OK, content_type, Bytes::from_static(bytes));
                r.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("private, max-age=300"),
                );
                r
            }
            None => error(StatusCode::NOT_FOUND, format!("nothing at {p}")),
        },
    }
}

/// Directories (and the virtual levels) first, then by name.
fn sort_entries(entries: &mut [Entry]) {
    entries.sort_by(|a, b| {
        let dir = |e: &Entry| !matches!(e.entry_type, EntryType::Directory | EntryType::Virtual);
        dir(a).cmp(&dir(b)).then_with(|| a.text.cmp(&b.text))
    });
}

/// Most paths one selection archive may hold.
const MAX_SELECTION: usize = 1000;

/// A multi-selection: the source and its decoded paths.
struct Selection {
    source: String,
    first: Vec<u8>,
    rest: Vec<Vec<u8>>,
}

/// The `source` and the decoded `path`s (at least one) of a selection.
fn selection_paths<D>(state: &State<D>, q: Option<&str>) -> Result<Selection, Fail> {
    let (source, _) = source_and_path(state, q)?;
    let bad = |m: String| Fail(StatusCode::BAD_REQUEST, m);
    let raw = params(q, "path").ok_or_else(|| bad("a path is not percent-encoded".into()))?;
    if raw.len() > MAX_SELECTION {
        return Err(bad(format!("at most {MAX_SELECTION} paths in one archive")));
    }
    let mut paths = Vec::with_capacity(raw.len());
    for p in raw {
        let p = decode_path(&p).map_err(|e| bad(e.to_string()))?;
        if p.first() != Some(&b'/') {
            return Err(bad("path must start with /".into()));
        }
        paths.push(p);
    }
    let mut paths = paths.into_iter();
    let first = paths.next().ok_or_else(|| bad("no path selected".into()))?;
    Ok(Selection {
        source,
        first,
        rest: paths.collect(),
    })
}

/// The VMs that serve one of this catalog's sources.
async fn visible_vms<D: BlockRestoreDriver>(
    state: &State<D>,
) -> Result<Vec<crate::driver::VmReport>, DriverError> {
    let vms = state.driver.status().await?;
    Ok(vms
        .into_iter()
        .filter(|vm| state.catalog.contains(&vm.source))
        .collect())
}

async fn stop<D: BlockRestoreDriver>(state: &State<D>, name: Option<String>) -> Response<Body> {
    let Some(name) = name else {
        return error(StatusCode::BAD_REQUEST, "missing name");
    };
    match visible_vms(state).await {
        Ok(vms) if vms.iter().any(|vm| vm.name == name) => {}
        Ok(_) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no VM named {name} serves a source of this server"),
            )
        }
        Err(e) => return driver_error(&e),
    }
    match state.driver.stop(Some(&name)).await {
        Ok(stopped) => json(StatusCode::OK, &serde_json::json!({ "stopped": stopped })),
        Err(e) => driver_error(&e),
    }
}

/// `POST /api/unlock?source=ID`: the body's passphrase goes to the
/// source's VM, which tries it on every locked LUKS container; the answer
/// says what became of each. The passphrase is dropped (and overwritten)
/// when the call returns; it is in no answer and no log line.
async fn unlock<D: BlockRestoreDriver>(
    state: &State<D>,
    q: Option<&str>,
    body: Incoming,
) -> Response<Body> {
    if param(q, "passphrase").is_some() {
        // Already in a URL (history, proxies): at least do not take it.
        return error(
            StatusCode::BAD_REQUEST,
            "the passphrase goes in the request body, never in the URL",
        );
    }
    let source = match source_and_path(state, q) {
        Ok((source, _)) => source,
        Err(f) => return f.answer(),
    };
    let pass = match super::unlock::read(body).await {
        Ok(p) => p,
        Err(super::unlock::BadBody(status, message)) => return error(status, message),
    };
    let answer = state.driver.unlock(&source, pass.as_list()).await;
    drop(pass);
    match answer {
        Ok(a) => json(StatusCode::OK, &a),
        Err(e) => driver_error(&e),
    }
}

/// The last path component, for file names.
fn base_name(path: &[u8]) -> String {
    let last = path.rsplit(|&b| b == b'/').find(|c| !c.is_empty());
    String::from_utf8_lossy(last.unwrap_or(b"download")).into_owned()
}

async fn download<D: BlockRestoreDriver>(
    state: &State<D>,
    source: &str,
    path: &[u8],
    format: Option<&str>,
    range: Option<String>,
    if_range: Option<String>,
) -> Response<Body> {
    let (archive, zstd, suffix) = match format.unwrap_or("plain") {
        "plain" => (None, false, ""),
        "zip" => (Some(ExtractFormat::Zip), false, ".zip"),
        "tar.zst" => (Some(ExtractFormat::Tar), true, ".tar.zst"),
        "tar" => (Some(ExtractFormat::Tar), false, ".tar"),
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown format {other}: plain, zip, tar or tar.zst"),
            )
        }
    };
    let name = format!("{}{suffix}", base_name(path));
    let (stream, status, etag) = if let Some(fmt) = archive {
        match state.driver.extract(source, path, fmt, zstd, None).await {
            Ok(s) => (s, StatusCode::OK, None),
            Err(e) => return driver_error(&e),
        }
    } else {
        // A file: its size and mtime first (for ranges and the validator).
        let entry = match state.driver.list(source, path).await {
            // A file lists as itself (a directory holding one file does not).
            Ok(mut v) if v.len() == 1 && v[0].path_bytes().is_ok_and(|p| p == path) => v.remove(0),
            Ok(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "that is a directory: download it as zip or tar.zst",
                )
            }
            Err(e) => return driver_error(&e),
        };
        let size = entry.size.unwrap_or(0);
        let etag = format!("\"{size}-{}\"", entry.mtime.unwrap_or(0));
        let ask = match if_range {
            Some(v) if v != etag => RangeAsk::Whole,
            _ => download::parse_range(range.as_deref(), size),
        };
        let (range, status) = match ask {
            RangeAsk::Whole => (None, StatusCode::OK),
            RangeAsk::Part(a, b) => (Some((a, Some(b))), StatusCode::PARTIAL_CONTENT),
            RangeAsk::Unsatisfiable => {
                let mut r = error(StatusCode::RANGE_NOT_SATISFIABLE, "range outside the file");
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
        };
        match state
            .driver
            .extract(source, path, ExtractFormat::Plain, false, range)
            .await
        {
            Ok(s) => (s, status, Some(etag)),
            Err(e) => return driver_error(&e),
        }
    };
    let content_length = stream.content_length;
    let content_range = stream.content_range.clone();
    let mut r = Response::new(download::stream_body(stream).boxed());
    *r.status_mut() = status;
    let h = r.headers_mut();
    let ctype = match (archive, zstd) {
        (Some(ExtractFormat::Zip), _) => "application/zip",
        (Some(_), true) => "application/zstd",
        (Some(_), false) => "application/x-tar",
        (None, _) => "application/octet-stream",
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&download::content_disposition(&name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(n) = content_length {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if let Some(etag) = etag {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, v);
        }
    }
    if let Some(v) = content_range.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::CONTENT_RANGE, v);
    }
    r
}

//! HTTP routing, authentication and response building.

use crate::auth::{self, Auth};
use crate::error::ApiError;
use crate::extract::{self, Head};
use crate::listing;
use crate::state::State;
use crate::vpath::{self, VPath};
use bytes::Bytes;
use file_restore_wire::find::FindQuery;
use file_restore_wire::proof::{self, Hello};
use file_restore_wire::{decode_path, endpoint, ErrorBody, ExtractFormat, Status, API_VERSION};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RANGE};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::io;
use std::sync::Arc;

/// The body type of every answer.
pub type Body = BoxBody<Bytes, io::Error>;

/// How long list and extract wait for the disk scan after boot.
const SCAN_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Longest query string accepted.
const MAX_QUERY: usize = 16 * 1024;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(v) => {
            let mut r = Response::new(full(v));
            *r.status_mut() = status;
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => error_response(&ApiError::internal(format!("cannot encode answer: {e}"))),
    }
}

fn error_response(e: &ApiError) -> Response<Body> {
    if e.status.is_server_error() {
        log::warn!("{}: {}", e.status, e.message);
    } else {
        log::debug!("{}: {}", e.status, e.message);
    }
    json(
        e.status,
        &ErrorBody {
            error: e.message.clone(),
        },
    )
}

/// Percent-decodes a query component. `+` stays `+`: base64 paths use it,
/// and this API has no form encoding.
fn percent_decode(s: &str) -> Result<String, ApiError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| ApiError::bad_request("malformed percent-escape in query"))?;
                out.push(hex);
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("query is not UTF-8"))
}

/// Query parameters as (key, value) pairs.
fn query(req: &Request<Incoming>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(q) = req.uri().query() else {
        return Ok(Vec::new());
    };
    if q.len() > MAX_QUERY {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("query of {} bytes is longer than {MAX_QUERY}", q.len()),
        ));
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn flag(q: &[(String, String)], key: &str) -> bool {
    matches!(param(q, key), Some("1") | Some("true") | Some("yes"))
}

fn path_param(q: &[(String, String)]) -> Result<VPath, ApiError> {
    let raw = param(q, "path").unwrap_or("");
    let bytes = decode_path(raw).map_err(|e| ApiError::bad_request(e.to_string()))?;
    vpath::parse(&bytes).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Entry point for every request; never fails at the hyper level.
pub async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = std::time::Instant::now();
    let resp = match route(state, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    log::debug!(
        "{method} {path} -> {} in {} ms",
        resp.status(),
        started.elapsed().as_millis()
    );
    Ok(resp)
}

async fn route(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let auth = auth::check(
        req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()),
        &state.ticket,
    );
    let q = query(&req)?;
    let endpoint = req.uri().path();
    let expect = |m: Method| -> Result<(), ApiError> {
        if *req.method() == m {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{endpoint} needs {m}, not {}", req.method()),
            ))
        }
    };
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or invalid ticket: send 'Authorization: FileRestoreTicket <ticket>'",
        )
    };
    if endpoint == endpoint::HELLO {
        // Open to anyone: the proof gives out an HMAC of the caller's nonce,
        // never the ticket, and the host needs it before it sends the ticket.
        expect(Method::GET)?;
        let nonce = param(&q, "nonce")
            .and_then(proof::parse_nonce)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{endpoint} needs nonce=<{} hex digits>",
                    2 * proof::NONCE_LEN
                ))
            })?;
        return Ok(json(
            StatusCode::OK,
            &Hello {
                api_version: API_VERSION,
                proof: proof::to_hex(&proof::proof(&state.ticket, &nonce)),
            },
        ));
    }
    if endpoint == endpoint::STATUS {
        expect(Method::GET)?;
        return match auth {
            Auth::Missing => Ok(json(StatusCode::OK, &liveness())),
            Auth::Invalid => Err(unauthorized()),
            Auth::Valid => {
                if !flag(&q, "keep-timeout") {
                    state.watchdog.touch();
                }
                Ok(json(StatusCode::OK, &full_status(&state)))
            }
        };
    }
    if ![
        endpoint::LIST,
        endpoint::EXTRACT,
        endpoint::STOP,
        endpoint::UNLOCK,
        endpoint::MAP,
        endpoint::FIND,
        endpoint::STAT,
    ]
    .contains(&endpoint)
    {
        return Err(ApiError::not_found(format!("no API endpoint {endpoint}")));
    }
    if auth != Auth::Valid {
        return Err(unauthorized());
    }
    state.watchdog.touch();
    if endpoint != endpoint::STOP {
        state.wait_for_scan(SCAN_WAIT).await?;
    }
    if endpoint == endpoint::UNLOCK {
        expect(Method::POST)?;
        return unlock(state, req).await;
    }
    match endpoint {
        endpoint::LIST => {
            expect(Method::GET)?;
            let path = path_param(&q)?;
            if matches!(path, VPath::Inside { .. }) {
                let body = listing::list_inside(state, path).await?;
                let mut r = Response::new(body.boxed());
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Ok(r)
            } else {
                Ok(json(StatusCode::OK, &listing::list_virtual(&state, &path)?))
            }
        }
        endpoint::EXTRACT => {
            expect(Method::GET)?;
            let path = path_param(&q)?;
            let format: ExtractFormat = param(&q, "format")
                .unwrap_or("plain")
                .parse()
                .map_err(ApiError::bad_request)?;
            let zstd = flag(&q, "zstd");
            let range = match req.headers().get(RANGE) {
                Some(v) if format == ExtractFormat::Plain => {
                    v.to_str().ok().and_then(extract::parse_range)
                }
                _ => None,
            };
            let permit = state.extracts.clone().try_acquire_owned().map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "busy: {} extractions are running already (the limit); retry when one finishes",
                        file_restore_wire::MAX_CONCURRENT_EXTRACTS
                    ),
                )
            })?;
            let (head, body) = extract::extract(state, path, format, zstd, range, permit).await?;
            Ok(stream_response(head, body))
        }
        endpoint::MAP => {
            expect(Method::GET)?;
            let path = path_param(&q)?;
            let from = match param(&q, "from") {
                None => 0,
                Some(v) => v.parse().map_err(|_| {
                    ApiError::bad_request(format!("from={v:?} is not a byte offset"))
                })?,
            };
            Ok(json(
                StatusCode::OK,
                &crate::map::map(state, path, from).await?,
            ))
        }
        endpoint::FIND => {
            expect(Method::GET)?;
            let path = path_param(&q)?;
            let query = FindQuery::from_pairs(q.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(ApiError::bad_request)?;
            let body = crate::find::find(state, path, query).await?;
            let mut r = Response::new(body.boxed());
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/jsonl"));
            Ok(r)
        }
        endpoint::STAT => {
            expect(Method::GET)?;
            let path = path_param(&q)?;
            let hash = match param(&q, "hash") {
                None => false,
                Some("sha256") => true,
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "hash={other:?}: the only hash is sha256"
                    )))
                }
            };
            Ok(json(
                StatusCode::OK,
                &crate::stat::stat(state, path, hash).await?,
            ))
        }
        endpoint::STOP => {
            expect(Method::POST)?;
            log::info!("stop requested over the API");
            state.stop.notify_one();
            Ok(json(StatusCode::OK, &serde_json::json!({"stopping": true})))
        }
        _ => Err(ApiError::not_found(format!("no API endpoint {endpoint}"))),
    }
}

/// `POST /api/unlock`: reads the passphrases (bounded), tries them on the
/// blocking pool (key derivation takes seconds) and answers what became of
/// each container.
async fn unlock(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    use file_restore_wire::{UnlockRequest, MAX_PASSPHRASES, MAX_UNLOCK_BODY};
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("unlock request larger than {MAX_UNLOCK_BODY} bytes"),
        )
    };
    let body = http_body_util::Limited::new(req.into_body(), MAX_UNLOCK_BODY)
        .collect()
        .await
        .map_err(|_| too_large())?
        .to_bytes();
    let parsed: UnlockRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("unlock request is not valid JSON: {e}")))?;
    if parsed.passphrases.is_empty() || parsed.passphrases.len() > MAX_PASSPHRASES {
        return Err(ApiError::bad_request(format!(
            "unlock request needs 1 to {MAX_PASSPHRASES} passphrases, not {}",
            parsed.passphrases.len()
        )));
    }
    let mut passphrases = Vec::with_capacity(parsed.passphrases.len());
    for (i, p) in parsed.passphrases.iter().enumerate() {
        let bytes = decode_path(p).map_err(|_| {
            ApiError::bad_request(format!("passphrase #{} is not valid base64", i + 1))
        })?;
        passphrases.push(bytes);
    }
    drop(parsed);
    let answer = tokio::task::spawn_blocking(move || crate::scan::unlock(&state, &passphrases))
        .await
        .map_err(|e| ApiError::internal(format!("unlock task failed: {e}")))?;
    Ok(json(StatusCode::OK, &answer))
}

fn stream_response(head: Head, body: crate::stream::ChannelBody) -> Response<Body> {
    let mut r = Response::new(body.boxed());
    *r.status_mut() = head.status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(head.content_type));
    if let Some(len) = head.content_length {
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let Some(cr) = head
        .content_range
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        h.insert(hyper::header::CONTENT_RANGE, cr);
    }
    h.insert(
        hyper::header::ACCEPT_RANGES,
        HeaderValue::from_static("bytes"),
    );
    let safe: String = head
        .filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        h.insert(hyper::header::CONTENT_DISPOSITION, v);
    }
    r
}

fn liveness() -> Status {
    Status {
        api_version: API_VERSION,
        alive: true,
        uptime: None,
        timeout_left: None,
        idle_timeout: None,
        scan: None,
        disks: None,
        active_downloads: None,
    }
}

fn full_status(state: &State) -> Status {
    Status {
        api_version: API_VERSION,
        alive: true,
        uptime: Some(state.watchdog.uptime()),
        timeout_left: Some(state.watchdog.left().as_secs()),
        idle_timeout: Some(state.watchdog.timeout_secs()),
        scan: Some(state.scan_state()),
        disks: Some(state.disk_status()),
        active_downloads: Some(state.watchdog.active()),
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent() {
        assert_eq!(percent_decode("a%2Bb%2Fc%3D").unwrap(), "a+b/c=");
        assert_eq!(percent_decode("a+b").unwrap(), "a+b");
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%4").is_err());
    }
}

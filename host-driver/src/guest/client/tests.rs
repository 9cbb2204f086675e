//! Tests of the daemon client against an in-test hybrid-vsock "sidecar" that
//! answers `OK 1234` and then serves HTTP with a real hyper server.

use super::*;
use file_restore_wire::proof;
use file_restore_wire::{decode_path, EntryType};
use http_body_util::Full;
use hyper::header::{CONTENT_RANGE, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

const TICKET: &str = "0123456789abcdef0123456789abcdef";
const FILE: &[u8] = b"hello world";

fn json(status: StatusCode, v: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .unwrap()
}

fn query_path(req: &Request<Incoming>) -> Vec<u8> {
    let q = req.uri().query().unwrap_or("");
    let raw = q
        .split('&')
        .find_map(|kv| kv.strip_prefix("path="))
        .unwrap_or("");
    // Undo query_escape for the base64 alphabet.
    let unescaped = raw
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%3D", "=");
    decode_path(&unescaped).unwrap()
}

/// The `hello` answer: the proof of the request's nonce under `ticket`.
fn hello(req: &Request<Incoming>, api_version: u32, ticket: &str) -> Response<Full<Bytes>> {
    let nonce = req
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("nonce="))
        .and_then(proof::parse_nonce)
        .expect("hello with a nonce");
    json(
        StatusCode::OK,
        serde_json::json!({"api_version": api_version,
            "proof": proof::to_hex(&proof::proof(ticket, &nonce))}),
    )
}

/// How the fake daemon behaves.
#[derive(Clone)]
struct Fake {
    api_version: u32,
    /// The ticket its proofs are made with (`None`: no hello endpoint, 404).
    proof_ticket: Option<&'static str>,
    /// Set when a request carried an Authorization header.
    saw_ticket: Arc<AtomicBool>,
}

async fn handle(req: Request<Incoming>, fake: Fake) -> Result<Response<Full<Bytes>>, Infallible> {
    let api_version = fake.api_version;
    if req.headers().contains_key(AUTHORIZATION) {
        fake.saw_ticket.store(true, Ordering::SeqCst);
    }
    if req.uri().path() == endpoint::HELLO {
        assert!(
            !req.headers().contains_key(AUTHORIZATION),
            "ticket sent with hello"
        );
        return Ok(match fake.proof_ticket {
            Some(t) => hello(&req, api_version, t),
            None => json(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": "no API endpoint /api/hello"}),
            ),
        });
    }
    let authed = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("{TICKET_SCHEME} {TICKET}"));
    assert_eq!(req.headers().get(HOST).unwrap(), "localhost");
    let path = req.uri().path().to_string();
    if path == endpoint::STATUS {
        let mut v = serde_json::json!({"api_version": api_version, "alive": true});
        if authed {
            v["uptime"] = 3.into();
            v["scan"] = "done".into();
            v["keep"] = req.uri().query().is_some().into();
        }
        return Ok(json(StatusCode::OK, v));
    }
    if !authed {
        return Ok(json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "missing or invalid ticket"}),
        ));
    }
    let resp = match path.as_str() {
        endpoint::LIST => {
            let p = query_path(&req);
            if p == b"/" {
                json(
                    StatusCode::OK,
                    serde_json::json!([{"filepath": encode_path(b"/disk0"), "text": "disk0",
                        "type": "v", "leaf": false, "size": null, "mtime": null}]),
                )
            } else {
                json(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"error": format!("no such file: {}", String::from_utf8_lossy(&p))}),
                )
            }
        }
        endpoint::EXTRACT => {
            assert!(req.uri().query().unwrap().contains("format=plain"));
            match req.headers().get(RANGE).and_then(|v| v.to_str().ok()) {
                Some("bytes=6-") => Response::builder()
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(CONTENT_RANGE, format!("bytes 6-10/{}", FILE.len()))
                    .body(Full::new(Bytes::from_static(&FILE[6..])))
                    .unwrap(),
                _ => Response::builder()
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(Full::new(Bytes::from_static(FILE)))
                    .unwrap(),
            }
        }
        endpoint::STOP => {
            assert_eq!(req.method(), Method::POST);
            json(StatusCode::OK, serde_json::json!({}))
        }
        _ => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Full::new(Bytes::from_static(b"plain text failure")))
            .unwrap(),
    };
    Ok(resp)
}

/// The vhost-user sidecar's side of the hybrid handshake: reads `CONNECT 1024`,
/// answers `OK`; returns the stream, buffered, for the HTTP that follows.
async fn sidecar_handshake(s: tokio::net::UnixStream) -> BufReader<tokio::net::UnixStream> {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    assert_eq!(line, "CONNECT 1024\n");
    r.get_mut().write_all(b"OK 1234\n").await.unwrap();
    r
}

/// Starts the fake sidecar + daemon; returns its address (keep the TempDir alive).
fn serve(api_version: u32) -> (tempfile::TempDir, VsockAddr) {
    let (dir, addr, _) = serve_fake(api_version, Some(TICKET));
    (dir, addr)
}

/// [`serve`] with the ticket the proofs are made with; also returns the flag
/// set when any request carried a ticket.
fn serve_fake(
    api_version: u32,
    proof_ticket: Option<&'static str>,
) -> (tempfile::TempDir, VsockAddr, Arc<AtomicBool>) {
    let saw_ticket = Arc::new(AtomicBool::new(false));
    let fake = Fake {
        api_version,
        proof_ticket,
        saw_ticket: saw_ticket.clone(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("vm.vsock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let fake = fake.clone();
            tokio::spawn(async move {
                let s = sidecar_handshake(s).await.into_inner();
                let svc = service_fn(move |req| handle(req, fake.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (dir, VsockAddr::HybridUnix { path, port: 1024 }, saw_ticket)
}

#[tokio::test]
async fn status_liveness_and_full() {
    let (_d, addr) = serve(API_VERSION);
    let c = DaemonClient::new(addr, TICKET);
    let live = c.status_liveness().await.unwrap();
    assert!(live.alive);
    assert_eq!(live.uptime, None);
    let full = c.status(true).await.unwrap();
    assert_eq!(full.uptime, Some(3));
    assert_eq!(full.scan, Some(file_restore_wire::ScanState::Done));
}

#[tokio::test]
async fn liveness_only_answer_to_full_status_is_ticket_rejected() {
    // A guest that proves "wrong" but does not accept it (a broken daemon).
    let (_d, addr, _) = serve_fake(API_VERSION, Some("wrong"));
    let err = DaemonClient::new(addr, "wrong")
        .status(false)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::TicketRejected { .. }), "{err}");
}

#[tokio::test]
async fn wrong_api_version_is_refused() {
    let (_d, addr) = serve(API_VERSION + 1);
    let err = DaemonClient::new(addr, TICKET)
        .status_liveness()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::ApiVersion { got, .. } if got == API_VERSION + 1));
}

#[tokio::test]
async fn list_root_and_404_keeps_message() {
    let (_d, addr) = serve(API_VERSION);
    let c = DaemonClient::new(addr, TICKET);
    let entries = c.list(b"/").await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].entry_type, EntryType::Virtual);
    assert_eq!(entries[0].path_bytes().unwrap(), b"/disk0");

    let err = c.list(b"/disk0/part/1/nope\xff").await.unwrap_err();
    assert_eq!(err.http_status(), Some(404));
    assert_eq!(
        err.daemon_message(),
        Some("no such file: /disk0/part/1/nope\u{fffd}")
    );
    let msg = err.to_string();
    assert!(msg.contains("404") && msg.contains("no such file"), "{msg}");
}

#[tokio::test]
async fn wrong_ticket_is_401() {
    let (_d, addr, _) = serve_fake(API_VERSION, Some("bad"));
    let err = DaemonClient::new(addr, "bad").list(b"/").await.unwrap_err();
    assert_eq!(err.http_status(), Some(401));
    assert_eq!(err.daemon_message(), Some("missing or invalid ticket"));
}

#[tokio::test]
async fn extract_whole_and_range() {
    let (_d, addr) = serve(API_VERSION);
    let c = DaemonClient::new(addr, TICKET);
    let mut s = c
        .extract(b"/disk0/raw/raw/f", ExtractFormat::Plain, false, None)
        .await
        .unwrap();
    assert_eq!(s.status, 200);
    assert_eq!(s.content_length, Some(FILE.len() as u64));
    assert_eq!(s.content_type.as_deref(), Some("application/octet-stream"));
    let mut got = Vec::new();
    while let Some(chunk) = s.next_chunk().await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, FILE);

    let mut s = c
        .extract(
            b"/disk0/raw/raw/f",
            ExtractFormat::Plain,
            false,
            Some((6, None)),
        )
        .await
        .unwrap();
    assert_eq!(s.status, 206);
    assert_eq!(s.content_range.as_deref(), Some("bytes 6-10/11"));
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"world");
}

#[tokio::test]
async fn stop_posts() {
    let (_d, addr) = serve(API_VERSION);
    DaemonClient::new(addr, TICKET).stop().await.unwrap();
}

#[test]
fn extract_query() {
    assert_eq!(
        extract_uri(b"/a?", ExtractFormat::Tar, true),
        "/api/extract?path=L2E%2F&format=tar&zstd=1"
    );
    assert_eq!(
        extract_uri(b"/", ExtractFormat::Zip, false),
        "/api/extract?path=Lw%3D%3D&format=zip"
    );
}

#[test]
fn error_message_fallbacks() {
    assert_eq!(
        error_message(StatusCode::BAD_REQUEST, br#"{"error":"bad path"}"#),
        "bad path"
    );
    assert_eq!(
        error_message(StatusCode::BAD_GATEWAY, b"  upstream down\n"),
        "upstream down"
    );
    assert_eq!(
        error_message(StatusCode::SERVICE_UNAVAILABLE, b""),
        "Service Unavailable"
    );
}

#[test]
fn entries_wrapped_or_bare() {
    let e = serde_json::json!({"filepath": "Lw==", "text": "/", "type": "v", "leaf": false,
        "size": null, "mtime": null});
    let parse = |v: serde_json::Value| parse_listing(v.to_string().as_bytes());
    assert_eq!(parse(serde_json::json!([e.clone()])).unwrap().len(), 1);
    assert_eq!(
        parse(serde_json::json!({"other": {"x": [1]}, "entries": [e.clone()]}))
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        parse(serde_json::json!({"data": [e.clone()]})).unwrap()[0].text,
        "/"
    );
    let err = parse(serde_json::json!({"nope": 1}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a list of entries: missing field `entries`"),
        "{err}"
    );
    // A bad entry is reported where it is in the body.
    let err = parse(serde_json::json!([e, {"filepath": 1}]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 1 column"), "{err}");
}

#[test]
fn debug_hides_ticket() {
    let c = DaemonClient::new(
        VsockAddr::Kernel {
            cid: 10,
            port: 1024,
        },
        TICKET,
    );
    assert!(!format!("{c:?}").contains(TICKET));
}

/// Reads one request head; returns its first line.
async fn read_head(r: &mut BufReader<tokio::net::UnixStream>) -> String {
    let mut first = String::new();
    r.read_line(&mut first).await.unwrap();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await.unwrap() == 0 || line == "\r\n" {
            return first;
        }
    }
}

/// A guest that proves itself, then sends an answer's head and the first
/// bytes of its body, then nothing: every read ends with a timeout instead
/// of hanging.
fn serve_stalling() -> (tempfile::TempDir, VsockAddr) {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("vm.vsock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut r = sidecar_handshake(s).await;
                // The hello: answered with the right proof.
                let head = read_head(&mut r).await;
                let nonce = head
                    .split_once("nonce=")
                    .and_then(|(_, rest)| proof::parse_nonce(rest.split(' ').next()?))
                    .expect("hello first");
                let body = serde_json::json!({"api_version": API_VERSION,
                    "proof": proof::to_hex(&proof::proof(TICKET, &nonce))})
                .to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                r.get_mut().write_all(answer.as_bytes()).await.unwrap();
                // The real request: 10 of 100 promised bytes, then a stall.
                read_head(&mut r).await;
                let mut s = r.into_inner();
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[{\"filep")
                    .await
                    .unwrap();
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            });
        }
    });
    (dir, VsockAddr::HybridUnix { path, port: 1024 })
}

#[tokio::test]
async fn stalled_bodies_time_out() {
    use std::time::{Duration, Instant};
    let (_d, addr) = serve_stalling();
    let c = DaemonClient::new(addr, TICKET)
        .with_timeouts(Duration::from_secs(2), Duration::from_millis(300));

    let t = Instant::now();
    let err = c.list(b"/").await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        matches!(err, ClientError::Timeout { .. })
            && err.to_string().contains("reading the answer"),
        "{err}"
    );

    let mut stream = c
        .extract(b"/d/part/1/f", ExtractFormat::Plain, false, None)
        .await
        .unwrap();
    assert_eq!(
        &stream.next_chunk().await.unwrap().unwrap()[..],
        b"[{\"filep"
    );
    let t = Instant::now();
    let err = stream.next_chunk().await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        err.to_string().contains("waiting for the next data"),
        "{err}"
    );

    // The AsyncRead side (what the CLI copies to files) times out the same way.
    let mut stream = c
        .extract(b"/d/part/1/f", ExtractFormat::Plain, false, None)
        .await
        .unwrap();
    let mut sink = Vec::new();
    let t = Instant::now();
    let err = tokio::io::copy(&mut stream, &mut sink).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert_eq!(sink, b"[{\"filep");
}

/// A guest that cannot prove it knows the ticket (another VM on the CID, an
/// old daemon) never receives it, and its answers are not used.
#[tokio::test]
async fn guest_without_the_proof_is_refused_before_the_ticket_is_sent() {
    for proof_ticket in [Some("another-vms-ticket-0123456789"), None] {
        let (_d, addr, saw_ticket) = serve_fake(API_VERSION, proof_ticket);
        let c = DaemonClient::new(addr, TICKET);
        for err in [
            c.status(false).await.unwrap_err(),
            c.list(b"/").await.unwrap_err(),
            c.status_liveness().await.unwrap_err(),
        ] {
            let msg = err.to_string();
            assert!(matches!(err, ClientError::NoProof { .. }), "{msg}");
            assert!(msg.contains("did not prove it knows the ticket"), "{msg}");
        }
        assert!(!saw_ticket.load(Ordering::SeqCst), "the ticket was sent");
    }
}

/// A guest that accepts and never answers the hello is a timeout of the
/// connect limit, not a hang.
#[tokio::test]
async fn silent_guest_times_out_at_the_proof() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("vm.vsock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let _r = sidecar_handshake(s).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let c = DaemonClient::new(VsockAddr::HybridUnix { path, port: 1024 }, TICKET)
        .with_timeouts(Duration::from_millis(300), Duration::from_secs(30));
    let t = Instant::now();
    let err = c.status(false).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        matches!(err, ClientError::Timeout { .. }) && err.to_string().contains("ticket proof"),
        "{err}"
    );
}

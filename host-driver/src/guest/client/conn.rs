//! Opening a connection to a daemon that the host may trust: the vsock
//! stream, HTTP/1.1 on it, and the guest's proof that it knows the ticket
//! (`GET /api/hello?nonce=<hex>`, see [`file_restore_wire::proof`]) before
//! any request carries the ticket or any answer is believed.
//!
//! The proof is asked on every connection, not once per VM: a kernel vsock
//! connection reaches whichever VM holds the CID when it is made, and the
//! CID of a VM that died may since belong to another user's VM. The
//! request that follows travels on the same, proven connection.

use std::fs::File;
use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use file_restore_wire::proof::{self, Hello, NONCE_LEN};
use file_restore_wire::{endpoint, query_escape, API_VERSION};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::HOST;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

use super::{ClientError, MAX_ERROR_BODY};
use crate::guest::transport::{self, VsockAddr};

/// Largest `hello` answer read.
const MAX_HELLO_BODY: usize = 4 << 10;

/// Connects to `addr`, asks the guest to prove it knows `ticket` and returns
/// the connection, ready for the real request. Everything (connect,
/// handshake, proof) must finish within `limit`.
pub(super) async fn open(
    addr: &VsockAddr,
    ticket: &str,
    limit: Duration,
) -> Result<SendRequest<Full<Bytes>>, ClientError> {
    tokio::time::timeout(limit, open_unbounded(addr, ticket))
        .await
        .map_err(|_| ClientError::Timeout {
            what: "connecting to (and asking for the ticket proof of)".into(),
            addr: addr.clone(),
            after: limit,
        })?
}

async fn open_unbounded(
    addr: &VsockAddr,
    ticket: &str,
) -> Result<SendRequest<Full<Bytes>>, ClientError> {
    let http_err = |source| ClientError::Http {
        endpoint: endpoint::HELLO,
        addr: addr.clone(),
        source,
    };
    let stream = transport::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_err)?;
    let addr_for_log = addr.clone();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            log::debug!("connection to {addr_for_log} ended: {e}");
        }
    });

    let nonce = random_nonce()?;
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!(
            "{}?nonce={}",
            endpoint::HELLO,
            query_escape(&proof::to_hex(&nonce))
        ))
        .header(HOST, "localhost")
        .body(Full::new(Bytes::new()))
        .map_err(|e| ClientError::Request {
            endpoint: endpoint::HELLO,
            detail: e.to_string(),
        })?;
    let resp = sender.send_request(req).await.map_err(http_err)?;
    let status = resp.status();
    let limit = if status.is_success() {
        MAX_HELLO_BODY
    } else {
        MAX_ERROR_BODY
    };
    let body = Limited::new(resp.into_body(), limit)
        .collect()
        .await
        .map_err(|e| ClientError::BadResponse {
            endpoint: endpoint::HELLO,
            detail: format!("reading the body from {addr}: {e}"),
        })?
        .to_bytes();
    check_hello(addr, ticket, &nonce, status.as_u16(), &body)?;
    sender.ready().await.map_err(http_err)?;
    Ok(sender)
}

/// Checks a `hello` answer: HTTP 200, our API version, the right proof.
fn check_hello(
    addr: &VsockAddr,
    ticket: &str,
    nonce: &[u8; NONCE_LEN],
    status: u16,
    body: &[u8],
) -> Result<(), ClientError> {
    let no_proof = |detail: String| ClientError::NoProof {
        addr: addr.clone(),
        detail,
    };
    if status != 200 {
        let message = super::error_message(
            hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY),
            body,
        );
        return Err(no_proof(format!(
            "it answered {} with HTTP {status} ({message}); a daemon from an older build has no \
             {0}: rebuild the initramfs",
            endpoint::HELLO
        )));
    }
    let hello: Hello = serde_json::from_slice(body)
        .map_err(|e| no_proof(format!("its answer is not a proof: {e}")))?;
    if hello.api_version != API_VERSION {
        return Err(ClientError::ApiVersion {
            addr: addr.clone(),
            got: hello.api_version,
        });
    }
    if !proof::verify(ticket, nonce, &hello.proof) {
        return Err(no_proof("its proof does not match".into()));
    }
    Ok(())
}

/// [`NONCE_LEN`] bytes from the kernel's random source.
fn random_nonce() -> Result<[u8; NONCE_LEN], ClientError> {
    let mut nonce = [0u8; NONCE_LEN];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut nonce))
        .map_err(|e| ClientError::Request {
            endpoint: endpoint::HELLO,
            detail: format!("cannot read a nonce from /dev/urandom: {e}"),
        })?;
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> VsockAddr {
        VsockAddr::Kernel {
            cid: 4096,
            port: 1024,
        }
    }

    fn hello(proof: String) -> Vec<u8> {
        serde_json::to_vec(&Hello {
            api_version: API_VERSION,
            proof,
        })
        .unwrap()
    }

    #[test]
    fn right_proof_passes_and_others_are_named() {
        let nonce = [3u8; NONCE_LEN];
        let ticket = "0123456789abcdef0123456789abcdef";
        let good = proof::to_hex(&proof::proof(ticket, &nonce));
        check_hello(&addr(), ticket, &nonce, 200, &hello(good.clone())).unwrap();

        let other = proof::to_hex(&proof::proof("another-ticket-012345", &nonce));
        let e = check_hello(&addr(), ticket, &nonce, 200, &hello(other)).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ClientError::NoProof { .. }), "{msg}");
        assert!(
            msg.contains("guest at vsock cid 4096 port 1024 did not prove it knows the ticket")
                && msg.contains("does not match"),
            "{msg}"
        );
        // A proof for another nonce (a replayed answer) fails too.
        let e = check_hello(&addr(), ticket, &[4u8; NONCE_LEN], 200, &hello(good)).unwrap_err();
        assert!(matches!(e, ClientError::NoProof { .. }), "{e}");

        let e = check_hello(
            &addr(),
            ticket,
            &nonce,
            404,
            br#"{"error":"no API endpoint"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("HTTP 404") && e.contains("no API endpoint"),
            "{e}"
        );
        let e = check_hello(&addr(), ticket, &nonce, 200, b"{}").unwrap_err();
        assert!(matches!(e, ClientError::NoProof { .. }), "{e}");
    }

    #[test]
    fn nonces_are_fresh() {
        assert_ne!(random_nonce().unwrap(), random_nonce().unwrap());
    }
}

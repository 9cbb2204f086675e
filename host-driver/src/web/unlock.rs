//! The body of `POST /api/unlock?source=ID`: `{"passphrase": "…"}`, at most
//! [`MAX_BODY`] bytes. The passphrase is read from the body only (never the
//! URL), is not logged, is not echoed (an error names what is wrong with the
//! body, never its content: serde's own messages can quote a string, so they
//! are not passed on), and its copies here are overwritten when dropped.
//!
//! What is not under this module's control: hyper's read buffer (reused for
//! the connection's next request) and the copy the daemon client encodes for
//! the VM (dropped after the call).

use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use hyper::StatusCode;
use serde::Deserialize;

/// Largest request body read (a passphrase of a few KiB is plenty).
pub const MAX_BODY: usize = 8 * 1024;

/// How long the body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Overwrites `b` with zeros (best effort: the compiler is told the zeros
/// are read).
fn wipe(b: &mut [u8]) {
    b.fill(0);
    std::hint::black_box(b);
}

/// One passphrase, zeroed when dropped; its `Debug` shows only its length.
pub struct Passphrase(Vec<u8>);

impl Passphrase {
    /// The bytes (UTF-8 as typed), as [`crate::driver::BlockRestoreDriver::unlock`] takes them.
    pub fn as_list(&self) -> &[Vec<u8>] {
        std::slice::from_ref(&self.0)
    }
}

impl Drop for Passphrase {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Passphrase({} bytes)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for Passphrase {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Passphrase, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Passphrase;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Passphrase, E> {
                Ok(Passphrase(s.as_bytes().to_vec()))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Passphrase, E> {
                Ok(Passphrase(s.into_bytes()))
            }
        }
        d.deserialize_str(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnlockBody {
    passphrase: Passphrase,
}

/// Why a body was refused: the status and a message that never quotes it.
#[derive(Debug, PartialEq, Eq)]
pub struct BadBody(pub StatusCode, pub &'static str);

/// The passphrase of an already-read body.
pub fn parse(raw: &[u8]) -> Result<Passphrase, BadBody> {
    // serde's message is dropped unread: "invalid type: string \"…\"" would
    // quote the passphrase.
    let body: UnlockBody = serde_json::from_slice(raw).map_err(|_| {
        BadBody(
            StatusCode::BAD_REQUEST,
            "the body must be the JSON object {\"passphrase\": \"…\"} (a string, nothing else)",
        )
    })?;
    if body.passphrase.0.is_empty() {
        return Err(BadBody(StatusCode::BAD_REQUEST, "the passphrase is empty"));
    }
    Ok(body.passphrase)
}

/// Reads (at most [`MAX_BODY`] bytes, within 30 s) and parses the body.
pub async fn read<B>(body: B) -> Result<Passphrase, BadBody>
where
    B: Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let too_large = BadBody(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the unlock request is larger than 8 KiB",
    );
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(too_large);
    }
    let collected =
        match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await {
            Err(_) => {
                return Err(BadBody(
                    StatusCode::REQUEST_TIMEOUT,
                    "the unlock request's body did not arrive within 30 s",
                ))
            }
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large),
            Ok(Err(_)) => {
                return Err(BadBody(
                    StatusCode::BAD_REQUEST,
                    "the unlock request's body could not be read",
                ))
            }
            Ok(Ok(c)) => c,
        };
    // Vec::from(Bytes) takes the buffer over when it is the only owner.
    let mut raw: Vec<u8> = collected.to_bytes().into();
    let r = parse(&raw);
    wipe(&mut raw);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[test]
    fn parses_the_passphrase_and_never_quotes_it() {
        let p = parse(br#"{"passphrase":"s3cret \u00e9"}"#).expect("parse");
        assert_eq!(p.as_list(), &["s3cret é".as_bytes().to_vec()]);
        assert_eq!(format!("{p:?}"), "Passphrase(9 bytes)");
        for bad in [
            &br#""s3cret""#[..],
            br#"{"passphrase":"s3cret","x":"s3cret"}"#,
            br#"{"passphrase":["s3cret"]}"#,
            br#"{"passphrases":["s3cret"]}"#,
            b"s3cret",
            b"",
        ] {
            let e = parse(bad).expect_err("refused");
            assert_eq!(e.0, StatusCode::BAD_REQUEST);
            assert!(!e.1.contains("s3cret"), "{}", e.1);
        }
        assert_eq!(
            parse(br#"{"passphrase":""}"#).expect_err("empty").1,
            "the passphrase is empty"
        );
    }

    #[tokio::test]
    async fn bounded_body() {
        let ok = Full::new(bytes::Bytes::from_static(br#"{"passphrase":"pass"}"#));
        assert!(read(ok).await.is_ok());
        let big = format!(r#"{{"passphrase":"{}"}}"#, "x".repeat(MAX_BODY));
        let e = read(Full::new(bytes::Bytes::from(big)))
            .await
            .expect_err("big");
        assert_eq!(e.0, StatusCode::PAYLOAD_TOO_LARGE);
    }
}

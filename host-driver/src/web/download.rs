//! Downloads: the daemon's extract stream passed through to the browser
//! chunk by chunk (a bounded channel, so nothing is buffered beyond a few
//! chunks and a slow browser slows the guest down), byte ranges for files
//! (so a browser can resume), and safe `Content-Disposition` names.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

use crate::driver::ExtractStream;

/// Chunks in flight between the guest and the browser.
const CHANNEL_CHUNKS: usize = 4;

/// A response body fed by a task that reads the extract stream.
pub struct StreamBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
    size_hint: Option<u64>,
}

impl Body for StreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self.size_hint {
            Some(n) => hyper::body::SizeHint::with_exact(n),
            None => hyper::body::SizeHint::default(),
        }
    }
}

/// Streams `stream` into a body; the reading task ends when the browser goes
/// away (the channel closes) and the vsock connection is closed with it. A
/// stream that breaks ends the body with an error, so the browser sees a
/// failed download, never a short file that looks complete.
pub fn stream_body(mut stream: ExtractStream) -> StreamBody {
    let size_hint = stream.content_length;
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    tokio::spawn(async move {
        loop {
            let item = match stream.next_chunk().await {
                Ok(Some(data)) => Ok(data),
                Ok(None) => break,
                Err(e) => Err(io::Error::other(e.to_string())),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    StreamBody { rx, size_hint }
}

impl StreamBody {
    /// A body fed by `rx`, of `size_hint` bytes when known.
    pub fn from_channel(
        rx: mpsc::Receiver<Result<Bytes, io::Error>>,
        size_hint: Option<u64>,
    ) -> StreamBody {
        StreamBody { rx, size_hint }
    }
}

/// A byte range request against a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// No (usable) Range header: the whole file.
    Whole,
    /// `first..=last`, within the file.
    Part(u64, u64),
    /// Outside the file: 416.
    Unsatisfiable,
}

/// Reads a `Range` header (one range of `bytes`; anything else, several
/// ranges included, is answered with the whole file as RFC 9110 allows).
pub fn parse_range(header: Option<&str>, size: u64) -> RangeAsk {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match b.parse::<u64>() {
            Ok(0) => return RangeAsk::Unsatisfiable,
            Ok(n) => Some((size.saturating_sub(n), size.checked_sub(1))),
            Err(_) => None,
        },
        (false, true) => a.parse::<u64>().ok().map(|f| (f, size.checked_sub(1))),
        (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(f), Ok(l)) if f <= l => Some((f, Some(l.min(size.saturating_sub(1))))),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => RangeAsk::Whole,
        Some((first, Some(last))) if first < size && first <= last => RangeAsk::Part(first, last),
        Some(_) => RangeAsk::Unsatisfiable,
    }
}

/// A `Content-Disposition: attachment` value for `name` (a guest-supplied
/// file name): an ASCII fallback with anything risky replaced by `_`, and the
/// exact name percent-encoded in `filename*`.
pub fn content_disposition(name: &str) -> String {
    let name = name.rsplit('/').next().unwrap_or_default();
    let clean: String = name
        .chars()
        .map(|c| if c.is_control() || c == '\\' { '_' } else { c })
        .collect();
    let clean = match clean.trim_matches(|c: char| c == '.' || c.is_whitespace()) {
        "" => "download".to_string(),
        t => t.to_string(),
    };
    let ascii: String = clean
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && !matches!(c, '"' | '%' | ';')) || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        super::query::percent_encode(&clean)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=0-3"), 10), RangeAsk::Part(0, 3));
        assert_eq!(parse_range(Some("bytes=4-"), 10), RangeAsk::Part(4, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), RangeAsk::Part(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), RangeAsk::Part(0, 9));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), RangeAsk::Part(5, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=x-"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), RangeAsk::Whole);
    }

    #[test]
    fn dispositions_are_safe() {
        assert_eq!(
            content_disposition("report.txt"),
            "attachment; filename=\"report.txt\"; filename*=UTF-8''report.txt"
        );
        let evil = content_disposition("a\"b\r\nSet-Cookie: x;\u{7f}ü.txt");
        assert!(!evil.contains('\r') && !evil.contains('\n'));
        assert!(evil.starts_with("attachment; filename=\"a_b__Set-Cookie: x__"));
        assert!(evil.contains("filename*=UTF-8''a%22b__Set-Cookie%3A%20x%3B_%C3%BC.txt"));
        assert!(content_disposition("..").contains("filename=\"download\""));
        assert!(content_disposition("../../etc/passwd").contains("filename=\"passwd\""));
    }
}

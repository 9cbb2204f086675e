//! A multi-selection as one tar: the daemon's tar of each selected path, one
//! after the other, each cut at its end-of-archive marker, then one marker.
//! The members are walked header by header (never guessed from trailing
//! zeros, which file data may end with), streaming, in bounded memory.

use std::io;

use bytes::Bytes;
use file_restore_wire::ExtractFormat;
use tokio::sync::mpsc;

use super::download::StreamBody;
use crate::driver::ExtractStream;
use crate::driver::{BlockRestoreDriver, DriverError};

const BLOCK: usize = 512;

/// Passes one tar archive's entries through and drops its end-of-archive
/// marker and anything after it.
#[derive(Debug, Default)]
pub struct MemberFilter {
    header: Vec<u8>,
    data_left: u64,
    done: bool,
}

/// The size field of a tar header: octal, or base-256 when its first byte
/// has the high bit set (GNU, for sizes of 8 GiB and more).
fn header_size(h: &[u8]) -> Result<u64, String> {
    let field = &h[124..136];
    if field[0] & 0x80 != 0 {
        let mut n: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            n = n
                .checked_mul(256)
                .and_then(|n| n.checked_add(u64::from(b)))
                .ok_or("tar size field overflows")?;
        }
        return Ok(n);
    }
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| format!("bad tar size field {text:?}"))
}

impl MemberFilter {
    /// Whether the end-of-archive marker was seen.
    pub fn done(&self) -> bool {
        self.done
    }

    /// The part of `chunk` that belongs to the archive's entries.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        while !chunk.is_empty() && !self.done {
            if self.data_left > 0 {
                let n = usize::try_from(self.data_left)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len());
                out.extend_from_slice(&chunk[..n]);
                self.data_left -= n as u64;
                chunk = &chunk[n..];
                continue;
            }
            let n = (BLOCK - self.header.len()).min(chunk.len());
            self.header.extend_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
            if self.header.len() < BLOCK {
                continue;
            }
            if self.header.iter().all(|&b| b == 0) {
                self.done = true;
                break;
            }
            let size = header_size(&self.header)?;
            self.data_left = size.div_ceil(BLOCK as u64) * BLOCK as u64;
            out.append(&mut self.header);
        }
        Ok(())
    }
}

/// Streams the tars of `paths` of `source` as one archive. The first path is
/// opened before this returns, so a path that does not exist is an error
/// answer rather than a broken download.
pub async fn selection<D: BlockRestoreDriver>(
    driver: std::sync::Arc<D>,
    source: String,
    first_path: Vec<u8>,
    paths: Vec<Vec<u8>>,
) -> Result<StreamBody, DriverError> {
    let paths = paths.into_iter();
    let first = driver
        .extract(&source, &first_path, ExtractFormat::Tar, false, None)
        .await?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut next = Some(first);
        let mut rest = paths;
        loop {
            let stream = match next.take() {
                Some(s) => s,
                None => match rest.next() {
                    None => break,
                    Some(p) => match driver
                        .extract(&source, &p, ExtractFormat::Tar, false, None)
                        .await
                    {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
                            return;
                        }
                    },
                },
            };
            if let Err(e) = member(stream, &tx).await {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
        let _ = tx.send(Ok(Bytes::from_static(&[0u8; 2 * BLOCK]))).await;
    });
    Ok(StreamBody::from_channel(rx, None))
}

/// Forwards one member archive; an error if it broke or ended without its
/// marker (a truncated tar must not pass as a complete one).
async fn member(
    mut stream: ExtractStream,
    tx: &mpsc::Sender<Result<Bytes, io::Error>>,
) -> Result<(), io::Error> {
    let mut filter = MemberFilter::default();
    while let Some(chunk) = stream
        .next_chunk()
        .await
        .map_err(|e| io::Error::other(e.to_string()))?
    {
        let mut out = Vec::with_capacity(chunk.len());
        filter.feed(&chunk, &mut out).map_err(io::Error::other)?;
        if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
            return Err(io::Error::other("the browser went away"));
        }
        if filter.done() {
            return Ok(());
        }
    }
    Err(io::Error::other(
        "a tar from the guest ended without its end marker",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).expect("append");
        }
        b.into_inner().expect("finish")
    }

    #[test]
    fn members_concatenate_into_one_archive() {
        // File data ending in zero blocks must survive.
        let zeros = vec![0u8; 3 * BLOCK];
        let a = tar_of(&[("a/one.txt", b"one"), ("a/zeros.bin", &zeros)]);
        let b = tar_of(&[("b.txt", b"bee")]);
        let mut out = Vec::new();
        for member in [&a, &b] {
            let mut f = MemberFilter::default();
            // Odd chunk sizes: headers and data split anywhere.
            for chunk in member.chunks(77) {
                f.feed(chunk, &mut out).expect("feed");
            }
            assert!(f.done());
        }
        out.extend_from_slice(&[0u8; 2 * BLOCK]);
        let mut ar = tar::Archive::new(out.as_slice());
        let mut got = Vec::new();
        for e in ar.entries().expect("entries") {
            let mut e = e.expect("entry");
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).expect("read");
            got.push((e.path().expect("path").display().to_string(), data));
        }
        assert_eq!(
            got,
            [
                ("a/one.txt".to_string(), b"one".to_vec()),
                ("a/zeros.bin".to_string(), zeros),
                ("b.txt".to_string(), b"bee".to_vec()),
            ]
        );
    }

    #[test]
    fn size_fields() {
        let mut h = [0u8; BLOCK];
        h[124..135].copy_from_slice(b"00000001750");
        assert_eq!(header_size(&h), Ok(1000));
        h[124] = 0x80;
        h[125..136].fill(0);
        h[135] = 5;
        assert_eq!(header_size(&h), Ok(5));
        h[124..136].copy_from_slice(b"9999999999\0\0");
        assert!(header_size(&h).is_err());
    }
}

//! Getting the uncompressed `vmlinux` ELF out of a bzImage, and reading its version string.
//!
//! QEMU boots an ELF `vmlinux` through its PVH entry point far faster under TCG than the
//! bzImage, which first decompresses itself in emulated code (ENVIRONMENT.md: 2.7–3.6 s
//! against 7.7 s to the first answer). The bzImage's setup header says where the
//! compressed payload is (`payload_offset`, boot protocol ≥ 2.08); when that is missing or
//! unusable the image is scanned for the xz, zstd and gzip stream magics instead.

use std::io::{self, BufRead, Read};

use crate::elf::ELF_MAGIC;
use crate::error::{Error, Result};

/// Compression formats a Linux payload may use that we can decompress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Xz,
    Zstd,
    Gzip,
}

impl Format {
    const ALL: [Format; 3] = [Format::Xz, Format::Zstd, Format::Gzip];

    fn magic(self) -> &'static [u8] {
        match self {
            Format::Xz => &[0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00],
            Format::Zstd => &[0x28, 0xB5, 0x2F, 0xFD],
            Format::Gzip => &[0x1F, 0x8B, 0x08, 0x00],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Xz => "xz",
            Format::Zstd => "zstd",
            Format::Gzip => "gzip",
        }
    }

    fn at(data: &[u8]) -> Option<Format> {
        Format::ALL
            .into_iter()
            .find(|f| data.starts_with(f.magic()))
    }
}

/// How many magic-number hits are tried before giving up (false positives fail within a
/// few bytes, so this only bounds pathological inputs).
const MAX_CANDIDATES: usize = 64;

/// Decompresses the kernel inside `bzimage` and returns the `vmlinux` ELF image.
///
/// The payload is decompressed up to the end of its stream; data after it is ignored. An
/// error is returned when no payload is found or none decompresses to an ELF file.
pub fn extract_vmlinux(bzimage: &[u8]) -> Result<Vec<u8>> {
    let mut candidates: Vec<(usize, Format)> = Vec::new();
    if let Some(offset) = header_payload_offset(bzimage) {
        if let Some(format) = bzimage.get(offset..).and_then(Format::at) {
            candidates.push((offset, format));
        }
    }
    for format in Format::ALL {
        for offset in find_all(bzimage, format.magic()) {
            if candidates.len() >= MAX_CANDIDATES {
                break;
            }
            if !candidates.contains(&(offset, format)) {
                candidates.push((offset, format));
            }
        }
    }

    let mut first_error = None;
    for (offset, format) in candidates {
        match decompress_elf(&bzimage[offset..], format) {
            Ok(elf) => return Ok(elf),
            Err(reason) => {
                first_error.get_or_insert(Error::BadPayload {
                    format: format.name(),
                    offset,
                    reason: reason.to_string(),
                });
            }
        }
    }
    Err(first_error.unwrap_or(Error::NoPayload {
        size: bzimage.len(),
    }))
}

/// The kernel release (`6.1.0-56-amd64`) from a bzImage's `kernel_version` string, if the
/// image has one.
pub fn bzimage_release(bzimage: &[u8]) -> Option<String> {
    if bzimage.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let pointer = u16::from_le_bytes(bzimage.get(0x20e..0x210)?.try_into().ok()?);
    if pointer == 0 {
        return None;
    }
    let start = usize::from(pointer) + 0x200;
    let text = bzimage.get(start..start.checked_add(256)?.min(bzimage.len()))?;
    let end = text.iter().position(|&b| b == 0 || b == b' ')?;
    let release = std::str::from_utf8(&text[..end]).ok()?;
    let plausible = !release.is_empty()
        && release
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+~".contains(&b));
    plausible.then(|| release.to_string())
}

/// Where the setup header says the compressed payload starts, if it says so.
fn header_payload_offset(bzimage: &[u8]) -> Option<usize> {
    if bzimage.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let version = u16::from_le_bytes(bzimage.get(0x206..0x208)?.try_into().ok()?);
    if version < 0x0208 {
        return None;
    }
    let setup_sects = match *bzimage.get(0x1f1)? {
        0 => 4,
        n => usize::from(n),
    };
    let payload_offset = u32::from_le_bytes(bzimage.get(0x248..0x24c)?.try_into().ok()?);
    (setup_sects + 1)
        .checked_mul(512)?
        .checked_add(usize::try_from(payload_offset).ok()?)
}

/// Offsets of every occurrence of `needle` in `haystack`.
fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    let first = needle[0];
    haystack
        .iter()
        .enumerate()
        .filter(move |&(_, &b)| b == first)
        .map(|(i, _)| i)
        .filter(move |&i| haystack[i..].starts_with(needle))
}

/// Decompresses one stream starting at `data`, checking the ELF magic first so a false
/// magic hit is dropped after a few bytes.
fn decompress_elf(data: &[u8], format: Format) -> io::Result<Vec<u8>> {
    let reader: Box<dyn Read + '_> = match format {
        Format::Xz => return decompress_xz_elf(data),
        Format::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(data)?.single_frame();
            // Kernel images are compressed with large windows (zstd -22 --ultra).
            decoder.window_log_max(31)?;
            Box::new(decoder)
        }
        Format::Gzip => Box::new(flate2::bufread::GzDecoder::new(data)),
    };
    read_elf(reader, data.len())
}

/// xz needs its own loop: `xz2`'s readers keep feeding input after the end of the stream,
/// which liblzma rejects when data follows it (as it does in a bzImage).
fn decompress_xz_elf(data: &[u8]) -> io::Result<Vec<u8>> {
    use xz2::stream::{Action, Status, Stream};

    let mut stream = Stream::new_stream_decoder(u64::MAX, 0).map_err(io::Error::from)?;
    // Start small so a false magic hit costs nothing, then grow.
    let mut elf: Vec<u8> = Vec::with_capacity(4096);
    let mut checked = false;
    loop {
        let consumed = usize::try_from(stream.total_in()).unwrap_or(usize::MAX);
        let input = data.get(consumed..).unwrap_or_default();
        let before = (stream.total_in(), stream.total_out());
        let status = stream
            .process_vec(input, &mut elf, Action::Run)
            .map_err(io::Error::from)?;
        if !checked && elf.len() >= ELF_MAGIC.len() {
            if !elf.starts_with(ELF_MAGIC) {
                return Err(not_elf(&elf));
            }
            checked = true;
            elf.reserve(data.len().saturating_mul(4).min(1 << 30));
        }
        match status {
            Status::StreamEnd => break,
            _ if elf.len() == elf.capacity() => elf.reserve(elf.capacity().max(1 << 20)),
            _ if before == (stream.total_in(), stream.total_out()) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated xz stream",
                ));
            }
            _ => {}
        }
    }
    if !checked {
        return Err(not_elf(&elf));
    }
    Ok(elf)
}

fn not_elf(start: &[u8]) -> io::Error {
    let start = &start[..start.len().min(4)];
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("starts with {start:02x?}, not the ELF magic"),
    )
}

fn read_elf(mut reader: impl Read, compressed_len: usize) -> io::Result<Vec<u8>> {
    let mut magic = [0u8; 4];
    reader.read_exact(&mut magic)?;
    if &magic != ELF_MAGIC {
        return Err(not_elf(&magic));
    }
    // Kernels compress about 3-5×; reserving avoids most reallocations of ~66 MB.
    let mut elf = Vec::with_capacity(compressed_len.saturating_mul(4).min(1 << 30));
    elf.extend_from_slice(&magic);
    let mut reader = io::BufReader::with_capacity(1 << 20, reader);
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        elf.extend_from_slice(chunk);
        reader.consume(n);
    }
    Ok(elf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn fake_elf() -> Vec<u8> {
        let mut elf = ELF_MAGIC.to_vec();
        elf.extend((0..200_000u32).map(|i| (i % 251) as u8));
        elf
    }

    fn wrap(payload: &[u8]) -> Vec<u8> {
        // Some bytes that contain a false xz/zstd magic before the real payload.
        let mut image = vec![0x55; 1000];
        image.extend_from_slice(&[0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00, 1, 2, 3]);
        image.extend_from_slice(&[0x28, 0xB5, 0x2F, 0xFD, 9, 9, 9, 9]);
        image.extend_from_slice(payload);
        image.extend_from_slice(b"trailing data after the stream");
        image
    }

    #[test]
    fn extracts_xz_zstd_and_gzip() {
        let elf = fake_elf();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(&elf).unwrap();
        let xz = xz.finish().unwrap();
        let zst = zstd::encode_all(&elf[..], 3).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&elf).unwrap();
        let gz = gz.finish().unwrap();
        for (name, payload) in [("xz", xz), ("zstd", zst), ("gzip", gz)] {
            let extracted =
                extract_vmlinux(&wrap(&payload)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(extracted, elf, "{name}");
        }
    }

    #[test]
    fn non_elf_payload_is_an_error() {
        let zst = zstd::encode_all(&b"not an elf file at all"[..], 3).unwrap();
        let err = extract_vmlinux(&wrap(&zst)).unwrap_err();
        assert!(matches!(err, Error::BadPayload { .. }), "{err}");
        let err = extract_vmlinux(b"nothing compressed here").unwrap_err();
        assert!(matches!(err, Error::NoPayload { .. }), "{err}");
    }

    #[test]
    fn reads_release_from_header() {
        let mut image = vec![0u8; 0x1000];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x20e..0x210].copy_from_slice(&0x0300u16.to_le_bytes());
        let text = b"6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        image[0x500..0x500 + text.len()].copy_from_slice(text);
        assert_eq!(bzimage_release(&image).as_deref(), Some("6.1.0-56-amd64"));
        assert_eq!(bzimage_release(&image[..0x300]), None);
    }
}

//! The files an image's own header names, read by us before `qemu-img`
//! opens anything: a qcow2 header's backing file and external data file, a
//! vmdk descriptor's extents and parent. QEMU opens those when it opens the
//! image (a vmdk's extents even for `qemu-img info`), so a guest-written
//! header naming a FIFO would hang it and one naming another VM's disk would
//! attach it; `super::refs` validates every name found here first.
//!
//! Only what is needed to find names is parsed, with fixed bounds: the
//! first cluster of a qcow2 (where QEMU requires the backing name and the
//! header extensions to be), a vmdk descriptor of at most [`MAX_DESCRIPTOR`]
//! bytes. Anything unusual is left to qemu-img, whose answer is checked
//! again afterwards.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Largest vmdk descriptor read (QEMU's own limit for text descriptors is
/// far smaller in practice; this only bounds our read).
pub const MAX_DESCRIPTOR: u64 = 1 << 20;
/// Largest qcow2 cluster QEMU accepts (2 MiB): the header lives in the first.
const MAX_QCOW2_CLUSTER: u64 = 2 << 20;
/// qcow2 header extension: external data file name.
const QCOW2_EXT_DATA_FILE: u32 = 0x4441_5441;
/// qcow2 header extension: end of the list.
const QCOW2_EXT_END: u32 = 0;

/// One file name an image's header names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `backing file`, `external data file`, `vmdk extent` or `vmdk parent`.
    pub what: &'static str,
    /// The name as written in the header.
    pub name: String,
}

/// What a file's first bytes say it is, as far as file references go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A qcow2 header (`QFI\xfb`).
    Qcow2,
    /// A vmdk sparse extent (`KDMV`) or text descriptor.
    Vmdk,
}

impl Kind {
    /// QEMU's name of the format.
    pub fn format(self) -> &'static str {
        match self {
            Kind::Qcow2 => "qcow2",
            Kind::Vmdk => "vmdk",
        }
    }
}

fn head(f: &mut File) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    f.take(4096).read_to_end(&mut head)?;
    Ok(head)
}

fn kind_of(head: &[u8]) -> Option<Kind> {
    if head.starts_with(b"QFI\xfb") {
        Some(Kind::Qcow2)
    } else if head.starts_with(b"KDMV") || looks_like_descriptor(head) {
        Some(Kind::Vmdk)
    } else {
        None
    }
}

/// Whether `path` starts like a qcow2 or a vmdk.
pub fn kind(path: &Path) -> io::Result<Option<Kind>> {
    Ok(kind_of(&head(&mut File::open(path)?)?))
}

/// The file names `path`'s header names, if it looks like a qcow2 or vmdk
/// (anything else names none).
pub fn references(path: &Path) -> io::Result<Vec<Reference>> {
    let mut f = File::open(path)?;
    let head = head(&mut f)?;
    if head.starts_with(b"QFI\xfb") {
        let cluster = be32(&head, 20)
            .filter(|bits| (9..=21).contains(bits))
            .map_or(64 << 10, |bits| 1u64 << bits)
            .min(MAX_QCOW2_CLUSTER);
        // QEMU takes a backing name (at most 1023 bytes) that starts within
        // the first cluster.
        let first = read_at(&mut f, 0, cluster + 1024)?;
        return Ok(qcow2_references(&first));
    }
    if head.starts_with(b"KDMV") {
        // Sparse extent; an embedded descriptor at (offset, size) in sectors.
        let (Some(off), Some(size)) = (le64(&head, 28), le64(&head, 36)) else {
            return Ok(Vec::new());
        };
        if off == 0 || size == 0 {
            return Ok(Vec::new());
        }
        let text = read_at(
            &mut f,
            off.saturating_mul(512),
            size.saturating_mul(512).min(MAX_DESCRIPTOR),
        )?;
        return Ok(descriptor_references(&text));
    }
    if looks_like_descriptor(&head) {
        let text = read_at(&mut f, 0, MAX_DESCRIPTOR)?;
        return Ok(descriptor_references(&text));
    }
    Ok(Vec::new())
}

fn read_at(f: &mut File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take(len).read_to_end(&mut buf)?;
    Ok(buf)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The backing file and external data file of a qcow2 whose first cluster
/// is `c` (version 2 or 3).
pub fn qcow2_references(c: &[u8]) -> Vec<Reference> {
    let mut out = Vec::new();
    let (Some(version), Some(backing_off), Some(backing_len)) =
        (be32(c, 4), be64(c, 8), be32(c, 16))
    else {
        return out;
    };
    // Other versions, and backing names QEMU refuses (longer than 1023
    // bytes, or not where it reads them), are left to qemu-img to refuse.
    if !(2..=3).contains(&version) {
        return out;
    }
    if backing_off != 0 && (1..=1023).contains(&backing_len) {
        let start = usize::try_from(backing_off).unwrap_or(usize::MAX);
        if let Some(name) = c.get(start..start.saturating_add(backing_len as usize)) {
            out.push(Reference {
                what: "backing file",
                name: text(name),
            });
        }
    }
    // Header extensions follow the header: 72 bytes in version 2, its
    // recorded length in version 3.
    let mut at = match version {
        2 => 72,
        _ => be32(c, 100).map_or(104, |l| l as usize),
    };
    while let (Some(kind), Some(len)) = (be32(c, at), be32(c, at + 4)) {
        if kind == QCOW2_EXT_END {
            break;
        }
        let data = at + 8;
        let len = len as usize;
        if kind == QCOW2_EXT_DATA_FILE {
            if let Some(name) = c.get(data..data.saturating_add(len)) {
                out.push(Reference {
                    what: "external data file",
                    name: text(name),
                });
            }
        }
        at = data.saturating_add(len.div_ceil(8) * 8);
    }
    out
}

/// Whether the start of a file reads like a vmdk text descriptor: its
/// header comment, a `createType` line or an extent line.
fn looks_like_descriptor(head: &[u8]) -> bool {
    let t = String::from_utf8_lossy(head);
    t.contains("# Disk DescriptorFile")
        || t.lines().any(|l| {
            let l = l.trim_start();
            let mut w = l.split_whitespace();
            l.starts_with("createType")
                || (matches!(w.next(), Some("RW" | "RDONLY" | "NOACCESS"))
                    && w.next().is_some_and(|n| n.parse::<u64>().is_ok())
                    && w.next().is_some())
        })
}

/// The extents and parent a vmdk descriptor names.
pub fn descriptor_references(desc: &[u8]) -> Vec<Reference> {
    let mut out = Vec::new();
    for line in String::from_utf8_lossy(desc).lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("parentFileNameHint") {
            if let Some(name) = quoted(rest) {
                out.push(Reference {
                    what: "vmdk parent",
                    name,
                });
            }
            continue;
        }
        let access = l.split_whitespace().next().unwrap_or("");
        if matches!(access, "RW" | "RDONLY" | "NOACCESS") {
            // ACCESS SECTORS TYPE "FILE" [OFFSET]; ZERO extents name none.
            if let Some(name) = quoted(l) {
                out.push(Reference {
                    what: "vmdk extent",
                    name,
                });
            }
        }
    }
    out
}

/// The text between the first pair of double quotes.
fn quoted(s: &str) -> Option<String> {
    let start = s.find('"')? + 1;
    let len = s[start..].find('"')?;
    Some(s[start..start + len].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qcow2_v3(backing: Option<&str>, data_file: Option<&str>) -> Vec<u8> {
        let mut c = vec![0u8; 65536];
        c[..4].copy_from_slice(b"QFI\xfb");
        c[4..8].copy_from_slice(&3u32.to_be_bytes());
        c[20..24].copy_from_slice(&16u32.to_be_bytes());
        c[100..104].copy_from_slice(&112u32.to_be_bytes());
        let mut at = 112;
        if let Some(d) = data_file {
            c[at..at + 4].copy_from_slice(&QCOW2_EXT_DATA_FILE.to_be_bytes());
            c[at + 4..at + 8].copy_from_slice(&(d.len() as u32).to_be_bytes());
            c[at + 8..at + 8 + d.len()].copy_from_slice(d.as_bytes());
            at += 8 + d.len().div_ceil(8) * 8;
        }
        at += 8; // end extension (zeros)
        if let Some(b) = backing {
            c[8..16].copy_from_slice(&(at as u64).to_be_bytes());
            c[16..20].copy_from_slice(&(b.len() as u32).to_be_bytes());
            c[at..at + b.len()].copy_from_slice(b.as_bytes());
        }
        c
    }

    #[test]
    fn qcow2_backing_and_data_file() {
        let refs = qcow2_references(&qcow2_v3(Some("../101/base.qcow2"), Some("/dev/sda")));
        assert_eq!(
            refs,
            [
                Reference {
                    what: "backing file",
                    name: "../101/base.qcow2".into()
                },
                Reference {
                    what: "external data file",
                    name: "/dev/sda".into()
                }
            ]
        );
        assert!(qcow2_references(&qcow2_v3(None, None)).is_empty());
        // Truncated or garbage headers name nothing and do not panic.
        assert!(qcow2_references(b"QFI\xfb\0\0\0\x03").is_empty());
        let mut bad = qcow2_v3(Some("x"), None);
        bad[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(qcow2_references(&bad).is_empty());
        let mut v99 = qcow2_v3(Some("x"), None);
        v99[4..8].copy_from_slice(&99u32.to_be_bytes());
        assert!(qcow2_references(&v99).is_empty());
    }

    #[test]
    fn vmdk_descriptor_extents_and_parent() {
        let d = b"# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n\
                  parentFileNameHint=\"parent.vmdk\"\n\
                  RW 16384 FLAT \"../../101/qemu-1/drive-scsi0.raw\" 0\n\
                  RW 100 ZERO\nRDONLY 8 SPARSE \"s.vmdk\"\n";
        let refs = descriptor_references(d);
        let names: Vec<(&str, &str)> = refs.iter().map(|r| (r.what, r.name.as_str())).collect();
        assert_eq!(
            names,
            [
                ("vmdk parent", "parent.vmdk"),
                ("vmdk extent", "../../101/qemu-1/drive-scsi0.raw"),
                ("vmdk extent", "s.vmdk")
            ]
        );
        assert!(looks_like_descriptor(d));
        assert!(looks_like_descriptor(b"RW 8 FLAT \"x\" 0\n"));
        assert!(!looks_like_descriptor(b"\x7fELF"));
        assert!(!looks_like_descriptor(b"RW is not a number here"));
    }

    #[test]
    fn files_are_sniffed_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.img");
        let mut bytes =
            b"# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"fifo\" 0\n"
                .to_vec();
        bytes.resize(1 << 16, 0);
        std::fs::write(&raw, &bytes).unwrap();
        let refs = references(&raw).unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].name, "fifo");
        std::fs::write(&raw, vec![0u8; 4096]).unwrap();
        assert!(references(&raw).unwrap().is_empty());
    }
}

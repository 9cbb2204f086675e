//! Parsing of API paths: `/<disk>/<bucket-type>/<bucket…>/<path inside>`.
//!
//! The first levels are virtual (disks, bucket types, buckets); what follows
//! the bucket is passed untouched to the daemon's confined resolver, which
//! keeps `..` and symlinks inside the mount.
//!
//! The daemon parses every request path with [`parse`]; the grammar lives in
//! this crate (pure code, no OS calls) so that it is part of the contract and
//! can be fuzzed on its own (`fuzz/`, target `api_path`).

use thiserror::Error;

/// Longest path accepted, in bytes (Linux PATH_MAX plus the virtual prefix).
pub const MAX_PATH_LEN: usize = 4096 + 256;

/// A kind of bucket: a place on a disk that holds a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BucketKind {
    /// A partition: `part/N`.
    Part,
    /// The whole, unpartitioned disk: `raw/raw`.
    Raw,
    /// An LVM logical volume: `lvm/VG/LV`.
    Lvm,
    /// An md RAID array: `md/NAME`.
    Md,
    /// The opened content of a LUKS container: `luks/NAME`, where NAME is the
    /// container's own bucket path with `/` as `-` (`part-2`, `lvm-vg-lv`).
    Luks,
    /// The opened content of a BitLocker volume: `bitlocker/NAME`, named as
    /// for LUKS.
    Bitlocker,
    /// A ZFS dataset, snapshot or volume: `zfs/POOL/NAME`, where NAME is the
    /// dataset's path inside the pool with `/` as `-` (the pool's own root
    /// dataset is named as the pool), `NAME@SNAP` for a snapshot and
    /// `NAME-partN` for a partition of a volume.
    Zfs,
}

impl BucketKind {
    /// The name of the kind in paths.
    pub fn name(self) -> &'static str {
        match self {
            BucketKind::Part => "part",
            BucketKind::Raw => "raw",
            BucketKind::Lvm => "lvm",
            BucketKind::Md => "md",
            BucketKind::Luks => "luks",
            BucketKind::Bitlocker => "bitlocker",
            BucketKind::Zfs => "zfs",
        }
    }

    /// Parses a kind name.
    pub fn from_name(s: &[u8]) -> Option<Self> {
        match s {
            b"part" => Some(BucketKind::Part),
            b"raw" => Some(BucketKind::Raw),
            b"lvm" => Some(BucketKind::Lvm),
            b"md" => Some(BucketKind::Md),
            b"luks" => Some(BucketKind::Luks),
            b"bitlocker" => Some(BucketKind::Bitlocker),
            b"zfs" => Some(BucketKind::Zfs),
            _ => None,
        }
    }

    /// How many path components name a bucket of this kind.
    pub fn name_components(self) -> usize {
        match self {
            BucketKind::Lvm | BucketKind::Zfs => 2,
            _ => 1,
        }
    }
}

/// A parsed API path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VPath {
    /// `/`: the disks.
    Root,
    /// `/<disk>`: its bucket types.
    Disk(String),
    /// `/<disk>/<type>`: its buckets of that type (for `lvm`: its VGs).
    Kind(String, BucketKind),
    /// `/<disk>/lvm/<VG>`: the first components of a bucket name that has
    /// several (the LVs of a VG).
    Group {
        /// The disk name.
        disk: String,
        /// The bucket kind.
        kind: BucketKind,
        /// The leading name components, joined with `/`.
        group: String,
    },
    /// `/<disk>/<type>/<name…>[/<inside>]`: a bucket or a path inside it.
    Inside {
        /// The disk name.
        disk: String,
        /// The bucket kind.
        kind: BucketKind,
        /// The bucket name (`1`, `raw`, `vg/lv`).
        bucket: String,
        /// The path inside the filesystem, relative, without leading slash; empty for its root.
        rest: Vec<u8>,
    },
}

/// Why a path was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PathError {
    /// Longer than [`MAX_PATH_LEN`].
    #[error("path is too long ({0} bytes, at most {MAX_PATH_LEN})")]
    TooLong(usize),
    /// Contains a NUL byte.
    #[error("path contains a NUL byte")]
    Nul,
    /// A virtual level is not UTF-8 or is `..`.
    #[error("invalid path component {0:?} in the disk/bucket part of the path")]
    BadComponent(String),
    /// Unknown bucket type.
    #[error("unknown bucket type '{0}': expected part, raw, lvm, md, luks, bitlocker or zfs")]
    UnknownKind(String),
}

fn virtual_component(c: &[u8]) -> Result<String, PathError> {
    let s = std::str::from_utf8(c)
        .map_err(|_| PathError::BadComponent(String::from_utf8_lossy(c).into_owned()))?;
    if s == ".." {
        return Err(PathError::BadComponent(s.to_owned()));
    }
    Ok(s.to_owned())
}

/// Parses raw path bytes.
pub fn parse(path: &[u8]) -> Result<VPath, PathError> {
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong(path.len()));
    }
    if path.contains(&0) {
        return Err(PathError::Nul);
    }
    let comps: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    let Some(disk) = comps.first() else {
        return Ok(VPath::Root);
    };
    let disk = virtual_component(disk)?;
    let Some(kind_name) = comps.get(1) else {
        return Ok(VPath::Disk(disk));
    };
    let kind = BucketKind::from_name(kind_name)
        .ok_or_else(|| PathError::UnknownKind(String::from_utf8_lossy(kind_name).into_owned()))?;
    let n = kind.name_components();
    if comps.len() == 2 {
        return Ok(VPath::Kind(disk, kind));
    }
    if comps.len() < 2 + n {
        let group = comps[2..]
            .iter()
            .map(|c| virtual_component(c))
            .collect::<Result<Vec<_>, _>>()?
            .join("/");
        return Ok(VPath::Group { disk, kind, group });
    }
    let bucket = comps[2..2 + n]
        .iter()
        .map(|c| virtual_component(c))
        .collect::<Result<Vec<_>, _>>()?
        .join("/");
    let rest = comps[2 + n..].join(&b'/');
    Ok(VPath::Inside {
        disk,
        kind,
        bucket,
        rest,
    })
}

/// Joins a normalized parent path and a child name into a full API path.
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parent.len() + name.len() + 1);
    out.extend_from_slice(parent);
    if !out.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// The canonical form of a parsed path (used as the parent of listed entries).
pub fn canonical(p: &VPath) -> Vec<u8> {
    match p {
        VPath::Root => b"/".to_vec(),
        VPath::Disk(d) => format!("/{d}").into_bytes(),
        VPath::Kind(d, k) => format!("/{d}/{}", k.name()).into_bytes(),
        VPath::Group { disk, kind, group } => {
            format!("/{disk}/{}/{group}", kind.name()).into_bytes()
        }
        VPath::Inside {
            disk,
            kind,
            bucket,
            rest,
        } => {
            let mut v = format!("/{disk}/{}/{bucket}", kind.name()).into_bytes();
            if !rest.is_empty() {
                v.push(b'/');
                v.extend_from_slice(rest);
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(parse(b"").unwrap(), VPath::Root);
        assert_eq!(parse(b"/").unwrap(), VPath::Root);
        assert_eq!(parse(b"//./").unwrap(), VPath::Root);
        assert_eq!(parse(b"/d0").unwrap(), VPath::Disk("d0".into()));
        assert_eq!(
            parse(b"/d0/part/").unwrap(),
            VPath::Kind("d0".into(), BucketKind::Part)
        );
        assert_eq!(
            parse(b"/d0/part/2/etc//passwd").unwrap(),
            VPath::Inside {
                disk: "d0".into(),
                kind: BucketKind::Part,
                bucket: "2".into(),
                rest: b"etc/passwd".to_vec()
            }
        );
        assert_eq!(
            parse(b"/d0/lvm/vg").unwrap(),
            VPath::Group {
                disk: "d0".into(),
                kind: BucketKind::Lvm,
                group: "vg".into()
            }
        );
        assert_eq!(
            parse(b"/d0/lvm/").unwrap(),
            VPath::Kind("d0".into(), BucketKind::Lvm)
        );
        assert_eq!(canonical(&parse(b"/d0/lvm/vg/").unwrap()), b"/d0/lvm/vg");
        match parse(b"/d0/lvm/vg/root/x").unwrap() {
            VPath::Inside { bucket, rest, .. } => {
                assert_eq!(bucket, "vg/root");
                assert_eq!(rest, b"x");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn inner_dotdot_is_kept_for_the_confined_resolver() {
        match parse(b"/d/raw/raw/../../x\xff").unwrap() {
            VPath::Inside { rest, .. } => assert_eq!(rest, b"../../x\xff"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(b"/../x"), Err(PathError::BadComponent("..".into())));
        assert!(matches!(parse(b"/d/ufs"), Err(PathError::UnknownKind(_))));
        assert!(matches!(
            parse(b"/d/zfs/tank/data@snap/x"),
            Ok(VPath::Inside {
                kind: BucketKind::Zfs,
                ..
            })
        ));
        assert_eq!(parse(b"/d/a\0b"), Err(PathError::Nul));
        assert!(matches!(
            parse(&vec![b'a'; MAX_PATH_LEN + 1]),
            Err(PathError::TooLong(_))
        ));
        assert!(matches!(parse(b"/\xff"), Err(PathError::BadComponent(_))));
    }

    #[test]
    fn canonical_roundtrip() {
        for p in [&b"/"[..], b"/d", b"/d/part", b"/d/part/1", b"/d/part/1/a/b"] {
            assert_eq!(canonical(&parse(p).unwrap()), p);
        }
        assert_eq!(join(b"/", b"d"), b"/d");
        assert_eq!(join(b"/d/part/1", b"x"), b"/d/part/1/x");
    }
}

//! The answer of `GET /api/map`: where a regular file's bytes lie on the
//! VM's disks, so that the host can read a big file from QEMU's read-only
//! export of the same disks instead of through the guest.
//!
//! The filesystem is parsed only in the guest; the host only copies byte
//! ranges it is told about, after checking that they tile the file exactly
//! and lie inside the disks (a lying guest can point at other bytes of the
//! disks the user opened, which it could stream anyway, and at nothing else).

use serde::{Deserialize, Serialize};

/// Most extents one page of a map holds; the host asks again `from` the
/// page's [`FileMap::next`].
pub const MAX_EXTENTS_PER_PAGE: usize = 4096;

/// One page of a file's map.
///
/// The extents of a page tile the file from the page's start (the `from` of
/// the request) up to [`FileMap::next`] (or the file's size on the last
/// page): each begins where the one before it ended, none is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMap {
    /// The file's size in bytes.
    pub size: u64,
    /// Why the file's bytes cannot be read from the disks (compressed,
    /// encrypted, inline, on a device that is not a plain slice of a disk):
    /// the host reads it through the guest instead. No extents then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmappable: Option<String>,
    /// The extents of this page, in file order.
    #[serde(default)]
    pub extents: Vec<MapExtent>,
    /// Where the next page starts (a file offset), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// A run of a file's bytes: where they are on a disk, or zeros.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapExtent {
    /// Offset in the file.
    pub offset: u64,
    /// Length in bytes (never 0).
    pub length: u64,
    /// The disk (its name in paths, the virtio serial) that holds the bytes;
    /// `None`: the run reads as zeros (a hole, or space allocated but never
    /// written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    /// Byte offset on that disk (0 for zeros).
    #[serde(default)]
    pub disk_offset: u64,
}

impl MapExtent {
    /// The end of the run in the file (exclusive), `None` on overflow.
    pub fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let m = FileMap {
            size: 10,
            unmappable: None,
            extents: vec![
                MapExtent {
                    offset: 0,
                    length: 4,
                    disk: Some("d".into()),
                    disk_offset: 4096,
                },
                MapExtent {
                    offset: 4,
                    length: 6,
                    disk: None,
                    disk_offset: 0,
                },
            ],
            next: None,
        };
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(
            j,
            r#"{"size":10,"extents":[{"offset":0,"length":4,"disk":"d","disk_offset":4096},{"offset":4,"length":6,"disk_offset":0}]}"#
        );
        assert_eq!(serde_json::from_str::<FileMap>(&j).unwrap(), m);
    }
}

//! The properties the fuzz targets check, one function per target.
//!
//! `fuzz/` (cargo-fuzz, nightly, outside the workspace) calls each function
//! from a libFuzzer target; `tests/replay.rs` (stable, inside the workspace,
//! part of `make test`) feeds every checked-in seed under `fuzz/seeds/TARGET/`
//! to the same function. A function panics when a property does not hold;
//! anything the input merely makes fail (an error result) is fine.
//!
//! | target | code under test | property |
//! | --- | --- | --- |
//! | [`fsmagic`] | superblock detection | no panic; [`file_restore_fsmagic::probe`] agrees with `detect` |
//! | [`api_path`] | the API path grammar and path encoding | no panic; canonical forms parse back to themselves |
//! | [`unpack`] | the host's tar unpacker | no panic; nothing written outside TARGET, nothing outside it changed |
//! | [`image_header`] | image format decision and backing-chain checks | no panic; an accepted image makes QEMU open no file outside the store |
//! | [`big_file`] | the NBD handshake parsers and the checks of a guest's file map | no panic; an accepted map tiles the file exactly and names only known disks |
//! | [`find_answer`] | the host's reader of a guest's search answer | no panic; never more matches than asked, nothing after the end line |

mod big_file;
mod find_answer;
mod image;
mod unpack;

pub use big_file::big_file;
pub use find_answer::find_answer;
pub use image::image_header;
pub use unpack::unpack;

use file_restore_fsmagic::{detect, has_partition_table, probe, PROBE_LEN};
use file_restore_wire::vpath::{self, VPath, MAX_PATH_LEN};

/// A target's check: panics when a property does not hold for the input.
pub type Check = fn(&[u8]);

/// The fuzz targets, by name (`fuzz/fuzz_targets/NAME.rs`, seeds in
/// `fuzz/seeds/NAME/`), and the check each runs.
pub const TARGETS: &[(&str, Check)] = &[
    ("fsmagic", fsmagic),
    ("api_path", api_path),
    ("unpack", unpack),
    ("image_header", image_header),
    ("big_file", big_file),
    ("find_answer", find_answer),
];

/// Filesystem detection on an arbitrary device start.
pub fn fsmagic(data: &[u8]) {
    let ty = detect(data);
    let _ = ty.name();
    let _ = ty.unmountable_reason();
    let _ = has_partition_table(data);
    let probed = probe(&mut &data[..]).expect("reading a byte slice cannot fail");
    assert_eq!(
        probed,
        detect(&data[..data.len().min(PROBE_LEN)]),
        "probe() and detect() disagree"
    );
}

/// The API path grammar (the daemon parses every request path with it) and
/// the base64 path encoding both sides use.
pub fn api_path(data: &[u8]) {
    match vpath::parse(data) {
        Ok(p) => {
            let canonical = vpath::canonical(&p);
            let again = vpath::parse(&canonical).expect("a canonical path must parse");
            assert_eq!(again, p, "the canonical form parses to something else");
            if let VPath::Inside { disk, bucket, .. } = &p {
                assert!(!disk.is_empty() && disk != ".." && !disk.contains('/'));
                assert!(bucket.split('/').all(|c| !c.is_empty() && c != ".."));
            }
        }
        Err(e) => {
            assert!(!data.is_empty(), "the empty path is the root, not {e}");
            if data.len() > MAX_PATH_LEN {
                assert_eq!(e, vpath::PathError::TooLong(data.len()));
            }
        }
    }
    let encoded = file_restore_wire::encode_path(data);
    assert_eq!(
        file_restore_wire::decode_path(&encoded).expect("an encoded path decodes"),
        data
    );
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = file_restore_wire::decode_path(s);
    }
}

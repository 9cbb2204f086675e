//! The few libblkid calls the probe uses (`<blkid/blkid.h>`, util-linux 2.38
//! and later; the ABI has been stable since 2.15).

use std::os::raw::{c_char, c_int, c_void};

/// An opaque `blkid_probe`.
pub type BlkidProbe = *mut c_void;

/// `BLKID_SUBLKS_LABEL`: read the label.
pub const SUBLKS_LABEL: c_int = 1 << 1;
/// `BLKID_SUBLKS_UUID`: read the UUID.
pub const SUBLKS_UUID: c_int = 1 << 3;
/// `BLKID_SUBLKS_TYPE`: define `TYPE`.
pub const SUBLKS_TYPE: c_int = 1 << 5;
/// `BLKID_SUBLKS_USAGE`: define `USAGE`.
pub const SUBLKS_USAGE: c_int = 1 << 7;
/// `BLKID_SUBLKS_VERSION`: define `VERSION`.
pub const SUBLKS_VERSION: c_int = 1 << 8;

extern "C" {
    pub fn blkid_new_probe_from_filename(filename: *const c_char) -> BlkidProbe;
    pub fn blkid_free_probe(pr: BlkidProbe);
    pub fn blkid_probe_enable_superblocks(pr: BlkidProbe, enable: c_int) -> c_int;
    pub fn blkid_probe_set_superblocks_flags(pr: BlkidProbe, flags: c_int) -> c_int;
    pub fn blkid_probe_enable_partitions(pr: BlkidProbe, enable: c_int) -> c_int;
    pub fn blkid_do_safeprobe(pr: BlkidProbe) -> c_int;
    pub fn blkid_do_probe(pr: BlkidProbe) -> c_int;
    pub fn blkid_reset_probe(pr: BlkidProbe);
    pub fn blkid_probe_lookup_value(
        pr: BlkidProbe,
        name: *const c_char,
        data: *mut *const c_char,
        len: *mut usize,
    ) -> c_int;
}

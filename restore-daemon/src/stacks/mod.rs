//! Storage stacks: what is built on the disks' partitions — md arrays, LVM
//! volumes, opened LUKS containers — one module per stack, each run through
//! the tools image (`tools`), plus the sysfs graph (`blockdev`) that says
//! what each device is built on. The loop that orders them, probes again
//! after each layer and decides under which disks each device appears is
//! [`crate::scan`]. Imports: the modules of this folder and the daemon's
//! `pid1` (to mount the tools disk); nothing above (no disks, buckets or
//! state).
//!
//! Plain disks cost nothing here: without a stack signature no tool runs
//! and the tools disk is never mounted.

pub mod blockdev;
pub mod luks;
pub mod lvm;
pub mod md;
pub mod tools;
pub mod zfs;

/// Whether a LUKS container (a kernel name) has been opened.
pub fn is_open_container(kname: &str) -> bool {
    luks::opened_on(kname).is_some()
}

/// The bucket name (`luks/<this>`) of the content of the LUKS container in
/// the bucket `kind/name`.
pub fn luks_content_name(kind: &str, name: &str) -> String {
    luks::content_name(kind, name)
}

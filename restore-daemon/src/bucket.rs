//! Buckets and disks: what the daemon serves, and a bucket's mount state.
//!
//! The data model the rest of the daemon shares: [`Disk`] and [`Bucket`]
//! (filled in by [`crate::disks`] and [`crate::scan`]), [`MountState`]
//! (changed by [`crate::mounts`]) and the [`PublishedPhase`] status reads.
//! It imports nothing of the daemon but the path vocabulary (`vpath`).

use crate::vpath::BucketKind;
use file_restore_fsmagic::FsType;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

/// A place on a disk that holds (or may hold) a filesystem.
#[derive(Debug)]
pub struct Bucket {
    /// Kind of bucket.
    pub kind: BucketKind,
    /// Name within its kind: `1`, `raw`, `vg/lv`.
    pub name: String,
    /// The block device node (empty for a ZFS dataset, which has none).
    pub device: PathBuf,
    /// For a ZFS dataset or snapshot: its full name, which is what is
    /// mounted (type `zfs`) instead of a device.
    pub dataset: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Detected filesystem type: how the daemon treats it.
    pub fstype: FsType,
    /// The type's name as users see it (libblkid's: `ext4`, `BitLocker`,
    /// `reiserfs`, `unknown`).
    pub type_name: String,
    /// The filesystem's label, when it has one.
    pub label: Option<String>,
    /// Why it cannot be mounted, when it cannot (its type says so).
    pub not_mountable: Option<String>,
    /// For LUKS containers: `LUKS1` or `LUKS2`.
    pub encryption: Option<String>,
    /// For LUKS containers: whether no passphrase has opened it yet.
    pub locked: Option<bool>,
    /// Why it cannot be read at all (an LV whose PV is missing, an md
    /// array that cannot start); mounting it gives this error.
    pub error: Option<String>,
    /// Mount state, changed on first access; also the mount lock, held
    /// while the bucket is being mounted.
    pub mount: Mutex<MountState>,
    /// The mount phase for status, which must not take the mount lock.
    pub phase: PublishedPhase,
}

/// A disk and its buckets.
#[derive(Debug)]
pub struct Disk {
    /// Name in paths: the virtio serial, or the kernel name when there is none.
    pub name: String,
    /// The kernel name (`vda`); empty in dev mode.
    pub kname: String,
    /// Buckets, sorted by kind and then numerically by name.
    pub buckets: Vec<std::sync::Arc<Bucket>>,
}

impl Disk {
    /// The bucket kinds present on this disk, in a stable order.
    pub fn kinds(&self) -> Vec<BucketKind> {
        let mut kinds: Vec<BucketKind> = Vec::new();
        for b in &self.buckets {
            if !kinds.contains(&b.kind) {
                kinds.push(b.kind);
            }
        }
        kinds
    }
}

impl Bucket {
    /// The kernel name of its device (`vda2`, `dm-3`); empty when it has none.
    pub fn kname(&self) -> String {
        self.device
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Whether a scan of the same device found the same thing (so the old
    /// bucket, with its mount, can stay).
    pub fn same_as(&self, other: &Bucket) -> bool {
        self.kind == other.kind
            && self.name == other.name
            && self.device == other.device
            && self.dataset == other.dataset
            && self.fstype == other.fstype
            && self.type_name == other.type_name
            && self.locked == other.locked
            && self.error == other.error
    }
}

/// Mount state of a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountState {
    /// Not mounted yet (or the last attempt failed).
    NotMounted,
    /// Mounted at this directory.
    Mounted(PathBuf),
}

/// What status reports of a bucket's mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountPhase {
    /// Not mounted (never tried, or the last attempt failed).
    NotMounted,
    /// The mount system call is running.
    Mounting,
    /// Mounted.
    Mounted,
}

/// A bucket's [`MountPhase`], readable at any time without its mount lock.
///
/// [`crate::mounts::ensure_mounted`] holds the bucket's mount lock for as long as the mount
/// system call takes, which for a large or damaged filesystem on a slow
/// disk can be minutes; status reads this instead, so it never waits.
#[derive(Debug)]
pub struct PublishedPhase(AtomicU8);

impl Default for PublishedPhase {
    fn default() -> Self {
        PublishedPhase(AtomicU8::new(MountPhase::NotMounted as u8))
    }
}

impl PublishedPhase {
    /// The current phase.
    pub fn get(&self) -> MountPhase {
        match self.0.load(Ordering::Acquire) {
            x if x == MountPhase::Mounting as u8 => MountPhase::Mounting,
            x if x == MountPhase::Mounted as u8 => MountPhase::Mounted,
            _ => MountPhase::NotMounted,
        }
    }

    /// Publishes a new phase (the mount code does, around the mount call).
    pub fn set(&self, phase: MountPhase) {
        self.0.store(phase as u8, Ordering::Release);
    }
}

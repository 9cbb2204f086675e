//! What the request handlers share: disks, ticket, watchdog, limits.

use crate::bucket::{Bucket, Disk, MountPhase};
use crate::error::ApiError;
use crate::vpath::BucketKind;
use crate::watchdog::Watchdog;
use file_restore_wire::{BucketStatus, DiskStatus, ScanState, MAX_CONCURRENT_EXTRACTS};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::{watch, Notify, Semaphore};

/// Shared daemon state.
pub struct State {
    disks: RwLock<Vec<Arc<Disk>>>,
    scan_done: AtomicBool,
    scan_watch: watch::Sender<bool>,
    /// The ticket every authenticated call must present.
    pub ticket: String,
    /// Idle tracking.
    pub watchdog: Arc<Watchdog>,
    /// Where buckets get mounted.
    pub mount_base: PathBuf,
    /// Limits concurrent extract streams.
    pub extracts: Arc<Semaphore>,
    /// Notified when a client asks the daemon to stop.
    pub stop: Notify,
}

impl State {
    /// New state with no disks yet (scan pending).
    pub fn new(ticket: String, watchdog: Arc<Watchdog>, mount_base: PathBuf) -> Self {
        State {
            disks: RwLock::new(Vec::new()),
            scan_done: AtomicBool::new(false),
            scan_watch: watch::channel(false).0,
            ticket,
            watchdog,
            mount_base,
            extracts: Arc::new(Semaphore::new(MAX_CONCURRENT_EXTRACTS)),
            stop: Notify::new(),
        }
    }

    /// Publishes the scan result.
    pub fn set_disks(&self, disks: Vec<Disk>) {
        if let Ok(mut d) = self.disks.write() {
            *d = disks.into_iter().map(Arc::new).collect();
        }
        self.scan_done.store(true, Ordering::SeqCst);
        self.scan_watch.send_replace(true);
    }

    /// Replaces the disks after a rescan (an unlock opened something),
    /// keeping every bucket that is still the same device with the same
    /// content, so its mount and any stream reading it carry on.
    pub fn replace_disks(&self, disks: Vec<Disk>) {
        let old = self.disks();
        let merged: Vec<Arc<Disk>> = disks
            .into_iter()
            .map(|mut d| {
                let prev: Vec<Arc<Bucket>> =
                    old.iter().flat_map(|o| o.buckets.iter().cloned()).collect();
                for b in d.buckets.iter_mut() {
                    if let Some(same) = prev.iter().find(|o| o.same_as(b)) {
                        *b = same.clone();
                    }
                }
                Arc::new(d)
            })
            .collect();
        if let Ok(mut d) = self.disks.write() {
            *d = merged;
        }
    }

    /// Waits until the disk scan has finished (at most `limit`), so that a
    /// listing right after boot is complete rather than empty.
    pub async fn wait_for_scan(&self, limit: std::time::Duration) -> Result<(), ApiError> {
        let mut rx = self.scan_watch.subscribe();
        let done =
            tokio::time::timeout(limit, async { rx.wait_for(|done| *done).await.is_ok() }).await;
        match done {
            Ok(true) => Ok(()),
            _ => Err(ApiError::new(
                hyper::StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the disk scan has not finished after {} s; try again",
                    limit.as_secs()
                ),
            )),
        }
    }

    /// The disks found so far.
    pub fn disks(&self) -> Vec<Arc<Disk>> {
        self.disks.read().map(|d| d.clone()).unwrap_or_default()
    }

    /// Scan state for status.
    pub fn scan_state(&self) -> ScanState {
        if self.scan_done.load(Ordering::SeqCst) {
            ScanState::Done
        } else {
            ScanState::Scanning
        }
    }

    /// Finds a disk by name; the error lists the disks that exist.
    pub fn disk(&self, name: &str) -> Result<Arc<Disk>, ApiError> {
        let disks = self.disks();
        if let Some(d) = disks.iter().find(|d| d.name == name) {
            return Ok(d.clone());
        }
        let names: Vec<&str> = disks.iter().map(|d| d.name.as_str()).collect();
        let scanning = if self.scan_state() == ScanState::Scanning {
            " (the disk scan is still running; try again shortly)"
        } else {
            ""
        };
        Err(ApiError::not_found(format!(
            "no disk named '{name}'; disks: {}{scanning}",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )))
    }

    /// Finds a bucket; the error lists the buckets of that disk.
    pub fn bucket(
        &self,
        disk: &str,
        kind: BucketKind,
        name: &str,
    ) -> Result<(Arc<Disk>, Arc<Bucket>), ApiError> {
        let d = self.disk(disk)?;
        if let Some(b) = d.buckets.iter().find(|b| b.kind == kind && b.name == name) {
            return Ok((d.clone(), b.clone()));
        }
        let have: Vec<String> = d
            .buckets
            .iter()
            .map(|b| format!("{}/{}", b.kind.name(), b.name))
            .collect();
        let hint = match kind {
            BucketKind::Luks => {
                " (a LUKS container's content appears as luks/<name> once --key-file gives its passphrase)"
            }
            BucketKind::Bitlocker => {
                " (a BitLocker volume's content appears as bitlocker/<name> once --key-file gives its password or recovery password)"
            }
            _ => "",
        };
        Err(ApiError::not_found(format!(
            "disk '{disk}' has no bucket {}/{name}; it has: {}{hint}",
            kind.name(),
            have.join(", ")
        )))
    }

    /// Disk and bucket summary for status.
    pub fn disk_status(&self) -> Vec<DiskStatus> {
        self.disks()
            .iter()
            .map(|d| DiskStatus {
                name: d.name.clone(),
                buckets: d
                    .buckets
                    .iter()
                    .map(|b| {
                        // A snapshot: never the mount lock, which a mount in
                        // progress holds for as long as it takes.
                        let phase = b.phase.get();
                        BucketStatus {
                            path: format!("{}/{}", b.kind.name(), b.name),
                            fstype: b.type_name.clone(),
                            label: b.label.clone(),
                            size: b.size,
                            mounted: phase == MountPhase::Mounted,
                            mounting: phase == MountPhase::Mounting,
                            encryption: b.encryption.clone(),
                            locked: b.locked,
                            error: b.error.clone(),
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}

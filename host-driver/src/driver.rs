//! One interface in front of the VM manager for every frontend (the CLI's
//! `list`, `extract`, `status` and `stop`, and the web UI): status, stop, list and
//! extract by SOURCE, with the QEMU micro-VM driver ([`QemuDriver`]) as its
//! implementation.
//!
//! [`QemuDriver`] keeps the VM it got for each SOURCE, so many requests (many
//! browser tabs) on one SOURCE share one VM without asking the VM map each
//! time; a VM that stopped answering (idle power-off, `stop` elsewhere) is
//! dropped from that cache and the call is retried once through the manager.
//!
//! The layer between the frontends (`web`, the binaries) and the VMs: may
//! import `manager` and `guest` (and re-exports the types of its interface).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use file_restore_wire::find::{FindQuery, StatAnswer};
use file_restore_wire::{Entry, ExtractFormat, UnlockAnswer};

use crate::guest::client::mapped::{self, MapOutcome, MappedReader};
use crate::guest::client::DaemonClient;
use crate::manager::{Manager, ManagerError};
use crate::vm::RunningVm;

/// The types of this interface that come from below it, so a frontend
/// needs no other module: the daemon's errors, an extract stream, a VM's
/// status row.
pub use crate::guest::client::{ClientError, ExtractStream, FindStream};
pub use crate::manager::VmReport;

/// An error of a driver call.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// No VM could be had for the SOURCE (bad source, start failed, ...).
    #[error("cannot open {source_arg}")]
    Open {
        /// The SOURCE as given.
        source_arg: String,
        /// Why.
        #[source]
        error: ManagerError,
    },
    /// The manager failed (VM map, lock).
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// The daemon answered with an error or could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl DriverError {
    /// The daemon's HTTP status when the daemon refused the call (404 no
    /// such file, 422 a bucket that cannot be mounted, 416 a bad range, ...).
    pub fn daemon_status(&self) -> Option<u16> {
        match self {
            DriverError::Client(c) => c.http_status(),
            _ => None,
        }
    }
}

/// Restores files from the block devices of a SOURCE. Every frontend goes
/// through this trait; the futures are `Send` so a server can run them on
/// any worker.
pub trait BlockRestoreDriver: Send + Sync + 'static {
    /// The running VMs of this user (`file-restore status`).
    fn status(&self) -> impl Future<Output = Result<Vec<VmReport>, DriverError>> + Send;

    /// Stops the VM named `name` (or, when no VM has that name, every VM
    /// serving it read as a SOURCE); `None` stops all. Returns the names stopped.
    fn stop(
        &self,
        name: Option<&str>,
    ) -> impl Future<Output = Result<Vec<String>, DriverError>> + Send;

    /// Lists `path` (raw bytes, `/` the disks) of `source`, starting or
    /// reusing its VM. Entries come in the daemon's order.
    fn list(
        &self,
        source: &str,
        path: &[u8],
    ) -> impl Future<Output = Result<Vec<Entry>, DriverError>> + Send;

    /// Tries `passphrases` on every locked LUKS container of `source`'s VM
    /// (opened containers stay open for later calls on that VM).
    fn unlock(
        &self,
        source: &str,
        passphrases: &[Vec<u8>],
    ) -> impl Future<Output = Result<UnlockAnswer, DriverError>> + Send;

    /// Starts an extract stream of `path` of `source`; `range` is an
    /// inclusive byte range for [`ExtractFormat::Plain`].
    fn extract(
        &self,
        source: &str,
        path: &[u8],
        format: ExtractFormat,
        zstd: bool,
        range: Option<(u64, Option<u64>)>,
    ) -> impl Future<Output = Result<ExtractStream, DriverError>> + Send;

    /// Starts a search below `path` of `source` in its VM (`file-restore
    /// find`, the web UI's search).
    fn find(
        &self,
        source: &str,
        path: &[u8],
        query: &FindQuery,
    ) -> impl Future<Output = Result<FindStream, DriverError>> + Send;

    /// One entry of `source`, with its content's SHA-256 when `hash` is set
    /// (`file-restore versions`).
    fn stat(
        &self,
        source: &str,
        path: &[u8],
        hash: bool,
    ) -> impl Future<Output = Result<StatAnswer, DriverError>> + Send;

    /// Whether a VM serving `source` is running now (before a call starts one).
    fn serves(&self, source: &str) -> impl Future<Output = Result<bool, DriverError>> + Send;

    /// Stops the VMs serving `source` (those a caller started for its own
    /// work); other SOURCEs' VMs and this driver's clients of them stay.
    fn release(&self, source: &str) -> impl Future<Output = Result<(), DriverError>> + Send;
}

/// Receives the manager's messages for people (a VM started, a dead VM
/// removed).
pub type NoteSink = Box<dyn Fn(&str) + Send + Sync>;

/// One warning per damaged image of a VM: it is open, read-only, and what it
/// still holds can be read, but files in damaged areas may be missing.
fn damage_warnings(images: &[crate::source::DiskImage]) -> impl Iterator<Item = String> + '_ {
    images.iter().filter_map(|i| {
        i.damage.as_ref().map(|d| {
            format!(
                "warning: disk '{}' ('{}') is damaged ({d}); it is opened read-only as always, \
                 but files in its damaged areas may be missing or unreadable",
                i.name,
                i.path.display()
            )
        })
    })
}

/// Files at least this large are read from the disks by their map when
/// they can be (`GET /api/map` + QEMU's NBD export); smaller ones stream
/// through the guest, where the map's extra round trip would cost more than
/// it saves (docs/BENCHMARKS.md).
pub const MAP_THRESHOLD: u64 = 4 << 20;

/// When a plain file is read from the disks by its map rather than through
/// the guest: `FILE_RESTORE_MAP` = `auto` (the default: files of at least
/// [`MAP_THRESHOLD`] bytes), `off` (never) or `always` (any size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapPolicy {
    /// Files of at least [`MAP_THRESHOLD`] bytes.
    Auto,
    /// Never: every byte through the guest.
    Off,
    /// Every mappable file, whatever its size.
    Always,
}

impl MapPolicy {
    /// The policy `FILE_RESTORE_MAP` asks for (a bad value is warned about
    /// and taken as `auto`).
    pub fn from_env() -> MapPolicy {
        match std::env::var("FILE_RESTORE_MAP").as_deref() {
            Err(_) | Ok("") | Ok("auto") => MapPolicy::Auto,
            Ok("off") => MapPolicy::Off,
            Ok("always") => MapPolicy::Always,
            Ok(other) => {
                log::warn!("FILE_RESTORE_MAP={other:?} is not auto, off or always; using auto");
                MapPolicy::Auto
            }
        }
    }

    /// The smallest file mapped, `None`: none.
    fn min_size(self) -> Option<u64> {
        match self {
            MapPolicy::Auto => Some(MAP_THRESHOLD),
            MapPolicy::Off => None,
            MapPolicy::Always => Some(0),
        }
    }
}

/// The QEMU micro-VM implementation of [`BlockRestoreDriver`], on a
/// [`Manager`].
pub struct QemuDriver {
    manager: Manager,
    /// The daemon client of the VM last used for each SOURCE argument.
    clients: Mutex<HashMap<String, DaemonClient>>,
    /// That VM's drives, for reading big files from QEMU's export.
    drives: Mutex<HashMap<String, Arc<Drives>>>,
    /// When files are read by their map.
    map_policy: MapPolicy,
    notes: NoteSink,
}

/// A VM's drives as QEMU knows them: what the export needs.
#[derive(Debug)]
struct Drives {
    vm: RunningVm,
    /// `(disk name in the guest (virtio serial), QEMU drive id)`.
    ids: Vec<(String, String)>,
}

/// Whether a failed call may mean the VM is gone (rather than the daemon
/// refusing the request): then the cached VM is dropped and the call retried.
fn vm_may_be_gone(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Transport(_)
            | ClientError::Timeout { .. }
            | ClientError::Http { .. }
            | ClientError::NoProof { .. }
            | ClientError::TicketRejected { .. }
    )
}

impl QemuDriver {
    /// A driver on `manager`, shareable between tasks, whose notes go to
    /// `notes` (the CLI prints them on stderr).
    pub fn new(manager: Manager, notes: NoteSink) -> Arc<QemuDriver> {
        Arc::new(QemuDriver {
            manager,
            clients: Mutex::new(HashMap::new()),
            drives: Mutex::new(HashMap::new()),
            map_policy: MapPolicy::from_env(),
            notes,
        })
    }

    fn note_all(&self, notes: Vec<String>) {
        for n in notes {
            (self.notes)(&n);
        }
    }

    fn cached(&self, source: &str) -> Option<DaemonClient> {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(source)
            .cloned()
    }

    fn forget(&self, source: &str) {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(source);
        self.drives
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(source);
    }

    /// The client of `source`'s VM, started or reused through the manager.
    async fn client(&self, source: &str) -> Result<DaemonClient, DriverError> {
        if let Some(c) = self.cached(source) {
            return Ok(c);
        }
        let mut notes = Vec::new();
        let got = self.manager.ensure_vm(source, &mut notes).await;
        if let Ok((_, entry)) = &got {
            notes.extend(damage_warnings(&entry.images));
        }
        self.note_all(notes);
        let (_, entry) = got.map_err(|error| DriverError::Open {
            source_arg: source.to_owned(),
            error,
        })?;
        let client = entry.vm.client();
        let names: Vec<&str> = entry.images.iter().map(|i| i.name.as_str()).collect();
        let ids = crate::qemu::disk_serials(&names)
            .into_iter()
            .enumerate()
            .map(|(i, serial)| (serial, format!("drive{i}")))
            .collect();
        self.drives
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                source.to_owned(),
                Arc::new(Drives {
                    vm: entry.vm.clone(),
                    ids,
                }),
            );
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(source.to_owned(), client.clone());
        Ok(client)
    }

    /// A stream of the regular file `path` read from the disks by its map,
    /// or `None` (with the reason logged) when it is to be streamed through
    /// the guest: small, not mappable, or the map or export failed.
    async fn try_mapped(
        &self,
        source: &str,
        client: &DaemonClient,
        path: &[u8],
        range: Option<(u64, Option<u64>)>,
    ) -> Option<ExtractStream> {
        let shown = String::from_utf8_lossy(path).into_owned();
        let Some(min_size) = self.map_policy.min_size() else {
            log::info!("{shown}: streamed through the guest (FILE_RESTORE_MAP=off)");
            return None;
        };
        let drives = self
            .drives
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(source)
            .cloned()?;
        let names: Vec<String> = drives.ids.iter().map(|(s, _)| s.clone()).collect();
        let layout = match mapped::fetch_layout(client, path, &names, min_size).await {
            Ok(MapOutcome::Layout(l)) => l,
            Ok(MapOutcome::Stream { reason, .. }) => {
                log::info!("{shown}: streamed through the guest ({reason})");
                return None;
            }
            Err(e) => {
                log::info!("{shown}: streamed through the guest (no map: {e})");
                return None;
            }
        };
        let (first, last) = match range {
            None => (0, layout.size.saturating_sub(1)),
            Some((a, b)) => {
                let b = b.unwrap_or(u64::MAX).min(layout.size.saturating_sub(1));
                if a > b || a >= layout.size {
                    // Let the daemon answer the unsatisfiable range.
                    return None;
                }
                (a, b)
            }
        };
        // One drive id per disk of the layout, in its order (the layout names
        // only known disks; a miss would misplace every later index).
        let exports: Option<Vec<String>> = layout
            .disks
            .iter()
            .map(|d| {
                drives
                    .ids
                    .iter()
                    .find(|(s, _)| s == d)
                    .map(|(_, id)| id.clone())
            })
            .collect();
        let Some(exports) = exports else {
            log::warn!("{shown}: streamed through the guest (the map names a disk with no drive)");
            return None;
        };
        let socket =
            match crate::qemu::export::ensure(&drives.vm.qmp_socket, &drives.vm.run_dir, &exports)
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("{shown}: streamed through the guest (QEMU's export: {e})");
                    return None;
                }
            };
        let exports = exports
            .iter()
            .map(|id| crate::qemu::export::export_name(id))
            .collect();
        log::info!(
            "{shown}: read from the disks through QEMU's NBD export ({} extents, {} bytes)",
            layout.runs.len(),
            layout.size
        );
        let content_range = range.map(|_| format!("bytes {first}-{last}/{}", layout.size));
        let reader = MappedReader::start(
            &layout,
            exports,
            socket,
            (first, last),
            client.response_timeout(),
            client.clone(),
        );
        Some(ExtractStream::mapped(
            reader,
            client.addr().clone(),
            if layout.size == 0 {
                0
            } else {
                last - first + 1
            },
            content_range,
            client.response_timeout(),
        ))
    }

    /// Runs `call` on `source`'s VM; once more on a fresh VM when the cached
    /// one no longer answers.
    async fn with_vm<T, F, Fut>(&self, source: &str, call: F) -> Result<T, DriverError>
    where
        F: Fn(DaemonClient) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let was_cached = self.cached(source).is_some();
        let client = self.client(source).await?;
        match call(client).await {
            Err(e) if was_cached && vm_may_be_gone(&e) => {
                log::info!("the VM of {source} does not answer ({e}); asking the manager again");
                self.forget(source);
                let client = self.client(source).await?;
                Ok(call(client).await?)
            }
            r => Ok(r?),
        }
    }
}

impl BlockRestoreDriver for QemuDriver {
    async fn status(&self) -> Result<Vec<VmReport>, DriverError> {
        let mut notes = Vec::new();
        let r = self.manager.status(&mut notes).await;
        self.note_all(notes);
        Ok(r?)
    }

    async fn stop(&self, name: Option<&str>) -> Result<Vec<String>, DriverError> {
        let stopped = self.manager.stop(name).await?;
        // A stopped VM's client is useless; the next call asks the manager.
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.drives
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(stopped)
    }

    async fn list(&self, source: &str, path: &[u8]) -> Result<Vec<Entry>, DriverError> {
        self.with_vm(source, |c| async move { c.list(path).await })
            .await
    }

    async fn unlock(
        &self,
        source: &str,
        passphrases: &[Vec<u8>],
    ) -> Result<UnlockAnswer, DriverError> {
        self.with_vm(source, |c| async move { c.unlock(passphrases).await })
            .await
    }

    async fn find(
        &self,
        source: &str,
        path: &[u8],
        query: &FindQuery,
    ) -> Result<FindStream, DriverError> {
        self.with_vm(source, |c| async move { c.find(path, query).await })
            .await
    }

    async fn stat(&self, source: &str, path: &[u8], hash: bool) -> Result<StatAnswer, DriverError> {
        self.with_vm(source, |c| async move { c.stat(path, hash).await })
            .await
    }

    async fn serves(&self, source: &str) -> Result<bool, DriverError> {
        Ok(self.manager.serves(source).await?)
    }

    async fn release(&self, source: &str) -> Result<(), DriverError> {
        self.forget(source);
        self.manager.stop(Some(source)).await?;
        Ok(())
    }

    async fn extract(
        &self,
        source: &str,
        path: &[u8],
        format: ExtractFormat,
        zstd: bool,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<ExtractStream, DriverError> {
        if format == ExtractFormat::Plain && !zstd {
            let client = self.client(source).await?;
            if let Some(stream) = self.try_mapped(source, &client, path, range).await {
                return Ok(stream);
            }
        }
        self.with_vm(source, |c| async move {
            c.extract(path, format, zstd, range).await
        })
        .await
    }
}

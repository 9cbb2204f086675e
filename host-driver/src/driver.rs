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

use file_restore_wire::{Entry, ExtractFormat, UnlockAnswer};

use crate::guest::client::DaemonClient;
use crate::manager::{Manager, ManagerError};

/// The types of this interface that come from below it, so a frontend
/// needs no other module: the daemon's errors, an extract stream, a VM's
/// status row.
pub use crate::guest::client::{ClientError, ExtractStream};
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

/// The QEMU micro-VM implementation of [`BlockRestoreDriver`], on a
/// [`Manager`].
pub struct QemuDriver {
    manager: Manager,
    /// The daemon client of the VM last used for each SOURCE argument.
    clients: Mutex<HashMap<String, DaemonClient>>,
    notes: NoteSink,
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
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(source.to_owned(), client.clone());
        Ok(client)
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

    async fn extract(
        &self,
        source: &str,
        path: &[u8],
        format: ExtractFormat,
        zstd: bool,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<ExtractStream, DriverError> {
        self.with_vm(source, |c| async move {
            c.extract(path, format, zstd, range).await
        })
        .await
    }
}

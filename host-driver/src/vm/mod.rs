//! Restore VMs as processes: a started VM ([`RunningVm`], what the VM map
//! records), its run directory ([`run_dir`]), starting one ([`launch`]:
//! options, accelerator and transport choice, input checks, one attempt,
//! errors), stopping one and checking it is alive ([`teardown`]), and the
//! keeper process that watches it ([`keeper`]). May import `guest`,
//! `helper`, `qemu` and `util`; only the manager imports [`launch`].

pub mod keeper;
pub mod launch;
pub mod run_dir;
pub mod teardown;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::guest::client::DaemonClient;
use crate::guest::transport::VsockAddr;
use crate::qemu::Accel;

/// A started VM: everything later invocations need to reach, check and stop
/// it. Stored in the VM map (JSON).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningVm {
    /// QEMU's pid.
    pub pid: u32,
    /// The vhost-user sidecar's pid, when there is one.
    pub sidecar_pid: Option<u32>,
    /// Where the daemon listens.
    pub addr: VsockAddr,
    /// The VM's ticket (secret: the map file is 0600).
    pub ticket: String,
    /// The accelerator it runs under.
    pub accel: Accel,
    /// Its private run directory.
    pub run_dir: PathBuf,
    /// Its console log.
    pub console_log: PathBuf,
    /// Its QMP socket.
    pub qmp_socket: PathBuf,
    /// Start time, seconds since the epoch.
    pub started_at: u64,
}

impl fmt::Debug for RunningVm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningVm")
            .field("pid", &self.pid)
            .field("sidecar_pid", &self.sidecar_pid)
            .field("addr", &self.addr)
            .field("ticket", &"<redacted>")
            .field("accel", &self.accel)
            .field("run_dir", &self.run_dir)
            .field("started_at", &self.started_at)
            .finish()
    }
}

impl RunningVm {
    /// A client for this VM's daemon.
    pub fn client(&self) -> DaemonClient {
        DaemonClient::new(self.addr.clone(), self.ticket.clone())
    }
}

//! QEMU's read-only NBD export of a running VM's drives: the way the host
//! reads a big file's bytes once the guest has said where they are
//! (`GET /api/map`), without every byte passing the emulated guest.
//!
//! The export is started on demand over QMP (`nbd-server-start` on a Unix
//! socket in the VM's run directory, then `block-export-add` with
//! `writable: false` for each drive asked for) and lives as long as QEMU.
//! It serves the same block nodes the guest reads, so backing chains, NBD
//! sources and every image format read exactly as they do for the guest.
//! The socket has the run directory's permissions (only the VM's owner);
//! the tools drive is never exported.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::qmp::Qmp;

/// The export socket's name in the run directory.
pub const SOCKET_NAME: &str = "nbd.sock";
/// How long setting up the export may take.
const LIMIT: Duration = Duration::from_secs(10);

/// The export name of the drive `drive_id` (`drive0`): the same id.
pub fn export_name(drive_id: &str) -> String {
    drive_id.to_owned()
}

/// Makes sure QEMU (QMP at `qmp_socket`) exports the drives `drive_ids`
/// read-only on `run_dir/nbd.sock`; returns that socket. Calling it again
/// (from this or another process) changes nothing.
pub async fn ensure(
    qmp_socket: &Path,
    run_dir: &Path,
    drive_ids: &[String],
) -> io::Result<PathBuf> {
    let socket = run_dir.join(SOCKET_NAME);
    tokio::time::timeout(LIMIT, ensure_inner(qmp_socket, &socket, drive_ids))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("QEMU did not set up its NBD export within {LIMIT:?}"),
            )
        })??;
    Ok(socket)
}

async fn ensure_inner(qmp_socket: &Path, socket: &Path, drive_ids: &[String]) -> io::Result<()> {
    let fail = |what: &str, why: String| io::Error::other(format!("QEMU refused {what}: {why}"));
    let mut qmp = Qmp::connect(qmp_socket).await?;
    let exports = qmp.call("query-block-exports", json!({})).await?;
    let exports = exports.map_err(|e| fail("query-block-exports", e))?;
    let have: Vec<String> = exports
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.get("id")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if !socket.exists() {
        let path = socket.to_str().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "run directory path is not UTF-8",
            )
        })?;
        match qmp
            .call(
                "nbd-server-start",
                json!({"addr": {"type": "unix", "data": {"path": path}}}),
            )
            .await?
        {
            Ok(_) => {}
            // Another process started it a moment ago.
            Err(e) if e.contains("already running") => {}
            Err(e) => return Err(fail("nbd-server-start", e)),
        }
    }
    let mut nodes = None;
    for drive in drive_ids {
        let id = format!("fr-{drive}");
        if have.contains(&id) {
            continue;
        }
        if nodes.is_none() {
            let blocks = qmp
                .call("query-block", json!({}))
                .await?
                .map_err(|e| fail("query-block", e))?;
            nodes = Some(blocks);
        }
        let node = nodes
            .as_ref()
            .and_then(|b| b.as_array())
            .and_then(|a| {
                a.iter()
                    .find(|b| b.get("device").and_then(|d| d.as_str()) == Some(drive))
            })
            .and_then(|b| b.get("inserted")?.get("node-name")?.as_str())
            .ok_or_else(|| io::Error::other(format!("QEMU has no drive {drive}")))?
            .to_owned();
        match qmp
            .call(
                "block-export-add",
                json!({"type": "nbd", "id": id, "node-name": node,
                       "name": export_name(drive), "writable": false}),
            )
            .await?
        {
            Ok(_) => {}
            Err(e) if e.contains("already in use") => {}
            Err(e) => return Err(fail("block-export-add", e)),
        }
    }
    Ok(())
}

//! The guest's "vsock is up" signal: one connection to the host's
//! [`file_restore_wire::READY_PORT`] once the API listens.
//!
//! The host waits for it before its first connection to the guest when it
//! runs the vhost-user sidecar, which must not see a host connection before
//! the guest's virtqueues are ready (a guest-to-host connection can only
//! exist after they are). Without a listener on the host side (kernel vsock,
//! a reused VM) the connection is refused at once; that is not an error.

use std::time::Duration;

/// The host's vsock CID.
const HOST_CID: u32 = 2;
/// Connect and write within this long, or give up (the host side then times
/// out its own wait and reports it).
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the host's ready port and closes again. Failures are logged at
/// debug level only.
pub async fn announce() {
    let addr = tokio_vsock::VsockAddr::new(HOST_CID, file_restore_wire::READY_PORT);
    let attempt = async { tokio_vsock::VsockStream::connect(addr).await.map(drop) };
    match tokio::time::timeout(SIGNAL_TIMEOUT, attempt).await {
        Ok(Ok(())) => log::debug!(
            "ready signal sent to port {}",
            file_restore_wire::READY_PORT
        ),
        Ok(Err(e)) => log::debug!(
            "ready signal to port {}: {e}",
            file_restore_wire::READY_PORT
        ),
        Err(_) => log::debug!(
            "ready signal to port {}: timed out",
            file_restore_wire::READY_PORT
        ),
    }
}

//! Host side of file-restore: starting, reaching and stopping restore VMs.
//!
//! - [`launch`]: start a VM (transport and accelerator choice, per-VM
//!   initramfs with the ticket, sidecar, QEMU, readiness wait).
//! - [`qemu`]: the QEMU command line as plain data.
//! - [`transport`]: vsock streams (kernel `AF_VSOCK` or a hybrid Unix socket).
//! - [`client`]: the daemon's HTTP API.
//! - [`teardown`]: stopping a VM, liveness of a recorded VM.
//! - [`initrd`]: the ticket and the per-VM initramfs memfd.
//! - [`driver`]: the one interface (status, stop, list, extract) every
//!   frontend uses, with the QEMU VMs behind it.
//! - [`web`]: `file-restore serve`, the local web UI.
//! - [`helper_protocol`]: the request to `file-restore-helper`, which
//!   starts QEMU (the only part that may be installed setuid root).

pub mod guest;
pub mod helper;
pub mod qemu;

pub mod cli;
pub mod driver;
pub mod manager;
pub mod sink;
pub mod source;
pub mod unpack;
pub mod util;
pub mod vm;
pub mod web;

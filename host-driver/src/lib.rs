//! Host side of file-restore: starting, reaching and stopping restore VMs,
//! and the CLI and web UI on top of them.
//!
//! The folders are layers; a module imports only from the layers below it:
//!
//! ```text
//! bin → web, cli → versions → driver → manager → vm, source → guest, helper, qemu → nbd, util
//! sink → guest, unpack, util
//! ```
//!
//! - [`util`]: process spawning, install dirs, terminal-safe text, the clock, progress.
//! - [`qemu`]: the QEMU command line as plain data, QMP, the read-only NBD export
//!   of a VM's drives, nbd:// URI shape.
//! - [`helper`]: the request to `file-restore-helper` (the only part that
//!   may be installed setuid root), its checks, CIDs, boot policy, the
//!   per-VM initramfs with the ticket.
//! - [`nbd`]: a small NBD client, for reading big files from QEMU's export of the disks.
//! - [`guest`]: vsock transport, the ready signal, the daemon's HTTP API client,
//!   a big file read from the disks by the map the daemon gives.
//! - [`vm`]: a started VM, its run directory, starting ([`vm::launch`],
//!   used only by the manager), stopping, the keeper.
//! - [`source`]: what SOURCE is, its images, their formats and backing chains.
//! - [`manager`]: starting, reusing and stopping VMs through the locked VM map.
//! - [`driver`]: the one interface (status, stop, list, extract) every
//!   frontend uses, with the QEMU VMs behind it.
//! - [`versions`]: one path across many SOURCEs (backups), with VMs started
//!   several at a time and stopped afterwards.
//! - [`unpack`]: safe unpacking of a tar stream into a directory.
//! - [`sink`]: where extracted bytes go on the host (stdout, a file, a directory).
//! - [`web`]: `file-restore serve`, the local web UI.
//! - [`cli`]: the command line of `file-restore` (clap), its man pages and completions.

#![warn(missing_docs)]

pub mod cli;
pub mod driver;
pub mod guest;
pub mod helper;
pub mod manager;
pub mod nbd;
pub mod qemu;
pub mod sink;
pub mod source;
pub mod unpack;
pub mod util;
pub mod versions;
pub mod vm;
pub mod web;

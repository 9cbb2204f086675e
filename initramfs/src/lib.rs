//! Builds the boot files of the file-restore VM.
//!
//! - [`build`] writes the base initramfs (the static `restore-daemon` as `/init` and its
//!   configuration), copies the guest kernel next to it — an ELF `vmlinux` with a PVH
//!   entry built by `scripts/build-kernel.sh`, every driver built in, so the initramfs
//!   holds no kernel modules — and writes `boot.json` naming both.
//! - [`ticket_cpio`] makes the small per-VM archive holding `/ticket` that the host appends
//!   to a copy of the base initramfs (the kernel unpacks concatenated cpio archives).
//! - [`CpioWriter`], [`kernel_format`] and [`has_pvh_note`] are the building blocks,
//!   usable on their own.
//!
//! # Guest layout
//! | path | content |
//! | --- | --- |
//! | `/init` | the daemon, mode 0755 |
//! | `/proc /sys /dev /run /mnt /tmp /etc` | directories, 0755 |
//! | `/dev/console`, `/dev/null` | character devices 5:1 (0600) and 1:3 (0666) |
//! | `/etc/restore-daemon.json` | [`DaemonConfig`] as JSON |
//! | `/ticket` | added per VM by [`ticket_cpio`], mode 0400 |
//!
//! The base image is an uncompressed `newc` archive padded to 512 bytes, so an appended
//! archive starts 4-byte aligned as the kernel's unpacker requires (and the guest spends
//! no emulated CPU time decompressing it).

mod build;
mod cpio;
pub mod elf;
mod error;
mod kernel_image;

pub use build::{
    build, BootInfo, BuildOptions, BuildOutput, DaemonConfig, BOOT_JSON_FILE, GUEST_CONFIG,
    GUEST_INIT, GUEST_TICKET, INITRAMFS_FILE, TOOLS_FILE, VMLINUX_FILE, VMLINUZ_FILE,
};
pub use cpio::{ticket_cpio, CpioWriter};
pub use elf::has_pvh_note;
pub use error::{Error, Result};
pub use kernel_image::{check_kernel, kernel_format, kernel_release, KernelFormat};

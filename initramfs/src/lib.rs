//! Builds the boot files of the file-restore VM.
//!
//! - [`build`] writes the base initramfs (the static `restore-daemon` as `/init`, the kernel
//!   modules it loads with their dependency closure and a load-order list, its
//!   configuration), the kernel to boot — the `vmlinux` extracted from the bzImage when it
//!   has a PVH entry, which QEMU boots much faster under TCG, else the bzImage — and
//!   `boot.json` naming both.
//! - [`ticket_cpio`] makes the small per-VM archive holding `/ticket` that the host appends
//!   to a copy of the base initramfs (the kernel unpacks concatenated cpio archives).
//! - [`CpioWriter`], [`module_closure`], [`extract_vmlinux`] and [`has_pvh_note`] are the
//!   building blocks, usable on their own.
//!
//! # Guest layout
//! | path | content |
//! | --- | --- |
//! | `/init` | the daemon, mode 0755 |
//! | `/proc /sys /dev /run /mnt /tmp /etc /lib /lib/modules` | directories, 0755 |
//! | `/dev/console`, `/dev/null` | character devices 5:1 (0600) and 1:3 (0666) |
//! | `/lib/modules/<name>.ko` | each module of the closure, decompressed, flat |
//! | `/etc/modules.load` | those modules' absolute paths in load order, one a line |
//! | `/etc/restore-daemon.json` | [`DaemonConfig`] as JSON |
//! | `/ticket` | added per VM by [`ticket_cpio`], mode 0400 |
//!
//! The base image is an uncompressed `newc` archive padded to 512 bytes, so an appended
//! archive starts 4-byte aligned as the kernel's unpacker requires. (A compressed base
//! image would also work — the unpacker skips zero padding and accepts an uncompressed
//! archive after a gzip one — provided it is zero-padded to a multiple of 4 bytes; it is
//! not offered because the guest would spend emulated CPU time decompressing it.)

mod build;
mod cpio;
pub mod elf;
mod error;
mod kernel_select;
mod modules;
mod vmlinux;

pub use build::{
    build, BootInfo, BuildOptions, BuildOutput, DaemonConfig, BOOT_JSON_FILE, GUEST_CONFIG,
    GUEST_INIT, GUEST_MODULES_LOAD, GUEST_MODULE_DIR, GUEST_MODULE_GROUPS_DIR, GUEST_TICKET,
    INITRAMFS_FILE, MODULE_GROUPS, VMLINUX_FILE, VMLINUZ_FILE,
};
pub use cpio::{ticket_cpio, CpioWriter};
pub use elf::has_pvh_note;
pub use error::{Error, Result};
pub use kernel_select::{
    compare_versions, describe_kernel, find_default_kernel, KernelChoice, DEFAULT_BOOT_DIR,
    DEFAULT_MODULES_ROOT,
};
pub use modules::{
    module_closure, normalize_module_name, read_module, Module, ModuleSet, DEFAULT_MODULES,
};
pub use vmlinux::{bzimage_release, extract_vmlinux};

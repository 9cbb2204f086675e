//! Integration tests of file-restore-initramfs against the real `cpio` tool and, where
//! installed, the real Debian kernel in /boot and /lib/modules.

mod build_e2e;
mod cpio_roundtrip;
mod module_closure;
mod newc;
mod real_kernel;

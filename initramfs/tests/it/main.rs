//! Integration tests of file-restore-initramfs against the real `cpio` tool.

mod build_e2e;
mod cpio_roundtrip;
mod newc;

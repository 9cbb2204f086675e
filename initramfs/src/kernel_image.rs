//! Telling whether a file is a kernel QEMU can boot with `-kernel`: an ELF `vmlinux` with
//! the PVH entry note (what `scripts/build-kernel.sh` builds; the fast way under TCG) or
//! an x86 bzImage. Pure code on bytes: any input gives an answer, never a panic.

use std::fs;
use std::path::Path;

use crate::elf::{has_pvh_note, ELF_MAGIC};
use crate::error::{Error, Result};

/// How QEMU boots a kernel image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// An ELF `vmlinux` with the Xen PVH entry note: booted directly, no decompression.
    PvhElf,
    /// An x86 bzImage (setup header `HdrS`): decompresses itself at boot.
    BzImage,
}

/// The boot format of `image`, or `None` when QEMU could not boot it as a kernel.
pub fn kernel_format(image: &[u8]) -> Option<KernelFormat> {
    if image.starts_with(ELF_MAGIC) {
        return has_pvh_note(image).then_some(KernelFormat::PvhElf);
    }
    (image.get(0x202..0x206) == Some(b"HdrS")).then_some(KernelFormat::BzImage)
}

/// Reads `path` and checks it is a bootable kernel; the error names the file and says
/// what it is instead.
pub fn check_kernel(path: &Path) -> Result<(KernelFormat, Vec<u8>)> {
    let image = fs::read(path).map_err(|e| Error::io(path, e))?;
    match kernel_format(&image) {
        Some(format) => Ok((format, image)),
        None => Err(Error::NotAKernel {
            path: path.to_path_buf(),
            reason: if image.starts_with(ELF_MAGIC) {
                "an ELF file without the PVH entry note (build the kernel with CONFIG_PVH=y)"
            } else {
                "neither an ELF vmlinux with a PVH entry nor an x86 bzImage"
            },
        }),
    }
}

/// The release from the kernel's `Linux version <release> ...` banner, if it has one.
pub fn kernel_release(image: &[u8]) -> Option<String> {
    const BANNER: &[u8] = b"Linux version ";
    let start = image.windows(BANNER.len()).position(|w| w == BANNER)? + BANNER.len();
    let rest = image.get(start..start.checked_add(64)?.min(image.len()))?;
    let end = rest.iter().position(|&b| b == b' ' || b == 0)?;
    let release = std::str::from_utf8(&rest[..end]).ok()?;
    let plausible = !release.is_empty()
        && release
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+~".contains(&b));
    plausible.then(|| release.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(kernel_format(b""), None);
        assert_eq!(kernel_format(b"\x7fELF\x02\x01"), None);
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(kernel_format(&bz), Some(KernelFormat::BzImage));
        assert_eq!(kernel_format(&[0u8; 4096]), None);
    }

    #[test]
    fn release_from_banner() {
        let img = b"xx\0Linux version 6.1.192 (root@x) #1 SMP\0";
        assert_eq!(kernel_release(img).as_deref(), Some("6.1.192"));
        assert_eq!(kernel_release(b"Linux version "), None);
        assert_eq!(kernel_release(b"nothing"), None);
    }
}

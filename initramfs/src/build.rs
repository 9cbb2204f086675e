//! Building the boot files of the restore VM: the base initramfs, the kernel to boot
//! (copied next to it) and `boot.json` describing them.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cpio::CpioWriter;
use crate::elf::needs_interpreter;
use crate::error::{Error, Result};
use crate::kernel_image::{check_kernel, kernel_release, KernelFormat};

/// File name of the initramfs in the output directory.
pub const INITRAMFS_FILE: &str = "initramfs.img";
/// File name of an ELF kernel (PVH boot) in the output directory.
pub const VMLINUX_FILE: &str = "vmlinux";
/// File name of a bzImage kernel in the output directory.
pub const VMLINUZ_FILE: &str = "vmlinuz";
/// File name of the boot description ([`BootInfo`]) in the output directory.
pub const BOOT_JSON_FILE: &str = "boot.json";
/// File name of the storage-tools image (`scripts/build-tools-image.sh`),
/// attached next to the initramfs it lies beside.
pub const TOOLS_FILE: &str = "tools.img";

/// Path of the daemon in the guest.
pub const GUEST_INIT: &str = "/init";
/// The daemon configuration ([`DaemonConfig`] as JSON) in the guest.
pub const GUEST_CONFIG: &str = "/etc/restore-daemon.json";
/// The ticket file added per VM by [`crate::ticket_cpio`].
pub const GUEST_TICKET: &str = "/ticket";

/// Directories created in the guest root (mode 0755).
const GUEST_DIRS: &[&str] = &["/proc", "/sys", "/dev", "/run", "/mnt", "/tmp", "/etc"];

/// The guest daemon's configuration, shipped as `/etc/restore-daemon.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DaemonConfig {
    /// Seconds without API calls before the VM powers off.
    pub idle_timeout: u64,
    /// The vsock port the API listens on.
    pub port: u32,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`).
    pub log_level: String,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            idle_timeout: 600,
            port: 1024,
            log_level: "info".to_string(),
        }
    }
}

/// What [`build`] should build from, and where to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// The static `restore-daemon` binary, shipped as `/init`.
    pub daemon: PathBuf,
    /// The guest kernel: an ELF `vmlinux` with a PVH entry (or a bzImage).
    pub kernel: PathBuf,
    /// The output directory (created if missing).
    pub out_dir: PathBuf,
    /// The daemon configuration.
    pub config: DaemonConfig,
}

impl BuildOptions {
    /// Options with the default configuration.
    pub fn new(
        daemon: impl Into<PathBuf>,
        kernel: impl Into<PathBuf>,
        out_dir: impl Into<PathBuf>,
    ) -> Self {
        BuildOptions {
            daemon: daemon.into(),
            kernel: kernel.into(),
            out_dir: out_dir.into(),
            config: DaemonConfig::default(),
        }
    }
}

/// The content of `boot.json`: what the host passes to QEMU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootInfo {
    /// Absolute path of the kernel to boot (`vmlinux` or `vmlinuz`).
    pub kernel: PathBuf,
    /// Absolute path of the base initramfs.
    pub initramfs: PathBuf,
    /// The kernel release.
    pub kernel_release: String,
    /// Whether `kernel` is an ELF with the PVH entry note (else a bzImage).
    pub pvh: bool,
}

impl BootInfo {
    /// Reads a `boot.json` written by [`build`].
    pub fn read(path: &Path) -> Result<Self> {
        let text = fs::read(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_slice(&text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// What [`build`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutput {
    /// Absolute path of the kernel to boot (`<out>/vmlinux` or `<out>/vmlinuz`).
    pub kernel: PathBuf,
    /// Absolute path of `<out>/initramfs.img`.
    pub initramfs: PathBuf,
    /// The kernel release (from its version banner; `unknown` without one).
    pub kernel_release: String,
    /// Whether `kernel` is a PVH-bootable ELF `vmlinux`.
    pub pvh: bool,
    /// Absolute path of `<out>/boot.json`.
    pub boot_json: PathBuf,
    /// Size of the initramfs in bytes.
    pub initramfs_size: u64,
    /// Size of the kernel in bytes.
    pub kernel_size: u64,
    /// Things worth telling a person (a dynamically linked daemon, a bzImage kernel).
    pub warnings: Vec<String>,
}

impl BuildOutput {
    /// The `boot.json` content of this build.
    pub fn boot_info(&self) -> BootInfo {
        BootInfo {
            kernel: self.kernel.clone(),
            initramfs: self.initramfs.clone(),
            kernel_release: self.kernel_release.clone(),
            pvh: self.pvh,
        }
    }
}

/// Builds `<out>/initramfs.img`, copies the kernel to `<out>/vmlinux` (or `<out>/vmlinuz`
/// for a bzImage) and writes `<out>/boot.json`.
///
/// Every file is written to a temporary name and renamed into place, so a VM starting
/// meanwhile sees either the old or the new file, never a partial one.
pub fn build(opts: &BuildOptions) -> Result<BuildOutput> {
    let mut warnings = Vec::new();
    check_daemon(&opts.daemon, &mut warnings)?;
    let (format, image) = check_kernel(&opts.kernel)?;
    if format == KernelFormat::BzImage {
        warnings.push(format!(
            "{} is a bzImage: it boots several times slower under TCG than an ELF vmlinux \
             with a PVH entry (scripts/build-kernel.sh builds one)",
            opts.kernel.display()
        ));
    }

    fs::create_dir_all(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;
    let out_dir = fs::canonicalize(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;

    let initramfs = out_dir.join(INITRAMFS_FILE);
    write_atomic(&initramfs, |out| {
        let mut cpio = CpioWriter::new(BufWriter::with_capacity(1 << 20, out));
        write_initramfs(&mut cpio, &initramfs, opts)?;
        cpio.finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .map_err(|e| Error::io(&initramfs, e))?;
        Ok(())
    })?;
    let initramfs_size = file_size(&initramfs)?;

    let kernel = write_kernel(&out_dir, &opts.kernel, format, &image)?;
    let output = BuildOutput {
        kernel,
        initramfs,
        kernel_release: kernel_release(&image).unwrap_or_else(|| "unknown".to_string()),
        pvh: format == KernelFormat::PvhElf,
        boot_json: out_dir.join(BOOT_JSON_FILE),
        initramfs_size,
        kernel_size: image.len() as u64,
        warnings,
    };
    let boot_json =
        serde_json::to_vec_pretty(&output.boot_info()).map_err(|source| Error::Json {
            path: output.boot_json.clone(),
            source,
        })?;
    write_atomic(&output.boot_json, |file| {
        file.write_all(&boot_json)
            .map_err(|e| Error::io(&output.boot_json, e))
    })?;
    Ok(output)
}

/// The daemon must be a readable regular file; a dynamically linked or non-ELF one is
/// allowed (tests use dummies) but warned about, since it cannot run as `/init`.
fn check_daemon(path: &Path, warnings: &mut Vec<String>) -> Result<()> {
    let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::BadDaemon {
            path: path.to_path_buf(),
            reason: "not a regular file".to_string(),
        });
    }
    let mut head = Vec::with_capacity(64 * 1024);
    File::open(path)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .map_err(|e| Error::io(path, e))?;
    match needs_interpreter(&head) {
        Some(false) => {}
        Some(true) => warnings.push(format!(
            "{} is dynamically linked: it cannot run as /init (build it with \
             RUSTFLAGS=\"-C target-feature=+crt-static\")",
            path.display()
        )),
        None => warnings.push(format!("{} is not an ELF binary", path.display())),
    }
    Ok(())
}

/// Writes the entries of the base initramfs (everything but `TRAILER!!!`).
fn write_initramfs<W: Write>(
    cpio: &mut CpioWriter<W>,
    initramfs: &Path,
    opts: &BuildOptions,
) -> Result<()> {
    // Errors name the initramfs being written; those reading the daemon name it too (in
    // the message of the I/O error).
    let out_err = |e: io::Error| Error::io(initramfs, e);
    for dir in GUEST_DIRS {
        cpio.add_dir(dir, 0o755).map_err(out_err)?;
    }
    cpio.add_char_device("/dev/console", 0o600, 5, 1)
        .map_err(out_err)?;
    cpio.add_char_device("/dev/null", 0o666, 1, 3)
        .map_err(out_err)?;
    cpio.add_file_from_path(GUEST_INIT, 0o755, &opts.daemon)
        .map_err(out_err)?;
    let config = serde_json::to_vec(&opts.config).map_err(|source| Error::Json {
        path: PathBuf::from(GUEST_CONFIG),
        source,
    })?;
    cpio.add_file(GUEST_CONFIG, 0o644, &config).map_err(out_err)
}

/// Copies the kernel to `<out>/vmlinux` (PVH ELF) or `<out>/vmlinuz` (bzImage) unless it
/// is that file already, and removes the other name so the directory never holds a
/// stale kernel. Returns the path.
fn write_kernel(
    out_dir: &Path,
    source: &Path,
    format: KernelFormat,
    image: &[u8],
) -> Result<PathBuf> {
    let (name, other) = match format {
        KernelFormat::PvhElf => (VMLINUX_FILE, VMLINUZ_FILE),
        KernelFormat::BzImage => (VMLINUZ_FILE, VMLINUX_FILE),
    };
    let path = out_dir.join(name);
    let same = fs::canonicalize(source).is_ok_and(|s| s == path);
    if !same {
        write_atomic(&path, |file| {
            file.write_all(image).map_err(|e| Error::io(&path, e))
        })?;
    }
    let stale = out_dir.join(other);
    match fs::remove_file(&stale) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&stale, e)),
    }
    Ok(path)
}

/// Writes `path` through a temporary file in the same directory and renames it into place.
fn write_atomic(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = File::create(&tmp)
        .map_err(|e| Error::io(&tmp, e))
        .and_then(|mut file| write(&mut file))
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if result.is_err() {
        // Best effort: the error being returned matters more than a leftover temp file.
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(fs::metadata(path).map_err(|e| Error::io(path, e))?.len())
}

//! Building the boot files of the restore VM: the base initramfs, the kernel to boot
//! (`vmlinux` for PVH where possible) and `boot.json` describing them.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cpio::CpioWriter;
use crate::elf::{has_pvh_note, needs_interpreter, ELF_MAGIC};
use crate::error::{Error, Result};
use crate::kernel_select::{
    describe_kernel, find_default_kernel, KernelChoice, DEFAULT_BOOT_DIR, DEFAULT_MODULES_ROOT,
};
use crate::modules::{module_closure, read_module, Module, DEFAULT_MODULES};
use crate::vmlinux::extract_vmlinux;

/// File name of the initramfs in the output directory.
pub const INITRAMFS_FILE: &str = "initramfs.img";
/// File name of the extracted ELF kernel (PVH boot) in the output directory.
pub const VMLINUX_FILE: &str = "vmlinux";
/// File name of the copied bzImage, used when no PVH `vmlinux` could be made.
pub const VMLINUZ_FILE: &str = "vmlinuz";
/// File name of the boot description ([`BootInfo`]) in the output directory.
pub const BOOT_JSON_FILE: &str = "boot.json";

/// Path of the daemon in the guest.
pub const GUEST_INIT: &str = "/init";
/// Directory of the flat module files in the guest.
pub const GUEST_MODULE_DIR: &str = "/lib/modules";
/// The module load list in the guest: absolute paths, one a line, dependencies first.
pub const GUEST_MODULES_LOAD: &str = "/etc/modules.load";
/// Directory of the per-group load lists: `boot.load` (virtio, vsock: loaded
/// at start) and `<fstype>.load` for each mountable type (loaded on first
/// mount of that type), each a dependency-ordered closure.
pub const GUEST_MODULE_GROUPS_DIR: &str = "/etc/modules.d";

/// Load groups: name and the modules it wants (the closure is added).
/// Only `boot` loads at start; a filesystem's group loads when the daemon
/// first mounts that type, which keeps ~40 modules off the boot path.
pub const MODULE_GROUPS: &[(&str, &[&str])] = &[
    (
        "boot",
        &[
            "virtio_pci",
            "virtio_mmio",
            "virtio_blk",
            "vsock",
            "vmw_vsock_virtio_transport",
        ],
    ),
    ("ext4", &["crc32c_generic", "ext4"]),
    ("xfs", &["crc32c_generic", "xfs"]),
    (
        "btrfs",
        &[
            "crc32c_generic",
            "xxhash_generic",
            "blake2b_generic",
            "sha256_generic",
            "btrfs",
        ],
    ),
    ("vfat", &["vfat", "nls_cp437", "nls_iso8859_1", "nls_utf8"]),
    ("exfat", &["exfat", "nls_utf8"]),
    ("iso9660", &["isofs", "nls_utf8"]),
    ("squashfs", &["squashfs"]),
    ("udf", &["udf", "nls_utf8"]),
    ("f2fs", &["crc32_generic", "f2fs"]),
    ("hfsplus", &["hfsplus", "nls_utf8"]),
    ("ufs", &["ufs"]),
    ("dm", &["dm_mod"]),
];
/// The daemon configuration ([`DaemonConfig`] as JSON) in the guest.
pub const GUEST_CONFIG: &str = "/etc/restore-daemon.json";
/// The ticket file added per VM by [`crate::ticket_cpio`].
pub const GUEST_TICKET: &str = "/ticket";

/// Directories created in the guest root (mode 0755).
const GUEST_DIRS: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/mnt",
    "/tmp",
    "/etc",
    "/lib",
    "/lib/modules",
];

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
    /// The kernel image; default: the newest `/boot/vmlinuz-<version>` with modules.
    pub kernel: Option<PathBuf>,
    /// The module tree; default: `/lib/modules/<version>` of the kernel.
    pub modules_dir: Option<PathBuf>,
    /// The output directory (created if missing).
    pub out_dir: PathBuf,
    /// The daemon configuration.
    pub config: DaemonConfig,
    /// Modules wanted besides [`DEFAULT_MODULES`].
    pub extra_modules: Vec<String>,
}

impl BuildOptions {
    /// Options with the default kernel, modules and configuration.
    pub fn new(daemon: impl Into<PathBuf>, out_dir: impl Into<PathBuf>) -> Self {
        BuildOptions {
            daemon: daemon.into(),
            kernel: None,
            modules_dir: None,
            out_dir: out_dir.into(),
            config: DaemonConfig::default(),
            extra_modules: Vec::new(),
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
    /// The kernel release.
    pub kernel_release: String,
    /// Whether `kernel` is a PVH-bootable ELF `vmlinux`.
    pub pvh: bool,
    /// Absolute path of `<out>/boot.json`.
    pub boot_json: PathBuf,
    /// The kernel image the build started from.
    pub kernel_source: PathBuf,
    /// The module tree used.
    pub modules_dir: PathBuf,
    /// Modules shipped, in load order.
    pub modules: Vec<String>,
    /// Wanted modules that were neither found nor built in.
    pub missing_modules: Vec<String>,
    /// Wanted modules built into the kernel.
    pub builtin_modules: Vec<String>,
    /// Size of the initramfs in bytes.
    pub initramfs_size: u64,
    /// Size of the kernel written, in bytes.
    pub kernel_size: u64,
    /// Things worth telling a person (a dynamically linked daemon, why there is no PVH
    /// kernel).
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

/// Builds `<out>/initramfs.img`, `<out>/vmlinux` (or `<out>/vmlinuz`) and `<out>/boot.json`.
///
/// Every file is written to a temporary name and renamed into place, so a VM starting
/// meanwhile sees either the old or the new file, never a partial one.
pub fn build(opts: &BuildOptions) -> Result<BuildOutput> {
    let mut warnings = Vec::new();
    check_daemon(&opts.daemon, &mut warnings)?;

    let (choice, image) = choose_kernel(opts)?;
    if !choice.modules_dir.join("modules.dep").is_file() {
        return Err(Error::NoModulesDir {
            release: choice.release.clone(),
            path: choice.modules_dir.clone(),
        });
    }

    let mut wanted: Vec<&str> = DEFAULT_MODULES.to_vec();
    wanted.extend(opts.extra_modules.iter().map(String::as_str));
    let set = module_closure(&choice.modules_dir, &wanted)?;

    fs::create_dir_all(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;
    let out_dir = fs::canonicalize(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;

    let initramfs = out_dir.join(INITRAMFS_FILE);
    let module_names: Vec<String> = set.modules.iter().map(|m| m.name.clone()).collect();
    write_atomic(&initramfs, |out| {
        let mut cpio = CpioWriter::new(BufWriter::with_capacity(1 << 20, out));
        write_initramfs(
            &mut cpio,
            &initramfs,
            opts,
            &set.modules,
            &choice.modules_dir,
        )?;
        cpio.finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .map_err(|e| Error::io(&initramfs, e))?;
        Ok(())
    })?;
    let initramfs_size = file_size(&initramfs)?;

    let (kernel, pvh, kernel_size) = write_kernel(&out_dir, &image, &mut warnings)?;

    let output = BuildOutput {
        kernel,
        initramfs,
        kernel_release: choice.release,
        pvh,
        boot_json: out_dir.join(BOOT_JSON_FILE),
        kernel_source: choice.image,
        modules_dir: choice.modules_dir,
        modules: module_names,
        missing_modules: set.missing,
        builtin_modules: set.builtin,
        initramfs_size,
        kernel_size,
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

/// Picks the kernel and reads its image.
fn choose_kernel(opts: &BuildOptions) -> Result<(KernelChoice, Vec<u8>)> {
    match &opts.kernel {
        Some(path) => {
            let image = fs::read(path).map_err(|e| Error::io(path, e))?;
            let choice = describe_kernel(path, &image, opts.modules_dir.as_deref())?;
            Ok((choice, image))
        }
        None => {
            let mut choice =
                find_default_kernel(Path::new(DEFAULT_BOOT_DIR), Path::new(DEFAULT_MODULES_ROOT))?;
            if let Some(dir) = &opts.modules_dir {
                choice.modules_dir = dir.clone();
            }
            let image = fs::read(&choice.image).map_err(|e| Error::io(&choice.image, e))?;
            Ok((choice, image))
        }
    }
}

/// Writes the entries of the base initramfs (everything but `TRAILER!!!`).
fn write_initramfs<W: Write>(
    cpio: &mut CpioWriter<W>,
    initramfs: &Path,
    opts: &BuildOptions,
    modules: &[Module],
    modules_dir: &Path,
) -> Result<()> {
    // Errors name the initramfs being written; those reading the daemon name it too (in
    // the message of the I/O error), and reading a module names the module.
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
    cpio.add_file(GUEST_CONFIG, 0o644, &config)
        .map_err(out_err)?;

    let mut load_list = String::new();
    for module in modules {
        let guest_path = format!("{GUEST_MODULE_DIR}/{}.ko", module.name);
        let data = read_module(&module.path)?;
        cpio.add_file(&guest_path, 0o644, &data).map_err(out_err)?;
        load_list.push_str(&guest_path);
        load_list.push('\n');
    }
    cpio.add_file(GUEST_MODULES_LOAD, 0o644, load_list.as_bytes())
        .map_err(out_err)?;

    cpio.add_dir(GUEST_MODULE_GROUPS_DIR, 0o755)
        .map_err(out_err)?;
    let shipped: Vec<&str> = modules.iter().map(|m| m.name.as_str()).collect();
    for (group, wanted) in MODULE_GROUPS {
        let closure = module_closure(modules_dir, wanted)?;
        let mut list = String::new();
        for m in closure
            .modules
            .iter()
            .filter(|m| shipped.contains(&m.name.as_str()))
        {
            list.push_str(&format!("{GUEST_MODULE_DIR}/{}.ko\n", m.name));
        }
        let path = format!("{GUEST_MODULE_GROUPS_DIR}/{group}.load");
        cpio.add_file(&path, 0o644, list.as_bytes())
            .map_err(out_err)?;
    }
    Ok(())
}

/// Writes `<out>/vmlinux` when the image yields a PVH-bootable ELF, else `<out>/vmlinuz`;
/// removes the other so the directory never holds a stale kernel. Returns the path, whether
/// it is PVH, and its size.
fn write_kernel(
    out_dir: &Path,
    image: &[u8],
    warnings: &mut Vec<String>,
) -> Result<(PathBuf, bool, u64)> {
    let vmlinux = if image.starts_with(ELF_MAGIC) {
        Ok(image.to_vec())
    } else {
        extract_vmlinux(image)
    };
    let (name, other, data, pvh) = match vmlinux {
        Ok(elf) if has_pvh_note(&elf) => (VMLINUX_FILE, VMLINUZ_FILE, elf, true),
        Ok(_) => {
            warnings.push(
                "the kernel has no PVH entry note (CONFIG_PVH): booting the slower bzImage"
                    .to_string(),
            );
            (VMLINUZ_FILE, VMLINUX_FILE, image.to_vec(), false)
        }
        Err(e) => {
            warnings.push(format!(
                "could not extract vmlinux ({e}): booting the slower bzImage"
            ));
            (VMLINUZ_FILE, VMLINUX_FILE, image.to_vec(), false)
        }
    };
    let path = out_dir.join(name);
    write_atomic(&path, |file| {
        file.write_all(&data).map_err(|e| Error::io(&path, e))
    })?;
    let stale = out_dir.join(other);
    match fs::remove_file(&stale) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&stale, e)),
    }
    Ok((path, pvh, data.len() as u64))
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

//! Starting, reusing and stopping restore VMs through the locked VM map.
//!
//! One VM serves one SOURCE (an image, a snapshot directory, an NBD URI).
//! Its map key is the systemd-escaped canonical source plus the identity
//! of its images, so a replaced image gets a new VM. The map lock is held
//! from the lookup until a new VM is recorded: eight parallel calls on a new
//! source end with one VM, the others reuse it.

use crate::launch::{self, AccelPreference, LaunchOptions, RunningVm, TransportPreference};
use crate::source::{self, DiskImage, Source};
use crate::teardown;
use crate::vm_map::{self, LockedMap};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long to wait for the VM map lock: longer than a slow TCG boot,
/// because the holder may be starting the very VM we want.
const LOCK_TIMEOUT: Duration = Duration::from_secs(180);

/// What the VM map records for one running VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmEntry {
    /// The VM and how to reach it.
    pub vm: RunningVm,
    /// The source it serves.
    pub source: Source,
    /// Its disks.
    pub images: Vec<DiskImage>,
    /// `guest.conf` of a backup snapshot, when there is one.
    pub guest_config: Option<PathBuf>,
}

/// Errors of the manager; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The source could not be used.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// The VM map could not be used.
    #[error(transparent)]
    Map(#[from] vm_map::VmMapError),
    /// The VM did not start.
    #[error(transparent)]
    Launch(#[from] launch::LaunchError),
    /// Kernel or initramfs not found.
    #[error("{0}")]
    BootFiles(String),
    /// No VM of that name, and the argument is no usable SOURCE either.
    #[error("no running VM named '{name}', and '{name}' is no SOURCE ({why}); running: {running}")]
    NoSuchVm {
        /// The name asked for.
        name: String,
        /// Why it is not a SOURCE either.
        why: String,
        /// The names that exist.
        running: String,
    },
    /// A usable SOURCE, but no VM serves it.
    #[error("no restore VM is running for SOURCE '{arg}' ({resolved}); running: {running}")]
    NoVmForSource {
        /// The argument as given.
        arg: String,
        /// What it resolved to (canonical path or URI).
        resolved: String,
        /// The names that exist.
        running: String,
    },
}

/// Kernel and base initramfs of the restore VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    /// `vmlinux` (PVH) or a bzImage.
    pub kernel: PathBuf,
    /// The base initramfs.
    pub initramfs: PathBuf,
}

/// Finds the boot files: explicit paths, then `FILE_RESTORE_KERNEL` /
/// `FILE_RESTORE_INITRAMFS`, then the install directories
/// ([`crate::install::install_dirs`]), then the build output of the
/// repository the running binary was built in.
pub fn locate_boot_files(
    kernel: Option<PathBuf>,
    initramfs: Option<PathBuf>,
) -> Result<BootFiles, ManagerError> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut candidates: Vec<PathBuf> = crate::install::install_dirs();
    if let Ok(exe) = std::env::current_exe() {
        // target/{release,debug}/file-restore -> <repo>/build
        if let Some(repo) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
            candidates.push(repo.join("build"));
        }
    }
    // The source tree this binary was compiled from, for a target directory
    // outside it (CARGO_TARGET_DIR).
    if let Some(repo) = Path::new(env!("CARGO_MANIFEST_DIR")).parent() {
        let build = repo.join("build");
        if !candidates.contains(&build) {
            candidates.push(build);
        }
    }
    let from_dirs = |which: &str| -> Option<PathBuf> {
        let names: &[&str] = if which == "kernel" {
            &[
                file_restore_initramfs::VMLINUX_FILE,
                file_restore_initramfs::VMLINUZ_FILE,
            ]
        } else {
            &[file_restore_initramfs::INITRAMFS_FILE]
        };
        candidates
            .iter()
            .flat_map(|d| names.iter().map(move |n| d.join(n)))
            .find(|p| p.is_file())
    };
    let kernel = kernel
        .or_else(|| env("FILE_RESTORE_KERNEL"))
        .or_else(|| from_dirs("kernel"));
    let initramfs = initramfs
        .or_else(|| env("FILE_RESTORE_INITRAMFS"))
        .or_else(|| from_dirs("initramfs"));
    let looked = candidates
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let hint = format!(
        "looked in --kernel/--initramfs, FILE_RESTORE_KERNEL/FILE_RESTORE_INITRAMFS and {looked}; \
         build them with `make build` (or install with `make install`)"
    );
    match (kernel, initramfs) {
        (Some(k), Some(i)) => {
            for p in [&k, &i] {
                if !p.is_file() {
                    return Err(ManagerError::BootFiles(format!(
                        "{} does not exist; {hint}",
                        p.display()
                    )));
                }
            }
            Ok(BootFiles {
                kernel: k,
                initramfs: i,
            })
        }
        (None, _) => Err(ManagerError::BootFiles(format!(
            "no restore VM kernel found; {hint}"
        ))),
        (_, None) => Err(ManagerError::BootFiles(format!(
            "no restore VM initramfs found; {hint}"
        ))),
    }
}

/// Settings of a manager.
#[derive(Debug, Clone)]
pub struct Manager {
    /// The per-user runtime directory holding the map and the VMs' run dirs.
    pub runtime_dir: PathBuf,
    /// Explicit kernel path, if given.
    pub kernel: Option<PathBuf>,
    /// Explicit initramfs path, if given.
    pub initramfs: Option<PathBuf>,
    /// Accelerator preference for new VMs.
    pub accel: AccelPreference,
    /// Transport preference for new VMs.
    pub transport: TransportPreference,
    /// Readiness timeout under TCG (None: the launcher's default).
    pub boot_timeout: Option<Duration>,
}

/// One VM of `status` (its JSON is documented in docs/API.md; fields are
/// only ever added).
#[derive(Debug, Clone, Serialize)]
pub struct VmReport {
    /// Map key.
    pub name: String,
    /// A short readable name: the image's file name, the snapshot's
    /// `<parent>/<directory>`, or the NBD URI.
    pub label: String,
    /// The SOURCE it serves: canonical path or NBD URI (`stop` takes it).
    pub source: String,
    /// QEMU's pid.
    pub pid: u32,
    /// Transport address.
    pub addr: String,
    /// Accelerator.
    pub accel: String,
    /// Seconds since start (daemon uptime).
    pub uptime: Option<u64>,
    /// Idle seconds left before it powers off.
    pub timeout_left: Option<u64>,
    /// Image paths.
    pub images: Vec<PathBuf>,
    /// `guest.conf` of a backup snapshot.
    pub guest_config: Option<PathBuf>,
    /// Disks and buckets the daemon reports.
    pub disks: Option<Vec<file_restore_wire::DiskStatus>>,
}

impl Manager {
    /// A manager using the default runtime directory.
    pub fn new() -> Result<Manager, ManagerError> {
        Ok(Manager {
            runtime_dir: vm_map::runtime_dir()?,
            kernel: None,
            initramfs: None,
            accel: AccelPreference::Auto,
            transport: TransportPreference::Auto,
            boot_timeout: None,
        })
    }

    fn lock(&self) -> Result<LockedMap<VmEntry>, ManagerError> {
        Ok(LockedMap::lock(&self.runtime_dir, LOCK_TIMEOUT)?)
    }

    /// Checks that a recorded VM still answers.
    async fn answers(entry: &VmEntry) -> bool {
        if !teardown::is_alive(&entry.vm) {
            return false;
        }
        let client = entry
            .vm
            .client()
            .with_timeouts(Duration::from_secs(2), Duration::from_secs(5));
        client.status(true).await.is_ok()
    }

    /// Returns a running VM for `source_arg`, reusing the recorded one if it
    /// answers, else starting one. `notes` receives messages for the user
    /// (a dead VM removed, a VM started).
    pub async fn ensure_vm(
        &self,
        source_arg: &str,
        notes: &mut Vec<String>,
    ) -> Result<(String, VmEntry), ManagerError> {
        let src = source::parse_source(source_arg)?;
        let files = source::find_image_files(&src)?;
        let ids: Vec<_> = files.iter().map(|f| f.identity.clone()).collect();
        let name = source::vm_name_from_identities(&src, &ids);
        let mut map = self.lock()?;
        notes.extend(map.warnings().iter().cloned());
        if let Some(entry) = map.get(&name).cloned() {
            if Self::answers(&entry).await {
                return Ok((name, entry));
            }
            notes.push(format!(
                "VM {name} (pid {}) no longer answers; removed it, starting a new one (console log was {})",
                entry.vm.pid,
                entry.vm.console_log.display()
            ));
            let _ = teardown::stop_vm(&entry.vm, Duration::from_secs(1)).await;
            map.remove(&name);
            map.save()?;
        }
        // New VM: decide formats (by extension) and check backing chains (refusing links
        // outside the store) before QEMU sees any of it.
        let images = source::resolve_images(&src)?;
        let boot = locate_boot_files(self.kernel.clone(), self.initramfs.clone())?;
        let specs = images
            .iter()
            .map(|i| launch::ImageSpec {
                path: i.path.clone(),
                format: i.format.clone(),
                name: i.name.clone(),
            })
            .collect();
        let mut opts = LaunchOptions::new(
            boot.kernel,
            boot.initramfs,
            specs,
            self.runtime_dir.join("vms"),
        );
        opts.accel = self.accel;
        opts.transport = self.transport;
        if let Some(t) = self.boot_timeout {
            opts.timeouts.tcg_ready = t;
        }
        let vm = launch::start_vm(opts).await?;
        notes.push(format!("started VM {name} (pid {}, {})", vm.pid, vm.accel));
        let entry = VmEntry {
            vm,
            source: src.clone(),
            images,
            guest_config: source::guest_config(&src),
        };
        map.insert(name.clone(), entry.clone());
        map.save()?;
        Ok((name, entry))
    }

    /// Status of every recorded VM; entries that do not answer are removed
    /// (reported in `notes`).
    pub async fn status(&self, notes: &mut Vec<String>) -> Result<Vec<VmReport>, ManagerError> {
        let mut map = self.lock()?;
        notes.extend(map.warnings().iter().cloned());
        let mut out = Vec::new();
        let mut dead = Vec::new();
        for (name, entry) in map.iter() {
            let client = entry
                .vm
                .client()
                .with_timeouts(Duration::from_secs(2), Duration::from_secs(5));
            let st = if teardown::is_alive(&entry.vm) {
                client.status(true).await.ok()
            } else {
                None
            };
            let Some(st) = st else {
                dead.push((name.clone(), entry.clone()));
                continue;
            };
            out.push(VmReport {
                name: name.clone(),
                label: source_label(&entry.source),
                source: source_text(&entry.source),
                pid: entry.vm.pid,
                addr: format!("{}", entry.vm.addr),
                accel: entry.vm.accel.to_string(),
                uptime: st.uptime,
                timeout_left: st.timeout_left,
                images: entry.images.iter().map(|i| i.path.clone()).collect(),
                guest_config: entry.guest_config.clone(),
                disks: st.disks,
            });
        }
        for (name, entry) in dead {
            notes.push(format!(
                "VM {name} (pid {}) no longer answers; removed it",
                entry.vm.pid
            ));
            let _ = teardown::stop_vm(&entry.vm, Duration::from_secs(1)).await;
            map.remove(&name);
        }
        map.save()?;
        Ok(out)
    }

    /// Stops VMs: with `None` all of them; with `Some(arg)` the VM of that
    /// name, or, when no VM has that name, every VM serving `arg` read as a
    /// SOURCE (resolved as `list` resolves it). Returns the names stopped.
    pub async fn stop(&self, which: Option<&str>) -> Result<Vec<String>, ManagerError> {
        let mut map = self.lock()?;
        let names: Vec<String> = match which {
            None => map.names(),
            Some(n) if map.get(n).is_some() => vec![n.to_owned()],
            Some(arg) => names_for_source(&map, arg)?,
        };
        for n in &names {
            if let Some(entry) = map.remove(n) {
                if let Err(e) = teardown::stop_vm(&entry.vm, Duration::from_secs(5)).await {
                    log::warn!("stopping {n}: {e}");
                }
            }
        }
        map.save()?;
        Ok(names)
    }
}

/// The names of the VMs serving `arg` read as a SOURCE; an error naming it
/// when it is no SOURCE or no VM serves it.
fn names_for_source(map: &LockedMap<VmEntry>, arg: &str) -> Result<Vec<String>, ManagerError> {
    let running = || {
        let names = map.names();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    let src = source::parse_source(arg).map_err(|e| ManagerError::NoSuchVm {
        name: arg.to_owned(),
        why: e.to_string(),
        running: running(),
    })?;
    // Every VM of this SOURCE: the one `list` would reuse and any older
    // one started before the image was replaced (the key also hashes the
    // images' identities).
    let names: Vec<String> = map
        .iter()
        .filter(|(_, e)| e.source == src)
        .map(|(n, _)| n.clone())
        .collect();
    if names.is_empty() {
        return Err(ManagerError::NoVmForSource {
            arg: arg.to_owned(),
            resolved: source_text(&src),
            running: running(),
        });
    }
    Ok(names)
}

/// The SOURCE as text: the canonical path or the URI.
fn source_text(src: &Source) -> String {
    match src {
        Source::Image(p) | Source::Directory(p) => p.display().to_string(),
        Source::Nbd(uri) => uri.clone(),
    }
}

/// The short name `status` shows: an image's file name, a directory's last
/// two components (`<vmid>/qemu-<epoch>` of a backup snapshot), a URI as is.
fn source_label(src: &Source) -> String {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    match src {
        Source::Image(p) => name(p).unwrap_or_else(|| p.display().to_string()),
        Source::Directory(p) => match (p.parent().and_then(name), name(p)) {
            (Some(parent), Some(dir)) => format!("{parent}/{dir}"),
            (None, Some(dir)) => dir,
            _ => p.display().to_string(),
        },
        Source::Nbd(uri) => uri.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_short() {
        let img = Source::Image(PathBuf::from("/var/lib/vz/images/100/vm-100-disk-0.qcow2"));
        assert_eq!(source_label(&img), "vm-100-disk-0.qcow2");
        let dir = Source::Directory(PathBuf::from("/mnt/store/100/qemu-1700000000"));
        assert_eq!(source_label(&dir), "100/qemu-1700000000");
        assert_eq!(source_label(&Source::Directory(PathBuf::from("/"))), "/");
        let nbd = Source::Nbd("nbd://host:10809/disk".into());
        assert_eq!(source_label(&nbd), "nbd://host:10809/disk");
        assert_eq!(source_text(&dir), "/mnt/store/100/qemu-1700000000");
    }

    fn entry(source: Source) -> VmEntry {
        let vm: crate::launch::RunningVm = serde_json::from_value(serde_json::json!({
            "pid": 1, "sidecar_pid": null, "addr": {"kind": "hybrid_unix", "path": "/x", "port": 1024},
            "ticket": "t", "accel": "tcg", "run_dir": "/r", "console_log": "/r/c",
            "qmp_socket": "/r/q", "started_at": 0
        }))
        .expect("a RunningVm");
        VmEntry {
            vm,
            source,
            images: Vec::new(),
            guest_config: None,
        }
    }

    #[test]
    fn stop_finds_every_vm_of_a_source_and_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("a.raw");
        let other = dir.path().join("b.raw");
        std::fs::write(&img, b"").unwrap();
        std::fs::write(&other, b"").unwrap();
        let canon = std::fs::canonicalize(&img).unwrap();
        let mut map: LockedMap<VmEntry> =
            LockedMap::lock(dir.path(), Duration::from_secs(1)).unwrap();
        map.insert("old", entry(Source::Image(canon.clone())));
        map.insert("new", entry(Source::Image(canon.clone())));
        map.insert("nbd", entry(Source::Nbd("nbd://h/e".into())));
        // Relative and absolute spellings of the path resolve alike.
        let mut names = names_for_source(&map, img.to_str().unwrap()).unwrap();
        names.sort();
        assert_eq!(names, ["new", "old"]);
        assert_eq!(names_for_source(&map, "nbd://h/e").unwrap(), ["nbd"]);
        let e = names_for_source(&map, other.to_str().unwrap()).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, ManagerError::NoVmForSource { .. }) && msg.contains("b.raw"),
            "{msg}"
        );
        let e = names_for_source(&map, "no-such-vm-or-file").unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, ManagerError::NoSuchVm { .. })
                && msg.contains("no running VM named 'no-such-vm-or-file'")
                && msg.contains("nbd, new, old"),
            "{msg}"
        );
    }
}

//! Starting, reusing and stopping restore VMs through the locked VM map.
//!
//! One VM serves one SOURCE (an image, a snapshot directory, an NBD URI).
//! Its map key is the systemd-escaped canonical source plus the identity
//! of its images, so a replaced image gets a new VM.
//!
//! The map lock is held only for short read-modify-write steps, never while
//! a VM boots or a guest is asked something (a stalled guest must not block
//! `status` or `stop --all` of the same user): a start is reserved under the
//! lock ([`MapSlot::Starting`]), boots without it and is recorded under it
//! again. Eight parallel calls on a new source still end with one VM: the
//! others wait for the reservation (at most [`START_WAIT`]) and reuse the VM.
//!
//! Folder: the manager ([`Manager`]), a map entry's states ([`MapSlot`],
//! in `slot.rs`), finding a source's VM in the map (`by_source.rs`) and
//! the locked JSON map file itself ([`vm_map`]). May import `vm` (the only
//! place that imports `vm::launch`), `source`, `guest`, `helper` and `util`.

use crate::source::{self, DiskImage, Source};
use crate::vm::launch::{self, LaunchOptions};
pub use crate::vm::launch::{AccelPreference, TransportPreference};
use crate::vm::{teardown, RunningVm};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use vm_map::LockedMap;

pub mod vm_map;

mod slot;
pub use slot::{MapSlot, Reservation};

mod by_source;

mod boot_files;
pub use boot_files::{locate_boot_files, BootFiles};
use by_source::{names_for_source, source_label, source_text};

/// How long to wait for the VM map lock. Holders only read and write the
/// map (no VM boots, no guest is asked anything under it), so this is only
/// ever reached when something is badly wrong.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait for another invocation's start of the same VM: longer
/// than a slow start (KVM tried, then TCG, then one fresh TCG VM).
pub const START_WAIT: Duration = Duration::from_secs(180);

/// Pause between looks at another invocation's start.
const START_POLL: Duration = Duration::from_millis(100);

/// Limits of the status call that tells whether a recorded VM answers.
const CHECK_CONNECT: Duration = Duration::from_secs(2);
const CHECK_RESPONSE: Duration = Duration::from_secs(5);

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
    /// Blocking work (the lock wait, qemu-img) could not finish: the
    /// runtime is shutting down.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// Kernel or initramfs not found.
    #[error("{0}")]
    BootFiles(String),
    /// Another invocation has been starting this VM for too long.
    #[error(
        "VM {name} is being started by another file-restore (pid {pid}) and is not ready after \
         {secs} s; wait for it, or end it with `file-restore stop {name}`",
        secs = waited.as_secs()
    )]
    StartPending {
        /// The VM's name.
        name: String,
        /// The starting process.
        pid: u32,
        /// How long this invocation waited.
        waited: Duration,
    },
    /// `stop` removed the VM's reservation while this invocation started it.
    #[error("VM {name} was stopped (`file-restore stop`) while it was starting")]
    StartCancelled {
        /// The VM's name.
        name: String,
    },
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

/// Runs blocking work on tokio's blocking threads (a panic in it goes on
/// unwinding here).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ManagerError> + Send + 'static,
) -> Result<T, ManagerError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(ManagerError::Interrupted(e.to_string())),
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
    /// Guest RAM of new VMs in MiB (None: by the number of disks).
    pub memory_mib: Option<u32>,
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
            memory_mib: None,
        })
    }

    /// Locks the map; the wait for the lock (a polling `flock`) runs off the
    /// async worker threads.
    async fn lock(&self) -> Result<LockedMap<MapSlot>, ManagerError> {
        let dir = self.runtime_dir.clone();
        blocking(move || Ok(LockedMap::lock(&dir, LOCK_TIMEOUT)?)).await
    }

    /// Checks that a recorded VM still answers (bounded: a stalled guest is
    /// one that does not answer).
    async fn answers(entry: &VmEntry) -> bool {
        if !teardown::is_alive(&entry.vm) {
            return false;
        }
        let client = entry
            .vm
            .client()
            .with_timeouts(CHECK_CONNECT, CHECK_RESPONSE);
        client.status(true).await.is_ok()
    }

    /// Returns a running VM for `source_arg`, reusing the recorded one if it
    /// answers, waiting for one another invocation is starting, else
    /// starting one. The VM counts as in use for the rest of this process
    /// ([`crate::vm::keeper::mark_in_use`]). `notes` receives messages for the user (a dead VM
    /// removed, a VM started).
    pub async fn ensure_vm(
        &self,
        source_arg: &str,
        notes: &mut Vec<String>,
    ) -> Result<(String, VmEntry), ManagerError> {
        let src = source::parse_source(source_arg)?;
        let files = source::find_image_files(&src)?;
        let ids: Vec<_> = files.iter().map(|f| f.identity.clone()).collect();
        let name = source::vm_name_from_identities(&src, &ids);
        let began = Instant::now();
        let mut first = true;
        let reservation = loop {
            let mut map = self.lock().await?;
            if std::mem::take(&mut first) {
                notes.extend(map.warnings().iter().cloned());
            }
            match map.get(&name).cloned() {
                Some(MapSlot::Running(entry)) => {
                    drop(map);
                    if Self::answers(&entry).await {
                        crate::vm::keeper::mark_in_use(&entry.vm.run_dir);
                        return Ok((name, entry));
                    }
                    // Replace it, unless another invocation did meanwhile.
                    let mut map = self.lock().await?;
                    let same = matches!(map.get(&name),
                        Some(MapSlot::Running(e)) if e.vm.run_dir == entry.vm.run_dir);
                    if !same {
                        continue;
                    }
                    let r = reserve(&mut map, &name)?;
                    drop(map);
                    notes.push(format!(
                        "VM {name} (pid {}) no longer answers; removed it, starting a new one (console log was {})",
                        entry.vm.pid,
                        entry.vm.console_log.display()
                    ));
                    let _ = teardown::stop_vm(&entry.vm, Duration::from_secs(1)).await;
                    break r;
                }
                Some(MapSlot::Starting { starting }) if starting.holder_alive() => {
                    drop(map);
                    let waited = began.elapsed();
                    if waited >= START_WAIT {
                        return Err(ManagerError::StartPending {
                            name,
                            pid: starting.pid,
                            waited,
                        });
                    }
                    tokio::time::sleep(START_POLL).await;
                }
                stale_or_none => {
                    if let Some(MapSlot::Starting { starting }) = stale_or_none {
                        notes.push(format!(
                            "VM {name} was being started by pid {}, which is gone; starting it again",
                            starting.pid
                        ));
                    }
                    let r = reserve(&mut map, &name)?;
                    break r;
                }
            }
        };
        let started = self.start(&src).await;
        let entry = self.commit(&name, &reservation, started).await?;
        crate::vm::keeper::mark_in_use(&entry.vm.run_dir);
        notes.push(format!(
            "started VM {name} (pid {}, {})",
            entry.vm.pid, entry.vm.accel
        ));
        Ok((name, entry))
    }

    /// Boots a VM for `src` (no lock held).
    async fn start(&self, src: &Source) -> Result<VmEntry, ManagerError> {
        // Decide formats (by extension) and check backing chains (refusing links
        // outside the store) before QEMU sees any of it.
        // qemu-img calls: off the async worker threads.
        let images = {
            let src = src.clone();
            blocking(move || Ok(source::resolve_images(&src)?)).await?
        };
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
        opts.memory_mib = self.memory_mib;
        let vm = launch::start_vm(opts).await?;
        Ok(VmEntry {
            vm,
            source: src.clone(),
            images,
            guest_config: source::guest_config(src),
        })
    }

    /// Records the outcome of a reserved start: the VM replaces the
    /// reservation, or a failed start removes it. A reservation that `stop`
    /// removed meanwhile means the user wants the VM gone: it is stopped.
    async fn commit(
        &self,
        name: &str,
        reservation: &Reservation,
        started: Result<VmEntry, ManagerError>,
    ) -> Result<VmEntry, ManagerError> {
        let locked = self.lock().await;
        let ours = |map: &LockedMap<MapSlot>| {
            matches!(map.get(name),
                Some(MapSlot::Starting { starting }) if starting.token == reservation.token)
        };
        match (locked, started) {
            (Ok(mut map), Ok(entry)) if ours(&map) => {
                map.insert(name, MapSlot::Running(entry.clone()));
                match map.save() {
                    Ok(()) => Ok(entry),
                    Err(e) => {
                        drop(map);
                        let _ = teardown::stop_vm(&entry.vm, Duration::from_secs(1)).await;
                        Err(e.into())
                    }
                }
            }
            (locked, Ok(entry)) => {
                drop(locked);
                let _ = teardown::stop_vm(&entry.vm, Duration::from_secs(1)).await;
                Err(ManagerError::StartCancelled {
                    name: name.to_owned(),
                })
            }
            (Ok(mut map), Err(e)) => {
                if ours(&map) {
                    map.remove(name);
                    if let Err(save) = map.save() {
                        log::warn!("cannot remove the reservation of {name}: {save}");
                    }
                }
                Err(e)
            }
            (Err(lock), Err(e)) => {
                log::warn!("cannot remove the reservation of {name}: {lock}");
                Err(e)
            }
        }
    }

    /// Status of every recorded VM, asked of all of them at once without the
    /// lock (each answer bounded); VMs that do not answer are stopped and
    /// removed, reservations of processes that are gone are removed (both
    /// reported in `notes`). VMs being started are reported in `notes`.
    pub async fn status(&self, notes: &mut Vec<String>) -> Result<Vec<VmReport>, ManagerError> {
        let slots: Vec<(String, MapSlot)> = {
            let map = self.lock().await?;
            notes.extend(map.warnings().iter().cloned());
            map.iter().map(|(n, s)| (n.clone(), s.clone())).collect()
        };
        let mut checks = JoinSet::new();
        let mut stale = Vec::new();
        for (name, slot) in slots {
            match slot {
                MapSlot::Running(entry) => {
                    checks.spawn(async move {
                        let st = if teardown::is_alive(&entry.vm) {
                            let client = entry
                                .vm
                                .client()
                                .with_timeouts(CHECK_CONNECT, CHECK_RESPONSE);
                            client.status(true).await.ok()
                        } else {
                            None
                        };
                        (name, entry, st)
                    });
                }
                MapSlot::Starting { starting } if starting.holder_alive() => notes.push(format!(
                    "VM {name} is being started by pid {} (for {} s)",
                    starting.pid,
                    crate::util::unix_now().saturating_sub(starting.since)
                )),
                MapSlot::Starting { starting } => {
                    notes.push(format!(
                        "VM {name} was being started by pid {}, which is gone; removed it",
                        starting.pid
                    ));
                    stale.push((name, MapSlot::Starting { starting }));
                }
            }
        }
        let mut out = Vec::new();
        let mut dead = Vec::new();
        while let Some(done) = checks.join_next().await {
            let Ok((name, entry, st)) = done else {
                continue;
            };
            let Some(st) = st else {
                dead.push((name, entry));
                continue;
            };
            out.push(VmReport {
                name,
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
        out.sort_by(|a, b| a.name.cmp(&b.name));
        for (name, entry) in &dead {
            notes.push(format!(
                "VM {name} (pid {}) no longer answers; removed it",
                entry.vm.pid
            ));
            let _ = teardown::stop_vm(&entry.vm, Duration::from_secs(1)).await;
        }
        stale.extend(dead.into_iter().map(|(n, e)| (n, MapSlot::Running(e))));
        if !stale.is_empty() {
            self.remove_if_unchanged(&stale).await?;
        }
        Ok(out)
    }

    /// Removes the entries of `seen` that the map still holds unchanged (the
    /// same VM, the same reservation): another invocation may have replaced
    /// one since it was read.
    async fn remove_if_unchanged(&self, seen: &[(String, MapSlot)]) -> Result<(), ManagerError> {
        let mut map = self.lock().await?;
        let mut changed = false;
        for (name, was) in seen {
            let unchanged = match (map.get(name), was) {
                (Some(MapSlot::Running(now)), MapSlot::Running(was)) => {
                    now.vm.run_dir == was.vm.run_dir
                }
                (
                    Some(MapSlot::Starting { starting: now }),
                    MapSlot::Starting { starting: was },
                ) => now.token == was.token,
                _ => false,
            };
            if unchanged {
                map.remove(name);
                changed = true;
            }
        }
        if changed {
            map.save()?;
        }
        Ok(())
    }

    /// Whether the VM map records a running VM serving `source_arg` (read
    /// as a SOURCE); whether it still answers is not asked. `versions` uses
    /// it to stop afterwards only the VMs it started.
    pub async fn serves(&self, source_arg: &str) -> Result<bool, ManagerError> {
        let src = source::parse_source(source_arg)?;
        let map = self.lock().await?;
        let serving = map
            .iter()
            .any(|(_, slot)| matches!(slot, MapSlot::Running(e) if e.source == src));
        Ok(serving)
    }

    /// Stops VMs: with `None` all of them; with `Some(arg)` the VM of that
    /// name, or, when no VM has that name, every VM serving `arg` read as a
    /// SOURCE (resolved as `list` resolves it). Returns the names stopped.
    /// The entries leave the map first (under the lock); the VMs are then
    /// stopped at once, without it. A VM being started is stopped by its
    /// starter, which finds its reservation gone.
    pub async fn stop(&self, which: Option<&str>) -> Result<Vec<String>, ManagerError> {
        let removed: Vec<(String, MapSlot)> = {
            let mut map = self.lock().await?;
            let names: Vec<String> = match which {
                None => map.names(),
                Some(n) if map.get(n).is_some() => vec![n.to_owned()],
                Some(arg) => names_for_source(&map, arg)?,
            };
            let removed = names
                .into_iter()
                .filter_map(|n| map.remove(&n).map(|slot| (n, slot)))
                .collect();
            map.save()?;
            removed
        };
        let mut stops = JoinSet::new();
        let mut names = Vec::new();
        for (n, slot) in removed {
            names.push(n.clone());
            if let MapSlot::Running(entry) = slot {
                stops.spawn(async move {
                    if let Err(e) = teardown::stop_vm(&entry.vm, Duration::from_secs(5)).await {
                        log::warn!("stopping {n}: {e}");
                    }
                });
            }
        }
        while stops.join_next().await.is_some() {}
        Ok(names)
    }
}

/// Records in `map` (and saves) that this invocation starts VM `name`.
fn reserve(map: &mut LockedMap<MapSlot>, name: &str) -> Result<Reservation, ManagerError> {
    let r = Reservation::new()?;
    map.insert(
        name.to_owned(),
        MapSlot::Starting {
            starting: r.clone(),
        },
    );
    map.save()?;
    Ok(r)
}

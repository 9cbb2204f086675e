//! The storage-stack scan: the virtio disks, then what is built on them —
//! md arrays, LVM volumes, opened LUKS containers — in any order and any
//! depth.
//!
//! The scan opens what the signatures call for and probes again after each
//! layer until nothing new appears ([`scan_all`]); LUKS containers open only
//! when the client sends passphrases ([`unlock`]), after which the same scan
//! runs again, so LVM inside LUKS appears then. Each stack is one module of
//! [`crate::stacks`] (`md`, `lvm`, `luks`) run through the tools image
//! (`tools`); this one only orders them and decides, from the sysfs graph
//! (`blockdev`), under which disks each device appears: under every disk it
//! is built on.

use crate::bucket::{Bucket, Disk};
use crate::disks;
use crate::probe;
use crate::stacks::{blockdev, luks, lvm, md, tools};
use crate::state::State;
use crate::vpath::BucketKind;
use file_restore_fsmagic::FsType;
use file_restore_wire::{UnlockAnswer, UnlockOutcome, UnlockResult};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// Rounds of "open a layer, probe again" before the scan stops looking.
const MAX_ROUNDS: usize = 8;

/// What the scans so far have acted on: a device is handed to mdadm or lvm
/// once, not on every rescan.
#[derive(Default)]
struct Progress {
    md_members: BTreeSet<String>,
    pvs: BTreeSet<String>,
    tools_error: Option<String>,
}

/// Serialises every change to the stacks (the boot scan, unlock calls).
static PROGRESS: Mutex<Progress> = Mutex::new(Progress {
    md_members: BTreeSet::new(),
    pvs: BTreeSet::new(),
    tools_error: None,
});

fn progress() -> MutexGuard<'static, Progress> {
    PROGRESS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Scans the virtio disks and opens everything built on them that needs no
/// key; each disk gets the buckets of every device built on it.
pub fn scan_all() -> Vec<Disk> {
    scan_locked(&mut progress())
}

fn scan_locked(p: &mut Progress) -> Vec<Disk> {
    let mut disks = disks::scan_virtio_disks();
    let started = std::time::Instant::now();
    if settle(p, &disks) {
        attach(p, &mut disks);
        log::info!(
            "storage stacks settled in {} ms",
            started.elapsed().as_millis()
        );
    }
    disks
}

fn is_stack(t: FsType) -> bool {
    matches!(
        t,
        FsType::MdMember | FsType::LvmPv | FsType::Luks | FsType::Bitlocker
    )
}

/// Every device that may carry a stack signature now: the disks' buckets
/// and the device-mapper and md devices, with their probed types.
fn candidates(disks: &[Disk]) -> Vec<(String, FsType)> {
    let mut out: Vec<(String, FsType)> = disks
        .iter()
        .flat_map(|d| d.buckets.iter())
        .filter(|b| b.error.is_none())
        .map(|b| (b.kname(), b.fstype))
        .collect();
    for k in blockdev::derived_devices() {
        let Ok(node) = blockdev::node(&k) else {
            continue;
        };
        let t = probe::detect(&node)
            .map(|d| d.fstype)
            .unwrap_or(FsType::Unknown);
        out.push((k, t));
    }
    out
}

/// Opens md arrays and LVM volume groups until no new member or PV shows
/// up. False when there is nothing stacked at all (the plain case).
fn settle(p: &mut Progress, disks: &[Disk]) -> bool {
    let mut any = !blockdev::derived_devices().is_empty();
    for _ in 0..MAX_ROUNDS {
        let devices = candidates(disks);
        any |= devices.iter().any(|(_, t)| is_stack(*t));
        let new_of = |t: FsType, seen: &BTreeSet<String>| -> Vec<String> {
            devices
                .iter()
                .filter(|(k, ft)| *ft == t && !seen.contains(k))
                .map(|(k, _)| k.clone())
                .collect()
        };
        let new_md = new_of(FsType::MdMember, &p.md_members);
        let new_pv = new_of(FsType::LvmPv, &p.pvs);
        if new_md.is_empty() && new_pv.is_empty() {
            break;
        }
        let tools = match tools::get() {
            Ok(t) => t,
            Err(e) => {
                log::warn!("{e}");
                p.tools_error = Some(e);
                break;
            }
        };
        if !new_md.is_empty() {
            log::info!("md members {}: assembling", new_md.join(", "));
            md::assemble(tools);
            p.md_members.extend(new_md);
        }
        if !new_pv.is_empty() {
            log::info!("LVM physical volumes {}: activating", new_pv.join(", "));
            let pvs: Vec<lvm::dup::Pv> = devices
                .iter()
                .filter(|(_, t)| *t == FsType::LvmPv)
                .map(|(k, _)| lvm::dup::Pv {
                    kname: k.clone(),
                    uuid: pv_uuid(k),
                })
                .collect();
            if let Err(e) = lvm::activate(tools, &pvs) {
                log::warn!("lvm: {e}");
            }
            p.pvs.extend(new_pv);
        }
    }
    any
}

/// The PV UUID libblkid reads on `kname` (empty when it reads none).
fn pv_uuid(kname: &str) -> String {
    blockdev::node(kname)
        .ok()
        .and_then(|n| probe::detect(&n).ok())
        .and_then(|d| d.uuid)
        .unwrap_or_default()
}

/// A bucket built on other devices, and the disks (kernel names) it is on.
struct Derived {
    bucket: Arc<Bucket>,
    disks: BTreeSet<String>,
}

fn derived_bucket(
    kind: BucketKind,
    name: String,
    kname: Option<&str>,
    error: Option<String>,
) -> Bucket {
    if let Some(e) = error {
        return disks::broken_bucket(kind, name, e);
    }
    let probed = kname
        .ok_or_else(|| "no device".to_string())
        .and_then(|k| blockdev::node(k).map_err(|e| e.to_string()))
        .and_then(|node| disks::probe_bucket(kind, name.clone(), node).map_err(|e| e.to_string()));
    probed.unwrap_or_else(|e| {
        disks::broken_bucket(
            kind,
            name.clone(),
            format!("{}/{name}: cannot read: {e}", kind.name()),
        )
    })
}

/// Gives each disk the buckets of the md arrays, LVs and opened LUKS
/// containers built on it.
fn attach(p: &Progress, disks: &mut [Disk]) {
    if let Some(e) = &p.tools_error {
        // The members stay listed as what they are; their error says why
        // nothing built on them is.
        for b in disks.iter_mut().flat_map(|d| d.buckets.iter_mut()) {
            if is_stack(b.fstype) && !matches!(b.fstype, FsType::Luks | FsType::Bitlocker) {
                if let Some(b) = Arc::get_mut(b) {
                    b.error = Some(e.clone());
                }
            }
        }
        return;
    }
    let mut labels: BTreeMap<String, (BucketKind, String)> = disks
        .iter()
        .flat_map(|d| d.buckets.iter())
        .map(|b| (b.kname(), (b.kind, b.name.clone())))
        .collect();
    let mut derived: Vec<Derived> = Vec::new();
    let tools = match tools::get() {
        Ok(t) => t,
        // Devices exist but the tools do not: nothing was opened by us.
        Err(_) => return,
    };
    for a in md::arrays(tools) {
        let b = derived_bucket(BucketKind::Md, a.name.clone(), Some(&a.kname), a.error);
        labels.insert(a.kname.clone(), (BucketKind::Md, a.name));
        derived.push(Derived {
            bucket: Arc::new(b),
            disks: blockdev::base_disks(&a.kname),
        });
    }
    if !p.pvs.is_empty() {
        match lvm::volumes(tools) {
            Ok(vols) => {
                for v in vols {
                    let name = format!("{}/{}", v.vg, v.lv);
                    let b =
                        derived_bucket(BucketKind::Lvm, name.clone(), v.kname.as_deref(), v.error);
                    let on: BTreeSet<String> = v
                        .pvs
                        .iter()
                        .flat_map(|pv| blockdev::base_disks(pv))
                        .collect();
                    if let Some(k) = &v.kname {
                        labels.insert(k.clone(), (BucketKind::Lvm, name));
                    }
                    derived.push(Derived {
                        bucket: Arc::new(b),
                        disks: on,
                    });
                }
            }
            Err(e) => log::warn!("lvm: cannot list logical volumes: {e}"),
        }
    }
    for dm in blockdev::derived_devices() {
        let Some((container, bitlocker)) = luks::container_of(&dm) else {
            continue;
        };
        let Some((kind, name)) = labels.get(&container).cloned() else {
            log::warn!("luks: {dm} is open on {container}, which is no bucket");
            continue;
        };
        let content = luks::content_name(kind.name(), &name);
        let kind = if bitlocker {
            BucketKind::Bitlocker
        } else {
            BucketKind::Luks
        };
        let b = derived_bucket(kind, content.clone(), Some(&dm), None);
        labels.insert(dm.clone(), (kind, content));
        derived.push(Derived {
            bucket: Arc::new(b),
            disks: blockdev::base_disks(&dm),
        });
    }
    for d in disks.iter_mut() {
        for x in &derived {
            if x.disks.contains(&d.kname) {
                let taken = d
                    .buckets
                    .iter()
                    .any(|b| b.kind == x.bucket.kind && b.name == x.bucket.name);
                if taken {
                    log::warn!(
                        "disk {}: a second {}/{} is not listed",
                        d.name,
                        x.bucket.kind.name(),
                        x.bucket.name
                    );
                    continue;
                }
                d.buckets.push(x.bucket.clone());
            }
        }
        disks::sort_buckets(&mut d.buckets);
        for b in &d.buckets {
            if b.kind != BucketKind::Part && b.kind != BucketKind::Raw {
                log::info!(
                    "disk {}: {}/{} {} ({} bytes){}",
                    d.name,
                    b.kind.name(),
                    b.name,
                    b.fstype,
                    b.size,
                    b.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
            }
        }
    }
}

/// Tries `passphrases` on every locked LUKS container (each container once,
/// also when it appears under several disks), scans again after any opened,
/// and repeats for containers that appear inside opened ones.
pub fn unlock(state: &State, passphrases: &[Vec<u8>]) -> UnlockAnswer {
    let mut p = progress();
    let mut results: Vec<UnlockResult> = Vec::new();
    let mut tried: BTreeSet<std::path::PathBuf> = BTreeSet::new();
    for _ in 0..MAX_ROUNDS {
        let mut opened_any = false;
        for d in state.disks() {
            for b in &d.buckets {
                let bitlocker = b.fstype == FsType::Bitlocker;
                if !(bitlocker || b.fstype == FsType::Luks) || !tried.insert(b.device.clone()) {
                    continue;
                }
                let kname = b.kname();
                let encryption = b.encryption.clone().unwrap_or_else(|| "LUKS".into());
                let content = format!(
                    "{}/{}",
                    if bitlocker { "bitlocker" } else { "luks" },
                    luks::content_name(b.kind.name(), &b.name)
                );
                let mut r = UnlockResult {
                    container: format!("{}/{}/{}", d.name, b.kind.name(), b.name),
                    encryption: encryption.clone(),
                    outcome: UnlockOutcome::AlreadyOpen,
                    bucket: Some(content),
                    message: None,
                };
                if luks::opened_on(&kname).is_none() {
                    let kind = match encryption.as_str() {
                        _ if bitlocker => luks::Kind::Bitlocker,
                        "LUKS1" => luks::Kind::Luks(1),
                        _ => luks::Kind::Luks(2),
                    };
                    let attempt = tools::get()
                        .map(|t| luks::open(t, &kname, kind, passphrases))
                        .unwrap_or_else(luks::Attempt::Failed);
                    match attempt {
                        luks::Attempt::Opened => {
                            r.outcome = UnlockOutcome::Opened;
                            opened_any = true;
                        }
                        luks::Attempt::WrongKey => {
                            r.outcome = UnlockOutcome::WrongKey;
                            r.bucket = None;
                            r.message = Some(format!(
                                "none of the {} passphrase(s) opens {encryption} container {}",
                                passphrases.len(),
                                r.container
                            ));
                        }
                        luks::Attempt::Failed(m) => {
                            r.outcome = UnlockOutcome::Failed;
                            r.bucket = None;
                            r.message = Some(format!("{}: {m}", r.container));
                        }
                    }
                }
                results.push(r);
            }
        }
        if !opened_any {
            break;
        }
        state.replace_disks(scan_locked(&mut p));
    }
    UnlockAnswer {
        containers: results,
    }
}

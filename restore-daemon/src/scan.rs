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
use crate::stacks::{blockdev, luks, lvm, md, tools, zfs};
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
    zfs_members: BTreeSet<String>,
    /// Why OpenZFS could not be loaded or asked, when it could not.
    zfs_error: Option<String>,
    tools_error: Option<String>,
}

/// Serialises every change to the stacks (the boot scan, unlock calls).
static PROGRESS: Mutex<Progress> = Mutex::new(Progress {
    md_members: BTreeSet::new(),
    pvs: BTreeSet::new(),
    zfs_members: BTreeSet::new(),
    zfs_error: None,
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
    // No module is ever loaded after the scans that may need OpenZFS: the
    // boot scan, or the last unlock that leaves no container locked.
    let locked = disks
        .iter()
        .flat_map(|d| d.buckets.iter())
        .any(|b| b.locked == Some(true) && b.fstype != FsType::Zfs);
    if !locked {
        zfs::close_unless_loaded();
    }
    disks
}

fn is_stack(t: FsType) -> bool {
    matches!(
        t,
        FsType::MdMember | FsType::LvmPv | FsType::Luks | FsType::Bitlocker | FsType::ZfsMember
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
        let new_zfs = new_of(FsType::ZfsMember, &p.zfs_members);
        if new_md.is_empty() && new_pv.is_empty() && new_zfs.is_empty() {
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
        if !new_zfs.is_empty() {
            log::info!("ZFS pool members {}: importing", new_zfs.join(", "));
            if let Err(e) = zfs::import_all(tools) {
                log::warn!("zfs: {e}");
                p.zfs_error = Some(e);
            }
            p.zfs_members.extend(new_zfs);
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
    zfs_buckets(p, tools, &mut labels, &mut derived);
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

/// The buckets of the ZFS pools: datasets and snapshots by name, volumes
/// (and their partitions) probed as devices, all listed under every disk
/// that holds a member of their pool.
fn zfs_buckets(
    p: &Progress,
    tools: &tools::Tools,
    labels: &mut BTreeMap<String, (BucketKind, String)>,
    derived: &mut Vec<Derived>,
) {
    if p.zfs_members.is_empty() {
        return;
    }
    if let Some(e) = &p.zfs_error {
        // The members say why nothing of theirs is listed.
        let on: BTreeSet<String> = p
            .zfs_members
            .iter()
            .flat_map(|k| blockdev::base_disks(k))
            .collect();
        let b = disks::broken_bucket(BucketKind::Zfs, "?/?".into(), e.clone());
        derived.push(Derived {
            bucket: Arc::new(b),
            disks: on,
        });
        return;
    }
    for pool in zfs::pools() {
        let on: BTreeSet<String> = pool
            .members
            .iter()
            .flat_map(|k| blockdev::base_disks(k))
            .collect();
        let mut add = |b: Bucket| {
            derived.push(Derived {
                bucket: Arc::new(b),
                disks: on.clone(),
            })
        };
        let root = format!("{0}/{0}", pool.name);
        if let Some(e) = pool.error {
            add(disks::broken_bucket(BucketKind::Zfs, root, e));
            continue;
        }
        let sets = match zfs::datasets(tools, &pool.name) {
            Ok(s) => s,
            Err(e) => {
                add(disks::broken_bucket(BucketKind::Zfs, root, e));
                continue;
            }
        };
        for d in sets {
            if d.kind != zfs::report::Kind::Volume {
                add(disks::dataset_bucket(
                    d.bucket,
                    d.name,
                    d.size,
                    d.encryption,
                    d.locked,
                ));
                continue;
            }
            let Some(k) = d.kname else {
                let why = if d.locked {
                    format!(
                        "ZFS volume {} is encrypted and its key is not loaded",
                        d.name
                    )
                } else {
                    format!("ZFS volume {}: no device appeared for it", d.name)
                };
                add(disks::broken_bucket(BucketKind::Zfs, d.bucket, why));
                continue;
            };
            // Like a disk: a partitioned volume is its partitions.
            let parts = zfs::partitions(&k);
            if parts.is_empty() {
                add(derived_bucket(
                    BucketKind::Zfs,
                    d.bucket.clone(),
                    Some(&k),
                    None,
                ));
                labels.insert(k.clone(), (BucketKind::Zfs, d.bucket.clone()));
            }
            for (n, pk) in parts {
                let name = format!("{}-part{n}", d.bucket);
                add(derived_bucket(
                    BucketKind::Zfs,
                    name.clone(),
                    Some(&pk),
                    None,
                ));
                labels.insert(pk, (BucketKind::Zfs, name));
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
        opened_any |= unlock_zfs(state, &p, passphrases, &mut tried, &mut results);
        if !opened_any {
            break;
        }
        state.replace_disks(scan_locked(&mut p));
    }
    UnlockAnswer {
        containers: results,
    }
}

/// Tries `passphrases` on every ZFS encryption root whose key is not loaded
/// (each once); true when one was opened.
fn unlock_zfs(
    state: &State,
    p: &Progress,
    passphrases: &[Vec<u8>],
    tried: &mut BTreeSet<std::path::PathBuf>,
    results: &mut Vec<UnlockResult>,
) -> bool {
    if p.zfs_members.is_empty() {
        return false;
    }
    let Ok(t) = tools::get() else { return false };
    let mut opened = false;
    for r in zfs::locked_roots(t) {
        if !tried.insert(std::path::PathBuf::from(format!("zfs:{}", r.root))) {
            continue;
        }
        let bucket = zfs::bucket_name(&r.pool, &r.root);
        // Listed under every disk of its pool: one result per disk, so the
        // container is named as each disk lists it.
        let on: Vec<(String, Option<String>)> = state
            .disks()
            .iter()
            .filter_map(|d| {
                d.buckets
                    .iter()
                    .find(|b| b.kind == BucketKind::Zfs && b.name == bucket)
                    .map(|b| (d.name.clone(), b.encryption.clone()))
            })
            .collect();
        let attempt = zfs::unlock(t, &r.root, passphrases);
        opened |= matches!(attempt, luks::Attempt::Opened);
        for (disk, encryption) in on {
            let container = format!("{disk}/zfs/{bucket}");
            let mut res = UnlockResult {
                container: container.clone(),
                encryption: encryption.unwrap_or_else(|| "ZFS".into()),
                outcome: UnlockOutcome::Opened,
                bucket: Some(format!("zfs/{bucket}")),
                message: None,
            };
            match &attempt {
                luks::Attempt::Opened => {}
                luks::Attempt::WrongKey => {
                    res.outcome = UnlockOutcome::WrongKey;
                    res.bucket = None;
                    res.message = Some(format!(
                        "none of the {} passphrase(s) opens ZFS encryption root {} ({container})",
                        passphrases.len(),
                        r.root,
                    ));
                }
                luks::Attempt::Failed(m) => {
                    res.outcome = UnlockOutcome::Failed;
                    res.bucket = None;
                    res.message = Some(format!("{container}: {m}"));
                }
            }
            results.push(res);
        }
    }
    opened
}

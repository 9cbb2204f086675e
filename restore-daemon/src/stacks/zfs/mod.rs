//! ZFS: pools imported read-only with OpenZFS's own `zpool`, every dataset
//! and snapshot a bucket `zfs/<pool>/<name>`, volumes (zvols) probed like
//! disks. Imports: this folder's modules and the stacks' `blockdev`, `luks`
//! (its unlock outcome) and `tools`; nothing else of the daemon.
//!
//! - **Import**: `zpool import -d /dev` lists what the disks hold; each pool
//!   is imported by its GUID with `readonly=on`, `cachefile=none` and `-N`
//!   (nothing mounted). `-f` is given because a disk copied from a running
//!   machine (every backup) is "in use by another system": with
//!   `readonly=on` the import writes nothing — no label, no hostid, no MMP
//!   update — and the disks are read-only to QEMU besides. A pool whose
//!   name is taken (two machines' `rpool`) is imported as `<name>-<guid>`
//!   in memory only. A pool that cannot be imported (a missing member
//!   without redundancy) is listed with zpool's reason.
//! - **Buckets** ([`bucket_name`]): a dataset's path inside its pool with
//!   `/` as `-`, the root dataset named as the pool; snapshots as
//!   `<name>@<snap>` (ZFS's `.zfs/snapshot` would need the kernel to run a
//!   mount helper, which the guest has not). They are mounted by name with
//!   mount(2), whatever their `mountpoint` (legacy and none too).
//! - **Volumes**: `/dev/zdN` found by their name (`BLKZNAME`), probed as
//!   disks; their partitions are `<name>-partN` (as udev names them).
//! - **Encryption**: a dataset whose key is not loaded is listed locked;
//!   [`unlock`] loads passphrase keys (`zfs load-key`, the key on stdin).

mod kmod;
pub mod report;
mod zvol;

pub use kmod::close_unless_loaded;

use super::luks::Attempt;
use super::tools::Tools;
use report::{Importable, Kind, Row};
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limit for one zpool or zfs call (an import of a large pool reads its
/// metadata under TCG).
const LIMIT: Duration = Duration::from_secs(300);

/// How long volumes may take to appear after an import.
const ZVOL_WAIT: Duration = Duration::from_secs(10);

/// At most this many datasets and snapshots of one pool become buckets.
pub const MAX_DATASETS: usize = 10_000;

/// A pool the scan found.
#[derive(Debug, Clone)]
pub struct Pool {
    /// The name it is imported under (its own, or `<name>-<guid>`).
    pub name: String,
    /// Its GUID.
    pub id: String,
    /// The kernel names of its members that are present.
    pub members: Vec<String>,
    /// Why it is not imported, when it is not.
    pub error: Option<String>,
}

/// A dataset of an imported pool as a bucket.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The bucket name inside `zfs/` (`<pool>/<name>`).
    pub bucket: String,
    /// The full ZFS name (`pool/a/b@snap`), mounted by name.
    pub name: String,
    /// Filesystem, volume or snapshot.
    pub kind: Kind,
    /// Bytes it references.
    pub size: u64,
    /// `ZFS aes-256-gcm` for an encrypted dataset.
    pub encryption: Option<String>,
    /// Whether its key is not loaded.
    pub locked: bool,
    /// For a volume: the kernel name of its device (`zd0`), when it appeared.
    pub kname: Option<String>,
}

/// Every pool seen, by GUID (an imported pool no longer shows in `zpool
/// import`'s listing, so this is the record of what was done).
static POOLS: Mutex<Vec<Pool>> = Mutex::new(Vec::new());

fn pools_lock() -> std::sync::MutexGuard<'static, Vec<Pool>> {
    POOLS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The pools found so far.
pub fn pools() -> Vec<Pool> {
    pools_lock().clone()
}

/// Runs zpool with the stacks' time limit (its environment: [`Tools::run`]).
fn zpool(tools: &Tools, args: &[&str]) -> Result<super::tools::Output, String> {
    tools.run("zpool", args, None, LIMIT)
}

/// Loads OpenZFS (first call) and imports every pool the devices hold that
/// is not imported yet. Errors are kept per pool, and a pool that could not
/// be imported is tried again on the next call (a member may have appeared
/// since, e.g. inside a LUKS container opened meanwhile).
pub fn import_all(tools: &Tools) -> Result<(), String> {
    kmod::load(tools)?;
    let started = Instant::now();
    let out = zpool(tools, &["import", "-d", "/dev"])?;
    // Exit 1 with "no pools available to import" is the normal empty case.
    let text = String::from_utf8_lossy(&out.stdout);
    let found = report::parse_import_listing(&text);
    let mut pools = pools_lock();
    for p in found {
        // Listed again: not imported (an imported pool is not listed).
        pools.retain(|q| q.id != p.id);
        let members: Vec<String> = p
            .devices
            .iter()
            .map(|d| d.trim_start_matches("/dev/").to_owned())
            .filter(|d| {
                super::blockdev::is_safe_name(d) && super::blockdev::attr(d, "dev").is_some()
            })
            .collect();
        let taken = pools.iter().any(|q| q.name == p.name);
        let name = if taken {
            format!("{}-{}", p.name, p.id)
        } else {
            p.name.clone()
        };
        let error = import_one(tools, &p, &name);
        pools.push(Pool {
            name,
            id: p.id.clone(),
            members,
            error,
        });
    }
    log::info!(
        "zfs: {} pool(s) known after {} ms",
        pools.len(),
        started.elapsed().as_millis()
    );
    log_memory("after import");
    Ok(())
}

/// Imports one pool read-only under `name`; the reason when it cannot.
fn import_one(tools: &Tools, p: &Importable, name: &str) -> Option<String> {
    if !p.importable() {
        return Some(format!(
            "ZFS pool {} cannot be imported (state {}): {}",
            p.name,
            p.state,
            if p.status.is_empty() {
                "zpool gives no reason"
            } else {
                &p.status
            }
        ));
    }
    let started = Instant::now();
    let mut args = vec![
        "import",
        "-d",
        "/dev",
        "-o",
        "readonly=on",
        "-o",
        "cachefile=none",
        "-N",
        "-f",
        "-m",
        &p.id,
    ];
    if name != p.name {
        args.push(name);
    }
    match zpool(tools, &args) {
        Ok(out) if out.ok() => {
            log::info!(
                "zfs: imported pool {name} ({}, {}) read-only in {} ms",
                p.id,
                p.state,
                started.elapsed().as_millis()
            );
            None
        }
        // Killed by a signal: in this VM that is the kernel's OOM killer.
        Ok(out) if out.code.is_none() || out.stderr.contains("out of memory") => {
            Some(out_of_memory(&p.name))
        }
        Ok(out) => Some(format!(
            "ZFS pool {} (state {}) failed to import read-only: {}",
            p.name,
            p.state,
            out.stderr_tail()
        )),
        Err(e) => Some(format!("ZFS pool {}: {e}", p.name)),
    }
}

/// The error of a pool whose import did not fit in the VM's RAM.
fn out_of_memory(pool: &str) -> String {
    format!(
        "ZFS pool {pool}: the VM's {} MiB of RAM are not enough to import it: stop this VM and \
         run again with a larger --memory (e.g. --memory 1024)",
        kmod::mem_total() >> 20
    )
}

/// Logs the guest's free memory and the ARC's size (after an import).
fn log_memory(what: &str) {
    let mib = |field: &str| kmod::meminfo_kib(field).unwrap_or(0) >> 10;
    let arc = std::fs::read_to_string("/proc/spl/kstat/zfs/arcstats")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"size")).then(|| f.get(2).and_then(|v| v.parse::<u64>().ok()))?
        })
        .unwrap_or(0)
        >> 20;
    log::info!(
        "zfs: {what}: RAM {} MiB, available {} MiB, ARC {arc} MiB",
        mib("MemTotal:"),
        mib("MemAvailable:")
    );
}

/// The bucket name of dataset `full` of pool `pool`: `<pool>/<path with /
/// as ->`, the root dataset as `<pool>/<pool>`, a snapshot with `@<snap>`.
pub fn bucket_name(pool: &str, full: &str) -> String {
    let (ds, snap) = match full.split_once('@') {
        Some((d, s)) => (d, Some(s)),
        None => (full, None),
    };
    let rel = match ds.strip_prefix(pool) {
        Some("") | None => pool.to_owned(),
        Some(r) => r.trim_start_matches('/').replace('/', "-"),
    };
    match snap {
        Some(s) => format!("{pool}/{rel}@{s}"),
        None => format!("{pool}/{rel}"),
    }
}

/// `zfs list` of every dataset of `types` (`filesystem,volume`) in pool `pool`.
fn list(tools: &Tools, pool: &str, types: &str) -> Result<Vec<Row>, String> {
    let args = [
        "list",
        "-H",
        "-p",
        "-r",
        "-t",
        types,
        "-o",
        report::LIST_COLUMNS,
        pool,
    ];
    let out = tools.run("zfs", &args, None, LIMIT)?;
    if !out.ok() {
        return Err(format!(
            "zfs list of pool {pool} failed: {}",
            out.stderr_tail()
        ));
    }
    Ok(report::parse_list(&String::from_utf8_lossy(&out.stdout)))
}

/// The datasets, snapshots and volumes of the imported pool `pool`.
pub fn datasets(tools: &Tools, pool: &str) -> Result<Vec<Dataset>, String> {
    let rows = list(tools, pool, "filesystem,volume,snapshot")?;
    if rows.len() > MAX_DATASETS {
        log::warn!(
            "zfs: pool {pool} has {} datasets and snapshots; the first {MAX_DATASETS} are listed",
            rows.len()
        );
    }
    let volumes: Vec<String> = rows
        .iter()
        .filter(|r| r.kind == Kind::Volume)
        .map(|r| r.name.clone())
        .collect();
    let readable: Vec<String> = rows
        .iter()
        .filter(|r| r.kind == Kind::Volume && !r.locked)
        .map(|r| r.name.clone())
        .collect();
    let zvols = zvol::wait_for(&readable, ZVOL_WAIT);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for r in rows.into_iter().take(MAX_DATASETS) {
        // Snapshots of volumes have no device unless snapdev=visible.
        let of_volume = |v: &String| {
            r.name
                .strip_prefix(v.as_str())
                .is_some_and(|rest| rest.starts_with('@'))
        };
        if r.kind == Kind::Snapshot && volumes.iter().any(of_volume) {
            continue;
        }
        let mut bucket = bucket_name(pool, &r.name);
        // `a-b` and `a/b` give one name: the later one is told apart.
        let mut n = 2;
        while !seen.insert(bucket.clone()) {
            bucket = format!("{}~{n}", bucket_name(pool, &r.name));
            n += 1;
        }
        out.push(dataset_of(r, bucket, &zvols));
    }
    Ok(out)
}

fn dataset_of(
    r: Row,
    bucket: String,
    zvols: &std::collections::BTreeMap<String, String>,
) -> Dataset {
    Dataset {
        kname: zvols.get(&r.name).cloned(),
        bucket,
        kind: r.kind,
        size: r.referenced,
        encryption: r.encryption.map(|e| format!("ZFS {e}")),
        locked: r.locked,
        name: r.name,
    }
}

/// The partitions of a volume's device: `(N, kname)`.
pub fn partitions(kname: &str) -> Vec<(u64, String)> {
    zvol::partitions(kname)
}

/// An encryption root whose key is not loaded.
#[derive(Debug, Clone)]
pub struct LockedRoot {
    /// The pool.
    pub pool: String,
    /// The encryption root's full name.
    pub root: String,
}

/// The encryption roots of the imported pools whose keys are not loaded.
pub fn locked_roots(tools: &Tools) -> Vec<LockedRoot> {
    let mut out = Vec::new();
    for p in pools().into_iter().filter(|p| p.error.is_none()) {
        let Ok(rows) = list(tools, &p.name, "filesystem,volume") else {
            continue;
        };
        for r in rows {
            if r.locked && r.encryption_root.as_deref() == Some(r.name.as_str()) {
                out.push(LockedRoot {
                    pool: p.name.clone(),
                    root: r.name,
                });
            }
        }
    }
    out
}

/// Tries each passphrase on the encryption root `root` (`zfs load-key`, the
/// key on stdin, never on a command line).
pub fn unlock(tools: &Tools, root: &str, passphrases: &[Vec<u8>]) -> Attempt {
    for p in passphrases {
        let mut key = p.clone();
        key.push(b'\n');
        match tools.run(
            "zfs",
            &["load-key", "-L", "prompt", root],
            Some(&key),
            LIMIT,
        ) {
            Ok(out) if out.ok() => {
                log::info!("zfs: key of {root} loaded");
                return Attempt::Opened;
            }
            Ok(out) if out.stderr.contains("Incorrect key") => continue,
            Ok(out) if out.stderr.contains("Key already loaded") => return Attempt::Opened,
            Ok(out) => {
                return Attempt::Failed(format!("zfs load-key failed: {}", out.stderr_tail()))
            }
            Err(e) => return Attempt::Failed(e),
        }
    }
    Attempt::WrongKey
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        assert_eq!(bucket_name("tank", "tank"), "tank/tank");
        assert_eq!(bucket_name("tank", "tank/data"), "tank/data");
        assert_eq!(bucket_name("tank", "tank/data/nested"), "tank/data-nested");
        assert_eq!(bucket_name("tank", "tank/data@snap1"), "tank/data@snap1");
        assert_eq!(bucket_name("tank", "tank@first"), "tank/tank@first");
        assert_eq!(
            bucket_name("rpool", "rpool/data/subvol-100-disk-0"),
            "rpool/data-subvol-100-disk-0"
        );
    }
}

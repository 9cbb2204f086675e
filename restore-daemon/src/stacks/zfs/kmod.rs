//! Loading OpenZFS into the guest kernel, and closing module loading for
//! good.
//!
//! OpenZFS is CDDL: it is never linked into `vmlinux` but built as two
//! modules (`spl.ko`, `zfs.ko`) against the guest kernel's own tree and kept
//! on the tools disk (`lib/modules/`). They are loaded with `finit_module`
//! only when a disk carries a ZFS signature, with the ARC capped for the
//! VM's RAM. After that — or as soon as the boot scan knows no ZFS is needed
//! — `kernel.modules_disabled` is set, so nothing else can ever be loaded
//! into this kernel (docs/KERNEL.md).

use super::super::tools::Tools;
use std::ffi::CString;
use std::sync::Mutex;

/// What happened to module loading so far.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Nothing loaded, loading still possible.
    Open,
    /// OpenZFS is loaded (loading is closed since).
    Loaded,
    /// Loading failed with this message (loading is closed since).
    Failed(String),
    /// Loading was closed without OpenZFS.
    Closed,
}

static PHASE: Mutex<Phase> = Mutex::new(Phase::Open);

/// The ARC limit for a guest with `mem_total` bytes of RAM: an eighth of it,
/// at least 32 MiB and at most 1 GiB. The ARC is the one cache ZFS keeps
/// apart from the page cache; uncapped it would take half the VM's RAM.
pub fn arc_max_for(mem_total: u64) -> u64 {
    (mem_total / 8).clamp(32 << 20, 1 << 30)
}

/// A field of /proc/meminfo in KiB (`MemTotal:`, `MemAvailable:`).
pub fn meminfo_kib(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
}

/// The guest's RAM in bytes (`MemTotal`), 256 MiB when unreadable.
pub fn mem_total() -> u64 {
    meminfo_kib("MemTotal:").map_or(256 << 20, |kb| kb * 1024)
}

/// The module parameters of `zfs.ko` for a guest with `mem_total` bytes:
/// the ARC capped; no import from a cache file, ever (pools are imported by
/// the daemon, read-only, from the devices it names).
pub fn zfs_params(mem_total: u64) -> String {
    let max = arc_max_for(mem_total);
    format!(
        "zfs_arc_max={max} zfs_arc_min={} zfs_autoimport_disable=1",
        (16u64 << 20).min(max / 2)
    )
}

/// Loads `spl.ko` and `zfs.ko` from the tools disk, once; later calls give
/// the first call's result. Closes module loading afterwards either way.
pub fn load(tools: &Tools) -> Result<(), String> {
    let mut phase = PHASE.lock().unwrap_or_else(|p| p.into_inner());
    match &*phase {
        Phase::Loaded => return Ok(()),
        Phase::Failed(e) => return Err(e.clone()),
        Phase::Closed => {
            return Err("OpenZFS was not loaded at boot and module loading is closed".into())
        }
        Phase::Open => {}
    }
    if std::process::id() != 1 {
        return Err("OpenZFS is loaded only in the restore VM, not by `restore-daemon dev`".into());
    }
    let started = std::time::Instant::now();
    let mem = mem_total();
    let result =
        insmod(tools, "spl.ko", "").and_then(|()| insmod(tools, "zfs.ko", &zfs_params(mem)));
    *phase = match &result {
        Ok(()) => {
            log::info!(
                "zfs: OpenZFS loaded in {} ms (ARC at most {} MiB of {} MiB)",
                started.elapsed().as_millis(),
                arc_max_for(mem) >> 20,
                mem >> 20
            );
            Phase::Loaded
        }
        Err(e) => {
            log::warn!("zfs: {e}");
            Phase::Failed(e.clone())
        }
    };
    close_loading();
    result
}

/// Closes module loading if nothing has been loaded yet (the scan found no
/// ZFS, or no longer can).
pub fn close_unless_loaded() {
    let mut phase = PHASE.lock().unwrap_or_else(|p| p.into_inner());
    if *phase == Phase::Open {
        *phase = Phase::Closed;
        close_loading();
    }
}

/// `kernel.modules_disabled = 1`: one-way, until the VM ends. Only as PID 1
/// of the restore VM: `restore-daemon dev` runs on a host, whose kernel is
/// not ours to close.
fn close_loading() {
    if std::process::id() != 1 {
        return;
    }
    if let Err(e) = std::fs::write("/proc/sys/kernel/modules_disabled", "1") {
        log::warn!("cannot set kernel.modules_disabled: {e}");
    }
}

fn insmod(tools: &Tools, file: &str, params: &str) -> Result<(), String> {
    let path = tools.module_path(file);
    let f = std::fs::File::open(&path).map_err(|e| {
        format!(
            "cannot open {} on the tools disk ({e}): the tools image has no OpenZFS; \
             rebuild it with `make build`",
            path.display()
        )
    })?;
    let params = CString::new(params).map_err(|e| format!("bad module parameters: {e}"))?;
    match nix::kmod::finit_module(&f, &params, nix::kmod::ModuleInitFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(nix::errno::Errno::ENOMEM) => Err(format!(
            "cannot load {file}: the VM's {} MiB of RAM are not enough for OpenZFS: stop this \
             VM and run again with a larger --memory",
            mem_total() >> 20
        )),
        Err(e) => Err(format!(
            "cannot load {file} into the guest kernel: {} (the module does not match this \
             kernel: rebuild with `make build`)",
            e.desc()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arc_is_an_eighth_within_bounds() {
        assert_eq!(arc_max_for(256 << 20), 32 << 20);
        assert_eq!(arc_max_for(1 << 30), 128 << 20);
        assert_eq!(arc_max_for(64 << 30), 1 << 30);
        assert_eq!(arc_max_for(0), 32 << 20);
    }

    #[test]
    fn params_cap_the_arc_and_never_autoimport() {
        let p = zfs_params(512 << 20);
        assert!(p.contains("zfs_arc_max=67108864"), "{p}");
        assert!(p.contains("zfs_arc_min=16777216"), "{p}");
        assert!(p.contains("zfs_autoimport_disable=1"), "{p}");
    }
}

//! Kernel modules in the guest: the boot group at start, a filesystem's
//! group on its first mount.
//!
//! The initramfs builder writes dependency-ordered load lists:
//! `/etc/modules.d/boot.load` (virtio, vsock) and `/etc/modules.d/<fstype>.load`.
//! Loading only what a boot needs keeps ~40 modules (1.3 s under TCG) off
//! the path to the first answer; the filesystems the scan finds are loaded
//! in the background right after, and a mount waits for its own group.
//! Without the group lists (an older initramfs) everything in
//! `/etc/modules.load` loads at start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

/// Per-group load lists.
pub const GROUPS_DIR: &str = "/etc/modules.d";
/// The full list (fallback).
pub const ALL_LIST: &str = "/etc/modules.load";

/// Set in VM mode only: dev mode on a host never loads kernel modules.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Allows module loading (VM mode, as PID 1).
pub fn enable() {
    ENABLED.store(true, Ordering::SeqCst);
}

/// One lock per group, holding whether it was loaded (or attempted). Per
/// group, so that mounting ext4 never waits behind a prefetch of btrfs;
/// modules two groups share are safe to load concurrently (the kernel makes
/// the second loader wait and answers EEXIST).
static GROUPS: LazyLock<Mutex<HashMap<String, Arc<Mutex<bool>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Loads the modules listed in `list` (one path per line, dependencies
/// first) with `finit_module`; failures are logged and skipped, so a
/// missing driver does not stop the others. Returns (loaded, failed).
pub fn load_list(list: &Path) -> (usize, usize) {
    let text = match std::fs::read_to_string(list) {
        Ok(t) => t,
        Err(e) => {
            log::warn!("no module list {}: {e}", list.display());
            return (0, 0);
        }
    };
    let (mut loaded, mut failed) = (0, 0);
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let file = match std::fs::File::open(line) {
            Ok(f) => f,
            Err(e) => {
                failed += 1;
                log::warn!("module {line}: {e}");
                continue;
            }
        };
        match nix::kmod::finit_module(&file, c"", nix::kmod::ModuleInitFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => loaded += 1,
            Err(e) => {
                failed += 1;
                log::warn!("module {line}: {e}");
            }
        }
    }
    (loaded, failed)
}

fn group_list(group: &str) -> PathBuf {
    Path::new(GROUPS_DIR).join(format!("{group}.load"))
}

/// Loads a group once (later calls return at once; concurrent callers wait).
pub fn ensure_group(group: &str) {
    if !ENABLED.load(Ordering::SeqCst) {
        return;
    }
    let cell = match GROUPS.lock() {
        Ok(mut groups) => groups.entry(group.to_owned()).or_default().clone(),
        Err(_) => return,
    };
    let Ok(mut attempted) = cell.lock() else {
        return;
    };
    if *attempted {
        return;
    }
    *attempted = true;
    let list = group_list(group);
    if !list.exists() {
        return; // dev mode, or a type without a group: nothing to load
    }
    let started = std::time::Instant::now();
    let (ok, failed) = load_list(&list);
    log::info!(
        "loaded module group {group}: {ok} modules ({failed} failed) in {} ms",
        started.elapsed().as_millis()
    );
}

/// Loads what the boot needs: the `boot` group, or everything when the
/// initramfs has no groups.
pub fn load_boot_modules() {
    enable();
    let started = std::time::Instant::now();
    let (ok, failed) = if group_list("boot").exists() {
        ensure_group("boot");
        return;
    } else {
        load_list(Path::new(ALL_LIST))
    };
    log::info!(
        "loaded {ok} kernel modules ({failed} failed) in {} ms",
        started.elapsed().as_millis()
    );
}

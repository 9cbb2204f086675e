//! Duties of PID 1 in the restore VM: pseudo filesystems, kernel modules,
//! reaping orphans, and powering off instead of hanging on a fatal error.

use nix::mount::{mount, MsFlags};
use std::path::Path;

/// Mounts /proc, /sys, /dev (devtmpfs) and a tmpfs on /run.
pub fn mount_pseudo_filesystems() {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mounts: [(&str, &str, MsFlags, Option<&str>); 4] = [
        ("proc", "/proc", nodev, None),
        ("sysfs", "/sys", nodev, None),
        (
            "devtmpfs",
            "/dev",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("mode=0755"),
        ),
        ("tmpfs", "/run", nodev, Some("mode=0755")),
    ];
    for (fs, target, flags, data) in mounts {
        let _ = std::fs::create_dir_all(target);
        if let Err(e) = mount(Some(fs), target, Some(fs), flags, data) {
            if e != nix::errno::Errno::EBUSY {
                eprintln!("restore-daemon: mount {fs} on {target}: {e}");
            }
        }
    }
    let _ = std::fs::create_dir_all("/mnt");
}

/// Loads the modules listed (one path per line, dependencies first) with
/// `finit_module`. Failures are logged and skipped: a missing filesystem
/// driver must not stop the others from working.
pub fn load_modules(list: &Path) {
    let text = match std::fs::read_to_string(list) {
        Ok(t) => t,
        Err(e) => {
            log::warn!("no module list {}: {e}", list.display());
            return;
        }
    };
    let started = std::time::Instant::now();
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
    log::info!(
        "loaded {loaded} kernel modules ({failed} failed) in {} ms",
        started.elapsed().as_millis()
    );
}

/// Reaps exited children forever (PID 1 inherits every orphan).
pub async fn reap_children() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sig = match signal(SignalKind::child()) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("cannot watch SIGCHLD: {e}");
            return;
        }
    };
    loop {
        sig.recv().await;
        while let Ok(status) =
            nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
        {
            if status == nix::sys::wait::WaitStatus::StillAlive {
                break;
            }
        }
    }
}

/// Syncs and powers the VM off; the host sees QEMU exit.
pub fn power_off(reason: &str) -> ! {
    log::info!("powering off: {reason}");
    eprintln!("restore-daemon: powering off: {reason}");
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Only reached when reboot(2) is not permitted.
    std::process::exit(1)
}

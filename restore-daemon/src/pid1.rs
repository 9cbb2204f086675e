//! Duties of PID 1 in the restore VM: pseudo filesystems, reaping orphans, and powering off instead of hanging on a fatal error.

use nix::mount::{mount, MsFlags};

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

/// Seconds since the guest kernel started its clock (CLOCK_BOOTTIME), for
/// boot-time measurements; 0 if the clock cannot be read.
pub fn uptime_secs() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
        .unwrap_or(0.0)
}

/// Syncs and ends the VM; the host sees QEMU exit.
///
/// The guest kernel has no ACPI (nothing to power off through), so it
/// reboots: QEMU runs with `-no-reboot` and exits instead.
pub fn power_off(reason: &str) -> ! {
    log::info!("powering off: {reason}");
    eprintln!("restore-daemon: powering off: {reason}");
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    // Only reached when reboot(2) is not permitted.
    std::process::exit(1)
}

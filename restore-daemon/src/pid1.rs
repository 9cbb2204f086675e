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

/// Syncs and powers the VM off; the host sees QEMU exit.
pub fn power_off(reason: &str) -> ! {
    log::info!("powering off: {reason}");
    eprintln!("restore-daemon: powering off: {reason}");
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Only reached when reboot(2) is not permitted.
    std::process::exit(1)
}

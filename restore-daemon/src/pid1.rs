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

/// Children the daemon waits for itself (the storage tools): the reaper
/// leaves them alone, or their owner would lose the exit status. Held while
/// such a child is spawned and registered, so the reaper cannot reap it in
/// between.
static OWNED_CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Spawns `cmd` as a child its caller waits for; [`release_child`] after
/// the wait.
pub fn spawn_owned(cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    let mut owned = OWNED_CHILDREN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let child = cmd.spawn()?;
    owned.push(child.id());
    Ok(child)
}

/// Ends [`spawn_owned`]'s protection of `pid` (once it has been waited for).
pub fn release_child(pid: u32) {
    let mut owned = OWNED_CHILDREN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    owned.retain(|&p| p != pid);
}

/// The pid of an exited child, without reaping it (`waitid` with `WNOWAIT`).
fn exited_child() -> Option<libc::pid_t> {
    // SAFETY: siginfo_t is plain data; waitid fills it or leaves it zeroed.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a siginfo_t; P_ALL ignores the id.
    let rc = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: si_pid is valid for SIGCHLD information, which waitid gives.
    let pid = unsafe { info.si_pid() };
    (rc == 0 && pid > 0).then_some(pid)
}

/// Reaps every exited child that is not an owned one; stops at the first
/// owned one (its owner reaps it, and the next SIGCHLD brings the reaper back).
fn reap_orphans() {
    loop {
        let owned = OWNED_CHILDREN
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(pid) = exited_child() else { return };
        if owned.contains(&(pid as u32)) {
            return;
        }
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
    }
}

/// Reaps exited children forever (PID 1 inherits every orphan), except the
/// ones spawned with [`spawn_owned`].
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
        reap_orphans();
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

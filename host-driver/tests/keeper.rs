//! `file-restore-keeper` with a real QEMU and the stand-in guest
//! (`fake_guest/init.c`), which never powers itself off and ignores the API's
//! stop, as a guest owned by a crafted filesystem would: the host stops an
//! unused VM after its idle limit, keeps a held one, and caps the console log
//! of a guest that prints without end.

use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;

use common::{fake_guest_source, guest_kernel, have, initramfs_with_init, processes_mentioning};
use file_restore::vm::keeper::{self, KeeperOptions, CAP_MARKER};
use file_restore::vm::launch::{start_vm, AccelPreference, ImageSpec, LaunchOptions};
use file_restore::vm::teardown::{is_alive, stop_vm};
use file_restore::vm::RunningVm;

/// Starts the stand-in guest in `mode` with the keeper's `limits`; `None`
/// (skip) without the prerequisites. Keep the TempDir alive.
async fn start(mode: &str, limits: KeeperOptions) -> Option<(tempfile::TempDir, RunningVm)> {
    for p in ["qemu-system-x86_64", "gcc", "cpio", "vhost-device-vsock"] {
        if !have(p) {
            eprintln!("skipping: {p} not found");
            return None;
        }
    }
    let kernel = guest_kernel()?;
    let dir = tempfile::tempdir().unwrap();
    let mode_file = dir.path().join("mode");
    std::fs::write(&mode_file, mode).unwrap();
    let initrd = initramfs_with_init(
        dir.path(),
        &fake_guest_source("init"),
        &[("mode", &mode_file)],
    );
    let disk = dir.path().join("disk.raw");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let image = ImageSpec {
        path: disk,
        format: "raw".into(),
        name: "disk0".into(),
    };
    let mut opts = LaunchOptions::new(&kernel, &initrd, vec![image], dir.path().join("run"));
    opts.accel = AccelPreference::Tcg;
    opts.keeper = Some(limits);
    let vm = start_vm(opts).await.expect("start_vm");
    Some((dir, vm))
}

/// Waits up to `limit` for QEMU to be gone; returns how long it took.
async fn gone_within(vm: &RunningVm, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if !is_alive(vm) {
            return Some(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

fn limits(idle_secs: u64, console_cap: u64) -> KeeperOptions {
    KeeperOptions {
        idle_limit: Duration::from_secs(idle_secs),
        console_cap,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unused_vm_is_stopped_by_the_host() {
    let Some((_dir, vm)) = start("", limits(3, 4 << 20)).await else {
        return;
    };
    let took = gone_within(&vm, Duration::from_secs(30))
        .await
        .expect("the keeper did not stop an unused VM within 30 s");
    eprintln!("stopped {took:?} after the start");
    assert!(
        took >= Duration::from_secs(2),
        "stopped too early: {took:?}"
    );
    // Everything of it is gone: sidecar, keeper, run directory.
    let run_dir: PathBuf = vm.run_dir.clone();
    let t = Instant::now();
    while run_dir.exists() && t.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!run_dir.exists(), "{} is left", run_dir.display());
    assert!(processes_mentioning(&run_dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_vm_is_kept_until_released() {
    let Some((_dir, vm)) = start("", limits(3, 4 << 20)).await else {
        return;
    };
    let held = keeper::hold(&vm.run_dir).unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(is_alive(&vm), "the keeper stopped a VM in use");
    drop(held);
    let took = gone_within(&vm, Duration::from_secs(20))
        .await
        .expect("not stopped after its release");
    eprintln!("stopped {took:?} after the release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_log_of_a_chatty_guest_stays_at_its_cap() {
    const CAP: u64 = 256 << 10;
    let Some((_dir, vm)) = start("chatty", limits(600, CAP)).await else {
        return;
    };
    let _held = keeper::hold(&vm.run_dir).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut largest = 0;
    for _ in 0..20 {
        let len = std::fs::metadata(&vm.console_log)
            .map(|m| m.len())
            .unwrap_or(0);
        largest = largest.max(len);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = std::fs::read(&vm.console_log).unwrap();
    eprintln!("largest console log seen: {largest} bytes (cap {CAP})");
    assert!(is_alive(&vm), "the chatty guest should still run");
    assert!(
        log.windows(CAP_MARKER.len()).any(|w| w == CAP_MARKER),
        "no cap marker in the log"
    );
    // The cap, plus what the guest prints within the keeper's one-second tick.
    assert!(
        largest < CAP + (8 << 20),
        "console log grew to {largest} bytes"
    );
    stop_vm(&vm, Duration::from_secs(4)).await.unwrap();
}

//! The success path of `start_vm` and `stop_vm` with a real QEMU, the project's
//! guest kernel and a stand-in daemon (`fake_guest/init.c`: static C, answers
//! status with the ticket from `/ticket`).
//! It checks what does not depend on the real restore daemon: the per-VM
//! ticket arrives in the guest, the vsock transport and readiness work, the
//! error mapping of a real 404/401, the VM-map round trip, and that
//! `stop_vm` (which here has to fall back to QMP `quit`, since the stand-in
//! ignores the API stop) leaves nothing behind.

use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;

use common::{guest_kernel, have, initramfs_with_init, processes_mentioning, KillOnDrop};
use file_restore::{
    is_alive, start_vm, stop_vm, DaemonClient, ImageSpec, LaunchOptions, RunningVm,
};

/// Kernel and tools, or `None` (the test skips).
fn prerequisites() -> Option<PathBuf> {
    for p in ["qemu-system-x86_64", "gcc", "cpio", "vhost-device-vsock"] {
        if !have(p) {
            eprintln!("skipping: {p} not found");
            return None;
        }
    }
    guest_kernel()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_guest_start_status_stop() {
    let Some(kernel) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let initrd = initramfs_with_init(dir.path(), include_str!("fake_guest/init.c"), &[]);
    let disk = dir.path().join("disk.raw");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let base = dir.path().join("run");
    let opts = LaunchOptions::new(
        &kernel,
        &initrd,
        vec![ImageSpec {
            path: disk,
            format: "raw".into(),
            name: "disk0".into(),
        }],
        &base,
    );

    let t = Instant::now();
    let vm = match start_vm(opts).await {
        Ok(vm) => vm,
        Err(e) => panic!("start_vm failed:\n{e}"),
    };
    eprintln!(
        "ready after {:?} under {} via {}",
        t.elapsed(),
        vm.accel,
        vm.addr
    );
    let _guard = KillOnDrop(vm.clone());
    assert!(is_alive(&vm));
    let console = std::fs::read_to_string(&vm.console_log).unwrap_or_default();
    assert!(console.contains("fake daemon listening"), "{console}");

    let client = vm.client();
    // The authenticated answer proves the ticket reached the guest's /ticket.
    assert_eq!(client.status(false).await.unwrap().uptime, Some(1));
    let t = Instant::now();
    client.status_liveness().await.unwrap();
    eprintln!("warm liveness round trip: {:?}", t.elapsed());

    let err = client.list(b"/").await.unwrap_err();
    assert_eq!(err.http_status(), Some(404), "{err}");
    assert_eq!(err.daemon_message(), Some("fake daemon: no such endpoint"));
    let wrong = DaemonClient::new(vm.addr.clone(), "f".repeat(32));
    let err = wrong.status(false).await.unwrap_err();
    assert!(err.to_string().contains("ticket"), "{err}");
    let err = wrong.list(b"/").await.unwrap_err();
    assert_eq!(err.http_status(), Some(401), "{err}");

    // A later invocation finds the VM through the map's JSON.
    let stored: RunningVm = serde_json::from_str(&serde_json::to_string(&vm).unwrap()).unwrap();
    assert!(is_alive(&stored));

    let t = Instant::now();
    stop_vm(&stored, Duration::from_secs(2)).await.unwrap();
    eprintln!("stop (API ignored, then QMP quit) took {:?}", t.elapsed());
    assert!(!is_alive(&vm));
    assert!(!vm.run_dir.exists(), "run dir left");
    let left = processes_mentioning(&base);
    assert!(left.is_empty(), "leftover processes: {left:?}");
}

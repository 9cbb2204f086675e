//! The success path of `start_vm` and `stop_vm` with a real QEMU, the project's
//! guest kernel and a stand-in daemon (`fake_guest/init.c`: static C, proves
//! it knows the ticket from `/ticket` and answers status with it), and what
//! a guest that cannot prove the ticket gets: a refusal. And that a guest
//! that accepts connections and never answers blocks no other invocation.
//! It checks what does not depend on the real restore daemon: the per-VM
//! ticket arrives in the guest, the vsock transport and readiness work, the
//! error mapping of a real 404, a client with another ticket refused at the
//! guest's proof, the VM-map round trip, and that
//! `stop_vm` (which here has to fall back to QMP `quit`, since the stand-in
//! ignores the API stop) leaves nothing behind.

use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;

use common::{
    fake_guest_source, guest_kernel, have, initramfs_with_init, processes_mentioning, KillOnDrop,
};
use file_restore::guest::client::DaemonClient;
use file_restore::vm::launch::{start_vm, ImageSpec, LaunchOptions};
use file_restore::vm::teardown::{is_alive, stop_vm};
use file_restore::vm::RunningVm;

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
    let initrd = initramfs_with_init(dir.path(), &fake_guest_source("init"), &[]);
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
    // A client with another ticket: the guest's proof does not match it, so
    // that client sends nothing more (its ticket never reaches this guest).
    let wrong = DaemonClient::new(vm.addr.clone(), "f".repeat(32));
    for err in [
        wrong.status(false).await.unwrap_err(),
        wrong.list(b"/").await.unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                file_restore::guest::client::ClientError::NoProof { .. }
            ),
            "{err}"
        );
    }

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

/// A fake guest in `mode` (see fake_guest/init.c) as the initramfs, and a
/// 1 MiB raw disk, in `dir`.
fn fake_guest_files(dir: &std::path::Path, mode: &str) -> (PathBuf, PathBuf) {
    let mode_file = dir.join("mode");
    std::fs::write(&mode_file, mode).unwrap();
    let initrd = initramfs_with_init(dir, &fake_guest_source("init"), &[("mode", &mode_file)]);
    // A swap signature: enough for the manager's "is it a disk" check.
    let mut bytes = vec![0u8; 1 << 20];
    bytes[4086..4096].copy_from_slice(b"SWAPSPACE2");
    let disk = dir.join("disk.raw");
    std::fs::write(&disk, bytes).unwrap();
    (initrd, disk)
}

/// A guest that answers with a proof made without the ticket (as another
/// VM on the CID would) is refused at once, with nothing left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_with_a_wrong_proof_is_refused() {
    let Some(kernel) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (initrd, disk) = fake_guest_files(dir.path(), "wrong-proof");
    let base = dir.path().join("run");
    let mut opts = LaunchOptions::new(
        &kernel,
        &initrd,
        vec![ImageSpec {
            path: disk,
            format: "raw".into(),
            name: "disk0".into(),
        }],
        &base,
    );
    opts.accel = file_restore::vm::launch::AccelPreference::Tcg;
    let t = Instant::now();
    let err = match start_vm(opts).await {
        Ok(vm) => {
            let _guard = KillOnDrop(vm);
            panic!("a guest without the ticket's proof was accepted");
        }
        Err(e) => e,
    };
    let msg = err.to_string();
    eprintln!("refused after {:?}: {msg}", t.elapsed());
    assert!(
        matches!(err, file_restore::vm::launch::LaunchError::Daemon { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("did not prove it knows the ticket") && msg.contains("does not match"),
        "{msg}"
    );
    let left = processes_mentioning(&base);
    assert!(left.is_empty(), "leftover processes: {left:?}");
}

/// The VM map lock is never held while a guest is talked to: while one
/// invocation is stuck starting a VM whose guest accepts connections and
/// never answers, `status` and `stop --all` (here with a second, dead VM
/// in the map) finish at once instead of waiting for the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_stop_all_do_not_wait_behind_a_stalled_guest() {
    use file_restore::manager::vm_map::LockedMap;
    use file_restore::manager::Manager;
    use serde_json::Value;
    let Some(kernel) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (initrd, disk) = fake_guest_files(dir.path(), "stall");
    let runtime = dir.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    // Another VM of this user, recorded but gone (its QEMU pid has exited).
    let gone = std::process::Command::new("true").spawn().unwrap().id();
    let dead = serde_json::json!({
        "vm": {"pid": gone, "sidecar_pid": null,
               "addr": {"kind": "hybrid_unix", "path": "/nonexistent/vm.vsock", "port": 1024},
               "ticket": "0123456789abcdef0123456789abcdef", "accel": "tcg",
               "run_dir": "/nonexistent/vm-gone", "console_log": "/nonexistent/console.log",
               "qmp_socket": "/nonexistent/qmp.sock", "started_at": 0},
        "source": {"Image": "/nonexistent/other.img"}, "images": [], "guest_config": null
    });
    {
        let mut map = LockedMap::<Value>::lock(&runtime, Duration::from_secs(5)).unwrap();
        map.insert("other", dead);
        map.save().unwrap();
    }
    let m = Manager {
        runtime_dir: runtime.clone(),
        kernel: Some(kernel),
        initramfs: Some(initrd),
        accel: file_restore::vm::launch::AccelPreference::Tcg,
        transport: file_restore::vm::launch::TransportPreference::Auto,
        boot_timeout: Some(Duration::from_secs(20)),
        memory_mib: None,
    };
    let starter = {
        let m = m.clone();
        let source = disk.to_string_lossy().into_owned();
        tokio::spawn(async move { m.ensure_vm(&source, &mut Vec::new()).await })
    };
    // Until the stalled guest listens (and the starter is stuck on it).
    let t = Instant::now();
    loop {
        let listening = std::fs::read_dir(runtime.join("vms"))
            .ok()
            .is_some_and(|d| {
                d.filter_map(Result::ok).any(|e| {
                    std::fs::read_to_string(e.path().join("console.log"))
                        .is_ok_and(|c| c.contains("fake daemon listening, mode stall"))
                })
            });
        if listening {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the stalled guest never booted"
        );
        if starter.is_finished() {
            panic!("the start ended early: {:?}", starter.await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let t = Instant::now();
    let mut notes = Vec::new();
    let reports = tokio::time::timeout(Duration::from_secs(10), m.status(&mut notes))
        .await
        .expect("status waited behind the stalled guest")
        .unwrap();
    eprintln!("status took {:?}: {notes:?}", t.elapsed());
    // (A timeout cannot fire while a blocking lock wait holds the thread.)
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "status took {:?}",
        t.elapsed()
    );
    assert!(reports.is_empty(), "{reports:?}");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("other") && n.contains("no longer answers")),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("is being started by pid")),
        "{notes:?}"
    );

    let t = Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(10), m.stop(None))
        .await
        .expect("stop --all waited behind the stalled guest")
        .unwrap();
    eprintln!("stop --all took {:?}: {stopped:?}", t.elapsed());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop --all took {:?}",
        t.elapsed()
    );
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    assert!(
        !starter.is_finished(),
        "the start ended before status and stop ran"
    );

    // The stuck start ends within its own limit and leaves nothing behind.
    let err = tokio::time::timeout(Duration::from_secs(90), starter)
        .await
        .expect("the start never ended")
        .unwrap()
        .unwrap_err();
    eprintln!("the stalled start ended: {err}");
    let left = processes_mentioning(&runtime);
    assert!(left.is_empty(), "leftover processes: {left:?}");
    let map = LockedMap::<Value>::lock(&runtime, Duration::from_secs(5)).unwrap();
    assert!(map.is_empty(), "{:?}", map.names());
}

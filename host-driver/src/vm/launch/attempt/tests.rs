//! Tests of one attempt: readiness wait, stop on a lost race, helper messages.

use super::*;

#[test]
fn cid_in_use_message() {
    assert!(is_cid_in_use(
        "qemu-system-x86_64: -device vhost-vsock-device,guest-cid=10: vhost-vsock: unable to set guest cid: Address already in use"
    ));
    assert!(!is_cid_in_use(
        "qemu-system-x86_64: failed to set MSR 0x10a"
    ));
}

/// The daemon is not connected to before QEMU answered on QMP (for
/// kernel vsock: before its CID is this VM's).
#[tokio::test]
async fn no_probe_before_qemu_answers() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path();
    let qmp_ready = Arc::new(AtomicBool::new(false));
    crate::qemu::qmp::tests::slow_qemu(
        &run_dir.join(QMP_SOCKET),
        Duration::from_millis(300),
        qmp_ready.clone(),
    );
    // The guest side: notes whether QMP had answered at the first connection.
    let vsock = run_dir.join(HYBRID_SOCKET);
    let listener = tokio::net::UnixListener::bind(&vsock).unwrap();
    let first = tokio::spawn({
        let qmp_ready = qmp_ready.clone();
        async move {
            let _conn = listener.accept().await.unwrap();
            qmp_ready.load(Ordering::SeqCst)
        }
    });
    let mut qemu = tokio::process::Command::new("sleep")
        .arg("30")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let plan = test_plan(run_dir, Accel::Tcg, Duration::from_secs(1), None);
    let addr = VsockAddr::HybridUnix {
        path: vsock,
        port: 1024,
    };
    let r = wait_ready(&plan, &addr, None, &mut qemu, None).await;
    assert!(matches!(r, Err(NotReady::Timeout(_))));
    assert!(
        tokio::time::timeout(Duration::from_secs(1), first)
            .await
            .expect("the daemon was never probed")
            .unwrap(),
        "the daemon was probed before QEMU answered on QMP"
    );
}

/// A plan whose programs do not exist: for tests of the readiness wait.
fn test_plan(
    run_dir: &Path,
    accel: Accel,
    ready_timeout: Duration,
    stop: Option<watch::Receiver<bool>>,
) -> LaunchPlan<'_> {
    LaunchPlan {
        helper: Path::new("/nonexistent/helper"),
        qemu_binary: Path::new("/nonexistent/qemu"),
        run_dir,
        accel,
        transport: TransportPlan::Kernel { cid: 4096 },
        kernel: Path::new("/nonexistent/vmlinux"),
        initramfs: Path::new("/nonexistent/initramfs.img"),
        tools: None,
        disks: &[],
        memory_mib: 256,
        cpus: 1,
        port: 1024,
        ticket: "0123456789abcdef0123456789abcdef",
        ready_timeout,
        timeouts: LaunchTimeouts::default(),
        stop,
    }
}

/// An attempt told to stop (another accelerator's VM won the race) ends
/// at once with `Superseded`, not at its readiness limit.
#[tokio::test]
async fn a_stopped_attempt_ends_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut qemu = tokio::process::Command::new("sleep")
        .arg("30")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (tx, rx) = watch::channel(false);
    let plan = test_plan(dir.path(), Accel::Kvm, Duration::from_secs(20), Some(rx));
    let addr = VsockAddr::HybridUnix {
        path: dir.path().join(HYBRID_SOCKET),
        port: 1024,
    };
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = tx.send(true);
    });
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        wait_ready(&plan, &addr, None, &mut qemu, None),
    )
    .await
    .expect("a stopped attempt kept waiting");
    assert!(matches!(r, Err(NotReady::Superseded)));
    let err = match attempt_error(&plan, NotReady::Superseded) {
        AttemptError::Failed(e) => e.to_string(),
        AttemptError::CidInUse => String::from("CidInUse"),
    };
    assert!(err.contains("answered first"), "{err}");
}

#[test]
fn fd_paths() {
    assert_eq!(inherited_fd(Path::new("/dev/fd/9")), Some(9));
    assert_eq!(inherited_fd(Path::new("/dev/fd/1")), None);
    assert_eq!(inherited_fd(Path::new("/dev/fd/x")), None);
    assert_eq!(inherited_fd(Path::new("/img/disk.raw")), None);
}

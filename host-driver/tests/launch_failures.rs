//! Failure paths of `start_vm` with a real QEMU and the project's guest kernel:
//! nothing may be left running, the run directory must be gone and the error
//! must quote the console.
//!
//! The guests are tiny initramfs images whose `/init` is a static C program
//! (built here with `gcc -static`, packed with the system `cpio`). Tests skip
//! themselves (with a message) when QEMU, gcc, cpio or a kernel is missing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::{fake_guest_source, guest_kernel, have, initramfs_with_init, processes_mentioning};
use file_restore::qemu::Accel;
use file_restore::vm::launch::{
    start_vm, AccelPreference, ImageSpec, LaunchError, LaunchOptions, TransportPreference,
};

/// Kernel and tools, or `None` (the test then skips).
fn prerequisites() -> Option<PathBuf> {
    for p in ["qemu-system-x86_64", "gcc", "cpio", "vhost-device-vsock"] {
        if !have(p) {
            eprintln!("skipping: {p} not found");
            return None;
        }
    }
    guest_kernel()
}

fn raw_disk(dir: &Path) -> ImageSpec {
    let path = dir.join("disk.raw");
    std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
    ImageSpec {
        path,
        format: "raw".into(),
        name: "disk0".into(),
    }
}

/// No process left, no run directory left, the console kept.
fn assert_clean(base: &Path) {
    let left = processes_mentioning(base);
    assert!(left.is_empty(), "leftover processes: {left:?}");
    let run_dirs: Vec<_> = std::fs::read_dir(base)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("vm-"))
        .map(|e| e.path())
        .collect();
    assert!(run_dirs.is_empty(), "run directories left: {run_dirs:?}");
}

#[tokio::test]
async fn missing_kernel_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("initramfs.img");
    std::fs::write(&initrd, b"").unwrap();
    let base = dir.path().join("run");
    let opts = LaunchOptions::new(
        dir.path().join("no-such-vmlinux"),
        &initrd,
        vec![raw_disk(dir.path())],
        &base,
    );
    let t = Instant::now();
    let err = start_vm(opts).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(matches!(err, LaunchError::Kernel { .. }), "{err}");
    assert!(err.to_string().contains("no-such-vmlinux"), "{err}");
    assert!(!base.exists(), "nothing is created for invalid input");
}

/// A file that passes for a kernel (a bzImage setup header signature); tests whose
/// start fails before QEMU boots anything use it.
fn fake_bzimage(dir: &Path) -> PathBuf {
    let path = dir.join("vmlinuz");
    let mut image = vec![0u8; 4096];
    image[0x202..0x206].copy_from_slice(b"HdrS");
    std::fs::write(&path, image).unwrap();
    path
}

/// A `--kernel` that is no kernel is refused before anything starts, naming the file.
#[tokio::test]
async fn a_file_that_is_no_kernel_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("initramfs.img");
    std::fs::write(&initrd, b"").unwrap();
    let base = dir.path().join("run");
    for (name, content) in [
        ("notes.txt", b"hello, not a kernel".to_vec()),
        ("plain.elf", b"\x7fELF\x02\x01\x01\0".to_vec()),
    ] {
        let kernel = dir.path().join(name);
        std::fs::write(&kernel, content).unwrap();
        let opts = LaunchOptions::new(&kernel, &initrd, vec![raw_disk(dir.path())], &base);
        let err = start_vm(opts).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LaunchError::Kernel { .. }), "{msg}");
        assert!(
            msg.contains(name) && msg.contains("not a bootable kernel"),
            "{msg}"
        );
    }
    assert!(!base.exists(), "nothing is created for invalid input");
}

#[tokio::test]
async fn missing_sidecar_is_named_with_install_hint() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = fake_bzimage(dir.path());
    let initrd = dir.path().join("initramfs.img");
    std::fs::write(&initrd, b"").unwrap();
    let mut opts = LaunchOptions::new(&kernel, &initrd, vec![raw_disk(dir.path())], dir.path());
    opts.transport = TransportPreference::VhostUser;
    opts.vhost_user_binary = "/nonexistent/vhost-device-vsock".into();
    let err = start_vm(opts).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LaunchError::MissingProgram { .. }), "{msg}");
    assert!(
        msg.contains("cargo install vhost-device-vsock --locked"),
        "{msg}"
    );
}

/// A sidecar that exits at once: a clear error quoting its log, nothing left.
#[tokio::test]
async fn dying_sidecar_is_reported_and_cleaned_up() {
    if !have("qemu-system-x86_64") {
        eprintln!("skipping: qemu-system-x86_64 not found");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = fake_bzimage(dir.path());
    let initrd = dir.path().join("initramfs.img");
    std::fs::write(&initrd, b"").unwrap();
    let fake = dir.path().join("fake-sidecar");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"fake sidecar: no thanks\" >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let base = dir.path().join("run");
    let mut opts = LaunchOptions::new(&kernel, &initrd, vec![raw_disk(dir.path())], &base);
    opts.transport = TransportPreference::VhostUser;
    opts.accel = AccelPreference::Tcg;
    opts.vhost_user_binary = fake;
    let err = start_vm(opts).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LaunchError::Sidecar { .. }), "{msg}");
    assert!(msg.contains("exited at start"), "{msg}");
    assert!(msg.contains("fake sidecar: no thanks"), "{msg}");
    assert!(msg.contains("last-failed-vsock-sidecar.log"), "{msg}");
    assert!(base.join("last-failed-vsock-sidecar.log").exists());
    assert_clean(&base);
}

/// `/init` returns at once: the kernel panics, `panic=-1` + `-no-reboot`
/// make QEMU exit. Auto accelerator: where KVM exists but does not work
/// (PVM), the KVM attempt fails first and TCG is tried.
#[tokio::test]
async fn init_exit_panics_and_is_reported() {
    let Some(kernel) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let initrd = initramfs_with_init(dir.path(), "int main(void) { return 0; }\n", &[]);
    let base = dir.path().join("run");
    let mut opts = LaunchOptions::new(&kernel, &initrd, vec![raw_disk(dir.path())], &base);
    opts.accel = AccelPreference::Auto;
    opts.timeouts.tcg_ready = Duration::from_secs(120);
    let t = Instant::now();
    let err = start_vm(opts).await.unwrap_err();
    let elapsed = t.elapsed();
    eprintln!("panic path took {elapsed:?}:\n{err}");
    let msg = err.to_string();
    match &err {
        LaunchError::VmExited { accel, logs, .. } => {
            assert_eq!(*accel, Accel::Tcg);
            assert!(
                logs.console_tail.contains("Kernel panic")
                    || logs.console_tail.contains("Attempted to kill init"),
                "console tail: {}",
                logs.console_tail
            );
            assert_eq!(logs.console_log, base.join("last-failed-console.log"));
            assert!(logs.console_log.exists());
        }
        other => panic!("expected VmExited, got: {other}"),
    }
    assert!(msg.contains("last-failed-console.log"), "{msg}");
    // Where /dev/kvm opens but KVM did not run the guest, the failure is remembered
    // so that later starts go straight to TCG.
    let kvm_opens = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if kvm_opens {
        let memo = std::fs::read_to_string(base.join(file_restore::vm::launch::KVM_UNUSABLE_FILE))
            .unwrap();
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        assert_eq!(memo.lines().next(), Some(boot_id.trim()), "{memo}");
    }
    assert_clean(&base);
}

/// A TCG + vhost-user start of a guest whose `/init` sleeps forever, or
/// `None` (skip) without the prerequisites. Keep the TempDir alive.
fn silent_guest() -> Option<(tempfile::TempDir, std::path::PathBuf, LaunchOptions)> {
    let kernel = prerequisites()?;
    let dir = tempfile::tempdir().unwrap();
    let initrd = initramfs_with_init(
        dir.path(),
        "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n",
        &[],
    );
    let base = dir.path().join("run");
    let mut opts = LaunchOptions::new(&kernel, &initrd, vec![raw_disk(dir.path())], &base);
    opts.accel = AccelPreference::Tcg;
    opts.transport = TransportPreference::VhostUser;
    Some((dir, base, opts))
}

/// `/init` sleeps forever: the daemon never answers, the readiness timeout
/// (short here) ends the attempt, everything is killed and removed.
#[tokio::test]
async fn silent_guest_times_out_and_is_cleaned_up() {
    let Some((_dir, base, mut opts)) = silent_guest() else {
        return;
    };
    opts.timeouts.tcg_ready = Duration::from_secs(10);
    let t = Instant::now();
    let err = start_vm(opts).await.unwrap_err();
    let elapsed = t.elapsed();
    eprintln!("timeout path took {elapsed:?}:\n{err}");
    assert!(elapsed >= Duration::from_secs(10));
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    match &err {
        LaunchError::NotReady { accel, after, .. } => {
            assert_eq!(*accel, Accel::Tcg);
            assert_eq!(*after, Duration::from_secs(10));
        }
        other => panic!("expected NotReady, got: {other}"),
    }
    assert!(
        err.to_string().contains("did not answer within 10s"),
        "{err}"
    );
    assert_clean(&base);
}

/// With a TCG budget over 40 s, a VM still silent after 20 s is replaced by
/// a fresh one once, inside the same budget; both are cleaned up.
#[tokio::test]
async fn silent_guest_gets_one_fresh_retry_within_the_budget() {
    let Some((_dir, base, mut opts)) = silent_guest() else {
        return;
    };
    opts.timeouts.tcg_ready = Duration::from_secs(42);
    let t = Instant::now();
    let err = start_vm(opts).await.unwrap_err();
    let elapsed = t.elapsed();
    eprintln!("retry path took {elapsed:?}:\n{err}");
    assert!(elapsed >= Duration::from_secs(42), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
    match &err {
        // The error is the retry's: 42 s - 20 s.
        LaunchError::NotReady { after, .. } => assert_eq!(*after, Duration::from_secs(22)),
        other => panic!("expected NotReady, got: {other}"),
    }
    assert_clean(&base);
}

/// A guest that listens on the API port but never sends the ready signal
/// (here: it signals a wrong port) is never connected to: the host waits for
/// the signal first (vhost-device-vsock must not see a host connection before
/// the guest's queues are ready, src/guest/ready.rs), then times out naming
/// the missing signal.
#[tokio::test]
async fn guest_without_ready_signal_is_never_probed() {
    let Some(kernel) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let init = fake_guest_source("init").replace(".svm_port = 1025", ".svm_port = 1026");
    let initrd = initramfs_with_init(dir.path(), &init, &[]);
    let base = dir.path().join("run");
    let mut opts = LaunchOptions::new(&kernel, &initrd, vec![raw_disk(dir.path())], &base);
    opts.accel = AccelPreference::Tcg;
    opts.transport = TransportPreference::VhostUser;
    opts.timeouts.tcg_ready = Duration::from_secs(10);
    let err = start_vm(opts).await.unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    assert!(
        text.contains("the guest never signalled that its vsock is up"),
        "{text}"
    );
    assert!(
        text.contains("fake daemon listening"),
        "the guest did listen: {text}"
    );
    assert!(
        !text.contains("fake daemon: connection"),
        "the host connected before the signal: {text}"
    );
    assert_clean(&base);
}

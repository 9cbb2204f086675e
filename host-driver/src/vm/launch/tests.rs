//! Unit tests of the launch module (no VM is started here).

use super::choose::open_rw;
use super::*;
use crate::guest::transport::VsockAddr;
use crate::helper::DiskSource;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

#[test]
fn run_dir_is_private_and_fresh() {
    let base = tempfile::tempdir().unwrap();
    let nested = base.path().join("a/b");
    let d1 = create_run_dir(&nested).unwrap();
    let d2 = create_run_dir(&nested).unwrap();
    assert_ne!(d1, d2);
    for d in [&nested, &d1] {
        let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
}

/// Bytes that pass for a kernel: a bzImage setup header signature.
fn fake_bzimage() -> Vec<u8> {
    let mut image = vec![0u8; 4096];
    image[0x202..0x206].copy_from_slice(b"HdrS");
    image
}

#[test]
fn a_kernel_that_is_no_kernel_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinux");
    let initrd = dir.path().join("initramfs.img");
    std::fs::write(&kernel, b"k").unwrap();
    std::fs::write(&initrd, b"i").unwrap();
    let img = dir.path().join("ok.img");
    std::fs::write(&img, b"").unwrap();
    let image = ImageSpec {
        path: img,
        format: "raw".into(),
        name: "d".into(),
    };
    let e = check_inputs(&LaunchOptions::new(
        &kernel,
        &initrd,
        vec![image],
        dir.path(),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("vmlinux") && e.contains("not a bootable kernel"),
        "{e}"
    );
}

#[test]
fn invalid_inputs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinux");
    let initrd = dir.path().join("initramfs.img");
    std::fs::write(&kernel, fake_bzimage()).unwrap();
    std::fs::write(&initrd, b"i").unwrap();
    let image = |path: &str, format: &str| ImageSpec {
        path: dir.path().join(path),
        format: format.into(),
        name: "d".into(),
    };
    let opts = |images| LaunchOptions::new(&kernel, &initrd, images, dir.path());
    std::fs::write(dir.path().join("ok.img"), b"").unwrap();
    assert!(check_inputs(&opts(vec![image("ok.img", "raw")])).is_ok());
    let e = check_inputs(&opts(vec![image("missing.img", "raw")])).unwrap_err();
    assert!(e.to_string().contains("missing.img"), "{e}");
    let e = check_inputs(&opts(vec![image("ok.img", "raw,file.x=1")])).unwrap_err();
    assert!(e.to_string().contains("invalid format"), "{e}");
    assert!(check_inputs(&opts(vec![])).is_err());
    let mut o = opts(vec![image("ok.img", "raw")]);
    o.kernel = dir.path().join("nokernel");
    let e = check_inputs(&o).unwrap_err();
    assert!(matches!(e, LaunchError::Kernel { .. }));
    assert!(e.to_string().contains("nokernel"), "{e}");
}

#[test]
fn failure_logs_display() {
    let l = FailureLogs {
        console_log: "/x/console.log".into(),
        console_tail: "Kernel panic".into(),
        stderr_tail: String::new(),
    };
    let s = l.to_string();
    assert!(s.contains("/x/console.log") && s.contains("Kernel panic"));
    assert!(!s.contains("qemu stderr"));
}

#[test]
fn running_vm_json_roundtrip_and_debug_redacts() {
    let vm = RunningVm {
        pid: 42,
        sidecar_pid: Some(43),
        addr: VsockAddr::HybridUnix {
            path: "/r/vm.vsock".into(),
            port: 1024,
        },
        ticket: "secret-ticket".into(),
        accel: Accel::Tcg,
        run_dir: "/r".into(),
        console_log: "/r/console.log".into(),
        qmp_socket: "/r/qmp.sock".into(),
        started_at: 1_700_000_000,
    };
    let j = serde_json::to_string(&vm).unwrap();
    assert!(j.contains(r#""accel":"tcg""#));
    assert_eq!(serde_json::from_str::<RunningVm>(&j).unwrap(), vm);
    assert!(!format!("{vm:?}").contains("secret-ticket"));
}

#[test]
fn disk_sources_for_the_helper() {
    assert_eq!(disk_source(Path::new("/dev/fd/9")), DiskSource::Fd(9));
    assert_eq!(
        disk_source(Path::new("nbd+unix:///e?socket=/run/nbd.sock")),
        DiskSource::Nbd("nbd+unix:///e?socket=/run/nbd.sock".into())
    );
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        disk_source(Path::new("rel/disk.img")),
        DiskSource::Path(cwd.join("rel/disk.img"))
    );
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().canonicalize().unwrap();
    std::fs::create_dir(real.join("a")).unwrap();
    std::fs::write(real.join("disk.img"), b"").unwrap();
    let dotted = real.join("a/../disk.img");
    assert_eq!(
        disk_source(&dotted),
        DiskSource::Path(real.join("disk.img"))
    );
}

#[test]
fn nbd_images_are_not_stat_ed_and_formats_follow_the_helper() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinux");
    let initrd = dir.path().join("initramfs.img");
    std::fs::write(&kernel, fake_bzimage()).unwrap();
    std::fs::write(&initrd, b"i").unwrap();
    let nbd = ImageSpec {
        path: "nbd://backup.example/disk0".into(),
        format: "raw".into(),
        name: "nbd".into(),
    };
    let opts = LaunchOptions::new(&kernel, &initrd, vec![nbd.clone()], dir.path());
    check_inputs(&opts).unwrap();
    let mut cloop = nbd;
    cloop.format = "cloop".into();
    let opts = LaunchOptions::new(&kernel, &initrd, vec![cloop], dir.path());
    let e = check_inputs(&opts).unwrap_err().to_string();
    assert!(e.contains("cloop") && e.contains("qcow2"), "{e}");
}

#[test]
fn tcg_budget_is_split_into_an_attempt_and_one_fresh_retry() {
    let t = LaunchTimeouts::default(); // tcg 60 s, kvm 15 s
    assert_eq!(
        plan_attempts(&[Accel::Kvm, Accel::Tcg], &t),
        vec![
            (Accel::Kvm, Duration::from_secs(5)),
            (Accel::Tcg, Duration::from_secs(20)),
            (Accel::Tcg, Duration::from_secs(40)),
        ]
    );
    let short = LaunchTimeouts {
        tcg_ready: Duration::from_secs(10),
        ..t
    };
    assert_eq!(
        plan_attempts(&[Accel::Tcg], &short),
        vec![(Accel::Tcg, Duration::from_secs(10))]
    );
}

#[test]
fn what_kvm_did_is_remembered_until_reboot() {
    use super::choose::{remember_kvm_works, AccelPlan};
    let base = tempfile::tempdir().unwrap();
    let auto = || choose_accels(AccelPreference::Auto, base.path()).unwrap();
    if open_rw("/dev/kvm").is_err() {
        // Without a /dev/kvm that opens, auto is TCG whatever was remembered.
        assert_eq!(auto(), AccelPlan::InTurn(vec![Accel::Tcg]));
        return;
    }
    // Nothing known since boot: KVM and TCG race.
    assert_eq!(auto(), AccelPlan::Race);
    remember_kvm_works(base.path());
    assert_eq!(auto(), AccelPlan::InTurn(vec![Accel::Kvm, Accel::Tcg]));
    remember_kvm_unusable(base.path(), "QEMU exited: failed to set MSR 0x10a\nmore");
    assert_eq!(auto(), AccelPlan::InTurn(vec![Accel::Tcg]));
    assert!(!base.path().join(KVM_WORKS_FILE).exists());
    let memo = std::fs::read_to_string(base.path().join(KVM_UNUSABLE_FILE)).unwrap();
    assert!(
        memo.ends_with("QEMU exited: failed to set MSR 0x10a\n"),
        "{memo}"
    );
    // An explicit choice is still honoured.
    assert_eq!(
        choose_accels(AccelPreference::Kvm, base.path()).unwrap(),
        AccelPlan::InTurn(vec![Accel::Kvm])
    );
    // A memo from another boot does not count.
    std::fs::write(
        base.path().join(KVM_UNUSABLE_FILE),
        "some-other-boot-id\nwhy\n",
    )
    .unwrap();
    assert_eq!(auto(), AccelPlan::Race);
}

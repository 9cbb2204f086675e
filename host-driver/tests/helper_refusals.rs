//! `file-restore-helper` refuses what it must, run as an unprivileged user
//! with and without the setuid bit: an image that user cannot read, unknown
//! fields, forged kernels and QEMU binaries, a foreign run directory, a
//! kernel vsock CID of another user's block; kernel vsock goes in as a
//! descriptor; a refusal reaches `start_vm` as a clear
//! error.
//!
//! Needs root (to create the user `fr-test-user` and a setuid copy of the
//! helper); otherwise each test prints why it skips.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

mod common;
mod helper_support;

use common::have;
use file_restore::helper::{DiskSource, TransportRequest, EXIT_REFUSED};
use helper_support::*;

#[test]
fn unreadable_image_is_refused_naming_it() {
    let Some(user) = test_user() else { return };
    let fx = fixture(user);
    let kernel = fx.dir.path().join("vmlinux");
    let initramfs = fx.dir.path().join("initramfs.img");
    std::fs::write(&kernel, b"k").unwrap();
    std::fs::write(&initramfs, b"i").unwrap();
    let req = request(&fx, &kernel, &initramfs, &fx.secret);
    let json = serde_json::to_string(&req).unwrap();

    // Plain: the helper has the user's rights only.
    let out = run_helper(user, Path::new(HELPER), &json, &["--print-command"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EXIT_REFUSED.into()), "{err}");
    assert!(
        err.contains(&fx.secret.display().to_string()) && err.contains("cannot be read"),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    // Setuid root: still refused, access is the user's, not root's.
    let Some(helper) = setuid_helper(fx.dir.path()) else {
        return;
    };
    let sbin = helper.parent().unwrap();
    let mut req = request(
        &fx,
        &sbin.join("vmlinux"),
        &sbin.join("initramfs.img"),
        &fx.secret,
    );
    if !sbin.join("vmlinux").exists() {
        // Without make build's files, place root-owned stand-ins.
        std::fs::write(sbin.join("vmlinux"), b"k").unwrap();
        std::fs::write(sbin.join("initramfs.img"), b"i").unwrap();
        req.kernel = sbin.join("vmlinux");
    }
    let json = serde_json::to_string(&req).unwrap();
    let out = run_helper(user, &helper, &json, &["--print-command"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EXIT_REFUSED.into()), "{err}");
    assert!(err.contains(&fx.secret.display().to_string()), "{err}");
    assert!(err.contains(&format!("uid {}", user.uid)), "{err}");

    // The same request with the user's own image passes (print only).
    req.disks[0].source = DiskSource::Path(fx.image.clone());
    let out = run_helper(
        user,
        &helper,
        &serde_json::to_string(&req).unwrap(),
        &["--print-command"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let cmd: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let args = cmd["args"].to_string();
    assert!(args.contains(&fx.image.display().to_string()), "{args}");
    assert!(!args.contains(&req.ticket), "ticket on the command line");
}

#[test]
fn unknown_fields_and_forged_boot_files_are_refused() {
    let Some(user) = test_user() else { return };
    let fx = fixture(user);
    let Some(helper) = setuid_helper(fx.dir.path()) else {
        return;
    };
    let sbin = helper.parent().unwrap().to_path_buf();
    for name in ["vmlinux", "initramfs.img"] {
        if !sbin.join(name).exists() {
            std::fs::write(sbin.join(name), b"x").unwrap();
        }
    }
    let good = request(
        &fx,
        &sbin.join("vmlinux"),
        &sbin.join("initramfs.img"),
        &fx.image,
    );

    // Unknown field: refused by both, naming it.
    let mut v = serde_json::to_value(&good).unwrap();
    v["qemu_extra_args"] = "-device virtio-9p-pci".into();
    for h in [Path::new(HELPER), &helper] {
        let out = run_helper(user, h, &v.to_string(), &["--print-command"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(EXIT_REFUSED.into()), "{err}");
        assert!(err.contains("unknown field `qemu_extra_args`"), "{err}");
    }

    // A kernel of the user's: refused by the setuid helper, naming it and
    // the allowed files; accepted by the plain one (no more rights than the
    // user).
    let forged = fx.dir.path().join("user-dir");
    std::fs::create_dir(&forged).unwrap();
    chown(&forged, user);
    let forged_kernel = forged.join("vmlinux");
    std::fs::write(&forged_kernel, b"evil").unwrap();
    chown(&forged_kernel, user);
    let mut req = good.clone();
    req.kernel = forged_kernel.clone();
    let json = serde_json::to_string(&req).unwrap();
    let out = run_helper(user, &helper, &json, &["--print-command"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EXIT_REFUSED.into()), "{err}");
    assert!(
        err.contains(&format!("kernel '{}'", forged_kernel.display())),
        "{err}"
    );
    assert!(
        err.contains(&sbin.join("vmlinux").display().to_string()),
        "{err}"
    );
    let out = run_helper(user, Path::new(HELPER), &json, &["--print-command"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Root-owned but not installed (the repo's build dir): refused too.
    if let Some((k, _)) = build_boot_files() {
        let mut req = good.clone();
        req.kernel = k.clone();
        let out = run_helper(
            user,
            &helper,
            &serde_json::to_string(&req).unwrap(),
            &["--print-command"],
        );
        assert_eq!(out.status.code(), Some(EXIT_REFUSED.into()));
        assert!(stderr(&out).contains(&k.display().to_string()));
    }

    // A QEMU binary of the user's choice: refused when setuid.
    let mut req = good.clone();
    req.qemu = Some("/bin/sh".into());
    let out = run_helper(
        user,
        &helper,
        &serde_json::to_string(&req).unwrap(),
        &["--print-command"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EXIT_REFUSED.into()), "{err}");
    assert!(err.contains("QEMU binary '/bin/sh'"), "{err}");

    // A run directory that is not the user's: refused.
    let mut req = good.clone();
    let root_dir = fx.dir.path().join("root-run");
    std::fs::create_dir(&root_dir).unwrap();
    chmod(&root_dir, 0o755);
    req.run_dir = root_dir.clone();
    req.console_log = root_dir.join("console.log");
    req.qmp_socket = root_dir.join("qmp.sock");
    req.transport = TransportRequest::VhostUser {
        socket: root_dir.join("vhu.sock"),
    };
    let out = run_helper(
        user,
        &helper,
        &serde_json::to_string(&req).unwrap(),
        &["--print-command"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EXIT_REFUSED.into()), "{err}");
    assert!(err.contains("not to the invoking user"), "{err}");
}

/// Kernel vsock: the helper opens /dev/vhost-vsock itself and passes it to
/// QEMU as `vhostfd`; where the device is missing it says so clearly.
#[test]
fn kernel_vsock_is_passed_as_a_descriptor() {
    let Some(user) = test_user() else { return };
    let fx = fixture(user);
    let kernel = fx.dir.path().join("vmlinux");
    let initramfs = fx.dir.path().join("initramfs.img");
    std::fs::write(&kernel, b"k").unwrap();
    std::fs::write(&initramfs, b"i").unwrap();
    let mut req = request(&fx, &kernel, &initramfs, &fx.image);
    // Run as root (the tests' user), so that an existing device opens: the
    // run directory must then be root's.
    let run_dir = fx.dir.path().join("vm-root");
    std::fs::create_dir(&run_dir).unwrap();
    chmod(&run_dir, 0o700);
    req.console_log = run_dir.join("console.log");
    req.qmp_socket = run_dir.join("qmp.sock");
    req.run_dir = run_dir;
    // A CID of root's own block (the helper refuses others: see below).
    req.transport = TransportRequest::Kernel { cid: 4100 };
    let mut child = Command::new(HELPER)
        .arg("--print-command")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let json = serde_json::to_vec(&req).unwrap();
    child.stdin.take().unwrap().write_all(&json).unwrap();
    let out = child.wait_with_output().unwrap();
    if Path::new("/dev/vhost-vsock").exists() {
        assert!(out.status.success(), "{}", stderr(&out));
        let args = String::from_utf8_lossy(&out.stdout);
        assert!(
            args.contains("vhost-vsock-device,guest-cid=4100,vhostfd="),
            "{args}"
        );
    } else {
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("cannot open /dev/vhost-vsock") && err.contains("--transport vhost-user"),
            "{err}"
        );
    }
}

/// A user may ask for kernel vsock CIDs of their own block only: a CID of
/// root's block (or any other user's) is refused, plain and setuid, before
/// `/dev/vhost-vsock` is opened; the user's own CID gets past that check.
#[test]
fn cids_of_another_users_block_are_refused() {
    use file_restore::helper::cids::cid_range;
    let Some(user) = test_user() else { return };
    let fx = fixture(user);
    let kernel = fx.dir.path().join("vmlinux");
    let initramfs = fx.dir.path().join("initramfs.img");
    std::fs::write(&kernel, b"k").unwrap();
    std::fs::write(&initramfs, b"i").unwrap();
    let mut req = request(&fx, &kernel, &initramfs, &fx.image);
    let own = cid_range(user.uid).expect("the test user has a block");
    let roots = cid_range(0).unwrap();
    let setuid = setuid_helper(fx.dir.path());
    for helper in std::iter::once(Path::new(HELPER)).chain(setuid.as_deref()) {
        req.transport = TransportRequest::Kernel {
            cid: *roots.start(),
        };
        let out = run_helper(
            user,
            helper,
            &serde_json::to_string(&req).unwrap(),
            &["--print-command"],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(EXIT_REFUSED.into()), "{err}");
        assert!(
            err.contains(&format!(
                "CID {} is not in uid {}'s block {}..={}",
                roots.start(),
                user.uid,
                own.start(),
                own.end()
            )),
            "{err}"
        );
        // Its own CID passes this check (then needs the device).
        req.transport = TransportRequest::Kernel { cid: *own.end() };
        let out = run_helper(
            user,
            helper,
            &serde_json::to_string(&req).unwrap(),
            &["--print-command"],
        );
        assert!(!stderr(&out).contains("transport.cid"), "{}", stderr(&out));
    }
}

/// A refusal by the helper reaches `start_vm` as `LaunchError::Helper`,
/// quoting the helper, with nothing left running.
#[tokio::test]
async fn start_vm_reports_helper_refusals() {
    for p in ["qemu-system-x86_64", "vhost-device-vsock"] {
        if !have(p) {
            eprintln!("skipping: {p} not found");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinux");
    let initramfs = dir.path().join("initramfs.img");
    let disk = dir.path().join("disk.raw");
    for f in [&initramfs, &disk] {
        std::fs::write(f, b"x").unwrap();
    }
    // Passes the CLI's kernel check (a bzImage setup header signature); the helper
    // refuses the request before anything boots it.
    let mut fake_kernel = vec![0u8; 4096];
    fake_kernel[0x202..0x206].copy_from_slice(b"HdrS");
    std::fs::write(&kernel, fake_kernel).unwrap();
    let base = dir.path().join("run");
    let mut opts = file_restore::vm::launch::LaunchOptions::new(
        &kernel,
        &initramfs,
        vec![file_restore::vm::launch::ImageSpec {
            path: disk,
            format: "raw".into(),
            name: "d".into(),
        }],
        &base,
    );
    opts.cpus = 9;
    opts.accel = file_restore::vm::launch::AccelPreference::Tcg;
    opts.transport = file_restore::vm::launch::TransportPreference::VhostUser;
    opts.helper_binary = Some(HELPER.into());
    let err = file_restore::vm::launch::start_vm(opts).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, file_restore::vm::launch::LaunchError::Helper { .. }),
        "{msg}"
    );
    assert!(msg.contains("cpus: 9 is outside 1..=4"), "{msg}");
    assert!(msg.contains("last-failed-qemu.stderr"), "{msg}");
    let left = common::processes_mentioning(&base);
    assert!(left.is_empty(), "leftover processes: {left:?}");
}

//! QEMU started through `file-restore-helper` by an unprivileged user runs
//! with that user's ids (real, effective, saved, fs; no capabilities,
//! no_new_privs), with and without the setuid bit, and boots: the daemon
//! lists the user's disk.
//!
//! Needs root (to create `fr-test-user` and a setuid copy of the helper),
//! QEMU, `vhost-device-vsock` and `make build`'s kernel and initramfs;
//! otherwise each test prints why it skips.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;
mod helper_support;

use file_restore::guest::client::DaemonClient;
use file_restore::guest::transport::VsockAddr;
use helper_support::*;

/// Plain helper as the user: QEMU runs with the user's ids, boots, and
/// the daemon lists the user's disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_runs_as_the_invoking_user() {
    let Some(user) = test_user() else { return };
    let Some((kernel, initramfs)) = build_boot_files() else {
        return;
    };
    let fx = fixture(user);
    let Some(sidecar) = start_sidecar(user, fx.dir.path(), &fx.run_dir) else {
        return;
    };
    let mut procs = Procs(vec![sidecar]);
    let req = request(&fx, &kernel, &initramfs, &fx.image);
    let log = fx.dir.path().join("qemu.log");
    let t = Instant::now();
    procs
        .0
        .push(start_qemu(user, Path::new(HELPER), &req, &log));
    let qemu = procs.0.last_mut().unwrap();
    wait_for_qemu(qemu, &log);
    let pid = qemu.id();
    eprintln!("QEMU (pid {pid}) exec'd after {:?}", t.elapsed());
    assert_runs_as(pid, user);
    let console = fx.run_dir.join("console.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !console.exists() {
        assert!(Instant::now() < deadline, "QEMU created no console log");
        std::thread::sleep(Duration::from_millis(20));
    }
    let owner = std::fs::metadata(&console).unwrap().uid();
    assert_eq!(owner, user.uid, "console log created by the user");

    let client = DaemonClient::new(
        VsockAddr::HybridUnix {
            path: fx.run_dir.join("vm.vsock"),
            port: file_restore_wire::DEFAULT_PORT,
        },
        req.ticket.clone(),
    );
    let deadline = Instant::now() + Duration::from_secs(240);
    let root = loop {
        match client.list(b"/").await {
            Ok(entries) => break entries,
            Err(e) if Instant::now() < deadline => {
                if let Ok(Some(st)) = procs.0[1].try_wait() {
                    panic!(
                        "QEMU exited ({st}): {e}\n{}",
                        std::fs::read_to_string(fx.run_dir.join("console.log")).unwrap_or_default()
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("daemon did not answer: {e}"),
        }
    };
    eprintln!("daemon answered after {:?}", t.elapsed());
    let names: Vec<&str> = root.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(names, ["userdisk"], "{root:?}");
    drop(procs);
}

/// Setuid-root helper run by the user: QEMU's real, effective, saved and fs
/// ids are all the user's, with no capabilities.
#[test]
fn setuid_helper_runs_qemu_as_the_user() {
    let Some(user) = test_user() else { return };
    if build_boot_files().is_none() {
        return;
    }
    let fx = fixture(user);
    let Some(helper) = setuid_helper(fx.dir.path()) else {
        return;
    };
    let meta = std::fs::metadata(&helper).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o4755));
    let Some(sidecar) = start_sidecar(user, fx.dir.path(), &fx.run_dir) else {
        return;
    };
    let mut procs = Procs(vec![sidecar]);
    let sbin = helper.parent().unwrap();
    let req = request(
        &fx,
        &sbin.join("vmlinux"),
        &sbin.join("initramfs.img"),
        &fx.image,
    );
    let log = fx.dir.path().join("qemu.log");
    procs.0.push(start_qemu(user, &helper, &req, &log));
    let qemu = procs.0.last_mut().unwrap();
    wait_for_qemu(qemu, &log);
    assert_runs_as(qemu.id(), user);
    drop(procs);
}

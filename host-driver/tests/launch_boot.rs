//! The success path with the real restore daemon: boot a VM on one ext4
//! image, check status, list, extract (whole and a range), a wrong ticket,
//! then stop it and check nothing is left.
//!
//! Needs the build outputs `build/boot.json` (with `build/vmlinux` or
//! `build/vmlinuz` and `build/initramfs.img`) at the workspace root, or in
//! `$FILE_RESTORE_BUILD_DIR`; skips with a message when they are missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{have, processes_mentioning, KillOnDrop};
use file_restore::guest::client::DaemonClient;
use file_restore::guest::transport::VsockAddr;
use file_restore::vm::launch::{start_vm, ImageSpec, LaunchOptions};
use file_restore::vm::teardown::{is_alive, stop_vm};
use file_restore_initramfs::BootInfo;
use file_restore_wire::{EntryType, ExtractFormat, ScanState, API_VERSION};
use tokio::io::AsyncReadExt;

fn build_dir() -> PathBuf {
    std::env::var_os("FILE_RESTORE_BUILD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../build"))
}

/// Kernel and base initramfs from `boot.json`, or `None` (the test skips).
fn boot_files() -> Option<(PathBuf, PathBuf)> {
    let json = build_dir().join("boot.json");
    let info = match BootInfo::read(&json) {
        Ok(info) => info,
        Err(e) => {
            // In CI (make test builds first) a missing build is a failure.
            assert!(
                std::env::var_os("CI").is_none(),
                "no usable {} ({e}): run make build",
                json.display()
            );
            eprintln!(
                "skipping: no usable {} ({e}); build the initramfs first",
                json.display()
            );
            return None;
        }
    };
    for p in ["qemu-system-x86_64", "vhost-device-vsock", "mkfs.ext4"] {
        if !have(p) {
            eprintln!("skipping: {p} not found");
            return None;
        }
    }
    Some((info.kernel, info.initramfs))
}

/// Deterministic, incompressible-ish test data.
fn data(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// An unpartitioned ext4 image holding `hello.txt` and `sub/data.bin`.
fn ext4_image(dir: &Path, payload: &[u8]) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("hello.txt"), b"hello from ext4\n").unwrap();
    std::fs::write(src.join("sub/data.bin"), payload).unwrap();
    let img = dir.join("disk.ext4");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&src)
        .arg(&img)
        .status()
        .unwrap();
    assert!(st.success(), "mkfs.ext4 failed");
    img
}

fn names(entries: &[file_restore_wire::Entry]) -> Vec<String> {
    entries.iter().map(|e| e.text.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_list_extract_stop() {
    let Some((kernel, initramfs)) = boot_files() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let payload = data(300 * 1024 + 17);
    let img = ext4_image(dir.path(), &payload);
    let base = dir.path().join("run");
    let opts = LaunchOptions::new(
        &kernel,
        &initramfs,
        vec![ImageSpec {
            path: img,
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
        "VM ready after {:?} (accel {}, pid {}, {})",
        t.elapsed(),
        vm.accel,
        vm.pid,
        vm.addr
    );
    let _guard = KillOnDrop(vm.clone());
    assert!(is_alive(&vm));
    assert!(matches!(
        vm.addr,
        VsockAddr::HybridUnix { .. } | VsockAddr::Kernel { .. }
    ));
    let client = vm.client();

    // Status, until the disk scan is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let s = client.status(true).await.expect("status");
        assert_eq!(s.api_version, API_VERSION);
        if s.scan != Some(ScanState::Scanning) || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("status: {status:?}");
    assert!(status.uptime.is_some());

    // Warm request latency.
    let t = Instant::now();
    let root = client.list(b"/").await.expect("list /");
    eprintln!("warm list / took {:?}", t.elapsed());
    assert_eq!(names(&root), ["disk0"], "{root:?}");
    assert_eq!(root[0].entry_type, EntryType::Virtual);

    let buckets = client.list(b"/disk0/raw").await.expect("list /disk0/raw");
    assert_eq!(names(&buckets), ["raw"], "{buckets:?}");
    let top = client.list(b"/disk0/raw/raw").await.expect("list fs root");
    let top_names = names(&top);
    assert!(
        top_names.contains(&"hello.txt".to_string()),
        "{top_names:?}"
    );
    assert!(top_names.contains(&"sub".to_string()), "{top_names:?}");

    // Whole file, chunk by chunk.
    let t = Instant::now();
    let mut s = client
        .extract(
            b"/disk0/raw/raw/sub/data.bin",
            ExtractFormat::Plain,
            false,
            None,
        )
        .await
        .expect("extract");
    assert_eq!(s.content_length, Some(payload.len() as u64));
    let mut got = Vec::new();
    while let Some(chunk) = s.next_chunk().await.expect("chunk") {
        got.extend_from_slice(&chunk);
    }
    eprintln!("extract of {} bytes took {:?}", got.len(), t.elapsed());
    assert!(got == payload, "extracted bytes differ");

    // A range, as AsyncRead.
    let mut s = client
        .extract(
            b"/disk0/raw/raw/sub/data.bin",
            ExtractFormat::Plain,
            false,
            Some((1000, Some(1999))),
        )
        .await
        .expect("range extract");
    assert_eq!(s.status, 206);
    let mut part = Vec::new();
    s.read_to_end(&mut part).await.unwrap();
    assert!(part == payload[1000..2000], "range bytes differ");

    // A missing file keeps the daemon's message. A client with another
    // ticket gets the guest's proof of the real one, which does not match
    // its own: it sends nothing more, not even its ticket (the daemon's own
    // 401 is tested in restore-daemon/tests/dev_api.rs).
    let err = client.list(b"/disk0/raw/raw/nope").await.unwrap_err();
    assert_eq!(err.http_status(), Some(404), "{err}");
    assert!(err.daemon_message().is_some_and(|m| !m.is_empty()));
    let wrong = DaemonClient::new(vm.addr.clone(), "0".repeat(32));
    for err in [
        wrong.list(b"/").await.unwrap_err(),
        wrong.status(false).await.unwrap_err(),
        wrong.status_liveness().await.unwrap_err(),
    ] {
        assert!(
            err.to_string()
                .contains("did not prove it knows the ticket"),
            "{err}"
        );
    }
    // Liveness needs no ticket, only the proof.
    assert!(client.status_liveness().await.expect("liveness").alive);

    // Stop: nothing left.
    let t = Instant::now();
    stop_vm(&vm, Duration::from_secs(5)).await.expect("stop_vm");
    eprintln!("stop took {:?}", t.elapsed());
    assert!(!is_alive(&vm));
    assert!(!vm.run_dir.exists(), "run dir left");
    let left = processes_mentioning(&base);
    assert!(left.is_empty(), "leftover processes: {left:?}");
}

/// One VM, three disks in three container formats: each disk is found by its
/// serial and serves its own content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_disks_raw_qcow2_vmdk() {
    let Some((kernel, initramfs)) = boot_files() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut images = Vec::new();
    for (i, format) in ["raw", "qcow2", "vmdk"].iter().enumerate() {
        let sub = dir.path().join(format);
        std::fs::create_dir_all(&sub).unwrap();
        let raw = ext4_image(&sub, format!("payload of the {format} disk").as_bytes());
        let path = if *format == "raw" {
            raw
        } else {
            let out = sub.join(format!("disk.{format}"));
            let st = Command::new("qemu-img")
                .args(["convert", "-O", format])
                .arg(&raw)
                .arg(&out)
                .status()
                .unwrap();
            assert!(st.success(), "qemu-img convert to {format}");
            out
        };
        images.push(ImageSpec {
            path,
            format: format.to_string(),
            name: format!("disk{i}-{format}"),
        });
    }
    let base = dir.path().join("run");
    let vm = start_vm(LaunchOptions::new(&kernel, &initramfs, images, &base))
        .await
        .unwrap_or_else(|e| panic!("start_vm failed:\n{e}"));
    let _guard = KillOnDrop(vm.clone());
    let client = vm.client();
    let root = client.list(b"/").await.expect("list /");
    assert_eq!(
        names(&root),
        ["disk0-raw", "disk1-qcow2", "disk2-vmdk"],
        "{root:?}"
    );
    for (i, format) in ["raw", "qcow2", "vmdk"].iter().enumerate() {
        let path = format!("/disk{i}-{format}/raw/raw/sub/data.bin");
        let mut s = client
            .extract(path.as_bytes(), ExtractFormat::Plain, false, None)
            .await
            .unwrap_or_else(|e| panic!("extract {path}: {e}"));
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            got,
            format!("payload of the {format} disk").as_bytes(),
            "{path}"
        );
    }
    stop_vm(&vm, Duration::from_secs(5)).await.expect("stop_vm");
    let left = processes_mentioning(&base);
    assert!(left.is_empty(), "leftover processes: {left:?}");
}

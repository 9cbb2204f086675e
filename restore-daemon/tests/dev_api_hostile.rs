//! The dev-mode daemon against a slow disk and a crafted filesystem: status
//! while a mount is in progress, and symlink targets longer than the kernel
//! returns. Needs root (loop devices, a blkio cgroup, debugfs).

mod support;

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

/// A cgroup-v1 blkio group that allows `iops` reads per second from one
/// block device, holding one process; the process is moved back and the
/// group removed on drop.
struct ReadThrottle {
    dir: PathBuf,
    pid: u32,
}

const BLKIO: &str = "/sys/fs/cgroup/blkio";

impl ReadThrottle {
    fn new(device: &str, iops: u32, pid: u32) -> ReadThrottle {
        assert!(
            Path::new(BLKIO)
                .join("blkio.throttle.read_iops_device")
                .exists(),
            "this test slows a mount down with the cgroup-v1 blkio throttle, and {BLKIO} has none"
        );
        let rdev = fs::metadata(device).unwrap().rdev();
        let dir = Path::new(BLKIO).join(format!("file-restore-test-{pid}"));
        fs::create_dir(&dir).unwrap();
        let t = ReadThrottle { dir, pid };
        let (major, minor) = (libc::major(rdev), libc::minor(rdev));
        fs::write(
            t.dir.join("blkio.throttle.read_iops_device"),
            format!("{major}:{minor} {iops}"),
        )
        .unwrap();
        fs::write(t.dir.join("cgroup.procs"), pid.to_string()).unwrap();
        t
    }
}

impl Drop for ReadThrottle {
    fn drop(&mut self) {
        let _ = fs::write(Path::new(BLKIO).join("cgroup.procs"), self.pid.to_string());
        let _ = fs::remove_dir(&self.dir);
    }
}

fn status(d: &Daemon) -> serde_json::Value {
    let (code, body) = d.get("/api/status", &[]);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// A real slow mount: the bucket's reads are throttled to one per second,
/// so mounting it takes seconds. Status must answer at once all the while,
/// showing the bucket as mounting, and the listing still completes.
#[test]
fn status_never_waits_for_a_mount_in_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("f{i}")), i.to_string()).unwrap();
    }
    let img = ext4_image(tmp.path(), &src);
    let lp = Loop::new(&img);
    let device = lp.0.clone();
    let d = Arc::new(Daemon::start(tmp.path(), vec![("disk0/raw/raw", lp)], 600));
    let t = Instant::now();
    while status(&d)["scan"] != "done" {
        assert!(t.elapsed() < Duration::from_secs(10), "scan did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let throttle = ReadThrottle::new(&device, 1, d.child.id());

    let lister = Arc::clone(&d);
    let listing = std::thread::spawn(move || lister.list(b"/disk0/raw/raw"));
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut saw_mounting = false;
    while !listing.is_finished() {
        let t = Instant::now();
        let s = status(&d);
        slowest = slowest.max(t.elapsed());
        let bucket = &s["disks"][0]["buckets"][0];
        saw_mounting |= bucket["mounting"] == true;
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the listing hangs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mount_took = started.elapsed();
    drop(throttle);
    let (code, v) = listing.join().unwrap();
    assert_eq!(code, 200, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 21, "{v}"); // f0..f19 and lost+found
    assert!(
        mount_took > Duration::from_secs(3),
        "the throttled mount took only {mount_took:?}: the test proves nothing"
    );
    assert!(
        // Generous for a loaded machine: before, a status waited out the mount (5 s).
        slowest < Duration::from_millis(2000),
        "a status took {slowest:?} while the bucket was being mounted (the listing took \
         {mount_took:?})"
    );
    assert!(saw_mounting, "status never showed the bucket as mounting");
    let bucket = &status(&d)["disks"][0]["buckets"][0];
    assert_eq!(bucket["mounted"], true, "{bucket}");
    assert_eq!(bucket["mounting"], false, "{bucket}");
}

/// Writes `len` bytes of `byte` into `img` at `offset`.
fn patch(img: &Path, offset: u64, byte: u8, len: usize) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = fs::OpenOptions::new().write(true).open(img).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&vec![byte; len]).unwrap();
}

/// An ext4 image whose symlink `long` claims a 5000-byte target: its inode
/// size is patched with debugfs (symlink(2) and mkfs take at most 4095
/// bytes) and its block filled, so the kernel returns 4095 bytes of it as
/// if they were the whole target.
fn crafted_long_symlink(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    fs::create_dir(&src).unwrap();
    symlink("a".repeat(4000), src.join("long")).unwrap();
    symlink("b".repeat(4095), src.join("max")).unwrap();
    symlink("short", src.join("short")).unwrap();
    fs::write(src.join("file"), "x").unwrap();
    let img = dir.join("crafted.img");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&src)
        .arg(&img)
        .arg("16M"));
    run(Command::new("debugfs")
        .args(["-w", "-R", "sif long size 5000"])
        .arg(&img));
    let block: u64 = run(Command::new("debugfs")
        .args(["-R", "bmap long 0"])
        .arg(&img))
    .trim()
    .parse()
    .expect("block number from debugfs bmap");
    patch(&img, block * 4096 + 4000, b'c', 96);
    img
}

#[test]
fn symlink_targets_the_kernel_cuts_short_are_refused_in_listings_and_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let img = crafted_long_symlink(tmp.path());
    let d = Daemon::start(tmp.path(), vec![("disk0/raw/raw", Loop::new(&img))], 600);

    let (code, v) = d.list(b"/disk0/raw/raw");
    assert_eq!(code, 200, "{v}");
    let entry = |name: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|e| e["text"] == name)
            .unwrap_or_else(|| panic!("no {name} in {v}"))
            .clone()
    };
    let long = entry("long");
    assert!(
        long.get("target").is_none(),
        "a cut target was listed: {long}"
    );
    let err = long["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("5000") && err.contains("4095") && err.contains("refused"),
        "{long}"
    );
    assert_eq!(entry("max")["target"], "b".repeat(4095));
    assert_eq!(entry("short")["target"], "short");
    assert!(entry("short").get("error").is_none());
    // The entry listed on its own says the same.
    let (code, single) = d.list(b"/disk0/raw/raw/long");
    assert_eq!(code, 200);
    assert_eq!(single[0]["error"], long["error"], "{single}");

    // An archive of the link refuses it the same way: the stream breaks off
    // and the daemon's log names the entry and the reason.
    let (_, _) = d.get(
        &format!("/api/extract?path={}&format=tar", q(b"/disk0/raw/raw")),
        &[],
    );
    let log = fs::read_to_string(&d.log).unwrap();
    assert!(
        log.contains("long") && log.contains("5000") && log.contains("refused"),
        "{log}"
    );
    // Nothing else is affected: the other links archive fine.
    let (code, tar) = d.get(
        &format!("/api/extract?path={}&format=tar", q(b"/disk0/raw/raw/max")),
        &[],
    );
    assert_eq!(code, 200);
    assert!(tar.windows(4095).any(|w| w == "b".repeat(4095).as_bytes()));
}

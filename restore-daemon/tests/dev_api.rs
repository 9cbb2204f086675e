//! The daemon's API in dev mode: real filesystem images on real (read-only)
//! loop devices, the real binary, and curl as the HTTP client. Needs root.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::*;

/// The source tree with symlink traps, used by most tests.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("a/b/c/d")).unwrap();
    fs::write(root.join("etc/passwd"), "image-passwd\n").unwrap();
    fs::write(root.join("ticket"), "image-ticket-file\n").unwrap();
    fs::write(root.join("a/b/c/d/deep.txt"), "deep\n").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(root.join("big.bin"), &big).unwrap();
    symlink("/etc/passwd", root.join("abs-passwd")).unwrap();
    symlink("/ticket", root.join("to-ticket")).unwrap();
    symlink("../../../../../../ticket", root.join("a/b/up-ticket")).unwrap();
    symlink("../../..", root.join("a/b/c/up3")).unwrap();
    symlink("/proc/self/root/etc/hostname", root.join("magic")).unwrap();
    symlink("nowhere", root.join("dangling")).unwrap();
    fs::hard_link(root.join("etc/passwd"), root.join("hard-passwd")).unwrap();
    let long = "L".repeat(150);
    fs::create_dir_all(root.join(&long)).unwrap();
    fs::write(root.join(&long).join("x".repeat(120)), "long path\n").unwrap();
    let weird = std::ffi::OsStr::from_bytes(b"non-utf8-\xff\xfe");
    fs::write(root.join(weird), "weird\n").unwrap();
}

use std::os::unix::ffi::OsStrExt;

fn setup(idle: u64) -> (tempfile::TempDir, Daemon, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let img = ext4_image(tmp.path(), &src);
    let d = Daemon::start(tmp.path(), vec![("disk0/raw/raw", Loop::new(&img))], idle);
    (tmp, d, src)
}

#[test]
fn virtual_levels_and_errors() {
    let (_tmp, d, _src) = setup(600);
    let (code, v) = d.list(b"/");
    assert_eq!(code, 200);
    assert_eq!(v[0]["text"], "disk0");
    assert_eq!(v[0]["type"], "v");
    let (_, v) = d.list(b"/disk0");
    assert_eq!(v[0]["text"], "raw");
    let (_, v) = d.list(b"/disk0/raw");
    assert_eq!(v[0]["text"], "raw");
    assert_eq!(v[0]["fstype"], "ext4");
    assert_eq!(v[0]["size"], 64 * 1024 * 1024);

    let (code, body) = d.get("/api/list?path=!!!notbase64", &[]);
    assert_eq!(code, 400);
    assert!(error_of(&body).contains("base64"));
    let (code, body) = d.get(&format!("/api/list?path={}", q(b"/nodisk")), &[]);
    assert_eq!(code, 404);
    let msg = error_of(&body);
    assert!(msg.contains("nodisk") && msg.contains("disk0"), "{msg}");
    let (code, body) = d.get(&format!("/api/list?path={}", q(b"/disk0/part/1")), &[]);
    assert_eq!(code, 404);
    assert!(error_of(&body).contains("raw/raw"));
    let (code, body) = d.get(
        &format!("/api/list?path={}", q(b"/disk0/raw/raw/missing")),
        &[],
    );
    assert_eq!(code, 404);
    assert!(error_of(&body).contains("/disk0/raw/raw/missing"));
    let (code, body) = d.get(
        &format!(
            "/api/extract?path={}&format=plain",
            q(b"/disk0/raw/raw/etc")
        ),
        &[],
    );
    assert_eq!(code, 400);
    assert!(error_of(&body).contains("is a directory"));
    let (code, _) = d.get(
        &format!("/api/extract?path={}&format=rar", q(b"/disk0/raw/raw/etc")),
        &[],
    );
    assert_eq!(code, 400);
    let huge = "A".repeat(20_000);
    let (code, _) = d.get(&format!("/api/list?path={huge}"), &[]);
    assert!(code == 414 || code == 431 || code == 400, "got {code}");
}

#[test]
fn listing_reports_symlinks_and_non_utf8_names() {
    let (_tmp, d, _src) = setup(600);
    let (code, v) = d.list(b"/disk0/raw/raw");
    assert_eq!(code, 200);
    let entries = v.as_array().unwrap();
    let find = |name: &str| {
        entries
            .iter()
            .find(|e| e["text"] == name)
            .unwrap_or_else(|| panic!("{name} missing in {v}"))
    };
    assert_eq!(find("abs-passwd")["type"], "l");
    assert_eq!(find("abs-passwd")["target"], "/etc/passwd");
    assert_eq!(find("dangling")["target"], "nowhere");
    assert_eq!(find("etc")["type"], "d");
    assert_eq!(find("etc")["leaf"], false);
    assert_eq!(find("big.bin")["size"], 3_000_000);
    let weird = entries
        .iter()
        .find(|e| e["text"].as_str().unwrap().starts_with("non-utf8-"))
        .expect("non-UTF-8 name listed");
    let raw = STANDARD
        .decode(weird["filepath"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw, b"/disk0/raw/raw/non-utf8-\xff\xfe");
    // The raw path extracts the file.
    let (code, body) = d.get(&format!("/api/extract?path={}", q(&raw)), &[]);
    assert_eq!((code, body.as_slice()), (200, &b"weird\n"[..]));
}

#[test]
fn symlink_traps_stay_inside_the_mount() {
    let (_tmp, d, _src) = setup(600);
    let get = |p: &[u8]| d.get(&format!("/api/extract?path={}", q(p)), &[]);
    // Absolute link: resolves to the image's /etc/passwd, never the host's.
    assert_eq!(
        get(b"/disk0/raw/raw/abs-passwd"),
        (200, b"image-passwd\n".to_vec())
    );
    // /ticket, and any number of .., end at the image's root.
    assert_eq!(
        get(b"/disk0/raw/raw/to-ticket"),
        (200, b"image-ticket-file\n".to_vec())
    );
    assert_eq!(
        get(b"/disk0/raw/raw/a/b/up-ticket"),
        (200, b"image-ticket-file\n".to_vec())
    );
    assert_eq!(
        get(b"/disk0/raw/raw/../../../../ticket"),
        (200, b"image-ticket-file\n".to_vec())
    );
    assert_eq!(
        get(b"/disk0/raw/raw/a/b/c/up3/etc/passwd"),
        (200, b"image-passwd\n".to_vec())
    );
    // Magic links (/proc/self/...) are refused, not followed to the guest root.
    let (code, _) = get(b"/disk0/raw/raw/magic");
    assert!(code == 400 || code == 404, "magic link gave {code}");
    // The host's own files are never served.
    let host_passwd = fs::read("/etc/passwd").unwrap();
    for p in [
        &b"/disk0/raw/raw/abs-passwd"[..],
        b"/disk0/raw/raw/a/b/c/up3/etc/passwd",
    ] {
        assert_ne!(get(p).1, host_passwd);
    }
}

#[test]
fn range_requests() {
    let (_tmp, d, src) = setup(600);
    let big = fs::read(src.join("big.bin")).unwrap();
    let p = format!("/api/extract?path={}", q(b"/disk0/raw/raw/big.bin"));
    let (code, body) = d.get(&p, &["-H", "Range: bytes=1000-1999"]);
    assert_eq!(code, 206);
    assert_eq!(body, &big[1000..2000]);
    let (code, body) = d.get(&p, &["-H", "Range: bytes=-10"]);
    assert_eq!((code, body.as_slice()), (206, &big[big.len() - 10..]));
    let (code, body) = d.get(&p, &["-H", "Range: bytes=2999990-"]);
    assert_eq!((code, body.as_slice()), (206, &big[2_999_990..]));
    let (code, _) = d.get(&p, &["-H", "Range: bytes=5000000-"]);
    assert_eq!(code, 416);
    let (code, body) = d.get(&p, &[]);
    assert_eq!(code, 200);
    assert_eq!(body, big);
}

#[test]
fn auth_is_required() {
    let (_tmp, d, _src) = setup(600);
    let list = format!("/api/list?path={}", q(b"/"));
    assert_eq!(d.curl(&list, &[]).0, 401);
    assert_eq!(
        d.curl(&list, &["-H", "Authorization: FileRestoreTicket wrong"])
            .0,
        401
    );
    assert_eq!(
        d.curl(&list, &["-H", &format!("Authorization: Bearer {TICKET}")])
            .0,
        401
    );
    let ex = format!("/api/extract?path={}", q(b"/disk0/raw/raw/etc/passwd"));
    assert_eq!(d.curl(&ex, &[]).0, 401);
    assert_eq!(d.curl("/api/stop", &["-X", "POST"]).0, 401);
    // Bare status: liveness only.
    let (code, body) = d.curl("/api/status", &[]);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["alive"], true);
    assert_eq!(v["api_version"], file_restore_wire::API_VERSION);
    assert!(
        v.get("disks").is_none(),
        "liveness must not reveal disks: {v}"
    );
    assert_eq!(
        d.curl(
            "/api/status",
            &["-H", "Authorization: FileRestoreTicket wrong"]
        )
        .0,
        401
    );
    let (code, body) = d.get("/api/status", &[]);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["disks"][0]["name"], "disk0");
    assert_eq!(v["scan"], "done");
}

/// The proof of the ticket (the host asks for it before it sends the
/// ticket): the HMAC of the host's nonce, without a ticket in the request,
/// and a clear 400 for a missing or malformed nonce.
#[test]
fn hello_proves_the_ticket_for_the_callers_nonce() {
    use file_restore_wire::proof;
    let (_tmp, d, _src) = setup(600);
    for nonce in [[0u8; proof::NONCE_LEN], [0xa5; proof::NONCE_LEN]] {
        let (code, body) = d.curl(&format!("/api/hello?nonce={}", proof::to_hex(&nonce)), &[]);
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let hello: proof::Hello = serde_json::from_slice(&body).unwrap();
        assert_eq!(hello.api_version, file_restore_wire::API_VERSION);
        assert!(proof::verify(TICKET, &nonce, &hello.proof), "{hello:?}");
        assert!(!proof::verify(
            "another-ticket-0123456789",
            &nonce,
            &hello.proof
        ));
    }
    for bad in ["/api/hello", "/api/hello?nonce=abc", "/api/hello?nonce=zz"] {
        let (code, body) = d.curl(bad, &[]);
        assert_eq!(code, 400, "{bad}");
        assert!(error_of(&body).contains("nonce=<64 hex digits>"), "{bad}");
    }
    assert_eq!(d.curl("/api/hello?nonce=00", &["-X", "POST"]).0, 405);
}

fn unpack_and_compare(archive: &[u8], kind: &str, src: &Path, top: &str) {
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join(format!("archive.{kind}"));
    fs::write(&file, archive).unwrap();
    let dest = out.path().join("x");
    fs::create_dir(&dest).unwrap();
    match kind {
        "tar" => run(Command::new("tar")
            .arg("-xf")
            .arg(&file)
            .arg("-C")
            .arg(&dest)),
        "zip" => run(Command::new("python3")
            .args([
                "-c",
                "import sys,zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])",
            ])
            .arg(&file)
            .arg(&dest)),
        _ => unreachable!(),
    };
    let diff = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(src)
        .arg(dest.join(top))
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "{kind} differs from source: {}",
        String::from_utf8_lossy(&diff.stdout)
    );
}

#[test]
fn tar_and_zip_match_the_source_tree() {
    let (_tmp, d, src) = setup(600);
    // tar of a subdirectory, compared byte for byte (symlinks as links).
    let (code, tar) = d.get(
        &format!("/api/extract?path={}&format=tar", q(b"/disk0/raw/raw/a")),
        &[],
    );
    assert_eq!(code, 200);
    unpack_and_compare(&tar, "tar", &src.join("a"), "a");
    // tar of the whole bucket: long paths (pax), hard links, non-UTF-8 names.
    let (code, tar) = d.get(
        &format!("/api/extract?path={}&format=tar", q(b"/disk0/raw/raw")),
        &[],
    );
    assert_eq!(code, 200);
    let out = tempfile::tempdir().unwrap();
    fs::write(out.path().join("t.tar"), &tar).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(out.path().join("t.tar"))
        .arg("-C")
        .arg(out.path()));
    let root = out.path().join("raw");
    fs::remove_dir_all(root.join("lost+found")).unwrap();
    let diff = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(&src)
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    use std::os::unix::fs::MetadataExt;
    let a = fs::metadata(root.join("etc/passwd")).unwrap();
    let b = fs::metadata(root.join("hard-passwd")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hard link kept");
    assert_eq!(
        a.mtime(),
        fs::metadata(src.join("etc/passwd")).unwrap().mtime()
    );
    // zstd-compressed tar.
    let (code, zst) = d.get(
        &format!(
            "/api/extract?path={}&format=tar&zstd=1",
            q(b"/disk0/raw/raw/a")
        ),
        &[],
    );
    assert_eq!(code, 200);
    let plain = zstd::stream::decode_all(zst.as_slice()).unwrap();
    unpack_and_compare(&plain, "tar", &src.join("a"), "a");
    // zip of a directory (zip has no symlinks in Python's extractor: compare files only).
    let (code, zip) = d.get(
        &format!("/api/extract?path={}&format=zip", q(b"/disk0/raw/raw/etc")),
        &[],
    );
    assert_eq!(code, 200);
    unpack_and_compare(&zip, "zip", &src.join("etc"), "etc");
    // A single file as tar.
    let (code, tar) = d.get(
        &format!(
            "/api/extract?path={}&format=tar",
            q(b"/disk0/raw/raw/big.bin")
        ),
        &[],
    );
    assert_eq!(code, 200);
    let out = tempfile::tempdir().unwrap();
    fs::write(out.path().join("t.tar"), &tar).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(out.path().join("t.tar"))
        .arg("-C")
        .arg(out.path()));
    assert_eq!(
        fs::read(out.path().join("big.bin")).unwrap(),
        fs::read(src.join("big.bin")).unwrap()
    );
}

#[test]
fn ninth_concurrent_extract_gets_503() {
    let (_tmp, d, _src) = setup(600);
    let p = format!(
        "http://localhost/api/extract?path={}",
        q(b"/disk0/raw/raw/big.bin")
    );
    // Eight slow downloads (1 KiB/s) hold all slots.
    let mut slow: Vec<Child> = (0..8)
        .map(|_| {
            Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "--limit-rate",
                    "1k",
                    "--unix-socket",
                ])
                .arg(&d.sock)
                .args(["-H", &format!("Authorization: FileRestoreTicket {TICKET}")])
                .arg(&p)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // Wait until all eight hold a slot (status takes none), so that the
    // probe below cannot take a slot from a slow download still connecting.
    let t = Instant::now();
    loop {
        let (_, body) = d.get("/api/status", &[]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if v["active_downloads"] == 8 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the eight slow downloads never all started: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let last = d.get(
        &format!("/api/extract?path={}", q(b"/disk0/raw/raw/etc/passwd")),
        &[],
    );
    assert_eq!(
        last.0,
        503,
        "expected busy, got {} {}",
        last.0,
        String::from_utf8_lossy(&last.1)
    );
    assert!(error_of(&last.1).contains("busy"));
    // Status shows them and keeps the watchdog at its full timeout.
    let (_, body) = d.get("/api/status", &[]);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["active_downloads"], 8);
    for c in &mut slow {
        let _ = c.kill();
        let _ = c.wait();
    }
    // Slots come back once the clients are gone.
    let t = Instant::now();
    loop {
        let (code, _) = d.get(
            &format!("/api/extract?path={}", q(b"/disk0/raw/raw/etc/passwd")),
            &[],
        );
        if code == 200 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "slots never freed");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn watchdog_fires_when_idle() {
    let (_tmp, mut d, _src) = setup(2);
    let (_, body) = d.get("/api/status", &[]);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["timeout_left"].as_u64().unwrap() <= 2);
    // keep-timeout=1 does not reset it; bare status neither.
    let t = Instant::now();
    loop {
        d.get("/api/status?keep-timeout=1", &[]);
        d.curl("/api/status", &[]);
        if let Some(status) = d.child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "watchdog did not fire"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = fs::read_to_string(&d.log).unwrap();
    assert!(log.contains("idle timeout"), "{log}");
}

#[test]
fn dirty_journal_ext4_mounts_read_only() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("data.txt"), "survived the crash\n").unwrap();
    let img = ext4_image(tmp.path(), &src);
    // Leave it as a crashed machine would: needs_recovery set.
    run(Command::new("debugfs")
        .args(["-w", "-R", "feature needs_recovery"])
        .arg(&img));
    let dump = run(Command::new("dumpe2fs").arg("-h").arg(&img));
    assert!(dump.contains("needs_recovery"), "{dump}");
    // A plain read-only mount refuses it: the journal cannot be replayed.
    let probe = Loop::new(&img);
    let mnt = tmp.path().join("plain");
    fs::create_dir(&mnt).unwrap();
    let plain = Command::new("mount")
        .args(["-t", "ext4", "-o", "ro"])
        .arg(&probe.0)
        .arg(&mnt)
        .output()
        .unwrap();
    if plain.status.success() {
        let _ = Command::new("umount").arg(&mnt).status();
        panic!("expected a plain ro mount of a dirty journal to fail on a read-only device");
    }
    drop(probe);
    let d = Daemon::start(tmp.path(), vec![("crashed/raw/raw", Loop::new(&img))], 600);
    let (code, body) = d.get(
        &format!("/api/extract?path={}", q(b"/crashed/raw/raw/data.txt")),
        &[],
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, b"survived the crash\n");
}

#[test]
fn corrupt_superblock_names_the_bucket_and_others_keep_working() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("ok.txt"), "ok\n").unwrap();
    let good = ext4_image(tmp.path(), &src);
    let bad = tmp.path().join("bad.img");
    fs::copy(&good, &bad).unwrap();
    // Keep the magic, wreck the rest of the superblock: detection says ext4,
    // the mount fails.
    let mut sb = fs::read(&bad).unwrap();
    for b in &mut sb[1024..1024 + 56] {
        *b = 0xff;
    }
    fs::write(&bad, &sb).unwrap();
    let d = Daemon::start(
        tmp.path(),
        vec![
            ("disk0/part/1", Loop::new(&bad)),
            ("disk0/part/2", Loop::new(&good)),
        ],
        600,
    );
    let (code, body) = d.get(&format!("/api/list?path={}", q(b"/disk0/part/1")), &[]);
    assert_eq!(code, 422);
    let msg = error_of(&body);
    assert!(
        msg.contains("disk0/part/1") && msg.contains("ext4"),
        "{msg}"
    );
    let (code, body) = d.get(
        &format!("/api/extract?path={}", q(b"/disk0/part/2/ok.txt")),
        &[],
    );
    assert_eq!((code, body.as_slice()), (200, &b"ok\n"[..]));
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn directory_of_100000_entries_streams_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("many.img");
    run(Command::new("truncate").args(["-s", "256M"]).arg(&img));
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-N", "110000"])
        .arg(&img));
    // mkfs.ext4 -d is quadratic on one huge directory: fill it through a
    // read-write mount of the test image instead (the daemon still gets a
    // read-only loop device).
    let rw = tmp.path().join("rw");
    fs::create_dir(&rw).unwrap();
    run(Command::new("mount")
        .args(["-o", "loop"])
        .arg(&img)
        .arg(&rw));
    let many = rw.join("many");
    fs::create_dir(&many).unwrap();
    for i in 0..100_000 {
        fs::File::create(many.join(format!("entry-with-a-longish-name-{i:06}"))).unwrap();
    }
    run(Command::new("umount").arg(&rw));
    let d = Daemon::start(tmp.path(), vec![("disk0/raw/raw", Loop::new(&img))], 600);
    // Warm up (mount, first allocations), then measure the growth of the
    // daemon's peak RSS over a full listing.
    let (code, _) = d.list(b"/disk0/raw/raw");
    assert_eq!(code, 200);
    let before = peak_rss_kib(d.child.id());
    let (code, body) = d.get(
        &format!("/api/list?path={}", q(b"/disk0/raw/raw/many")),
        &[],
    );
    assert_eq!(code, 200);
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(entries.len(), 100_000);
    assert!(entries.iter().all(|e| e["type"] == "f" && e["size"] == 0));
    let after = peak_rss_kib(d.child.id());
    // The JSON is ~15 MB; a daemon that buffered it would grow by more than that.
    assert!(
        after.saturating_sub(before) < 8 * 1024,
        "peak RSS grew by {} KiB listing {} bytes of JSON",
        after - before,
        body.len()
    );
}

/// A FIFO, a socket, a device node and a file in the image (`mkfs.ext4 -d`
/// copies them all). Opening the FIFO for reading would block for ever on a
/// read-only image: a plain extract must refuse it at once, archives must
/// record it without reading, and the daemon must keep serving.
#[test]
fn fifos_and_sockets_never_block_extracts() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let sp = src.join("specials");
    fs::create_dir_all(&sp).unwrap();
    fs::write(sp.join("after.txt"), "after\n").unwrap();
    run(Command::new("mkfifo").arg(sp.join("pipe")));
    run(Command::new("mknod")
        .arg(sp.join("null"))
        .args(["c", "1", "3"]));
    let _sock = std::os::unix::net::UnixListener::bind(sp.join("sock")).unwrap();
    let img = ext4_image(tmp.path(), &src);
    let d = Daemon::start(tmp.path(), vec![("disk0/raw/raw", Loop::new(&img))], 600);
    let limit = ["--max-time", "20"];
    let started = Instant::now();
    for (name, what) in [
        (
            "pipe",
            "is a FIFO (named pipe), which has no data to extract",
        ),
        ("sock", "is a socket, which has no data to extract"),
        (
            "null",
            "is a character device, which has no data to extract",
        ),
    ] {
        let p = format!("/disk0/raw/raw/specials/{name}");
        let (code, body) = d.get(
            &format!("/api/extract?path={}&format=plain", q(p.as_bytes())),
            &limit,
        );
        assert_eq!(code, 400, "{name}: {}", String::from_utf8_lossy(&body));
        let msg = error_of(&body);
        assert!(msg.contains(&p) && msg.contains(what), "{msg}");
    }
    // tar of the directory: the FIFO is an entry of type 'p', the file
    // follows it complete.
    let (code, tar) = d.get(
        &format!(
            "/api/extract?path={}&format=tar",
            q(b"/disk0/raw/raw/specials")
        ),
        &limit,
    );
    assert_eq!(code, 200);
    let mut seen = Vec::new();
    let mut ar = tar::Archive::new(tar.as_slice());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut data = String::new();
        std::io::Read::read_to_string(&mut e, &mut data).unwrap();
        seen.push((name, e.header().entry_type(), data));
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            (
                "specials/".to_string(),
                tar::EntryType::Directory,
                String::new()
            ),
            (
                "specials/after.txt".into(),
                tar::EntryType::Regular,
                "after\n".into()
            ),
            ("specials/null".into(), tar::EntryType::Char, String::new()),
            ("specials/pipe".into(), tar::EntryType::Fifo, String::new()),
        ]
    );
    // The FIFO itself as tar, and the directory as zip.
    let (code, tar) = d.get(
        &format!(
            "/api/extract?path={}&format=tar",
            q(b"/disk0/raw/raw/specials/pipe")
        ),
        &limit,
    );
    assert_eq!(code, 200);
    let mut ar = tar::Archive::new(tar.as_slice());
    let kinds: Vec<_> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().header().entry_type())
        .collect();
    assert_eq!(kinds, [tar::EntryType::Fifo]);
    let (code, zip) = d.get(
        &format!(
            "/api/extract?path={}&format=zip",
            q(b"/disk0/raw/raw/specials")
        ),
        &limit,
    );
    assert_eq!(code, 200);
    assert!(zip.windows(9).any(|w| w == b"after.txt"));
    assert!(started.elapsed() < Duration::from_secs(20));
    // Nothing is left holding a download slot or a thread.
    let (code, v) = d.list(b"/disk0/raw/raw/specials");
    assert_eq!(code, 200);
    assert_eq!(v.as_array().unwrap().len(), 4);
}

/// Whether the daemon closed `s` within `within` (a read returns end of file or an error).
fn closed_within(s: &mut std::os::unix::net::UnixStream, within: Duration) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// A flood of connections: beyond 64 at once the daemon closes new ones at
/// once; a client that starts a request head and stalls, or sends nothing at
/// all, is closed after the header-read timeout (10 s); then the API answers again.
#[test]
fn connection_flood_and_stalled_heads_are_bounded() {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    let (_dir, d, _src) = setup(600);
    let mut held: Vec<UnixStream> = Vec::new();
    for i in 0..64 {
        let mut s = UnixStream::connect(&d.sock).unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
        }
        held.push(s);
    }
    // Let the daemon accept them all, then one more is closed at once.
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = UnixStream::connect(&d.sock).unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(2)),
        "the 65th connection was not closed"
    );
    // The stalled heads are closed after the header-read timeout.
    let t = Instant::now();
    for s in &mut held {
        let left = Duration::from_secs(15).saturating_sub(t.elapsed());
        assert!(
            closed_within(s, left.max(Duration::from_millis(10))),
            "a stalled request head was still open after {:?}",
            t.elapsed()
        );
    }
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let (code, _) = d.get("/api/status", &[]);
    assert_eq!(code, 200);
    let log = fs::read_to_string(&d.log).unwrap();
    assert!(log.contains("64 connections open"), "{log}");
}

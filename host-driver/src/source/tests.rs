//! Tests with real files and the real `qemu-img`.

use super::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn qemu_img(args: &[&str]) {
    let out = Command::new(QEMU_IMG)
        .args(args)
        .output()
        .expect("run qemu-img");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A 1 MiB qcow2 at `path` whose data lives in the external file `data`.
fn create_with_data_file(path: &Path, data: &Path) {
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={}", data.display()),
        path.to_str().unwrap(),
        "1M",
    ]);
}

fn create(path: &Path, fmt: &str) {
    qemu_img(&["create", "-q", "-f", fmt, path.to_str().unwrap(), "1M"]);
}

/// An image whose header names `backing` without qemu-img opening it (`-u`).
fn create_with_backing(path: &Path, backing: &str, backing_fmt: &str) {
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-u",
        "-b",
        backing,
        "-F",
        backing_fmt,
        path.to_str().unwrap(),
        "1M",
    ]);
}

fn err_text(r: Result<impl std::fmt::Debug, SourceError>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn parse_nbd_uris() {
    for ok in [
        "nbd://localhost",
        "nbd://127.0.0.1:10809/export",
        "nbd://[::1]:10809/e",
        "nbd+unix:///export?socket=/run/nbd.sock",
        "nbd+unix://?socket=/tmp/s",
    ] {
        assert_eq!(parse_source(ok).unwrap(), Source::Nbd(ok.into()), "{ok}");
    }
    for bad in [
        "nbd://",
        "nbd://host:0",
        "nbd://host:99999",
        "nbd://host/e?socket=/x",
        "nbd://host/a b",
        "nbd+unix://host/e?socket=/s",
        "nbd+unix:///e",
        "nbd+unix:///e?socket=relative",
    ] {
        let e = err_text(parse_source(bad));
        assert!(e.contains("invalid NBD URI"), "{bad}: {e}");
    }
    let e = err_text(parse_source("http://example/x.qcow2"));
    assert!(e.contains("unsupported URI scheme 'http'"), "{e}");
}

#[test]
fn parse_paths() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.qcow2");
    create(&img, "qcow2");
    let canon = fs::canonicalize(&img).unwrap();
    assert_eq!(
        parse_source(img.to_str().unwrap()).unwrap(),
        Source::Image(canon)
    );
    assert!(matches!(
        parse_source(dir.path().to_str().unwrap()).unwrap(),
        Source::Directory(_)
    ));
    let missing = dir.path().join("nope.qcow2");
    let e = err_text(parse_source(missing.to_str().unwrap()));
    assert!(e.contains(missing.to_str().unwrap()), "{e}");
    let e = err_text(parse_source("/dev/null"));
    assert!(e.contains("neither an image file"), "{e}");
    assert!(matches!(parse_source(""), Err(SourceError::Empty)));
}

#[test]
fn image_file_and_formats() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("drive-scsi0.qcow2");
    create(&q, "qcow2");
    let disks = resolve_images(&parse_source(q.to_str().unwrap()).unwrap()).unwrap();
    assert_eq!(disks.len(), 1);
    assert_eq!(disks[0].name, "drive-scsi0");
    assert_eq!(disks[0].format, "qcow2");
    assert_eq!(disks[0].virtual_size, 1 << 20);
    assert_ne!(disks[0].identity.ino, 0);

    // A raw image named .img is detected as raw, not guessed from its name
    // (it holds an MBR signature, so it is a disk).
    let r = dir.path().join("data.img");
    let mut mbr = vec![0u8; 4096];
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    fs::write(&r, mbr).unwrap();
    let disks = resolve_images(&parse_source(r.to_str().unwrap()).unwrap()).unwrap();
    assert_eq!(disks[0].format, "raw");
    assert_eq!(disks[0].virtual_size, 4096);
}

#[test]
fn unreadable_image_names_file_and_qemu_img_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.qcow2");
    // A qcow2 magic with a nonsense version: qemu-img refuses it.
    let mut bytes = b"QFI\xfb\x00\x00\x00\x63".to_vec();
    bytes.resize(4096, 0xff);
    fs::write(&bad, bytes).unwrap();
    let e = err_text(resolve_images(&Source::Image(bad.clone())));
    assert!(e.contains("not a disk image qemu can read"), "{e}");
    assert!(e.contains("broken.qcow2"), "{e}");
    assert!(e.contains("qemu-img") || e.contains("version"), "{e}");
}

#[test]
fn directory_of_images() {
    let dir = tempfile::tempdir().unwrap();
    create(&dir.path().join("drive-scsi1.raw"), "raw");
    create(&dir.path().join("drive-scsi0.qcow2"), "qcow2");
    fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
    fs::write(dir.path().join(GUEST_CONFIG), "memory: 512\n").unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("drive-scsi0.qcow2"),
        dir.path().join("link.qcow2"),
    )
    .unwrap();
    let src = parse_source(dir.path().to_str().unwrap()).unwrap();
    let disks = resolve_images(&src).unwrap();
    let names: Vec<_> = disks.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["drive-scsi0", "drive-scsi1"]);
    assert_eq!(disks[0].format, "qcow2");
    assert_eq!(disks[1].format, "raw");
    assert_eq!(
        guest_config(&src),
        Some(dir.path().join(GUEST_CONFIG).canonicalize().unwrap())
    );

    let empty = tempfile::tempdir().unwrap();
    fs::write(empty.path().join("readme"), "x").unwrap();
    let e = err_text(resolve_images(&Source::Directory(empty.path().into())));
    assert!(e.contains(empty.path().to_str().unwrap()), "{e}");
    assert!(e.contains(".qcow2, .raw"), "{e}");
}

#[test]
fn vmdk_extents_are_not_separate_disks() {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("disk.vmdk");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vmdk",
        "-o",
        "subformat=twoGbMaxExtentFlat",
        v.to_str().unwrap(),
        "1M",
    ]);
    assert!(dir.path().join("disk-f001.vmdk").exists());
    let disks = resolve_images(&Source::Directory(dir.path().into())).unwrap();
    assert_eq!(disks.len(), 1);
    assert_eq!(disks[0].name, "disk");
    assert_eq!(disks[0].format, "vmdk");
}

/// `<tmp>/store/100/qemu-<epoch>/` snapshot directories.
fn store_snapshots() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let s1 = store.join("100/qemu-1700000000");
    let s2 = store.join("100/qemu-1700086400");
    fs::create_dir_all(&s1).unwrap();
    fs::create_dir_all(&s2).unwrap();
    (tmp, fs::canonicalize(store).unwrap(), s1, s2)
}

#[test]
fn store_layout_and_incremental_chain_accepted() {
    let (_tmp, store, s1, s2) = store_snapshots();
    let base = s1.join("drive-scsi0.qcow2");
    create(&base, "qcow2");
    let top = s2.join("drive-scsi0.qcow2");
    create_with_backing(&top, "../qemu-1700000000/drive-scsi0.qcow2", "qcow2");
    fs::write(s2.join(GUEST_CONFIG), "x").unwrap();
    assert_eq!(store_root_for(&top), store);
    check_backing_chain(&top, "qcow2", &store).unwrap();
    let src = parse_source(s2.to_str().unwrap()).unwrap();
    let disks = resolve_images(&src).unwrap();
    assert_eq!(disks.len(), 1);
    assert_eq!(disks[0].format, "qcow2");
    let img_src = parse_source(top.to_str().unwrap()).unwrap();
    assert_eq!(
        guest_config(&img_src),
        Some(fs::canonicalize(s2.join(GUEST_CONFIG)).unwrap())
    );

    // A plain directory: the store root is the image's own directory, so
    // the same relative backing file is now outside it.
    let plain = tempfile::tempdir().unwrap();
    let p = fs::canonicalize(plain.path()).unwrap();
    assert_eq!(store_root_for(&p.join("x.qcow2")), p);
    let other = tempfile::tempdir().unwrap();
    let b = other.path().join("base.qcow2");
    create(&b, "qcow2");
    let t = p.join("top.qcow2");
    create_with_backing(&t, b.to_str().unwrap(), "qcow2");
    let e = err_text(resolve_images(&Source::Image(t)));
    assert!(e.contains("outside the store root"), "{e}");
}

#[test]
fn outside_backing_files_refused_by_name() {
    let (_tmp, store, s1, _s2) = store_snapshots();
    let cases: &[(&str, &str, &str)] = &[
        ("shadow.qcow2", "/etc/shadow", "outside the store root"),
        (
            "json.qcow2",
            "json:{\"driver\":\"file\",\"filename\":\"/etc/shadow\"}",
            "json: filenames",
        ),
        ("proto.qcow2", "nbd://127.0.0.1:1/x", "protocols"),
        ("proto2.qcow2", "file:/etc/passwd", "protocols"),
        (
            "dotdot.qcow2",
            "../../../../../../etc/passwd",
            "outside the store root",
        ),
        ("missing.qcow2", "nothere.qcow2", "cannot be resolved"),
    ];
    for (name, backing, why) in cases {
        let img = s1.join(name);
        create_with_backing(&img, backing, "raw");
        let e = err_text(check_backing_chain(&img, "qcow2", &store));
        assert!(e.contains(why), "{name}: {e}");
        assert!(e.contains(backing), "{name} names the backing file: {e}");
        assert!(
            e.contains(store.to_str().unwrap()),
            "{name} names the store: {e}"
        );
    }
}

#[test]
fn symlink_and_fifo_members_refused_without_opening() {
    let (tmp, store, s1, _s2) = store_snapshots();
    // A symlink inside the store pointing outside.
    let outside = tmp.path().join("outside.qcow2");
    create(&outside, "qcow2");
    std::os::unix::fs::symlink(&outside, s1.join("link.qcow2")).unwrap();
    let img = s1.join("a.qcow2");
    create_with_backing(&img, "link.qcow2", "qcow2");
    let e = err_text(check_backing_chain(&img, "qcow2", &store));
    assert!(e.contains("link.qcow2") && e.contains("outside"), "{e}");

    // A fifo: if anything opened it for reading, this test would hang.
    for fifo in [s1.join("fifo"), tmp.path().join("fifo-out")] {
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let img = s1.join("f.qcow2");
        let _ = fs::remove_file(&img);
        create_with_backing(&img, fifo.to_str().unwrap(), "raw");
        let start = Instant::now();
        let e = err_text(check_backing_chain(&img, "qcow2", &store));
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(
            e.contains("not a regular file") || e.contains("outside the store root"),
            "{e}"
        );
    }
}

#[test]
fn chain_loop_and_external_files_refused() {
    let (_tmp, store, s1, _s2) = store_snapshots();
    let a = s1.join("a.qcow2");
    let b = s1.join("b.qcow2");
    create_with_backing(&a, "b.qcow2", "qcow2");
    create_with_backing(&b, "a.qcow2", "qcow2");
    let e = err_text(check_backing_chain(&a, "qcow2", &store));
    assert!(e.contains("loops"), "{e}");

    let data = tempfile::tempdir().unwrap();
    let d = data.path().join("data.raw");
    let ext = s1.join("ext.qcow2");
    create_with_data_file(&ext, &d);
    let e = err_text(check_backing_chain(&ext, "qcow2", &store));
    assert!(
        e.contains("external data file") && e.contains("data.raw"),
        "{e}"
    );

    let vmdk = s1.join("evil.vmdk");
    fs::write(
        &vmdk,
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
         createType=\"monolithicFlat\"\n\nRW 2 FLAT \"/etc/hostname\" 0\n",
    )
    .unwrap();
    let e = err_text(check_backing_chain(&vmdk, "vmdk", &store));
    assert!(
        e.contains("vmdk extent") && e.contains("/etc/hostname"),
        "{e}"
    );
}

/// The name from the identities `resolve_images` found.
fn vm_name(src: &Source, disks: &[DiskImage]) -> String {
    let ids: Vec<_> = disks.iter().map(|d| d.identity.clone()).collect();
    vm_name_from_identities(src, &ids)
}

#[test]
fn vm_name_tracks_identity() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk 1.qcow2");
    create(&img, "qcow2");
    let src = parse_source(img.to_str().unwrap()).unwrap();
    let files = find_image_files(&src).unwrap();
    let ids: Vec<_> = files.iter().map(|f| f.identity.clone()).collect();
    let n1 = vm_name_from_identities(&src, &ids);
    let disks = resolve_images(&src).unwrap();
    assert_eq!(
        vm_name(&src, &disks),
        n1,
        "qemu-img resolution, same identities"
    );
    assert!(n1.starts_with("qemu_-"), "{n1}");
    assert!(n1.contains("disk\\x201.qcow2_"), "{n1}");
    assert!(n1.is_ascii() && !n1.contains('/'));

    // Replacing the image (new inode, new mtime) gives a new name.
    std::thread::sleep(Duration::from_millis(20));
    fs::remove_file(&img).unwrap();
    create(&img, "qcow2");
    let disks = resolve_images(&src).unwrap();
    assert_ne!(vm_name(&src, &disks), n1);

    let nbd = Source::Nbd("nbd://localhost/x".into());
    let disks = resolve_images(&nbd).unwrap();
    assert_eq!(disks[0].name, "nbd");
    assert_eq!(disks[0].format, "raw");
    assert!(vm_name(&nbd, &disks).starts_with("qemu_nbd:--localhost-x_"));
}

#[test]
fn snapshot_dir_names() {
    assert!(is_snapshot_dir_name(b"qemu-1700000000"));
    assert!(is_snapshot_dir_name(b"lxc-1"));
    assert!(!is_snapshot_dir_name(b"qemu-"));
    assert!(!is_snapshot_dir_name(b"-123"));
    assert!(!is_snapshot_dir_name(b"Qemu-12"));
    assert!(!is_snapshot_dir_name(b"qemu-12a"));
    // The vmid level must be digits, and the store is never `/`.
    assert_eq!(
        store_root_for(Path::new("/nonexistent/disks/qemu-12/x.qcow2")),
        PathBuf::from("/nonexistent/disks/qemu-12")
    );
    assert_eq!(
        store_root_for(Path::new("/100/qemu-12/x.qcow2")),
        PathBuf::from("/100/qemu-12")
    );
    assert_eq!(
        store_root_for(Path::new("/srv/st/100/qemu-12/x.qcow2")),
        PathBuf::from("/srv/st")
    );
}

/// A fifo at `path`: anything opening it for reading blocks, so a test that
/// would open it hangs instead of passing.
fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// A VMDK descriptor such as a guest can write into its own disk's sector 0.
fn vmdk_descriptor(extent: &str) -> Vec<u8> {
    let mut d = format!(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
         createType=\"monolithicFlat\"\n\nRW 2048 FLAT \"{extent}\" 0\n"
    )
    .into_bytes();
    d.resize(4096, 0);
    d
}

#[test]
fn raw_extension_is_raw_whatever_the_content() {
    // A raw disk whose guest wrote a qcow2 header naming a backing file next
    // to it: the backing file is a fifo, so consulting it would hang, and
    // the chain check would refuse it.
    let dir = tempfile::tempdir().unwrap();
    mkfifo(&dir.path().join("base.qcow2"));
    let disk = dir.path().join("drive-scsi0.raw");
    create_with_backing(&disk, "base.qcow2", "qcow2");
    // And one holding a VMDK descriptor pointing at another VM's disk.
    let other = tempfile::tempdir().unwrap();
    let victim = other.path().join("drive-scsi0.raw");
    create(&victim, "raw");
    let desc = dir.path().join("drive-scsi1.raw");
    fs::write(&desc, vmdk_descriptor(victim.to_str().unwrap())).unwrap();

    let start = Instant::now();
    let disks = resolve_images(&Source::Directory(dir.path().into())).unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
    let got: Vec<_> = disks
        .iter()
        .map(|d| (d.name.as_str(), d.format.as_str()))
        .collect();
    assert_eq!(got, [("drive-scsi0", "raw"), ("drive-scsi1", "raw")]);
    // qemu rounds a raw file's size up to whole sectors.
    let len = fs::metadata(&disk).unwrap().len();
    assert_eq!(disks[0].virtual_size, len.div_ceil(512) * 512);
    assert_eq!(disks[1].virtual_size, 4096);
    let d = format::decide(&disk, disk.parent().unwrap()).unwrap();
    assert_eq!(d.origin, format::Origin::Extension);
    assert!(d.info.backing_filename.is_none());
}

#[test]
fn probed_image_referencing_files_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    create(&base, "qcow2");
    let img = dir.path().join("x.img");
    create_with_backing(&img, "base.qcow2", "qcow2");
    let e = err_text(resolve_images(&Source::Image(img.clone())));
    assert!(e.contains(img.to_str().unwrap()), "{e}");
    assert!(e.contains("backing file 'base.qcow2'"), "{e}");
    assert!(e.contains("rename it") && e.contains(".qcow2"), "{e}");
    // The same file named for its format is a validated chain.
    let named = dir.path().join("x.qcow2");
    fs::rename(&img, &named).unwrap();
    let disks = resolve_images(&Source::Image(named)).unwrap();
    assert_eq!(disks[0].format, "qcow2");

    // An extension-less file with a VMDK descriptor (even one naming a file
    // inside the directory).
    let extent = dir.path().join("x-flat");
    create(&extent, "raw");
    let v = dir.path().join("x");
    fs::write(&v, vmdk_descriptor("x-flat")).unwrap();
    let e = err_text(resolve_images(&Source::Image(v.clone())));
    assert!(
        e.contains(v.to_str().unwrap()) && e.contains("probed as vmdk"),
        "{e}"
    );
    assert!(e.contains("x-flat'") && e.contains("rename it"), "{e}");
    let vi = dir.path().join("y.img");
    fs::write(&vi, vmdk_descriptor("/etc/hostname")).unwrap();
    let e = err_text(resolve_images(&Source::Image(vi)));
    assert!(e.contains("y.img") && e.contains("/etc/hostname"), "{e}");

    // A probed qcow2 with an external data file.
    let d = dir.path().join("data.raw");
    let ext = dir.path().join("ext.img");
    create_with_data_file(&ext, &d);
    let e = err_text(format::decide(&ext, ext.parent().unwrap()));
    assert!(
        e.contains("ext.img") && e.contains("external data file"),
        "{e}"
    );
}

#[test]
fn probed_self_contained_image_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("plain.img");
    create(&img, "qcow2");
    let d = format::decide(&img, img.parent().unwrap()).unwrap();
    assert_eq!(
        (d.format.as_str(), d.origin),
        ("qcow2", format::Origin::Probed)
    );
    let disks = resolve_images(&Source::Directory(dir.path().into())).unwrap();
    assert_eq!(disks[0].format, "qcow2");
}

#[test]
fn extension_contradicted_by_content_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("x.qcow2");
    create(&q, "raw");
    let e = err_text(resolve_images(&Source::Image(q.clone())));
    assert!(e.contains(q.to_str().unwrap()), "{e}");
    assert!(
        e.contains("named as a qcow2 image") && e.contains("its content is raw"),
        "{e}"
    );
    // A qcow2 named .vmdk, a VMDK descriptor named .qcow2.
    let v = dir.path().join("y.vmdk");
    create(&v, "qcow2");
    let e = err_text(format::decide(&v, v.parent().unwrap()));
    assert!(
        e.contains("y.vmdk") && e.contains("vmdk") && e.contains("is qcow2"),
        "{e}"
    );
    let z = dir.path().join("z.qcow2");
    fs::write(&z, vmdk_descriptor("/etc/hostname")).unwrap();
    let e = err_text(format::decide(&z, z.parent().unwrap()));
    assert!(e.contains("z.qcow2") && e.contains("is vmdk"), "{e}");
}

#[test]
fn named_formats_still_work() {
    let dir = tempfile::tempdir().unwrap();
    for (name, fmt, want) in [
        ("a.qcow2", "qcow2", "qcow2"),
        ("b.raw", "raw", "raw"),
        ("c.vdi", "vdi", "vdi"),
        ("d.vhd", "vpc", "vpc"),
        ("e.vhdx", "vhdx", "vhdx"),
        ("f.qed", "qed", "qed"),
    ] {
        let p = dir.path().join(name);
        create(&p, fmt);
        let d = format::decide(&p, p.parent().unwrap()).unwrap();
        assert_eq!(
            (d.format.as_str(), d.origin),
            (want, format::Origin::Extension)
        );
    }
    let fixed = dir.path().join("fixed.vhd");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vpc",
        "-o",
        "subformat=fixed",
        fixed.to_str().unwrap(),
        "1M",
    ]);
    assert_eq!(
        format::decide(&fixed, fixed.parent().unwrap())
            .unwrap()
            .format,
        "vpc"
    );
    let disks = resolve_images(&Source::Directory(dir.path().into())).unwrap();
    assert_eq!(disks.len(), 7);
}

#[test]
fn fifo_is_refused_before_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["p.img", "p.qcow2", "p"] {
        let fifo = dir.path().join(name);
        mkfifo(&fifo);
        let start = Instant::now();
        let e = err_text(resolve_images(&Source::Image(fifo.clone())));
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(
            e.contains("neither an image file") && e.contains(name),
            "{e}"
        );
    }
}

/// `top` backed by `backing` with the backing format removed from its header
/// (as in images made before qemu-img required `-F`), so QEMU probes it.
fn create_with_unrecorded_backing(top: &Path, backing: &str) {
    create_with_backing(top, backing, "raw");
    let mut bytes = fs::read(top).unwrap();
    let magic = 0xE279_2ACAu32.to_be_bytes(); // backing format extension
    let i = bytes
        .windows(4)
        .position(|w| w == magic)
        .expect("backing format extension");
    bytes[i..i + 4].copy_from_slice(&0x1234_5678u32.to_be_bytes()); // unknown: ignored
    fs::write(top, bytes).unwrap();
}

#[test]
fn unrecorded_backing_format_must_match_the_backing_content() {
    let (_tmp, store, s1, s2) = store_snapshots();
    // A raw base whose guest wrote a VMDK descriptor pointing at another VM's
    // disk in the same store: QEMU would probe it as vmdk.
    let other = store.join("101/qemu-1700000000");
    fs::create_dir_all(&other).unwrap();
    create(&other.join("drive-scsi0.raw"), "raw");
    let base = s1.join("drive-scsi0.raw");
    fs::write(
        &base,
        vmdk_descriptor("../../101/qemu-1700000000/drive-scsi0.raw"),
    )
    .unwrap();
    let top = s2.join("drive-scsi0.qcow2");
    create_with_unrecorded_backing(&top, "../qemu-1700000000/drive-scsi0.raw");
    assert!(qemu_img::info(&top, None).unwrap().backing_format.is_none());
    let e = err_text(resolve_images(&Source::Image(top.clone())));
    assert!(
        e.contains("drive-scsi0.raw") && e.contains("content is vmdk"),
        "{e}"
    );
    assert!(e.contains("records no backing format"), "{e}");

    // A real raw base is fine, and so is the recorded format, even over
    // such content.
    create(&base, "raw");
    check_backing_chain(&top, "qcow2", &store).unwrap();
    fs::write(
        &base,
        vmdk_descriptor("../../101/qemu-1700000000/drive-scsi0.raw"),
    )
    .unwrap();
    create_with_backing(&top, "../qemu-1700000000/drive-scsi0.raw", "raw");
    check_backing_chain(&top, "qcow2", &store).unwrap();
}

/// A vmdk descriptor naming a FIFO as its extent: `qemu-img info` would open
/// it and hang until its timeout; our own reading of the descriptor refuses
/// it at once, named (the .vmdk), or refuses the probed .img unopened.
#[test]
fn fifo_extent_refused_before_qemu_img_opens_anything() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("extent.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for name in ["disk.vmdk", "disk.img"] {
        let img = dir.path().join(name);
        fs::write(&img, vmdk_descriptor("extent.fifo")).unwrap();
        let start = Instant::now();
        let e = err_text(resolve_images(&Source::Image(img.clone())));
        let took = start.elapsed();
        assert!(took < Duration::from_secs(2), "{name}: took {took:?}: {e}");
        assert!(e.contains(name) && e.contains("extent.fifo"), "{name}: {e}");
        assert!(
            e.contains("not a regular file") || e.contains("references other files"),
            "{name}: {e}"
        );
    }
}

//! Modes, owners, times and special files, by default and with
//! `--same-owner`.

use super::*;

#[test]
fn devices_need_root_and_same_owner() {
    let mut h = header(b"null", EntryType::Char, 0, 0o666, None);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, io::empty()).unwrap();
    let bytes = b.into_inner().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let stats = unpack(&bytes, &tmp.path().join("a"), &UnpackOptions::default()).unwrap();
    assert_eq!((stats.skipped_special, stats.devices), (1, 0));
    assert!(!tmp.path().join("a/null").exists());
    if unsafe { libc::geteuid() } == 0 {
        let opts = UnpackOptions {
            same_owner: true,
            ..Default::default()
        };
        let stats = unpack(&bytes, &tmp.path().join("b"), &opts).unwrap();
        assert_eq!(stats.devices, 1);
        let m = fs::symlink_metadata(tmp.path().join("b/null")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), libc::makedev(1, 3));
    }
}

/// What `file-restore extract` unpacks with by default: no set-id bits, no
/// special files, the umask applied, files owned by whoever runs it.
#[test]
fn default_unpack_drops_set_id_bits_and_special_files_and_applies_the_umask() {
    let arch = Arch(vec![
        owned("top/", EntryType::Directory, 0o755, b""),
        owned("top/d/", EntryType::Directory, 0o2775, b""),
        owned("top/d/suid", EntryType::Regular, 0o4755, b"s"),
        owned("top/d/sgid", EntryType::Regular, 0o2755, b"g"),
        owned("top/d/rw", EntryType::Regular, 0o666, b"w"),
        owned("top/d/p", EntryType::Fifo, 0o644, b""),
        owned("top/d/null", EntryType::Char, 0o666, b""),
    ]);
    let bytes = arch.bytes();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("default");
    let opts = UnpackOptions {
        umask: Some(0o027),
        ..crate::sink::extract_unpack_options(false, false)
    };
    let stats = unpack(&bytes, &t, &opts).unwrap();
    assert_eq!(mode_of(&t.join("d")), 0o750);
    assert_eq!(mode_of(&t.join("d/suid")), 0o750);
    assert_eq!(mode_of(&t.join("d/sgid")), 0o750);
    assert_eq!(mode_of(&t.join("d/rw")), 0o640);
    assert!(fs::symlink_metadata(t.join("d/p")).is_err());
    assert!(fs::symlink_metadata(t.join("d/null")).is_err());
    assert_eq!(
        (stats.fifos, stats.devices, stats.skipped_special),
        (0, 0, 2)
    );
    let me = unsafe { libc::geteuid() };
    assert_eq!(fs::metadata(t.join("d/suid")).unwrap().uid(), me);
    let summary = crate::sink::unpack_summary(&stats, false);
    assert!(
        summary.contains("2 special files (devices, FIFOs) skipped (--same-owner creates them)"),
        "{summary}"
    );

    // --same-owner: everything as in the image (owners and devices as root).
    let t = tmp.path().join("same");
    let opts = UnpackOptions {
        umask: Some(0o027),
        ..crate::sink::extract_unpack_options(false, true)
    };
    let stats = unpack(&bytes, &t, &opts).unwrap();
    assert_eq!(mode_of(&t.join("d")), 0o2775);
    assert_eq!(mode_of(&t.join("d/suid")), 0o4755);
    assert_eq!(mode_of(&t.join("d/sgid")), 0o2755);
    assert_eq!(mode_of(&t.join("d/rw")), 0o666);
    assert!(fs::symlink_metadata(t.join("d/p"))
        .unwrap()
        .file_type()
        .is_fifo());
    if me == 0 {
        assert_eq!(
            (stats.fifos, stats.devices, stats.skipped_special),
            (1, 1, 0)
        );
        let m = fs::symlink_metadata(t.join("d/null")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
        let m = fs::metadata(t.join("d/suid")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
    }
}

#[test]
fn existing_directories_keep_their_mode_and_times() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("t");
    fs::create_dir_all(t.join("mine")).unwrap();
    fs::set_permissions(t.join("mine"), fs::Permissions::from_mode(0o700)).unwrap();
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    fs::File::open(t.join("mine"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let bytes = Arch::default()
        .dir("mine/", 0o3777)
        .file("mine/f", b"new")
        // A directory this unpack creates as a parent first, then names.
        .file("later/f", b"x")
        .dir("later/", 0o711)
        .bytes();
    let opts = UnpackOptions {
        umask: Some(0o022),
        ..Default::default()
    };
    let stats = unpack(&bytes, &t, &opts).unwrap();
    assert_eq!(stats.dirs, 2);
    assert_eq!(fs::read(t.join("mine/f")).unwrap(), b"new");
    assert_eq!(mode_of(&t.join("mine")), 0o700);
    // Not the archive's time (1_600_000_000): only the kernel's own update
    // for the new entry.
    let mtime = fs::metadata(t.join("mine")).unwrap().mtime();
    assert_ne!(mtime, 1_600_000_000);
    assert!(mtime > 1_600_000_000, "{mtime}");
    assert_eq!(mode_of(&t.join("later")), 0o711);
    assert_eq!(
        fs::metadata(t.join("later")).unwrap().mtime(),
        1_600_000_000
    );
}

#[test]
fn pax_times() {
    assert_eq!(parse_pax_time("1600000000"), Some((1_600_000_000, 0)));
    assert_eq!(parse_pax_time("1.5"), Some((1, 500_000_000)));
    assert_eq!(parse_pax_time("-1.5"), Some((-2, 500_000_000)));
    assert_eq!(parse_pax_time("1.0000000019"), Some((1, 1)));
    assert_eq!(parse_pax_time("x"), None);
}

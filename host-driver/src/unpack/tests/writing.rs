//! Writing files: a real tree round trip, overwriting, broken streams and a
//! full file system leaving no partial file, zero runs as holes.

use super::*;

/// A realistic tree written with the tar crate's normal builder API and pax
/// headers, unpacked and compared.
#[test]
fn tree_round_trip() {
    let mut b = tar::Builder::new(Vec::new());
    let mut add =
        |name: &str, kind: EntryType, mode: u32, mtime: u64, data: &[u8], link: Option<&str>| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_mtime(mtime);
            h.set_size(data.len() as u64);
            match link {
                Some(l) => b.append_link(&mut h, name, l).unwrap(),
                None => b.append_data(&mut h, name, data).unwrap(),
            }
        };
    add(
        "top/",
        EntryType::Directory,
        0o750,
        1_500_000_000,
        b"",
        None,
    );
    add(
        "top/a.txt",
        EntryType::Regular,
        0o640,
        1_500_000_001,
        b"hello\n",
        None,
    );
    add(
        "top/sub/b.bin",
        EntryType::Regular,
        0o755,
        1_500_000_002,
        &[7u8; 70_000],
        None,
    );
    add(
        "top/l",
        EntryType::Symlink,
        0o777,
        1_500_000_003,
        b"",
        Some("a.txt"),
    );
    add(
        "top/abs",
        EntryType::Symlink,
        0o777,
        1_500_000_003,
        b"",
        Some("/etc/passwd"),
    );
    add(
        "top/h",
        EntryType::Link,
        0o640,
        1_500_000_001,
        b"",
        Some("top/a.txt"),
    );
    add("top/p", EntryType::Fifo, 0o600, 1_500_000_004, b"", None);
    add(
        "top/ro/",
        EntryType::Directory,
        0o555,
        1_500_000_005,
        b"",
        None,
    );
    add(
        "top/ro/f",
        EntryType::Regular,
        0o400,
        1_500_000_006,
        b"ro",
        None,
    );
    let long = format!("top/{}/{}", "d".repeat(120), "n".repeat(120));
    b.append_pax_extensions([
        ("path", long.as_bytes()),
        ("mtime", b"1600000000.5".as_slice()),
    ])
    .unwrap();
    let mut h = header(b"PaxFallbackName", EntryType::Regular, 4, 0o600, None);
    h.set_cksum();
    b.append(&h, b"long".as_slice()).unwrap();
    let bytes = b.into_inner().unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("out");
    let opts = UnpackOptions {
        umask: Some(0o022),
        ..Default::default()
    };
    let stats = unpack(&bytes, &t, &opts).unwrap();
    assert_eq!(
        (
            stats.files,
            stats.dirs,
            stats.symlinks,
            stats.hardlinks,
            stats.fifos,
            stats.skipped_special
        ),
        (4, 2, 2, 1, 0, 1)
    );
    assert_eq!(stats.bytes, 6 + 70_000 + 2 + 4);
    let top = t.join("top");
    assert_eq!(fs::read(top.join("a.txt")).unwrap(), b"hello\n");
    assert_eq!(fs::read(top.join("sub/b.bin")).unwrap(), vec![7u8; 70_000]);
    assert_eq!(fs::read(top.join(&long[4..])).unwrap(), b"long");
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    let mtime = |p: &Path| {
        let m = fs::symlink_metadata(p).unwrap();
        (m.mtime(), m.mtime_nsec())
    };
    assert_eq!(mode(&top), 0o750);
    assert_eq!(mode(&top.join("a.txt")), 0o640);
    assert_eq!(mode(&top.join("sub/b.bin")), 0o755);
    assert_eq!(mode(&top.join("ro")), 0o555);
    assert_eq!(mode(&top.join("ro/f")), 0o400);
    assert_eq!(mtime(&top), (1_500_000_000, 0));
    assert_eq!(mtime(&top.join("a.txt")), (1_500_000_001, 0));
    assert_eq!(mtime(&top.join("ro")), (1_500_000_005, 0));
    assert_eq!(mtime(&top.join("l")), (1_500_000_003, 0));
    assert_eq!(mtime(&top.join(&long[4..])), (1_600_000_000, 500_000_000));
    assert_eq!(fs::read_link(top.join("l")).unwrap(), Path::new("a.txt"));
    assert_eq!(
        fs::read_link(top.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::metadata(top.join("h")).unwrap().ino(),
        fs::metadata(top.join("a.txt")).unwrap().ino()
    );
    // FIFOs are skipped by default, created with same_owner.
    assert!(!top.join("p").exists());
    no_temp_files(&t);
    let t_same = tmp.path().join("same");
    let same = UnpackOptions {
        same_owner: true,
        ..Default::default()
    };
    let stats = unpack(&bytes, &t_same, &same).unwrap();
    assert_eq!((stats.fifos, stats.skipped_special), (1, 0));
    assert!(fs::symlink_metadata(t_same.join("top/p"))
        .unwrap()
        .file_type()
        .is_fifo());

    // --strip-components 1
    let t2 = tmp.path().join("stripped");
    let opts = UnpackOptions {
        strip_components: 1,
        ..Default::default()
    };
    unpack(&bytes, &t2, &opts).unwrap();
    assert_eq!(fs::read(t2.join("a.txt")).unwrap(), b"hello\n");
    assert_eq!(fs::read(t2.join("h")).unwrap(), b"hello\n");
    assert!(!t2.join("top").exists());
}

#[test]
fn existing_files_not_overwritten_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("t");
    fs::create_dir(&t).unwrap();
    fs::write(t.join("a.txt"), b"old").unwrap();
    let bytes = Arch::default().file("a.txt", b"new").bytes();
    let e = unpack(&bytes, &t, &UnpackOptions::default()).unwrap_err();
    assert!(matches!(e, UnpackError::Exists { .. }));
    assert!(
        e.to_string().contains(t.join("a.txt").to_str().unwrap()),
        "{e}"
    );
    assert!(e.to_string().contains("--overwrite"), "{e}");
    assert_eq!(fs::read(t.join("a.txt")).unwrap(), b"old");
    no_temp_files(&t);

    let over = UnpackOptions {
        overwrite: true,
        ..Default::default()
    };
    unpack(&bytes, &t, &over).unwrap();
    assert_eq!(fs::read(t.join("a.txt")).unwrap(), b"new");

    // Overwriting a symlink replaces the link, not the file it points to.
    let victim = tmp.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    fs::remove_file(t.join("a.txt")).unwrap();
    std::os::unix::fs::symlink(&victim, t.join("a.txt")).unwrap();
    unpack(&bytes, &t, &over).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(fs::symlink_metadata(t.join("a.txt")).unwrap().is_file());

    // A directory is never replaced by a file.
    fs::create_dir(t.join("d")).unwrap();
    let bytes = Arch::default().file("d", b"x").bytes();
    let e = unpack(&bytes, &t, &over).unwrap_err();
    assert!(matches!(e, UnpackError::Exists { .. }), "{e}");
}

#[test]
fn truncated_or_broken_streams_leave_no_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = vec![0xabu8; 100 * 1024];
    let bytes = Arch::default()
        .file("first", b"complete")
        .file("big", &data)
        .bytes();

    // Cut in the middle of the second file's data.
    let t = tmp.path().join("mid");
    let e = unpack(&bytes[..50 * 1024], &t, &UnpackOptions::default()).unwrap_err();
    assert!(matches!(e, UnpackError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("big"), "{e}");
    assert!(!t.join("big").exists());
    assert_eq!(fs::read(t.join("first")).unwrap(), b"complete");
    no_temp_files(&t);

    // Cut exactly after the last entry, before the end-of-archive marker.
    let t = tmp.path().join("boundary");
    let end = 512 + 512 + 512 + data.len();
    let e = unpack(&bytes[..end], &t, &UnpackOptions::default()).unwrap_err();
    assert!(matches!(e, UnpackError::Truncated { .. }), "{e}");
    // Cut inside a header.
    let t = tmp.path().join("in-header");
    let e = unpack(&bytes[..1024 + 100], &t, &UnpackOptions::default()).unwrap_err();
    assert!(matches!(e, UnpackError::Truncated { .. }), "{e}");
    // The whole archive is fine.
    let t = tmp.path().join("whole");
    unpack(&bytes, &t, &UnpackOptions::default()).unwrap();
    assert_eq!(fs::read(t.join("big")).unwrap(), data);

    // A stream that fails (a dropped connection).
    struct Failing<'a>(&'a [u8]);
    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "connection reset",
                ));
            }
            let n = buf.len().min(self.0.len()).min(4096);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let t = tmp.path().join("broken");
    let e = unpack_tar(Failing(&bytes[..60 * 1024]), &t, &UnpackOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("big") && msg.contains("connection reset"),
        "{msg}"
    );
    assert!(!t.join("big").exists());
    no_temp_files(&t);
}

/// A real full file system: a 1 MiB tmpfs (mounting needs root).
#[test]
fn full_disk_gives_no_space_error_and_no_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("note: cannot mount a tmpfs (not root?): ENOSPC test skipped");
        return;
    }
    let bytes = Arch::default()
        .file("dir/huge", &vec![1u8; 2 << 20])
        .bytes();
    let result = unpack(&bytes, &mnt.join("target"), &UnpackOptions::default());
    let leftovers = tree(&mnt);
    let _ = Command::new("umount").arg(&mnt).status();
    let e = result.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, UnpackError::NoSpace { .. }), "{msg}");
    assert!(
        msg.contains("no space left on device while writing"),
        "{msg}"
    );
    assert!(msg.contains("target/dir/huge"), "{msg}");
    assert_eq!(leftovers, ["target", "target/dir"]);
}

/// Runs of zero blocks become holes: an 8 MiB file of mostly zeros takes a
/// few blocks on disk and reads back exactly.
#[test]
fn zero_runs_are_written_as_holes() {
    let mut data = vec![0u8; 8 << 20];
    data[..5000].fill(1); // a partly filled second block
    data[4 << 20..(4 << 20) + 10].fill(2);
    data[(8 << 20) - 100] = 3; // data in the last block
    let mut tail_zeros = vec![0u8; 3 << 20]; // ends in a hole
    tail_zeros[10] = 4;
    let bytes = Arch::default()
        .file("sparse", &data)
        .file("tail", &tail_zeros)
        .file("odd", &[0u8; 5000]) // no full block
        .bytes();
    let tmp = tempfile::tempdir().unwrap();
    let stats = unpack(&bytes, tmp.path(), &UnpackOptions::default()).unwrap();
    assert_eq!(stats.bytes, (data.len() + tail_zeros.len() + 5000) as u64);
    for (name, want) in [("sparse", &data), ("tail", &tail_zeros)] {
        let p = tmp.path().join(name);
        assert_eq!(&fs::read(&p).unwrap(), want, "{name}");
        let m = fs::metadata(&p).unwrap();
        assert_eq!(m.len(), want.len() as u64);
        // Allocated: at most a few 4 KiB blocks (plus file-system slack).
        assert!(
            m.blocks() * 512 <= 64 * 1024,
            "{name}: {} blocks",
            m.blocks()
        );
    }
    assert_eq!(fs::read(tmp.path().join("odd")).unwrap(), vec![0u8; 5000]);
}

//! Unpacker tests with crafted archives (header names written as raw bytes,
//! so `..` and absolute names get through the builder), real files and a
//! real full file system.

use super::*;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::process::Command;
use tar::EntryType;

fn header(name: &[u8], kind: EntryType, size: u64, mode: u32, link: Option<&[u8]>) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    {
        let u = h.as_ustar_mut().unwrap();
        u.name.fill(0);
        u.name[..name.len()].copy_from_slice(name);
        if let Some(l) = link {
            u.linkname[..l.len()].copy_from_slice(l);
        }
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    h
}

#[derive(Default)]
struct Arch(Vec<(tar::Header, Vec<u8>)>);

impl Arch {
    fn file(mut self, name: &str, data: &[u8]) -> Self {
        let h = header(
            name.as_bytes(),
            EntryType::Regular,
            data.len() as u64,
            0o644,
            None,
        );
        self.0.push((h, data.to_vec()));
        self
    }
    fn dir(mut self, name: &str, mode: u32) -> Self {
        self.0.push((
            header(name.as_bytes(), EntryType::Directory, 0, mode, None),
            vec![],
        ));
        self
    }
    fn symlink(mut self, name: &str, target: &str) -> Self {
        let h = header(
            name.as_bytes(),
            EntryType::Symlink,
            0,
            0o777,
            Some(target.as_bytes()),
        );
        self.0.push((h, vec![]));
        self
    }
    fn hardlink(mut self, name: &str, target: &str) -> Self {
        let h = header(
            name.as_bytes(),
            EntryType::Link,
            0,
            0o644,
            Some(target.as_bytes()),
        );
        self.0.push((h, vec![]));
        self
    }
    fn bytes(self) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (h, data) in self.0 {
            b.append(&h, data.as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    }
}

fn unpack(bytes: &[u8], target: &Path, opts: &UnpackOptions) -> Result<UnpackStats, UnpackError> {
    unpack_tar(bytes, target, opts)
}

/// All names below `dir`, recursively, relative to it.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn no_temp_files(dir: &Path) {
    let t = tree(dir);
    assert!(
        !t.iter().any(|n| n.contains(".file-restore-")),
        "temp files left: {t:?}"
    );
}

#[test]
fn escaping_names_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let abs = format!("/tmp/file-restore-abs-{}/x", std::process::id());
    for name in [
        "../escape",
        abs.as_str(),
        "a/../../x",
        "./../y",
        "a/b/../../../z",
    ] {
        let bytes = Arch::default().file(name, b"evil").bytes();
        let e = unpack(&bytes, &target, &UnpackOptions::default()).unwrap_err();
        assert!(matches!(e, UnpackError::Refused { .. }), "{name}: {e}");
        assert!(e.to_string().contains(name), "{name}: {e}");
    }
    for p in ["escape", "x", "y", "z"] {
        assert!(!tmp.path().join(p).exists(), "{p} escaped");
    }
    assert!(!Path::new(&abs).exists());
    assert!(tree(&target).is_empty(), "{:?}", tree(&target));
}

#[test]
fn symlink_cannot_redirect_later_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let target = tmp.path().join("target");
    for link_target in [outside.to_str().unwrap(), "/tmp", "../outside"] {
        let _ = fs::remove_dir_all(&target);
        let bytes = Arch::default()
            .symlink("link", link_target)
            .file("link/file", b"evil")
            .bytes();
        let e = unpack(&bytes, &target, &UnpackOptions::default()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("link/file") && msg.contains("symlink"),
            "{msg}"
        );
        assert!(!outside.join("file").exists());
        assert!(!Path::new("/tmp/file").exists() || link_target != "/tmp");
        // The symlink itself was created, and is not followed.
        let l = fs::read_link(target.join("link")).unwrap();
        assert_eq!(l, Path::new(link_target));
    }
    // A directory entry over the symlink does not follow it either.
    let _ = fs::remove_dir_all(&target);
    let bytes = Arch::default()
        .symlink("d", outside.to_str().unwrap())
        .dir("d/", 0o777)
        .file("d/sub/f", b"x")
        .bytes();
    let e = unpack(&bytes, &target, &UnpackOptions::default()).unwrap_err();
    assert!(matches!(e, UnpackError::Exists { .. }), "{e}");
    assert_eq!(
        fs::metadata(&outside).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert!(fs::read_dir(&outside).unwrap().next().is_none());
}

#[test]
fn hard_links_only_to_unpacked_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("preexisting"), b"mine").unwrap();
    for (name, link) in [
        ("pw", "/etc/passwd"),
        ("up", "../outside"),
        ("pre", "preexisting"),
        ("later", "not-yet"),
    ] {
        let bytes = Arch::default()
            .hardlink(name, link)
            .file("not-yet", b"")
            .bytes();
        let e = unpack(&bytes, &target, &UnpackOptions::default()).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, UnpackError::Refused { .. }), "{msg}");
        assert!(msg.contains(name) && msg.contains(link), "{msg}");
        assert!(!target.join(name).exists());
    }
    // A link through a symlinked directory is refused too.
    let bytes = Arch::default()
        .file("real/f", b"data")
        .symlink("s", "real")
        .hardlink("h", "s/f")
        .bytes();
    let e = unpack(&bytes, &target, &UnpackOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("not an entry unpacked earlier"),
        "{e}"
    );
    let bytes = Arch::default()
        .file("a", b"data")
        .hardlink("b", "a")
        .bytes();
    let t2 = tmp.path().join("t2");
    let stats = unpack(&bytes, &t2, &UnpackOptions::default()).unwrap();
    assert_eq!(stats.hardlinks, 1);
    let (a, b) = (
        fs::metadata(t2.join("a")).unwrap(),
        fs::metadata(t2.join("b")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino());
}

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

#[test]
fn normalize_rules() {
    let n = |s: &str, k| normalize(Path::new(s), k);
    assert_eq!(n("a/./b/", 0).unwrap(), Some(PathBuf::from("a/b")));
    assert_eq!(n("./", 0).unwrap(), None);
    assert_eq!(n("top/x", 1).unwrap(), Some(PathBuf::from("x")));
    assert_eq!(n("top/", 1).unwrap(), None);
    assert!(n("a/..", 0).is_err());
    assert!(n("/a", 0).is_err());
}

#[test]
fn pax_times() {
    assert_eq!(parse_pax_time("1600000000"), Some((1_600_000_000, 0)));
    assert_eq!(parse_pax_time("1.5"), Some((1, 500_000_000)));
    assert_eq!(parse_pax_time("-1.5"), Some((-2, 500_000_000)));
    assert_eq!(parse_pax_time("1.0000000019"), Some((1, 1)));
    assert_eq!(parse_pax_time("x"), None);
}

/// A raw entry: header with owner ids, for the metadata tests.
fn owned(name: &str, kind: EntryType, mode: u32, data: &[u8]) -> (tar::Header, Vec<u8>) {
    let mut h = header(name.as_bytes(), kind, data.len() as u64, mode, None);
    h.set_uid(1234);
    h.set_gid(5678);
    if matches!(kind, EntryType::Char) {
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    }
    h.set_cksum();
    (h, data.to_vec())
}

fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
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
fn target_symlink_is_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    fs::create_dir(&real).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let bytes = Arch::default().file("f", b"x").bytes();
    let e = unpack(&bytes, &link, &UnpackOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, UnpackError::Target { .. }), "{msg}");
    assert!(msg.contains("symlink, which is not followed"), "{msg}");
    assert!(fs::read_dir(&real).unwrap().next().is_none());
}

#[test]
fn chmod_at_does_not_follow_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim");
    fs::write(&victim, b"v").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&victim, tmp.path().join("l")).unwrap();
    fs::write(tmp.path().join("plain"), b"p").unwrap();
    let dir: OwnedFd = fs::File::open(tmp.path()).unwrap().into();
    let e = fsops::chmod_at(dir.as_fd(), c"l", 0o4777).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    assert_eq!(mode_of(&victim), 0o600);
    fsops::chmod_at(dir.as_fd(), c"plain", 0o640).unwrap();
    assert_eq!(mode_of(&tmp.path().join("plain")), 0o640);
}

/// A tar stream whose first header is an extension header of `size` bytes
/// (data included), followed by a small file.
fn with_extension(kind: EntryType, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_path("././@Ext").unwrap();
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, data).unwrap();
    let (fh, fdata) = owned("after", EntryType::Regular, 0o644, b"after");
    b.append(&fh, fdata.as_slice()).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn extension_headers_are_capped() {
    let tmp = tempfile::tempdir().unwrap();
    let big = vec![b'a'; (guard::MAX_EXTENSION + 1) as usize];
    for (kind, what) in [
        (EntryType::XHeader, "pax extended"),
        (EntryType::XGlobalHeader, "pax global"),
        (EntryType::GNULongName, "GNU long name"),
        (EntryType::GNULongLink, "GNU long link"),
    ] {
        let t = tmp.path().join(what.replace(' ', "-"));
        let e = unpack(&with_extension(kind, &big), &t, &UnpackOptions::default()).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, UnpackError::TooLarge { .. }), "{msg}");
        let limit =
            format!("a {what} header of 1048577 bytes, more than the limit of 1048576 bytes");
        assert!(msg.contains(&limit), "{msg}");
        // The whole chain, as the CLI prints it, says it once.
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(chain.matches(&limit).count(), 1, "{chain}");
        assert!(!t.join("after").exists());
    }
    // Just under the limit is fine: a pax header with a large comment.
    let mut rec = pax_record("comment", &vec![b'c'; 1_000_000]);
    rec.extend_from_slice(&pax_record("mtime", b"1234"));
    let t = tmp.path().join("ok");
    unpack(
        &with_extension(EntryType::XHeader, &rec),
        &t,
        &UnpackOptions::default(),
    )
    .unwrap();
    assert_eq!(fs::read(t.join("after")).unwrap(), b"after");
    assert_eq!(fs::metadata(t.join("after")).unwrap().mtime(), 1234);
}

/// One pax record, its length counting itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// A pax size override (> 8 GiB in real archives) keeps the guard in step
/// with the tar crate: the entry after it is read from the right place.
#[test]
fn pax_size_is_followed() {
    let data = vec![b'z'; 3000];
    let mut h = header(b"sized", EntryType::Regular, 5, 0o644, None);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("size", b"3000".as_slice())])
        .unwrap();
    b.append(&h, data.as_slice()).unwrap();
    let (fh, fdata) = owned("next", EntryType::Regular, 0o644, b"next");
    b.append(&fh, fdata.as_slice()).unwrap();
    let bytes = b.into_inner().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    unpack(&bytes, tmp.path(), &UnpackOptions::default()).unwrap();
    assert_eq!(fs::read(tmp.path().join("sized")).unwrap(), data);
    assert_eq!(fs::read(tmp.path().join("next")).unwrap(), b"next");
}

#[test]
fn gnu_sparse_entries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // Type 'S', with the name in the header and in a GNU long name.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::GNUSparse);
    h.set_size(0);
    h.set_mode(0o644);
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut h, "disk.img", io::empty()).unwrap();
    let long = format!("{}/disk.img", "d".repeat(150));
    let mut h2 = tar::Header::new_gnu();
    h2.set_entry_type(EntryType::GNUSparse);
    h2.set_size(0);
    h2.set_mode(0o644);
    let mut b2 = tar::Builder::new(Vec::new());
    b2.append_data(&mut h2, &long, io::empty()).unwrap();
    for (bytes, name) in [
        (b.into_inner().unwrap(), "disk.img"),
        (b2.into_inner().unwrap(), long.as_str()),
    ] {
        let t = tmp.path().join("s");
        let e = unpack(&bytes, &t, &UnpackOptions::default()).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, UnpackError::Refused { .. }), "{msg}");
        assert!(
            msg.contains(&format!("refused archive entry '{name}'"))
                && msg.contains("GNU sparse tar entries are not supported"),
            "{msg}"
        );
        assert!(tree(&t).is_empty());
    }
    // pax sparse (GNU.sparse.* records, format 1.0).
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([
        ("GNU.sparse.major", b"1".as_slice()),
        ("GNU.sparse.minor", b"0".as_slice()),
        ("GNU.sparse.name", b"big.img".as_slice()),
        ("GNU.sparse.realsize", b"1048576".as_slice()),
    ])
    .unwrap();
    let h = header(
        b"GNUSparseFile.0/big.img",
        EntryType::Regular,
        0,
        0o644,
        None,
    );
    b.append(&h, io::empty()).unwrap();
    let t = tmp.path().join("pax");
    let e = unpack(&b.into_inner().unwrap(), &t, &UnpackOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("refused archive entry 'GNUSparseFile.0/big.img'")
            && msg.contains("GNU sparse"),
        "{msg}"
    );
    assert!(tree(&t).is_empty());
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

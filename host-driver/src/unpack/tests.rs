//! Unpacker tests with crafted archives (header names written as raw bytes,
//! so `..` and absolute names get through the builder), real files and a
//! real full file system.

use super::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::process::Command;

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
    let stats = unpack(&bytes, &t, &UnpackOptions::default()).unwrap();
    assert_eq!(
        (
            stats.files,
            stats.dirs,
            stats.symlinks,
            stats.hardlinks,
            stats.fifos
        ),
        (4, 2, 2, 1, 1)
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
    assert!(fs::symlink_metadata(top.join("p"))
        .unwrap()
        .file_type()
        .is_fifo());
    no_temp_files(&t);

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
fn devices_need_root_and_preserve_owner() {
    let mut h = header(b"null", EntryType::Char, 0, 0o666, None);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, io::empty()).unwrap();
    let bytes = b.into_inner().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let stats = unpack(&bytes, &tmp.path().join("a"), &UnpackOptions::default()).unwrap();
    assert_eq!((stats.skipped, stats.devices), (1, 0));
    assert!(!tmp.path().join("a/null").exists());
    if unsafe { libc::geteuid() } == 0 {
        let opts = UnpackOptions {
            preserve_owner: true,
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

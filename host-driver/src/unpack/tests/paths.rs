//! Where entries may land: escaping names, symlinks and hard links that
//! would lead out of TARGET, a TARGET that is a symlink, path normalization.

use super::*;

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

//! The cpio writer against GNU cpio, and the ticket archive.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use file_restore_initramfs::{ticket_cpio, CpioWriter};

use crate::newc;

/// Unpacks `archive` into `dir` with the system cpio, as the brief's tools would.
fn unpack(archive: &[u8], dir: &Path) {
    let mut child = Command::new("cpio")
        .args(["-idm", "--no-absolute-filenames", "--quiet"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run cpio (apt-get install cpio)");
    child.stdin.take().unwrap().write_all(archive).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "cpio -idm failed: {status}");
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Whether this process may create device nodes (root).
fn is_root(dir: &Path) -> bool {
    let probe = dir.join(".uid-probe");
    fs::write(&probe, b"").unwrap();
    let uid = fs::metadata(&probe).unwrap().uid();
    fs::remove_file(probe).unwrap();
    uid == 0
}

#[test]
fn gnu_cpio_unpacks_what_we_write() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source.bin");
    let big: Vec<u8> = (0..100_003u32).map(|i| (i * 7 % 256) as u8).collect();
    fs::write(&source, &big).unwrap();

    let mut writer = CpioWriter::new(Vec::new());
    writer.add_dir("/etc", 0o755).unwrap();
    writer.add_dir("/etc/sub", 0o700).unwrap();
    writer.add_file("/etc/a", 0o644, b"a").unwrap();
    writer.add_file("etc/bb", 0o600, b"bb").unwrap();
    writer.add_file("/etc/ccc", 0o640, b"ccc").unwrap();
    writer.add_file("/etc/empty", 0o444, b"").unwrap();
    writer.add_file("/etc/sub/four", 0o755, b"four").unwrap();
    writer.add_file_from_path("/init", 0o755, &source).unwrap();
    writer.add_symlink("/etc/link", "sub/four").unwrap();
    writer.add_dir("/dev", 0o755).unwrap();
    writer.add_char_device("/dev/null", 0o666, 1, 3).unwrap();
    let archive = writer.finish().unwrap();
    assert_eq!(archive.len() % 512, 0, "archive padded to 512");

    // Our own reader checks alignment, inode uniqueness and the reproducible fields.
    let entries = newc::parse(&archive);
    assert_eq!(entries.len(), 11);
    let mut inodes: Vec<u32> = entries.iter().map(|e| e.ino).collect();
    inodes.sort_unstable();
    inodes.dedup();
    assert_eq!(inodes.len(), entries.len(), "inode numbers unique");
    assert!(entries
        .iter()
        .all(|e| e.uid == 0 && e.gid == 0 && e.mtime == 0));
    assert!(entries.iter().all(|e| !e.name.starts_with('/')));
    let null = entries.iter().find(|e| e.name == "dev/null").unwrap();
    assert_eq!((null.mode, null.rdev), (0o020_666, (1, 3)));

    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    unpack(&archive, &out);
    let expect = [
        ("etc/a", &b"a"[..], 0o644),
        ("etc/bb", b"bb", 0o600),
        ("etc/ccc", b"ccc", 0o640),
        ("etc/empty", b"", 0o444),
        ("etc/sub/four", b"four", 0o755),
    ];
    for (name, content, perms) in expect {
        let path = out.join(name);
        assert_eq!(fs::read(&path).unwrap(), content, "{name}");
        assert_eq!(mode(&path), perms, "{name}");
    }
    assert_eq!(fs::read(out.join("init")).unwrap(), big);
    assert_eq!(mode(&out.join("init")), 0o755);
    assert_eq!(mode(&out.join("etc/sub")), 0o700);
    assert_eq!(
        fs::read_link(out.join("etc/link")).unwrap(),
        Path::new("sub/four")
    );
    assert_eq!(fs::read(out.join("etc/link")).unwrap(), b"four");
    if is_root(tmp.path()) {
        let meta = fs::symlink_metadata(out.join("dev/null")).unwrap();
        assert!(meta.file_type().is_char_device());
        assert_eq!(meta.rdev(), (1 << 8) | 3, "device 1:3");
        assert_eq!(meta.mode() & 0o7777, 0o666);
    } else {
        eprintln!("note: not root, device node check skipped");
    }
}

#[test]
fn ticket_archive_round_trip() {
    let ticket = "0123456789abcdef0123456789abcdef";
    let archive = ticket_cpio(ticket);
    assert_eq!(archive.len() % 512, 0);

    let tmp = tempfile::tempdir().unwrap();
    unpack(&archive, tmp.path());
    let path = tmp.path().join("ticket");
    assert_eq!(fs::read_to_string(&path).unwrap(), ticket);
    assert_eq!(mode(&path), 0o400);
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "only the ticket"
    );
}

#[test]
fn ticket_appends_to_a_base_archive() {
    let mut base = CpioWriter::new(Vec::new());
    base.add_dir("/etc", 0o755).unwrap();
    base.add_file("/etc/odd", 0o644, b"12345").unwrap();
    let mut image = base.finish().unwrap();
    image.extend_from_slice(&ticket_cpio("secret"));

    // The kernel's unpacker reads both archives; check they chain with aligned headers.
    let entries = newc::parse(&image);
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["etc", "etc/odd", "ticket"]);
    let ticket = &entries[2];
    assert_eq!(
        (ticket.mode, ticket.data.as_slice()),
        (0o100_400, &b"secret"[..])
    );
    assert!(entries[..2].iter().all(|e| e.ino != ticket.ino));
}

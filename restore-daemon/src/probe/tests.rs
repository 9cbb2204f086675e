//! Real images made by the real tools, probed through the linked libblkid.

use super::*;
use std::path::PathBuf;
use std::process::Command;

/// A sparse file of `mib` MiB in `dir`.
fn blank(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    p
}

fn run(cmd: &str, args: &[&str], file: &Path) {
    let out = Command::new(cmd)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} ({e}): run scripts/deps.sh"));
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn names_type_label_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let ext4 = blank(dir.path(), "ext4.img", 16);
    run("mkfs.ext4", &["-q", "-F", "-L", "Daten"], &ext4);
    let d = detect(&ext4).unwrap();
    assert_eq!(
        (d.fstype, d.name.as_str(), d.label.as_deref()),
        (FsType::Ext4, "ext4", Some("Daten"))
    );
    assert_eq!(d.unmountable_reason(), None);

    let fat = blank(dir.path(), "fat.img", 40);
    run("mkfs.vfat", &["-F", "32", "-n", "EFI"], &fat);
    let d = detect(&fat).unwrap();
    assert_eq!(
        (d.fstype, d.label.as_deref(), d.version.as_deref()),
        (FsType::Vfat, Some("EFI"), Some("FAT32"))
    );

    let swap = blank(dir.path(), "swap.img", 8);
    run("mkswap", &["-q"], &swap);
    let d = detect(&swap).unwrap();
    assert_eq!((d.fstype, d.name.as_str()), (FsType::Swap, "swap"));
    assert!(d.unmountable_reason().unwrap().contains("swap"));
}

/// Filesystems of older and other systems: named and mapped to their drivers.
#[test]
fn names_older_filesystems() {
    let dir = tempfile::tempdir().unwrap();
    let minix = blank(dir.path(), "minix.img", 8);
    run("mkfs.minix", &["-3"], &minix);
    let bfs = blank(dir.path(), "bfs.img", 8);
    run("mkfs.bfs", &[], &bfs);
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("a.txt"), "a").unwrap();
    let cramfs = dir.path().join("cramfs.img");
    let st = Command::new("mkfs.cramfs")
        .arg(&tree)
        .arg(&cramfs)
        .output()
        .expect("mkfs.cramfs: run scripts/deps.sh");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    for (img, t, name) in [
        (&minix, FsType::Minix, "minix"),
        (&bfs, FsType::Bfs, "bfs"),
        (&cramfs, FsType::Cramfs, "cramfs"),
    ] {
        let d = detect(img).unwrap();
        assert_eq!((d.fstype, d.name.as_str()), (t, name));
        assert_eq!(d.unmountable_reason(), None);
    }
}

/// What the guest cannot read is still named, with the reason.
#[test]
fn names_what_it_cannot_mount() {
    let dir = tempfile::tempdir().unwrap();
    let journal = blank(dir.path(), "journal.img", 8);
    run(
        "mke2fs",
        &["-q", "-F", "-O", "journal_dev", "-b", "4096"],
        &journal,
    );
    let d = detect(&journal).unwrap();
    assert_eq!((d.fstype, d.name.as_str()), (FsType::Unknown, "jbd"));
    assert_eq!(
        d.unmountable_reason().unwrap(),
        "it is an ext3/ext4 external journal and holds no files"
    );

    let zeros = blank(dir.path(), "zeros.img", 4);
    let d = detect(&zeros).unwrap();
    assert_eq!(d, Detected::unknown());
    assert_eq!(
        d.unmountable_reason().unwrap(),
        "no known filesystem was found on it"
    );
    assert!(detect(&dir.path().join("missing")).is_err());
}

/// BitLocker volumes made by Windows (../shared/corpus, when present): named,
/// not mistaken for the FAT boot sector they imitate.
#[test]
fn names_bitlocker() {
    let corpus =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/bitlocker/volumes.tar.xz");
    if !corpus.exists() {
        eprintln!(
            "skipped: {} is absent (the shared corpus is not part of the project)",
            corpus.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new("tar")
        .arg("-xJf")
        .arg(&corpus)
        .arg("-C")
        .arg(dir.path())
        .arg("bitlk-aes-xts-128.raw")
        .status()
        .unwrap();
    assert!(st.success());
    let d = detect(&dir.path().join("bitlk-aes-xts-128.raw")).unwrap();
    assert_eq!(
        (d.fstype, d.name.as_str(), d.version.as_deref()),
        (FsType::Bitlocker, "BitLocker", Some("2"))
    );
    assert!(d.unmountable_reason().unwrap().contains("--key-file"));
}

#[test]
fn firmware_raid_members() {
    // DDF members go to mdadm like md's own; IMSM ones are named with the reason.
    assert_eq!(fs_type_of("ddf_raid_member"), FsType::MdMember);
    assert_eq!(fs_type_of("gfs2"), FsType::Gfs2);
    assert_eq!(fs_type_of("ocfs2"), FsType::Ocfs2);
    let isw = Detected {
        name: "isw_raid_member".into(),
        ..Detected::unknown()
    };
    assert!(isw.unmountable_reason().unwrap().contains("serial numbers"));
}

#[test]
fn zfs_members_go_to_openzfs() {
    assert_eq!(fs_type_of("zfs_member"), FsType::ZfsMember);
    assert!(FsType::ZfsMember
        .unmountable_reason()
        .unwrap()
        .contains("zfs/<pool>/<dataset>"));
}

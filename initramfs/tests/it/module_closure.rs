//! The module closure on a synthetic module tree.

use std::fs;
use std::io::Write;
use std::path::Path;

use file_restore_initramfs::{module_closure, read_module, ModuleSet};

const MODULES_DEP: &str = "\
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/fs/xfs/xfs.ko.zst: kernel/lib/libcrc32c.ko
kernel/lib/libcrc32c.ko:
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/drivers/md/dm-mod.ko:
kernel/drivers/md/dm-bufio.ko: kernel/drivers/md/dm-mod.ko
kernel/drivers/md/dm-snapshot.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko
kernel/fs/f2fs/f2fs.ko:
kernel/crypto/crc32_generic.ko:
";

const MODULES_SOFTDEP: &str = "\
# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crypto-crc32c
softdep libcrc32c pre: crc32c
softdep dm_snapshot post: dm_zero
softdep xfs pre: not-there
softdep f2fs pre: crc32
";

const MODULES_ALIAS: &str = "\
alias crypto-crc32c crc32c_intel
alias crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias crc32c crc32c_generic
alias crc32 crc32_generic
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
";

const MODULES_BUILTIN: &str = "\
kernel/fs/fat/vfat.ko
kernel/lib/crc32.ko
kernel/lib/crc-ccitt.ko
";

fn synthetic_tree(dir: &Path) {
    fs::write(dir.join("modules.dep"), MODULES_DEP).unwrap();
    fs::write(dir.join("modules.softdep"), MODULES_SOFTDEP).unwrap();
    fs::write(dir.join("modules.alias"), MODULES_ALIAS).unwrap();
    fs::write(dir.join("modules.builtin"), MODULES_BUILTIN).unwrap();
    for line in MODULES_DEP.lines() {
        let path = dir.join(line.split(':').next().unwrap());
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let content = format!("module {}", path.display()).into_bytes();
        let data = if path.extension().is_some_and(|e| e == "xz") {
            let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
            enc.write_all(&content).unwrap();
            enc.finish().unwrap()
        } else if path.extension().is_some_and(|e| e == "zst") {
            zstd::encode_all(&content[..], 3).unwrap()
        } else {
            content
        };
        fs::write(path, data).unwrap();
    }
}

fn position(set: &ModuleSet, name: &str) -> usize {
    set.modules
        .iter()
        .position(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} not in closure {:?}", names(set)))
}

fn names(set: &ModuleSet) -> Vec<&str> {
    set.modules.iter().map(|m| m.name.as_str()).collect()
}

#[test]
fn closure_orders_dedups_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    synthetic_tree(tmp.path());
    let wanted = [
        "virtio_blk",
        "dm-snapshot",
        "ext4",
        "xfs",
        "dm_mod",
        "vfat",
        "nope",
        "virtio-blk",
        "nope",
        "crc-ccitt",
        "f2fs",
    ];
    let set = module_closure(tmp.path(), &wanted).unwrap();

    let all = names(&set);
    let mut unique = all.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "each module once: {all:?}");
    assert_eq!(set.missing, ["nope"]);
    assert_eq!(set.builtin, ["vfat", "crc_ccitt"]);

    let before = |a: &str, b: &str| {
        assert!(
            position(&set, a) < position(&set, b),
            "{a} must load before {b}: {all:?}"
        );
    };
    before("virtio_ring", "virtio");
    before("virtio", "virtio_blk");
    before("dm_mod", "dm_bufio");
    before("dm_bufio", "dm_snapshot");
    for dep in ["crc16", "mbcache", "jbd2", "crc32c_generic", "crc32c_intel"] {
        before(dep, "ext4");
    }
    before("crc32c_generic", "libcrc32c");
    before("libcrc32c", "xfs");
    // `f2fs pre: crc32` means the crypto driver (an alias), not the built-in lib/crc32.
    before("crc32_generic", "f2fs");
    // Only what was asked for and its dependencies.
    assert_eq!(all.len(), 16, "{all:?}");

    let blk = &set.modules[position(&set, "virtio_blk")];
    assert!(blk.path.ends_with("kernel/drivers/block/virtio_blk.ko.xz"));
    let decompressed = read_module(&blk.path).unwrap();
    assert!(
        decompressed.starts_with(b"module "),
        "xz module decompressed"
    );
    let xfs = &set.modules[position(&set, "xfs")];
    assert!(
        read_module(&xfs.path).unwrap().starts_with(b"module "),
        "zstd module decompressed"
    );
}

#[test]
fn aliases_can_be_wanted() {
    let tmp = tempfile::tempdir().unwrap();
    synthetic_tree(tmp.path());
    let set = module_closure(tmp.path(), &["crypto-crc32c"]).unwrap();
    assert_eq!(names(&set), ["crc32c_intel", "crc32c_generic"]);
    assert!(set.missing.is_empty());
}

#[test]
fn missing_index_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let err = module_closure(tmp.path(), &["ext4"]).unwrap_err();
    assert!(err.to_string().contains("modules.dep"), "{err}");
}

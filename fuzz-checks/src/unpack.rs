//! The `unpack` target: arbitrary bytes as the tar stream a guest sends.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use file_restore::unpack::{unpack_tar, UnpackOptions};

const CANARY: &[u8] = b"canary: nothing may change me\n";

/// Unpacks `data[1..]` as a tar stream into a fresh TARGET, with options
/// from `data[0]` (bit 0 overwrite, bit 1 same-owner, bits 2-3 strip
/// components, bit 4: TARGET already holds a file and two symlinks that lead
/// out of it, `esc -> ../outside` and `abs -> /…/outside`).
///
/// Whatever the archive says, and whether unpacking succeeds or not, nothing
/// may appear next to TARGET, and the directory `outside` next to it (with a
/// canary file) must be left exactly as it was: no new entry, no changed
/// content, mode or link count.
pub fn unpack(data: &[u8]) {
    let Some((&flags, tar)) = data.split_first() else {
        return;
    };
    let sandbox = tempfile::Builder::new()
        .prefix("fuzz-unpack.")
        .tempdir()
        .expect("create a sandbox directory");
    let root = sandbox.path();
    let target = root.join("target");
    let outside = root.join("outside");
    fs::create_dir(&outside).expect("create outside/");
    fs::write(outside.join("canary"), CANARY).expect("write the canary");
    fs::set_permissions(outside.join("canary"), fs::Permissions::from_mode(0o600))
        .expect("chmod the canary");
    if flags & 0x10 != 0 {
        fs::create_dir(&target).expect("create target/");
        fs::write(target.join("existing"), b"old").expect("write target/existing");
        symlink("../outside", target.join("esc")).expect("symlink esc");
        symlink(&outside, target.join("abs")).expect("symlink abs");
    }
    let before = snapshot(&outside);
    let opts = UnpackOptions {
        overwrite: flags & 1 != 0,
        same_owner: flags & 2 != 0,
        strip_components: usize::from((flags >> 2) & 3),
        umask: Some(0o022),
    };
    let _ = unpack_tar(tar, &target, &opts);

    let names: BTreeSet<String> = fs::read_dir(root)
        .expect("read the sandbox")
        .map(|e| {
            e.expect("sandbox entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let want: BTreeSet<String> = ["outside", "target"].map(String::from).into();
    assert_eq!(names, want, "something was created next to TARGET");
    assert_eq!(
        snapshot(&outside),
        before,
        "the directory next to TARGET changed"
    );
    make_removable(&target);
}

/// What must not change in `outside`: its mode, its entries, and the
/// canary's type, mode, link count and content.
fn snapshot(outside: &Path) -> (u32, Vec<String>, u32, u64, Vec<u8>) {
    let dir_mode = fs::symlink_metadata(outside).expect("stat outside").mode();
    let mut names: Vec<String> = fs::read_dir(outside)
        .expect("read outside")
        .map(|e| {
            e.expect("outside entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    let canary = outside.join("canary");
    let meta = fs::symlink_metadata(&canary).expect("stat the canary");
    let content = fs::read(&canary).expect("read the canary");
    (dir_mode, names, meta.mode(), meta.nlink(), content)
}

/// Gives every directory below `dir` (symlinks not followed) owner rwx, so
/// that the sandbox can be removed whatever modes the archive set.
fn make_removable(dir: &Path) {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            make_removable(&e.path());
        }
    }
}

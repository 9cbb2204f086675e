//! The `image_header` target: arbitrary bytes as a disk image file.
//!
//! file-restore has no qcow2 or vmdk parser of its own: `qemu-img` reads the
//! headers, and the host decides the format and checks every file a header
//! names (`file_restore::source`). So this target runs that whole decision,
//! real `qemu-img` included, on a guest-written header, and checks the one
//! property that matters: an image that is accepted makes QEMU open no file
//! outside the store. It is slow (several `qemu-img` runs per input) and
//! libFuzzer sees the coverage of the Rust side only.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use file_restore::source::{resolve_images, Source};

/// Extensions the image is written with (`img`: probed, see
/// `file_restore::source::format`).
const EXTENSIONS: &[&str] = &["qcow2", "vmdk", "img"];

/// Writes `data[1..]` as `store/disk.EXT` (EXT from `data[0]`), next to a
/// raw `store/base.raw` a backing file or extent may name, with
/// `secret.raw` just outside the store, and resolves it as SOURCE.
///
/// When it is accepted, `qemu-img info --backing-chain` of the image must
/// name only files inside the store: every member, backing file, external
/// data file and vmdk extent.
pub fn image_header(data: &[u8]) {
    let Some((&selector, image)) = data.split_first() else {
        return;
    };
    // Our own header readers on the raw bytes: never a panic, and every name
    // they report lies inside the input.
    use file_restore::source::header::{descriptor_references, qcow2_references};
    for r in qcow2_references(image)
        .into_iter()
        .chain(descriptor_references(image))
    {
        assert!(
            r.name.len() <= image.len() * 3 + 3,
            "a name longer than the input"
        );
    }
    let sandbox = tempfile::Builder::new()
        .prefix("fuzz-image.")
        .tempdir()
        .expect("create a sandbox directory");
    let store = sandbox.path().join("store");
    fs::create_dir(&store).expect("create store/");
    fs::write(store.join("base.raw"), vec![0u8; 64 * 1024]).expect("write base.raw");
    fs::write(sandbox.path().join("secret.raw"), vec![0u8; 64 * 1024]).expect("write secret");
    let ext = EXTENSIONS[usize::from(selector) % EXTENSIONS.len()];
    let path = store.join(format!("disk.{ext}"));
    fs::write(&path, image).expect("write the image");

    let Ok(disks) = resolve_images(&Source::Image(path.clone())) else {
        return;
    };
    let store = fs::canonicalize(&store).expect("canonical store");
    for disk in disks {
        for file in files_qemu_opens(&disk.path, &disk.format) {
            assert!(
                !file.starts_with("json:") && !file.contains("://"),
                "accepted image names '{file}'"
            );
            let canonical = fs::canonicalize(&file).unwrap_or_else(|_| PathBuf::from(&file));
            assert!(
                canonical.starts_with(&store),
                "accepted image {} ({}) makes QEMU open '{file}', outside the store",
                disk.path.display(),
                disk.format
            );
        }
    }
}

/// The files `qemu-img info --backing-chain` reports for `path` opened as
/// `format`: absolute where QEMU reports them relative to their image.
/// Empty when qemu-img fails (then QEMU would not start on it either).
fn files_qemu_opens(path: &Path, format: &str) -> Vec<String> {
    let out = Command::new("qemu-img")
        .args([
            "info",
            "--backing-chain",
            "--output=json",
            "-U",
            "-f",
            format,
        ])
        .arg(path)
        .output()
        .expect("run qemu-img");
    if !out.status.success() {
        return Vec::new();
    }
    let chain: serde_json::Value = serde_json::from_slice(&out.stdout).expect("qemu-img JSON");
    let mut files = Vec::new();
    for member in chain.as_array().into_iter().flatten() {
        let Some(name) = member["filename"].as_str() else {
            continue;
        };
        let dir = Path::new(name)
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        let relative_to_dir = |f: &str| {
            if f.starts_with('/') || f.starts_with("json:") || f.contains("://") {
                f.to_string()
            } else {
                dir.join(f).to_string_lossy().into_owned()
            }
        };
        files.push(name.to_string());
        if let Some(b) = member["backing-filename"].as_str() {
            files.push(relative_to_dir(b));
        }
        let data = &member["format-specific"]["data"];
        if let Some(f) = data["data-file"].as_str() {
            files.push(relative_to_dir(f));
        }
        for extent in data["extents"].as_array().into_iter().flatten() {
            if let Some(f) = extent["filename"].as_str() {
                files.push(relative_to_dir(f));
            }
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The oracle itself: it must see a backing file outside the store,
    /// which `resolve_images` refuses.
    #[test]
    fn the_oracle_sees_a_backing_file_outside_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret.raw");
        fs::write(&secret, vec![0u8; 4096]).unwrap();
        fs::create_dir(dir.path().join("store")).unwrap();
        let img = dir.path().join("store/disk.qcow2");
        let out = Command::new("qemu-img")
            .args([
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                "../secret.raw",
            ])
            .arg(&img)
            .arg("1M")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let files = files_qemu_opens(&img, "qcow2");
        let secret = fs::canonicalize(secret).unwrap();
        assert!(
            files
                .iter()
                .any(|f| fs::canonicalize(f).ok().as_ref() == Some(&secret)),
            "{files:?}"
        );
        assert!(resolve_images(&Source::Image(img)).is_err());
    }
}

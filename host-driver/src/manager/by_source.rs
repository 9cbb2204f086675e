//! `stop SOURCE` and the source columns of `status`: which VMs serve a
//! SOURCE, and how a SOURCE is shown.

use super::vm_map::LockedMap;
use super::{ManagerError, MapSlot};
use crate::source::{self, Source};
use std::path::Path;

/// The names of the VMs serving `arg` read as a SOURCE; an error naming it
/// when it is no SOURCE or no VM serves it.
pub(super) fn names_for_source(
    map: &LockedMap<MapSlot>,
    arg: &str,
) -> Result<Vec<String>, ManagerError> {
    let running = || {
        let names = map.names();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    let src = source::parse_source(arg).map_err(|e| ManagerError::NoSuchVm {
        name: arg.to_owned(),
        why: e.to_string(),
        running: running(),
    })?;
    // Every VM of this SOURCE: the one `list` would reuse and any older
    // one started before the image was replaced (the key also hashes the
    // images' identities).
    let names: Vec<String> = map
        .iter()
        .filter(|(_, slot)| matches!(slot, MapSlot::Running(e) if e.source == src))
        .map(|(n, _)| n.clone())
        .collect();
    if names.is_empty() {
        return Err(ManagerError::NoVmForSource {
            arg: arg.to_owned(),
            resolved: source_text(&src),
            running: running(),
        });
    }
    Ok(names)
}

/// The SOURCE as text: the canonical path or the URI.
pub(super) fn source_text(src: &Source) -> String {
    match src {
        Source::Image(p) | Source::Directory(p) => p.display().to_string(),
        Source::Nbd(uri) => uri.clone(),
    }
}

/// The short name `status` shows: an image's file name, a directory's last
/// two components (`<vmid>/qemu-<epoch>` of a backup snapshot), a URI as is.
pub(super) fn source_label(src: &Source) -> String {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    match src {
        Source::Image(p) => name(p).unwrap_or_else(|| p.display().to_string()),
        Source::Directory(p) => match (p.parent().and_then(name), name(p)) {
            (Some(parent), Some(dir)) => format!("{parent}/{dir}"),
            (None, Some(dir)) => dir,
            _ => p.display().to_string(),
        },
        Source::Nbd(uri) => uri.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::VmEntry;
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn labels_are_short() {
        let img = Source::Image(PathBuf::from("/var/lib/vz/images/100/vm-100-disk-0.qcow2"));
        assert_eq!(source_label(&img), "vm-100-disk-0.qcow2");
        let dir = Source::Directory(PathBuf::from("/mnt/store/100/qemu-1700000000"));
        assert_eq!(source_label(&dir), "100/qemu-1700000000");
        assert_eq!(source_label(&Source::Directory(PathBuf::from("/"))), "/");
        let nbd = Source::Nbd("nbd://host:10809/disk".into());
        assert_eq!(source_label(&nbd), "nbd://host:10809/disk");
        assert_eq!(source_text(&dir), "/mnt/store/100/qemu-1700000000");
    }

    fn entry(source: Source) -> VmEntry {
        let vm: crate::vm::RunningVm = serde_json::from_value(serde_json::json!({
            "pid": 1, "sidecar_pid": null, "addr": {"kind": "hybrid_unix", "path": "/x", "port": 1024},
            "ticket": "t", "accel": "tcg", "run_dir": "/r", "console_log": "/r/c",
            "qmp_socket": "/r/q", "started_at": 0
        }))
        .expect("a RunningVm");
        VmEntry {
            vm,
            source,
            images: Vec::new(),
            guest_config: None,
        }
    }

    #[test]
    fn stop_finds_every_vm_of_a_source_and_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("a.raw");
        let other = dir.path().join("b.raw");
        std::fs::write(&img, b"").unwrap();
        std::fs::write(&other, b"").unwrap();
        let canon = std::fs::canonicalize(&img).unwrap();
        let mut map: LockedMap<MapSlot> =
            LockedMap::lock(dir.path(), Duration::from_secs(1)).unwrap();
        map.insert("old", MapSlot::Running(entry(Source::Image(canon.clone()))));
        map.insert("new", MapSlot::Running(entry(Source::Image(canon.clone()))));
        map.insert(
            "nbd",
            MapSlot::Running(entry(Source::Nbd("nbd://h/e".into()))),
        );
        // Relative and absolute spellings of the path resolve alike.
        let mut names = names_for_source(&map, img.to_str().unwrap()).unwrap();
        names.sort();
        assert_eq!(names, ["new", "old"]);
        assert_eq!(names_for_source(&map, "nbd://h/e").unwrap(), ["nbd"]);
        let e = names_for_source(&map, other.to_str().unwrap()).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, ManagerError::NoVmForSource { .. }) && msg.contains("b.raw"),
            "{msg}"
        );
        let e = names_for_source(&map, "no-such-vm-or-file").unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, ManagerError::NoSuchVm { .. })
                && msg.contains("no running VM named 'no-such-vm-or-file'")
                && msg.contains("nbd, new, old"),
            "{msg}"
        );
    }
}

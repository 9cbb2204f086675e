//! What the web UI may reach: the SOURCE arguments, and the images and
//! backup snapshots found under each `--root` directory. A request names a
//! source by its id (the canonical path or NBD URI); an id that is not in
//! the catalog is refused, whatever the request says, so nothing outside
//! the given SOURCEs and roots can be opened.
//!
//! A root is scanned two levels deep without following symlinks: image
//! files in it, directories holding image files (`<vmid>/` with its disks),
//! and their subdirectories holding image files (`<vmid>/qemu-<epoch>/`,
//! backup snapshots), grouped by the first directory (the VM id) and sorted
//! newest first.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::Serialize;

use crate::source::store::{children, epoch_of, is_image_name as is_image, mtime};
use crate::source::{self, Source};

/// At most this many directory entries are looked at per root scan.
const MAX_SCAN: usize = 20_000;

/// One source the UI offers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CatalogEntry {
    /// What requests name it by: its canonical path or NBD URI.
    pub id: String,
    /// A short name for display.
    pub label: String,
    /// `source` (a command-line SOURCE), `image` or `snapshot`.
    pub kind: &'static str,
    /// The group it is shown in: `command line`, or the VM id directory
    /// (empty for images lying in the root itself).
    pub group: String,
    /// The root it was found under (None for command-line SOURCEs).
    pub root: Option<String>,
    /// The snapshot's time (the `-<epoch>` of its directory name) or the
    /// file's mtime, seconds since the epoch.
    pub time: Option<i64>,
}

/// The sources and roots of one `serve`.
#[derive(Debug)]
pub struct Catalog {
    fixed: Vec<CatalogEntry>,
    roots: Vec<PathBuf>,
    found: RwLock<Vec<CatalogEntry>>,
}

fn utf8(p: &Path) -> Result<String, String> {
    p.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{} is not valid UTF-8", p.display()))
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The sources under one (canonical) root.
fn scan_root(root: &Path) -> Vec<CatalogEntry> {
    let mut budget = MAX_SCAN;
    let mut out = Vec::new();
    let root_text = root.to_string_lossy().into_owned();
    let mut add = |path: &Path, kind, group: String, time| {
        // Only paths that are still inside the root once resolved.
        let Ok(canon) = path.canonicalize() else {
            return;
        };
        let Ok(id) = utf8(&canon) else { return };
        if !canon.starts_with(root) {
            return;
        }
        out.push(CatalogEntry {
            id,
            label: name_of(path),
            kind,
            group,
            root: Some(root_text.clone()),
            time,
        });
    };
    let (files, dirs) = children(root, &mut budget);
    for f in files.iter().filter(|f| is_image(f)) {
        add(f, "image", String::new(), mtime(f));
    }
    for d in &dirs {
        let (files, subdirs) = children(d, &mut budget);
        if files.iter().any(|f| is_image(f)) {
            add(
                d,
                "snapshot",
                name_of(d),
                epoch_of(&name_of(d)).or(mtime(d)),
            );
        }
        for s in &subdirs {
            let (files, _) = children(s, &mut budget);
            if files.iter().any(|f| is_image(f)) {
                add(
                    s,
                    "snapshot",
                    name_of(d),
                    epoch_of(&name_of(s)).or(mtime(s)),
                );
            }
        }
    }
    out.sort_by(|a, b| {
        a.group
            .cmp(&b.group)
            .then(b.time.cmp(&a.time))
            .then(a.label.cmp(&b.label))
    });
    out
}

impl Catalog {
    /// Checks every SOURCE (as `list` reads it) and root, and scans the roots.
    pub fn new(sources: &[String], roots: &[PathBuf]) -> Result<Catalog, String> {
        let mut fixed = Vec::new();
        for arg in sources {
            let src = source::parse_source(arg).map_err(|e| format!("SOURCE {arg}: {e}"))?;
            let (id, label) = match &src {
                Source::Image(p) | Source::Directory(p) => (utf8(p)?, name_of(p)),
                Source::Nbd(uri) => (uri.clone(), uri.clone()),
            };
            if !fixed.iter().any(|e: &CatalogEntry| e.id == id) {
                fixed.push(CatalogEntry {
                    id,
                    label,
                    kind: "source",
                    group: "command line".into(),
                    root: None,
                    time: None,
                });
            }
        }
        let mut canon_roots = Vec::new();
        for r in roots {
            let c = r
                .canonicalize()
                .map_err(|e| format!("--root {}: {e}", r.display()))?;
            if !c.is_dir() {
                return Err(format!("--root {}: not a directory", r.display()));
            }
            utf8(&c)?;
            canon_roots.push(c);
        }
        let catalog = Catalog {
            fixed,
            roots: canon_roots,
            found: RwLock::new(Vec::new()),
        };
        catalog.rescan();
        Ok(catalog)
    }

    /// Scans the roots again (images may have appeared or gone).
    pub fn rescan(&self) {
        let found: Vec<CatalogEntry> = self.roots.iter().flat_map(|r| scan_root(r)).collect();
        *self.found.write().unwrap_or_else(|p| p.into_inner()) = found;
    }

    /// Every source: the command line's first, then the roots' in groups.
    pub fn entries(&self) -> Vec<CatalogEntry> {
        let found = self.found.read().unwrap_or_else(|p| p.into_inner());
        self.fixed.iter().chain(found.iter()).cloned().collect()
    }

    /// Whether `id` is a source of this catalog (the roots rescanned once
    /// when it is not found at first).
    pub fn contains(&self, id: &str) -> bool {
        let known = |c: &Catalog| {
            c.fixed.iter().any(|e| e.id == id)
                || c.found
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .any(|e| e.id == id)
        };
        if known(self) {
            return true;
        }
        if self.roots.is_empty() {
            return false;
        }
        self.rescan();
        known(self)
    }

    /// The versions of source `id`, newest first: a snapshot's whole group
    /// (the snapshots of the same VM id directory under the same root), or
    /// the source alone. Empty when `id` is not in the catalog.
    pub fn versions_of(&self, id: &str) -> Vec<CatalogEntry> {
        let all = self.entries();
        let Some(me) = all.iter().find(|e| e.id == id).cloned() else {
            return Vec::new();
        };
        if me.kind != "snapshot" {
            return vec![me];
        }
        let mut group: Vec<CatalogEntry> = all
            .into_iter()
            .filter(|e| e.kind == "snapshot" && e.root == me.root && e.group == me.group)
            .collect();
        group.sort_by(|a, b| b.time.cmp(&a.time).then(a.label.cmp(&b.label)));
        group
    }

    /// Whether exactly one SOURCE was given on the command line (its disks
    /// are then shown without a click).
    pub fn single_source(&self) -> Option<&str> {
        match self.fixed.as_slice() {
            [one] => Some(&one.id),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_scanned_grouped_newest_first_and_confined() {
        let t = tempfile::tempdir().expect("tmp");
        let root = t.path().join("store");
        for d in [
            "100/qemu-1700000000",
            "100/qemu-1700003600",
            "101/qemu-1600000000",
        ] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
            std::fs::write(root.join(d).join("drive-scsi0.qcow2"), b"x").expect("write");
        }
        std::fs::write(root.join("loose.raw"), b"x").expect("write");
        std::fs::write(root.join("notes.txt"), b"x").expect("write");
        std::fs::create_dir_all(t.path().join("outside")).expect("mkdir");
        std::fs::write(t.path().join("outside/secret.qcow2"), b"x").expect("write");
        std::os::unix::fs::symlink(t.path().join("outside"), root.join("102")).expect("link");
        let c = Catalog::new(&[], std::slice::from_ref(&root)).expect("catalog");
        let labels: Vec<(String, String)> = c
            .entries()
            .into_iter()
            .map(|e| (e.group, e.label))
            .collect();
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(g, l)| (g.as_str(), l.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("", "loose.raw"),
                ("100", "qemu-1700003600"),
                ("100", "qemu-1700000000"),
                ("101", "qemu-1600000000"),
            ]
        );
        let canon = root.canonicalize().expect("canon");
        assert!(c.contains(&canon.join("100/qemu-1700000000").to_string_lossy()));
        assert!(!c.contains(&t.path().join("outside").to_string_lossy()));
        assert!(!c.contains(&canon.join("102").to_string_lossy()));
        assert!(!c.contains("/etc/passwd"));
        assert_eq!(c.single_source(), None);
        let id = |d: &str| canon.join(d).to_string_lossy().into_owned();
        let labels =
            |id: &str| -> Vec<String> { c.versions_of(id).into_iter().map(|e| e.label).collect() };
        assert_eq!(
            labels(&id("100/qemu-1700000000")),
            ["qemu-1700003600", "qemu-1700000000"]
        );
        assert_eq!(labels(&id("101/qemu-1600000000")), ["qemu-1600000000"]);
        assert_eq!(labels(&id("loose.raw")), ["loose.raw"]);
        assert!(c.versions_of("/etc/passwd").is_empty());
    }
}

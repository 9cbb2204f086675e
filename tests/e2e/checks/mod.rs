//! The checks the cases are made of: listings at every level, trees through
//! listings, tar, zip and unpacking compared with manifests, symlink traps,
//! error answers.
//!
//! This index holds what every check shares (the SOURCE under test, virtual
//! paths, extract calls, expected errors); the checks are by kind in
//! `listing`, `archives` and `traps`, re-exported here. Imports: `Ctx` from
//! the suite's root and the `file_restore_tests` library, nothing of
//! `groups`.

mod archives;
mod listing;
mod traps;

pub use archives::{check_tar, check_unpack, check_zip};
pub use listing::{check_levels, check_listing_tree, check_unmountable};
pub use traps::{check_traps, has_traps};

use crate::Ctx;
use anyhow::{bail, ensure, Context, Result};
use file_restore_tests::cli::join;
use file_restore_tests::manifest::Manifest;
use file_restore_tests::sys::{self, show, Output};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A SOURCE argument: an image file or a snapshot directory, and its disks.
#[derive(Debug, Clone)]
pub struct Src {
    /// For messages: the fixture key or a label.
    pub label: String,
    /// The SOURCE argument.
    pub path: PathBuf,
    /// Disk name (in VM paths) → fixture image key.
    pub disks: BTreeMap<String, String>,
}

impl Src {
    /// An image file of the fixtures, its disk named by the file stem.
    pub fn image(ctx: &Ctx, key: &str) -> Src {
        let path = ctx.fx.path(key);
        Src {
            label: key.to_string(),
            disks: BTreeMap::from([(stem(&path), key.to_string())]),
            path,
        }
    }

    /// A snapshot directory of the fixtures (from the index).
    pub fn snapshot(ctx: &Ctx, dir: &str) -> Result<Src> {
        let snap = ctx
            .fx
            .snapshots()
            .into_iter()
            .find(|s| s["dir"] == dir)
            .with_context(|| format!("fixtures.json has no snapshot {dir}"))?;
        let disks = snap["disks"]
            .as_object()
            .context("snapshot without disks")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        Ok(Src {
            label: dir.to_string(),
            path: ctx.fx.path(dir),
            disks,
        })
    }

    /// The only disk's name.
    pub fn disk(&self) -> &str {
        self.disks.keys().next().map(String::as_str).unwrap_or("")
    }
}

/// A file's stem (the CLI names a disk after it).
pub fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `/disk/bucket[/rel]`.
pub fn vpath(disk: &str, bucket: &str, rel: &[u8]) -> Vec<u8> {
    join(format!("/{disk}/{bucket}").as_bytes(), rel)
}

/// The entries of `m` below `dir`, relative to it.
pub fn sub_manifest(m: &Manifest, dir: &[u8]) -> Manifest {
    if dir.is_empty() {
        return m.clone();
    }
    let prefix = [dir, b"/"].concat();
    m.values()
        .filter(|e| e.path.starts_with(&prefix))
        .map(|e| {
            let mut e = e.clone();
            e.path = e.path[prefix.len()..].to_vec();
            if let Some(h) = &e.hardlink_of {
                e.hardlink_of = h.strip_prefix(&prefix[..]).map(<[u8]>::to_vec);
            }
            (e.path.clone(), e)
        })
        .collect()
}

/// Expects an error exit (code `code`) whose stderr contains every needle
/// (case-insensitive), and returns the output.
pub fn expect_error(out: Output, code: i32, needles: &[&str]) -> Result<Output> {
    ensure!(
        out.code == Some(code) && !out.timed_out,
        "expected exit code {code}, got: {}",
        out.describe()
    );
    let err = out.stderr.to_lowercase();
    for n in needles {
        ensure!(
            err.contains(&n.to_lowercase()),
            "the error message does not mention {n:?}: {}",
            out.describe()
        );
    }
    Ok(out)
}

/// `extract SOURCE PATH [extra…]` with stdout into `file`.
pub fn extract_to_file(
    ctx: &Ctx,
    src: &Src,
    path: &[u8],
    extra: &[&str],
    file: &Path,
) -> Result<Output> {
    let mut a: Vec<OsString> = vec![
        "extract".into(),
        src.path.clone().into(),
        OsStr::from_bytes(path).to_os_string(),
    ];
    a.extend(extra.iter().map(OsString::from));
    ctx.cli.run_to_file(a, file)
}

/// `extract SOURCE PATH TARGET [extra…]`.
pub fn extract_into(
    ctx: &Ctx,
    src: &Src,
    path: &[u8],
    target: &Path,
    extra: &[&str],
) -> Result<Output> {
    let mut a: Vec<OsString> = vec![
        "extract".into(),
        src.path.clone().into(),
        OsStr::from_bytes(path).to_os_string(),
        target.into(),
    ];
    a.extend(extra.iter().map(OsString::from));
    ctx.cli.run(a)
}

/// The sha256 of a file extracted to stdout.
pub fn sha_via_stdout(ctx: &Ctx, src: &Src, path: &[u8], scratch: &Path) -> Result<String> {
    let f = scratch.join("stdout.bin");
    extract_to_file(ctx, src, path, &[], &f)?
        .check()
        .with_context(|| format!("{}: extract {}", src.label, show(path)))?;
    let h = sys::sha256_file(&f)?;
    let _ = std::fs::remove_file(&f);
    Ok(h)
}

/// Copies a fixture image (sparse) into scratch space under a new name, for
/// cases that need a source no other case uses.
pub fn private_copy(ctx: &Ctx, key: &str, name: &str) -> Result<PathBuf> {
    let dir = ctx.work.join("sources");
    std::fs::create_dir_all(&dir)?;
    let dst = dir.join(name);
    if !dst.exists() {
        sys::tool(
            "cp",
            [
                OsStr::new("--sparse=always"),
                ctx.fx.path(key).as_os_str(),
                dst.as_os_str(),
            ],
        )?;
    }
    Ok(dst)
}

/// Fails unless no VM of `src` is in status and no QEMU names its path.
pub fn ensure_no_vm(ctx: &Ctx, src: &Path, what: &str) -> Result<()> {
    let vms = ctx.cli.vms_for(src)?;
    let procs = sys::vm_processes_mentioning(&src.to_string_lossy());
    if !vms.is_empty() || !procs.is_empty() {
        let names: Vec<&str> = vms.iter().filter_map(|v| v["name"].as_str()).collect();
        bail!(
            "{what}: a VM was left running for {}: status lists {names:?}; processes: {:?}",
            src.display(),
            procs.iter().map(|p| p.pid).collect::<Vec<_>>()
        );
    }
    Ok(())
}

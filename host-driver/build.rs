//! Records the git commit the binaries are built from, for
//! `file-restore --version`: `FILE_RESTORE_COMMIT_SUFFIX` is ` (abc1234)`,
//! ` (abc1234-dirty)` with uncommitted changes to tracked files, or empty
//! outside a git work tree of this repository (a release tarball) or
//! without git. The environment variable `FILE_RESTORE_COMMIT` (e.g. set by
//! a packager) takes precedence.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=FILE_RESTORE_COMMIT");
    // Re-run when HEAD moves or the index changes; the sources themselves
    // for the dirty flag (cargo watches what is named here and nothing else).
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.toml");
    let commit = std::env::var("FILE_RESTORE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            // Only a work tree that tracks this file is ours (a tarball
            // unpacked inside some other repository is not).
            git(&["ls-files", "--full-name", "build.rs"])?;
            for p in ["HEAD", "index", "packed-refs"] {
                if let Some(path) = git(&["rev-parse", "--git-path", p]) {
                    if Path::new(&path).exists() {
                        println!("cargo:rerun-if-changed={path}");
                    }
                }
            }
            if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
                if let Some(path) = git(&["rev-parse", "--git-path", &head_ref]) {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
            let hash = git(&["rev-parse", "--short=7", "HEAD"])?;
            let dirty = Command::new("git")
                .args(["diff-index", "--quiet", "HEAD", "--"])
                .status()
                .is_ok_and(|s| s.code() == Some(1));
            Some(if dirty { format!("{hash}-dirty") } else { hash })
        });
    let suffix = commit.map(|c| format!(" ({c})")).unwrap_or_default();
    println!("cargo:rustc-env=FILE_RESTORE_COMMIT_SUFFIX={suffix}");
}

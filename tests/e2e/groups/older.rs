//! Filesystems of older and other systems that the guest kernel reads
//! (issue 19): images made by util-linux's mkfs tools, as three disks of one
//! SOURCE directory, so one VM serves them.

use super::G;
use crate::Ctx;
use anyhow::{ensure, Context, Result};
use file_restore_tests::sys;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What cramfs.img holds (`mkfs.cramfs` from a directory, no mount).
const CRAMFS_FILES: [(&str, &str); 2] = [
    ("hello.txt", "hello from cramfs\n"),
    ("sub/deeper.txt", "a file in a directory\n"),
];

/// Makes (once) the SOURCE directory: cramfs.img (populated), minix.img and
/// bfs.img (empty: their mkfs tools cannot populate, and nothing is mounted
/// on the host).
fn older_dir(ctx: &Ctx) -> Result<PathBuf> {
    let dir = ctx.work.join("older-fs");
    if dir.join("bfs.img").exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir)?;
    let tree = ctx.work.join("older-fs-tree");
    for (rel, content) in CRAMFS_FILES {
        let p = tree.join(rel);
        std::fs::create_dir_all(p.parent().context("no parent")?)?;
        std::fs::write(&p, content)?;
    }
    sys::tool(
        "mkfs.cramfs",
        [tree.as_os_str(), dir.join("cramfs.img").as_os_str()],
    )?;
    for (tool, args, name) in [
        ("mkfs.minix", &["-3"][..], "minix.img"),
        ("mkfs.bfs", &[][..], "bfs.img"),
    ] {
        let p = dir.join(name);
        std::fs::File::create(&p)?.set_len(8 << 20)?;
        let st = Command::new(tool)
            .args(args)
            .arg(&p)
            .output()
            .with_context(|| format!("{tool} (scripts/deps.sh installs it)"))?;
        ensure!(
            st.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    Ok(dir)
}

fn list(ctx: &Ctx, src: &Path, path: &str) -> Result<String> {
    let o = ctx
        .cli
        .run([OsStr::new("list"), src.as_os_str(), OsStr::new(path)])?
        .check()?;
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Every group of this file.
pub fn older_filesystems() -> Vec<G> {
    let mut g = G::new("older_fs", 5);
    g.case("named_by_type", |ctx| {
        let src = older_dir(ctx)?;
        for (disk, fs) in [("cramfs", "cramfs"), ("minix", "minix"), ("bfs", "bfs")] {
            let out = list(ctx, &src, &format!("/{disk}/raw"))?;
            ensure!(out.contains(&format!("raw [{fs}")), "{disk}: {out}");
        }
        Ok(())
    });
    g.case("cramfs_content", |ctx| {
        let src = older_dir(ctx)?;
        let out = list(ctx, &src, "/cramfs/raw/raw/sub")?;
        ensure!(out.contains("deeper.txt"), "{out}");
        for (rel, content) in CRAMFS_FILES {
            let sc = ctx.scratch("cramfs")?;
            let file = sc.path().join("out");
            let args: Vec<OsString> = vec![
                "extract".into(),
                src.clone().into(),
                format!("/cramfs/raw/raw/{rel}").into(),
            ];
            ctx.cli.run_to_file(args, &file)?.check()?;
            let got = std::fs::read_to_string(&file)?;
            ensure!(got == content, "{rel}: {got:?}, want {content:?}");
        }
        Ok(())
    });
    g.case("empty_minix_and_bfs_mount", |ctx| {
        let src = older_dir(ctx)?;
        for disk in ["minix", "bfs"] {
            // Mounted read-only by the guest's driver: an empty root, no error.
            let out = list(ctx, &src, &format!("/{disk}/raw/raw"))?;
            ensure!(out.lines().all(|l| l.trim().is_empty()), "{disk}: {out}");
        }
        Ok(())
    });
    g.teardown = Some(Box::new(|ctx: &Ctx| {
        ctx.cli.stop_vms_for(&ctx.work.join("older-fs"))?;
        Ok(())
    }));
    vec![g]
}

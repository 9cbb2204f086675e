//! Filesystems of older and other systems that the guest kernel reads
//! (issue 19): the images of tests/fixtures/mkolder.sh, made by each
//! filesystem's own tools (reiserfsprogs, nilfs-tools, jfsutils, gfs2-utils,
//! ocfs2-tools, udftools, util-linux, f2fs-tools, genromfs, erofs-utils,
//! NetBSD's makefs) and indexed in `older/older.json`, as the disks of three
//! SOURCE directories (`older/vm-a`, `-b`, `-c`), one VM each. Every
//! image is named with its type and label, and every file it holds reads
//! byte-exact (sha256 against the index).

use super::G;
use crate::Ctx;
use anyhow::{ensure, Context, Result};
use file_restore_tests::sys;
use serde_json::Value;
use std::ffi::OsString;
use std::path::PathBuf;

/// One image of the index.
struct Image {
    source: PathBuf,
    disk: String,
    blkid_type: String,
    label: Option<String>,
    /// (path, sha256)
    files: Vec<(String, String)>,
    /// (path, target)
    symlinks: Vec<(String, String)>,
}

fn images(ctx: &Ctx) -> Result<Vec<Image>> {
    let dir = ctx.fx.path("older");
    let p = dir.join("older.json");
    let v: Value = serde_json::from_slice(
        &std::fs::read(&p).with_context(|| format!("{} (mkolder.sh)", p.display()))?,
    )?;
    let s = |v: &Value| v.as_str().map(str::to_owned);
    v["images"]
        .as_array()
        .context("older.json: no images")?
        .iter()
        .map(|i| {
            Ok(Image {
                source: dir.join(s(&i["source"]).context("no source")?),
                disk: s(&i["disk"]).context("no disk")?,
                blkid_type: s(&i["blkid_type"]).context("no blkid_type")?,
                label: s(&i["label"]),
                files: i["files"]
                    .as_array()
                    .context("no files")?
                    .iter()
                    .map(|f| {
                        Ok((
                            s(&f["path"]).context("path")?,
                            s(&f["sha256"]).context("sha")?,
                        ))
                    })
                    .collect::<Result<_>>()?,
                symlinks: i["symlinks"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|l| Some((s(&l["path"])?, s(&l["target"])?)))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn list(ctx: &Ctx, img: &Image, path: &str) -> Result<String> {
    let o = ctx
        .cli
        .run([
            OsString::from("list"),
            img.source.clone().into(),
            format!("/{}/{path}", img.disk).into(),
        ])?
        .check()?;
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Every group of this file.
pub fn older_filesystems() -> Vec<G> {
    let mut g = G::new("older_fs", 20);
    g.case("named_by_type_and_label", |ctx| {
        for img in images(ctx)? {
            let out = list(ctx, &img, "raw")?;
            let want = match &img.label {
                Some(l) => format!("raw [{} \"{l}\"]", img.blkid_type),
                None => format!("raw [{}]", img.blkid_type),
            };
            ensure!(out.contains(&want), "{}: no {want:?} in:\n{out}", img.disk);
        }
        Ok(())
    });
    g.case("every_file_reads_byte_exact", |ctx| {
        for img in images(ctx)? {
            for (path, sha) in &img.files {
                let sc = ctx.scratch("older")?;
                let file = sc.path().join("out");
                let args: Vec<OsString> = vec![
                    "extract".into(),
                    img.source.clone().into(),
                    format!("/{}/raw/raw/{path}", img.disk).into(),
                ];
                ctx.cli
                    .run_to_file(args, &file)?
                    .check()
                    .with_context(|| format!("{}: {path}", img.disk))?;
                let got = sys::sha256_file(&file)?;
                ensure!(
                    &got == sha,
                    "{}: {path}: sha256 {got}, want {sha}",
                    img.disk
                );
            }
        }
        Ok(())
    });
    g.case("symlinks_listed_with_targets", |ctx| {
        for img in images(ctx)? {
            if img.symlinks.is_empty() {
                continue;
            }
            let out = list(ctx, &img, "raw/raw")?;
            for (path, target) in &img.symlinks {
                let want = format!("{path} -> {target}");
                ensure!(out.contains(&want), "{}: no {want:?} in:\n{out}", img.disk);
            }
        }
        Ok(())
    });
    g.teardown = Some(Box::new(|ctx: &Ctx| {
        for vm in ["vm-a", "vm-b", "vm-c"] {
            ctx.cli.stop_vms_for(&ctx.fx.path("older").join(vm))?;
        }
        Ok(())
    }));
    vec![g]
}

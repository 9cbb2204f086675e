//! Refusals before any VM starts: usage errors, malicious backing chains,
//! sources that are no disk images at all.

use super::G;
use crate::checks::{self, expect_error};
use crate::Ctx;
use anyhow::{ensure, Context, Result};
use file_restore_tests::cli::STARTED_VM;
use serde_json::Value;
use std::ffi::OsStr;

/// Usage errors exit 2 without touching any VM.
pub fn usage() -> G {
    let mut g = G::new("usage", 1);
    g.case("exit_code_2", |ctx| {
        let cases: [&[&str]; 9] = [
            &[],
            &["list"],
            &["extract", "x.img"],
            &["list", "x.img", "/", "--output-format", "xml"],
            &["extract", "x.img", "/d/part/1", "--format", "rar"],
            &["stop"],
            &["stop", "name", "--all"],
            &["frobnicate"],
            &["list", "x.img", "--no-such-flag"],
        ];
        for a in cases {
            let o = ctx.cli.run(a)?;
            ensure!(
                o.code == Some(2),
                "`file-restore {}` should be a usage error (exit 2): {}",
                a.join(" "),
                o.describe()
            );
            ensure!(
                o.stderr.contains("Usage") || o.stderr.contains("--help"),
                "`file-restore {}`: no usage text or --help hint on stderr: {}",
                a.join(" "),
                o.describe()
            );
        }
        let o = ctx.cli.run(["--help"])?.check()?;
        for cmd in ["list", "extract", "status", "stop"] {
            ensure!(
                o.stdout_str().contains(cmd),
                "--help does not mention {cmd}"
            );
        }
        Ok(())
    });
    g
}

/// Every malicious backing chain is refused before a VM starts.
pub fn evil(ctx: &Ctx) -> G {
    let mut g = G::new("evil_store", 2);
    let snaps: Vec<Value> = ctx
        .fx
        .snapshots()
        .into_iter()
        .filter(|s| s["expect"] == "refused")
        .collect();
    for snap in snaps {
        let dir = snap["dir"].as_str().unwrap_or_default().to_string();
        let key = snap["disks"]["drive-scsi0"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let id = dir.split('/').nth(1).unwrap_or("?").to_string();
        let (d, k) = (dir.clone(), key.clone());
        g.case(format!("{id}_snapshot_dir"), move |ctx| {
            refused(ctx, &d, &k)
        });
        if id == "200" || id == "201" || id == "205" {
            g.case(format!("{id}_image_file"), move |ctx| {
                refused(ctx, &key, &key)
            });
        }
    }
    g
}

pub fn refused(ctx: &Ctx, source: &str, image_key: &str) -> Result<()> {
    let img = ctx.fx.image(image_key)?;
    let named = img["backing"]["file"]
        .as_str()
        .or_else(|| img["data_file"].as_str())
        .context("evil image without backing or data_file in fixtures.json")?
        .to_string();
    let path = ctx.fx.path(source);
    let o = ctx.cli.run([OsStr::new("list"), path.as_os_str()])?;
    ensure!(
        !o.stderr.contains(STARTED_VM),
        "{source}: a VM was started: {}",
        o.describe()
    );
    expect_error(o, 1, &[&named, "refused"])
        .with_context(|| format!("{source} ({})", img["note"]))?;
    checks::ensure_no_vm(ctx, &path, source)
}

/// Sources that are not usable disk images: clear errors, no VM left.
pub fn bad_sources() -> Vec<G> {
    let mut v = Vec::new();
    // 95 bytes of text: too small to be a disk (the one content rule left on the host).
    {
        let key = "not-an-image.txt";
        let mut g = G::new("bad_source::not_an_image", 10);
        g.case("clear_error_no_vm", move |ctx| {
            let path = ctx.fx.path(key);
            let o = ctx
                .cli
                .run([OsStr::new("list"), path.as_os_str(), OsStr::new("/")])?;
            let r = expect_error(o, 1, &[key])
                .with_context(|| format!("list {key} (fixtures.json: expect error)"));
            let left = checks::ensure_no_vm(ctx, &path, key);
            r?;
            left
        });
        let k = key.to_string();
        g.teardown = Some(Box::new(move |ctx: &Ctx| {
            ctx.cli.stop_vms_for(&ctx.fx.path(&k))?;
            Ok(())
        }));
        v.push(g);
    }
    let mut g = G::new("bad_source::missing_file", 1);
    g.case("clear_error", |ctx| {
        let p = ctx.work.join("no-such-image.qcow2");
        let o = ctx.cli.run([OsStr::new("list"), p.as_os_str()])?;
        ensure!(
            !o.stderr.contains(STARTED_VM),
            "a VM was started for a missing file"
        );
        expect_error(o, 1, &["no-such-image.qcow2"])?;
        Ok(())
    });
    v.push(g);
    v
}

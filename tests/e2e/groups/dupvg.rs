//! LVM duplicates (issue 19): `dupvg/` (tests/fixtures/mkdupvg.sh) is one
//! SOURCE of three disks that all carry a VG `dupvg` with LVs `data` and
//! `more`: disk-b's is another VG of the same name, disk-c is a clone of
//! disk-a (same PV and VG UUIDs) whose filesystems were rewritten. Each
//! disk's LVs must read as that disk's own.

use super::G;
use crate::Ctx;
use anyhow::{ensure, Result};
use std::ffi::OsString;
use std::path::PathBuf;

const DISKS: [&str; 3] = ["disk-a", "disk-b", "disk-c"];

fn source(ctx: &Ctx) -> PathBuf {
    ctx.fx.path("dupvg")
}

fn cat(ctx: &Ctx, path: &str) -> Result<String> {
    let sc = ctx.scratch("dupvg")?;
    let file = sc.path().join("out");
    let args: Vec<OsString> = vec!["extract".into(), source(ctx).into(), path.into()];
    ctx.cli.run_to_file(args, &file)?.check()?;
    Ok(std::fs::read_to_string(&file)?)
}

/// Every group of this file.
pub fn dupvg_groups() -> Vec<G> {
    let mut g = G::new("lvm_duplicates", 10);
    g.case("each_disk_lists_its_own_vg", |ctx| {
        for disk in DISKS {
            let o = ctx
                .cli
                .run([
                    OsString::from("list"),
                    source(ctx).into(),
                    format!("/{disk}/lvm/dupvg").into(),
                ])?
                .check()?;
            let out = String::from_utf8_lossy(&o.stdout);
            for lv in ["data", "more"] {
                let want = format!(" {lv} [ext4 \"{disk}-{lv}\"]");
                ensure!(
                    out.lines().any(|l| l.contains(&want)),
                    "{disk}: no {want:?} in:\n{out}"
                );
            }
            ensure!(!out.contains("error"), "{disk}: {out}");
        }
        Ok(())
    });
    g.case("same_vg_name_other_uuid_reads_its_own", |ctx| {
        for disk in ["disk-a", "disk-b"] {
            for lv in ["data", "more"] {
                let got = cat(ctx, &format!("/{disk}/lvm/dupvg/{lv}/whoami.txt"))?;
                ensure!(got == format!("{disk} {lv}\n"), "{disk}/{lv}: {got:?}");
            }
        }
        Ok(())
    });
    g.case("clone_reads_its_own_blocks", |ctx| {
        for lv in ["data", "more"] {
            let got = cat(ctx, &format!("/disk-c/lvm/dupvg/{lv}/whoami.txt"))?;
            ensure!(got == format!("disk-c {lv}\n"), "disk-c/{lv}: {got:?}");
        }
        Ok(())
    });
    g.teardown = Some(Box::new(|ctx: &Ctx| {
        ctx.cli.stop_vms_for(&source(ctx))?;
        Ok(())
    }));
    vec![g]
}

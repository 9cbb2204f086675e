//! Firmware RAID (issue 19): `fwraid/` (tests/fixtures/mkfwraid.sh) is a DDF
//! container with a RAID1 volume `vol0` over two disks; mdadm assembles it
//! read-only in the guest and its ext4 reads under either disk.

use super::G;
use crate::Ctx;
use anyhow::{ensure, Result};
use std::ffi::OsString;
use std::path::PathBuf;

fn source(ctx: &Ctx) -> Result<Option<PathBuf>> {
    let p = ctx.fx.path("fwraid");
    if p.join("ddf-a.raw").exists() {
        Ok(Some(p))
    } else {
        println!(
            "    skipped: no {} (NO_STACKS=1 left out mkfwraid.sh)",
            p.display()
        );
        Ok(None)
    }
}

/// Every group of this file.
pub fn fwraid_groups() -> Vec<G> {
    let mut g = G::new("firmware_raid", 10);
    g.case("ddf_volume_listed_under_both_disks", |ctx| {
        let Some(src) = source(ctx)? else {
            return Ok(());
        };
        let list = |path: String| -> Result<String> {
            let o = ctx
                .cli
                .run([OsString::from("list"), src.clone().into(), path.into()])?
                .check()?;
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        };
        for disk in ["ddf-a", "ddf-b"] {
            let out = list(format!("/{disk}"))?;
            ensure!(out.contains("md"), "{disk}: no md bucket in:\n{out}");
            let out = list(format!("/{disk}/md"))?;
            ensure!(
                out.contains(" vol0 [ext4 \"fx-ddf\"]"),
                "{disk}: no vol0 [ext4 \"fx-ddf\"] in:\n{out}"
            );
        }
        Ok(())
    });
    g.case("ddf_volume_reads", |ctx| {
        let Some(src) = source(ctx)? else {
            return Ok(());
        };
        let sc = ctx.scratch("fwraid")?;
        let file = sc.path().join("out");
        let args: Vec<OsString> = vec![
            "extract".into(),
            src.into(),
            "/ddf-b/md/vol0/whoami.txt".into(),
        ];
        ctx.cli.run_to_file(args, &file)?.check()?;
        let got = std::fs::read_to_string(&file)?;
        ensure!(got == "ddf\n", "{got:?}");
        Ok(())
    });
    g.teardown = Some(Box::new(|ctx: &Ctx| {
        ctx.cli.stop_vms_for(&ctx.fx.path("fwraid"))?;
        Ok(())
    }));
    vec![g]
}

//! Partition tables of other systems (issue 19): `labels/`
//! (tests/fixtures/mklabels.sh) is one SOURCE whose disks carry a Sun, Mac
//! (APM), Amiga (RDB), BSD (inside an MBR slice), SGI (dvh) and Atari
//! table, each with an ext4 partition at 4 MiB holding whoami.txt = the
//! table's name. The guest kernel's partition parsers must find each.

use super::G;
use crate::Ctx;
use anyhow::{ensure, Context, Result};
use std::ffi::OsString;
use std::path::PathBuf;

fn source(ctx: &Ctx) -> PathBuf {
    ctx.fx.path("labels")
}

/// (table, partition number) from labels.json.
fn tables(ctx: &Ctx) -> Result<Vec<(String, u64)>> {
    let p = source(ctx).join("labels.json");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&p).with_context(|| format!("{}", p.display()))?)?;
    let obj = v.as_object().context("labels.json is no object")?;
    obj.iter()
        .map(|(k, e)| {
            let n = e["partition"].as_u64().context("no partition number")?;
            Ok((k.clone(), n))
        })
        .collect()
}

/// Every group of this file.
pub fn label_groups() -> Vec<G> {
    let mut g = G::new("partition_tables", 10);
    g.case("each_table_is_read", |ctx| {
        for (t, n) in tables(ctx)? {
            let o = ctx
                .cli
                .run([
                    OsString::from("list"),
                    source(ctx).into(),
                    format!("/{t}/part").into(),
                ])?
                .check()?;
            let out = String::from_utf8_lossy(&o.stdout);
            let want = format!("{n} [ext4 \"fx-{t}\"]");
            ensure!(
                out.lines().any(|l| l.contains(&format!(" {want}"))),
                "{t}: no entry {want:?} in:\n{out}"
            );
        }
        Ok(())
    });
    g.case("each_partition_reads", |ctx| {
        for (t, n) in tables(ctx)? {
            let sc = ctx.scratch("labels")?;
            let file = sc.path().join("out");
            let args: Vec<OsString> = vec![
                "extract".into(),
                source(ctx).into(),
                format!("/{t}/part/{n}/whoami.txt").into(),
            ];
            ctx.cli.run_to_file(args, &file)?.check()?;
            let got = std::fs::read_to_string(&file)?;
            ensure!(got == format!("{t}\n"), "{t}: {got:?}");
        }
        Ok(())
    });
    g.teardown = Some(Box::new(|ctx: &Ctx| {
        ctx.cli.stop_vms_for(&source(ctx))?;
        Ok(())
    }));
    vec![g]
}

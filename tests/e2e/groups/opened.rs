//! Sources the host does not judge: a damaged qcow2 and a truncated one, an
//! APFS container, bytes with no known signature. Each boots; the user is
//! warned of what `qemu-img check` found, and the guest names what it finds
//! on the disk or why it cannot read it.

use super::G;
use crate::checks::expect_error;
use crate::Ctx;
use anyhow::{ensure, Result};
use file_restore_tests::cli::STARTED_VM;
use std::ffi::OsStr;
use std::path::Path;

/// `list SOURCE PATH`: exit 0, a VM started for it, and `needles` on stderr.
fn lists_with(ctx: &Ctx, src: &Path, path: &str, needles: &[&str]) -> Result<String> {
    let o = ctx
        .cli
        .run([OsStr::new("list"), src.as_os_str(), OsStr::new(path)])?;
    ensure!(o.code == Some(0), "list {path}: {}", o.describe());
    for n in needles {
        ensure!(
            o.stderr.contains(n),
            "list {path}: stderr does not mention {n:?}: {}",
            o.describe()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Every group of this file.
pub fn opened_sources() -> Vec<G> {
    let mut v = Vec::new();

    // Zeroed refcounts: qemu-img check counts corruptions; the matrix group of
    // damaged.qcow2 proves every byte readable, this the warning.
    let mut g = G::new("opened::damaged_qcow2", 5);
    g.case("warned_and_listed", |ctx| {
        let p = ctx.fx.path("damaged.qcow2");
        let out = lists_with(
            ctx,
            &p,
            "/damaged/part",
            &[
                "warning: disk 'damaged'",
                "damaged.qcow2",
                "is damaged (qemu-img check: ",
                "corruptions)",
            ],
        )?;
        ensure!(out.contains(" 1 [ext4"), "partitions listed: {out}");
        // The warning comes on every use, not only when the VM starts.
        lists_with(ctx, &p, "/damaged/part", &["is damaged (qemu-img check: "])?;
        Ok(())
    });
    g.teardown = Some(Box::new(|ctx: &Ctx| {
        ctx.cli.stop_vms_for(&ctx.fx.path("damaged.qcow2"))?;
        Ok(())
    }));
    v.push(g);

    // gpt.qcow2 cut to 100 KiB: QEMU reads zeros past the end; the guest finds
    // nothing, and says so.
    let mut g = G::new("opened::truncated_qcow2", 5);
    g.case("warned_nothing_found", |ctx| {
        let p = ctx.fx.path("truncated.qcow2");
        lists_with(
            ctx,
            &p,
            "/",
            &[
                STARTED_VM,
                "warning: disk 'truncated'",
                "but the file ends at 102400",
            ],
        )?;
        let o = ctx.cli.run([
            OsStr::new("list"),
            p.as_os_str(),
            OsStr::new("/truncated/raw/raw"),
        ])?;
        expect_error(o, 1, &["truncated/raw/raw", "no known filesystem"])?;
        Ok(())
    });
    g.teardown = Some(Box::new(|ctx: &Ctx| {
        ctx.cli.stop_vms_for(&ctx.fx.path("truncated.qcow2"))?;
        Ok(())
    }));
    v.push(g);

    // A real APFS container (apfsprogs' mkapfs): the guest names it.
    let mut g = G::new("opened::apfs", 3);
    g.case("named_by_the_guest", |ctx| {
        let p = ctx.work.join("mac-apfs.img");
        std::fs::File::create(&p)?.set_len(512 << 20)?;
        file_restore_tests::sys::tool("mkapfs", [p.as_os_str()])?;
        let out = lists_with(ctx, &p, "/mac-apfs/raw", &[STARTED_VM])?;
        ensure!(out.contains("raw [apfs]"), "the bucket's type: {out}");
        let o = ctx.cli.run([
            OsStr::new("list"),
            p.as_os_str(),
            OsStr::new("/mac-apfs/raw/raw"),
        ])?;
        expect_error(
            o,
            1,
            &["mac-apfs/raw/raw", "APFS: no Linux driver can read it"],
        )?;
        Ok(())
    });
    g.teardown = Some(Box::new(|ctx: &Ctx| {
        ctx.cli.stop_vms_for(&ctx.work.join("mac-apfs.img"))?;
        Ok(())
    }));
    v.push(g);

    // Text, 8 KiB: no partition table, no signature; once refused on the host,
    // now the guest's "unknown".
    let mut g = G::new("opened::no_signature", 3);
    g.case("unknown_in_the_guest", |ctx| {
        let p = ctx.work.join("notes.img");
        std::fs::write(&p, "not a filesystem, only text\n".repeat(300))?;
        let out = lists_with(ctx, &p, "/notes/raw", &[STARTED_VM])?;
        ensure!(out.contains("raw [unknown]"), "the bucket's type: {out}");
        let o = ctx.cli.run([
            OsStr::new("list"),
            p.as_os_str(),
            OsStr::new("/notes/raw/raw"),
        ])?;
        expect_error(
            o,
            1,
            &["notes/raw/raw", "no known filesystem was found on it"],
        )?;
        Ok(())
    });
    g.teardown = Some(Box::new(|ctx: &Ctx| {
        ctx.cli.stop_vms_for(&ctx.work.join("notes.img"))?;
        Ok(())
    }));
    v.push(g);
    v
}

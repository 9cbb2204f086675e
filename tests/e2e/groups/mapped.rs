//! Big files read from the disks by their map (issue 21): the daemon names
//! the extents (`GET /api/map`), the CLI reads them from QEMU's read-only
//! NBD export. Each case extracts with `-v`, which says which path a file
//! took, and compares the bytes with the fixture tree the image was made
//! from; the fallbacks (small, compressed, btrfs, forced off) are exact too.

use super::G;
use crate::checks::{vpath, Src};
use crate::Ctx;
use anyhow::{ensure, Context, Result};
use file_restore_tests::cli::CALL_LIMIT;
use file_restore_tests::sys::{self, Output, Stdout};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What `-v` prints for a file read from the disks.
const MAPPED: &str = "read from the disks through QEMU's NBD export";
/// What `-v` prints for a file streamed through the guest.
const STREAMED: &str = "streamed through the guest";

/// `file-restore -v extract SRC PATH OUT` with `FILE_RESTORE_MAP=map`
/// (unset: the default); OUT `-` writes stdout to `out`.
fn extract(
    ctx: &Ctx,
    src: &Src,
    path: &[u8],
    out: &Path,
    map: Option<&str>,
    stdout: bool,
) -> Result<Output> {
    let mut c = ctx.cli.command();
    if let Some(m) = map {
        c.env("FILE_RESTORE_MAP", m);
    }
    c.arg("-v")
        .arg("extract")
        .arg(&src.path)
        .arg(OsStr::from_bytes(path));
    let o = if stdout {
        sys::run(c, None, Stdout::File(out), CALL_LIMIT)?
    } else {
        c.arg(out);
        sys::run(c, None, Stdout::Capture, CALL_LIMIT)?
    };
    ctx.cli.account(&o);
    o.check()
}

/// Extracts `rel` of `bucket` and checks it byte for byte against the
/// fixture tree's file, and that `-v` names the path it took.
fn check(
    ctx: &Ctx,
    src: &Src,
    bucket: &str,
    tree_file: &str,
    rel: &str,
    map: Option<&str>,
    expect: &str,
) -> Result<Output> {
    let sc = ctx.scratch("mapped")?;
    let out = sc.path().join("out.bin");
    let p = vpath(src.disk(), bucket, rel.as_bytes());
    let o = extract(ctx, src, &p, &out, map, false)?;
    ensure!(
        o.stderr.contains(expect),
        "{}: {rel}: expected '{expect}' in -v output:\n{}",
        src.label,
        o.stderr
    );
    let want = sys::sha256_file(&ctx.fx.path(tree_file))?;
    let got = sys::sha256_file(&out)?;
    ensure!(
        got == want,
        "{}: {rel}: sha256 {got}, the tree's file has {want}",
        src.label
    );
    Ok(o)
}

/// Every case of this file, on the fixtures that hold big files.
pub fn mapped_groups() -> Vec<G> {
    let mut g = G::new("mapped_gpt", 30);
    g.case("ext4_and_xfs_files_mapped_exact", |ctx| {
        let s = Src::image(ctx, "gpt.img");
        for bucket in ["part/1", "part/2"] {
            check(
                ctx,
                &s,
                bucket,
                "tree/full/data/random-5M.bin",
                "data/random-5M.bin",
                None,
                MAPPED,
            )?;
        }
        Ok(())
    });
    g.case("holes_stay_holes", |ctx| {
        let s = Src::image(ctx, "gpt.img");
        let sc = ctx.scratch("mapped-sparse")?;
        let out = sc.path().join("sparse.bin");
        let p = vpath(s.disk(), "part/1", b"sparse-64M.bin");
        let o = extract(ctx, &s, &p, &out, None, false)?;
        ensure!(o.stderr.contains(MAPPED), "{}", o.stderr);
        let want = sys::sha256_file(&ctx.fx.path("tree/full/sparse-64M.bin"))?;
        ensure!(sys::sha256_file(&out)? == want, "sparse-64M.bin differs");
        let md = std::fs::metadata(&out)?;
        ensure!(md.len() == 64 << 20, "size {}", md.len());
        ensure!(
            md.blocks() * 512 < 4 << 20,
            "{} bytes allocated for 12 KiB of data",
            md.blocks() * 512
        );
        Ok(())
    });
    g.case("stdout_mapped_exact", |ctx| {
        let s = Src::image(ctx, "gpt.img");
        let sc = ctx.scratch("mapped-stdout")?;
        let out = sc.path().join("stdout.bin");
        let p = vpath(s.disk(), "part/2", b"data/random-5M.bin");
        let o = extract(ctx, &s, &p, &out, None, true)?;
        ensure!(o.stderr.contains(MAPPED), "{}", o.stderr);
        let want = sys::sha256_file(&ctx.fx.path("tree/full/data/random-5M.bin"))?;
        ensure!(sys::sha256_file(&out)? == want, "stdout differs");
        Ok(())
    });
    g.case("small_and_forced_off_stream", |ctx| {
        let s = Src::image(ctx, "gpt.img");
        let o = check(
            ctx,
            &s,
            "part/1",
            "tree/full/data/random-5M.bin",
            "data/random-5M.bin",
            Some("off"),
            STREAMED,
        )?;
        ensure!(!o.stderr.contains(MAPPED), "{}", o.stderr);
        let small = small_file(ctx, "full")?;
        let o = check(
            ctx,
            &s,
            "part/1",
            &format!("tree/full/{small}"),
            &small,
            None,
            "below the",
        )?;
        ensure!(o.stderr.contains(STREAMED), "{}", o.stderr);
        Ok(())
    });
    g.case("btrfs_and_fat_fall_back", |ctx| {
        let s = Src::image(ctx, "gpt.img");
        let o = check(
            ctx,
            &s,
            "part/3",
            "tree/full/data/random-5M.bin",
            "data/random-5M.bin",
            None,
            STREAMED,
        )?;
        ensure!(
            o.stderr.contains("btrfs: its extent addresses are logical"),
            "{}",
            o.stderr
        );
        let small = small_file(ctx, "fat")?;
        let o = check(
            ctx,
            &s,
            "part/4",
            &format!("tree/fat/{small}"),
            &small,
            Some("always"),
            STREAMED,
        )?;
        ensure!(
            o.stderr.contains("mapped on ext2/3/4, XFS and NTFS only"),
            "{}",
            o.stderr
        );
        Ok(())
    });
    g.case("qcow2_mapped_exact", |ctx| {
        let s = Src::image(ctx, "gpt.qcow2");
        check(
            ctx,
            &s,
            "part/1",
            "tree/full/data/random-5M.bin",
            "data/random-5M.bin",
            None,
            MAPPED,
        )?;
        Ok(())
    });

    let mut n = G::new("mapped_ntfs", 20);
    n.case("sparse_files_mapped_exact", |ctx| {
        let s = Src::image(ctx, "ntfs.img");
        for f in ["sparse-32M.bin", "sparse-data-at-end-16M.bin"] {
            check(
                ctx,
                &s,
                "part/1",
                &format!("tree/ntfs/{f}"),
                f,
                None,
                MAPPED,
            )?;
        }
        Ok(())
    });
    n.case("compressed_falls_back", |ctx| {
        let s = Src::image(ctx, "ntfs.img");
        let f = "compressed/text-2M.txt";
        let o = check(
            ctx,
            &s,
            "part/1",
            &format!("tree/ntfs/{f}"),
            f,
            Some("always"),
            STREAMED,
        )?;
        // ntfs3 has no FIEMAP for compressed files; were it to answer, the
        // extents would be flagged ENCODED: either way the guest streams it.
        ensure!(
            o.stderr.contains("FIEMAP not supported") || o.stderr.contains("compressed or encoded"),
            "{}",
            o.stderr
        );
        Ok(())
    });

    let mut l = G::new("mapped_lvm", 20);
    l.case("lv_file_mapped_exact", |ctx| {
        if !ctx.fx.has_image("lvm.img") {
            println!("skipped: lvm.img was not built (needs a loop device)");
            return Ok(());
        }
        let s = Src::image(ctx, "lvm.img");
        check(
            ctx,
            &s,
            "lvm/fixturevg/root",
            "tree/full/data/random-5M.bin",
            "data/random-5M.bin",
            None,
            MAPPED,
        )?;
        // The data LV lies in two segments in reverse order on the PV.
        let f = largest_file(ctx, "fat")?;
        check(
            ctx,
            &s,
            "lvm/fixturevg/data",
            &format!("tree/fat/{f}"),
            &f,
            Some("always"),
            MAPPED,
        )?;
        Ok(())
    });

    let mut c = G::new("mapped_backing_chain", 20);
    c.case("incremental_qcow2_mapped_exact", |ctx| {
        let s = Src::snapshot(ctx, "store/100/qemu-1700003600")?;
        check(
            ctx,
            &s,
            "raw/raw",
            "tree/full/data/random-5M.bin",
            "data/random-5M.bin",
            None,
            MAPPED,
        )?;
        Ok(())
    });
    vec![g, n, l, c]
}

/// A regular file of tree `tree` between 64 KiB and 1 MiB (relative path).
fn small_file(ctx: &Ctx, tree: &str) -> Result<String> {
    files(ctx, tree)?
        .into_iter()
        .find(|(_, size)| (64 << 10..1 << 20).contains(size))
        .map(|(p, _)| p)
        .with_context(|| format!("tree {tree} has no file of 64 KiB to 1 MiB"))
}

/// The largest regular file of tree `tree` (relative path).
fn largest_file(ctx: &Ctx, tree: &str) -> Result<String> {
    files(ctx, tree)?
        .into_iter()
        .max_by_key(|(_, size)| *size)
        .map(|(p, _)| p)
        .with_context(|| format!("tree {tree} has no files"))
}

/// The regular files of tree `tree` with ASCII names, sorted, with sizes.
fn files(ctx: &Ctx, tree: &str) -> Result<Vec<(String, u64)>> {
    let root = ctx.fx.path(&format!("tree/{tree}"));
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let ft = e.file_type()?;
            let p = e.path();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let rel = p.strip_prefix(&root)?.to_string_lossy().into_owned();
                if rel
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
                {
                    out.push((rel, e.metadata()?.len()));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

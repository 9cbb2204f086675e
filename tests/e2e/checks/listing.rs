//! Listing checks: every level of a SOURCE (disks, bucket kinds, buckets, the
//! text output), a bucket's whole tree through listings against its manifest,
//! and the error of a bucket that cannot be mounted.

use super::{expect_error, vpath, Src};
use crate::Ctx;
use anyhow::{ensure, Context, Result};
use file_restore_tests::cli::{self, Listed};
use file_restore_tests::fixtures::Bucket;
use file_restore_tests::manifest::{self, Rules};
use file_restore_tests::sys::{self, show};
use std::collections::{BTreeMap, BTreeSet};

/// Checks the text output of `list PATH` against its JSON output: one line per
/// entry, in the same order, with type, size, mtime, name, `[fstype]`, `-> target`.
pub fn check_text_output(ctx: &Ctx, src: &Src, path: &[u8], entries: &[Listed]) -> Result<()> {
    let out = ctx.cli.list_out(&src.path, path, "text")?.check()?;
    let text = out.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    ensure!(
        lines.len() == entries.len(),
        "{}: list {} printed {} text lines for {} JSON entries:\n{}",
        src.label,
        show(path),
        lines.len(),
        entries.len(),
        sys::clip(&text, 800)
    );
    for (line, e) in lines.iter().zip(entries) {
        let bad = |what: &str| {
            anyhow::anyhow!(
                "{}: list {}: text line {line:?} does not show {what} of {e:?}",
                src.label,
                show(path)
            )
        };
        if !line.starts_with(&format!("{} ", e.kind)) {
            return Err(bad("the type letter first"));
        }
        if !line.contains(e.text.as_str()) {
            return Err(bad("the name"));
        }
        if let Some(s) = e.size {
            if !line.split_whitespace().any(|w| w == s.to_string()) {
                return Err(bad("the size"));
            }
        }
        if let Some(m) = e.mtime {
            if !line.contains(&sys::format_utc_minutes(m)) {
                return Err(bad("the mtime (YYYY-MM-DD HH:MM, UTC)"));
            }
        }
        if let Some(t) = &e.target {
            if !line.ends_with(&format!(" -> {t}")) {
                return Err(bad("` -> target` at the end"));
            }
        }
        if let Some(f) = &e.fstype {
            let tag = match &e.label {
                Some(l) => format!("[{f} \"{l}\""),
                None => format!("[{f}"),
            };
            if !line.contains(&tag) {
                return Err(bad("the filesystem type and label in brackets"));
            }
        }
    }
    // json-pretty is the same data.
    let pretty = ctx.cli.list_out(&src.path, path, "json-pretty")?.check()?;
    let p = cli::parse_listing(path, &pretty.stdout)?;
    ensure!(
        p == entries,
        "{}: list {}: json-pretty and json outputs differ",
        src.label,
        show(path)
    );
    ensure!(
        pretty.stdout.iter().filter(|&&b| b == b'\n').count() > entries.len(),
        "{}: list {} --output-format json-pretty is not indented",
        src.label,
        show(path)
    );
    Ok(())
}

fn names(entries: &[Listed]) -> BTreeSet<String> {
    entries.iter().map(|e| e.text.clone()).collect()
}

/// Lists `/`, every disk, every bucket type and each bucket's root against the
/// index (names, fstype, size), plus text and json-pretty output at every level.
pub fn check_levels(ctx: &Ctx, src: &Src) -> Result<()> {
    let root = ctx.cli.list(&src.path, b"/")?;
    let want: BTreeSet<String> = src.disks.keys().cloned().collect();
    ensure!(
        names(&root) == want,
        "{}: list / shows disks {:?}, want {want:?}",
        src.label,
        names(&root)
    );
    check_text_output(ctx, src, b"/", &root)?;
    for (disk, key) in &src.disks {
        let buckets: Vec<_> = ctx
            .fx
            .buckets(key)?
            .into_iter()
            .filter(|b| !b.extended)
            .collect();
        let dpath = format!("/{disk}");
        let types = ctx.cli.list(&src.path, dpath.as_bytes())?;
        let want_types: BTreeSet<String> = buckets
            .iter()
            .map(|b| b.name.split('/').next().unwrap_or("").to_string())
            .collect();
        ensure!(
            names(&types) == want_types,
            "{}: list {dpath} shows bucket types {:?}, want {want_types:?}",
            src.label,
            names(&types)
        );
        check_text_output(ctx, src, dpath.as_bytes(), &types)?;
        for t in &want_types {
            // Where each bucket is listed: /disk/part lists part/N as N; /disk/lvm
            // lists VGs and /disk/lvm/VG their LVs.
            let mut levels: BTreeMap<String, BTreeMap<String, Option<&Bucket>>> = BTreeMap::new();
            for b in buckets
                .iter()
                .filter(|b| b.name.starts_with(&format!("{t}/")))
            {
                let rest = &b.name[t.len() + 1..];
                match rest.split_once('/') {
                    Some((group, leaf)) => {
                        levels
                            .entry(format!("/{disk}/{t}"))
                            .or_default()
                            .insert(group.to_string(), None);
                        levels
                            .entry(format!("/{disk}/{t}/{group}"))
                            .or_default()
                            .insert(leaf.to_string(), Some(b));
                    }
                    None => {
                        levels
                            .entry(format!("/{disk}/{t}"))
                            .or_default()
                            .insert(rest.to_string(), Some(b));
                    }
                }
            }
            for (tpath, want_here) in &levels {
                let got = ctx.cli.list(&src.path, tpath.as_bytes())?;
                check_text_output(ctx, src, tpath.as_bytes(), &got)?;
                let got_by: BTreeMap<String, &Listed> =
                    got.iter().map(|e| (e.text.clone(), e)).collect();
                let want_names: BTreeSet<String> = want_here.keys().cloned().collect();
                ensure!(
                    got_by.keys().cloned().collect::<BTreeSet<_>>() == want_names,
                    "{}: list {tpath} shows {:?}, want {want_names:?}",
                    src.label,
                    got_by.keys().collect::<Vec<_>>()
                );
                for (name, b) in want_here {
                    let Some(b) = b else { continue };
                    let e = got_by[name];
                    let want_fs = b.fstype.clone().unwrap_or_else(|| "unknown".to_string());
                    ensure!(
                        e.fstype.as_deref() == Some(want_fs.as_str()),
                        "{}: bucket {disk}/{}: fstype {:?}, want {want_fs:?}",
                        src.label,
                        b.name,
                        e.fstype
                    );
                    if let Some(l) = &b.label {
                        ensure!(
                            e.label.as_deref() == Some(l.as_str()),
                            "{}: bucket {disk}/{}: label {:?}, want {l:?}",
                            src.label,
                            b.name,
                            e.label
                        );
                    }
                    ensure!(
                        e.size == Some(b.size),
                        "{}: bucket {disk}/{}: size {:?}, want {} (fixtures.json)",
                        src.label,
                        b.name,
                        e.size,
                        b.size
                    );
                }
            }
        }
        // A bucket root and a nested directory, JSON and text.
        if let Some(b) = buckets.iter().find(|b| b.mountable && b.manifest.is_some()) {
            let bpath = vpath(disk, &b.name, b"");
            let m = ctx.fx.manifest(b.manifest.as_deref().unwrap_or_default())?;
            let top = ctx.cli.list(&src.path, &bpath)?;
            check_text_output(ctx, src, &bpath, &top)?;
            let want_top: BTreeSet<String> = manifest::children(&m, b"")
                .iter()
                .map(|e| show(e.name()))
                .collect();
            ensure!(
                names(&top) == want_top,
                "{}: list {} names {:?}, want {want_top:?}",
                src.label,
                show(&bpath),
                names(&top)
            );
            if let Some(dir) = m.values().find(|e| e.kind == 'd' && e.path.contains(&b'/')) {
                let dp = vpath(disk, &b.name, &dir.path);
                let got = ctx.cli.list(&src.path, &dp)?;
                check_text_output(ctx, src, &dp, &got)?;
                let want_n: BTreeSet<String> = manifest::children(&m, &dir.path)
                    .iter()
                    .map(|e| show(e.name()))
                    .collect();
                ensure!(
                    names(&got) == want_n,
                    "{}: list {} names {:?}, want {want_n:?}",
                    src.label,
                    show(&dp),
                    names(&got)
                );
            }
        }
    }
    Ok(())
}

/// Lists a whole bucket recursively and compares names, types, sizes, mtimes and
/// symlink targets with its manifest.
pub fn check_listing_tree(
    ctx: &Ctx,
    src: &Src,
    disk: &str,
    bucket: &str,
    manifest_rel: &str,
) -> Result<()> {
    let want = ctx.fx.manifest(manifest_rel)?;
    let bpath = vpath(disk, bucket, b"");
    let have = ctx.cli.list_tree(&src.path, &bpath)?;
    manifest::ensure_same(
        &format!(
            "{}: recursive listing of {} vs {manifest_rel}",
            src.label,
            show(&bpath)
        ),
        &want,
        &have,
        &Rules::LISTING,
    )?;
    // The big directories hold what they should (a clear message if not).
    for big in ["many", "docs/many"] {
        let n_want = manifest::children(&want, big.as_bytes()).len();
        if n_want >= 100 {
            let n = manifest::children(&have, big.as_bytes()).len();
            ensure!(
                n == n_want,
                "{}: {}/{big} lists {n} entries, want {n_want}",
                src.label,
                show(&bpath)
            );
        }
    }
    Ok(())
}

/// A bucket that cannot be mounted: listing into it fails, naming the bucket
/// and its detected type.
pub fn check_unmountable(
    ctx: &Ctx,
    src: &Src,
    disk: &str,
    bucket: &str,
    fstype: &str,
) -> Result<()> {
    let p = vpath(disk, bucket, b"");
    let out = ctx.cli.list_out(&src.path, &p, "json")?;
    expect_error(out, 1, &[&format!("{disk}/{bucket}"), fstype])
        .with_context(|| format!("{}: list {} (a {fstype} bucket)", src.label, show(&p)))?;
    Ok(())
}

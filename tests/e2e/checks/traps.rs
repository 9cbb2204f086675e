//! Symlink-trap checks: links pointing out of the bucket, at absolute paths
//! or in loops are listed as links and extracted as links, never followed.

use super::{expect_error, extract_into, extract_to_file, vpath, Src};
use crate::Ctx;
use anyhow::{ensure, Context, Result};
use file_restore_tests::manifest::{self, Manifest};
use file_restore_tests::sys::{self, show, Output};
use std::collections::BTreeSet;
use std::ffi::OsStr;

/// Whether a manifest has the symlink traps of the full tree.
pub fn has_traps(m: &Manifest) -> bool {
    m.contains_key(&b"link-ticket"[..]) && m.contains_key(&b"link-up"[..])
}

/// Symlinks to /ticket, `../../..`, `/`, absolute paths and `..` in the request
/// stay inside the bucket: extracting through them gives the image's own files
/// or "no such file", never the guest's ticket or /init, nor host files.
pub fn check_traps(ctx: &Ctx, src: &Src, disk: &str, bucket: &str, m: &Manifest) -> Result<()> {
    let s = ctx.scratch("traps")?;
    let at = |rel: &str| vpath(disk, bucket, rel.as_bytes());
    let host_passwd = std::fs::read("/etc/passwd").unwrap_or_default();
    let mut outputs: Vec<Output> = Vec::new();
    // Not in the image: must be "no such file or directory".
    for rel in [
        "link-ticket",
        "link-up-ticket",
        "dir/sub/link-up-ticket",
        "link-abs",
        "link-dangling",
        "link-up/ticket",
        "link-up/init",
        "link-up/../ticket",
        "dir/sub/link-to-root/ticket",
        "dir/sub/link-to-root/init",
        "dir/sub/link-to-root/etc/passwd",
        "../../../ticket",
        "../../../../../init",
        "dir/../../../../ticket",
    ] {
        let p = at(rel);
        let f = s.path().join("out");
        let out = extract_to_file(ctx, src, &p, &[], &f)?;
        let got = std::fs::read(&f).unwrap_or_default();
        ensure!(
            got.is_empty(),
            "{}: extract {} wrote {} bytes ({:?}…); the image has no such file, so it must fail",
            src.label,
            show(&p),
            got.len(),
            show(&got[..got.len().min(80)])
        );
        expect_error(out.clone(), 1, &["no such file"])
            .with_context(|| format!("{}: extract {}", src.label, show(&p)))?;
        outputs.push(out);
    }
    // Loops: a clear error, no content.
    for rel in ["link-self", "loop-a"] {
        let p = at(rel);
        let f = s.path().join("out");
        let out = extract_to_file(ctx, src, &p, &[], &f)?;
        ensure!(
            std::fs::read(&f).unwrap_or_default().is_empty(),
            "{}: extract {} wrote data",
            src.label,
            show(&p)
        );
        expect_error(out.clone(), 1, &[rel])
            .with_context(|| format!("{}: extract {}", src.label, show(&p)))?;
        outputs.push(out);
    }
    // Through links that stay inside: the image's own files.
    for (rel, file) in [
        ("link-up/README.txt", "README.txt"),
        ("dir/sub/link-to-root/README.txt", "README.txt"),
        ("link-rel", "dir/file"),
        ("link-dir/file", "dir/file"),
        ("link-up/dir/file", "dir/file"),
        ("dir/sub/link-parent-file", "dir/file"),
    ] {
        let want = m
            .get(file.as_bytes())
            .and_then(|e| e.sha256.clone())
            .with_context(|| format!("manifest has no {file}"))?;
        let p = at(rel);
        let f = s.path().join("out");
        let out = extract_to_file(ctx, src, &p, &[], &f)?;
        let out = out.check().with_context(|| {
            format!(
                "{}: extract {} (resolves to {file} inside the image)",
                src.label,
                show(&p)
            )
        })?;
        let got = sys::sha256_file(&f)?;
        ensure!(
            got == want,
            "{}: extract {}: sha256 {got}, want {want} (the image's {file})",
            src.label,
            show(&p)
        );
        ensure!(
            std::fs::read(&f)? != host_passwd,
            "{}: extract {} gave the host's /etc/passwd",
            src.label,
            show(&p)
        );
        outputs.push(out);
    }
    // Listing through link-up shows the image's dir/.
    let p = at("link-up/dir");
    let got: BTreeSet<String> = ctx
        .cli
        .list(&src.path, &p)?
        .iter()
        .map(|e| e.text.clone())
        .collect();
    let want: BTreeSet<String> = manifest::children(m, b"dir")
        .iter()
        .map(|e| show(e.name()))
        .collect();
    ensure!(
        got == want,
        "{}: list {} shows {got:?}, want the image's dir/: {want:?}",
        src.label,
        show(&p)
    );
    // An archive of a symlink holds the symlink, not what it points to.
    let p = at("link-up");
    let t = s.path().join("link.tar");
    extract_into(ctx, src, &p, &t, &["--format", "tar"])?
        .check()
        .with_context(|| format!("{}: extract {} --format tar", src.label, show(&p)))?;
    let listing = sys::tool(
        "tar",
        [
            OsStr::new("--list"),
            OsStr::new("--verbose"),
            OsStr::new("--file"),
            t.as_os_str(),
        ],
    )?;
    let lines: Vec<String> = listing.stdout_str().lines().map(str::to_string).collect();
    ensure!(
        lines.len() == 1 && lines[0].starts_with('l') && lines[0].ends_with("link-up -> ../../.."),
        "{}: the tar of {} should hold only the symlink link-up -> ../../.., it holds: {lines:?}",
        src.label,
        show(&p)
    );
    // No ticket of any VM of this run ever shows up.
    let tickets = ctx.cli.tickets();
    ensure!(
        !tickets.is_empty(),
        "no ticket found in the VM map of this run"
    );
    for o in &outputs {
        for t in &tickets {
            ensure!(
                !o.stderr.contains(t.as_str()) && !o.stdout_str().contains(t.as_str()),
                "{}: a ticket appeared in the output of {}",
                src.label,
                o.cmd
            );
        }
    }
    Ok(())
}

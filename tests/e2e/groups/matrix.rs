//! The matrix: per SOURCE (image, snapshot, NBD export) every level, then per
//! bucket the recursive listing, tar with every sha256 and the symlink traps;
//! unmountable buckets give their error. Plus the extras of single sources
//! (the 256 MiB file, a dirty journal not replayed, the backup store's chains).

use super::{manifest_of, teardown_for, G, SERVERS};
use crate::checks::{self, expect_error, extract_into, vpath, Src};
use crate::Ctx;
use anyhow::{ensure, Context, Result};
use file_restore_tests::sys::{self, show};
use serde_json::Value;
use std::time::Duration;

/// Levels, then per bucket: recursive listing, tar with every sha256, symlink
/// traps; unmountable buckets give their error.
pub fn matrix_group(ctx: &Ctx, src: Src, weight: u32) -> Result<G> {
    let mut g = G::new(src.label.clone(), weight);
    let s = src.clone();
    g.case("levels", move |ctx| checks::check_levels(ctx, &s));
    for (disk, key) in &src.disks {
        let prefix = if src.disks.len() > 1 {
            format!("{disk}/")
        } else {
            String::new()
        };
        for b in ctx.fx.buckets(key)? {
            if b.extended {
                continue;
            }
            let (s, d, bn) = (src.clone(), disk.clone(), b.name.clone());
            match (&b.manifest, b.mountable) {
                (Some(m), true) => {
                    let m = m.clone();
                    let (m1, m2) = (m.clone(), m.clone());
                    let traps = checks::has_traps(&ctx.fx.manifest(&m)?);
                    g.case(format!("{prefix}{bn}::list_tree"), move |ctx| {
                        checks::check_listing_tree(ctx, &s, &d, &bn, &m1)
                    });
                    let (s, d, bn) = (src.clone(), disk.clone(), b.name.clone());
                    g.case(format!("{prefix}{bn}::tar_sha256"), move |ctx| {
                        let want = ctx.fx.manifest(&m2)?;
                        checks::check_tar(ctx, &s, &vpath(&d, &bn, b""), &want, false)
                    });
                    if traps {
                        let (s, d, bn) = (src.clone(), disk.clone(), b.name.clone());
                        g.case(format!("{prefix}{bn}::symlink_traps"), move |ctx| {
                            let want = ctx.fx.manifest(&m)?;
                            checks::check_traps(ctx, &s, &d, &bn, &want)
                        });
                    }
                }
                _ => {
                    let fstype = b.fstype.clone().unwrap_or_else(|| "unknown".into());
                    g.case(format!("{prefix}{bn}::unmountable_error"), move |ctx| {
                        checks::check_unmountable(ctx, &s, &d, &bn, &fstype)
                    });
                }
            }
        }
    }
    teardown_for(&mut g, src.path.clone());
    Ok(g)
}

/// The 256 MiB file extracted to a file (plain stream), checksummed.
pub fn big_extras(g: &mut G, src: &Src) {
    let s = src.clone();
    g.case("raw/raw::extract_256M_file_sha256", move |ctx| {
        let m = manifest_of(ctx, &s, "raw/raw")?;
        let rel = b"big/256M.bin";
        let want = m
            .get(&rel[..])
            .and_then(|e| e.sha256.clone())
            .context("manifest has no big/256M.bin")?;
        let sc = ctx.scratch("big")?;
        let out = sc.path().join("256M.bin");
        extract_into(ctx, &s, &vpath(s.disk(), "raw/raw", rel), &out, &[])?.check()?;
        let got = sys::sha256_file(&out)?;
        ensure!(
            got == want,
            "{}: 256M.bin sha256 {got}, want {want}",
            s.label
        );
        let len = std::fs::metadata(&out)?.len();
        ensure!(len == 256 << 20, "{}: 256M.bin is {len} bytes", s.label);
        Ok(())
    });
}

pub fn dirty_ext4_extras(g: &mut G, src: &Src) {
    let s = src.clone();
    g.case("raw/raw::journal_not_replayed", move |ctx| {
        let m = manifest_of(ctx, &s, "raw/raw")?;
        let want = m[&b"dirty-marker.txt"[..]]
            .sha256
            .clone()
            .unwrap_or_default();
        let replayed = sys::sha256_file(&ctx.fx.path("manifests/dirty-ext4.after-replay.bin"))?;
        let sc = ctx.scratch("dirty")?;
        let got = checks::sha_via_stdout(
            ctx,
            &s,
            &vpath(s.disk(), "raw/raw", b"dirty-marker.txt"),
            sc.path(),
        )?;
        ensure!(
            got != replayed,
            "dirty-ext4: dirty-marker.txt has the content of a journal replay"
        );
        ensure!(
            got == want,
            "dirty-ext4: dirty-marker.txt sha256 {got}, want {want} (before the crash)"
        );
        Ok(())
    });
}

pub fn store_extras(g: &mut G, src: &Src) {
    let s = src.clone();
    g.case("status_shows_snapshot", move |ctx| {
        let vms = ctx.cli.vms_for(&s.path)?;
        ensure!(
            vms.len() == 1,
            "{}: status lists {} VMs for the snapshot",
            s.label,
            vms.len()
        );
        let conf = s.path.canonicalize()?.join("guest.conf");
        ensure!(
            vms[0]["guest_config"].as_str() == Some(conf.to_string_lossy().as_ref()),
            "{}: status guest_config {}, want {}",
            s.label,
            vms[0]["guest_config"],
            conf.display()
        );
        let imgs: Vec<&str> = vms[0]["images"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        ensure!(
            imgs.len() == s.disks.len(),
            "{}: status images {imgs:?}",
            s.label
        );
        let disks: Vec<&str> = vms[0]["disks"]
            .as_array()
            .map(|a| a.iter().filter_map(|d| d["name"].as_str()).collect())
            .unwrap_or_default();
        let want: Vec<&str> = s.disks.keys().map(String::as_str).collect();
        ensure!(
            disks == want,
            "{}: status disks {disks:?}, want {want:?}",
            s.label
        );
        Ok(())
    });
    if s_is(src, "qemu-1700003600") {
        let s = src.clone();
        g.case("incremental_chain_content", move |ctx| {
            let sc = ctx.scratch("incr")?;
            let m = ctx.fx.manifest("manifests/full-incr.ext4.json")?;
            let base = ctx.fx.manifest("manifests/full.ext4.json")?;
            for (rel, man) in [
                (&b"new-in-incremental.txt"[..], &m),
                (b"README.txt", &base),
                (b"data/random-5M.bin", &base),
            ] {
                let want = man[rel].sha256.clone().unwrap_or_default();
                let got =
                    checks::sha_via_stdout(ctx, &s, &vpath(s.disk(), "raw/raw", rel), sc.path())?;
                ensure!(
                    got == want,
                    "{}: {}: sha256 {got}, want {want}",
                    s.label,
                    show(rel)
                );
            }
            Ok(())
        });
    }
    if s_is(src, "100/qemu-1700000000") {
        let s = src.clone();
        g.case("full_lacks_incremental_file", move |ctx| {
            let p = vpath(s.disk(), "raw/raw", b"new-in-incremental.txt");
            expect_error(ctx.cli.list_out(&s.path, &p, "json")?, 1, &["no such file"])?;
            Ok(())
        });
    }
    if src.disks.len() > 1 {
        let s = src.clone();
        g.case("a_file_from_each_disk", move |ctx| {
            let sc = ctx.scratch("two-disks")?;
            let full = ctx.fx.manifest("manifests/full.ext4.json")?;
            let want = full[&b"dir/file"[..]].sha256.clone().unwrap_or_default();
            for p in [
                vpath("drive-scsi0", "part/1", b"dir/file"),
                vpath("drive-scsi1", "part/5", b"dir/file"),
            ] {
                let got = checks::sha_via_stdout(ctx, &s, &p, sc.path())?;
                ensure!(
                    got == want,
                    "{}: {}: sha256 {got}, want {want}",
                    s.label,
                    show(&p)
                );
            }
            Ok(())
        });
    }
}

pub fn s_is(src: &Src, suffix: &str) -> bool {
    src.label.ends_with(suffix)
}

/// gpt.qcow2 exported by qemu-nbd (read-only) and opened as an
/// `nbd+unix://` SOURCE: the same matrix checks as the image itself.
pub fn nbd_group(ctx: &Ctx) -> Result<G> {
    let dir = ctx.work.join("nbd");
    std::fs::create_dir_all(&dir)?;
    let sock = dir.join("gpt.sock");
    let child = std::process::Command::new("qemu-nbd")
        .args([
            "--read-only",
            "--persistent",
            "--shared=16",
            "--format=qcow2",
        ])
        .arg(format!("--socket={}", sock.display()))
        .arg(ctx.fx.path("gpt.qcow2"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot start qemu-nbd (qemu-utils)")?;
    let t = std::time::Instant::now();
    while !sock.exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    ensure!(sock.exists(), "qemu-nbd did not create {}", sock.display());
    let src = Src {
        label: "nbd(gpt.qcow2)".into(),
        path: format!("nbd+unix:///?socket={}", sock.display()).into(),
        disks: std::collections::BTreeMap::from([("nbd".to_string(), "gpt.qcow2".to_string())]),
    };
    if let Ok(mut servers) = SERVERS.lock() {
        servers.push(child);
    }
    matrix_group(ctx, src, 60)
}

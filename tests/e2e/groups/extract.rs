//! The CLI's extract modes and errors, added to the gpt.img matrix group.

use super::{manifest_of, G};
use crate::checks::{self, expect_error, extract_into, extract_to_file, sub_manifest, vpath, Src};
use anyhow::{ensure, Context};
use file_restore_tests::cli::STARTED_VM;
use file_restore_tests::manifest::{self, Rules};
use file_restore_tests::sys::{self, show};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

/// The CLI's extract modes and errors, on gpt.img (ext4, xfs, btrfs, vfat).
pub fn gpt_extras(g: &mut G, src: &Src) {
    let s = src.clone();
    g.case("part/1::unpack_dir", move |ctx| {
        let m = manifest_of(ctx, &s, "part/1")?;
        checks::check_unpack(ctx, &s, &vpath(s.disk(), "part/1", b""), &m)
    });
    let s = src.clone();
    g.case("part/3::unpack_dir", move |ctx| {
        let m = manifest_of(ctx, &s, "part/3")?;
        checks::check_unpack(ctx, &s, &vpath(s.disk(), "part/3", b""), &m)
    });
    let s = src.clone();
    g.case("part/4::unpack_dir", move |ctx| {
        let m = manifest_of(ctx, &s, "part/4")?;
        checks::check_unpack(ctx, &s, &vpath(s.disk(), "part/4", b""), &m)
    });
    let s = src.clone();
    g.case("part/1::zip", move |ctx| {
        let m = manifest_of(ctx, &s, "part/1")?;
        checks::check_zip(ctx, &s, &vpath(s.disk(), "part/1", b""), &m, false, false)
    });
    let s = src.clone();
    g.case("part/4::zip", move |ctx| {
        let m = manifest_of(ctx, &s, "part/4")?;
        checks::check_zip(ctx, &s, &vpath(s.disk(), "part/4", b""), &m, false, false)
    });
    let s = src.clone();
    g.case("part/1::zip_to_stdout_zstd", move |ctx| {
        let m = sub_manifest(&manifest_of(ctx, &s, "part/1")?, b"dir");
        checks::check_zip(ctx, &s, &vpath(s.disk(), "part/1", b"dir"), &m, true, true)
    });
    let s = src.clone();
    g.case("part/2::tar_zstd", move |ctx| {
        let m = manifest_of(ctx, &s, "part/2")?;
        checks::check_tar(ctx, &s, &vpath(s.disk(), "part/2", b""), &m, true)
    });
    let s = src.clone();
    g.case("part/1::tar_subdir_to_stdout", move |ctx| {
        // A nested directory's tar through stdout; hard links inside it stay hard links
        // only where both names are inside, so compare without them.
        let full = manifest_of(ctx, &s, "part/1")?;
        let want = sub_manifest(&full, b"nested");
        let sc = ctx.scratch("tar-stdout")?;
        let f = sc.path().join("n.tar");
        let p = vpath(s.disk(), "part/1", b"nested");
        extract_to_file(ctx, &s, &p, &["--format", "tar"], &f)?
            .check()
            .with_context(|| format!("{}: extract {} --format tar > FILE", s.label, show(&p)))?;
        let x = sc.path().join("x");
        std::fs::create_dir_all(&x)?;
        sys::tool(
            "tar",
            [
                OsStr::new("-xpf"),
                f.as_os_str(),
                OsStr::new("--warning=no-unknown-keyword"),
                OsStr::new("-C"),
                x.as_os_str(),
            ],
        )?;
        let have = manifest::of_directory(&ctx.mktree(), &x.join("nested"), sc.path())?;
        manifest::ensure_same(
            &format!("{}: tar of {} via stdout", s.label, show(&p)),
            &want,
            &have,
            &Rules {
                hardlinks: false,
                ..Rules::STRICT
            },
        )
    });
    let s = src.clone();
    g.case("part/1::extract_files_stdout_sha256", move |ctx| {
        let m = manifest_of(ctx, &s, "part/1")?;
        let sc = ctx.scratch("files")?;
        // Varied files: big, sparse, empty, unicode and non-UTF-8 names, deepest, longest path.
        let mut picks: Vec<Vec<u8>> = [
            &b"data/random-5M.bin"[..],
            b"sparse-64M.bin",
            b"empty.txt",
            "ünïcødé-文件.txt".as_bytes(),
            b"bad-\xff-name.bin",
            b"latin1-caf\xe9.txt",
            b"name with spaces.txt",
            b"-leading-dash.txt",
            b"time-2100.txt",
            b"hl/two.bin",
        ]
        .iter()
        .map(|p| p.to_vec())
        .collect();
        let longest = m
            .values()
            .filter(|e| e.kind == 'f')
            .max_by_key(|e| e.path.len())
            .context("no files")?;
        picks.push(longest.path.clone());
        let deepest = m
            .values()
            .filter(|e| e.kind == 'f')
            .max_by_key(|e| e.path.iter().filter(|&&b| b == b'/').count())
            .context("no files")?;
        picks.push(deepest.path.clone());
        for rel in picks {
            let want = m
                .get(&rel)
                .and_then(|e| e.sha256.clone())
                .with_context(|| format!("manifest has no file {}", show(&rel)))?;
            let got = checks::sha_via_stdout(ctx, &s, &vpath(s.disk(), "part/1", &rel), sc.path())?;
            ensure!(
                got == want,
                "{}: extract {} > FILE: sha256 {got}, want {want}",
                s.label,
                show(&rel)
            );
        }
        Ok(())
    });
    let s = src.clone();
    g.case("part/1::extract_file_targets", move |ctx| {
        let m = manifest_of(ctx, &s, "part/1")?;
        let want = m[&b"data/random-1M.bin"[..]]
            .sha256
            .clone()
            .unwrap_or_default();
        let p = vpath(s.disk(), "part/1", b"data/random-1M.bin");
        let sc = ctx.scratch("targets")?;
        // To a new file name.
        let f = sc.path().join("copy.bin");
        extract_into(ctx, &s, &p, &f, &[])?.check()?;
        ensure!(
            sys::sha256_file(&f)? == want,
            "{}: extract {} FILE: wrong content",
            s.label,
            show(&p)
        );
        // Into an existing directory: DIR/<name>.
        let d = sc.path().join("dir");
        std::fs::create_dir(&d)?;
        extract_into(ctx, &s, &p, &d, &[])?.check()?;
        let inside = d.join("random-1M.bin");
        ensure!(
            inside.exists() && sys::sha256_file(&inside)? == want,
            "{}: extract {} DIR did not write DIR/random-1M.bin with the file's content",
            s.label,
            show(&p)
        );
        let entries: Vec<_> = std::fs::read_dir(&d)?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        ensure!(
            entries.len() == 1,
            "{}: extract into DIR left extra files: {entries:?}",
            s.label
        );
        // `-` is stdout.
        let out = sc.path().join("dash.bin");
        let a: Vec<OsString> = vec![
            "extract".into(),
            s.path.clone().into(),
            OsStr::from_bytes(&p).into(),
            "-".into(),
        ];
        let o = ctx.cli.run_to_file(a, &out)?.check()?;
        ensure!(
            sys::sha256_file(&out)? == want,
            "{}: extract {} - did not write the file to stdout ({})",
            s.label,
            show(&p),
            o.describe()
        );
        // --zstd compresses a single file too.
        let z = sc.path().join("f.zst");
        extract_to_file(ctx, &s, &p, &["--zstd"], &z)?.check()?;
        let plain = sys::tool("zstd", [OsStr::new("-dcq"), z.as_os_str()])?;
        ensure!(
            sys::sha256_bytes(&plain.stdout)? == want,
            "{}: extract {} --zstd does not decompress to the file",
            s.label,
            show(&p)
        );
        Ok(())
    });
    let s = src.clone();
    g.case("overwrite_refused", move |ctx| {
        let m = manifest_of(ctx, &s, "part/1")?;
        let sc = ctx.scratch("overwrite")?;
        // A file target.
        let p = vpath(s.disk(), "part/1", b"README.txt");
        let f = sc.path().join("README.txt");
        std::fs::write(&f, b"old content\n")?;
        let o = extract_into(ctx, &s, &p, &f, &[])?;
        expect_error(o, 1, &[&f.to_string_lossy()])
            .context("extract onto an existing file without --overwrite")?;
        ensure!(
            std::fs::read(&f)? == b"old content\n",
            "the refused extract changed {}",
            f.display()
        );
        extract_into(ctx, &s, &p, &f, &["--overwrite"])?.check()?;
        let want = m[&b"README.txt"[..]].sha256.clone().unwrap_or_default();
        ensure!(
            sys::sha256_file(&f)? == want,
            "extract --overwrite did not replace {}",
            f.display()
        );
        // A directory unpacked onto an existing file inside TARGET.
        let d = sc.path().join("unpack");
        std::fs::create_dir(&d)?;
        std::fs::write(d.join("file"), b"old\n")?;
        let p = vpath(s.disk(), "part/1", b"dir");
        let o = extract_into(ctx, &s, &p, &d, &[])?;
        expect_error(o, 1, &[&d.join("file").to_string_lossy()])
            .context("unpacking onto an existing file without --overwrite")?;
        ensure!(
            std::fs::read(d.join("file"))? == b"old\n",
            "the refused unpack changed TARGET/file"
        );
        extract_into(ctx, &s, &p, &d, &["--overwrite"])?.check()?;
        let want = m[&b"dir/file"[..]].sha256.clone().unwrap_or_default();
        ensure!(
            sys::sha256_file(&d.join("file"))? == want,
            "unpack --overwrite did not replace TARGET/file"
        );
        Ok(())
    });
    let s = src.clone();
    g.case("errors", move |ctx| {
        let d = s.disk().to_string();
        let sc = ctx.scratch("errors")?;
        // Unknown path inside a bucket: the daemon's message names it.
        let p = vpath(&d, "part/1", b"does/not-exist.txt");
        expect_error(
            ctx.cli.list_out(&s.path, &p, "text")?,
            1,
            &[&show(&p), "no such file"],
        )?;
        let t = sc.path().join("never.txt");
        expect_error(
            extract_into(ctx, &s, &p, &t, &[])?,
            1,
            &[&show(&p), "no such file"],
        )?;
        ensure!(!t.exists(), "a failed extract left {}", t.display());
        let left: Vec<_> = std::fs::read_dir(sc.path())?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        ensure!(
            left.is_empty(),
            "a failed extract left files in the target directory: {left:?}"
        );
        // Unknown disk, bucket type, bucket.
        expect_error(
            ctx.cli.list_out(&s.path, b"/nodisk", "text")?,
            1,
            &["nodisk"],
        )?;
        expect_error(
            ctx.cli
                .list_out(&s.path, format!("/{d}/raw/raw").as_bytes(), "text")?,
            1,
            &["raw"],
        )?;
        expect_error(
            ctx.cli
                .list_out(&s.path, format!("/{d}/part/9").as_bytes(), "text")?,
            1,
            &["part/9"],
        )?;
        // A file used as a directory.
        let p = vpath(&d, "part/1", b"README.txt/x");
        expect_error(
            ctx.cli.list_out(&s.path, &p, "text")?,
            1,
            &["not a directory"],
        )?;
        // A directory without a target, and --zstd when unpacking.
        let p = vpath(&d, "part/1", b"dir");
        let o = ctx.cli.run([
            OsStr::new("extract"),
            s.path.as_os_str(),
            OsStr::from_bytes(&p),
        ])?;
        expect_error(o, 1, &["directory"])?;
        let o = extract_into(ctx, &s, &p, &sc.path().join("z"), &["--zstd"])?;
        expect_error(o, 1, &["--zstd"])?;
        Ok(())
    });
    let s = src.clone();
    g.case("reuse_without_boot", move |ctx| {
        // The group's VM is up: another call reuses it, fast, same pid.
        let before = ctx.cli.vms_for(&s.path)?;
        let o = ctx.cli.list_out(&s.path, b"/", "json")?.check()?;
        let after = ctx.cli.vms_for(&s.path)?;
        ensure!(
            !o.stderr.contains(STARTED_VM),
            "a call on a running source booted: {}",
            o.describe()
        );
        ensure!(
            before.len() == 1 && after.len() == 1 && before[0]["pid"] == after[0]["pid"],
            "status before/after a second call: {before:?} / {after:?}"
        );
        ensure!(
            o.elapsed < Duration::from_secs(3),
            "a call on a running VM took {:.2} s",
            o.elapsed.as_secs_f64()
        );
        Ok(())
    });
}

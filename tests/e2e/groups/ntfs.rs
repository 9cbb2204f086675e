//! The NTFS group: two NTFS volumes (one with its dirty flag set) as the two disks of
//! one source, mounted in the guest by ntfs3.

use super::matrix::matrix_group;
use super::G;
use crate::checks::{self, extract_into, sub_manifest, vpath, Src};
use crate::Ctx;
use anyhow::{ensure, Context, Result};
use file_restore_tests::manifest;
use file_restore_tests::sys::{self, show};
use serde_json::Value;
use std::ffi::OsStr;
use std::path::Path;

/// The two NTFS images (ntfs3 in the guest) as the two disks of one source
/// directory, so one VM serves both: the matrix checks of every bucket (levels,
/// recursive listing, tar with every sha256) plus NTFS specifics.
pub fn ntfs_group(ctx: &Ctx) -> Result<G> {
    let src = Src::snapshot(ctx, "ntfs-pair")?;
    let mut g = matrix_group(ctx, src.clone(), 40)?;
    ntfs_extras(&mut g, &src);
    Ok(g)
}

/// The disk name under which `src` shows the fixture image `key`.
fn disk_of(src: &Src, key: &str) -> Result<String> {
    src.disks
        .iter()
        .find(|(_, k)| k.as_str() == key)
        .map(|(d, _)| d.clone())
        .with_context(|| format!("{}: no disk is {key}", src.label))
}

/// The manifest of `part/1` of image `key`.
fn part1_manifest(ctx: &Ctx, key: &str) -> Result<manifest::Manifest> {
    let b = ctx.fx.bucket(key, "part/1")?;
    ctx.fx
        .manifest(b.manifest.as_deref().context("bucket without a manifest")?)
}

/// A list of paths of a bucket in fixtures.json (`compressed`, `sparse`).
fn bucket_paths(ctx: &Ctx, key: &str, field: &str) -> Result<Vec<Vec<u8>>> {
    let v = &ctx.fx.image(key)?["buckets"]["part/1"][field];
    let a = v
        .as_array()
        .with_context(|| format!("fixtures.json: {key} part/1 has no {field:?} list"))?;
    let paths: Vec<Vec<u8>> = a
        .iter()
        .filter_map(Value::as_str)
        .map(|s| s.as_bytes().to_vec())
        .collect();
    ensure!(
        !paths.is_empty(),
        "fixtures.json: {key} part/1: {field:?} is empty"
    );
    Ok(paths)
}

/// The names directly below `dir` (raw bytes) in a manifest.
fn manifest_names(m: &manifest::Manifest, dir: &[u8]) -> std::collections::BTreeSet<Vec<u8>> {
    manifest::children(m, dir)
        .iter()
        .map(|e| e.name().to_vec())
        .collect()
}

/// Lists `dir` of a bucket and compares the raw names (bytes, not lossy text)
/// with the manifest.
fn ensure_names_exact(
    ctx: &Ctx,
    src: &Src,
    disk: &str,
    m: &manifest::Manifest,
    dir: &[u8],
) -> Result<()> {
    let p = vpath(disk, "part/1", dir);
    let got: std::collections::BTreeSet<Vec<u8>> = ctx
        .cli
        .list(&src.path, &p)?
        .iter()
        .map(|e| e.name().to_vec())
        .collect();
    let want = manifest_names(m, dir);
    let shown = |s: &std::collections::BTreeSet<Vec<u8>>| -> Vec<String> {
        s.iter().map(|n| format!("{:?}", show(n))).collect()
    };
    ensure!(
        got == want,
        "{}: list {}: names differ from the manifest (as bytes; NTFS metafiles such as $MFT \
         must not show): only listed {:?}, only in the manifest {:?}",
        src.label,
        show(&p),
        shown(&got.difference(&want).cloned().collect()),
        shown(&want.difference(&got).cloned().collect())
    );
    Ok(())
}

/// Extracts one file to a file target and compares its length and sha256.
fn extract_file_exact(
    ctx: &Ctx,
    src: &Src,
    disk: &str,
    m: &manifest::Manifest,
    rel: &[u8],
    dir: &Path,
    what: &str,
) -> Result<()> {
    let e = m
        .get(rel)
        .with_context(|| format!("the manifest has no {}", show(rel)))?;
    let want = e.sha256.clone().context("no sha256 in the manifest")?;
    let size = e.size.context("no size in the manifest")?;
    let p = vpath(disk, "part/1", rel);
    let f = dir.join("file.bin");
    let _ = std::fs::remove_file(&f);
    extract_into(ctx, src, &p, &f, &[])?
        .check()
        .with_context(|| format!("{}: extract {} FILE ({what})", src.label, show(&p)))?;
    let len = std::fs::metadata(&f)?.len();
    let got = sys::sha256_file(&f)?;
    ensure!(
        len == size && got == want,
        "{}: extract {} ({what}): {len} bytes, sha256 {got}; want {size} bytes, sha256 {want}",
        src.label,
        show(&p)
    );
    Ok(())
}

/// NTFS: exact UTF-8 names, LZNT1-compressed and sparse files byte-exact,
/// directories as tar, zip and unpacked, the dirty volume readable (and still
/// dirty: nothing wrote to it).
fn ntfs_extras(g: &mut G, src: &Src) {
    let s = src.clone();
    g.case("ntfs/part/1::names_utf8_exact", move |ctx| {
        let d = disk_of(&s, "ntfs.img")?;
        let m = part1_manifest(ctx, "ntfs.img")?;
        for dir in [
            &b""[..],
            "Grüße".as_bytes(),
            "Grüße/Ünïcødé sub dir".as_bytes(),
            b"compressed",
        ] {
            ensure_names_exact(ctx, &s, &d, &m, dir)?;
        }
        // Entries with a DOS 8.3 name as well (a Win32 + DOS pair of $FILE_NAMEs): only
        // the long name shows.
        let dos = ctx.fx.image("ntfs.img")?["buckets"]["part/1"]["dos_names"].clone();
        let dos = dos
            .as_object()
            .context("fixtures.json: ntfs.img part/1 has no dos_names")?;
        for (long, short) in dos {
            let short = short.as_str().unwrap_or_default();
            let (parent, _) = long.rsplit_once('/').unwrap_or(("", long));
            let names: Vec<Vec<u8>> = ctx
                .cli
                .list(&s.path, &vpath(&d, "part/1", parent.as_bytes()))?
                .iter()
                .map(|e| e.name().to_vec())
                .collect();
            let base = long.rsplit('/').next().unwrap_or(long);
            ensure!(
                names.iter().any(|n| n == base.as_bytes())
                    && !names.iter().any(|n| n == short.as_bytes()),
                "{}: /{parent}: want {base:?} listed once under its long name and not its DOS \
                 name {short:?}; listed {:?}",
                s.label,
                names.iter().map(|n| show(n)).collect::<Vec<_>>()
            );
        }
        // A non-BMP name (a UTF-16 surrogate pair on disk) and an emoji, listed as
        // themselves (a non-directory lists as itself).
        for rel in [
            "Grüße/Ünïcødé sub dir/𝄞 music (non-BMP).bin",
            "emoji-🙂.txt",
        ] {
            let p = vpath(&d, "part/1", rel.as_bytes());
            let got = ctx.cli.list(&s.path, &p)?;
            let want = m[rel.as_bytes()].size;
            ensure!(
                got.len() == 1 && got[0].path == p && got[0].kind == 'f' && got[0].size == want,
                "{}: list {}: {got:?}, want the file itself ({want:?} bytes)",
                s.label,
                show(&p)
            );
        }
        Ok(())
    });
    let s = src.clone();
    g.case("ntfs/part/1::compressed_files_sha256", move |ctx| {
        let d = disk_of(&s, "ntfs.img")?;
        let m = part1_manifest(ctx, "ntfs.img")?;
        let files = bucket_paths(ctx, "ntfs.img", "compressed")?;
        // The fixture has what this case is about: a compressed file of 1 MiB or more
        // and one whose size is not a multiple of the 64 KiB compression unit.
        let sizes: Vec<u64> = files
            .iter()
            .filter_map(|f| m.get(f).and_then(|e| e.size))
            .collect();
        ensure!(
            sizes.iter().any(|&n| n >= 1 << 20) && sizes.iter().any(|&n| n % 65_536 != 0),
            "fixtures: the compressed files {sizes:?} lack a >= 1 MiB one or an odd-sized one"
        );
        let sc = ctx.scratch("ntfs-compressed")?;
        for f in &files {
            extract_file_exact(ctx, &s, &d, &m, f, sc.path(), "LZNT1-compressed")?;
        }
        // And through stdout.
        let rel = &b"compressed/text-odd-200003.txt"[..];
        let got = checks::sha_via_stdout(ctx, &s, &vpath(&d, "part/1", rel), sc.path())?;
        let want = m[rel].sha256.clone().unwrap_or_default();
        ensure!(
            got == want,
            "{}: extract {} > FILE: sha256 {got}, want {want}",
            s.label,
            show(rel)
        );
        Ok(())
    });
    let s = src.clone();
    g.case("ntfs/part/1::sparse_files_sha256", move |ctx| {
        let d = disk_of(&s, "ntfs.img")?;
        let m = part1_manifest(ctx, "ntfs.img")?;
        let files = bucket_paths(ctx, "ntfs.img", "sparse")?;
        let sc = ctx.scratch("ntfs-sparse")?;
        for f in &files {
            extract_file_exact(ctx, &s, &d, &m, f, sc.path(), "sparse")?;
            let got = checks::sha_via_stdout(ctx, &s, &vpath(&d, "part/1", f), sc.path())?;
            let want = m[f].sha256.clone().unwrap_or_default();
            ensure!(
                got == want,
                "{}: extract {} > FILE (sparse): sha256 {got}, want {want}",
                s.label,
                show(f)
            );
        }
        Ok(())
    });
    let s = src.clone();
    g.case("ntfs/part/1::tar_compressed_dir", move |ctx| {
        let d = disk_of(&s, "ntfs.img")?;
        let want = sub_manifest(&part1_manifest(ctx, "ntfs.img")?, b"compressed");
        checks::check_tar(ctx, &s, &vpath(&d, "part/1", b"compressed"), &want, false)
    });
    let s = src.clone();
    g.case("ntfs/part/1::unpack_bucket", move |ctx| {
        let d = disk_of(&s, "ntfs.img")?;
        let m = part1_manifest(ctx, "ntfs.img")?;
        checks::check_unpack(ctx, &s, &vpath(&d, "part/1", b""), &m)
    });
    let s = src.clone();
    g.case("ntfs/part/1::zip_unicode_dir", move |ctx| {
        let d = disk_of(&s, "ntfs.img")?;
        let dir = "Grüße".as_bytes();
        let want = sub_manifest(&part1_manifest(ctx, "ntfs.img")?, dir);
        checks::check_zip(ctx, &s, &vpath(&d, "part/1", dir), &want, false, false)
    });
    let s = src.clone();
    g.case("ntfs-dirty/part/1::dirty_volume_readable", move |ctx| {
        let key = "ntfs-dirty.img";
        let d = disk_of(&s, key)?;
        let b = ctx.fx.bucket(key, "part/1")?;
        ensure!(
            b.state.as_deref() == Some("dirty"),
            "fixtures.json: {key} part/1 is not marked dirty"
        );
        let m = part1_manifest(ctx, key)?;
        ensure_names_exact(ctx, &s, &d, &m, b"")?;
        let sc = ctx.scratch("ntfs-dirty")?;
        for rel in [&b"readme.txt"[..], b"data/random-1M.bin"] {
            extract_file_exact(ctx, &s, &d, &m, rel, sc.path(), "dirty volume")?;
        }
        let dir = "日本語ディレクトリ".as_bytes();
        checks::check_unpack(ctx, &s, &vpath(&d, "part/1", dir), &sub_manifest(&m, dir))?;
        // The image is still dirty: the VM had it read-only, and ntfs3 mounted it
        // read-only (a read-write mount of a dirty volume needs "force").
        let start = ctx.fx.image(key)?["buckets"]["part/1"]["start"]
            .as_u64()
            .context("no start")?;
        let img = ctx.fx.path(key);
        let out = sys::tool(
            "python3",
            [
                ctx.repo.join("tests/fixtures/ntfs_tool.py").as_os_str(),
                OsStr::new("flags"),
                img.as_os_str(),
                OsStr::new("--offset"),
                OsStr::new(&start.to_string()),
            ],
        )?;
        let flags = out.stdout_str();
        let dirty = flags.split_whitespace().count() == 2
            && flags.split_whitespace().all(|f| {
                u16::from_str_radix(f.trim_start_matches("0x"), 16).is_ok_and(|v| v & 1 == 1)
            });
        ensure!(
            dirty,
            "{key}: $Volume flags after the VM read it: {flags:?}, want VOLUME_IS_DIRTY (0x0001) \
             in both $MFT and $MFTMirr"
        );
        Ok(())
    });
}

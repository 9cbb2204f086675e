//! Archive checks: tar (plain or zstd), zip and unpacked directories
//! compared with the fixture manifests, every sha256 included.

use super::{extract_into, extract_to_file, Src};
use crate::Ctx;
use anyhow::{ensure, Context, Result};
use file_restore_tests::manifest::{self, Manifest, Mtime, Rules};
use file_restore_tests::sys::{self, show};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Unpacks a tar (optionally zstd) with GNU tar into `dir`; returns the one
/// top-level entry it must hold.
fn untar(archive: &Path, dir: &Path, zstd: bool) -> Result<PathBuf> {
    let tar_file = if zstd {
        let plain = archive.with_extension("");
        sys::tool(
            "zstd",
            [
                OsStr::new("-d"),
                OsStr::new("-q"),
                OsStr::new("-f"),
                archive.as_os_str(),
                OsStr::new("-o"),
                plain.as_os_str(),
            ],
        )
        .context("the --zstd archive does not decompress with zstd")?;
        plain
    } else {
        archive.to_path_buf()
    };
    std::fs::create_dir_all(dir)?;
    let mut c = Command::new("tar");
    c.args([
        "--extract",
        "--same-permissions",
        "--same-owner",
        "--xattrs",
        "--xattrs-include=user.*",
        "--warning=no-timestamp",
        "--warning=no-unknown-keyword",
        "--file",
    ])
    .arg(&tar_file)
    .arg("--directory")
    .arg(dir);
    sys::run(c, None, sys::Stdout::Capture, Duration::from_secs(600))?
        .check()
        .context("GNU tar cannot unpack the archive")?;
    if zstd {
        let _ = std::fs::remove_file(&tar_file);
    }
    one_top_entry(dir)
}

fn one_top_entry(dir: &Path) -> Result<PathBuf> {
    let top: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    ensure!(
        top.len() == 1,
        "the archive holds {} top-level entries, want exactly one (the extracted directory): {top:?}",
        top.len()
    );
    Ok(top.into_iter().next().unwrap_or_default())
}

/// Extracts `path` as a tar archive (to a file), unpacks it with GNU tar and
/// compares everything with `want`: names, types, sizes, modes, owners, mtimes,
/// sha256 of every file, symlink targets, hard links, user xattrs.
pub fn check_tar(ctx: &Ctx, src: &Src, path: &[u8], want: &Manifest, zstd: bool) -> Result<()> {
    let s = ctx.scratch("tar")?;
    let archive = s.path().join(if zstd { "a.tar.zst" } else { "a.tar" });
    let mut extra = vec!["--format", "tar"];
    if zstd {
        extra.push("--zstd");
    }
    let what = format!("{}: extract {} {}", src.label, show(path), extra.join(" "));
    let out = extract_into(ctx, src, path, &archive, &extra)?;
    out.check().with_context(|| what.clone())?;
    let top = untar(&archive, &s.path().join("x"), zstd).with_context(|| what.clone())?;
    let base = path.rsplit(|&b| b == b'/').next().unwrap_or_default();
    ensure!(
        top.file_name().map(|n| n.as_bytes()) == Some(base),
        "{what}: the archive's top entry is {}, want {}",
        top.display(),
        show(base)
    );
    let _ = std::fs::remove_file(&archive);
    let have = manifest::of_directory(&ctx.mktree(), &top, s.path())?;
    manifest::ensure_same(
        &format!("{what}, unpacked by GNU tar"),
        want,
        &have,
        &Rules::STRICT,
    )
}

/// Extracts a directory without --format with --same-owner (the CLI unpacks
/// it into TARGET with the image's owners, set-id bits and exact modes) and
/// compares: names, types, sizes, modes, owners (root), mtimes, content,
/// symlink targets, hard links (user xattrs are not promised by the unpacker).
/// Without --same-owner the unpacker drops owners, set-id bits and special
/// files and applies the umask (host-driver unpack unit tests).
pub fn check_unpack(ctx: &Ctx, src: &Src, path: &[u8], want: &Manifest) -> Result<()> {
    let s = ctx.scratch("unpack")?;
    let target = s.path().join("target");
    let what = format!("{}: extract {} TARGET --same-owner", src.label, show(path));
    extract_into(ctx, src, path, &target, &["--same-owner"])?
        .check()
        .with_context(|| what.clone())?;
    let have = manifest::of_directory(&ctx.mktree(), &target, s.path())?;
    let rules = Rules {
        xattrs: false,
        ..Rules::STRICT
    };
    manifest::ensure_same(
        &format!("{what} (unpacked by the CLI)"),
        want,
        &have,
        &rules,
    )
}

/// Reads a zip with Python's zipfile (raw names: cp437-flagged names re-encoded)
/// and writes a manifest of it; fails on members outside ROOT or duplicates.
const ZIP_MANIFEST_PY: &str = r#"
import base64, calendar, hashlib, json, stat, sys, zipfile
zpath, root, out = sys.argv[1], sys.argv[2].encode("utf-8", "surrogateescape"), sys.argv[3]
b64 = lambda b: base64.b64encode(b).decode()
res, seen = [], set()
with zipfile.ZipFile(zpath) as z:
    bad = z.testzip()
    if bad is not None:
        raise SystemExit("zip member %r has a bad CRC" % bad)
    for i in z.infolist():
        raw = i.orig_filename.encode("utf-8") if i.flag_bits & 0x800 else i.orig_filename.encode("cp437")
        isdir = raw.endswith(b"/")
        raw = raw.rstrip(b"/")
        if raw == root:
            continue
        if not raw.startswith(root + b"/") or b"/../" in raw + b"/" or raw.startswith(b"/"):
            raise SystemExit("zip member %r is not inside %r" % (raw, root))
        rel = raw[len(root) + 1:]
        if rel in seen:
            raise SystemExit("zip member %r appears twice" % raw)
        seen.add(rel)
        mode = i.external_attr >> 16
        kind = "l" if stat.S_ISLNK(mode) else "d" if (stat.S_ISDIR(mode) or isdir) else "f"
        data = b"" if kind == "d" else z.read(i)
        e = {"path": b64(rel), "text": rel.decode("utf-8", "replace"), "type": kind,
             "size": None if kind == "d" else len(data),
             "mtime": calendar.timegm(i.date_time + (0, 0, 0)),
             "mode": ("%04o" % stat.S_IMODE(mode)) if mode else None, "uid": None, "gid": None}
        if kind == "f":
            e["sha256"] = hashlib.sha256(data).hexdigest()
        if kind == "l":
            e["target"] = b64(data)
        res.append(e)
with open(out, "w") as f:
    json.dump(res, f)
"#;

/// Extracts `path` as zip (to a file, or to stdout), tests it with `unzip -t`,
/// reads every member and compares: names, types, sizes, modes, content, symlink
/// targets, mtimes (DOS: 2 s steps, clamped to 1980).
pub fn check_zip(
    ctx: &Ctx,
    src: &Src,
    path: &[u8],
    want: &Manifest,
    zstd: bool,
    to_stdout: bool,
) -> Result<()> {
    let s = ctx.scratch("zip")?;
    let mut zip = s.path().join(if zstd { "a.zip.zst" } else { "a.zip" });
    let mut extra = vec!["--format", "zip"];
    if zstd {
        extra.push("--zstd");
    }
    let what = format!(
        "{}: extract {} {}{}",
        src.label,
        show(path),
        extra.join(" "),
        if to_stdout { " > FILE" } else { " TARGET" }
    );
    let out = if to_stdout {
        extract_to_file(ctx, src, path, &extra, &zip)?
    } else {
        extract_into(ctx, src, path, &zip, &extra)?
    };
    out.check().with_context(|| what.clone())?;
    if zstd {
        let plain = s.path().join("a.zip");
        sys::tool(
            "zstd",
            [
                OsStr::new("-d"),
                OsStr::new("-q"),
                zip.as_os_str(),
                OsStr::new("-o"),
                plain.as_os_str(),
            ],
        )
        .with_context(|| format!("{what}: not zstd"))?;
        zip = plain;
    }
    // Info-ZIP's own test where installed (python's zipfile below checks every CRC too).
    if Path::new("/usr/bin/unzip").exists() {
        sys::tool("unzip", [OsStr::new("-tqq"), zip.as_os_str()])
            .with_context(|| format!("{what}: `unzip -t` rejects the archive"))?;
    }
    let base = path.rsplit(|&b| b == b'/').next().unwrap_or_default();
    let json = s.path().join("zip.manifest.json");
    let mut c = Command::new("python3");
    c.arg("-c")
        .arg(ZIP_MANIFEST_PY)
        .arg(&zip)
        .arg(OsStr::from_bytes(base))
        .arg(&json);
    sys::run(c, None, sys::Stdout::Capture, Duration::from_secs(600))?
        .check()
        .with_context(|| format!("{what}: reading the zip"))?;
    let have = manifest::load(&json)?;
    // zip stores symlink names and targets as UTF-8 only: non-UTF-8 bytes
    // become U+FFFD (documented in docs/API.md; tar is exact).
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned().into_bytes();
    let want: Manifest = want
        .values()
        .map(|e| {
            let mut e = e.clone();
            if e.kind == 'l' {
                e.path = lossy(&e.path);
                if let Some(t) = e.target.take() {
                    let t = lossy(&t);
                    e.size = Some(t.len() as u64);
                    e.target = Some(t);
                }
            }
            (e.path.clone(), e)
        })
        .collect();
    // The zip writer keeps permission bits only (the zip crate masks set-id bits).
    let rules = Rules {
        special_bits: false,
        owner: false,
        mtime: Mtime::Dos,
        hardlinks: false,
        xattrs: false,
        ..Rules::STRICT
    };
    manifest::ensure_same(
        &format!("{what}, read by python zipfile"),
        &want,
        &have,
        &rules,
    )
}

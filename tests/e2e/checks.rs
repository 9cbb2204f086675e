//! The checks the cases are made of: listings at every level, trees through
//! listings, tar, zip and unpacking compared with manifests, symlink traps,
//! error answers.

use crate::Ctx;
use anyhow::{bail, ensure, Context, Result};
use file_restore_tests::cli::{self, join, Listed};
use file_restore_tests::fixtures::Bucket;
use file_restore_tests::manifest::{self, Manifest, Mtime, Rules};
use file_restore_tests::sys::{self, show, Output};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A SOURCE argument: an image file or a snapshot directory, and its disks.
#[derive(Debug, Clone)]
pub struct Src {
    /// For messages: the fixture key or a label.
    pub label: String,
    /// The SOURCE argument.
    pub path: PathBuf,
    /// Disk name (in VM paths) → fixture image key.
    pub disks: BTreeMap<String, String>,
}

impl Src {
    /// An image file of the fixtures, its disk named by the file stem.
    pub fn image(ctx: &Ctx, key: &str) -> Src {
        let path = ctx.fx.path(key);
        Src {
            label: key.to_string(),
            disks: BTreeMap::from([(stem(&path), key.to_string())]),
            path,
        }
    }

    /// A snapshot directory of the fixtures (from the index).
    pub fn snapshot(ctx: &Ctx, dir: &str) -> Result<Src> {
        let snap = ctx
            .fx
            .snapshots()
            .into_iter()
            .find(|s| s["dir"] == dir)
            .with_context(|| format!("fixtures.json has no snapshot {dir}"))?;
        let disks = snap["disks"]
            .as_object()
            .context("snapshot without disks")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        Ok(Src {
            label: dir.to_string(),
            path: ctx.fx.path(dir),
            disks,
        })
    }

    /// The only disk's name.
    pub fn disk(&self) -> &str {
        self.disks.keys().next().map(String::as_str).unwrap_or("")
    }
}

/// A file's stem (the CLI names a disk after it).
pub fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `/disk/bucket[/rel]`.
pub fn vpath(disk: &str, bucket: &str, rel: &[u8]) -> Vec<u8> {
    join(format!("/{disk}/{bucket}").as_bytes(), rel)
}

/// The entries of `m` below `dir`, relative to it.
pub fn sub_manifest(m: &Manifest, dir: &[u8]) -> Manifest {
    if dir.is_empty() {
        return m.clone();
    }
    let prefix = [dir, b"/"].concat();
    m.values()
        .filter(|e| e.path.starts_with(&prefix))
        .map(|e| {
            let mut e = e.clone();
            e.path = e.path[prefix.len()..].to_vec();
            if let Some(h) = &e.hardlink_of {
                e.hardlink_of = h.strip_prefix(&prefix[..]).map(<[u8]>::to_vec);
            }
            (e.path.clone(), e)
        })
        .collect()
}

/// Expects an error exit (code `code`) whose stderr contains every needle
/// (case-insensitive), and returns the output.
pub fn expect_error(out: Output, code: i32, needles: &[&str]) -> Result<Output> {
    ensure!(
        out.code == Some(code) && !out.timed_out,
        "expected exit code {code}, got: {}",
        out.describe()
    );
    let err = out.stderr.to_lowercase();
    for n in needles {
        ensure!(
            err.contains(&n.to_lowercase()),
            "the error message does not mention {n:?}: {}",
            out.describe()
        );
    }
    Ok(out)
}

/// `extract SOURCE PATH [extra…]` with stdout into `file`.
pub fn extract_to_file(
    ctx: &Ctx,
    src: &Src,
    path: &[u8],
    extra: &[&str],
    file: &Path,
) -> Result<Output> {
    let mut a: Vec<OsString> = vec![
        "extract".into(),
        src.path.clone().into(),
        OsStr::from_bytes(path).to_os_string(),
    ];
    a.extend(extra.iter().map(OsString::from));
    ctx.cli.run_to_file(a, file)
}

/// `extract SOURCE PATH TARGET [extra…]`.
pub fn extract_into(
    ctx: &Ctx,
    src: &Src,
    path: &[u8],
    target: &Path,
    extra: &[&str],
) -> Result<Output> {
    let mut a: Vec<OsString> = vec![
        "extract".into(),
        src.path.clone().into(),
        OsStr::from_bytes(path).to_os_string(),
        target.into(),
    ];
    a.extend(extra.iter().map(OsString::from));
    ctx.cli.run(a)
}

/// The sha256 of a file extracted to stdout.
pub fn sha_via_stdout(ctx: &Ctx, src: &Src, path: &[u8], scratch: &Path) -> Result<String> {
    let f = scratch.join("stdout.bin");
    extract_to_file(ctx, src, path, &[], &f)?
        .check()
        .with_context(|| format!("{}: extract {}", src.label, show(path)))?;
    let h = sys::sha256_file(&f)?;
    let _ = std::fs::remove_file(&f);
    Ok(h)
}

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
            if !line.contains(&format!("[{f}]")) {
                return Err(bad("the filesystem type in brackets"));
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
    // become U+FFFD (documented in the README; tar is exact).
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

/// Copies a fixture image (sparse) into scratch space under a new name, for
/// cases that need a source no other case uses.
pub fn private_copy(ctx: &Ctx, key: &str, name: &str) -> Result<PathBuf> {
    let dir = ctx.work.join("sources");
    std::fs::create_dir_all(&dir)?;
    let dst = dir.join(name);
    if !dst.exists() {
        sys::tool(
            "cp",
            [
                OsStr::new("--sparse=always"),
                ctx.fx.path(key).as_os_str(),
                dst.as_os_str(),
            ],
        )?;
    }
    Ok(dst)
}

/// Fails unless no VM of `src` is in status and no QEMU names its path.
pub fn ensure_no_vm(ctx: &Ctx, src: &Path, what: &str) -> Result<()> {
    let vms = ctx.cli.vms_for(src)?;
    let procs = sys::vm_processes_mentioning(&src.to_string_lossy());
    if !vms.is_empty() || !procs.is_empty() {
        let names: Vec<&str> = vms.iter().filter_map(|v| v["name"].as_str()).collect();
        bail!(
            "{what}: a VM was left running for {}: status lists {names:?}; processes: {:?}",
            src.display(),
            procs.iter().map(|p| p.pid).collect::<Vec<_>>()
        );
    }
    Ok(())
}

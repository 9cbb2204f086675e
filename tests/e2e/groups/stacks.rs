//! The storage-stack groups: LVM, md RAID, LUKS and btrfs subvolumes, from the
//! images of tests/fixtures/mkstacks.sh (indexed by `stacks/stacks.json`), each
//! SOURCE a directory of disks served by one VM.
//!
//! Per source: every bucket at every level under **each** of its disks; every file
//! byte-exact (sha256 against the index); the tree bucket as a tar against its
//! manifest; LUKS locked, then a wrong key (a clear warning naming the container),
//! then a key file of several lines; an LV whose PV is missing; degraded arrays; the
//! passphrases nowhere in the run directory or the console log; and last the disk
//! images unchanged (sha256).

use super::{teardown_for, G};
use crate::checks::{self, expect_error, vpath, Src};
use crate::Ctx;
use anyhow::{ensure, Context, Result};
use file_restore_tests::cli::Listed;
use file_restore_tests::sys::{self, show};
use serde_json::Value;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// stacks.json, loaded once per group that needs it.
fn index(ctx: &Ctx) -> Result<Value> {
    let p = ctx.fx.dir.join("stacks/stacks.json");
    let text = std::fs::read_to_string(&p)
        .with_context(|| format!("{}: run tests/fixtures/mkfixtures.sh", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))
}

/// The bucket path the product uses for an index bucket: the index names an
/// opened container's content `luks/<container bucket>`, the daemon
/// `luks/<container bucket with - for />`.
fn product_bucket(b: &str) -> String {
    match b.strip_prefix("luks/") {
        Some("raw/raw") => "luks/raw".into(),
        Some(rest) => format!("luks/{}", rest.replace('/', "-")),
        None => b.to_string(),
    }
}

/// A source directory of the stack fixtures.
fn source(ctx: &Ctx, idx: &Value, name: &str) -> Result<Src> {
    let disks = idx["sources"][name]["disks"]
        .as_array()
        .with_context(|| format!("stacks.json: source {name} has no disks"))?
        .iter()
        .filter_map(Value::as_str)
        .map(|d| (d.to_string(), d.to_string()))
        .collect();
    Ok(Src {
        label: format!("stacks/{name}"),
        path: ctx.fx.dir.join("stacks").join(name),
        disks,
    })
}

/// The index's buckets of `source`.
fn buckets_of<'a>(idx: &'a Value, source: &str) -> Vec<&'a Value> {
    idx["buckets"]
        .as_array()
        .map(|a| a.iter().filter(|b| b["source"] == source).collect())
        .unwrap_or_default()
}

/// Every stack source as a group; none when the stack fixtures were not built
/// on purpose (`NO_STACKS=1`, as `make fresh-demo` runs its subset), said once.
pub fn stack_groups(ctx: &Ctx) -> Result<Vec<G>> {
    if std::env::var_os("NO_STACKS").is_some_and(|v| !v.is_empty())
        && !ctx.fx.dir.join("stacks/stacks.json").exists()
    {
        eprintln!(
            "e2e: NO_STACKS is set and there are no stack fixtures: the stack groups are skipped"
        );
        return Ok(Vec::new());
    }
    let idx = index(ctx)?;
    let names: Vec<String> = idx["sources"]
        .as_object()
        .context("stacks.json: no sources")?
        .keys()
        .cloned()
        .collect();
    let mut out = Vec::new();
    for name in names {
        let src = source(ctx, &idx, &name)?;
        let buckets: Vec<Value> = buckets_of(&idx, &name).into_iter().cloned().collect();
        let mut g = G::new(src.label.clone(), 30);
        let locked: Vec<Value> = buckets
            .iter()
            .filter(|b| b["state"] == "locked")
            .cloned()
            .collect();
        if !locked.is_empty() {
            let (s, l) = (src.clone(), locked.clone());
            g.case("luks_listed_locked", move |ctx| check_locked(ctx, &s, &l));
            let (s, l) = (src.clone(), locked.clone());
            g.case("luks_wrong_key", move |ctx| check_wrong_key(ctx, &s, &l));
            let (s, l, k) = (src.clone(), locked.clone(), idx["keys"].clone());
            g.case("luks_key_file", move |ctx| check_key_file(ctx, &s, &l, &k));
        }
        for b in buckets.iter().filter(|b| b["state"] != "locked") {
            let bucket = product_bucket(b["bucket"].as_str().unwrap_or_default());
            let (s, bv) = (src.clone(), b.clone());
            let layout_of = idx["sources"][&name]["same_disks_as"]
                .as_str()
                .unwrap_or(&name);
            let parity_raid = idx["sources"][layout_of]["lvm"]["lvs"]
                [bucket.rsplit('/').next().unwrap_or_default()]["segtype"]
                .as_str()
                .is_some_and(|t| ["raid4", "raid5", "raid6"].iter().any(|p| t.starts_with(p)))
                && bucket.starts_with("lvm/");
            match b["state"].as_str() {
                // dm-raid writes superblocks when a parity RAID LV starts: on
                // read-only disks it fails (docs/USAGE.md, storage stacks).
                _ if parity_raid => {
                    g.case(format!("{bucket}::dm_raid_parity_error"), move |ctx| {
                        check_error(ctx, &s, &bv, &["dm-raid", "read-only"])
                    });
                }
                Some("missing") => {
                    g.case(format!("{bucket}::missing_pv_error"), move |ctx| {
                        check_missing(ctx, &s, &bv)
                    });
                }
                _ => {
                    let md = idx["sources"][&name]["md"].clone();
                    g.case(format!("{bucket}::files"), move |ctx| {
                        check_files(ctx, &s, &bv, &md)
                    });
                    if b["manifest"].is_string() {
                        let (s, bv) = (src.clone(), b.clone());
                        g.case(format!("{bucket}::tar_sha256"), move |ctx| {
                            check_tree(ctx, &s, &bv)
                        });
                    }
                }
            }
        }
        if !locked.is_empty() {
            let (s, k) = (src.clone(), idx["keys"].clone());
            g.case("luks_status_and_no_key_in_logs", move |ctx| {
                check_status_and_secrecy(ctx, &s, &k)
            });
        }
        let (s, sums) = (src.clone(), idx["disk_sha256"].clone());
        g.case("disks_unchanged", move |_| check_unchanged(&s, &sums));
        teardown_for(&mut g, src.path.clone());
        out.push(g);
    }
    Ok(out)
}

/// Lists `/<disk>/<kind>[/<group>]` and returns the entry of the bucket.
fn bucket_entry(ctx: &Ctx, src: &Src, disk: &str, bucket: &str) -> Result<Listed> {
    let (parent, name) = bucket
        .rsplit_once('/')
        .with_context(|| format!("bucket {bucket} without a kind"))?;
    let ppath = format!("/{disk}/{parent}");
    let got = ctx.cli.list(&src.path, ppath.as_bytes())?;
    got.into_iter()
        .find(|e| e.text == name)
        .with_context(|| format!("{}: list {ppath} does not show {name}", src.label))
}

/// The disks a bucket is built on: an md array's members (from the index),
/// else every disk of the source (a VG's buckets appear under every disk of
/// the VG, a single disk's under it).
fn disks_of(src: &Src, b: &Value, md: &Value) -> Vec<String> {
    let bucket = b["bucket"].as_str().unwrap_or_default();
    match md[bucket]["members"].as_object() {
        Some(m) => {
            let mut d: Vec<String> = m
                .keys()
                .filter_map(|k| k.split('/').next().map(String::from))
                .collect();
            d.dedup();
            d
        }
        None => src.disks.keys().cloned().collect(),
    }
}

/// Every file of the bucket byte-exact under the first disk; under every
/// other disk it is built on its listing and `id.txt` (the same device, the
/// same content).
fn check_files(ctx: &Ctx, src: &Src, b: &Value, md: &Value) -> Result<()> {
    let bucket = product_bucket(b["bucket"].as_str().unwrap_or_default());
    let files = b["files"]
        .as_object()
        .context("stacks.json: bucket without files")?;
    let scratch = ctx.scratch("stack-files")?;
    for (i, disk) in disks_of(src, b, md).iter().enumerate() {
        let e = bucket_entry(ctx, src, disk, &bucket)?;
        let want_fs = b["fstype"].as_str().unwrap_or("unknown");
        ensure!(
            e.fstype.as_deref() == Some(want_fs),
            "{}: {disk}/{bucket}: fstype {:?}, want {want_fs}",
            src.label,
            e.fstype
        );
        let root = ctx.cli.list(&src.path, &vpath(disk, &bucket, b""))?;
        ensure!(
            root.iter().any(|e| e.text == "id.txt"),
            "{}: {disk}/{bucket} has no id.txt: {:?}",
            src.label,
            root.iter().map(|e| &e.text).collect::<Vec<_>>()
        );
        for (path, info) in files {
            if i > 0 && path != "id.txt" {
                continue;
            }
            let want = info["sha256"].as_str().unwrap_or_default();
            let p = vpath(disk, &bucket, path.as_bytes());
            let got = checks::sha_via_stdout(ctx, src, &p, scratch.path())?;
            ensure!(
                got == want,
                "{}: {} has sha256 {got}, want {want}",
                src.label,
                show(&p)
            );
        }
    }
    Ok(())
}

/// A bucket with a content tree: a tar of it against its manifest.
fn check_tree(ctx: &Ctx, src: &Src, b: &Value) -> Result<()> {
    let bucket = product_bucket(b["bucket"].as_str().unwrap_or_default());
    let m = b["manifest"].as_str().unwrap_or_default();
    let want = ctx.fx.manifest(&format!("stacks/{m}"))?;
    checks::check_tar(ctx, src, &vpath(src.disk(), &bucket, b""), &want, false)
}

/// An LV whose PV is absent: listed with an error that names the cause, and
/// reading it fails with it.
fn check_missing(ctx: &Ctx, src: &Src, b: &Value) -> Result<()> {
    let bucket = product_bucket(b["bucket"].as_str().unwrap_or_default());
    for disk in src.disks.keys() {
        let p = vpath(disk, &bucket, b"");
        let out = ctx.cli.list_out(&src.path, &p, "json")?;
        expect_error(out, 1, &[&bucket, "missing"])
            .with_context(|| format!("{}: list {}", src.label, show(&p)))?;
        let (parent, _) = bucket.rsplit_once('/').unwrap_or((&bucket, ""));
        let listing = ctx
            .cli
            .list_out(&src.path, format!("/{disk}/{parent}").as_bytes(), "json")?
            .check()?;
        ensure!(
            listing.stdout_str().contains("missing from this SOURCE"),
            "{}: /{disk}/{parent} does not carry the error: {}",
            src.label,
            listing.stdout_str()
        );
    }
    Ok(())
}

/// A bucket that is listed, with an error, and cannot be read.
fn check_error(ctx: &Ctx, src: &Src, b: &Value, needles: &[&str]) -> Result<()> {
    let bucket = product_bucket(b["bucket"].as_str().unwrap_or_default());
    let disk = src.disk();
    let e = bucket_entry(ctx, src, disk, &bucket)?;
    ensure!(e.leaf, "{}: {disk}/{bucket} is not a leaf", src.label);
    let out = ctx
        .cli
        .list_out(&src.path, &vpath(disk, &bucket, b""), "json")?;
    let mut all = vec![bucket.as_str()];
    all.extend_from_slice(needles);
    expect_error(out, 1, &all)?;
    Ok(())
}

/// Containers listed locked with their version; their content absent.
fn check_locked(ctx: &Ctx, src: &Src, locked: &[Value]) -> Result<()> {
    let disk = src.disk();
    for b in locked {
        let bucket = b["bucket"].as_str().unwrap_or_default();
        let version = b["luks_version"].as_u64().unwrap_or(0);
        let parent = bucket.rsplit_once('/').map_or(bucket, |x| x.0);
        let out = ctx
            .cli
            .list_out(&src.path, format!("/{disk}/{parent}").as_bytes(), "json")?
            .check()?;
        let entries: Vec<Value> = serde_json::from_str(&out.stdout_str())?;
        let name = bucket.rsplit('/').next().unwrap_or_default();
        let e = entries
            .iter()
            .find(|e| e["text"] == name)
            .with_context(|| format!("{}: no entry {bucket}", src.label))?;
        ensure!(
            e["fstype"] == "crypto_LUKS"
                && e["locked"] == true
                && e["encryption"] == format!("LUKS{version}"),
            "{}: {bucket} is not listed as a locked LUKS{version} container: {e}",
            src.label
        );
        let content = product_bucket(&format!("luks/{bucket}"));
        let out = ctx
            .cli
            .list_out(&src.path, &vpath(disk, &content, b""), "json")?;
        expect_error(out, 1, &[&content, "--key-file"])?;
    }
    Ok(())
}

fn key_file(dir: &Path, lines: &[&str]) -> Result<PathBuf> {
    let p = dir.join("keys.txt");
    std::fs::write(&p, lines.join("\n") + "\n")?;
    Ok(p)
}

fn list_with_keys(ctx: &Ctx, src: &Src, keys: &Path, path: &str) -> Result<sys::Output> {
    let args: Vec<OsString> = vec![
        "list".into(),
        src.path.clone().into(),
        path.into(),
        "--key-file".into(),
        keys.into(),
    ];
    ctx.cli.run(args)
}

/// A wrong key: a warning naming each container, the command goes on, the
/// content stays absent.
fn check_wrong_key(ctx: &Ctx, src: &Src, locked: &[Value]) -> Result<()> {
    let scratch = ctx.scratch("wrong-key")?;
    let keys = key_file(scratch.path(), &["not the passphrase"])?;
    let out = list_with_keys(ctx, src, &keys, "/")?.check()?;
    for b in locked {
        let container = format!(
            "{}/{}",
            src.disk(),
            b["bucket"].as_str().unwrap_or_default()
        );
        ensure!(
            out.stderr
                .contains(&format!("warning: {container} stays locked"))
                && out.stderr.contains("none of the 1 passphrase(s) opens"),
            "{}: a wrong key gives no warning naming {container}: {}",
            src.label,
            out.describe()
        );
    }
    Ok(())
}

/// A key file of several lines (wrong ones first): every container opens and
/// says so; what is inside is scanned (the following cases read it).
fn check_key_file(ctx: &Ctx, src: &Src, locked: &[Value], keys: &Value) -> Result<()> {
    let scratch = ctx.scratch("key-file")?;
    let mut lines = vec!["wrong one", ""];
    let right: Vec<String> = locked
        .iter()
        .filter_map(|b| {
            let key = format!(
                "{}/{}",
                src.path.file_name()?.to_str()?,
                b["bucket"].as_str()?
            );
            keys[&key].as_str().map(String::from)
        })
        .collect();
    ensure!(!right.is_empty(), "{}: no keys in stacks.json", src.label);
    lines.extend(right.iter().map(String::as_str));
    let kf = key_file(scratch.path(), &lines)?;
    let out = list_with_keys(ctx, src, &kf, "/")?.check()?;
    for b in locked {
        let bucket = b["bucket"].as_str().unwrap_or_default();
        let container = format!("{}/{bucket}", src.disk());
        let content = product_bucket(&format!("luks/{bucket}"));
        ensure!(
            out.stderr
                .contains(&format!("container {container} as {content}")),
            "{}: no line says {container} opened as {content}: {}",
            src.label,
            out.describe()
        );
    }
    // Again: the containers are open already.
    let again = list_with_keys(ctx, src, &kf, "/")?.check()?;
    ensure!(
        again.stderr.contains("is open"),
        "{}: a second --key-file call does not say the container is open: {}",
        src.label,
        again.describe()
    );
    Ok(())
}

/// status shows the containers open (never a key); the passphrases are in no
/// file of the runtime directory (VM map, run dirs, console logs).
fn check_status_and_secrecy(ctx: &Ctx, src: &Src, keys: &Value) -> Result<()> {
    let vms = ctx.cli.vms_for(&src.path)?;
    let text = serde_json::to_string(&vms)?;
    ensure!(
        text.contains("\"locked\":false") && text.contains("\"encryption\":\"LUKS"),
        "{}: status does not show the containers open: {text}",
        src.label
    );
    let secrets: Vec<&str> = keys
        .as_object()
        .map(|m| m.values().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut stack = vec![ctx.cli.runtime_dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let p = e.path();
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let data = std::fs::read(&p).unwrap_or_default();
                for s in &secrets {
                    ensure!(
                        !data.windows(s.len()).any(|w| w == s.as_bytes()),
                        "{}: a passphrase is in {}",
                        src.label,
                        p.display()
                    );
                }
            }
        }
    }
    for s in &secrets {
        ensure!(
            !text.contains(s),
            "{}: a passphrase is in status",
            src.label
        );
    }
    Ok(())
}

/// Nothing wrote to the disk images.
fn check_unchanged(src: &Src, sums: &Value) -> Result<()> {
    let sums = sums.as_object().context("stacks.json: no disk_sha256")?;
    for disk in src.disks.keys() {
        // Sources that leave a disk out hold hard links of another's images.
        let file = format!("/{disk}.raw");
        let (key, want) = sums
            .iter()
            .find(|(k, _)| k.ends_with(&file))
            .with_context(|| format!("stacks.json: no disk_sha256 for {disk}.raw"))?;
        let got = sys::sha256_file(&src.path.join(format!("{disk}.raw")))?;
        ensure!(
            Some(got.as_str()) == want.as_str(),
            "{}: {key} changed: sha256 {got}, want {want}",
            src.label
        );
    }
    Ok(())
}

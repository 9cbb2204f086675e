//! ZFS pools (issue 20): the pools of tests/fixtures/mkzfs.sh, indexed in
//! `zfs/zfs.json` — `fuse23`, made by zfs-fuse (pool version 23, no feature
//! flags), and `ozpool`, made by OpenZFS 2.x (feature flags, a mirror of two
//! disks, left imported as a disk copied from a running machine is, an
//! encrypted dataset, two volumes). Each is the SOURCE directory of its
//! images. Every dataset reads byte-exact, the snapshot its older content,
//! the volumes their filesystems; the encrypted dataset is locked until its
//! passphrase is given; the mirror with one disk gone still reads.

use super::G;
use crate::Ctx;
use anyhow::{bail, ensure, Context, Result};
use file_restore_tests::sys;
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// What a dataset, snapshot or volume filesystem holds, from the index.
#[derive(Default)]
struct Tree {
    /// path → sha256
    files: BTreeMap<String, String>,
    /// path → target
    symlinks: BTreeMap<String, String>,
}

fn tree_of(v: &Value) -> Result<Tree> {
    let mut t = Tree::default();
    for f in v["files"].as_array().context("no files")? {
        t.files.insert(
            f["path"].as_str().context("path")?.to_owned(),
            f["sha256"].as_str().context("sha256")?.to_owned(),
        );
    }
    for l in v["symlinks"].as_array().into_iter().flatten() {
        t.symlinks.insert(
            l["path"].as_str().context("path")?.to_owned(),
            l["target"].as_str().context("target")?.to_owned(),
        );
    }
    Ok(t)
}

/// One pool of the index.
struct Pool {
    name: String,
    /// The SOURCE directory (the pool's images).
    dir: PathBuf,
    /// The member images' paths.
    members: Vec<PathBuf>,
    /// The datasets' JSON.
    datasets: Vec<Value>,
    /// dataset name → passphrase file
    keys: BTreeMap<String, PathBuf>,
}

/// The index, or `None` (the reason printed) where mkzfs.sh did not build it.
fn pools(ctx: &Ctx) -> Result<Option<Vec<Pool>>> {
    let dir = ctx.fx.path("zfs");
    let p = dir.join("zfs.json");
    if !p.is_file() {
        println!(
            "skipped: no {} (tests/fixtures/mkzfs.sh; NO_ZFS set?)",
            p.display()
        );
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(&std::fs::read(&p)?)
        .with_context(|| format!("{} (mkzfs.sh)", p.display()))?;
    for s in v["skipped"].as_array().into_iter().flatten() {
        println!(
            "skipped: pool {}: {}",
            s["pool"].as_str().unwrap_or("?"),
            s["reason"].as_str().unwrap_or("?")
        );
    }
    let mut out = Vec::new();
    for pool in v["pools"].as_array().context("zfs.json: no pools")? {
        let members: Vec<PathBuf> = pool["images"]
            .as_array()
            .context("no images")?
            .iter()
            .filter(|i| i["member"].as_bool() == Some(true))
            .map(|i| Ok(dir.join(i["path"].as_str().context("image path")?)))
            .collect::<Result<_>>()?;
        let src = members
            .first()
            .and_then(|m| m.parent())
            .context("pool without images")?
            .to_path_buf();
        let mut keys = BTreeMap::new();
        for k in pool["keys"].as_array().into_iter().flatten() {
            keys.insert(
                k["dataset"].as_str().context("key dataset")?.to_owned(),
                dir.join(k["file"].as_str().context("key file")?),
            );
        }
        out.push(Pool {
            name: pool["name"].as_str().context("pool name")?.to_owned(),
            dir: src,
            members,
            datasets: pool["datasets"].as_array().context("no datasets")?.clone(),
            keys,
        });
    }
    Ok(Some(out))
}

/// The bucket name of a dataset (`ozpool/data/nested` → `ozpool/data-nested`,
/// the root dataset as `ozpool/ozpool`).
fn bucket(pool: &str, full: &str) -> String {
    let (ds, snap) = match full.split_once('@') {
        Some((d, s)) => (d, Some(s)),
        None => (full, None),
    };
    let rel = match ds.strip_prefix(pool) {
        Some("") | None => pool.to_owned(),
        Some(r) => r.trim_start_matches('/').replace('/', "-"),
    };
    match snap {
        Some(s) => format!("zfs/{pool}/{rel}@{s}"),
        None => format!("zfs/{pool}/{rel}"),
    }
}

/// The disk name of an image (the CLI names disks by their file stem).
fn disk(image: &Path) -> String {
    image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether a text listing has an entry named `name` (a file, a bucket with
/// its `[type]`, or a symlink).
fn lists(out: &str, name: &str) -> bool {
    out.lines().any(|l| {
        l.ends_with(&format!(" {name}"))
            || l.contains(&format!(" {name} ["))
            || l.contains(&format!(" {name} -> "))
    })
}

fn list(ctx: &Ctx, src: &Path, path: &str, extra: &[&OsStr]) -> Result<String> {
    let mut args: Vec<&OsStr> = vec![OsStr::new("list"), src.as_os_str(), OsStr::new(path)];
    args.extend_from_slice(extra);
    let o = ctx.cli.run(args)?.check()?;
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Extracts the directory `path` of `src` and checks every file's sha256
/// and every symlink's target against `want`.
fn check_tree(ctx: &Ctx, src: &Path, path: &str, want: &Tree, extra: &[&OsStr]) -> Result<()> {
    let sc = ctx.scratch("zfs")?;
    let target = sc.path().join("out");
    let mut args: Vec<OsString> = vec![
        "extract".into(),
        src.as_os_str().to_owned(),
        path.into(),
        target.clone().into(),
    ];
    args.extend(extra.iter().map(|a| a.to_os_string()));
    ctx.cli
        .run(args)?
        .check()
        .with_context(|| path.to_owned())?;
    for (p, sha) in &want.files {
        let got = sys::sha256_file(&target.join(p)).with_context(|| format!("{path}/{p}"))?;
        ensure!(&got == sha, "{path}/{p}: sha256 {got}, want {sha}");
    }
    for (p, t) in &want.symlinks {
        let got = std::fs::read_link(target.join(p)).with_context(|| format!("{path}/{p}"))?;
        ensure!(
            got == Path::new(t),
            "{path}/{p} -> {}, want {t}",
            got.display()
        );
    }
    Ok(())
}

/// The datasets of `pool` for which `keep` holds.
fn datasets<'a>(
    pool: &'a Pool,
    keep: impl Fn(&Value) -> bool + 'a,
) -> impl Iterator<Item = &'a Value> {
    pool.datasets.iter().filter(move |d| keep(d))
}

fn is_fs(d: &Value) -> bool {
    d["type"].as_str() == Some("filesystem")
}

fn encrypted(d: &Value) -> bool {
    d["encrypted"].as_bool() == Some(true)
}

fn name(d: &Value) -> &str {
    d["name"].as_str().unwrap_or("")
}

/// Every case of this file.
pub fn zfs_groups() -> Vec<G> {
    let mut g = G::new("zfs", 60);
    g.case("datasets_listed_under_every_member", |ctx| {
        let Some(pools) = pools(ctx)? else {
            return Ok(());
        };
        for pool in &pools {
            for m in &pool.members {
                let d = disk(m);
                let out = list(ctx, &pool.dir, &format!("/{d}/zfs/{}", pool.name), &[])?;
                for ds in &pool.datasets {
                    let mut b = bucket(&pool.name, name(ds));
                    // A partitioned volume is listed as its partitions.
                    if let Some(n) = ds["content"]["partition"].as_u64() {
                        b = format!("{b}-part{n}");
                    }
                    let leaf = b.rsplit('/').next().unwrap_or("");
                    ensure!(lists(&out, leaf), "/{d}: no bucket {b} in:\n{out}");
                }
            }
        }
        Ok(())
    });
    g.case("every_dataset_reads_byte_exact", |ctx| {
        let Some(pools) = pools(ctx)? else {
            return Ok(());
        };
        for pool in &pools {
            let d = disk(&pool.members[0]);
            for ds in datasets(pool, |d| is_fs(d) && !encrypted(d)) {
                let path = format!("/{d}/{}", bucket(&pool.name, name(ds)));
                check_tree(ctx, &pool.dir, &path, &tree_of(ds)?, &[])?;
            }
        }
        Ok(())
    });
    g.case("snapshot_has_the_older_content", |ctx| {
        let Some(pools) = pools(ctx)? else {
            return Ok(());
        };
        let mut seen = 0;
        for pool in &pools {
            let d = disk(&pool.members[0]);
            for ds in datasets(pool, is_fs) {
                for snap in ds["snapshots"].as_array().into_iter().flatten() {
                    let snap_name = snap["name"].as_str().context("snapshot name")?;
                    let path = format!("/{d}/{}", bucket(&pool.name, snap_name));
                    let t = tree_of(snap)?;
                    check_tree(ctx, &pool.dir, &path, &t, &[])?;
                    // Written after the snapshot: in the dataset, not in it.
                    let now = tree_of(ds)?;
                    if let Some(after) = now.files.keys().find(|p| !t.files.contains_key(*p)) {
                        let out = list(ctx, &pool.dir, &path, &[])?;
                        ensure!(
                            !out.lines()
                                .any(|l| l.trim_start().starts_with(after.as_str())),
                            "{path}: {after} was written after the snapshot but is listed:\n{out}"
                        );
                    }
                    seen += 1;
                }
            }
        }
        ensure!(seen > 0, "the index has no snapshot");
        Ok(())
    });
    g.case("volumes_hold_their_filesystems", |ctx| {
        let Some(pools) = pools(ctx)? else {
            return Ok(());
        };
        for pool in &pools {
            let d = disk(&pool.members[0]);
            for ds in datasets(pool, |d| d["type"].as_str() == Some("volume")) {
                let c = &ds["content"];
                if c.is_null() || c["files"].as_array().is_none() {
                    continue;
                }
                let mut b = bucket(&pool.name, name(ds));
                if let Some(n) = c["partition"].as_u64() {
                    b = format!("{b}-part{n}");
                }
                let parent = b.rsplit_once('/').map(|x| x.0).unwrap_or("");
                let leaf = b.rsplit('/').next().unwrap_or("");
                let out = list(ctx, &pool.dir, &format!("/{d}/{parent}"), &[])?;
                let ty = c["blkid_type"].as_str().unwrap_or("?");
                let want = match c["label"].as_str() {
                    Some(l) => format!("{leaf} [{ty} \"{l}\""),
                    None => format!("{leaf} [{ty}"),
                };
                ensure!(out.contains(&want), "no {want:?} in:\n{out}");
                check_tree(ctx, &pool.dir, &format!("/{d}/{b}"), &tree_of(c)?, &[])?;
            }
        }
        Ok(())
    });
    g.case("encrypted_locked_then_opened_with_key_file", |ctx| {
        let Some(pools) = pools(ctx)? else {
            return Ok(());
        };
        let mut seen = 0;
        for pool in &pools {
            let d = disk(&pool.members[0]);
            for ds in datasets(pool, |d| is_fs(d) && encrypted(d)) {
                let root = ds["encryptionroot"].as_str().unwrap_or(name(ds));
                let key = pool
                    .keys
                    .get(root)
                    .with_context(|| format!("no key for {root} in the index"))?;
                let path = format!("/{d}/{}", bucket(&pool.name, name(ds)));
                // Without the key: listed locked, reading names --key-file.
                let o =
                    ctx.cli
                        .run([OsStr::new("list"), pool.dir.as_os_str(), OsStr::new(&path)])?;
                if o.code == Some(0) {
                    // An earlier case of this run loaded the key already.
                    println!("{path}: already open in this VM");
                } else {
                    ensure!(
                        o.stderr.contains("--key-file") && o.stderr.contains("encrypted"),
                        "{path} without key: {}",
                        o.stderr
                    );
                }
                check_tree(
                    ctx,
                    &pool.dir,
                    &path,
                    &tree_of(ds)?,
                    &[OsStr::new("--key-file"), key.as_os_str()],
                )?;
                seen += 1;
            }
        }
        if seen == 0 {
            println!("skipped: no encrypted dataset in the index (zfs-fuse pools cannot hold one)");
        }
        Ok(())
    });
    g.case("find_searches_every_dataset_and_snapshot", |ctx| {
        let Some(pools) = pools(ctx)? else {
            return Ok(());
        };
        for pool in &pools {
            let d = disk(&pool.members[0]);
            let o = ctx.cli.run([
                OsStr::new("find"),
                pool.dir.as_os_str(),
                OsStr::new(&format!("/{d}")),
                OsStr::new("--name"),
                OsStr::new("changed.txt"),
            ])?;
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            for ds in datasets(pool, is_fs) {
                let mut where_: Vec<(String, &Value)> = vec![(name(ds).to_owned(), ds)];
                for snap in ds["snapshots"].as_array().into_iter().flatten() {
                    where_.push((snap["name"].as_str().unwrap_or("").to_owned(), snap));
                }
                for (full, tree) in where_ {
                    if !tree_of(tree)?.files.contains_key("changed.txt") {
                        continue;
                    }
                    let want = format!("/{d}/{}/changed.txt", bucket(&pool.name, &full));
                    ensure!(
                        out.lines().any(|l| l.ends_with(&format!(" {want}"))) || encrypted(ds),
                        "find: no {want} in:\n{out}\n{}",
                        o.stderr
                    );
                }
            }
            // The member bucket is passed over quietly (its datasets are searched).
            ensure!(
                !o.stderr.contains("zfs_member"),
                "find named the pool member: {}",
                o.stderr
            );
        }
        Ok(())
    });
    g.case("mirror_with_one_disk_gone_still_reads", |ctx| {
        let Some(pools) = pools(ctx)? else {
            return Ok(());
        };
        let Some(pool) = pools.iter().find(|p| p.members.len() > 1) else {
            println!("skipped: no pool of several disks in the index");
            return Ok(());
        };
        // One member alone as the SOURCE: the pool is DEGRADED and imported.
        let one = &pool.members[0];
        let d = disk(one);
        let has_files = |d: &Value| d["files"].as_array().is_some_and(|f| !f.is_empty());
        let ds = datasets(pool, |d| is_fs(d) && !encrypted(d) && has_files(d))
            .next()
            .context("no dataset with files")?;
        let path = format!("/{d}/{}", bucket(&pool.name, name(ds)));
        let r = check_tree(ctx, one, &path, &tree_of(ds)?, &[]);
        ctx.cli.stop_vms_for(one)?;
        r
    });
    g.case("web_api_lists_datasets", |ctx| {
        let Some(pools) = pools(ctx)? else {
            return Ok(());
        };
        for pool in &pools {
            let d = disk(&pool.members[0]);
            let o = ctx.cli.run([
                OsStr::new("list"),
                pool.dir.as_os_str(),
                OsStr::new(&format!("/{d}/zfs/{}", pool.name)),
                OsStr::new("--output-format"),
                OsStr::new("json"),
            ])?;
            let v: Value = serde_json::from_slice(&o.check()?.stdout)?;
            let entries = v.as_array().context("not an array")?;
            for ds in datasets(pool, is_fs) {
                let b = bucket(&pool.name, name(ds));
                let leaf = b.rsplit('/').next().unwrap_or("");
                let e = entries
                    .iter()
                    .find(|e| e["text"].as_str() == Some(leaf))
                    .with_context(|| format!("no entry {leaf} in /{d}/zfs/{}: {v}", pool.name))?;
                if e["fstype"].as_str() != Some("zfs") || e["label"].as_str() != Some(name(ds)) {
                    bail!("/{d}/{b}: {e}");
                }
                if encrypted(ds) {
                    ensure!(
                        e["encryption"]
                            .as_str()
                            .is_some_and(|s| s.starts_with("ZFS")),
                        "{e}"
                    );
                }
            }
        }
        Ok(())
    });
    g.teardown = Some(Box::new(|ctx: &Ctx| {
        if let Some(pools) = pools(ctx)? {
            for p in pools {
                ctx.cli.stop_vms_for(&p.dir)?;
            }
        }
        Ok(())
    }));
    vec![g]
}

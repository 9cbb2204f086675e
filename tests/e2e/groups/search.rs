//! Find and versions (issue 22): `file-restore find` over the 10,113 entries
//! of `search/find.img` (tests/fixtures/mksearch.sh), each query's result
//! set compared with the one the fixture's manifest gives; `file-restore
//! versions` over the four snapshots of `search/store/300`, where
//! etc/app.conf is missing, then content A twice, then content B.

use super::{teardown_for, G};
use crate::checks::expect_error;
use crate::Ctx;
use anyhow::{ensure, Context, Result};
use file_restore_tests::manifest::{self, Entry, Manifest};
use file_restore_tests::sys;
use serde_json::Value;
use std::collections::BTreeSet;
use std::ffi::OsStr;

/// The find fixture and the API path of its only bucket.
const FIND_IMG: &str = "search/find.img";
const BUCKET: &str = "/find/raw/raw";
/// The versions store (a VM's directory of snapshots) and the path compared.
const STORE: &str = "search/store/300";
const APP: &str = "/drive-scsi0/raw/raw/etc/app.conf";
/// Its two contents (tests/fixtures/search_tree.py).
const APP_A: &[u8] = b"mode=old\nlevel=1\n";
const APP_B: &[u8] = b"mode=new\nlevel=2\n";
/// The snapshots, newest first.
const SNAPSHOTS: [&str; 4] = [
    "qemu-1700259200",
    "qemu-1700172800",
    "qemu-1700086400",
    "qemu-1700000000",
];

/// The fixture's manifest, with the lost+found directory mke2fs adds.
fn manifest(ctx: &Ctx) -> Result<Manifest> {
    let mut m = manifest::load(&ctx.fx.path("search/find.manifest.json"))?;
    let lf = b"lost+found".to_vec();
    m.insert(
        lf.clone(),
        Entry {
            path: lf,
            kind: 'd',
            size: None,
            mtime: None,
            mode: None,
            uid: None,
            gid: None,
            sha256: None,
            target: None,
            hardlink_of: None,
            xattrs: None,
        },
    );
    Ok(m)
}

/// The API paths of the manifest's entries that `keep` accepts.
fn expected(m: &Manifest, keep: impl Fn(&Entry, &str) -> bool) -> BTreeSet<String> {
    m.values()
        .filter_map(|e| {
            let rel = String::from_utf8(e.path.clone()).ok()?;
            keep(e, &rel).then(|| format!("{BUCKET}/{rel}"))
        })
        .collect()
}

/// Runs `find find.img ARGS…` (text output); the paths printed, and stderr.
fn find(ctx: &Ctx, args: &[&str]) -> Result<(BTreeSet<String>, usize, String)> {
    let img = ctx.fx.path(FIND_IMG);
    let mut a: Vec<&OsStr> = vec![OsStr::new("find"), img.as_os_str()];
    a.extend(args.iter().map(OsStr::new));
    let o = ctx.cli.run(a)?.check()?;
    let text = String::from_utf8(o.stdout.clone()).context("find output is not UTF-8")?;
    let mut paths = BTreeSet::new();
    let mut lines = 0;
    for line in text.lines() {
        lines += 1;
        // `t size YYYY-MM-DD HH:MM path[ -> target]` (no spaces in the fixture's names)
        let path = line
            .split_whitespace()
            .nth(4)
            .with_context(|| format!("odd find line {line:?}"))?;
        paths.insert(path.to_string());
    }
    Ok((paths, lines, o.stderr))
}

fn same(what: &str, got: &BTreeSet<String>, want: &BTreeSet<String>) -> Result<()> {
    if got == want {
        return Ok(());
    }
    let extra: Vec<&String> = got.difference(want).take(5).collect();
    let missing: Vec<&String> = want.difference(got).take(5).collect();
    anyhow::bail!(
        "{what}: {} found, {} expected; not expected: {extra:?}; missing: {missing:?}",
        got.len(),
        want.len()
    )
}

fn name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

/// The find cases, on one VM of find.img.
pub fn find_group(ctx: &Ctx) -> G {
    let mut g = G::new("search_find", 40);
    g.case("everything_exact_over_10k", |ctx| {
        let m = manifest(ctx)?;
        ensure!(
            m.len() >= 10_000,
            "the fixture has only {} entries",
            m.len()
        );
        let (got, lines, _) = find(ctx, &["--max-results", "20000"])?;
        ensure!(lines == m.len(), "{lines} lines for {} entries", m.len());
        same("find /", &got, &expected(&m, |_, _| true))
    });
    g.case("name_globs_or_and_iname", |ctx| {
        let m = manifest(ctx)?;
        let (got, _, _) = find(ctx, &["--name", "*.odt", "--name", "file-00001?.log"])?;
        let want = expected(&m, |_, r| {
            let n = name(r);
            n.ends_with(".odt")
                || (n.starts_with("file-00001") && n.ends_with(".log") && n.len() == 15)
        });
        ensure!(want.len() > 2_000, "{}", want.len());
        let (all, _, _) = find(ctx, &["--name", "*.odt", "--max-results", "5000"])?;
        same(
            "--name '*.odt'",
            &all,
            &expected(&m, |_, r| name(r).ends_with(".odt")),
        )?;
        let (cut, lines, err) = find(ctx, &["--name", "*.odt", "--name", "file-00001?.log"])?;
        ensure!(
            lines == 1000 && cut.len() == 1000,
            "{lines} lines at the default limit"
        );
        ensure!(err.contains("stopped at --max-results 1000"), "{err}");
        ensure!(got.is_subset(&want), "matches outside the patterns");
        let (i, _, _) = find(ctx, &["--iname", "report-final.odt"])?;
        same(
            "--iname",
            &i,
            &BTreeSet::from([format!("{BUCKET}/docs/Report-Final.ODT")]),
        )
    });
    g.case("regex_type_size_time", |ctx| {
        let m = manifest(ctx)?;
        let (got, _, _) = find(ctx, &["--regex", r"^/dir-00[0-4]/file-[0-9]+\.txt$"])?;
        let want = expected(&m, |e, r| {
            e.kind == 'f' && r.ends_with(".txt") && ("dir-000".."dir-005").contains(&&r[..7])
        });
        ensure!(want.len() == 125, "{}", want.len());
        same("--regex", &got, &want)?;
        let (got, _, _) = find(ctx, &["--type", "d", "--max-results", "5000"])?;
        same("--type d", &got, &expected(&m, |e, _| e.kind == 'd'))?;
        let (got, _, _) = find(ctx, &["--type", "l"])?;
        same("--type l", &got, &expected(&m, |e, _| e.kind == 'l'))?;
        let (got, _, _) = find(ctx, &["--min-size", "2990", "--max-size", "2999"])?;
        let want = expected(&m, |e, _| {
            e.kind == 'f' && e.size.is_some_and(|s| (2990..=2999).contains(&s))
        });
        ensure!(!want.is_empty());
        same("--min-size/--max-size", &got, &want)?;
        let (got, _, _) = find(ctx, &["--min-size", "2k", "--max-results", "5000"])?;
        same(
            "--min-size 2k",
            &got,
            &expected(&m, |e, _| {
                e.kind == 'f' && e.size.is_some_and(|s| s >= 2048)
            }),
        )?;
        let (got, _, _) = find(ctx, &["--newer", "@1605000000", "--older", "2020-11-11"])?;
        let want = expected(&m, |e, _| {
            e.mtime
                .is_some_and(|t| t > 1_605_000_000 && t < 1_605_052_800)
        });
        ensure!(!want.is_empty());
        same("--newer/--older", &got, &want)?;
        // Nothing in the fixture is from the last day.
        let (got, _, _) = find(ctx, &["--newer", "1d"])?;
        ensure!(got.is_empty(), "--newer 1d: {got:?}");
        Ok(())
    });
    g.case("below_a_directory_and_symlinks_not_followed", |ctx| {
        let (got, _, _) = find(ctx, &[&format!("{BUCKET}/deep"), "--type", "f"])?;
        same(
            "find …/deep",
            &got,
            &BTreeSet::from([format!("{BUCKET}/deep/a/b/c/d/e/target.odt")]),
        )?;
        let img = ctx.fx.path(FIND_IMG);
        let o = ctx
            .cli
            .run([
                OsStr::new("find"),
                img.as_os_str(),
                OsStr::new(&format!("{BUCKET}/links")),
            ])?
            .check()?;
        let text = String::from_utf8_lossy(&o.stdout);
        ensure!(
            text.contains("links/to-first -> ../dir-000/file-000000.txt")
                && text.lines().count() == 2,
            "{text}"
        );
        Ok(())
    });
    g.case("json_and_jsonl", |ctx| {
        let img = ctx.fx.path(FIND_IMG);
        let want = BTreeSet::from([
            format!("{BUCKET}/docs/Report-Final.ODT"),
            format!("{BUCKET}/docs/notes.txt"),
        ]);
        for fmt in ["json", "jsonl"] {
            let o = ctx
                .cli
                .run([
                    OsStr::new("find"),
                    img.as_os_str(),
                    OsStr::new(&format!("{BUCKET}/docs")),
                    OsStr::new("--output-format"),
                    OsStr::new(fmt),
                ])?
                .check()?;
            let entries: Vec<Value> = if fmt == "json" {
                serde_json::from_slice(&o.stdout).context("json output")?
            } else {
                o.stdout
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(serde_json::from_slice)
                    .collect::<Result<_, _>>()
                    .context("a jsonl line")?
            };
            let mut got = BTreeSet::new();
            for e in &entries {
                let path = e["path"].as_str().context("entry without path")?;
                let raw = file_restore_wire::decode_path(e["filepath"].as_str().unwrap_or(""))?;
                ensure!(
                    raw == path.as_bytes(),
                    "{fmt}: filepath and path differ: {e}"
                );
                ensure!(e["type"] == "f" && e["size"].is_u64(), "{fmt}: {e}");
                got.insert(path.to_string());
            }
            same(fmt, &got, &want)?;
        }
        Ok(())
    });
    g.case("errors_name_the_path_or_pattern", |ctx| {
        let img = ctx.fx.path(FIND_IMG);
        let missing = format!("{BUCKET}/no-such-dir");
        let o = ctx
            .cli
            .run([OsStr::new("find"), img.as_os_str(), OsStr::new(&missing)])?;
        expect_error(o, 1, &["no-such-dir", "no such file or directory"])?;
        let o = ctx.cli.run([
            OsStr::new("find"),
            img.as_os_str(),
            OsStr::new("--regex"),
            OsStr::new("(unclosed"),
        ])?;
        expect_error(o, 1, &["bad regex", "(unclosed"])?;
        let o = ctx.cli.run([
            OsStr::new("find"),
            img.as_os_str(),
            OsStr::new("--min-size"),
            OsStr::new("1.5G"),
        ])?;
        expect_error(o, 2, &["1.5G"])?;
        Ok(())
    });
    teardown_for(&mut g, ctx.fx.path(FIND_IMG));
    g
}

/// A bucket with nothing to search is reported, and the search goes on.
pub fn skip_group(ctx: &Ctx) -> G {
    let mut g = G::new("search_skip", 10);
    g.case("swap_is_not_searched_and_says_why", |ctx| {
        let img = ctx.fx.path("swap.img");
        let o = ctx
            .cli
            .run([OsStr::new("find"), img.as_os_str()])?
            .check()?;
        ensure!(
            o.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
        ensure!(
            o.stderr.contains("not searched: /swap/raw/raw") && o.stderr.contains("swap"),
            "{}",
            o.stderr
        );
        Ok(())
    });
    teardown_for(&mut g, ctx.fx.path("swap.img"));
    g
}

/// A locked LUKS container is named and skipped; with its key, what it
/// holds (an LVM VG) is searched, and the opened container and its PV are
/// passed over quietly (their content is the LV's bucket).
/// It runs on a private copy: the stack group of luks2-lvm opens the
/// container of its own VM.
pub fn stacks_group() -> G {
    let mut g = G::new("search_luks", 20);
    g.case("locked_named_then_searched_with_its_key", |ctx| {
        let sc = ctx.scratch("search-luks")?;
        let s = sc.path().join("luks2-lvm");
        std::fs::create_dir(&s)?;
        let copied = std::process::Command::new("cp")
            .arg("--sparse=always")
            .arg(ctx.fx.path("stacks/luks2-lvm/luks2-lvm.raw"))
            .arg(&s)
            .status()?;
        ensure!(copied.success(), "copying luks2-lvm.raw failed");
        let run = |extra: &[&OsStr]| -> Result<(Vec<String>, String)> {
            let mut a = vec![
                OsStr::new("find"),
                s.as_os_str(),
                OsStr::new("--name"),
                OsStr::new("id.txt"),
            ];
            a.extend(extra);
            let o = ctx.cli.run(a)?.check()?;
            let paths = String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
                .collect();
            Ok((paths, o.stderr))
        };
        let (paths, err) = run(&[])?;
        ensure!(paths == ["/luks2-lvm/part/1/id.txt"], "{paths:?}");
        ensure!(
            err.contains("not searched: /luks2-lvm/part/2") && err.contains("--key-file"),
            "{err}"
        );
        let keys = sc.path().join("keys");
        // The passphrase mkstacks.sh gives luks2-lvm's container.
        std::fs::write(&keys, "second-pass\n")?;
        let (mut paths, err) = run(&[OsStr::new("--key-file"), keys.as_os_str()])?;
        paths.sort();
        ensure!(
            paths
                == [
                    "/luks2-lvm/lvm/cryptvg2/root/id.txt",
                    "/luks2-lvm/part/1/id.txt"
                ],
            "{paths:?}"
        );
        ensure!(!err.contains("not searched"), "{err}");
        ctx.cli.stop_vms_for(&s)?;
        Ok(())
    });
    g
}

/// `versions --output-format json` rows.
fn versions(ctx: &Ctx, sources: &[&std::path::Path], extra: &[&str]) -> Result<Vec<Value>> {
    let mut a: Vec<&OsStr> = vec![OsStr::new("versions")];
    a.extend(sources.iter().map(|s| s.as_os_str()));
    a.extend(
        ["--path", APP, "--output-format", "json"]
            .iter()
            .chain(extra)
            .map(OsStr::new),
    );
    let o = ctx.cli.run(a)?.check()?;
    serde_json::from_slice(&o.stdout).context("versions json")
}

/// A boolean field of every row (`None` where it is null).
fn flags(rows: &[Value], key: &str) -> Vec<Option<bool>> {
    rows.iter().map(|r| r[key].as_bool()).collect()
}

/// The versions cases, on the four snapshots (each case starts and stops its VMs).
pub fn versions_group() -> G {
    let mut g = G::new("search_versions", 40);
    g.case("store_rows_newest_first_changes_marked", |ctx| {
        let store = ctx.fx.path(STORE);
        let rows = versions(ctx, &[&store], &[])?;
        let labels: Vec<&str> = rows.iter().filter_map(|r| r["label"].as_str()).collect();
        ensure!(labels == SNAPSHOTS, "{labels:?}");
        let exists = flags(&rows, "exists");
        ensure!(
            exists == [Some(true), Some(true), Some(true), Some(false)],
            "{exists:?}"
        );
        ensure!(
            rows[0]["time"] == 1_700_259_200 && rows[0]["size"] == 17,
            "{}",
            rows[0]
        );
        ensure!(rows[1]["mtime"] == 1_700_050_000 && rows[0]["mtime"] == 1_700_200_000);
        // Without hashes size and mtime decide: B's mtime differs, the two A's do not.
        let changed = flags(&rows, "changed");
        ensure!(
            changed == [Some(true), Some(false), Some(true), None],
            "changed: {changed:?}"
        );
        ensure!(rows
            .iter()
            .all(|r| r["sha256"].is_null() && r["error"].is_null()));
        for s in SNAPSHOTS {
            crate::checks::ensure_no_vm(ctx, &store.join(s), "versions")?;
        }
        Ok(())
    });
    g.case("hash_compares_content_and_running_vms_stay", |ctx| {
        let store = ctx.fx.path(STORE);
        // One snapshot's VM runs before: it must still run afterwards.
        let kept = store.join(SNAPSHOTS[1]);
        ctx.cli.list(&kept, b"/")?;
        let rows = versions(ctx, &[&store], &["--hash", "--jobs", "1"])?;
        let (a, b) = (sys::sha256_bytes(APP_A)?, sys::sha256_bytes(APP_B)?);
        let hashes: Vec<Option<&str>> = rows.iter().map(|r| r["sha256"].as_str()).collect();
        ensure!(
            hashes == [Some(b.as_str()), Some(&a), Some(&a), None],
            "{hashes:?}"
        );
        let changed = flags(&rows, "changed");
        ensure!(
            changed == [Some(true), Some(false), Some(true), None],
            "{changed:?}"
        );
        ensure!(
            ctx.cli.vms_for(&kept)?.len() == 1,
            "versions stopped a VM it did not start"
        );
        ctx.cli.stop_vms_for(&kept)?;
        for s in [SNAPSHOTS[0], SNAPSHOTS[2], SNAPSHOTS[3]] {
            crate::checks::ensure_no_vm(ctx, &store.join(s), "versions --hash")?;
        }
        Ok(())
    });
    g.case("a_failing_source_is_a_row_and_text_marks", |ctx| {
        let good = ctx.fx.path(STORE).join(SNAPSHOTS[0]);
        let bad = ctx.fx.path("not-an-image.txt");
        let rows = versions(ctx, &[&good, &bad], &[])?;
        ensure!(rows.len() == 2, "{rows:?}");
        let err = rows
            .iter()
            .find_map(|r| r["error"].as_str())
            .context("no error row")?;
        ensure!(err.contains("not-an-image.txt"), "{err}");
        ensure!(rows.iter().any(|r| r["exists"] == true), "{rows:?}");
        // Text: the newest row (B) is marked changed, the oldest says missing.
        let store = ctx.fx.path(STORE);
        let o = ctx
            .cli
            .run([
                OsStr::new("versions"),
                store.as_os_str(),
                OsStr::new("--path"),
                OsStr::new(APP),
            ])?
            .check()?;
        let text = String::from_utf8_lossy(&o.stdout);
        let lines: Vec<&str> = text.lines().collect();
        ensure!(lines.len() == 4, "{text}");
        ensure!(
            lines[0].starts_with('*') && lines[0].contains(SNAPSHOTS[0]),
            "{text}"
        );
        ensure!(lines[3].contains("(missing)"), "{text}");
        // Every source failing: exit 1, the error says so.
        let o = ctx.cli.run([
            OsStr::new("versions"),
            bad.as_os_str(),
            OsStr::new("--path"),
            OsStr::new(APP),
        ])?;
        expect_error(o, 1, &["could not be looked up"])?;
        Ok(())
    });
    g
}

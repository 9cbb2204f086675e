//! The search box and the Versions panel: `GET /api/find` streamed as JSON
//! Lines against the fixture manifest, `GET /api/versions` over the backup
//! store's VM 100 (`new-in-incremental.txt` exists only in the newer of its
//! two snapshots), and both in headless Chromium. The search cases use the
//! SOURCE's VM; the versions cases stop it first and use the two snapshots'
//! VMs, which the last case stops again.

use crate::api::{enc, expect_status, manifest_files, path_q, sha256_hex};
use crate::browser::{click_node, downloaded, in_browser, wait_for, wait_js};
use crate::Web;
use anyhow::{ensure, Context, Result};
use base64::Engine;
use fantoccini::{Client, Locator};
use file_restore_tests::harness::Group;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The good bucket of the SOURCE, as a VM path.
const BUCKET: &str = "/zeroed-super/part/2";
/// The file only the newer snapshot of VM 100 has, as a VM path.
const NEW_FILE: &str = "/drive-scsi0/raw/raw/new-in-incremental.txt";
/// Its content (tests/fixtures/mkfixtures.sh).
const NEW_TEXT: &str = "This file exists only in the incremental backup (qemu-1700003600).\n";
const NEWER: &str = "qemu-1700003600";
const OLDER: &str = "qemu-1700000000";

/// The canonical path (catalog id) of a snapshot of VM 100.
fn snapshot(ctx: &Web, label: &str) -> Result<PathBuf> {
    let p = ctx.fixtures.join("store/100").join(label);
    p.canonicalize()
        .with_context(|| format!("no snapshot {}", p.display()))
}

/// `/api/find` below `path` of the SOURCE with the extra query `filters`.
fn find(ctx: &Web, path: &str, filters: &str) -> Result<crate::http::Answer> {
    ctx.get(&format!(
        "/api/find?source={}&path={}{filters}",
        enc(&ctx.source.to_string_lossy()),
        path_q(path.as_bytes())
    ))
}

/// The lines of a find answer: the match paths, and the last line.
fn read_lines(a: &crate::http::Answer) -> Result<(BTreeSet<Vec<u8>>, Value)> {
    ensure!(
        a.header("content-type") == Some("application/jsonl"),
        "content type {:?}",
        a.header("content-type")
    );
    let text = a.text();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("line {l:?} is not JSON")))
        .collect::<Result<_>>()?;
    let (last, rest) = lines.split_last().context("an empty answer")?;
    let mut matches = BTreeSet::new();
    for l in rest {
        if let Some(m) = l.get("match") {
            let p = B64.decode(m["filepath"].as_str().context("no filepath")?)?;
            ensure!(
                m["path"].as_str() == Some(String::from_utf8_lossy(&p).as_ref()),
                "path {} and filepath disagree",
                m["path"]
            );
            ensure!(matches.insert(p), "a match came twice: {l}");
        } else {
            ensure!(l.get("progress").is_some(), "unexpected line {l}");
        }
    }
    Ok((matches, last.clone()))
}

/// Adds the cases to `g` (while the SOURCE's VM runs).
pub fn cases(g: &mut Group<Web>, url: &str) {
    g.case("api::find_streams_jsonl", |ctx| {
        let dir = "docs/sub01-Ç";
        let want: BTreeSet<Vec<u8>> = manifest_files(ctx)?
            .into_keys()
            .filter(|p| p.starts_with(format!("{dir}/").as_bytes()) && p.ends_with(b".md"))
            .map(|p| [format!("{BUCKET}/").as_bytes(), &p].concat())
            .collect();
        ensure!(
            want.len() > 2,
            "the manifest has too few .md files below {dir}"
        );
        let below = format!("{BUCKET}/{dir}");
        let a = find(ctx, &below, "&name=*.md")?;
        expect_status(&a, 200, "find *.md")?;
        let (got, end) = read_lines(&a)?;
        ensure!(
            got == want,
            "matches {:?}, want {:?}",
            got.iter()
                .map(|p| String::from_utf8_lossy(p))
                .collect::<Vec<_>>(),
            want.iter()
                .map(|p| String::from_utf8_lossy(p))
                .collect::<Vec<_>>()
        );
        let n = want.len();
        ensure!(
            end["end"]["matched"] == n && end["end"]["truncated"] == false,
            "last line {end}"
        );
        ensure!(end["end"]["skipped"] == 0, "last line {end}");
        // At most `max`, and the end line says so.
        let (got, end) = read_lines(&find(ctx, &below, "&name=*.md&max=2&type=f")?)?;
        ensure!(
            got.len() == 2 && got.is_subset(&want),
            "{} matches with max=2",
            got.len()
        );
        ensure!(end["end"]["truncated"] == true, "last line {end}");
        // A bad regex (the guest's check) and a bad type (the server's): 400 JSON.
        let a = find(ctx, BUCKET, &format!("&regex={}", enc("(")))?;
        expect_status(&a, 400, "a bad regex")?;
        let msg = a.json()?["error"].as_str().unwrap_or("").to_string();
        ensure!(msg.contains("bad regex"), "message {msg}");
        let a = find(ctx, BUCKET, "&type=x")?;
        expect_status(&a, 400, "a bad type")?;
        ensure!(
            a.json()?["error"]
                .as_str()
                .is_some_and(|m| m.contains("type")),
            "message {}",
            a.text()
        );
        Ok(())
    });
    let url = url.to_string();
    g.case(
        "browser::search_box_finds_and_opens_the_directory",
        move |ctx| in_browser(|c, _| async move { search_session(ctx, &c, &url).await }),
    );
    g.case("api::versions_over_the_snapshots", |ctx| {
        // One VM at a time as far as it goes: this needs the two snapshots'.
        let out = ctx.cli().args(["stop", "--all"]).output()?;
        ensure!(out.status.success(), "stop --all failed");
        let (newer, older) = (snapshot(ctx, NEWER)?, snapshot(ctx, OLDER)?);
        let target = |hash: &str| {
            format!(
                "/api/versions?source={}&path={}{hash}",
                enc(&older.to_string_lossy()),
                path_q(NEW_FILE.as_bytes())
            )
        };
        expect_status(&ctx.get(&target("&hash=maybe"))?, 400, "hash=maybe")?;
        let a = ctx.get(&target("&hash=1"))?;
        expect_status(&a, 200, "versions")?;
        let v = a.json()?;
        let rows = v["rows"].as_array().context("no rows")?;
        ensure!(rows.len() == 2, "{} rows: {v}", rows.len());
        let (n, o) = (&rows[0], &rows[1]);
        ensure!(
            n["label"] == NEWER && n["id"] == newer.to_string_lossy().as_ref(),
            "newest row {n}"
        );
        ensure!(
            n["exists"] == true
                && n["type"] == "f"
                && n["size"] == NEW_TEXT.len()
                && n["mtime"] == 1_700_003_600
                && n["sha256"] == sha256_hex(NEW_TEXT.as_bytes())
                && n["changed"] == true
                && n["error"].is_null(),
            "newest row {n}"
        );
        ensure!(
            o["label"] == OLDER
                && o["id"] == older.to_string_lossy().as_ref()
                && o["exists"] == false
                && o["error"].is_null(),
            "older row {o}"
        );
        ensure!(v["path"] == NEW_FILE, "path {}", v["path"]);
        Ok(())
    });
    g.case("browser::versions_panel_lists_the_snapshots", |ctx| {
        let store = ctx.fixtures.join("store");
        let (mut server, url) = crate::start_server(
            &ctx.bin,
            &ctx.runtime,
            &[
                "--listen".as_ref(),
                "127.0.0.1:0".as_ref(),
                "--root".as_ref(),
                store.as_os_str(),
            ],
        )?;
        let r = in_browser(|c, dl| async move { versions_session(&c, &url, &dl).await });
        let _ = server.kill();
        let _ = server.wait();
        let out = ctx.cli().args(["stop", "--all"]).output()?;
        ensure!(out.status.success(), "stop --all failed");
        r
    });
}

/// The texts of the search results' path cells.
async fn result_paths(c: &Client) -> Result<Vec<String>> {
    let v = c
        .execute(
            "return [...document.querySelectorAll('#search-rows td.n')].map(t => t.textContent);",
            vec![],
        )
        .await?;
    Ok(serde_json::from_value(v)?)
}

async fn search_session(ctx: &Web, c: &Client, url: &str) -> Result<()> {
    let want: BTreeSet<String> = manifest_files(ctx)?
        .into_keys()
        .map(|p| String::from_utf8_lossy(&p).into_owned())
        .filter(|p| p.rsplit('/').next().is_some_and(|n| n.contains("doc53")))
        .map(|p| format!("{BUCKET}/{p}"))
        .collect();
    ensure!(!want.is_empty(), "no doc53 file in the manifest");
    c.goto(url).await?;
    wait_for(c, ".node.disk").await?;
    click_node(c, "disk", "zeroed-super").await?;
    click_node(c, "bucket", "part/2").await?;
    wait_js(
        c,
        "the bucket listing",
        "document.querySelector('#breadcrumb strong')?.textContent.startsWith('part/2') && document.querySelectorAll('#rows tr[data-type]').length > 0",
    )
    .await?;
    // Files only, below the bucket, by a plain word (a name containing it).
    c.find(Locator::Css("#search-type option[value='f']"))
        .await?
        .click()
        .await?;
    c.find(Locator::Id("search"))
        .await?
        .send_keys("doc53\u{E007}") // Enter
        .await?;
    wait_js(
        c,
        "the search's end",
        &format!(
            "!document.getElementById('listing').offsetParent && document.getElementById('search-status').textContent.startsWith('{} match')",
            want.len()
        ),
    )
    .await?;
    let got: BTreeSet<String> = result_paths(c).await?.into_iter().collect();
    ensure!(got == want, "results {got:?}, want {want:?}");
    // "Show in folder" of docs/doc53.txt: its directory, the cursor on it.
    let xpath = format!(
        "//tbody[@id='search-rows']/tr[td[@class='n']/span[normalize-space(.)='{BUCKET}/docs/doc53.txt']]//a[@class='reveal']"
    );
    c.find(Locator::XPath(&xpath))
        .await
        .context("no Show in folder for docs/doc53.txt")?
        .click()
        .await?;
    wait_js(
        c,
        "docs/ opened at doc53.txt",
        "document.querySelector('#breadcrumb strong')?.textContent === 'docs' && document.getElementById('search-results').hidden && document.querySelector('#rows tr.cursor td.n')?.textContent === 'doc53.txt'",
    )
    .await?;
    let crumbs = c.find(Locator::Id("breadcrumb")).await?.text().await?;
    ensure!(crumbs.contains("part/2"), "breadcrumb {crumbs}");
    Ok(())
}

async fn versions_session(c: &Client, url: &str, downloads: &std::path::Path) -> Result<()> {
    c.goto(url).await?;
    click_node(c, "source", NEWER).await?;
    click_node(c, "disk", "drive-scsi0").await?;
    click_node(c, "bucket", "raw/raw").await?;
    let xpath = "//tr[td[@class='n']/*[normalize-space(.)='new-in-incremental.txt']]//button[contains(@class,'versions')]";
    c.wait()
        .at_most(std::time::Duration::from_secs(60))
        .for_element(Locator::XPath(xpath))
        .await
        .context("no Versions button on new-in-incremental.txt")?
        .click()
        .await?;
    wait_js(
        c,
        "two version rows",
        "document.querySelectorAll('#versions-rows tr').length === 2",
    )
    .await?;
    let rows = c
        .execute(
            "return [...document.querySelectorAll('#versions-rows tr')].map(r => \
             [r.dataset.label, r.dataset.state, r.dataset.changed, r.querySelectorAll('a.dl').length]);",
            vec![],
        )
        .await?;
    let want = serde_json::json!([
        [NEWER, "present", "true", 1],
        [OLDER, "missing", "false", 0]
    ]);
    ensure!(rows == want, "version rows {rows}, want {want}");
    let title = c.find(Locator::Id("versions-title")).await?.text().await?;
    ensure!(title.ends_with(NEW_FILE), "panel title {title}");
    c.find(Locator::Css("#versions-rows a.dl"))
        .await?
        .click()
        .await?;
    let got = downloaded(downloads, "new-in-incremental.txt").await?;
    ensure!(
        got == NEW_TEXT.as_bytes(),
        "downloaded {:?}",
        String::from_utf8_lossy(&got)
    );
    Ok(())
}

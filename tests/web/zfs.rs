//! The web UI on a ZFS pool (issue 20): `serve` of the OpenZFS fixture pool
//! (tests/fixtures/mkzfs.sh, `zfs/openzfs/`: a mirror of two disks) in
//! headless Chromium. The pool's node lists its datasets and the snapshot,
//! a dataset's files are listed, and the encrypted dataset, shown locked,
//! opens in place through its Unlock… field with the fixture's passphrase.
//! Skipped with the reason where mkzfs.sh built no OpenZFS pool.

use crate::browser::{click_node, in_browser, wait_for, wait_js};
use crate::luks::{stop_all, Served};
use crate::Web;
use anyhow::{Context, Result};
use fantoccini::{Client, Locator};
use file_restore_tests::harness::Group;
use std::path::PathBuf;

/// The disk the case opens (the first mirror member's file stem).
const DISK: &str = "oz-a";

/// The pool directory and the passphrase of `ozpool/enc`, or `None` (the
/// reason printed) where the fixture is absent.
fn pool(ctx: &Web) -> Result<Option<(PathBuf, String)>> {
    let dir = ctx.fixtures.join("zfs/openzfs");
    let key = dir.join("enc.key");
    if !dir.join(format!("{DISK}.raw")).is_file() || !key.is_file() {
        println!(
            "skipped: no OpenZFS fixture pool in {} (tests/fixtures/mkzfs.sh)",
            dir.display()
        );
        return Ok(None);
    }
    let pass = std::fs::read_to_string(&key)?;
    let pass = pass.lines().next().context("empty enc.key")?.to_string();
    Ok(Some((dir, pass)))
}

/// The case.
pub fn cases(g: &mut Group<Web>) {
    g.case("zfs::browser_datasets_and_unlock", |ctx| {
        let Some((dir, pass)) = pool(ctx)? else {
            return Ok(());
        };
        stop_all(ctx)?;
        let s = Served::start(ctx, &dir, "zfs-browser")?;
        let (url, key) = (&s.url, &pass);
        let r = in_browser(|c, _| async move { session(&c, url, key).await });
        let printed = s.finish()?;
        let stopped = stop_all(ctx);
        anyhow::ensure!(
            !printed.contains(&pass),
            "the server printed the passphrase"
        );
        r.and(stopped)
    });
}

/// Whether a tree node's label starts with `prefix` (and, if given, ends
/// with `end`), as a JavaScript expression.
fn label_js(kind: &str, prefix: &str, end: Option<&str>) -> String {
    let end = end
        .map(|e| format!(" && l.textContent.endsWith('{e}')"))
        .unwrap_or_default();
    format!(
        "[...document.querySelectorAll('.node.{kind} .label')].some(l => l.textContent.startsWith('{prefix}'){end})"
    )
}

async fn session(c: &Client, url: &str, pass: &str) -> Result<()> {
    c.goto(url).await?;
    wait_for(c, ".node.disk").await?;
    click_node(c, "disk", DISK).await?;
    wait_js(
        c,
        "the pool's node",
        &label_js("bucket", "zfs/ozpool", None),
    )
    .await?;
    click_node(c, "bucket", "zfs/ozpool").await?;
    for (prefix, end) in [
        ("data · zfs", None),
        ("data@snap1 · zfs", None),
        ("data-nested · zfs", None),
        ("enc · zfs", Some("locked")),
        ("volpt-part1 · ext4", None),
    ] {
        wait_js(c, prefix, &label_js("dir", prefix, end)).await?;
    }

    // A dataset's files.
    click_node(c, "dir", "data@snap1").await?;
    wait_js(
        c,
        "the snapshot's listing",
        "[...document.querySelectorAll('#rows tr[data-type]')].some(r => r.textContent.includes('gone.txt'))",
    )
    .await?;

    // The encrypted dataset: Unlock… under its row, then it opens in place.
    click_node(c, "dir", "enc · zfs").await?;
    c.execute(
        "[...document.querySelectorAll('.treeitem')].find(t => t.querySelector('.label')\
         ?.textContent.startsWith('enc · zfs')).querySelector('button.unlock').click();",
        vec![],
    )
    .await
    .context("no Unlock… button under the encrypted dataset")?;
    let field = wait_for(c, ".unlock-form input.passphrase").await?;
    field.send_keys(&format!("{pass}\u{E007}")).await?;
    wait_js(
        c,
        "the dataset open",
        &label_js("dir", "enc · zfs", Some("open")),
    )
    .await?;
    click_node(c, "dir", "enc · zfs").await?;
    wait_js(
        c,
        "the opened dataset's listing",
        "[...document.querySelectorAll('#rows tr[data-type]')].some(r => r.textContent.includes('secret.txt'))",
    )
    .await?;
    let rows = c.find(Locator::Css("#rows")).await?.text().await?;
    anyhow::ensure!(rows.contains("secret.txt"), "enc lists: {rows}");
    Ok(())
}

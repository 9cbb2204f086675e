//! The page in headless Chromium (Debian's chromium and chromedriver, through
//! fantoccini): open the printed URL, expand disk -> bucket -> directory, see
//! the broken bucket's error in place, filter, download a file, a directory
//! as zip and a multi-selection as one tar and compare them with the
//! manifest, move with the keyboard, and save a screenshot.
//!
//! fantoccini rather than Playwright: it is a Rust crate (no Node toolchain,
//! no browser download at test time, which this project's machines cannot do)
//! and speaks plain WebDriver to the chromedriver Debian ships with chromium.

use crate::api::{compare_trees, files_below, manifest_files, sha256_hex, tar_files};
use crate::Web;
use anyhow::{bail, ensure, Context, Result};
use fantoccini::{Client, ClientBuilder, Locator};
use file_restore_tests::harness::Group;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the screenshot goes: `FILE_RESTORE_SCREENSHOT` when set (docs/WEB-UI.md's
/// docs/web-ui.png is made with it), else the test's scratch space.
fn screenshot_path(ctx: &Web) -> PathBuf {
    std::env::var_os("FILE_RESTORE_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| ctx.runtime.join("web-ui.png"))
}

/// chromedriver on a free port, killed when dropped.
pub(crate) struct Driver {
    child: Child,
    pub(crate) url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `session` in a fresh headless Chromium (its own chromedriver and
/// download directory, given to `session`), and closes the browser
/// afterwards whatever the session did.
pub(crate) fn in_browser<F, Fut>(session: F) -> Result<()>
where
    F: FnOnce(Client, PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let driver = start_chromedriver()?;
    let downloads = tempfile::tempdir()?;
    rt.block_on(async {
        let client = connect(&driver.url, downloads.path()).await?;
        let r = session(client.clone(), downloads.path().to_path_buf()).await;
        let _ = client.close().await;
        r
    })
}

pub(crate) fn start_chromedriver() -> Result<Driver> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context(
            "cannot run chromedriver: install chromium and chromium-driver (scripts/deps.sh)",
        )?;
    let d = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(
            t.elapsed() < Duration::from_secs(20),
            "chromedriver did not listen within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(d)
}

/// Adds the browser case to `g`.
pub fn cases(g: &mut Group<Web>, url: &str) {
    let url = url.to_string();
    g.case(
        "browser::tree_filter_downloads_errors_keyboard_screenshot",
        move |ctx| in_browser(|c, dl| async move { session(ctx, &c, &url, &dl).await }),
    );
}

/// A directory of [`crate::BIG_DIR_FILES`] entries: the listing arrives,
/// only a page of rows is in the DOM, and filtering and keyboard moves over
/// the whole listing stay quick. Stops the other VM first and uses a server
/// of its own on the scratch root alone (no SOURCE whose disks the page would
/// open at once), so one VM runs at a time.
pub fn big_directory_case(g: &mut Group<Web>) {
    g.case("browser::big_directory_stays_responsive", |ctx| {
        let out = ctx.cli().args(["stop", "--all"]).output()?;
        ensure!(out.status.success(), "stop --all failed");
        let (mut server, url) = crate::start_server(
            &ctx.bin,
            &ctx.runtime,
            &[
                "--listen".as_ref(),
                "127.0.0.1:0".as_ref(),
                "--root".as_ref(),
                ctx.big_root.as_os_str(),
            ],
        )?;
        let r = in_browser(|c, _| async move { big_session(&c, &url).await });
        let _ = server.kill();
        let _ = server.wait();
        let out = ctx.cli().args(["stop", "--all"]).output()?;
        ensure!(out.status.success(), "stop --all failed");
        r
    });
}

async fn big_session(c: &Client, url: &str) -> Result<()> {
    let n = crate::BIG_DIR_FILES;
    c.goto(url).await?;
    click_node(c, "source", "big-dir.raw").await?;
    click_node(c, "disk", "big-dir").await?;
    click_node(c, "bucket", "raw/raw").await?;
    wait_for(c, ".node.dir").await?;
    let t = Instant::now();
    click_node(c, "dir", "big").await?;
    wait_js(
        c,
        "the big listing",
        &format!("document.getElementById('count').textContent === '{n} entries'"),
    )
    .await?;
    let listed = t.elapsed();
    let rows = c
        .execute(
            "return document.querySelectorAll('#rows tr').length;",
            vec![],
        )
        .await?;
    ensure!(
        rows == json!(500),
        "{rows} rows in the DOM for {n} entries (want one page, 500)"
    );
    ensure!(
        c.find(Locator::Id("show-more")).await.is_ok(),
        "no Show more button"
    );
    let ms = c
        .execute(
            "const t = performance.now(); const f = document.getElementById('filter'); \
             f.value = 'file-1199'; f.dispatchEvent(new Event('input')); \
             return [performance.now() - t, document.getElementById('count').textContent];",
            vec![],
        )
        .await?;
    ensure!(
        ms[1] == json!(format!("10 of {n} entries")),
        "filter count {}",
        ms[1]
    );
    let filter_ms = ms[0].as_f64().unwrap_or(f64::MAX);
    ensure!(
        filter_ms < 1000.0,
        "filtering {n} entries took {filter_ms} ms"
    );
    eprintln!(
        "big directory: {n} entries listed and shown in {listed:?}, filtered in {filter_ms:.0} ms"
    );
    ensure!(
        listed < Duration::from_secs(30),
        "the listing took {listed:?}"
    );
    Ok(())
}

pub(crate) async fn connect(webdriver: &str, downloads: &Path) -> Result<Client> {
    let caps = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,860", "--lang=en-US"],
            "prefs": {
                "download.default_directory": downloads.to_string_lossy(),
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
            }
        }
    });
    let serde_json::Value::Object(caps) = caps else {
        bail!("capabilities are not an object");
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(webdriver)
        .await
        .context("cannot start a WebDriver session")
}

/// Waits (up to 60 s: the first listing boots the VM) for `css`.
pub(crate) async fn wait_for(c: &Client, css: &str) -> Result<fantoccini::elements::Element> {
    c.wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Css(css))
        .await
        .with_context(|| format!("no {css} on the page"))
}

/// Waits until `check` (a JS expression) is true.
pub(crate) async fn wait_js(c: &Client, what: &str, check: &str) -> Result<()> {
    let t = Instant::now();
    loop {
        let v = c.execute(&format!("return !!({check});"), vec![]).await?;
        if v == json!(true) {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(60) {
            let msg = c
                .execute(
                    "return document.getElementById('message').textContent;",
                    vec![],
                )
                .await
                .unwrap_or_default();
            bail!("timed out waiting for {what} (page message: {msg})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for a finished download named `name` and returns its bytes.
pub(crate) async fn downloaded(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let t = Instant::now();
    let p = dir.join(name);
    loop {
        let partial = std::fs::read_dir(dir)?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".crdownload"));
        if p.exists() && !partial {
            return Ok(std::fs::read(&p)?);
        }
        ensure!(
            t.elapsed() < Duration::from_secs(60),
            "{name} was not downloaded within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks the tree node of `kind` whose label starts with `label`.
pub(crate) async fn click_node(c: &Client, kind: &str, label: &str) -> Result<()> {
    let xpath = format!(
        "//div[contains(@class,'node') and contains(@class,'{kind}')]/span[@class='label' and starts-with(normalize-space(.),'{label}')]"
    );
    c.wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::XPath(&xpath))
        .await
        .with_context(|| format!("no {kind} node {label}"))?
        .click()
        .await?;
    Ok(())
}

async fn session(ctx: &Web, c: &Client, url: &str, downloads: &Path) -> Result<()> {
    let files = manifest_files(ctx)?;
    c.goto(url).await?;
    let now = c.current_url().await?;
    ensure!(
        now.query().is_none() && now.path() == "/",
        "the token stayed in the URL: {now}"
    );

    // One SOURCE: its disks are the first level without a click.
    wait_for(c, ".node.disk")
        .await
        .context("disks of the single SOURCE")?;
    click_node(c, "disk", "zeroed-super").await?;
    wait_js(
        c,
        "two buckets",
        "document.querySelectorAll('.node.bucket').length === 2",
    )
    .await?;

    // The broken bucket: its message in place, in the tree and the listing.
    click_node(c, "bucket", "part/1").await?;
    wait_js(
        c,
        "the broken bucket's error",
        "[...document.querySelectorAll('.node-error')].some(e => e.textContent.includes('cannot be mounted'))",
    )
    .await?;
    ensure!(
        c.find(Locator::Id("message"))
            .await?
            .text()
            .await?
            .contains("zeroed-super/part/1"),
        "the listing does not show the bucket's error"
    );

    // The good bucket keeps working: bucket -> directory.
    click_node(c, "bucket", "part/2").await?;
    click_node(c, "dir", "docs").await?;
    wait_js(
        c,
        "the docs listing",
        "document.querySelector('#breadcrumb strong')?.textContent === 'docs' && document.querySelectorAll('#rows tr[data-type]').length > 0",
    )
    .await?;
    let crumbs = c.find(Locator::Id("breadcrumb")).await?.text().await?;
    ensure!(
        crumbs.contains("zeroed-super.img") && crumbs.contains("part/2"),
        "breadcrumb {crumbs}"
    );

    // Filter, then download the one file left.
    let want_rel = b"docs/doc53.txt".to_vec();
    let (sha, _) = files
        .get(&want_rel)
        .context("manifest has no docs/doc53.txt")?
        .clone();
    c.find(Locator::Id("filter"))
        .await?
        .send_keys("doc53")
        .await?;
    wait_js(
        c,
        "the filter",
        "document.querySelectorAll('#rows tr[data-type]').length === 1",
    )
    .await?;
    let count = c.find(Locator::Id("count")).await?.text().await?;
    ensure!(count.starts_with("1 of "), "count {count}");
    c.find(Locator::Css("#rows tr a.dl")).await?.click().await?;
    let got = downloaded(downloads, "doc53.txt").await?;
    ensure!(
        sha256_hex(&got) == sha,
        "doc53.txt from the browser differs from the manifest"
    );

    // Keyboard: Escape clears the filter, arrows move, "/" focuses the filter.
    let filter = c.find(Locator::Id("filter")).await?;
    filter.send_keys("\u{E00C}").await?; // Escape
    wait_js(
        c,
        "the filter cleared",
        "document.querySelectorAll('#rows tr[data-type]').length > 1",
    )
    .await?;
    c.find(Locator::Id("rows"))
        .await?
        .send_keys("\u{E015}\u{E015}")
        .await?; // ArrowDown x2
    wait_js(
        c,
        "the cursor moved",
        "document.querySelector('#rows tr.cursor')?.dataset.index === '2'",
    )
    .await?;
    c.find(Locator::Id("rows")).await?.send_keys("/").await?;
    wait_js(
        c,
        "/ focusing the filter",
        "document.activeElement.id === 'filter'",
    )
    .await?;

    // The directory as one zip.
    c.find(Locator::Id("dl-zip")).await?.click().await?;
    let zip_bytes = downloaded(downloads, "docs.zip").await?;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).context("docs.zip")?;
    let mut got = BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i)?;
        if f.is_file() {
            let name = f.name()?.trim_start_matches("docs/").as_bytes().to_vec();
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut b)?;
            got.insert(name, sha256_hex(&b));
        }
    }
    compare_trees(
        &got,
        &files_below(&files, b"docs"),
        "docs.zip from the browser",
    )?;

    // A multi-selection (a file and a directory) as one tar.
    for name in ["doc53.txt", "sub00-a"] {
        let xpath =
            format!("//tr[td[@class='n']/*[normalize-space(.)='{name}']]//input[@class='pick']");
        c.find(Locator::XPath(&xpath))
            .await
            .with_context(|| format!("no checkbox for {name}"))?
            .click()
            .await?;
    }
    c.find(Locator::Id("dl-sel")).await?.click().await?;
    let tar_bytes = downloaded(downloads, "selection.tar").await?;
    let mut want: BTreeMap<Vec<u8>, String> = files_below(&files, b"docs/sub00-a")
        .into_iter()
        .map(|(p, sha)| ([b"sub00-a/".as_slice(), &p].concat(), sha))
        .collect();
    want.insert(b"doc53.txt".to_vec(), sha.clone());
    compare_trees(
        &tar_files(&tar_bytes)?,
        &want,
        "selection.tar from the browser",
    )?;

    // Keyboard in the tree: ArrowDown from the bucket selects its first directory.
    click_node(c, "bucket", "part/2").await?;
    c.find(Locator::Css(".node.selected"))
        .await?
        .send_keys("\u{E015}")
        .await?;
    wait_js(
        c,
        "ArrowDown in the tree",
        "document.querySelector('.node.selected .label')?.textContent === 'data'",
    )
    .await?;

    // Back to the bucket's root for the screenshot (the broken bucket's
    // error stays visible in the tree).
    c.execute("document.activeElement.blur();", vec![]).await?;
    click_node(c, "bucket", "part/2").await?;
    wait_js(
        c,
        "the bucket listing",
        "document.querySelector('#breadcrumb strong')?.textContent.startsWith('part/2')",
    )
    .await?;
    let png = c.screenshot().await?;
    let out = screenshot_path(ctx);
    std::fs::write(&out, png).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("screenshot: {}", out.display());
    Ok(())
}

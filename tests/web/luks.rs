//! The LUKS passphrase prompt: `POST /api/unlock` and the page's "Unlock…"
//! field, on a LUKS2 image made here with cryptsetup (no device-mapper on the
//! host: `luksFormat` on a plain file). Its payload is random, so the opened
//! bucket `luks/raw` is of type `unknown`: enough to prove the flow. Each
//! case has its own `serve` (stdout and stderr captured, `RUST_LOG=trace`)
//! and its own VM, after stopping the others (one VM at a time), and checks
//! that neither passphrase appears in what the server printed or in any file
//! of the runtime directory (the VMs' console logs).

use crate::browser::{click_node, in_browser, wait_for, wait_js};
use crate::http::{self, Answer};
use crate::Web;
use anyhow::{bail, ensure, Context, Result};
use fantoccini::{Client, Locator};
use file_restore_tests::harness::Group;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The passphrase the image is formatted with.
const RIGHT: &str = "luks-right-7f3a9c51";
/// One that does not open it.
const WRONG: &str = "luks-wrong-51d2e8a4";
/// The disk (the image's file stem) and the container on it.
const DISK: &str = "luks2";
const CONTAINER: &str = "luks2/raw/raw";

/// `scratch/luks/luks2.raw`, made once: 64 MiB, LUKS2, Argon2id with a small
/// memory cost (32 MiB; the VM has 256 MiB) and 4 iterations.
fn image(ctx: &Web) -> Result<PathBuf> {
    static MADE: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    MADE.get_or_init(|| make_image(&ctx.scratch.join("luks")).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn make_image(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let img = dir.join(format!("{DISK}.raw"));
    std::fs::File::create(&img)?.set_len(64 << 20)?;
    let mut child = Command::new("cryptsetup")
        .args([
            "luksFormat",
            "-q",
            "--type",
            "luks2",
            "--pbkdf",
            "argon2id",
            "--pbkdf-memory",
            "32768",
            "--pbkdf-parallel",
            "1",
            "--pbkdf-force-iterations",
            "4",
            "--key-file",
            "-",
        ])
        .arg(&img)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run cryptsetup (install cryptsetup-bin)")?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(RIGHT.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "cryptsetup luksFormat: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(img)
}

/// A `serve` of one SOURCE alone whose stdout and stderr go to files (the
/// LUKS image here, a ZFS pool's images in [`crate::zfs`]).
pub(crate) struct Served {
    child: Child,
    /// The URL with the token, as `serve` printed it.
    pub(crate) url: String,
    authority: String,
    token: String,
    out: PathBuf,
    err: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Starts `file-restore serve SOURCE` (`img`); `name` names its output files.
    pub(crate) fn start(ctx: &Web, img: &Path, name: &str) -> Result<Served> {
        let out = ctx.runtime.join(format!("{name}.stdout"));
        let err = ctx.runtime.join(format!("{name}.stderr"));
        let child = ctx
            .cli()
            .env("RUST_LOG", "trace")
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg(img)
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(&err)?)
            .spawn()
            .context("cannot start file-restore serve")?;
        let mut s = Served {
            child,
            url: String::new(),
            authority: String::new(),
            token: String::new(),
            out,
            err,
        };
        let t = Instant::now();
        let line = loop {
            let text = std::fs::read_to_string(&s.out).unwrap_or_default();
            if let Some((line, _)) = text.split_once('\n') {
                break line.trim().to_string();
            }
            ensure!(
                t.elapsed() < Duration::from_secs(30),
                "serve printed no URL within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let (authority, token) = line
            .strip_prefix("http://")
            .and_then(|r| r.split_once("/?token="))
            .with_context(|| format!("URL {line:?}"))?;
        s.authority = authority.to_string();
        s.token = token.to_string();
        s.url = line;
        Ok(s)
    }

    fn cookie(&self) -> String {
        let port = self.authority.rsplit(':').next().unwrap_or_default();
        format!("file_restore_session_{port}={}", self.token)
    }

    fn get(&self, target: &str) -> Result<Answer> {
        let cookie = self.cookie();
        http::request(
            &self.authority,
            "GET",
            target,
            &[("Host", &self.authority), ("Cookie", &cookie)],
        )
    }

    fn csrf(&self) -> Result<String> {
        let page = self.get("/")?.text();
        let (_, rest) = page
            .split_once("name=\"csrf\" content=\"")
            .context("no csrf meta")?;
        Ok(rest.split('"').next().unwrap_or_default().to_string())
    }

    /// POST /api/unlock?`query` with `body`, plus `extra` headers (Host and
    /// the cookie are always there).
    fn unlock(&self, query: &str, body: &[u8], extra: &[(&str, &str)]) -> Result<Answer> {
        let cookie = self.cookie();
        let mut h = vec![
            ("Host", self.authority.as_str()),
            ("Cookie", cookie.as_str()),
            ("Content-Type", "application/json"),
        ];
        h.extend_from_slice(extra);
        http::request_body(
            &self.authority,
            "POST",
            &format!("/api/unlock?{query}"),
            &h,
            body,
        )
    }

    /// Ends the server and returns what it printed.
    pub(crate) fn finish(mut self) -> Result<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(format!(
            "{}{}",
            std::fs::read_to_string(&self.out)?,
            std::fs::read_to_string(&self.err)?
        ))
    }
}

fn expect_status(a: &Answer, want: u16, what: &str) -> Result<()> {
    ensure!(
        a.status == want,
        "{what}: HTTP {} (want {want}): {}",
        a.status,
        a.text()
    );
    Ok(())
}

/// Stops every VM of this run (one VM at a time).
pub(crate) fn stop_all(ctx: &Web) -> Result<()> {
    let out = ctx.cli().args(["stop", "--all"]).output()?;
    ensure!(
        out.status.success(),
        "stop --all: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Neither passphrase in `printed` nor in any file below the runtime dir;
/// returns how many bytes the server printed and how many files were read.
fn no_passphrase_anywhere(ctx: &Web, printed: &str) -> Result<String> {
    for p in [RIGHT, WRONG] {
        ensure!(
            !printed.contains(p),
            "the server printed a passphrase ({} bytes of output)",
            printed.len()
        );
    }
    let mut stack = vec![ctx.runtime.clone()];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)?.flatten() {
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let Ok(bytes) = std::fs::read(e.path()) else {
                    continue;
                };
                files += 1;
                for p in [RIGHT, WRONG] {
                    ensure!(
                        !bytes.windows(p.len()).any(|w| w == p.as_bytes()),
                        "a passphrase is in {}",
                        e.path().display()
                    );
                }
            }
        }
    }
    ensure!(files > 0, "no file in the runtime dir to check");
    Ok(format!(
        "no passphrase in the {} bytes the server printed nor in {files} files of the runtime dir",
        printed.len()
    ))
}

fn b64(p: &str) -> String {
    use base64::Engine;
    let s = base64::engine::general_purpose::STANDARD.encode(p);
    s.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

fn list(s: &Served, source: &str, path: &str) -> Result<Value> {
    let a = s.get(&format!("/api/list?source={source}&path={}", b64(path)))?;
    expect_status(&a, 200, &format!("list {path}"))?;
    a.json()
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["text"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The one container of the answer, checked to be ours.
fn container(a: &Answer) -> Result<Value> {
    let v = a.json()?;
    let cs = v["containers"].as_array().context("no containers")?;
    ensure!(cs.len() == 1, "containers {v}");
    ensure!(
        cs[0]["container"] == CONTAINER && cs[0]["encryption"] == "LUKS2",
        "container {}",
        cs[0]
    );
    Ok(cs[0].clone())
}

/// Adds the cases to `g` (before the server cases: they end the main server).
pub fn cases(g: &mut Group<Web>) {
    g.case("luks::api_unlock_csrf_wrong_and_right_key", |ctx| {
        stop_all(ctx)?;
        let img = image(ctx)?;
        let r = api_case(ctx, &img);
        let stopped = stop_all(ctx);
        r.and(stopped)
    });
    g.case("luks::browser_unlock_prompt", |ctx| {
        stop_all(ctx)?;
        let img = image(ctx)?;
        let r = browser_case(ctx, &img);
        let stopped = stop_all(ctx);
        r.and(stopped)
    });
}

fn api_case(ctx: &Web, img: &Path) -> Result<()> {
    let s = Served::start(ctx, img, "luks-api")?;
    let source = crate::api::enc(&img.to_string_lossy());
    let q = format!("source={source}");
    let right = serde_json::to_vec(&json!({ "passphrase": RIGHT }))?;
    let wrong = serde_json::to_vec(&json!({ "passphrase": WRONG }))?;
    let csrf = s.csrf()?;
    let origin = format!("http://{}", s.authority);
    let good: [(&str, &str); 2] = [("X-CSRF-Token", &csrf), ("Origin", &origin)];

    // Refusals, before any VM is asked anything.
    expect_status(
        &s.unlock(&q, &right, &[])?,
        403,
        "unlock without the CSRF token",
    )?;
    expect_status(
        &s.unlock(
            &q,
            &right,
            &[("X-CSRF-Token", &csrf), ("Origin", "http://evil.example")],
        )?,
        403,
        "unlock from a foreign origin",
    )?;
    expect_status(&s.get(&format!("/api/unlock?{q}"))?, 405, "GET /api/unlock")?;
    let a = s.unlock(&format!("{q}&passphrase={WRONG}"), b"", &good)?;
    expect_status(&a, 400, "a passphrase in the URL")?;
    ensure!(
        !a.text().contains(WRONG),
        "the refusal echoes the URL's passphrase"
    );
    let a = s.unlock(&q, format!("\"{WRONG}\"").as_bytes(), &good)?;
    expect_status(&a, 400, "a body that is not the object")?;
    ensure!(!a.text().contains(WRONG), "the refusal echoes the body");
    let big = serde_json::to_vec(&json!({ "passphrase": "x".repeat(10_000) }))?;
    expect_status(&s.unlock(&q, &big, &good)?, 413, "a 10 KB body")?;
    let other = crate::api::enc(&ctx.fixtures.join("gpt.img").to_string_lossy());
    expect_status(
        &s.unlock(&format!("source={other}"), &right, &good)?,
        403,
        "unlock of a source outside the catalog",
    )?;

    // Locked, with its version.
    let t = Instant::now();
    let raw = list(&s, &source, &format!("/{DISK}/raw"))?;
    let booted = t.elapsed();
    ensure!(
        raw[0]["fstype"] == "crypto_LUKS"
            && raw[0]["encryption"] == "LUKS2"
            && raw[0]["locked"] == true,
        "the container before unlocking: {raw}"
    );

    let t = Instant::now();
    let a = s.unlock(&q, &wrong, &good)?;
    let wrong_took = t.elapsed();
    expect_status(&a, 200, "unlock with the wrong passphrase")?;
    ensure!(!a.text().contains(WRONG), "the answer holds the passphrase");
    let c = container(&a)?;
    ensure!(
        c["outcome"] == "wrong-key" && c["message"].as_str().is_some_and(|m| m.contains(CONTAINER)),
        "wrong key: {c}"
    );
    let types = names(&list(&s, &source, &format!("/{DISK}"))?);
    ensure!(
        !types.iter().any(|t| t == "luks"),
        "a luks bucket after the wrong key: {types:?}"
    );

    let t = Instant::now();
    let a = s.unlock(&q, &right, &good)?;
    let right_took = t.elapsed();
    expect_status(&a, 200, "unlock with the right passphrase")?;
    ensure!(!a.text().contains(RIGHT), "the answer holds the passphrase");
    let c = container(&a)?;
    ensure!(
        c["outcome"] == "opened" && c["bucket"] == "luks/raw",
        "right key: {c}"
    );
    let types = names(&list(&s, &source, &format!("/{DISK}"))?);
    ensure!(
        types.iter().any(|t| t == "luks"),
        "no luks bucket after opening: {types:?}"
    );
    let raw = list(&s, &source, &format!("/{DISK}/raw"))?;
    ensure!(
        raw[0]["locked"] == false,
        "the container after opening: {raw}"
    );
    let luks = list(&s, &source, &format!("/{DISK}/luks"))?;
    ensure!(
        names(&luks) == ["raw"] && luks[0]["fstype"] == "unknown",
        "the opened content: {luks}"
    );
    let c = container(&s.unlock(&q, &right, &good)?)?;
    ensure!(c["outcome"] == "already-open", "a second unlock: {c}");

    let printed = s.finish()?;
    let checked = no_passphrase_anywhere(ctx, &printed)?;
    eprintln!(
        "luks api: first list (VM boot) {booted:?}, wrong key {wrong_took:?}, right key {right_took:?}; {checked}"
    );
    Ok(())
}

fn browser_case(ctx: &Web, img: &Path) -> Result<()> {
    let s = Served::start(ctx, img, "luks-browser")?;
    let url = &s.url;
    let r = in_browser(|c, _| async move { prompt(&c, url).await });
    let printed = s.finish()?;
    r?;
    eprintln!("luks browser: {}", no_passphrase_anywhere(ctx, &printed)?);
    Ok(())
}

/// The unlock field's message text.
async fn message(c: &Client) -> Result<String> {
    Ok(c.execute(
        "return document.querySelector('.unlock-msg')?.textContent || '';",
        vec![],
    )
    .await?
    .as_str()
    .unwrap_or_default()
    .to_string())
}

async fn prompt(c: &Client, url: &str) -> Result<()> {
    c.goto(url).await?;
    wait_for(c, ".node.disk").await?;
    click_node(c, "disk", DISK).await?;
    wait_js(
        c,
        "the locked bucket",
        "[...document.querySelectorAll('.node.bucket .label')].some(l => l.textContent.startsWith('raw/raw') && l.textContent.endsWith('locked'))",
    )
    .await?;
    click_node(c, "bucket", "raw/raw").await?;
    let note = c.find(Locator::Css("#rows td.note")).await?.text().await?;
    ensure!(
        note.contains(CONTAINER) && note.contains("locked"),
        "the listing of the locked container: {note}"
    );
    c.find(Locator::Css(".treeitem button.unlock"))
        .await
        .context("no Unlock… button")?
        .click()
        .await?;
    let field = wait_for(c, ".unlock-form input.passphrase").await?;
    ensure!(
        field.attr("type").await?.as_deref() == Some("password")
            && field.attr("autocomplete").await?.as_deref() == Some("off")
            && field.attr("name").await?.is_none(),
        "the field is not an unnamed password field with autocomplete=off"
    );
    wait_js(
        c,
        "the field focused",
        "document.activeElement?.classList.contains('passphrase')",
    )
    .await?;

    // Keyboard: Escape closes the field (focus back on the tree row), Enter
    // on the row opens it again.
    field.send_keys("\u{E00C}").await?;
    wait_js(
        c,
        "Escape closing the field",
        "document.querySelector('.unlock-form').hidden && document.activeElement?.dataset.locked === 'true'",
    )
    .await?;
    c.find(Locator::Css(".node.selected"))
        .await?
        .send_keys("\u{E007}")
        .await?;
    wait_js(
        c,
        "Enter on the row opening the field",
        "!document.querySelector('.unlock-form').hidden && document.activeElement?.classList.contains('passphrase')",
    )
    .await?;
    let field = c
        .find(Locator::Css(".unlock-form input.passphrase"))
        .await?;

    // The wrong one, submitted with Enter: the message in place, the field kept.
    field.send_keys(&format!("{WRONG}\u{E007}")).await?;
    let t = Instant::now();
    wait_js(
        c,
        "the wrong-key message",
        "document.querySelector('.unlock-msg.error')?.textContent.includes('Wrong passphrase')",
    )
    .await?;
    let wrong_took = t.elapsed();
    let msg = message(c).await?;
    ensure!(
        msg.contains(CONTAINER),
        "the message does not name the container: {msg}"
    );
    ensure!(
        !msg.contains(WRONG),
        "the message shows the passphrase: {msg}"
    );
    let kept = c
        .execute(
            "const f = document.querySelector('.unlock-form input.passphrase'); \
             return [!!f && !f.closest('form').hidden, f?.value, document.activeElement === f];",
            vec![],
        )
        .await?;
    ensure!(
        kept == json!([true, "", true]),
        "after the wrong key the field should stay, empty and focused: {kept}"
    );
    ensure!(
        !c.execute(
            "return [...document.querySelectorAll('.node.bucket .label')].some(l => l.textContent.startsWith('luks/'));",
            vec![],
        )
        .await?
        .as_bool()
        .unwrap_or(true),
        "a luks bucket after the wrong key"
    );

    // The right one, with the Unlock button: luks/raw appears, the container is open.
    let field = c
        .find(Locator::Css(".unlock-form input.passphrase"))
        .await?;
    field.send_keys(RIGHT).await?;
    c.find(Locator::Css(".unlock-form button.unlock-submit"))
        .await?
        .click()
        .await?;
    let t = Instant::now();
    wait_js(
        c,
        "the luks bucket in the tree",
        "[...document.querySelectorAll('.node.bucket .label')].some(l => l.textContent.startsWith('luks/raw'))",
    )
    .await
    .with_context(|| "after the right passphrase".to_string())?;
    let right_took = t.elapsed();
    let labels = c
        .execute(
            "return [...document.querySelectorAll('.node.bucket .label')].map(l => l.textContent);",
            vec![],
        )
        .await?;
    let open = labels.as_array().is_some_and(|ls| {
        ls.iter().any(|l| {
            l.as_str()
                .is_some_and(|l| l.starts_with("raw/raw") && l.ends_with("open"))
        })
    });
    ensure!(open, "the container does not show open: {labels}");
    ensure!(
        c.find(Locator::Css(".treeitem button.unlock"))
            .await
            .is_err(),
        "an open container still offers Unlock…"
    );
    eprintln!("luks browser: wrong key shown after {wrong_took:?}, luks/raw after {right_took:?}");
    Ok(())
}

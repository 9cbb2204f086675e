//! The cases: security refusals, the JSON API, downloads compared with the
//! fixture manifest by sha256, the browser ([`crate::browser`]), status and
//! stop.

use crate::http::{self, Answer};
use crate::Web;
use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use file_restore_tests::harness::Group;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The good bucket of the SOURCE, as a VM path.
const BUCKET: &str = "/zeroed-super/part/2";

pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

pub(crate) fn path_q(p: &[u8]) -> String {
    enc(&B64.encode(p))
}

fn src_q(ctx: &Web) -> String {
    enc(&ctx.source.to_string_lossy())
}

fn list(ctx: &Web, p: &[u8]) -> Result<Answer> {
    ctx.get(&format!(
        "/api/list?source={}&path={}",
        src_q(ctx),
        path_q(p)
    ))
}

fn download(ctx: &Web, p: &[u8], format: Option<&str>, extra: &[(&str, &str)]) -> Result<Answer> {
    let f = format.map(|f| format!("&format={f}")).unwrap_or_default();
    ctx.get_with(
        &format!("/api/download?source={}&path={}{f}", src_q(ctx), path_q(p)),
        extra,
    )
}

pub(crate) fn expect_status(a: &Answer, want: u16, what: &str) -> Result<()> {
    ensure!(
        a.status == want,
        "{what}: HTTP {} (want {want}): {}",
        a.status,
        a.text()
    );
    Ok(())
}

pub(crate) fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Files of the good bucket's manifest: relative path -> sha256.
pub(crate) fn manifest_files(ctx: &Web) -> Result<BTreeMap<Vec<u8>, (String, u64)>> {
    let idx: Value = serde_json::from_slice(&std::fs::read(ctx.fixtures.join("fixtures.json"))?)?;
    let name = idx["images"]["zeroed-super.img"]["buckets"]["part/2"]["manifest"]
        .as_str()
        .context("fixtures.json: no manifest for zeroed-super.img part/2")?;
    let m: Value = serde_json::from_slice(&std::fs::read(ctx.fixtures.join(name))?)?;
    let mut out = BTreeMap::new();
    for e in m.as_array().context("manifest is not an array")? {
        if e["type"] == "f" {
            let p = B64.decode(e["path"].as_str().context("path")?)?;
            let sha = e["sha256"].as_str().context("sha256")?.to_string();
            out.insert(p, (sha, e["size"].as_u64().unwrap_or(0)));
        }
    }
    ensure!(!out.is_empty(), "the manifest has no files");
    Ok(out)
}

fn vm_path(rel: &[u8]) -> Vec<u8> {
    let mut p = format!("{BUCKET}/").into_bytes();
    p.extend_from_slice(rel);
    p
}

/// The manifest's files below directory `dir` (relative), keyed by their
/// path inside that directory.
pub(crate) fn files_below(
    files: &BTreeMap<Vec<u8>, (String, u64)>,
    dir: &[u8],
) -> BTreeMap<Vec<u8>, String> {
    let mut prefix = dir.to_vec();
    prefix.push(b'/');
    files
        .iter()
        .filter_map(|(p, (sha, _))| {
            p.strip_prefix(prefix.as_slice())
                .map(|rest| (rest.to_vec(), sha.clone()))
        })
        .collect()
}

/// Adds every case to `g`.
pub fn cases(g: &mut Group<Web>, url: &str) {
    let url = url.to_string();
    let url_for_browser = url.clone();
    g.case(
        "security::url_token_sets_cookie_and_redirects",
        move |ctx| {
            let target = url
                .split_once(&ctx.authority)
                .map(|(_, t)| t)
                .unwrap_or("/");
            let a = http::request(&ctx.authority, "GET", target, &[("Host", &ctx.authority)])?;
            expect_status(&a, 303, "GET /?token=")?;
            ensure!(
                a.header("location") == Some("/"),
                "redirect to {:?}",
                a.header("location")
            );
            let c = a.header("set-cookie").context("no Set-Cookie")?;
            ensure!(
                c.contains(&ctx.token) && c.contains("HttpOnly") && c.contains("SameSite=Strict"),
                "cookie {c}"
            );
            let page = ctx.get("/")?;
            expect_status(&page, 200, "GET / with the cookie")?;
            ensure!(page.text().contains("/assets/app.js"), "not the page");
            ensure!(
                !page.text().contains(&ctx.token),
                "the page holds the session token"
            );
            Ok(())
        },
    );
    g.case("security::no_token_401_wrong_token_403", |ctx| {
        let host = [("Host", ctx.authority.as_str())];
        for t in ["/", "/api/sources", "/assets/app.js", "/api/status"] {
            let a = http::request(&ctx.authority, "GET", t, &host)?;
            expect_status(&a, 401, &format!("{t} without the token"))?;
        }
        let a = http::request(
            &ctx.authority,
            "GET",
            "/?token=00000000000000000000000000000000",
            &host,
        )?;
        expect_status(&a, 403, "a wrong token in the URL")?;
        let port = ctx.authority.rsplit(':').next().unwrap_or_default();
        let bad = format!("file_restore_session_{port}=0123456789abcdef0123456789abcdef");
        let a = http::request(
            &ctx.authority,
            "GET",
            "/api/sources",
            &[host[0], ("Cookie", &bad)],
        )?;
        expect_status(&a, 403, "a wrong cookie")?;
        // The URL token is taken only on the page itself, not by the API.
        let t = format!("/api/sources?token={}", ctx.token);
        expect_status(
            &http::request(&ctx.authority, "GET", &t, &host)?,
            401,
            "token on the API",
        )?;
        Ok(())
    });
    g.case("security::foreign_host_refused", |ctx| {
        let port = ctx.authority.rsplit(':').next().unwrap_or_default();
        let cookie = ctx.cookie();
        for host in [
            format!("evil.example:{port}"),
            format!("localhost:{port}"),
            "127.0.0.1".into(),
        ] {
            let a = http::request(
                &ctx.authority,
                "GET",
                "/api/sources",
                &[("Host", &host), ("Cookie", &cookie)],
            )?;
            expect_status(&a, 403, &format!("Host: {host}"))?;
        }
        let a = http::request(
            &ctx.authority,
            "GET",
            "/api/sources",
            &[("Cookie", &cookie)],
        )?;
        expect_status(&a, 403, "no Host header")
    });
    g.case("security::csp_and_hardening_headers", |ctx| {
        let a = ctx.get("/")?;
        let csp = a.header("content-security-policy").context("no CSP")?;
        for want in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            ensure!(csp.contains(want), "CSP {csp} lacks {want}");
        }
        ensure!(!csp.contains("unsafe"), "CSP allows unsafe: {csp}");
        ensure!(
            a.header("x-content-type-options") == Some("nosniff"),
            "no nosniff"
        );
        ensure!(a.header("x-frame-options") == Some("DENY"), "no DENY");
        Ok(())
    });
    g.case("security::sources_outside_the_roots_refused", |ctx| {
        let gpt = ctx.fixtures.join("gpt.img");
        let sneaky = ctx.fixtures.join("store/100/../../gpt.img");
        let outside = [
            "/etc/passwd".to_string(),
            gpt.to_string_lossy().into_owned(),
            sneaky.to_string_lossy().into_owned(),
            ctx.fixtures.join("store").to_string_lossy().into_owned(),
            "nbd://127.0.0.1:10809/x".into(),
        ];
        for s in &outside {
            for api in ["list", "download"] {
                let a = ctx.get(&format!(
                    "/api/{api}?source={}&path={}",
                    enc(s),
                    path_q(b"/")
                ))?;
                expect_status(&a, 403, &format!("{api} of {s}"))?;
            }
        }
        let a = ctx.get(&format!("/api/list?path={}", path_q(b"/")))?;
        expect_status(&a, 400, "no source")
    });
    g.case("security::post_needs_csrf_and_stop_is_post_only", |ctx| {
        let cookie = ctx.cookie();
        let h = [
            ("Host", ctx.authority.as_str()),
            ("Cookie", cookie.as_str()),
        ];
        let a = http::request(&ctx.authority, "POST", "/api/stop?name=x", &h)?;
        expect_status(&a, 403, "POST without the CSRF token")?;
        let a = http::request(
            &ctx.authority,
            "POST",
            "/api/stop?name=x",
            &[h[0], h[1], ("X-CSRF-Token", "nope")],
        )?;
        expect_status(&a, 403, "POST with a wrong CSRF token")?;
        expect_status(&ctx.get("/api/stop?name=x")?, 405, "GET /api/stop")?;
        let csrf = csrf_token(ctx)?;
        let a = http::request(
            &ctx.authority,
            "POST",
            "/api/stop?name=qemu_other",
            &[h[0], h[1], ("X-CSRF-Token", &csrf)],
        )?;
        expect_status(&a, 404, "stop of a VM that is not ours")
    });
    g.case("api::sources_grouped_newest_first", |ctx| {
        let a = ctx.get("/api/sources")?;
        expect_status(&a, 200, "sources")?;
        let v = a.json()?;
        let canon = ctx.source.canonicalize()?;
        ensure!(
            v["single"] == canon.to_string_lossy().as_ref(),
            "single: {}",
            v["single"]
        );
        let got: Vec<String> = v["sources"]
            .as_array()
            .context("sources")?
            .iter()
            .map(|s| {
                format!(
                    "{}:{}:{}",
                    s["kind"].as_str().unwrap_or(""),
                    s["group"].as_str().unwrap_or(""),
                    s["label"].as_str().unwrap_or("")
                )
            })
            .collect();
        let want = [
            "source:command line:zeroed-super.img",
            "snapshot:100:qemu-1700003600",
            "snapshot:100:qemu-1700000000",
            "snapshot:101:qemu-1700000000",
            "image::big-dir.raw",
        ];
        ensure!(got == want, "sources {got:?}");
        Ok(())
    });
    g.case("api::parallel_tabs_share_one_vm", |ctx| {
        let answers: Vec<Result<Answer>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4).map(|_| s.spawn(|| list(ctx, b"/"))).collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or_else(|_| bail!("thread panicked")))
                .collect()
        });
        for a in answers {
            expect_status(&a?, 200, "list / in parallel")?;
        }
        let vms = ctx.get("/api/status")?.json()?;
        let n = vms.as_array().map(Vec::len).unwrap_or(0);
        ensure!(n == 1, "{n} VMs after 4 parallel first requests: {vms}");
        Ok(())
    });
    g.case("api::disks_and_buckets", |ctx| {
        let disks = list(ctx, b"/")?.json()?;
        ensure!(
            disks[0]["text"] == "zeroed-super" && disks.as_array().map(Vec::len) == Some(1),
            "disks {disks}"
        );
        let b = list(ctx, b"/zeroed-super/part")?.json()?;
        let kinds: Vec<String> = b
            .as_array()
            .context("buckets")?
            .iter()
            .map(|e| {
                format!(
                    "{}={}",
                    e["text"].as_str().unwrap_or(""),
                    e["fstype"].as_str().unwrap_or("")
                )
            })
            .collect();
        ensure!(kinds == ["1=unknown", "2=ext4"], "buckets {kinds:?}");
        Ok(())
    });
    g.case("api::broken_bucket_error_in_place", |ctx| {
        let a = list(ctx, b"/zeroed-super/part/1")?;
        expect_status(&a, 422, "list of the broken bucket")?;
        let msg = a.json()?["error"].as_str().unwrap_or("").to_string();
        ensure!(
            msg.contains("zeroed-super/part/1") && msg.contains("cannot be mounted"),
            "message {msg}"
        );
        let good = list(ctx, BUCKET.as_bytes())?;
        expect_status(&good, 200, "the good bucket after the broken one")?;
        let entries = good.json()?;
        let names: Vec<&str> = entries
            .as_array()
            .context("entries")?
            .iter()
            .filter_map(|e| e["text"].as_str())
            .collect();
        ensure!(names.contains(&"docs"), "no docs/ in {names:?}");
        // Directories come first.
        let types: Vec<&str> = entries
            .as_array()
            .context("entries")?
            .iter()
            .filter_map(|e| e["type"].as_str())
            .collect();
        let last_dir = types.iter().rposition(|t| *t == "d").unwrap_or(0);
        let first_nondir = types.iter().position(|t| *t != "d").unwrap_or(types.len());
        ensure!(last_dir < first_nondir, "directories not first: {types:?}");
        Ok(())
    });
    g.case("download::files_match_the_manifest_sha256", |ctx| {
        let files = manifest_files(ctx)?;
        let mut by_size: Vec<_> = files.iter().collect();
        by_size.sort_by_key(|(_, (_, size))| std::cmp::Reverse(*size));
        let pick: Vec<_> = by_size
            .iter()
            .take(4)
            .chain(by_size.iter().rev().take(4))
            .collect();
        for (rel, (sha, size)) in pick {
            let a = download(ctx, &vm_path(rel), None, &[])?;
            let name = String::from_utf8_lossy(rel);
            expect_status(&a, 200, &format!("download {name}"))?;
            ensure!(
                a.header("content-length") == Some(&size.to_string()),
                "{name}: Content-Length {:?}, size {size}",
                a.header("content-length")
            );
            ensure!(
                a.header("content-disposition")
                    .is_some_and(|d| d.starts_with("attachment; filename=")),
                "{name}: disposition"
            );
            ensure!(sha256_hex(&a.body) == *sha, "{name}: sha256 differs");
        }
        Ok(())
    });
    g.case("download::byte_ranges_resume", |ctx| {
        let files = manifest_files(ctx)?;
        let (rel, (sha, size)) = files
            .iter()
            .max_by_key(|(_, (_, s))| *s)
            .context("no file")?;
        let p = vm_path(rel);
        let whole = download(ctx, &p, None, &[])?;
        ensure!(
            sha256_hex(&whole.body) == *sha && whole.header("accept-ranges") == Some("bytes"),
            "whole file"
        );
        let etag = whole.header("etag").context("no ETag")?.to_string();
        let half = size / 2;
        let r = format!("bytes={half}-");
        let a = download(ctx, &p, None, &[("Range", &r), ("If-Range", &etag)])?;
        expect_status(&a, 206, "resume from the middle")?;
        ensure!(
            a.header("content-range") == Some(&format!("bytes {half}-{}/{size}", size - 1)),
            "Content-Range {:?}",
            a.header("content-range")
        );
        ensure!(
            a.body == whole.body[half as usize..],
            "resumed bytes differ"
        );
        let a = download(ctx, &p, None, &[("Range", "bytes=-10")])?;
        expect_status(&a, 206, "suffix range")?;
        ensure!(
            a.body == whole.body[*size as usize - 10..],
            "suffix bytes differ"
        );
        let a = download(ctx, &p, None, &[("Range", &format!("bytes={size}-"))])?;
        expect_status(&a, 416, "range past the end")?;
        let a = download(
            ctx,
            &p,
            None,
            &[("Range", "bytes=0-9"), ("If-Range", "\"stale\"")],
        )?;
        expect_status(&a, 200, "a stale If-Range gets the whole file")?;
        Ok(())
    });
    g.case("download::directory_as_zip", |ctx| {
        let files = manifest_files(ctx)?;
        let want = files_below(&files, b"docs");
        let a = download(ctx, &vm_path(b"docs"), Some("zip"), &[])?;
        expect_status(&a, 200, "docs as zip")?;
        ensure!(
            a.header("content-disposition")
                .is_some_and(|d| d.contains("docs.zip")),
            "disposition"
        );
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(a.body)).context("not a zip")?;
        let mut got = BTreeMap::new();
        for i in 0..zip.len() {
            let mut f = zip.by_index(i)?;
            if f.is_file() {
                let name = f.name()?.trim_start_matches("docs/").as_bytes().to_vec();
                let mut b = Vec::new();
                f.read_to_end(&mut b)?;
                got.insert(name, sha256_hex(&b));
            }
        }
        compare_trees(&got, &want, "zip")
    });
    g.case("download::directory_as_tar_zst", |ctx| {
        let files = manifest_files(ctx)?;
        let want = files_below(&files, b"docs");
        let a = download(ctx, &vm_path(b"docs"), Some("tar.zst"), &[])?;
        expect_status(&a, 200, "docs as tar.zst")?;
        let raw = zstd::decode_all(a.body.as_slice()).context("not zstd")?;
        let mut tar = tar::Archive::new(raw.as_slice());
        let mut got = BTreeMap::new();
        for e in tar.entries()? {
            let mut e = e?;
            if e.header().entry_type().is_file() {
                let name = e
                    .path_bytes()
                    .strip_prefix(b"docs/")
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
                let mut b = Vec::new();
                e.read_to_end(&mut b)?;
                got.insert(name, sha256_hex(&b));
            }
        }
        compare_trees(&got, &want, "tar.zst")
    });
    g.case("download::selection_as_one_tar", |ctx| {
        let files = manifest_files(ctx)?;
        let target = format!(
            "/api/archive?source={}&path={}&path={}",
            src_q(ctx),
            path_q(&vm_path(b"docs/sub00-a")),
            path_q(&vm_path(b"Mixed Case Name.txt"))
        );
        let a = ctx.get(&target)?;
        expect_status(&a, 200, "a selection as tar")?;
        ensure!(
            a.header("content-disposition")
                .is_some_and(|d| d.contains("selection.tar")),
            "disposition"
        );
        let mut want: BTreeMap<Vec<u8>, String> = files_below(&files, b"docs/sub00-a")
            .into_iter()
            .map(|(p, sha)| ([b"sub00-a/".as_slice(), &p].concat(), sha))
            .collect();
        let (sha, _) = files
            .get(b"Mixed Case Name.txt".as_slice())
            .context("no Mixed Case Name.txt")?;
        want.insert(b"Mixed Case Name.txt".to_vec(), sha.clone());
        compare_trees(&tar_files(&a.body)?, &want, "selection.tar")?;
        let missing = format!(
            "/api/archive?source={}&path={}",
            src_q(ctx),
            path_q(&vm_path(b"nope"))
        );
        expect_status(&ctx.get(&missing)?, 404, "a selection of a missing path")?;
        let none = format!("/api/archive?source={}", src_q(ctx));
        expect_status(&ctx.get(&none)?, 400, "an empty selection")
    });
    g.case("download::directory_as_plain_refused", |ctx| {
        let a = download(ctx, &vm_path(b"docs"), None, &[])?;
        expect_status(&a, 400, "docs as a plain file")
    });
    crate::browser::cases(g, &url_for_browser);
    g.case("vm::status_and_stop_button", |ctx| {
        let vms = ctx.get("/api/status")?.json()?;
        let name = vms[0]["name"]
            .as_str()
            .context("no VM in status")?
            .to_string();
        let csrf = csrf_token(ctx)?;
        let cookie = ctx.cookie();
        let origin = format!("http://{}", ctx.authority);
        let a = http::request(
            &ctx.authority,
            "POST",
            &format!("/api/stop?name={}", enc(&name)),
            &[
                ("Host", &ctx.authority),
                ("Cookie", &cookie),
                ("X-CSRF-Token", &csrf),
                ("Origin", &origin),
            ],
        )?;
        expect_status(&a, 200, "stop")?;
        let left = ctx.get("/api/status")?.json()?;
        ensure!(
            left.as_array().is_some_and(Vec::is_empty),
            "VMs after stop: {left}"
        );
        // The next request starts a fresh VM.
        expect_status(&list(ctx, b"/")?, 200, "list after stop")
    });
}

fn csrf_token(ctx: &Web) -> Result<String> {
    let page = ctx.get("/")?.text();
    let (_, rest) = page
        .split_once("name=\"csrf\" content=\"")
        .context("no csrf meta")?;
    Ok(rest.split('"').next().unwrap_or_default().to_string())
}

/// The regular files of a tar and their sha256.
pub(crate) fn tar_files(bytes: &[u8]) -> Result<BTreeMap<Vec<u8>, String>> {
    let mut out = BTreeMap::new();
    for e in tar::Archive::new(bytes).entries()? {
        let mut e = e?;
        if e.header().entry_type().is_file() {
            let name = e.path_bytes().into_owned();
            let mut b = Vec::new();
            e.read_to_end(&mut b)?;
            out.insert(name, sha256_hex(&b));
        }
    }
    Ok(out)
}

pub(crate) fn compare_trees(
    got: &BTreeMap<Vec<u8>, String>,
    want: &BTreeMap<Vec<u8>, String>,
    what: &str,
) -> Result<()> {
    ensure!(!want.is_empty(), "nothing to compare");
    for (p, sha) in want {
        match got.get(p) {
            None => bail!("{what}: {} missing", String::from_utf8_lossy(p)),
            Some(s) if s != sha => bail!("{what}: {} differs", String::from_utf8_lossy(p)),
            Some(_) => {}
        }
    }
    ensure!(
        got.len() == want.len(),
        "{what}: {} files, manifest {}",
        got.len(),
        want.len()
    );
    Ok(())
}

//! `file-restore serve` against a real VM: the security checks, the JSON API
//! and the downloads (sha256 against the fixture manifests), one VM at a
//! time. Own harness (no libtest), like e2e: `cargo test -p file-restore-tests
//! --test web [-- FILTER]`. Needs `make build` outputs and root (fixtures).
//!
//! SOURCE is `zeroed-super.img` (part 1 cannot be mounted, part 2 is a good
//! ext4 with the "fat" tree); `--root` is the fixtures' backup store, whose
//! snapshots are listed (and VM 100's two opened by the Versions cases,
//! [`search`]), and a scratch root holding
//! `big-dir.raw`, an ext4 with a directory of [`BIG_DIR_FILES`] files. The
//! LUKS cases ([`luks`]) serve a LUKS2 image of their own, the ZFS case
//! ([`zfs`]) the OpenZFS fixture pool.

mod api;
mod browser;
mod http;
mod luks;
mod search;
mod server;
mod zfs;

use anyhow::{bail, Context, Result};
use file_restore_tests::fixtures::Fixtures;
use file_restore_tests::harness::{self, Group, Options, Printer};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Files in `big/` of `big-dir.raw`.
pub const BIG_DIR_FILES: usize = 12_000;

/// Makes `root/big-dir.raw`: an ext4 (mkfs.ext4 -d, nothing mounted) whose
/// `big/` holds [`BIG_DIR_FILES`] small files.
fn make_big_dir_image(root: &Path) -> Result<()> {
    let tree = root.join("tree");
    let big = tree.join("big");
    std::fs::create_dir_all(&big)?;
    for i in 0..BIG_DIR_FILES {
        std::fs::write(big.join(format!("file-{i:05}.txt")), i.to_string())?;
    }
    let img = root.join("images/big-dir.raw");
    std::fs::create_dir_all(root.join("images"))?;
    std::fs::File::create(&img)?.set_len(96 << 20)?;
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-N", "16384", "-d"])
        .arg(&tree)
        .arg(&img)
        .output()
        .context("cannot run mkfs.ext4")?;
    if !out.status.success() {
        bail!("mkfs.ext4: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// What every case shares: the running server and where things are.
pub struct Web {
    /// The release `file-restore`.
    pub bin: PathBuf,
    /// This run's runtime directory (its own VM map).
    pub runtime: PathBuf,
    /// The fixture images.
    pub fixtures: PathBuf,
    /// The SOURCE given to `serve`.
    pub source: PathBuf,
    /// The scratch root holding `big-dir.raw`.
    pub big_root: PathBuf,
    /// Scratch space of this run (below the target dir).
    pub scratch: PathBuf,
    /// `127.0.0.1:PORT` as printed.
    pub authority: String,
    /// The session token from the printed URL.
    pub token: String,
    /// The `serve` process.
    pub server: Mutex<Option<Child>>,
}

impl Web {
    /// The cookie header of this session.
    pub fn cookie(&self) -> String {
        let port = self.authority.rsplit(':').next().unwrap_or_default();
        format!("file_restore_session_{port}={}", self.token)
    }

    /// GET with the right Host and cookie.
    pub fn get(&self, target: &str) -> Result<http::Answer> {
        self.get_with(target, &[])
    }

    /// GET with the right Host and cookie plus `extra` headers.
    pub fn get_with(&self, target: &str, extra: &[(&str, &str)]) -> Result<http::Answer> {
        let cookie = self.cookie();
        let mut h = vec![
            ("Host", self.authority.as_str()),
            ("Cookie", cookie.as_str()),
        ];
        h.extend_from_slice(extra);
        http::request(&self.authority, "GET", target, &h)
    }

    /// The `file-restore` CLI with this run's runtime directory.
    pub fn cli(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("FILE_RESTORE_RUNTIME_DIR", &self.runtime);
        c
    }
}

fn target_dir(repo: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(d) => repo.join(d),
        None => repo.join("target"),
    }
}

/// Starts `serve` and reads the URL line it prints (within 30 s).
pub(crate) fn start_server(
    bin: &Path,
    runtime: &Path,
    args: &[&std::ffi::OsStr],
) -> Result<(Child, String)> {
    let mut child = Command::new(bin)
        .env("FILE_RESTORE_RUNTIME_DIR", runtime)
        // Every plain download (whole files, ranges, resume) is read from the
        // disks by its map, whatever its size: the fixture's files are small,
        // and the CLI's e2e cases cover the stream through the guest.
        .env("FILE_RESTORE_MAP", "always")
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start file-restore serve")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) if !line.trim().is_empty() => Ok((child, line.trim().to_string())),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("file-restore serve printed no URL within 30 s")
        }
    }
}

fn run(opts: &Options, printer: &Printer) -> Result<bool> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("no repo root")?
        .to_path_buf();
    let bin = target_dir(&repo).join("release/file-restore");
    if !bin.exists() {
        bail!("{} is missing: run `make build` first", bin.display());
    }
    let fixtures = std::env::var_os("FILE_RESTORE_E2E_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir(&repo).join("fixtures"));
    Fixtures::build(&repo, &fixtures)?;
    let runtime = tempfile::Builder::new()
        .prefix("fr-web-")
        .tempdir_in("/tmp")
        .context("cannot make the runtime dir")?;
    let source = fixtures.join("zeroed-super.img");
    let store = fixtures.join("store");
    let scratch = tempfile::Builder::new()
        .prefix("web-scratch-")
        .tempdir_in(target_dir(&repo))
        .context("cannot make the scratch dir")?;
    make_big_dir_image(scratch.path())?;
    let big_root = scratch.path().join("images");
    let (child, url) = start_server(
        &bin,
        runtime.path(),
        &[
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--root".as_ref(),
            store.as_os_str(),
            "--root".as_ref(),
            big_root.as_os_str(),
            source.as_os_str(),
        ],
    )?;
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("URL {url:?} is not http://"))?;
    let (authority, token) = rest
        .split_once("/?token=")
        .with_context(|| format!("URL {url:?} has no /?token="))?;
    let ctx = Web {
        bin,
        runtime: runtime.path().to_path_buf(),
        fixtures,
        source,
        big_root: big_root.clone(),
        scratch: scratch.path().to_path_buf(),
        authority: authority.to_string(),
        token: token.to_string(),
        server: Mutex::new(Some(child)),
    };
    printer.line(&format!("serving at {url}"));

    let mut g: Group<Web> = Group::new("web", 1);
    api::cases(&mut g, &url);
    search::cases(&mut g, &url);
    browser::big_directory_case(&mut g);
    luks::cases(&mut g);
    zfs::cases(&mut g);
    server::cases(&mut g);
    let mut summary = harness::run_groups(&ctx, vec![g], opts, printer);

    let (elapsed, failure) = harness::run_one(&ctx, Box::new(cleanup));
    printer.result("web::cleanup", elapsed, failure.as_deref());
    match failure {
        None => summary.passed.push("web::cleanup".into()),
        Some(d) => summary.failed.push(("web::cleanup".into(), d)),
    }
    printer.line("");
    printer.line(&format!(
        "{} passed, {} failed",
        summary.passed.len(),
        summary.failed.len()
    ));
    Ok(summary.failed.is_empty())
}

/// Ends the server (if a case did not) and every VM of this run.
fn cleanup(ctx: &Web) -> Result<()> {
    if let Some(mut child) = ctx.server.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = ctx.cli().args(["stop", "--all"]).output()?;
    if !out.status.success() {
        bail!("stop --all: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn main() {
    let start = Instant::now();
    let opts = Options::parse(std::env::args().skip(1), 1);
    let printer = Printer::new();
    let code = match run(&opts, &printer) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            printer.result("web::setup", start.elapsed(), Some(&format!("{e:#}")));
            1
        }
    };
    std::process::exit(code);
}

//! End-to-end tests of file-restore through the real release binary and real
//! VMs (issues 4 and 5).
//!
//! ```text
//! cargo test -p file-restore-tests --test e2e [-- FILTER… [--skip S] [--exact] [--list] [--test-threads N]]
//! ```
//!
//! 1. builds the fixture images once (`tests/fixtures/mkfixtures.sh target/fixtures`,
//!    in `$CARGO_TARGET_DIR` when set; a no-op when its stamp matches;
//!    `FILE_RESTORE_E2E_FIXTURES` overrides the dir);
//! 2. gives every CLI call a private `FILE_RESTORE_RUNTIME_DIR`, so the VM map and
//!    the VMs are this run's own;
//! 3. runs the cases by groups: one group per source, whose cases run in order on
//!    the VM the first of them boots (the CLI reuses it through the map); two groups
//!    at once; a group's teardown stops its VM by name;
//! 4. always ends with `file-restore stop --all` and a check that no QEMU or
//!    vhost-device-vsock process naming the runtime dir is left;
//! 5. prints `test NAME ... ok|FAILED`, the details of each failure, and last a
//!    line `N passed, N failed`; exits 1 when anything failed.
//!
//! Needs root (the fixture builder), `make build` outputs (target/release/file-restore
//! or $CARGO_TARGET_DIR/release/file-restore,
//! build/vmlinux, build/initramfs.img) and the tools of scripts/deps.sh.

mod checks;
mod groups;

use anyhow::{bail, Context, Result};
use file_restore_tests::cli::Cli;
use file_restore_tests::fixtures::Fixtures;
use file_restore_tests::harness::{self, Options, Printer};
use file_restore_tests::sys;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// What every case gets.
pub struct Ctx {
    /// The repository root.
    pub repo: PathBuf,
    /// The CLI driver.
    pub cli: Cli,
    /// The fixture images.
    pub fx: Fixtures,
    /// Scratch space (removed at the end).
    pub work: PathBuf,
}

impl Ctx {
    /// A fresh scratch directory (removed when dropped).
    pub fn scratch(&self, label: &str) -> Result<tempfile::TempDir> {
        let prefix: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir_in(&self.work)
            .context("cannot make a scratch directory")
    }

    /// tests/fixtures/mktree.py
    pub fn mktree(&self) -> PathBuf {
        self.repo.join("tests/fixtures/mktree.py")
    }
}

fn main() {
    let start = Instant::now();
    let opts = Options::parse(std::env::args().skip(1), 2);
    let printer = Printer::new();
    let code = match run(&opts, &printer, start) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            printer.result("e2e::setup", start.elapsed(), Some(&format!("{e:#}")));
            printer.line("");
            printer.line("0 passed, 1 failed");
            1
        }
    };
    std::process::exit(code);
}

fn newest_mtime(dirs: &[PathBuf]) -> Option<(SystemTime, PathBuf)> {
    let mut best: Option<(SystemTime, PathBuf)> = None;
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(p);
            } else if let Ok(m) = md.modified() {
                let newer = match &best {
                    None => true,
                    Some((t, _)) => m > *t,
                };
                if newer {
                    best = Some((m, p));
                }
            }
        }
    }
    best
}

/// cargo's target directory: `CARGO_TARGET_DIR` (relative to the repository)
/// when set, as for cargo and the Makefile, else `target/`.
fn target_dir(repo: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(d) => repo.join(d),
        None => repo.join("target"),
    }
}

/// Fails when the build outputs are missing; warns when sources are newer.
fn check_build(repo: &Path) -> Result<PathBuf> {
    let bin = target_dir(repo).join("release/file-restore");
    let kernel = repo.join("build/vmlinux");
    let initramfs = repo.join("build/initramfs.img");
    for p in [&bin, &kernel, &initramfs] {
        if !p.exists() {
            bail!(
                "{} is missing: run `make build` first (it builds the release binaries, \
                 the static guest daemon, build/initramfs.img and build/vmlinux)",
                p.display()
            );
        }
    }
    let age = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let checks = [
        (&bin, vec!["host-driver/src", "wire/src"]),
        (
            &initramfs,
            vec!["restore-daemon/src", "wire/src", "initramfs/src"],
        ),
    ];
    for (out, srcs) in checks {
        let dirs: Vec<PathBuf> = srcs.iter().map(|s| repo.join(s)).collect();
        if let (Some(built), Some((newest, which))) = (age(out), newest_mtime(&dirs)) {
            if newest > built {
                eprintln!(
                    "warning: {} is older than {}: run `make build` to test the current sources",
                    out.display(),
                    which.display()
                );
            }
        }
    }
    Ok(bin)
}

fn run(opts: &Options, printer: &Printer, start: Instant) -> Result<bool> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("no repo root")?
        .to_path_buf();
    let fixtures_dir = std::env::var_os("FILE_RESTORE_E2E_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir(&repo).join("fixtures"));
    let bin = check_build(&repo)?;

    let t = Instant::now();
    let fx = Fixtures::build(&repo, &fixtures_dir)?;
    let fixtures_note = format!(
        "fixtures ready in {} ({:.1} s)",
        fixtures_dir.display(),
        t.elapsed().as_secs_f64()
    );

    // Short paths: the VM's Unix sockets live below the runtime dir.
    let runtime = tempfile::Builder::new()
        .prefix("fr-e2e-")
        .tempdir_in("/tmp")
        .context("cannot make the runtime dir")?;
    let work = tempfile::Builder::new()
        .prefix("e2e-work-")
        .tempdir_in(target_dir(&repo))
        .context("cannot make the scratch dir")?;
    let ctx = Ctx {
        repo: repo.clone(),
        cli: Cli::new(bin, runtime.path().to_path_buf()),
        fx,
        work: work.path().to_path_buf(),
    };

    let groups = groups::all(&ctx)?;
    if opts.list {
        let mut n = 0;
        for g in &groups {
            for c in &g.cases {
                if opts.selects(&c.name) {
                    println!("{}: test", c.name);
                    n += 1;
                }
            }
        }
        println!("cleanup::stop_all: test");
        println!("\n{} tests", n + 1);
        return Ok(true);
    }
    printer.line(&fixtures_note);
    let total: usize = groups
        .iter()
        .map(|g| g.cases.iter().filter(|c| opts.selects(&c.name)).count())
        .sum();
    printer.line(&format!(
        "running {total} cases (+ cleanup), {} group(s) at a time; runtime dir {}",
        opts.threads,
        runtime.path().display()
    ));

    let mut summary = harness::run_groups(&ctx, groups, opts, printer);

    // Always: stop every VM of this run and make sure nothing is left.
    let (elapsed, failure) = harness::run_one(&ctx, Box::new(cleanup));
    printer.result("cleanup::stop_all", elapsed, failure.as_deref());
    match failure {
        None => summary.passed.push("cleanup::stop_all".into()),
        Some(d) => summary.failed.push(("cleanup::stop_all".into(), d)),
    }

    printer.line("");
    if !summary.failed.is_empty() {
        printer.line("failures:");
        for (name, _) in &summary.failed {
            printer.line(&format!("    {name}"));
        }
        printer.line("");
    }
    printer.line(&format!(
        "VMs booted: {}; CLI calls: {}; wall time {:.1} s",
        ctx.cli.boots(),
        ctx.cli.calls(),
        start.elapsed().as_secs_f64()
    ));
    printer.line(&format!(
        "{} passed, {} failed",
        summary.passed.len(),
        summary.failed.len()
    ));
    drop(work);
    drop(runtime);
    Ok(summary.failed.is_empty())
}

/// `stop --all`, then: status empty, no QEMU or sidecar naming the runtime dir.
fn cleanup(ctx: &Ctx) -> Result<()> {
    groups::kill_servers();
    let rt = ctx.cli.runtime_dir.to_string_lossy().into_owned();
    let stop = ctx.cli.run(["stop", "--all"]);
    // Whatever stop did, give stopped VMs a moment, then look for leftovers.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut left = sys::vm_processes_mentioning(&rt);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        left = sys::vm_processes_mentioning(&rt);
    }
    for p in &left {
        let _ = sys::kill9(p.pid);
    }
    let stop = stop?.check().context("`file-restore stop --all` failed")?;
    if !left.is_empty() {
        let list: Vec<String> = left
            .iter()
            .map(|p| format!("{} {}", p.pid, sys::clip(&p.cmdline, 200)))
            .collect();
        bail!(
            "{} VM process(es) of this run were still running 15 s after `stop --all` (killed now):\n  {}\nstop said: {}",
            left.len(),
            list.join("\n  "),
            stop.stderr.trim()
        );
    }
    let status = ctx.cli.status()?;
    if !status.is_empty() {
        bail!("status still lists VMs after `stop --all`: {status:?}");
    }
    let text = ctx.cli.run(["status"])?.check()?;
    if text.stdout_str().contains("pid ") {
        bail!(
            "`status` after `stop --all` still shows a VM: {:?}",
            text.stdout_str()
        );
    }
    Ok(())
}

//! restore-daemon: the guest side of file-restore.
//!
//! In the restore VM it runs as `/init` (PID 1): it mounts the pseudo
//! filesystems, starts the API on vsock (every driver it needs is built into
//! the guest kernel), scans the virtio disks in the background, and powers
//! the VM off when asked, when idle, or on a fatal error.
//!
//! `restore-daemon dev …` runs the same API on the host for fast tests:
//! listening on a Unix socket or loopback TCP, with buckets given as block
//! devices (e.g. loop devices with partition offsets).

#![warn(missing_docs)]

mod api;
mod archive;
mod auth;
mod bucket;
mod config;
mod confine;
mod disks;
mod error;
mod extract;
mod find;
mod listing;
mod map;
mod mounts;
mod pid1;
mod probe;
mod ready_signal;
mod scan;
mod server;
mod stacks;
mod stat;
mod state;
mod stream;
mod vsock_conn;
mod watchdog;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use file_restore_wire::vpath;
use server::ListenAddr;
use state::State;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use vpath::BucketKind;

#[derive(Parser)]
#[command(
    version,
    about = "file-restore guest daemon: serves files of read-only disks over an authenticated HTTP API"
)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand)]
enum Mode {
    /// Run inside the restore VM (the default when started as PID 1).
    Vm,
    /// Run on the host for tests: given buckets, Unix socket or loopback TCP.
    Dev(DevArgs),
}

#[derive(Parser)]
struct DevArgs {
    /// unix:PATH or tcp:127.0.0.1:PORT
    #[arg(long)]
    listen: ListenAddr,
    /// File holding the ticket clients must present.
    #[arg(long)]
    ticket_file: PathBuf,
    /// A bucket: DISK/part/N=DEVICE or DISK/raw/raw=DEVICE (repeatable).
    #[arg(long = "bucket", value_name = "DISK/KIND/NAME=DEVICE")]
    buckets: Vec<String>,
    /// Idle seconds before the daemon exits.
    #[arg(long, default_value_t = 600)]
    idle_timeout: u64,
    /// Directory under which buckets are mounted (created; default: a
    /// fresh directory under /tmp).
    #[arg(long)]
    mount_dir: Option<PathBuf>,
    /// Log level when RUST_LOG is not set.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn init_logging(level: &str) {
    let env = env_logger::Env::default().default_filter_or(level);
    env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .target(env_logger::Target::Stderr)
        .init();
}

fn main() {
    let cli = Cli::parse();
    let pid1 = std::process::id() == 1;
    let result = match cli.mode {
        Some(Mode::Dev(args)) => run_dev(args),
        Some(Mode::Vm) | None => run_vm(),
    };
    if let Err(e) = result {
        let msg = format!("fatal: {e:#}");
        log::error!("{msg}");
        eprintln!("restore-daemon: {msg}");
        if pid1 {
            pid1::power_off("fatal error");
        }
        std::process::exit(1);
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(32)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run_vm() -> anyhow::Result<()> {
    if std::process::id() != 1 {
        bail!("VM mode must run as PID 1 (/init); for tests on the host use `restore-daemon dev`");
    }
    let init_at = pid1::uptime_secs();
    pid1::mount_pseudo_filesystems();
    let cfg = config::Config::load(Path::new(config::CONFIG_PATH))?;
    init_logging(&cfg.log_level);
    log::info!(
        "restore-daemon {} starting as PID 1",
        env!("CARGO_PKG_VERSION")
    );
    let ticket = config::read_ticket(Path::new(config::TICKET_PATH))?;
    let watchdog = watchdog::Watchdog::new(Duration::from_secs(cfg.idle_timeout));
    let state = Arc::new(State::new(ticket, watchdog.clone(), PathBuf::from("/mnt")));
    let rt = runtime()?;
    let reason = rt.block_on(async {
        tokio::spawn(pid1::reap_children());
        server::serve(ListenAddr::Vsock(cfg.port), state.clone(), true).await?;
        tokio::spawn(ready_signal::announce());
        // One line for boot-time measurements (make bench reads it from the console
        // log): guest uptime when /init started and when the API listened.
        eprintln!(
            "restore-daemon: boot: init {init_at:.3} s, listening {:.3} s (guest uptime)",
            pid1::uptime_secs()
        );
        let scan_state = state.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let disks = scan::scan_all();
            log::info!(
                "disk scan found {} disks in {} ms",
                disks.len(),
                started.elapsed().as_millis()
            );
            scan_state.set_disks(disks);
        });
        anyhow::Ok(wait_for_end(&state, watchdog).await)
    })?;
    pid1::power_off(reason)
}

async fn wait_for_end(state: &State, watchdog: Arc<watchdog::Watchdog>) -> &'static str {
    tokio::select! {
        _ = state.stop.notified() => {
            // Let the stop answer reach the client before the VM goes away.
            tokio::time::sleep(Duration::from_millis(100)).await;
            "stop requested"
        }
        _ = watchdog.expired() => "idle timeout",
    }
}

/// Parses `DISK/KIND/NAME=DEVICE`.
fn parse_bucket_arg(s: &str) -> anyhow::Result<(String, BucketKind, String, PathBuf)> {
    let (spec, dev) = s
        .split_once('=')
        .with_context(|| format!("bucket {s:?} must look like DISK/part/1=/dev/loop0"))?;
    let mut it = spec.splitn(3, '/');
    let (Some(disk), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else {
        bail!("bucket {s:?} must look like DISK/part/1=/dev/loop0");
    };
    let kind = BucketKind::from_name(kind.as_bytes())
        .with_context(|| format!("bucket {s:?}: unknown kind {kind:?}"))?;
    if disk.is_empty()
        || name.is_empty()
        || disk == ".."
        || name.split('/').any(|c| c == ".." || c.is_empty())
    {
        bail!("bucket {s:?}: empty or '..' disk or bucket name");
    }
    Ok((disk.to_owned(), kind, name.to_owned(), PathBuf::from(dev)))
}

fn run_dev(args: DevArgs) -> anyhow::Result<()> {
    init_logging(&args.log_level);
    let ticket = config::read_ticket(&args.ticket_file)?;
    let mut disks: Vec<bucket::Disk> = Vec::new();
    for spec in &args.buckets {
        let (disk, kind, name, dev) = parse_bucket_arg(spec)?;
        let b = disks::probe_bucket(kind, name, dev.clone())
            .with_context(|| format!("bucket {spec}: cannot read {}", dev.display()))?;
        log::info!(
            "dev bucket {disk}/{}/{}: {} ({} bytes)",
            kind.name(),
            b.name,
            b.type_name,
            b.size
        );
        match disks.iter_mut().find(|d| d.name == disk) {
            Some(d) => d.buckets.push(Arc::new(b)),
            None => disks.push(bucket::Disk {
                name: disk,
                kname: String::new(),
                buckets: vec![Arc::new(b)],
            }),
        }
    }
    let mount_base = match args.mount_dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("restore-daemon-{}", std::process::id())),
    };
    std::fs::create_dir_all(&mount_base)
        .with_context(|| format!("cannot create {}", mount_base.display()))?;
    let watchdog = watchdog::Watchdog::new(Duration::from_secs(args.idle_timeout));
    let state = Arc::new(State::new(ticket, watchdog.clone(), mount_base.clone()));
    state.set_disks(disks);
    let rt = runtime()?;
    let reason = rt.block_on(async {
        server::serve(args.listen.clone(), state.clone(), false).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let reason = tokio::select! {
            r = wait_for_end(&state, watchdog) => r,
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "interrupted",
        };
        anyhow::Ok(reason)
    })?;
    log::info!("exiting: {reason}");
    for d in state.disks() {
        mounts::unmount_all(&d.buckets);
    }
    remove_empty_dirs(&mount_base);
    if let ListenAddr::Unix(p) = &args.listen {
        let _ = std::fs::remove_file(p);
    }
    rt.shutdown_timeout(Duration::from_millis(200));
    Ok(())
}

/// Removes `dir` and the empty directories below it, never anything else
/// (a mount that failed to detach keeps its directory).
fn remove_empty_dirs(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_empty_dirs(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

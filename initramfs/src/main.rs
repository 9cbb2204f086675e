//! `file-restore-mkinitramfs`: builds the restore VM's boot files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use file_restore_initramfs::{build, BuildOptions, DaemonConfig};

/// Build the file-restore VM's boot files: the initramfs (the static restore-daemon as
/// /init and its configuration), the kernel next to it, and boot.json describing them.
///
/// The kernel is the project's own (scripts/build-kernel.sh): an ELF vmlinux with a PVH
/// entry and every driver built in, so the initramfs ships no modules. A bzImage works
/// too but boots several times slower without KVM. Files written: <OUT>/initramfs.img,
/// <OUT>/vmlinux (or <OUT>/vmlinuz), <OUT>/boot.json.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The static restore-daemon binary, shipped as /init.
    #[arg(long, value_name = "PATH")]
    daemon: PathBuf,

    /// The guest kernel: an ELF vmlinux with a PVH entry (or a bzImage).
    #[arg(long, value_name = "PATH")]
    kernel: PathBuf,

    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// Seconds without API calls before the VM powers off.
    #[arg(long, value_name = "SECS", default_value_t = DaemonConfig::default().idle_timeout)]
    idle_timeout: u64,

    /// vsock port the guest API listens on.
    #[arg(long, value_name = "N", default_value_t = DaemonConfig::default().port)]
    port: u32,

    /// Guest daemon log level (error, warn, info, debug, trace).
    #[arg(long, value_name = "LEVEL", default_value_t = DaemonConfig::default().log_level)]
    log_level: String,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("file-restore-mkinitramfs: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let opts = BuildOptions {
        daemon: cli.daemon,
        kernel: cli.kernel,
        out_dir: cli.out,
        config: DaemonConfig {
            idle_timeout: cli.idle_timeout,
            port: cli.port,
            log_level: cli.log_level,
        },
    };
    let started = Instant::now();
    let out = build(&opts).with_context(|| format!("building into {}", opts.out_dir.display()))?;
    for warning in &out.warnings {
        eprintln!("warning: {warning}");
    }
    eprintln!(
        "kernel {}: {} ({}, {})",
        out.kernel_release,
        out.kernel.display(),
        if out.pvh {
            "ELF vmlinux, PVH boot"
        } else {
            "bzImage"
        },
        human_size(out.kernel_size)
    );
    eprintln!(
        "wrote {} ({})",
        out.initramfs.display(),
        human_size(out.initramfs_size)
    );
    eprintln!("wrote {}", out.boot_json.display());
    eprintln!("done in {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `1234567` → `1.2 MiB (1234567 bytes)`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
    }
}

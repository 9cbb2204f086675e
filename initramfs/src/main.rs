//! `file-restore-mkinitramfs`: builds the restore VM's boot files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use file_restore_initramfs::{build, BuildOptions, DaemonConfig, DEFAULT_MODULES};

/// Build the file-restore VM's boot files: the initramfs (the static restore-daemon as
/// /init, kernel modules with their dependencies, configuration), the kernel to boot and
/// boot.json describing them.
///
/// The kernel defaults to the newest /boot/vmlinuz-<version> whose modules are in
/// /lib/modules/<version>. When it has a PVH entry point (CONFIG_PVH) the uncompressed ELF
/// is extracted as <OUT>/vmlinux, which QEMU boots much faster without KVM; otherwise the
/// bzImage is copied to <OUT>/vmlinuz. Files written: <OUT>/initramfs.img,
/// <OUT>/vmlinux or <OUT>/vmlinuz, <OUT>/boot.json.
#[derive(Debug, Parser)]
#[command(version, after_help = after_help())]
struct Cli {
    /// The static restore-daemon binary, shipped as /init.
    #[arg(long, value_name = "PATH")]
    daemon: PathBuf,

    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// Kernel image (bzImage, or an ELF vmlinux) [default: newest /boot/vmlinuz-*].
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,

    /// Module tree of that kernel [default: /lib/modules/<version>].
    #[arg(long, value_name = "DIR")]
    modules_dir: Option<PathBuf>,

    /// Seconds without API calls before the VM powers off.
    #[arg(long, value_name = "SECS", default_value_t = DaemonConfig::default().idle_timeout)]
    idle_timeout: u64,

    /// vsock port the guest API listens on.
    #[arg(long, value_name = "N", default_value_t = DaemonConfig::default().port)]
    port: u32,

    /// Guest daemon log level (error, warn, info, debug, trace).
    #[arg(long, value_name = "LEVEL", default_value_t = DaemonConfig::default().log_level)]
    log_level: String,

    /// Another kernel module (or module alias) to ship with its dependencies; repeatable.
    #[arg(long = "extra-module", value_name = "NAME")]
    extra_modules: Vec<String>,
}

fn after_help() -> String {
    format!(
        "Modules shipped by default (with their dependencies):\n  {}",
        DEFAULT_MODULES.join(" ")
    )
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
        modules_dir: cli.modules_dir,
        out_dir: cli.out,
        config: DaemonConfig {
            idle_timeout: cli.idle_timeout,
            port: cli.port,
            log_level: cli.log_level,
        },
        extra_modules: cli.extra_modules,
    };
    let started = Instant::now();
    let out = build(&opts).with_context(|| format!("building into {}", opts.out_dir.display()))?;
    let elapsed = started.elapsed();

    for warning in &out.warnings {
        eprintln!("warning: {warning}");
    }
    for name in &out.missing_modules {
        eprintln!(
            "warning: module {name} not found in {} (not shipped)",
            out.modules_dir.display()
        );
    }
    eprintln!(
        "kernel {} from {}",
        out.kernel_release,
        out.kernel_source.display()
    );
    eprintln!(
        "wrote {} ({}, {})",
        out.kernel.display(),
        if out.pvh {
            "ELF vmlinux, PVH boot"
        } else {
            "bzImage, no PVH"
        },
        human_size(out.kernel_size)
    );
    eprintln!(
        "wrote {} ({}, {} modules{})",
        out.initramfs.display(),
        human_size(out.initramfs_size),
        out.modules.len(),
        if out.builtin_modules.is_empty() {
            String::new()
        } else {
            format!("; built in: {}", out.builtin_modules.join(" "))
        }
    );
    eprintln!("wrote {}", out.boot_json.display());
    eprintln!("done in {:.2} s", elapsed.as_secs_f64());
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

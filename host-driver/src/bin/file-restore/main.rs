//! `file-restore`: list and extract files of VM disk images and backups
//! without mounting them on the host. The disks are attached read-only to a
//! small restore VM that is started on first use and reused after.
//!
//! `file_restore::cli` holds the clap definition (also the source of the
//! completions and of the man pages, see `file-restore-man`), [`output`]
//! what is printed, [`extract`] the `extract` subcommand. The binary is the
//! top layer: it maps the command line onto `file_restore::driver` (and the
//! manager's options).

mod extract;
mod find;
mod keys;
mod output;
mod versions;

use clap::Parser;
use file_restore::cli::{completions, Accel, Cli, Cmd, FindType, Transport};
use file_restore::driver::{BlockRestoreDriver, QemuDriver};
use file_restore::manager::Manager;
use file_restore::manager::{AccelPreference, TransportPreference};
use output::{driver_error, error_line, info};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

fn main() {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .init();
    if cli.quiet {
        output::set_quiet();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("file-restore: error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        if output::is_broken_pipe(&e) {
            // The reader went away (`| head`): end as other Unix tools do.
            output::end_by_sigpipe();
        }
        eprintln!("{}", error_line(&e));
        std::process::exit(1);
    }
}

/// A manager with the global options of the command line.
fn manager(cli: &CliSettings) -> anyhow::Result<Manager> {
    let mut m = Manager::new()?;
    m.kernel = cli.kernel.clone();
    m.initramfs = cli.initramfs.clone();
    m.accel = match cli.accel {
        Accel::Auto => AccelPreference::Auto,
        Accel::Kvm => AccelPreference::Kvm,
        Accel::Tcg => AccelPreference::Tcg,
    };
    m.transport = match cli.transport {
        Transport::Auto => TransportPreference::Auto,
        Transport::Kernel => TransportPreference::Kernel,
        Transport::VhostUser => TransportPreference::VhostUser,
    };
    m.memory_mib = cli.memory;
    Ok(m)
}

/// The global options that shape new VMs.
struct CliSettings {
    kernel: Option<PathBuf>,
    initramfs: Option<PathBuf>,
    accel: Accel,
    transport: Transport,
    memory: Option<u32>,
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        cmd,
        kernel,
        initramfs,
        accel,
        transport,
        memory,
        ..
    } = cli;
    // Created only by the subcommands that use VMs: completions need no
    // runtime directory.
    let settings = CliSettings {
        kernel,
        initramfs,
        accel,
        transport,
        memory,
    };
    let new_manager = || manager(&settings);
    // list, status, stop and serve go through the driver interface; its notes
    // (VM started, dead VM removed) are printed on stderr as before.
    let new_driver = || -> anyhow::Result<Arc<QemuDriver>> {
        Ok(QemuDriver::new(new_manager()?, Box::new(info)))
    };
    match cmd {
        Cmd::Serve {
            listen,
            allow_remote,
            roots,
            sources,
        } => {
            let opts = file_restore::web::ServeOptions {
                listen,
                allow_remote,
                roots,
                sources,
            };
            Ok(file_restore::web::serve(opts, new_driver()?).await?)
        }
        Cmd::Completions { shell } => Ok(completions::write(shell, &mut std::io::stdout().lock())?),
        Cmd::List {
            source,
            path,
            output_format,
            timeout,
            key_file,
        } => {
            let path = path
                .map(|p| p.as_bytes().to_vec())
                .unwrap_or_else(|| b"/".to_vec());
            let driver = new_driver()?;
            let work = async {
                if let Some(k) = &key_file {
                    keys::unlock(driver.as_ref(), &source, k).await?;
                }
                driver
                    .list(&source, &path)
                    .await
                    .map_err(|e| driver_error(e, &path))
            };
            let mut entries = match timeout {
                Some(s) => tokio::time::timeout(Duration::from_secs(s), work)
                    .await
                    .map_err(|_| anyhow::anyhow!("gave up after {s} s (--timeout)"))??,
                None => work.await?,
            };
            entries.sort_by(|a, b| a.text.cmp(&b.text));
            output::write_list(&mut std::io::stdout().lock(), &entries, output_format)
        }
        Cmd::Extract {
            source,
            path,
            target,
            format,
            zstd,
            overwrite,
            same_owner,
            key_file,
        } => {
            let driver = new_driver()?;
            if let Some(k) = &key_file {
                keys::unlock(driver.as_ref(), &source, k).await?;
            }
            let opts = extract::ExtractOpts {
                format,
                zstd,
                overwrite,
                same_owner,
            };
            extract::extract(
                driver.as_ref(),
                &source,
                path.as_bytes(),
                target.as_deref(),
                &opts,
            )
            .await
        }
        Cmd::Find {
            source,
            path,
            names,
            inames,
            regex,
            entry_type,
            min_size,
            max_size,
            newer,
            older,
            max_results,
            output_format,
            timeout,
            key_file,
        } => {
            let path = path
                .map(|p| p.as_bytes().to_vec())
                .unwrap_or_else(|| b"/".to_vec());
            let query = file_restore_wire::find::FindQuery {
                names,
                inames,
                regex,
                entry_type: entry_type.map(|t| match t {
                    FindType::F => file_restore_wire::EntryType::File,
                    FindType::D => file_restore_wire::EntryType::Directory,
                    FindType::L => file_restore_wire::EntryType::Symlink,
                }),
                min_size,
                max_size,
                newer,
                older,
                max_results,
            };
            let driver = new_driver()?;
            let work = async {
                if let Some(k) = &key_file {
                    keys::unlock(driver.as_ref(), &source, k).await?;
                }
                let mut out = std::io::stdout().lock();
                find::find(
                    driver.as_ref(),
                    &source,
                    &path,
                    &query,
                    output_format,
                    &mut out,
                )
                .await
            };
            tokio::time::timeout(Duration::from_secs(timeout), work)
                .await
                .map_err(|_| anyhow::anyhow!("gave up after {timeout} s (--timeout)"))?
        }
        Cmd::Versions {
            sources,
            path,
            hash,
            jobs,
            output_format,
        } => {
            let snapshots = file_restore::versions::expand(&sources);
            let opts = file_restore::versions::VersionsOptions {
                hash,
                jobs: jobs.map_or_else(file_restore::versions::default_jobs, |j| j as usize),
                stop_started: true,
            };
            info(&format!(
                "looking up {} in {} snapshots, {} at a time",
                path.to_string_lossy(),
                snapshots.len(),
                opts.jobs
            ));
            let rows = file_restore::versions::versions(
                new_driver()?,
                snapshots,
                path.as_bytes().to_vec(),
                opts,
            )
            .await;
            versions::write_rows(
                &mut std::io::stdout().lock(),
                &rows,
                output_format,
                &path.to_string_lossy(),
            )
        }
        Cmd::Status { output_format } => {
            let reports = new_driver()?.status().await?;
            output::write_status(&mut std::io::stdout().lock(), &reports, output_format)
        }
        Cmd::Stop { name, all } => {
            let stopped = new_driver()?
                .stop(if all { None } else { name.as_deref() })
                .await?;
            if stopped.is_empty() {
                info("no restore VMs were running");
            }
            for n in stopped {
                info(&format!("stopped {n}"));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;

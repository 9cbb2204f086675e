//! `file-restore`: list and extract files of VM disk images and backups
//! without mounting them on the host. The disks are attached read-only to a
//! small restore VM that is started on first use and reused after.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use file_restore::cli_io::terminal_safe as safe;
use file_restore::manager::{Manager, VmEntry, VmReport};
use file_restore::{AccelPreference, ClientError, TransportPreference};
use file_restore_wire::{Entry, EntryType, ExtractFormat};
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ABOUT: &str = "Restore single files from VM disk images and backups, safely: the disks are \
attached read-only to a small QEMU VM and never mounted on the host.";

const LONG_ABOUT: &str = "Restore single files from VM disk images and backups, safely.

The disks of SOURCE are attached read-only to a small QEMU micro-VM whose daemon mounts
partitions on demand; this host only ever sees bytes over vsock. The first call on a
SOURCE starts its VM (a few seconds under TCG); later calls reuse it until it has been
idle for 10 minutes, or until `file-restore stop`.

SOURCE is a disk image in any format QEMU reads (raw, qcow2, vmdk, vhdx, ...), a
directory holding one VM's disk images (a backup snapshot such as
<store>/<vmid>/qemu-<epoch>/drive-scsi0.qcow2; each disk is named by its file stem),
or an nbd:// / nbd+unix:// URI. The format comes from the file extension (.raw, .qcow2,
.vmdk, .vhd, .vhdx, .vdi, .qed); only .img and extension-less files are probed, and a
probed image may not reference other files (backing files, vmdk extents).

PATH inside the VM: /<disk>/<bucket-type>/<bucket>/<path inside the filesystem>, e.g.
/drive-scsi0/part/2/etc/passwd. Shorter paths list what exists: / the disks, /<disk> its
bucket types (part, raw), /<disk>/part the partitions with their filesystem types.

Exit codes: 0 success, 1 error, 2 usage.";

#[derive(Parser)]
#[command(name = "file-restore", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Guest kernel (default: FILE_RESTORE_KERNEL, the install dir, the build dir).
    #[arg(long, global = true, value_name = "FILE")]
    kernel: Option<PathBuf>,
    /// Base initramfs (default: FILE_RESTORE_INITRAMFS, the install dir, the build dir).
    #[arg(long, global = true, value_name = "FILE")]
    initramfs: Option<PathBuf>,
    /// Accelerator for new VMs: kvm when it really works, else tcg.
    #[arg(long, global = true, value_enum, default_value_t = Accel::Auto)]
    accel: Accel,
    /// vsock transport for new VMs: kernel when /dev/vhost-vsock opens, else vhost-user.
    #[arg(long, global = true, value_enum, default_value_t = Transport::Auto)]
    transport: Transport,
    /// More log output on stderr (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Cmd {
    /// List disks, buckets, or a directory inside a bucket.
    List {
        /// Image file, snapshot directory or nbd:// URI.
        source: String,
        /// Path to list (default: / , the disks).
        path: Option<OsString>,
        /// text: one line per entry; json / json-pretty: the entry array (see README).
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output_format: OutputFormat,
        /// Give up after this many seconds (VM start included).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
    /// Extract a file or directory.
    ///
    /// A file goes to TARGET (a file name, or an existing directory to put it in)
    /// or to stdout (TARGET omitted or -). A directory without --format is unpacked
    /// into TARGET (created if missing): entries never land outside it, symlinks are
    /// created but never followed, mode (less the umask and set-id bits) and mtime
    /// are kept, files belong to you, device nodes and FIFOs are skipped, and
    /// directories that already exist keep their mode and times (--same-owner
    /// restores owners, set-id bits and special files). With --format zip|tar the
    /// archive itself goes to TARGET or stdout.
    Extract {
        /// Image file, snapshot directory or nbd:// URI.
        source: String,
        /// Path of the file or directory inside the VM.
        path: OsString,
        /// Where to write (default: stdout for files and archives).
        target: Option<PathBuf>,
        /// Write an archive of PATH instead of unpacking it.
        #[arg(long, value_enum)]
        format: Option<ArchiveFormat>,
        /// Compress the archive (or file) with zstd in the VM.
        #[arg(long)]
        zstd: bool,
        /// Replace existing files in TARGET.
        #[arg(long)]
        overwrite: bool,
        /// When unpacking: restore the image's owners (as root), set-id bits,
        /// device nodes (as root) and FIFOs, and modes without the umask.
        #[arg(long)]
        same_owner: bool,
    },
    /// Show running restore VMs.
    Status {
        /// text, json or json-pretty.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output_format: OutputFormat,
    },
    /// Stop a restore VM (by the name `status` shows) or all of them.
    Stop {
        /// The VM's name.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Stop every VM of this user.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
    JsonPretty,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ArchiveFormat {
    Zip,
    Tar,
}

#[derive(Clone, Copy, ValueEnum)]
enum Accel {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Clone, Copy, ValueEnum)]
enum Transport {
    Auto,
    Kernel,
    VhostUser,
}

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
        eprintln!("{}", error_line(&e));
        std::process::exit(1);
    }
}

/// The one stderr line of a failure: the cause chain, with the guest's
/// texts in it (daemon messages, entry names) made terminal-safe.
fn error_line(e: &anyhow::Error) -> String {
    format!("file-restore: error: {}", safe(&format!("{e:#}")))
}

fn manager(cli: &Cli) -> anyhow::Result<Manager> {
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
    Ok(m)
}

fn print_notes(notes: &mut Vec<String>) {
    for n in notes.drain(..) {
        eprintln!("file-restore: {}", safe(&n));
    }
}

async fn vm_for(m: &Manager, source: &str) -> anyhow::Result<(String, VmEntry)> {
    let mut notes = Vec::new();
    let r = m.ensure_vm(source, &mut notes).await;
    print_notes(&mut notes);
    r.with_context(|| format!("cannot open {source}"))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let m = manager(&cli)?;
    match cli.cmd {
        Cmd::List {
            source,
            path,
            output_format,
            timeout,
        } => {
            let path = path
                .map(|p| p.as_bytes().to_vec())
                .unwrap_or_else(|| b"/".to_vec());
            let work = async {
                let (_, entry) = vm_for(&m, &source).await?;
                let client = entry.vm.client();
                client.list(&path).await.map_err(|e| daemon_error(e, &path))
            };
            let mut entries = match timeout {
                Some(s) => tokio::time::timeout(Duration::from_secs(s), work)
                    .await
                    .map_err(|_| anyhow::anyhow!("gave up after {s} s (--timeout)"))??,
                None => work.await?,
            };
            entries.sort_by(|a, b| a.text.cmp(&b.text));
            print_list(&entries, output_format)
        }
        Cmd::Extract {
            source,
            path,
            target,
            format,
            zstd,
            overwrite,
            same_owner,
        } => {
            let (_, entry) = vm_for(&m, &source).await?;
            let opts = ExtractOpts {
                format,
                zstd,
                overwrite,
                same_owner,
            };
            extract(&entry, path.as_bytes(), target.as_deref(), &opts).await
        }
        Cmd::Status { output_format } => {
            let mut notes = Vec::new();
            let reports = m.status(&mut notes).await;
            print_notes(&mut notes);
            let reports = reports?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match output_format {
                OutputFormat::Json => writeln!(out, "{}", serde_json::to_string(&reports)?)?,
                OutputFormat::JsonPretty => {
                    writeln!(out, "{}", serde_json::to_string_pretty(&reports)?)?
                }
                OutputFormat::Text => write_status_text(&mut out, &reports)?,
            }
            Ok(())
        }
        Cmd::Stop { name, all } => {
            let stopped = m.stop(if all { None } else { name.as_deref() }).await?;
            if stopped.is_empty() {
                eprintln!("file-restore: no restore VMs were running");
            }
            for n in stopped {
                eprintln!("file-restore: stopped {}", safe(&n));
            }
            Ok(())
        }
    }
}

fn daemon_error(e: ClientError, path: &[u8]) -> anyhow::Error {
    match e.daemon_message() {
        Some(msg) => anyhow::anyhow!("{msg}"),
        None => anyhow::Error::new(e).context(format!(
            "request for {} failed",
            String::from_utf8_lossy(path)
        )),
    }
}

/// `status` as text; what the guest reported (disk names, bucket paths and
/// types) is made terminal-safe.
fn write_status_text(out: &mut impl Write, reports: &[VmReport]) -> std::io::Result<()> {
    if reports.is_empty() {
        writeln!(out, "no restore VMs running")?;
    }
    for r in reports {
        writeln!(out, "{}", safe(&r.name))?;
        writeln!(
            out,
            "  pid {}  accel {}  transport {}",
            r.pid,
            safe(&r.accel),
            safe(&r.addr)
        )?;
        writeln!(
            out,
            "  uptime {} s  idle timeout in {} s",
            r.uptime.map_or("?".into(), |u| u.to_string()),
            r.timeout_left.map_or("?".into(), |u| u.to_string())
        )?;
        for i in &r.images {
            writeln!(out, "  image {}", safe(&i.display().to_string()))?;
        }
        if let Some(g) = &r.guest_config {
            writeln!(out, "  guest config {}", safe(&g.display().to_string()))?;
        }
        for d in r.disks.iter().flatten() {
            let b: Vec<String> = d
                .buckets
                .iter()
                .map(|b| format!("{} {}", safe(&b.path), safe(&b.fstype)))
                .collect();
            writeln!(out, "  disk {}: {}", safe(&d.name), b.join(", "))?;
        }
    }
    Ok(())
}

fn print_list(entries: &[Entry], fmt: OutputFormat) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    write_list(&mut stdout.lock(), entries, fmt)
}

/// A listing: JSON exactly as the daemon sent it, or one text line per
/// entry with the guest's texts (names, targets, types) terminal-safe.
fn write_list(out: &mut impl Write, entries: &[Entry], fmt: OutputFormat) -> anyhow::Result<()> {
    let mut out = out;
    match fmt {
        OutputFormat::Json => serde_json::to_writer(&mut out, entries)?,
        OutputFormat::JsonPretty => serde_json::to_writer_pretty(&mut out, entries)?,
        OutputFormat::Text => {
            for e in entries {
                let size = match (e.size, &e.fstype) {
                    (Some(s), _) => s.to_string(),
                    _ => "-".into(),
                };
                let mtime = e.mtime.map_or_else(|| "-".repeat(16), format_time);
                let mut line = format!(
                    "{} {:>12} {} {}",
                    e.entry_type.letter(),
                    size,
                    mtime,
                    safe(&e.text)
                );
                if let Some(fs) = &e.fstype {
                    line.push_str(&format!(" [{}]", safe(fs)));
                }
                if let Some(t) = &e.target {
                    line.push_str(&format!(" -> {}", safe(t)));
                }
                if let Some(err) = &e.error {
                    line.push_str(&format!(" (error: {})", safe(err)));
                }
                writeln!(out, "{line}")?;
            }
            return Ok(());
        }
    }
    writeln!(out)?;
    Ok(())
}

/// `YYYY-MM-DD HH:MM` in UTC.
fn format_time(secs: i64) -> String {
    let (y, mo, d, h, mi, _) = file_restore_wire::civil_from_unix(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}")
}

/// Normalizes a user path: no empty or `.` components, leading `/`.
fn normalize(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
    {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// Whether PATH names a directory-like thing (virtual level, bucket root or
/// directory) rather than a single file.
async fn is_directory(entry: &VmEntry, path: &[u8]) -> anyhow::Result<Option<Entry>> {
    let norm = normalize(path);
    let depth = norm.split(|&b| b == b'/').filter(|c| !c.is_empty()).count();
    if depth <= 3 {
        return Ok(None);
    }
    let listing = entry
        .vm
        .client()
        .list(&norm)
        .await
        .map_err(|e| daemon_error(e, &norm))?;
    // A non-directory lists as itself: one entry whose path is PATH.
    match listing.as_slice() {
        [single]
            if single.path_bytes().ok().as_deref() == Some(norm.as_slice())
                && single.entry_type != EntryType::Directory =>
        {
            Ok(Some(single.clone()))
        }
        _ => Ok(None),
    }
}

/// The flags of `extract`.
struct ExtractOpts {
    format: Option<ArchiveFormat>,
    zstd: bool,
    overwrite: bool,
    same_owner: bool,
}

async fn extract(
    entry: &VmEntry,
    path: &[u8],
    target: Option<&Path>,
    opts: &ExtractOpts,
) -> anyhow::Result<()> {
    let ExtractOpts {
        format,
        zstd,
        overwrite,
        same_owner,
    } = *opts;
    let norm = normalize(path);
    let shown = String::from_utf8_lossy(&norm).into_owned();
    let target = target.filter(|t| t.as_os_str() != "-");
    let file = is_directory(entry, &norm).await?;
    let base = norm.rsplit(|&b| b == b'/').next().unwrap_or(b"").to_vec();
    let client = entry.vm.client();
    match (format, &file) {
        (None, None) => {
            if zstd {
                bail!("--zstd needs --format zip|tar when extracting a directory");
            }
            let Some(target) = target else {
                bail!("{shown} is a directory: give a TARGET directory to unpack into, or --format zip|tar to write an archive to stdout");
            };
            let stream = client
                .extract(&norm, ExtractFormat::Tar, false, None)
                .await
                .map_err(|e| daemon_error(e, &norm))?;
            let unpack_opts = file_restore::cli_io::extract_unpack_options(overwrite, same_owner);
            let stats = file_restore::cli_io::unpack_stream(stream, target, unpack_opts).await?;
            eprintln!(
                "file-restore: unpacked {} into {} ({stats})",
                safe(&shown),
                safe(&target.display().to_string())
            );
            Ok(())
        }
        _ => {
            let fmt = match format {
                None => ExtractFormat::Plain,
                Some(ArchiveFormat::Zip) => ExtractFormat::Zip,
                Some(ArchiveFormat::Tar) => ExtractFormat::Tar,
            };
            let stream = client
                .extract(&norm, fmt, zstd, None)
                .await
                .map_err(|e| daemon_error(e, &norm))?;
            match target {
                None => {
                    if std::io::stdout().is_terminal() && fmt != ExtractFormat::Plain {
                        bail!("refusing to write a {} archive to a terminal: give a TARGET or redirect stdout", fmt.as_str());
                    }
                    file_restore::cli_io::copy_to_stdout(stream).await
                }
                Some(t) => {
                    let mut dest = t.to_path_buf();
                    if t.is_dir() {
                        let mut name = base.clone();
                        if fmt != ExtractFormat::Plain {
                            name.extend_from_slice(format!(".{}", fmt.as_str()).as_bytes());
                        }
                        if zstd {
                            name.extend_from_slice(b".zst");
                        }
                        dest = t.join(std::ffi::OsStr::from_bytes(&name));
                    }
                    let n = file_restore::cli_io::write_file_atomically(stream, &dest, overwrite)
                        .await
                        .with_context(|| format!("{} was not written", dest.display()))?;
                    eprintln!(
                        "file-restore: wrote {} ({n} bytes)",
                        safe(&dest.display().to_string())
                    );
                    Ok(())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract_flags(args: &[&str]) -> (bool, bool) {
        let cli = Cli::try_parse_from(
            [
                "file-restore",
                "extract",
                "img.qcow2",
                "/d/part/1/etc",
                "out",
            ]
            .iter()
            .chain(args),
        )
        .unwrap();
        match cli.cmd {
            Cmd::Extract {
                overwrite,
                same_owner,
                ..
            } => (overwrite, same_owner),
            _ => panic!("not extract"),
        }
    }

    const EVIL: &str = "x\x1b]0;pwned\x07\x1b[2J\nfake line\r\u{9b}31m\x7f";
    const EVIL_SHOWN: &str = "x\\x1b]0;pwned\\x07\\x1b[2J\\x0afake line\\x0d\\u{9b}31m\\x7f";

    fn no_controls(text: &str) {
        for line in text.lines() {
            assert!(
                !line.chars().any(|c| c.is_control()),
                "control character in {line:?}"
            );
        }
    }

    #[test]
    fn text_listing_escapes_guest_names_json_stays_exact() {
        let entries = vec![Entry {
            filepath: file_restore_wire::encode_path(b"/d/part/1/x"),
            text: EVIL.into(),
            entry_type: EntryType::Symlink,
            leaf: true,
            size: Some(1),
            mtime: Some(0),
            target: Some(format!("/etc/{EVIL}")),
            fstype: Some(format!("ext4{EVIL}")),
            error: Some(format!("bad{EVIL}")),
        }];
        let mut out = Vec::new();
        write_list(&mut out, &entries, OutputFormat::Text).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1, "{text:?}");
        no_controls(&text);
        assert_eq!(
            text,
            format!(
                "l            1 1970-01-01 00:00 {EVIL_SHOWN} [ext4{EVIL_SHOWN}] -> /etc/{EVIL_SHOWN} \
                 (error: bad{EVIL_SHOWN})\n"
            )
        );
        let mut out = Vec::new();
        write_list(&mut out, &entries, OutputFormat::Json).unwrap();
        let back: Vec<Entry> = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, entries);
    }

    #[test]
    fn status_text_escapes_guest_names() {
        let r = VmReport {
            name: "qemu_-img_0123".into(),
            pid: 1,
            addr: "vhost-user:/run/x.vsock".into(),
            accel: "tcg".into(),
            uptime: Some(1),
            timeout_left: None,
            images: vec![PathBuf::from("/img")],
            guest_config: None,
            disks: Some(vec![file_restore_wire::DiskStatus {
                name: format!("disk{EVIL}"),
                buckets: vec![file_restore_wire::BucketStatus {
                    path: format!("part/{EVIL}"),
                    fstype: format!("ext4{EVIL}"),
                    size: 1,
                    mounted: false,
                    mounting: false,
                }],
            }]),
        };
        let mut out = Vec::new();
        write_status_text(&mut out, &[r]).unwrap();
        let text = String::from_utf8(out).unwrap();
        no_controls(&text);
        assert!(
            text.contains(&format!(
                "  disk disk{EVIL_SHOWN}: part/{EVIL_SHOWN} ext4{EVIL_SHOWN}\n"
            )),
            "{text}"
        );
    }

    #[test]
    fn daemon_errors_are_escaped() {
        let e = daemon_error(
            ClientError::Daemon {
                endpoint: "/api/list",
                status: 404,
                message: format!("no such file: {EVIL}"),
            },
            b"/p",
        );
        let line = error_line(&e);
        no_controls(&line);
        assert_eq!(
            line,
            format!("file-restore: error: no such file: {EVIL_SHOWN}")
        );
        // And an unpack error naming an entry from the archive.
        let e = anyhow::Error::new(file_restore::unpack::UnpackError::Refused {
            entry: EVIL.into(),
            reason: "its path contains '..'".into(),
        });
        let line = error_line(&e);
        no_controls(&line);
        assert!(line.contains(EVIL_SHOWN), "{line}");
    }

    #[test]
    fn same_owner_flag_reaches_the_unpack_options() {
        let (overwrite, same_owner) = extract_flags(&[]);
        assert!(!same_owner);
        let opts = file_restore::cli_io::extract_unpack_options(overwrite, same_owner);
        assert!(!opts.same_owner && !opts.overwrite);
        assert_eq!((opts.strip_components, opts.umask), (1, None));
        let (overwrite, same_owner) = extract_flags(&["--same-owner", "--overwrite"]);
        let opts = file_restore::cli_io::extract_unpack_options(overwrite, same_owner);
        assert!(opts.same_owner && opts.overwrite);
    }
}

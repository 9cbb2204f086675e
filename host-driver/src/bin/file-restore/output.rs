//! What `file-restore` prints: listings and `status` (text or JSON on
//! stdout), informational lines and errors (stderr). Everything the guest
//! reported is made terminal-safe in text output.

use file_restore::cli::OutputFormat;
use file_restore::driver::ClientError;
use file_restore::driver::DriverError;
use file_restore::driver::VmReport;
use file_restore::util::text::terminal_safe as safe;
use file_restore_wire::Entry;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by `--quiet`: informational lines are not printed.
static QUIET: AtomicBool = AtomicBool::new(false);

/// `--quiet`: from now on no informational lines and no progress bars.
pub fn set_quiet() {
    QUIET.store(true, Ordering::Relaxed);
    file_restore::util::progress::hide_all();
}

/// An informational line on stderr (`file-restore: …`), unless `--quiet`.
pub fn info(msg: &str) {
    if !QUIET.load(Ordering::Relaxed) {
        eprintln!("file-restore: {}", safe(msg));
    }
}

/// Whether `e` comes from writing to a pipe whose reader has gone (EPIPE;
/// Rust ignores SIGPIPE, so a write returns the error instead of ending us).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Ends the process by SIGPIPE, quietly, the way `cat` or `ls` end when
/// their reader goes away: the shell sees status 141 and prints nothing.
pub fn end_by_sigpipe() -> ! {
    // SAFETY: restoring a signal's default disposition and raising it; no
    // handler runs, the default action ends the process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(141)
}

/// The one stderr line of a failure: the cause chain, with the guest's
/// texts in it (daemon messages, entry names) made terminal-safe.
pub fn error_line(e: &anyhow::Error) -> String {
    format!("file-restore: error: {}", safe(&format!("{e:#}")))
}

/// A failed daemon call: the daemon's own message when it sent one.
pub fn daemon_error(e: ClientError, path: &[u8]) -> anyhow::Error {
    match e.daemon_message() {
        Some(msg) => anyhow::anyhow!("{msg}"),
        None => anyhow::Error::new(e).context(format!(
            "request for {} failed",
            String::from_utf8_lossy(path)
        )),
    }
}

/// A failed driver call: the daemon's own message when it refused, else the
/// error and its causes.
pub fn driver_error(e: DriverError, path: &[u8]) -> anyhow::Error {
    match e {
        DriverError::Client(e) => daemon_error(e, path),
        other => other.into(),
    }
}

/// `status` in the chosen format.
pub fn write_status(
    out: &mut impl Write,
    reports: &[VmReport],
    fmt: OutputFormat,
) -> anyhow::Result<()> {
    match fmt {
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string(reports)?)?,
        OutputFormat::JsonPretty => writeln!(out, "{}", serde_json::to_string_pretty(reports)?)?,
        OutputFormat::Text => write_status_text(out, reports)?,
    }
    Ok(())
}

/// `status` as text: per VM a line with its short label (padded to one
/// column) and its name, then details. What the guest reported (disk
/// names, bucket paths and types) is made terminal-safe.
fn write_status_text(out: &mut impl Write, reports: &[VmReport]) -> std::io::Result<()> {
    if reports.is_empty() {
        writeln!(out, "no restore VMs running")?;
    }
    let labels: Vec<String> = reports
        .iter()
        .map(|r| safe(&r.label).into_owned())
        .collect();
    let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    for (r, label) in reports.iter().zip(&labels) {
        writeln!(out, "{label:<width$}  {}", safe(&r.name))?;
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
                .map(|b| {
                    let mut s = format!(
                        "{} {}",
                        safe(&b.path),
                        type_and_label(&b.fstype, b.label.as_deref())
                    );
                    if let Some(enc) = &b.encryption {
                        let state = luks_state(b.locked);
                        s.push_str(&format!(" ({}, {state})", safe(enc)));
                    }
                    if let Some(err) = &b.error {
                        s.push_str(&format!(" (error: {})", safe(err)));
                    }
                    s
                })
                .collect();
            writeln!(out, "  disk {}: {}", safe(&d.name), b.join(", "))?;
        }
    }
    Ok(())
}

/// A listing: JSON exactly as the daemon sent it, or one text line per
/// entry with the guest's texts (names, targets, types) terminal-safe.
pub fn write_list(
    out: &mut impl Write,
    entries: &[Entry],
    fmt: OutputFormat,
) -> anyhow::Result<()> {
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
                    line.push_str(&format!(" [{}", type_and_label(fs, e.label.as_deref())));
                    match &e.encryption {
                        // BitLocker's type and encryption have one name.
                        Some(enc) if enc == fs => {
                            line.push_str(&format!(", {}]", luks_state(e.locked)));
                        }
                        Some(enc) => {
                            let state = luks_state(e.locked);
                            line.push_str(&format!(" {}, {state}]", safe(enc)));
                        }
                        None => line.push(']'),
                    }
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

/// A bucket's type, and its label in quotes where it has one:
/// `ntfs "Windows"`; both terminal-safe.
fn type_and_label(fstype: &str, label: Option<&str>) -> String {
    match label {
        Some(l) => format!("{} \"{}\"", safe(fstype), safe(l)),
        None => safe(fstype).into_owned(),
    }
}

/// How a LUKS or BitLocker container is shown: `open` once a passphrase opened it, else
/// `locked` (also when a daemon does not say).
fn luks_state(locked: Option<bool>) -> &'static str {
    if locked == Some(false) {
        "open"
    } else {
        "locked"
    }
}

/// `YYYY-MM-DD HH:MM` in UTC.
pub fn format_time(secs: i64) -> String {
    let (y, mo, d, h, mi, _) = file_restore_wire::civil_from_unix(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}")
}

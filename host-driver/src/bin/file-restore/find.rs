//! `find`: a search in the VM, each match printed as it arrives.

use crate::output::{driver_error, format_time, info};
use file_restore::cli::FindFormat;
use file_restore::driver::BlockRestoreDriver;
use file_restore::util::progress;
use file_restore::util::text::terminal_safe as safe;
use file_restore_wire::find::{FindEvent, FindQuery};
use file_restore_wire::Entry;
use std::io::Write;

/// Runs the search and prints it to `out`; skipped places and a cut at
/// `--max-results` are reported on stderr.
pub async fn find(
    driver: &impl BlockRestoreDriver,
    source: &str,
    path: &[u8],
    query: &FindQuery,
    format: FindFormat,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut stream = driver
        .find(source, path, query)
        .await
        .map_err(|e| driver_error(e, path))?;
    let bar = progress::spinner("searching");
    let mut first = true;
    if format == FindFormat::Json {
        out.write_all(b"[")?;
    }
    while let Some(ev) = stream.next().await.map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "the search below {} broke off",
            String::from_utf8_lossy(path)
        ))
    })? {
        match ev {
            FindEvent::Match(e) => {
                bar.suspend(|| write_match(out, &e, format, &mut first))?;
                bar.inc(1);
            }
            FindEvent::Skip(s) => bar.suspend(|| {
                info(&format!("not searched: {}: {}", s.path, s.reason));
            }),
            FindEvent::Progress(p) => {
                bar.set_message(format!("searching: {} entries looked at", p.visited))
            }
            FindEvent::End(end) => {
                bar.finish_and_clear();
                if format == FindFormat::Json {
                    out.write_all(b"]\n")?;
                }
                out.flush()?;
                if end.truncated {
                    info(&format!(
                        "stopped at --max-results {} matches; there are more (narrow the \
                         search or raise --max-results)",
                        query.max_results
                    ));
                }
                log::info!(
                    "{} entries looked at, {} matches, {} places not searched",
                    end.visited,
                    end.matched,
                    end.skipped
                );
            }
        }
    }
    Ok(())
}

fn write_match(
    out: &mut impl Write,
    e: &Entry,
    format: FindFormat,
    first: &mut bool,
) -> anyhow::Result<()> {
    match format {
        FindFormat::Json => {
            if !std::mem::take(first) {
                out.write_all(b",")?;
            }
            serde_json::to_writer(&mut *out, e)?;
        }
        FindFormat::Jsonl => {
            serde_json::to_writer(&mut *out, e)?;
            out.write_all(b"\n")?;
            out.flush()?;
        }
        FindFormat::Text => {
            let size = e.size.map_or_else(|| "-".into(), |s| s.to_string());
            let mtime = e.mtime.map_or_else(|| "-".repeat(16), format_time);
            let path = e.path.as_deref().unwrap_or(&e.text);
            let mut line = format!(
                "{} {:>12} {} {}",
                e.entry_type.letter(),
                size,
                mtime,
                safe(path)
            );
            if let Some(t) = &e.target {
                line.push_str(&format!(" -> {}", safe(t)));
            }
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

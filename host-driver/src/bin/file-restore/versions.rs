//! `versions`: one path across snapshots, a row each, newest first.

use crate::output::format_time;
use file_restore::cli::OutputFormat;
use file_restore::util::text::terminal_safe as safe;
use file_restore::versions::VersionRow;
use std::io::Write;

/// Prints the rows; an error when every row is one.
pub fn write_rows(
    out: &mut impl Write,
    rows: &[VersionRow],
    fmt: OutputFormat,
    path: &str,
) -> anyhow::Result<()> {
    match fmt {
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string(rows)?)?,
        OutputFormat::JsonPretty => writeln!(out, "{}", serde_json::to_string_pretty(rows)?)?,
        OutputFormat::Text => write_text(out, rows)?,
    }
    out.flush()?;
    if !rows.is_empty() && rows.iter().all(|r| r.error.is_some()) {
        anyhow::bail!(
            "{} could not be looked up in any of the {} snapshots (errors above)",
            path,
            rows.len()
        );
    }
    Ok(())
}

/// A table: changed mark, time, label, then what the path is there.
fn write_text(out: &mut impl Write, rows: &[VersionRow]) -> std::io::Result<()> {
    let labels: Vec<String> = rows.iter().map(|r| safe(&r.label).into_owned()).collect();
    let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    for (r, label) in rows.iter().zip(&labels) {
        let mark = if r.changed == Some(true) { '*' } else { ' ' };
        let time = r.time.map_or_else(|| "-".repeat(16), format_time);
        let what = match (&r.error, r.exists) {
            (Some(e), _) => format!("error: {}", safe(e)),
            (None, false) => "(missing)".to_string(),
            (None, true) => {
                let mut s = format!(
                    "{} {:>12} {}",
                    r.entry_type.map_or('?', |t| t.letter()),
                    r.size.map_or_else(|| "-".into(), |s| s.to_string()),
                    r.mtime.map_or_else(|| "-".repeat(16), format_time)
                );
                if let Some(h) = &r.sha256 {
                    s.push(' ');
                    s.push_str(&safe(h));
                }
                s
            }
        };
        writeln!(out, "{mark} {time}  {label:<width$}  {what}")?;
    }
    Ok(())
}

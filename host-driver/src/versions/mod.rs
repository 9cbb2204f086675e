//! One path across many backups: `file-restore versions` and the web UI's
//! Versions view.
//!
//! Every SOURCE is asked for the path with one `stat` call (and the
//! guest's SHA-256 of the content with `--hash`), several VMs at a time
//! within [`default_jobs`]; a SOURCE that fails (damaged, locked, no such
//! disk) is a row with its error, never the end of the run. A VM's
//! directory of snapshots (`<store>/<vmid>`) stands for all its snapshots.
//! Rows come newest first, and each says whether the entry changed from the
//! next older row: by content hash when both have one, else by type, size
//! and mtime.
//!
//! A layer above the driver, beside the frontends that use it: imports
//! `driver` and `source` only.

use std::path::Path;
use std::sync::Arc;

use file_restore_wire::EntryType;
use serde::Serialize;

use crate::driver::{BlockRestoreDriver, DriverError};
use crate::source::store;

/// Memory a restore VM takes on the host (guest RAM and QEMU), for
/// [`default_jobs`].
const VM_HOST_MIB: u64 = 400;
/// Most VMs `versions` starts at once by default.
const MAX_DEFAULT_JOBS: usize = 8;

/// One SOURCE to ask: a snapshot, an image, a URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSource {
    /// The SOURCE argument for the driver.
    pub source: String,
    /// Its short name: the snapshot directory's or the file's name.
    pub label: String,
    /// Its time (a snapshot's `-<epoch>`, else the file's mtime).
    pub time: Option<i64>,
}

/// One row of the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionRow {
    /// The SOURCE asked.
    pub source: String,
    /// Its short name.
    pub label: String,
    /// Its time, seconds since the epoch.
    pub time: Option<i64>,
    /// Whether the path exists there.
    pub exists: bool,
    /// The entry's type (`f`, `d`, `l`, …) where it exists.
    #[serde(rename = "type")]
    pub entry_type: Option<EntryType>,
    /// Its size in bytes (not for directories).
    pub size: Option<u64>,
    /// Its modification time.
    pub mtime: Option<i64>,
    /// The SHA-256 of a regular file's content, with `--hash`.
    pub sha256: Option<String>,
    /// Whether it differs from the next older row; `None` for the oldest
    /// row and next to a row with an error.
    pub changed: Option<bool>,
    /// Why this SOURCE could not be asked.
    pub error: Option<String>,
}

/// How `versions` runs.
#[derive(Debug, Clone, Copy)]
pub struct VersionsOptions {
    /// Ask the guest for each file's SHA-256.
    pub hash: bool,
    /// VMs asked at once.
    pub jobs: usize,
    /// Stop the VMs this run started (the CLI does; the web UI keeps them
    /// for the download that usually follows).
    pub stop_started: bool,
}

/// VMs at once by default: one per core, as many as the host's available
/// memory holds at ~400 MiB each, at most 8.
pub fn default_jobs() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let by_memory = available_mib().map_or(cores, |m| (m / VM_HOST_MIB) as usize);
    cores.min(by_memory).clamp(1, MAX_DEFAULT_JOBS)
}

/// `MemAvailable` of /proc/meminfo in MiB.
fn available_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// The SOURCEs the arguments stand for: a VM's directory of snapshots
/// becomes its snapshots; anything else is itself. Sorted newest first
/// (the order of the arguments among equal times).
pub fn expand(args: &[String]) -> Vec<VersionSource> {
    let mut out = Vec::new();
    for arg in args {
        let p = Path::new(arg);
        if let Some(snaps) = store::snapshots_in(p) {
            out.extend(snaps.into_iter().map(|s| VersionSource {
                source: s.dir.to_string_lossy().into_owned(),
                label: s.label,
                time: s.time,
            }));
            continue;
        }
        let label = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| arg.clone());
        let time = if p.is_dir() {
            store::epoch_of(&label).or_else(|| store::mtime(p))
        } else {
            store::mtime(p)
        };
        out.push(VersionSource {
            source: arg.clone(),
            label,
            time,
        });
    }
    // Stable: equal times keep the order given.
    out.sort_by_key(|s| std::cmp::Reverse(s.time));
    out
}

/// Asks every SOURCE for `path`; rows in the order of `sources`.
pub async fn versions<D: BlockRestoreDriver>(
    driver: Arc<D>,
    sources: Vec<VersionSource>,
    path: Vec<u8>,
    opts: VersionsOptions,
) -> Vec<VersionRow> {
    let permits = Arc::new(tokio::sync::Semaphore::new(opts.jobs.max(1)));
    let path = Arc::new(path);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, src) in sources.iter().cloned().enumerate() {
        let (driver, permits, path) = (driver.clone(), permits.clone(), path.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (i, row(driver.as_ref(), src, &path, opts).await)
        });
    }
    let mut rows: Vec<Option<VersionRow>> = vec![None; sources.len()];
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((i, r)) => rows[i] = Some(r),
            Err(e) => log::warn!("a versions task failed: {e}"),
        }
    }
    let mut rows: Vec<VersionRow> = rows
        .into_iter()
        .zip(sources)
        .map(|(r, s)| r.unwrap_or_else(|| failed(s, "the task asking it failed".into())))
        .collect();
    mark_changes(&mut rows);
    rows
}

fn failed(s: VersionSource, error: String) -> VersionRow {
    VersionRow {
        source: s.source,
        label: s.label,
        time: s.time,
        exists: false,
        entry_type: None,
        size: None,
        mtime: None,
        sha256: None,
        changed: None,
        error: Some(error),
    }
}

/// The row of one SOURCE; stops its VM afterwards when this call started it.
async fn row<D: BlockRestoreDriver>(
    driver: &D,
    s: VersionSource,
    path: &[u8],
    opts: VersionsOptions,
) -> VersionRow {
    // Unknown (no VM map yet): treated as running, so nothing is stopped
    // that might not be ours.
    let was_running = driver.serves(&s.source).await.unwrap_or(true);
    let answer = driver.stat(&s.source, path, opts.hash).await;
    if opts.stop_started && !was_running {
        if let Err(e) = driver.release(&s.source).await {
            log::warn!("stopping the VM of {}: {e}", s.source);
        }
    }
    match answer {
        Ok(a) => VersionRow {
            exists: true,
            entry_type: Some(a.entry.entry_type),
            size: a.entry.size,
            mtime: a.entry.mtime,
            sha256: a.sha256,
            ..failed(s, String::new())
        }
        .without_error(),
        Err(e) if e.daemon_status() == Some(404) && missing_inside(&e) => VersionRow {
            exists: false,
            ..failed(s, String::new())
        }
        .without_error(),
        Err(e) => failed(s, error_text(&e)),
    }
}

impl VersionRow {
    fn without_error(mut self) -> Self {
        self.error = None;
        self
    }
}

/// Whether a 404 says the path is missing inside a bucket (the file was not
/// there yet, or deleted), not that the disk or bucket is: only the former
/// is "does not exist" rather than an error.
fn missing_inside(e: &DriverError) -> bool {
    match e {
        DriverError::Client(c) => c
            .daemon_message()
            .is_some_and(|m| m.contains("no such file or directory")),
        _ => false,
    }
}

/// The daemon's own message where it sent one, else the error's chain.
fn error_text(e: &DriverError) -> String {
    if let DriverError::Client(c) = e {
        if let Some(m) = c.daemon_message() {
            return m.to_owned();
        }
    }
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Sets `changed` of each row against the next older one (rows newest first).
pub fn mark_changes(rows: &mut [VersionRow]) {
    for i in 0..rows.len() {
        rows[i].changed = match rows.get(i + 1) {
            None => None,
            Some(older) => differs(&rows[i], older),
        };
    }
}

fn differs(new: &VersionRow, old: &VersionRow) -> Option<bool> {
    if new.error.is_some() || old.error.is_some() {
        return None;
    }
    if new.exists != old.exists {
        return Some(true);
    }
    if !new.exists {
        return Some(false);
    }
    if new.entry_type != old.entry_type {
        return Some(true);
    }
    if let (Some(a), Some(b)) = (&new.sha256, &old.sha256) {
        return Some(a != b);
    }
    Some(new.size != old.size || new.mtime != old.mtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(exists: bool, size: u64, mtime: i64, sha: Option<&str>) -> VersionRow {
        VersionRow {
            source: String::new(),
            label: String::new(),
            time: None,
            exists,
            entry_type: exists.then_some(EntryType::File),
            size: exists.then_some(size),
            mtime: exists.then_some(mtime),
            sha256: sha.map(str::to_owned),
            changed: None,
            error: None,
        }
    }

    #[test]
    fn changes_against_the_next_older_row() {
        let mut rows = vec![
            r(true, 5, 9, Some("b")), // content changed (same size)
            r(true, 5, 8, Some("a")), // touched, same content: not changed
            r(true, 5, 7, Some("a")), // appeared
            r(false, 0, 0, None),     // missing in both
            r(false, 0, 0, None),
            r(true, 1, 1, None), // no hashes: size/mtime decide
            r(true, 1, 1, None),
        ];
        mark_changes(&mut rows);
        let got: Vec<Option<bool>> = rows.iter().map(|r| r.changed).collect();
        assert_eq!(
            got,
            [
                Some(true),
                Some(false),
                Some(true),
                Some(false),
                Some(true),
                Some(false),
                None
            ]
        );
        let mut with_error = vec![r(true, 1, 1, None), r(true, 1, 1, None)];
        with_error[1].error = Some("locked".into());
        mark_changes(&mut with_error);
        assert_eq!(with_error[0].changed, None);
    }
}

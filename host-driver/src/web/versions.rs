//! `GET /api/versions?source=ID&path=B64[&hash=1]`: one path across the
//! backups of a VM, for the page's Versions panel.
//!
//! The sources asked are taken from the catalog only: a snapshot's whole
//! group (the snapshots of its VM id directory, [`Catalog::versions_of`]),
//! any other source alone; nothing in the request names another. They go to
//! [`crate::versions::versions`] several VMs at a time, and the VMs it
//! starts keep running for the download that usually follows (the idle
//! timeouts stop them). The answer is
//! `{"path": "…", "rows": [VersionRow + "id"…]}`, newest first, where `id`
//! is the row's catalog source (for its download link).
//!
//! [`Catalog::versions_of`]: super::catalog::Catalog::versions_of

use hyper::{Response, StatusCode};
use serde::Serialize;

use super::answer::{error, json, source_and_path, Body, State};
use super::query::param;
use crate::driver::BlockRestoreDriver;
use crate::versions::{default_jobs, VersionRow, VersionSource, VersionsOptions};

/// A row of the answer: the version and the catalog id to download it by.
#[derive(Serialize)]
struct Row {
    /// The catalog id of the row's source.
    id: String,
    #[serde(flatten)]
    row: VersionRow,
}

/// The answer.
#[derive(Serialize)]
struct Answer {
    /// The path asked for (lossy UTF-8, for display).
    path: String,
    /// One row per version, newest first.
    rows: Vec<Row>,
}

/// Answers `GET /api/versions`.
pub async fn versions<D: BlockRestoreDriver>(state: &State<D>, q: Option<&str>) -> Response<Body> {
    let (source, path) = match source_and_path(state, q) {
        Ok(sp) => sp,
        Err(f) => return f.answer(),
    };
    let hash = match param(q, "hash").as_deref() {
        None | Some("" | "0" | "false") => false,
        Some("1" | "true") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("hash={other:?}: expected 1 or 0"),
            )
        }
    };
    let sources: Vec<VersionSource> = state
        .catalog
        .versions_of(&source)
        .into_iter()
        .map(|e| VersionSource {
            source: e.id,
            label: e.label,
            time: e.time,
        })
        .collect();
    if sources.is_empty() {
        // It left the catalog (a root rescanned) since the check.
        return error(
            StatusCode::NOT_FOUND,
            "that source is no longer in this server's roots",
        );
    }
    let opts = VersionsOptions {
        hash,
        jobs: default_jobs(),
        stop_started: false,
    };
    let shown = String::from_utf8_lossy(&path).into_owned();
    let rows = crate::versions::versions(state.driver.clone(), sources, path, opts).await;
    let rows = rows
        .into_iter()
        .map(|row| Row {
            id: row.source.clone(),
            row,
        })
        .collect();
    json(StatusCode::OK, &Answer { path: shown, rows })
}

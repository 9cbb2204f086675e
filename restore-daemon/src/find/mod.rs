//! `GET /api/find`: the entries below a path that match a query, streamed
//! as JSON Lines while the walk runs (`file_restore_wire::find`).
//!
//! The walk is the guest's: only matches cross vsock, and the host needs
//! one call for a whole disk. A virtual path (`/`, a disk, a bucket type, an
//! LVM group) stands for every bucket below it, each mounted on demand as
//! for a listing; a bucket that cannot be searched (locked, no filesystem,
//! a failing mount) is a `skip` line, never the end of the search; one whose
//! content is other buckets (an LVM PV, an md member, an opened container)
//! is passed over without one. A bucket
//! reached from several disks (an LV or md array spanning them) is searched
//! once, under the first disk. Memory is bounded by the depth of the tree
//! (one open directory per level, [`file_restore_wire::find::MAX_DEPTH`]),
//! not by its size; the watchdog counts a running search as activity.
//!
//! Folder: the endpoint here, the compiled query (`filter.rs`), the walk
//! of one bucket (`walk.rs`), the answer's lines (`events.rs`).

mod events;
mod filter;
mod walk;

use crate::bucket::Bucket;
use crate::confine::{self, Last};
use crate::error::ApiError;
use crate::listing::{self, bucket_root};
use crate::state::State;
use crate::stream::{self, ChannelBody};
use crate::vpath::{self, VPath};
use events::{Events, Flow};
use file_restore_wire::find::FindQuery;
use filter::Filter;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use walk::Walker;

/// Where a search starts.
enum Start {
    /// Every bucket below a virtual path: `(disk, bucket)`.
    Buckets(Vec<(String, Arc<Bucket>)>),
    /// A path inside one bucket, resolved and opened.
    Inside {
        /// The directory, or (`is_dir` false) an `O_PATH` descriptor of the
        /// entry itself.
        fd: OwnedFd,
        is_dir: bool,
        /// The bucket's canonical API path.
        prefix: Vec<u8>,
        /// The in-bucket path of `fd` (`/home/alice`; empty for the root).
        rel: Vec<u8>,
    },
}

/// Answers a find call: checks the query and the start (errors are the
/// HTTP answer), then streams the walk.
pub async fn find(
    state: Arc<State>,
    path: VPath,
    query: FindQuery,
) -> Result<ChannelBody, ApiError> {
    let filter = Filter::compile(&query)?;
    let max = query.max_results;
    let guard = state.watchdog.hold();
    let ((), body) = stream::spawn_stream(
        move || {
            let start = start(&state, &path)?;
            Ok(((), (state, start)))
        },
        move |(state, start), w| {
            let _busy = guard;
            run(&state, start, &filter, max, w)
        },
    )
    .await?;
    Ok(body)
}

/// Resolves where the search starts; errors before the answer begins.
fn start(state: &State, path: &VPath) -> Result<Start, ApiError> {
    let VPath::Inside {
        disk,
        kind,
        bucket,
        rest,
    } = path
    else {
        // The same checks (and messages) as a listing of the path.
        listing::list_virtual(state, path)?;
        return Ok(Start::Buckets(buckets_below(state, path)));
    };
    let label = String::from_utf8_lossy(&vpath::canonical(path)).into_owned();
    let root = bucket_root(state, disk, *kind, bucket)?;
    let fd = root
        .open_at(rest, libc::O_PATH, Last::NoFollow)
        .map_err(|e| ApiError::io(&label, &e))?;
    let st = confine::fstat(&fd).map_err(|e| ApiError::io(&label, &e))?;
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let fd = if is_dir {
        confine::open_child_self(&fd, libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(|e| ApiError::io(&label, &e))?
    } else {
        fd
    };
    let mut rel = Vec::new();
    if !rest.is_empty() {
        rel.push(b'/');
        rel.extend_from_slice(rest);
    }
    Ok(Start::Inside {
        fd,
        is_dir,
        prefix: walk::bucket_prefix(disk, *kind, bucket),
        rel,
    })
}

/// The buckets below a virtual path, each device once.
fn buckets_below(state: &State, path: &VPath) -> Vec<(String, Arc<Bucket>)> {
    let mut out: Vec<(String, Arc<Bucket>)> = Vec::new();
    for d in state.disks() {
        let wanted = |b: &Bucket| match path {
            VPath::Root => true,
            VPath::Disk(n) => *n == d.name,
            VPath::Kind(n, k) => *n == d.name && b.kind == *k,
            VPath::Group { disk, kind, group } => {
                *disk == d.name
                    && b.kind == *kind
                    && b.name
                        .strip_prefix(group.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            }
            VPath::Inside { .. } => false,
        };
        for b in d.buckets.iter().filter(|b| wanted(b)) {
            if !out.iter().any(|(_, o)| same_content(o, b)) {
                out.push((d.name.clone(), b.clone()));
            }
        }
    }
    out
}

/// Whether two buckets (of two disks) are one content: one device, one ZFS
/// dataset (which has no device), or, for buckets with neither (a broken
/// one), one name.
fn same_content(a: &Bucket, b: &Bucket) -> bool {
    match (&a.dataset, &b.dataset) {
        (Some(x), Some(y)) => x == y,
        (None, None) if a.device.as_os_str().is_empty() => {
            b.device.as_os_str().is_empty() && a.kind == b.kind && a.name == b.name
        }
        (None, None) => a.device == b.device,
        _ => false,
    }
}

/// Whether a bucket's content is searched as other buckets: an LVM PV (its
/// LVs), an md member (its array), a ZFS pool member (its datasets), an
/// opened LUKS or BitLocker container (its `luks/` or `bitlocker/` bucket).
/// Those are passed over quietly; a locked container, swap or an unknown
/// type is a skip line. An opened ZFS dataset is searched itself.
fn holds_other_buckets(b: &Bucket) -> bool {
    use file_restore_fsmagic::FsType;
    matches!(
        b.fstype,
        FsType::LvmPv | FsType::MdMember | FsType::ZfsMember
    ) || (b.fstype != FsType::Zfs && b.encryption.is_some() && b.locked == Some(false))
}

/// The walk, writing lines into `w`.
fn run(state: &State, start: Start, filter: &Filter, max: u64, w: impl Write) -> io::Result<()> {
    let mut out = Events::new(w, max);
    match start {
        Start::Inside {
            fd,
            is_dir,
            prefix,
            mut rel,
        } => {
            let mut walker = Walker {
                filter,
                out: &mut out,
                prefix,
            };
            if is_dir {
                walker.walk(&fd, &mut rel, 0)?;
            } else {
                walker.single(&fd, &rel)?;
            }
        }
        Start::Buckets(buckets) => {
            for (disk, b) in buckets.into_iter().filter(|(_, b)| !holds_other_buckets(b)) {
                let prefix = walk::bucket_prefix(&disk, b.kind, &b.name);
                let dir = bucket_root(state, &disk, b.kind, &b.name).and_then(|root| {
                    root.open_at(b"", libc::O_RDONLY | libc::O_DIRECTORY, Last::NoFollow)
                        .map_err(|e| ApiError::io(&String::from_utf8_lossy(&prefix), &e))
                });
                let dir = match dir {
                    Ok(d) => d,
                    Err(e) => {
                        out.skip(&prefix, &e.message)?;
                        continue;
                    }
                };
                let mut walker = Walker {
                    filter,
                    out: &mut out,
                    prefix,
                };
                if walker.walk(&dir, &mut Vec::new(), 0)? == Flow::Stop {
                    break;
                }
            }
        }
    }
    let end = out.end()?;
    log::info!(
        "find: {} entries looked at, {} matches{}, {} not searched",
        end.visited,
        end.matched,
        if end.truncated { " (cut)" } else { "" },
        end.skipped
    );
    Ok(())
}

#[cfg(test)]
mod tests;

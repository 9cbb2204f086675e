//! `GET /api/stat`: one entry inside a bucket, not followed, and on request
//! the SHA-256 of a regular file's content, computed in the guest so that
//! comparing a file across many backups (`file-restore versions --hash`)
//! moves 32 bytes per snapshot over vsock instead of the file.

use crate::confine::{self, Last};
use crate::error::ApiError;
use crate::listing::{bucket_root, describe};
use crate::state::State;
use crate::vpath::{self, VPath};
use file_restore_wire::find::StatAnswer;
use file_restore_wire::EntryType;
use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::sync::Arc;

/// Bytes read per step of a hash.
const HASH_CHUNK: usize = 1 << 20;

/// Answers a stat call on a blocking thread (hashing reads the whole file).
pub async fn stat(state: Arc<State>, path: VPath, hash: bool) -> Result<StatAnswer, ApiError> {
    let guard = state.watchdog.hold();
    tokio::task::spawn_blocking(move || {
        let _busy = guard;
        stat_blocking(&state, &path, hash)
    })
    .await
    .map_err(|e| ApiError::internal(format!("stat task failed: {e}")))?
}

fn stat_blocking(state: &State, path: &VPath, hash: bool) -> Result<StatAnswer, ApiError> {
    let VPath::Inside {
        disk,
        kind,
        bucket,
        rest,
    } = path
    else {
        return Err(ApiError::bad_request(
            "stat needs a path inside a bucket (/<disk>/<type>/<bucket>/…)",
        ));
    };
    let canonical = vpath::canonical(path);
    let label = String::from_utf8_lossy(&canonical).into_owned();
    let root = bucket_root(state, disk, *kind, bucket)?;
    let fd = root
        .open_at(rest, libc::O_PATH, Last::NoFollow)
        .map_err(|e| ApiError::io(&label, &e))?;
    let mut entry = describe(&fd, b"", &canonical);
    entry.text =
        String::from_utf8_lossy(rest.rsplit(|&c| c == b'/').next().unwrap_or(b"")).into_owned();
    entry.path = Some(label.clone());
    let sha256 = if hash && entry.entry_type == EntryType::File {
        let file =
            confine::open_child_self(&fd, libc::O_RDONLY).map_err(|e| ApiError::io(&label, &e))?;
        Some(sha256_of(std::fs::File::from(file)).map_err(|e| ApiError::io(&label, &e))?)
    } else {
        None
    };
    Ok(StatAnswer { entry, sha256 })
}

/// The SHA-256 of everything `r` gives, as 64 lowercase hex digits.
fn sha256_of(mut r: impl Read) -> io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; HASH_CHUNK];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            super::sha256_of(&b"abc"[..]).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

//! Backing-chain validation: every file QEMU would open for an image must be
//! a plain file inside the store root.
//!
//! The chain is walked one header at a time: `qemu-img info` (without
//! `--backing-chain`) reports the backing file name of one image without
//! opening it, the name is validated, and only then is the next member
//! inspected. So a backing file naming `/etc/shadow`, a `json:` filename or a
//! protocol is refused before anything opens it. A final
//! `qemu-img info --backing-chain` cross-checks that QEMU sees the same files.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::format;
use super::qemu_img;
use super::refs::{check_external_files, check_header_references, validate_member};
use super::SourceError;

/// Longest backing chain accepted.
pub const MAX_CHAIN_DEPTH: usize = 64;

/// Checks the backing chain (and external data files, vmdk extents) of `img`,
/// opened as `format` (decided by [`super::format::decide`]; never probed
/// here, so a raw image whose bytes look like a qcow2 header has no chain).
/// The members' formats are those their parents' headers record; a member
/// whose parent records none must probe as its extension says (or, without
/// a format-naming extension, reference no other file), see
/// [`format::unrecorded_backing`].
///
/// Every member other than `img` itself must be a regular file whose
/// canonical path lies inside the canonical `store_root`; `json:` filenames,
/// protocols (`nbd://…`, `file:…`) and relative external data files are
/// refused on sight. `img` itself may be a block device. The error names the
/// offending file and the store root.
pub fn check_backing_chain(img: &Path, format: &str, store_root: &Path) -> Result<(), SourceError> {
    let root = fs::canonicalize(store_root).map_err(|e| SourceError::Stat {
        path: store_root.to_path_buf(),
        source: e,
    })?;
    let top = fs::canonicalize(img).map_err(|e| SourceError::Stat {
        path: img.to_path_buf(),
        source: e,
    })?;
    if !top.starts_with(&root) {
        return Err(SourceError::Refused {
            image: top.clone(),
            what: "image",
            file: top.display().to_string(),
            store_root: root,
            reason: "it is not inside the store root".into(),
        });
    }
    let mut current = top.clone();
    let top_format = format;
    let mut format: Option<String> = Some(top_format.to_string());
    let mut seen = HashSet::from([top.clone()]);
    for _ in 0..=MAX_CHAIN_DEPTH {
        // What the member's own header names, before qemu-img opens it.
        if format.as_deref() != Some("raw") {
            check_header_references(&current, &root)?;
        }
        let info = qemu_img::info(&current, format.as_deref())?;
        check_external_files(&current, &info, &root)?;
        let Some(backing) = info.backing_filename.as_deref() else {
            return cross_check(&top, top_format, &root);
        };
        let next = validate_member(&current, "backing file", backing, &root)?;
        if !seen.insert(next.clone()) {
            return Err(SourceError::Refused {
                image: current,
                what: "backing file",
                file: backing.to_string(),
                store_root: root,
                reason: "the backing chain loops".into(),
            });
        }
        // A format the header records is the store's word; without one QEMU
        // probes the (guest-written) backing file, which must then agree.
        format = match info.backing_format.clone() {
            Some(f) => Some(f),
            None => Some(format::unrecorded_backing(&next)?),
        };
        current = next;
    }
    Err(SourceError::ChainTooDeep {
        image: top,
        max: MAX_CHAIN_DEPTH,
    })
}

/// Runs `qemu-img info --backing-chain` on the already validated chain and
/// checks every member it reports again.
fn cross_check(top: &Path, format: &str, root: &Path) -> Result<(), SourceError> {
    let chain = qemu_img::info_chain(top, Some(format))?;
    for (i, member) in chain.iter().enumerate() {
        let path = if i == 0 {
            top.to_path_buf()
        } else {
            let parent = chain[i - 1].filename.as_str();
            let image = PathBuf::from(parent);
            validate_member(&image, "backing file", &member.filename, root)?
        };
        check_external_files(&path, member, root)?;
    }
    Ok(())
}

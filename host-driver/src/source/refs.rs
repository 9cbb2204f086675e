//! The files an image names (backing files, external data files, vmdk
//! extents), each checked before anything opens it: a plain file inside
//! the store root, no `json:` name, no protocol. Used by [`super::format`]
//! (an image's own header, before `qemu-img` opens it) and by
//! [`super::chain`] (every member of a backing chain).

use std::fs;
use std::path::{Path, PathBuf};

use super::header;
use super::qemu_img::ImgInfo;
use super::SourceError;

/// Validates the files `image`'s own header names ([`super::header`]), before
/// anything opens it: each must be a plain file inside `store_root`, a
/// relative external data file is refused.
pub(super) fn check_header_references(image: &Path, store_root: &Path) -> Result<(), SourceError> {
    let root = fs::canonicalize(store_root).map_err(|e| SourceError::Stat {
        path: store_root.to_path_buf(),
        source: e,
    })?;
    let named = header::references(image).map_err(|e| SourceError::Stat {
        path: image.to_path_buf(),
        source: e,
    })?;
    for r in named {
        if r.what == "external data file" && !Path::new(&r.name).is_absolute() {
            return Err(relative_data_file(image, r.name, &root));
        }
        validate_member(image, r.what, &r.name, &root)?;
    }
    Ok(())
}

fn relative_data_file(image: &Path, file: String, root: &Path) -> SourceError {
    // QEMU opens a relative data file against its own working directory, not
    // the image's: refuse rather than guess.
    SourceError::Refused {
        image: image.to_path_buf(),
        what: "external data file",
        file,
        store_root: root.to_path_buf(),
        reason: "a relative external data file is resolved against QEMU's working directory".into(),
    }
}

pub(super) fn check_external_files(
    image: &Path,
    info: &ImgInfo,
    root: &Path,
) -> Result<(), SourceError> {
    for (what, file) in info.external_files() {
        if what == "external data file" && !Path::new(&file).is_absolute() {
            return Err(relative_data_file(image, file, root));
        }
        validate_member(image, what, &file, root)?;
    }
    Ok(())
}

/// True when QEMU would take `name` as `protocol:…` (a colon before any slash).
fn has_protocol_prefix(name: &str) -> bool {
    match (name.find(':'), name.find('/')) {
        (Some(c), Some(s)) => c < s,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Validates one file name found in `image`'s header and returns its canonical path.
pub(super) fn validate_member(
    image: &Path,
    what: &'static str,
    name: &str,
    root: &Path,
) -> Result<PathBuf, SourceError> {
    let refuse = |reason: String| SourceError::Refused {
        image: image.to_path_buf(),
        what,
        file: name.to_string(),
        store_root: root.to_path_buf(),
        reason,
    };
    if name.starts_with("json:") {
        return Err(refuse("json: filenames are not allowed".into()));
    }
    if name.contains("://") || has_protocol_prefix(name) {
        return Err(refuse("protocols are not allowed, only plain files".into()));
    }
    if name.is_empty() {
        return Err(refuse("the file name is empty".into()));
    }
    let resolved = if Path::new(name).is_absolute() {
        PathBuf::from(name)
    } else {
        image.parent().unwrap_or(Path::new("/")).join(name)
    };
    let canonical =
        fs::canonicalize(&resolved).map_err(|e| refuse(format!("it cannot be resolved ({e})")))?;
    if !canonical.starts_with(root) {
        return Err(refuse(format!(
            "it resolves to '{}', outside the store root",
            canonical.display()
        )));
    }
    let meta = fs::metadata(&canonical).map_err(|e| refuse(format!("cannot stat it ({e})")))?;
    if !meta.is_file() {
        return Err(refuse("it is not a regular file".into()));
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::has_protocol_prefix;

    #[test]
    fn protocol_prefix() {
        assert!(has_protocol_prefix("nbd:localhost:10809"));
        assert!(has_protocol_prefix("file:/etc/shadow"));
        assert!(has_protocol_prefix("json:{}"));
        assert!(!has_protocol_prefix("/a/b:c"));
        assert!(!has_protocol_prefix("base.qcow2"));
        assert!(!has_protocol_prefix("../x/a:b"));
    }
}

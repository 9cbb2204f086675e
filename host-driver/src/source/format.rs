//! Which format an image is attached as.
//!
//! The format comes from what the user or the store says, the file's
//! extension ([`format_for_extension`]), not from the file's content: the
//! content of a disk image is written by the guest, and a guest that writes a
//! VMDK descriptor or a qcow2 header with a backing file into sector 0 of its
//! raw disk would otherwise make a restore of its backup open another VM's
//! disk. So:
//!
//! - `.raw` (and `.iso`) is raw, whatever it holds: qemu sees bytes and
//!   follows nothing.
//! - Another known extension (`.qcow2`, `.vmdk`, `.vhd`/`.vpc`, `.vhdx`,
//!   `.vdi`, `.qed`) is opened as that format only; a file whose content
//!   probes as a different format is refused, the error naming both.
//! - Only a file without one of these extensions (no extension, `.img`, or
//!   any other) has its format probed, and a probed image may reference no
//!   other file: a probed qcow2 with a backing or external data file, or any
//!   probed vmdk (a descriptor always names extents), is refused.
//!
//! Images whose format comes from the extension still get their backing
//! chain validated ([`super::check_backing_chain`]).

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use super::qemu_img::{self, ImgInfo};
use super::SourceError;

/// Extensions (lower case) that decide the format, and the QEMU format each
/// one means. `.img` is absent: it is used for raw and qcow2 images alike.
pub const EXTENSION_FORMATS: &[(&str, &str)] = &[
    ("raw", "raw"),
    ("iso", "raw"),
    ("qcow2", "qcow2"),
    ("vmdk", "vmdk"),
    ("vhd", "vpc"),
    ("vpc", "vpc"),
    ("vhdx", "vhdx"),
    ("vdi", "vdi"),
    ("qed", "qed"),
];

/// Where an image's format came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The file extension said it.
    Extension,
    /// `qemu-img` probed the content (no format-naming extension).
    Probed,
}

/// An image's format, how it was decided, and `qemu-img info` opened with
/// exactly that format.
#[derive(Debug, Clone)]
pub struct Decided {
    /// The QEMU format driver to attach the image with.
    pub format: String,
    /// Where [`Self::format`] came from.
    pub origin: Origin,
    /// `qemu-img info -f FORMAT` of the image.
    pub info: ImgInfo,
}

/// The format `path`'s extension names (case-insensitive), if it names one.
pub fn format_for_extension(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?;
    EXTENSION_FORMATS
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        .map(|&(_, f)| f)
}

/// Decides the format of the image at `path` (see the module documentation)
/// and reads its header with that format.
///
/// `path` must be a regular file or a block device; anything else (a fifo, a
/// socket) is refused before `qemu-img` could block on it.
///
/// Before `qemu-img` opens a qcow2 or vmdk, the files its header names (read
/// by [`super::header`]) must pass the same checks as backing files inside
/// `store_root`; a probed image that names any is refused unopened.
pub fn decide(path: &Path, store_root: &Path) -> Result<Decided, SourceError> {
    let meta = fs::metadata(path).map_err(|e| SourceError::Stat {
        path: path.to_path_buf(),
        source: e,
    })?;
    let ft = meta.file_type();
    if !ft.is_file() && !ft.is_block_device() {
        return Err(SourceError::UnsupportedKind(path.to_path_buf()));
    }
    match format_for_extension(path) {
        Some(format) => from_extension(path, format, store_root),
        None => probed(path),
    }
}

fn from_extension(
    path: &Path,
    format: &'static str,
    store_root: &Path,
) -> Result<Decided, SourceError> {
    let decided = |info| Decided {
        format: format.to_string(),
        origin: Origin::Extension,
        info,
    };
    if format == "raw" {
        // Raw is what the store says: no probe, whatever the bytes look like.
        return Ok(decided(qemu_img::info(path, Some("raw"))?));
    }
    // A qcow2 or vmdk header under another format's name is refused before
    // qemu-img's probe could open what it names.
    let sniffed = super::header::kind(path).map_err(|e| SourceError::Stat {
        path: path.to_path_buf(),
        source: e,
    })?;
    if let Some(kind) = sniffed.filter(|k| k.format() != format) {
        return Err(mismatch(path, format, kind.format(), None));
    }
    if sniffed.is_some() {
        super::refs::check_header_references(path, store_root)?;
    }
    let probed = qemu_img::info(path, None)?.format;
    // qemu's vpc probe looks only at the start of the file, but a fixed VHD
    // has its footer at the end: it probes as raw and opens fine as vpc.
    let fixed_vhd = format == "vpc" && probed == "raw";
    if probed != format && !fixed_vhd {
        return Err(mismatch(path, format, &probed, None));
    }
    match qemu_img::info(path, Some(format)) {
        Ok(info) => Ok(decided(info)),
        Err(SourceError::NotAnImage { stderr, .. }) => {
            Err(mismatch(path, format, &probed, Some(stderr)))
        }
        Err(e) => Err(e),
    }
}

/// The format of a backing file `path` whose parent's header records none.
///
/// QEMU then probes the backing file's (guest-written) content itself, so the
/// probe must agree with the format `path`'s extension names, and a member
/// without such an extension must be self-contained, as [`decide`] requires
/// of probed images.
pub fn unrecorded_backing(path: &Path) -> Result<String, SourceError> {
    let Some(format) = format_for_extension(path) else {
        return Ok(probed(path)?.format);
    };
    let probed = qemu_img::info(path, None)?.format;
    if probed != format {
        let why = "its parent's header records no backing format, so QEMU would take the \
                   probed one";
        return Err(mismatch(path, format, &probed, Some(why.into())));
    }
    Ok(probed)
}

fn mismatch(path: &Path, format: &str, probed: &str, detail: Option<String>) -> SourceError {
    SourceError::FormatMismatch {
        path: path.to_path_buf(),
        extension_format: format.to_string(),
        probed: probed.to_string(),
        detail: detail.map(|d| format!(" ({d})")).unwrap_or_default(),
    }
}

fn probed(path: &Path) -> Result<Decided, SourceError> {
    // Our own reading first: qemu-img would open what the header names.
    let named = super::header::references(path).map_err(|e| SourceError::Stat {
        path: path.to_path_buf(),
        source: e,
    })?;
    if !named.is_empty() {
        let references: Vec<String> = named
            .iter()
            .map(|r| format!("{} '{}'", r.what, r.name))
            .collect();
        return Err(SourceError::ProbedReferences {
            path: path.to_path_buf(),
            format: if named.iter().any(|r| r.what.starts_with("vmdk")) {
                "vmdk"
            } else {
                "qcow2"
            }
            .into(),
            references: references.join(", "),
        });
    }
    let info = qemu_img::info(path, None)?;
    let mut refs: Vec<String> = Vec::new();
    if let Some(b) = &info.backing_filename {
        refs.push(format!("backing file '{b}'"));
    }
    for (what, file) in info.external_files() {
        let r = format!("{what} '{file}'");
        if !refs.contains(&r) {
            refs.push(r);
        }
    }
    if info.format == "vmdk" && refs.is_empty() {
        refs.push("vmdk extents".into());
    }
    if !refs.is_empty() {
        return Err(SourceError::ProbedReferences {
            path: path.to_path_buf(),
            format: info.format,
            references: refs.join(", "),
        });
    }
    // Reopen with the probed format fixed, so what is checked later is
    // exactly what QEMU will be told.
    let format = info.format.clone();
    let info = qemu_img::info(path, Some(&format))?;
    Ok(Decided {
        format,
        origin: Origin::Probed,
        info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_name_formats() {
        for (name, want) in [
            ("a.raw", Some("raw")),
            ("a.RAW", Some("raw")),
            ("a.iso", Some("raw")),
            ("a.qcow2", Some("qcow2")),
            ("a.vmdk", Some("vmdk")),
            ("a.vhd", Some("vpc")),
            ("a.vpc", Some("vpc")),
            ("a.vhdx", Some("vhdx")),
            ("a.vdi", Some("vdi")),
            ("a.qed", Some("qed")),
            ("a.img", None),
            ("a", None),
            ("a.bin", None),
            ("raw", None),
        ] {
            assert_eq!(format_for_extension(Path::new(name)), want, "{name}");
        }
    }
}

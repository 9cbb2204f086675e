//! What the user passes as SOURCE: an image file, a directory of disk images
//! (one backup snapshot) or an NBD URI; and the disks a VM gets from it.
//!
//! - [`parse_source`] classifies the argument.
//! - [`find_image_files`] lists the image files cheaply (stat only), enough
//!   for [`vm_name_from_identities`], the VM map key.
//! - [`resolve_images`] adds each image's format, decided by [`format`](mod@format)
//!   from the file extension (content is probed only for files without a
//!   format-naming extension, and a probed image may reference no other
//!   file); the format is always passed on to QEMU, never guessed again.
//!   Backing chains are checked ([`check_backing_chain`]) against the store
//!   root ([`store_root_for`]).
//!
//! Folder: parsing SOURCE, finding and identifying its images, deciding
//! their formats ([`format`](mod@format), reading headers with [`header`]), checking
//! the files they name (`refs.rs`) and their backing chains (`chain.rs`),
//! through `qemu-img` (`qemu_img.rs`), a backup store's snapshots
//! ([`store`]). May import `qemu` and `util` only.

mod chain;
mod escape;
pub mod format;
pub mod header;
mod qemu_img;
mod refs;
mod sanity;
pub mod store;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use chain::{check_backing_chain, MAX_CHAIN_DEPTH};
pub use escape::{identity_hash, unit_escape};
pub use qemu_img::{QEMU_IMG, QEMU_IMG_TIMEOUT};

/// File extensions taken as disk images when SOURCE is a directory.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "qcow2", "raw", "img", "vmdk", "vhdx", "vdi", "qed", "vpc", "vhd", "iso",
];

/// The guest configuration file a backup snapshot directory may hold.
pub const GUEST_CONFIG: &str = "guest.conf";

/// Errors about a SOURCE and its images.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The argument is empty.
    #[error("SOURCE is empty: give an image file, a directory of disk images or an nbd:// URI")]
    Empty,
    /// The path does not exist or cannot be examined.
    #[error(
        "source '{path}' cannot be used: {source}; give an existing image file, a directory of \
         disk images or an nbd:// URI"
    )]
    NotFound {
        /// The path given.
        path: PathBuf,
        /// Why it cannot be used.
        source: io::Error,
    },
    /// The path is a socket, fifo or character device.
    #[error("source '{0}' is neither an image file, a block device nor a directory")]
    UnsupportedKind(PathBuf),
    /// A URI with a scheme other than `nbd` or `nbd+unix`.
    #[error(
        "unsupported URI scheme '{scheme}' in '{uri}': only nbd:// and nbd+unix:// are supported"
    )]
    UnsupportedScheme {
        /// The whole argument.
        uri: String,
        /// Its scheme.
        scheme: String,
    },
    /// A malformed NBD URI.
    #[error(
        "invalid NBD URI '{uri}': {reason} (expected nbd://HOST[:PORT][/EXPORT] or \
         nbd+unix:///[EXPORT]?socket=/PATH/TO/SOCKET)"
    )]
    BadNbdUri {
        /// The whole argument.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A directory without disk images.
    #[error("no disk images in directory '{dir}': looked for files ending in {extensions}")]
    NoImages {
        /// The directory.
        dir: PathBuf,
        /// The extensions looked for, as a list (`.qcow2, .raw, …`).
        extensions: String,
    },
    /// A directory that cannot be read.
    #[error("cannot read directory '{dir}': {source}")]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A file that cannot be examined.
    #[error("cannot examine '{path}': {source}")]
    Stat {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// `qemu-img` could not be started.
    #[error("could not run {QEMU_IMG} ({source}): install QEMU's tools (Debian: qemu-utils)")]
    QemuImgRun {
        /// The error from spawning it.
        source: io::Error,
    },
    /// A `qemu-img` call on a file did not finish in time and was killed.
    #[error(
        "{QEMU_IMG} did not finish on '{path}' within {secs} s and was killed (timed out): \
         is the file on a hung mount or an unresponsive device?"
    )]
    QemuImgTimeout {
        /// The file.
        path: PathBuf,
        /// The limit, seconds.
        secs: f64,
    },
    /// The extension names a non-raw format the content does not have.
    #[error(
        "'{path}' is named as a {extension_format} image, but its content is {probed}{detail}: \
         refused; rename it with the extension of its real format if it is trusted"
    )]
    FormatMismatch {
        /// The file.
        path: PathBuf,
        /// The format its extension names.
        extension_format: String,
        /// The format `qemu-img` probed from the content.
        probed: String,
        /// qemu-img's error when opened as `extension_format` (with a
        /// leading ` (`…`)`), or empty.
        detail: String,
    },
    /// An image without a format-naming extension whose probed content
    /// references other files.
    #[error(
        "'{path}' has no extension naming its format, and its content (probed as {format}) \
         references other files ({references}): refused, as a guest can write such content \
         into a raw disk; if the image is trusted, rename it with the extension of its format \
         (.{format})"
    )]
    ProbedReferences {
        /// The file.
        path: PathBuf,
        /// The probed format.
        format: String,
        /// What it references.
        references: String,
    },
    /// `qemu-img info` failed on a file.
    #[error("'{path}' is not a disk image qemu can read: {stderr}")]
    NotAnImage {
        /// The file.
        path: PathBuf,
        /// What qemu-img printed on stderr.
        stderr: String,
    },
    /// `qemu-img info` printed something unexpected.
    #[error("unexpected output of '{QEMU_IMG} info' for '{path}': {detail}")]
    QemuImgOutput {
        /// The file.
        path: PathBuf,
        /// The parse error.
        detail: String,
    },
    /// A backing file, data file or extent that is not allowed.
    #[error(
        "{what} '{file}' of image '{image}' refused: {reason}; only plain files inside the \
         store root '{store_root}' are allowed"
    )]
    Refused {
        /// The image whose header names the file.
        image: PathBuf,
        /// `backing file`, `external data file`, `vmdk extent` or `image`.
        what: &'static str,
        /// The file name as found.
        file: String,
        /// The store root it had to be inside.
        store_root: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// A file too small to hold a disk.
    #[error("'{path}' does not look like a disk image: {reason}")]
    NotADisk {
        /// The file.
        path: PathBuf,
        /// What was looked for.
        reason: String,
    },
    /// A backing chain longer than [`MAX_CHAIN_DEPTH`].
    #[error("backing chain of '{image}' is longer than {max} images: refused")]
    ChainTooDeep {
        /// The top image.
        image: PathBuf,
        /// The limit.
        max: usize,
    },
}

/// What the user passed as SOURCE. Paths are canonical.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// One disk image file (or block device).
    Image(PathBuf),
    /// A directory of disk images: one VM's disks, e.g. a backup snapshot.
    Directory(PathBuf),
    /// An `nbd://` or `nbd+unix://` URI.
    Nbd(String),
}

/// What identifies the contents of an image file: if any of these change,
/// the image was replaced or modified and gets a new VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageIdentity {
    /// Device number of the file system holding it.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes (0 for block devices).
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime: i64,
}

impl ImageIdentity {
    /// The identity of the file at `path` (following symlinks).
    pub fn of(path: &Path) -> Result<ImageIdentity, SourceError> {
        let m = fs::metadata(path).map_err(|e| SourceError::Stat {
            path: path.to_path_buf(),
            source: e,
        })?;
        Ok(ImageIdentity {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
        })
    }
}

/// An image file found in a SOURCE, before its format is detected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFile {
    /// The disk's name (the file stem).
    pub name: String,
    /// Canonical path (or the NBD URI).
    pub path: PathBuf,
    /// Its identity (zeros for NBD).
    pub identity: ImageIdentity,
}

/// One disk of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskImage {
    /// The disk's name in guest paths (the file stem; `nbd` for NBD).
    pub name: String,
    /// Canonical path of the image (or the NBD URI).
    pub path: PathBuf,
    /// The format (see [`format`](mod@format)); always passed to QEMU as `format=`.
    pub format: String,
    /// Guest-visible size in bytes (0 when unknown, as for NBD).
    pub virtual_size: u64,
    /// Device, inode, size and mtime of the file.
    pub identity: ImageIdentity,
    /// What `qemu-img check` found wrong with an image that is opened anyway
    /// (read-only, as every image); the user is warned on each use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damage: Option<String>,
}

/// Classifies a SOURCE argument.
///
/// `nbd://` and `nbd+unix://` URIs are checked for shape; any other
/// `scheme://` is refused. Anything else must be an existing directory,
/// regular file or block device; its canonical path is kept.
pub fn parse_source(arg: &str) -> Result<Source, SourceError> {
    if arg.is_empty() {
        return Err(SourceError::Empty);
    }
    if let Some((scheme, rest)) = arg.split_once("://") {
        let is_scheme = scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if is_scheme {
            return match scheme {
                "nbd" | "nbd+unix" => {
                    validate_nbd(arg, scheme, rest)?;
                    Ok(Source::Nbd(arg.to_string()))
                }
                _ => Err(SourceError::UnsupportedScheme {
                    uri: arg.to_string(),
                    scheme: scheme.to_string(),
                }),
            };
        }
    }
    let path = Path::new(arg);
    let not_found = |e: io::Error| SourceError::NotFound {
        path: path.to_path_buf(),
        source: e,
    };
    let canonical = fs::canonicalize(path).map_err(not_found)?;
    let meta = fs::metadata(&canonical).map_err(not_found)?;
    let ft = meta.file_type();
    if ft.is_dir() {
        Ok(Source::Directory(canonical))
    } else if ft.is_file() || ft.is_block_device() {
        Ok(Source::Image(canonical))
    } else {
        Err(SourceError::UnsupportedKind(path.to_path_buf()))
    }
}

fn validate_nbd(uri: &str, scheme: &str, rest: &str) -> Result<(), SourceError> {
    match crate::qemu::nbd::uri_problem(scheme, rest) {
        Some(reason) => Err(SourceError::BadNbdUri {
            uri: uri.to_string(),
            reason: reason.to_string(),
        }),
        None => Ok(()),
    }
}

fn stem_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| String::from_utf8_lossy(s.as_bytes()).into_owned())
        .unwrap_or_else(|| "disk".to_string())
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// The image files of a SOURCE, without running qemu-img: enough to compute
/// the VM name. A directory yields its regular files (symlinks are not
/// followed) with an image extension, sorted by name.
pub fn find_image_files(src: &Source) -> Result<Vec<ImageFile>, SourceError> {
    match src {
        Source::Nbd(uri) => Ok(vec![ImageFile {
            name: "nbd".into(),
            path: PathBuf::from(uri),
            identity: ImageIdentity::default(),
        }]),
        Source::Image(p) => Ok(vec![ImageFile {
            name: stem_of(p),
            path: p.clone(),
            identity: ImageIdentity::of(p)?,
        }]),
        Source::Directory(dir) => {
            let read_err = |e| SourceError::ReadDir {
                dir: dir.clone(),
                source: e,
            };
            let mut paths = Vec::new();
            for entry in fs::read_dir(dir).map_err(read_err)? {
                let entry = entry.map_err(read_err)?;
                let path = entry.path();
                let ft = entry.file_type().map_err(|e| SourceError::Stat {
                    path: path.clone(),
                    source: e,
                })?;
                if ft.is_file() && has_image_extension(&path) {
                    paths.push(path);
                }
            }
            if paths.is_empty() {
                let extensions = IMAGE_EXTENSIONS
                    .iter()
                    .map(|e| format!(".{e}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(SourceError::NoImages {
                    dir: dir.clone(),
                    extensions,
                });
            }
            paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
            paths
                .into_iter()
                .map(|path| {
                    Ok(ImageFile {
                        name: stem_of(&path),
                        identity: ImageIdentity::of(&path)?,
                        path,
                    })
                })
                .collect()
        }
    }
}

/// The disks of a SOURCE with their formats, backing chains checked.
///
/// An image file gives one disk named by its stem; a directory every image
/// file in it (see [`find_image_files`]), except vmdk extent files that
/// another image in the directory uses; NBD one raw disk named `nbd`.
/// Each image's format is decided by [`format::decide`] (the extension, or
/// a probe restricted to self-contained images), and its backing chain is
/// checked with [`check_backing_chain`] against [`store_root_for`] the image.
/// The first error, in file order, of a file that is not such an extent is
/// returned.
pub fn resolve_images(src: &Source) -> Result<Vec<DiskImage>, SourceError> {
    let files = find_image_files(src)?;
    if let Source::Nbd(_) = src {
        return Ok(files
            .into_iter()
            .map(|f| DiskImage {
                name: f.name,
                path: f.path,
                format: "raw".into(),
                virtual_size: 0,
                identity: f.identity,
                damage: None,
            })
            .collect());
    }
    let lone_file = matches!(src, Source::Image(_));
    let mut results = Vec::with_capacity(files.len());
    let mut extents: HashSet<PathBuf> = HashSet::new();
    for f in files {
        let r = resolve_one(&f, lone_file);
        if let Ok((_, decided)) = &r {
            for (what, file) in decided.info.external_files() {
                if what == "vmdk extent" {
                    let p = f.path.parent().unwrap_or(Path::new("/")).join(file);
                    if let Ok(c) = fs::canonicalize(p) {
                        if c != f.path {
                            extents.insert(c);
                        }
                    }
                }
            }
        }
        results.push((f.path, r));
    }
    // A flat vmdk extent (raw bytes named .vmdk) fails on its own; it is
    // part of its descriptor's disk, already validated with it.
    let mut disks = Vec::with_capacity(results.len());
    for (path, r) in results {
        if extents.contains(&path) {
            continue;
        }
        disks.push(r?.0);
    }
    Ok(disks)
}

fn resolve_one(
    f: &ImageFile,
    lone_file: bool,
) -> Result<(DiskImage, format::Decided), SourceError> {
    let root = store_root_for(&f.path);
    let decided = format::decide(&f.path, &root)?;
    check_backing_chain(&f.path, &decided.format, &root)?;
    // A blank raw disk in a snapshot directory is normal (a scratch
    // disk); a lone SOURCE file that holds no disk is a mistake.
    let damage = sanity::check_content(&f.path, &decided.format, lone_file)?;
    let disk = DiskImage {
        name: f.name.clone(),
        path: f.path.clone(),
        format: decided.format.clone(),
        virtual_size: decided.info.virtual_size,
        identity: f.identity.clone(),
        damage,
    };
    Ok((disk, decided))
}

/// True for a backup snapshot directory name: `<type>-<digits>`, such as
/// `qemu-1700000000`.
fn is_snapshot_dir_name(name: &[u8]) -> bool {
    let Some(dash) = name.iter().rposition(|&b| b == b'-') else {
        return false;
    };
    let (kind, epoch) = (&name[..dash], &name[dash + 1..]);
    !epoch.is_empty()
        && epoch.iter().all(u8::is_ascii_digit)
        && kind.first().is_some_and(u8::is_ascii_lowercase)
        && kind
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

/// The snapshot directory of the store layout
/// `<store>/<vmid>/<type>-<epoch>/` containing `image`, if it is one.
fn snapshot_store(dir: &Path) -> Option<PathBuf> {
    let snap = dir.file_name()?.as_bytes();
    let vmid_dir = dir.parent()?;
    let vmid = vmid_dir.file_name()?.as_bytes();
    let store = vmid_dir.parent()?;
    let ok = is_snapshot_dir_name(snap)
        && !vmid.is_empty()
        && vmid.iter().all(u8::is_ascii_digit)
        && store.parent().is_some(); // never the file system root
    ok.then(|| store.to_path_buf())
}

/// The directory every member of `image`'s backing chain must be inside.
///
/// In the backup store layout `<store>/<vmid>/<type>-<epoch>/<disk>` (the
/// snapshot directory named like `qemu-1700000000`, the vmid all digits)
/// it is `<store>`, so incremental backups may use earlier snapshots of the
/// same store. Otherwise it is the image's own directory.
pub fn store_root_for(image: &Path) -> PathBuf {
    let image = fs::canonicalize(image).unwrap_or_else(|_| image.to_path_buf());
    let dir = image.parent().unwrap_or(Path::new("/")).to_path_buf();
    snapshot_store(&dir).unwrap_or(dir)
}

/// The snapshot's `guest.conf`, when SOURCE is a directory holding one or an
/// image inside a backup snapshot directory that holds one.
pub fn guest_config(src: &Source) -> Option<PathBuf> {
    let dir = match src {
        Source::Directory(d) => d.clone(),
        Source::Image(p) => {
            let d = p.parent()?;
            snapshot_store(d)?;
            d.to_path_buf()
        }
        Source::Nbd(_) => return None,
    };
    let conf = dir.join(GUEST_CONFIG);
    fs::symlink_metadata(&conf)
        .ok()
        .filter(|m| m.is_file())
        .map(|_| conf)
}

/// The VM map key for a SOURCE: the systemd-unit-escaped
/// `qemu_<canonical source>` followed by `_` and [`identity_hash`] of the
/// images' identities (from [`find_image_files`], without running
/// qemu-img), so a replaced or modified image gets a new VM.
pub fn vm_name_from_identities(src: &Source, ids: &[ImageIdentity]) -> String {
    let mut key = b"qemu_".to_vec();
    match src {
        Source::Image(p) | Source::Directory(p) => key.extend_from_slice(p.as_os_str().as_bytes()),
        Source::Nbd(uri) => key.extend_from_slice(uri.as_bytes()),
    }
    format!("{}_{}", unit_escape(&key), identity_hash(ids))
}

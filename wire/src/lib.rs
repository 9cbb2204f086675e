//! The contract between the restore daemon (inside the VM) and the host driver.
//!
//! Everything both sides must agree on lives here and nowhere else: the API
//! paths, the authorization scheme, the guest's proof that it knows the ticket
//! ([`proof`], one computation for both sides), the JSON shapes of entries and
//! status, and how paths are carried (base64 of raw bytes, because file names
//! on a disk image need not be UTF-8). This crate has no OS code on purpose,
//! so that it builds anywhere and stays small.

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};

pub mod find;
pub mod map;
pub mod proof;
pub mod vpath;

/// Version of the HTTP API. The host refuses a daemon that reports another one.
pub const API_VERSION: u32 = 1;

/// Default vsock port the daemon listens on.
pub const DEFAULT_PORT: u32 = 1024;

/// Host vsock port the daemon connects to once it listens (guest → host, CID 2),
/// to say "my vsock driver is up". The host connects to the guest only after
/// this signal when it uses the vhost-user sidecar: vhost-device-vsock 0.3
/// stops serving the VM for good if a host connection arrives in the short
/// window after the guest's memory is mapped but before its RX queue is
/// ready (docs/ARCHITECTURE.md, "Readiness"). The connection itself is the signal: it
/// carries no data.
pub const READY_PORT: u32 = 1025;

/// The virtio serial of the storage-tools disk (lvm, mdadm, cryptsetup on a
/// read-only squashfs) the host attaches after the SOURCE's disks when it has
/// one. The daemon never lists it; the host never gives a SOURCE disk this
/// serial.
pub const TOOLS_SERIAL: &str = "file-restore-tools";

/// Authorization scheme: `Authorization: FileRestoreTicket <ticket>`.
pub const TICKET_SCHEME: &str = "FileRestoreTicket";

/// Maximum number of extract streams the daemon runs at once.
pub const MAX_CONCURRENT_EXTRACTS: usize = 8;

/// API endpoint paths.
pub mod endpoint {
    /// `GET ?nonce=<hex>` (no ticket): the guest's proof that it knows the
    /// ticket ([`crate::proof`]); the host asks for it first on every connection.
    pub const HELLO: &str = "/api/hello";
    /// `GET`: uptime, idle time left, disks, scan state (liveness only without a ticket).
    pub const STATUS: &str = "/api/status";
    /// `GET ?path=<base64>`: the entries below a path.
    pub const LIST: &str = "/api/list";
    /// `GET ?path=<base64>&format=plain|zip|tar[&zstd=1]`: a file or directory stream.
    pub const EXTRACT: &str = "/api/extract";
    /// `POST`: power the VM off.
    pub const STOP: &str = "/api/stop";
    /// `POST` with an [`crate::UnlockRequest`] body: try the passphrases on
    /// every locked LUKS container, open what they fit (read-only) and scan
    /// what appears; answers an [`crate::UnlockAnswer`].
    pub const UNLOCK: &str = "/api/unlock";
    /// `GET ?path=<base64>[&from=<byte offset>]`: where a regular file's
    /// bytes lie on the VM's disks, one page at a time ([`crate::map::FileMap`]).
    pub const MAP: &str = "/api/map";
    /// `GET ?path=<base64>&name=…&max=…` ([`crate::find::FindQuery`]): the
    /// entries below a path that match, streamed as JSON Lines of
    /// [`crate::find::FindEvent`]s while the daemon walks.
    pub const FIND: &str = "/api/find";
    /// `GET ?path=<base64>[&hash=sha256]`: one entry, not followed, with its
    /// content's SHA-256 on request ([`crate::find::StatAnswer`]).
    pub const STAT: &str = "/api/stat";
}

/// The kind of an entry, serialized as one letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryType {
    /// A virtual level: a disk, a bucket type or a bucket.
    #[serde(rename = "v")]
    Virtual,
    /// A directory.
    #[serde(rename = "d")]
    Directory,
    /// A regular file.
    #[serde(rename = "f")]
    File,
    /// A symbolic link (`target` holds where it points).
    #[serde(rename = "l")]
    Symlink,
    /// A character device.
    #[serde(rename = "c")]
    CharDevice,
    /// A block device.
    #[serde(rename = "b")]
    BlockDevice,
    /// A named pipe.
    #[serde(rename = "p")]
    Fifo,
    /// A Unix socket.
    #[serde(rename = "s")]
    Socket,
}

impl EntryType {
    /// The one-letter code used on the wire and in text output.
    pub fn letter(self) -> char {
        match self {
            EntryType::Virtual => 'v',
            EntryType::Directory => 'd',
            EntryType::File => 'f',
            EntryType::Symlink => 'l',
            EntryType::CharDevice => 'c',
            EntryType::BlockDevice => 'b',
            EntryType::Fifo => 'p',
            EntryType::Socket => 's',
        }
    }
}

/// One entry of a listing: the contract with the GUI file browser.
///
/// `filepath` is the base64 of the full path (raw bytes), usable as the
/// `path` argument of the next list or extract call. `text` is the name,
/// lossily converted to UTF-8 for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Base64 (standard alphabet, padded) of the full path.
    pub filepath: String,
    /// The entry's name for display (lossy UTF-8).
    pub text: String,
    /// What kind of entry this is.
    #[serde(rename = "type")]
    pub entry_type: EntryType,
    /// True when there is nothing below this entry to list.
    pub leaf: bool,
    /// Size in bytes, where known.
    pub size: Option<u64>,
    /// Modification time in seconds since the epoch, where known.
    pub mtime: Option<i64>,
    /// Where a symlink points (lossy UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// For buckets: the detected filesystem type (`ext4`, `xfs`, `swap`, …),
    /// as libblkid names it (also what cannot be read: `BitLocker`, `minix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fstype: Option<String>,
    /// For buckets: the filesystem's label, when it has one (`Windows`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// For LUKS containers: `LUKS1` or `LUKS2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
    /// For LUKS containers: true until a passphrase opens it; its content is
    /// then the bucket `luks/<name>` of the same disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
    /// What could not be read of this entry, when something could not (a
    /// symlink target the daemon refuses, which an archive of the entry
    /// refuses the same way); the other fields are filled in as far as known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The whole path (lossy UTF-8), in the answers of find and stat, where
    /// entries of many directories come together; `filepath` stays the exact
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl Entry {
    /// The full path of this entry as raw bytes.
    pub fn path_bytes(&self) -> Result<Vec<u8>, PathDecodeError> {
        decode_path(&self.filepath)
    }
}

/// Scan state of the daemon's disk discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanState {
    /// Disks are still being scanned; listings may be incomplete.
    Scanning,
    /// The scan is finished.
    Done,
}

/// A disk as reported by status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskStatus {
    /// The disk's name in paths (its virtio serial).
    pub name: String,
    /// Buckets found on the disk, as `type/name` (e.g. `part/1`), with their filesystem type.
    pub buckets: Vec<BucketStatus>,
}

/// A bucket as reported by status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketStatus {
    /// `part/1`, `raw/raw`, …
    pub path: String,
    /// Detected filesystem type.
    pub fstype: String,
    /// The filesystem's label, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Whether it is mounted right now.
    pub mounted: bool,
    /// Whether a mount of it is in progress right now: the daemon answers
    /// status from a snapshot and never waits for a mount to finish. False
    /// from daemons that do not report it.
    #[serde(default)]
    pub mounting: bool,
    /// For LUKS containers: `LUKS1` or `LUKS2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
    /// For LUKS containers: whether no passphrase has opened it yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
    /// Why the bucket cannot be read (an LV whose PV is missing, an md array
    /// that cannot start), when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Longest [`UnlockRequest`] body the daemon reads.
pub const MAX_UNLOCK_BODY: usize = 64 * 1024;

/// Most passphrases one [`UnlockRequest`] may carry.
pub const MAX_PASSPHRASES: usize = 64;

/// Body of `POST /api/unlock`. The passphrases live only in the daemon's
/// memory while they are tried (each goes to `cryptsetup` on a pipe).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnlockRequest {
    /// The passphrases, base64 of their raw bytes (standard alphabet), tried
    /// in order on every locked container.
    pub passphrases: Vec<String>,
}

impl std::fmt::Debug for UnlockRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a passphrase in a log line or a panic message.
        write!(f, "UnlockRequest({} passphrases)", self.passphrases.len())
    }
}

/// What became of one LUKS container in an unlock call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnlockOutcome {
    /// A passphrase opened it in this call.
    Opened,
    /// It was open already.
    AlreadyOpen,
    /// None of the passphrases opens it.
    WrongKey,
    /// Opening failed for another reason (`message` says which).
    Failed,
}

/// One container in an [`UnlockAnswer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockResult {
    /// The container: `disk/kind/name` (e.g. `disk0/part/2`).
    pub container: String,
    /// `LUKS1` or `LUKS2`.
    pub encryption: String,
    /// What happened.
    pub outcome: UnlockOutcome,
    /// Where its content is now: `luks/<name>` (when open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Details for `failed` (and `wrong-key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Answer of `POST /api/unlock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockAnswer {
    /// Every LUKS container of the VM, in disk order.
    pub containers: Vec<UnlockResult>,
}

/// Answer of `GET /api/status`.
///
/// Without a valid ticket only `api_version` and `alive` are filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's API version (see [`API_VERSION`]).
    pub api_version: u32,
    /// Always true: the daemon answered.
    pub alive: bool,
    /// Seconds since the daemon started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime: Option<u64>,
    /// Seconds of idleness left before the watchdog powers the VM off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_left: Option<u64>,
    /// Configured idle timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<u64>,
    /// Disk scan state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanState>,
    /// Disks and their buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disks: Option<Vec<DiskStatus>>,
    /// Extract streams running now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_downloads: Option<usize>,
}

/// Body of every error answer: `{"error": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Human-readable message naming what went wrong.
    pub error: String,
}

/// Output format of an extract call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtractFormat {
    /// The bytes of a single file (HTTP Range honoured).
    Plain,
    /// A zip archive of a file or directory.
    Zip,
    /// A pax tar archive of a file or directory.
    Tar,
}

impl ExtractFormat {
    /// The name used in the query string.
    pub fn as_str(self) -> &'static str {
        match self {
            ExtractFormat::Plain => "plain",
            ExtractFormat::Zip => "zip",
            ExtractFormat::Tar => "tar",
        }
    }
}

impl std::str::FromStr for ExtractFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "plain" => Ok(ExtractFormat::Plain),
            "zip" => Ok(ExtractFormat::Zip),
            "tar" => Ok(ExtractFormat::Tar),
            other => Err(format!(
                "unknown format '{other}': expected plain, zip or tar"
            )),
        }
    }
}

/// A path argument that is not valid base64.
#[derive(Debug, thiserror::Error)]
#[error("path is not valid base64: {0}")]
pub struct PathDecodeError(String);

/// Encodes raw path bytes for `filepath` and the `path` query argument.
pub fn encode_path(path: &[u8]) -> String {
    STANDARD.encode(path)
}

/// Decodes a base64 path, accepting the standard and the URL-safe alphabet,
/// with or without padding.
pub fn decode_path(s: &str) -> Result<Vec<u8>, PathDecodeError> {
    STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .or_else(|_| URL_SAFE_NO_PAD.decode(s))
        .map_err(|e| PathDecodeError(e.to_string()))
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Converts seconds since the epoch to a UTC civil date and time
/// (year, month, day, hour, minute, second): zip timestamps in the daemon,
/// text listings in the CLI.
pub fn civil_from_unix(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_roundtrip_non_utf8() {
        let raw = b"/disk/part/1/\xff\xfename";
        let enc = encode_path(raw);
        assert_eq!(decode_path(&enc).unwrap(), raw);
        let url = URL_SAFE_NO_PAD.encode(raw);
        assert_eq!(decode_path(&url).unwrap(), raw);
        assert!(decode_path("not base64!").is_err());
    }

    #[test]
    fn entry_json_shape() {
        let e = Entry {
            filepath: encode_path(b"/d/part/1/x"),
            text: "x".into(),
            entry_type: EntryType::Symlink,
            leaf: true,
            size: Some(3),
            mtime: None,
            target: Some("/etc".into()),
            fstype: None,
            label: None,
            encryption: None,
            locked: None,
            error: None,
            path: None,
        };
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "l");
        assert_eq!(v["target"], "/etc");
        assert!(v["mtime"].is_null());
        assert!(v.get("fstype").is_none());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_unix(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil_from_unix(1_700_000_000), (2023, 11, 14, 22, 13, 20));
        assert_eq!(civil_from_unix(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil_from_unix(-1), (1969, 12, 31, 23, 59, 59));
    }

    #[test]
    fn query_escape_base64() {
        assert_eq!(query_escape("a+b/c="), "a%2Bb%2Fc%3D");
    }
}

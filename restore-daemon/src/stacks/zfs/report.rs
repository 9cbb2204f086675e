//! Reading what `zpool import` and `zfs list` print. Both are untrusted
//! text (pool, dataset and device names come from the disks): every field
//! is bounded and checked, and a line that does not parse is skipped.

/// Longest ZFS name we accept (ZFS_MAX_DATASET_NAME_LEN is 256).
pub const MAX_NAME: usize = 256;

/// At most this many pools are read from one listing.
const MAX_POOLS: usize = 64;

/// At most this many members of one pool are kept.
const MAX_MEMBERS: usize = 256;

/// Text kept of a pool's status or action (bytes).
const MAX_TEXT: usize = 1024;

/// A pool `zpool import` offers (not imported yet).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Importable {
    /// The pool's name.
    pub name: String,
    /// Its GUID (decimal), which names it unambiguously.
    pub id: String,
    /// `ONLINE`, `DEGRADED`, `UNAVAIL`, `FAULTED`...
    pub state: String,
    /// What `status:` and `action:` say, joined (empty when nothing).
    pub status: String,
    /// Every device name in its configuration (`vdb1`, `/dev/vdc`); vdev
    /// group names (`mirror-0`) and GUIDs of missing devices are in here
    /// too, the caller keeps those that are block devices.
    pub devices: Vec<String>,
}

impl Importable {
    /// Whether zpool says it can be imported at all.
    pub fn importable(&self) -> bool {
        matches!(self.state.as_str(), "ONLINE" | "DEGRADED")
    }
}

fn push_text(to: &mut String, text: &str) {
    let text = text.trim();
    if text.is_empty() || to.len() >= MAX_TEXT {
        return;
    }
    if !to.is_empty() {
        to.push(' ');
    }
    for c in text.chars() {
        if to.len() + c.len_utf8() > MAX_TEXT {
            break;
        }
        to.push(if c.is_control() { ' ' } else { c });
    }
}

/// Parses the listing of `zpool import -d DIR` (no pool argument).
pub fn parse_import_listing(text: &str) -> Vec<Importable> {
    let mut pools: Vec<Importable> = Vec::new();
    let mut key = "";
    for line in text.lines() {
        let t = line.trim_start();
        let (k, v) = match t.split_once(':') {
            Some((k, v))
                if matches!(
                    k,
                    "pool"
                        | "id"
                        | "state"
                        | "status"
                        | "action"
                        | "see"
                        | "config"
                        | "comment"
                        | "errors"
                ) =>
            {
                (k, v.trim())
            }
            _ => ("", t),
        };
        if k == "pool" {
            if pools.len() == MAX_POOLS {
                break;
            }
            pools.push(Importable {
                name: v.chars().take(MAX_NAME).collect(),
                ..Importable::default()
            });
            key = "pool";
            continue;
        }
        let Some(p) = pools.last_mut() else { continue };
        if !k.is_empty() {
            key = k;
        }
        match key {
            "id" if !k.is_empty() => {
                p.id = v.chars().filter(char::is_ascii_digit).take(24).collect()
            }
            "state" if !k.is_empty() => p.state = v.chars().take(32).collect(),
            "status" | "action" => push_text(&mut p.status, v),
            "config" if k.is_empty() => {
                if let Some(dev) = v.split_whitespace().next() {
                    if p.devices.len() < MAX_MEMBERS && dev.len() <= MAX_NAME && dev != p.name {
                        p.devices.push(dev.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    // A name from a crafted label with control characters would reach logs,
    // listings and zpool's command line: such a pool is not offered.
    pools.retain(|p| {
        !p.name.is_empty() && !p.id.is_empty() && !p.name.chars().any(char::is_control)
    });
    pools
}

/// What a dataset is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A filesystem.
    Filesystem,
    /// A volume (zvol): a block device.
    Volume,
    /// A snapshot of a filesystem or volume.
    Snapshot,
}

/// One row of `zfs list -H -p -o` [`LIST_COLUMNS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Full name: `pool/a/b`, `pool/a@snap`.
    pub name: String,
    /// Its kind.
    pub kind: Kind,
    /// `referenced` in bytes: what the dataset holds.
    pub referenced: u64,
    /// The encryption suite (`aes-256-gcm`) or `None` when unencrypted.
    pub encryption: Option<String>,
    /// Whether the key is not loaded (an encrypted dataset that is locked).
    pub locked: bool,
    /// The encryption root (the dataset whose key opens this one).
    pub encryption_root: Option<String>,
}

/// The columns [`parse_list`] reads, in order.
pub const LIST_COLUMNS: &str = "name,type,referenced,encryption,keystatus,encryptionroot";

/// Parses `zfs list -H -p -o LIST_COLUMNS` (tab-separated, `-` for none).
pub fn parse_list(text: &str) -> Vec<Row> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [name, kind, referenced, encryption, keystatus, root] = f[..] else {
            continue;
        };
        if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
            continue;
        }
        let kind = match kind {
            "filesystem" => Kind::Filesystem,
            "volume" => Kind::Volume,
            "snapshot" => Kind::Snapshot,
            _ => continue,
        };
        let encryption = (!matches!(encryption, "off" | "-" | ""))
            .then(|| encryption.chars().take(32).collect());
        out.push(Row {
            name: name.to_owned(),
            kind,
            referenced: referenced.parse().unwrap_or(0),
            locked: encryption.is_some() && keystatus == "unavailable",
            encryption,
            encryption_root: (!matches!(root, "-" | "") && root.len() <= MAX_NAME)
                .then(|| root.to_owned()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "   pool: ozpool
     id: 1234567890123
  state: DEGRADED
status: One or more devices are missing from the system.
 action: The pool can be imported despite missing or damaged devices.  The
\tfault tolerance of the pool may be compromised if imported.
   see: https://openzfs.github.io/openzfs-docs/msg/ZFS-8000-2Q
 config:

\tozpool                  DEGRADED
\t  mirror-0              DEGRADED
\t    vdb                 ONLINE
\t    9876543210          UNAVAIL

   pool: fuse23
     id: 42
  state: ONLINE
 action: The pool can be imported using its name or numeric identifier.
 config:

\tfuse23      ONLINE
\t  vdc1      ONLINE
";

    #[test]
    fn import_listing() {
        let p = parse_import_listing(LISTING);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "ozpool");
        assert_eq!(p[0].id, "1234567890123");
        assert_eq!(p[0].state, "DEGRADED");
        assert!(p[0].importable());
        assert!(p[0].status.starts_with("One or more devices are missing"));
        assert!(p[0].status.contains("fault tolerance of the pool"));
        assert_eq!(p[0].devices, ["mirror-0", "vdb", "9876543210"]);
        assert_eq!(p[1].name, "fuse23");
        assert_eq!(p[1].state, "ONLINE");
        assert_eq!(p[1].devices, ["vdc1"]);
    }

    #[test]
    fn import_listing_is_bounded() {
        let mut s = String::new();
        for i in 0..100 {
            s.push_str(&format!("pool: p{i}\n id: {i}\n state: ONLINE\n"));
        }
        assert_eq!(parse_import_listing(&s).len(), MAX_POOLS);
        let long = format!("pool: x\n id: 1\n status: {}\n", "é".repeat(5000));
        let p = parse_import_listing(&long);
        assert!(p[0].status.len() <= MAX_TEXT);
        assert!(parse_import_listing("state: ONLINE\nconfig:\n\tvda\n").is_empty());
        assert!(parse_import_listing("pool: a\u{1b}[2Jb\n id: 1\n state: ONLINE\n").is_empty());
    }

    #[test]
    fn list_rows() {
        let text = "ozpool\tfilesystem\t24576\toff\t-\t-\n\
                    ozpool/enc\tfilesystem\t98304\taes-256-gcm\tunavailable\tozpool/enc\n\
                    ozpool/data@snap1\tsnapshot\t1000\toff\t-\t-\n\
                    ozpool/vol\tvolume\t25165824\toff\t-\t-\n\
                    bad line\n\
                    x\tbookmark\t1\toff\t-\t-\n";
        let r = parse_list(text);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].kind, Kind::Filesystem);
        assert!(!r[0].locked && r[0].encryption.is_none());
        assert_eq!(r[1].encryption.as_deref(), Some("aes-256-gcm"));
        assert!(r[1].locked);
        assert_eq!(r[1].encryption_root.as_deref(), Some("ozpool/enc"));
        assert_eq!(r[2].kind, Kind::Snapshot);
        assert_eq!(r[3].referenced, 25165824);
    }
}

//! Drives the real `file-restore` binary: every call runs it as a process with
//! a private runtime directory (so the VM map is this run's own), a time limit,
//! and a count of the VMs it started.

use crate::manifest::{Entry, Manifest};
use crate::sys::{self, show, Output, Stdout};
use anyhow::{bail, ensure, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Time limit of one CLI call (a VM boot under TCG on a loaded machine plus a
/// transfer of a few hundred MiB stays far below it).
pub const CALL_LIMIT: Duration = Duration::from_secs(300);

/// The line the CLI prints on stderr when it started a VM.
pub const STARTED_VM: &str = "started VM";

/// The `file-restore` binary with this run's runtime directory.
pub struct Cli {
    /// The release binary.
    pub bin: PathBuf,
    /// `FILE_RESTORE_RUNTIME_DIR` of every call.
    pub runtime_dir: PathBuf,
    boots: AtomicUsize,
    calls: AtomicUsize,
}

/// One entry of a JSON listing, after its shape was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The full path, decoded from `filepath`.
    pub path: Vec<u8>,
    /// `text`.
    pub text: String,
    /// `type`.
    pub kind: char,
    /// `leaf`.
    pub leaf: bool,
    /// `size`.
    pub size: Option<u64>,
    /// `mtime`.
    pub mtime: Option<i64>,
    /// `target` (symlinks only).
    pub target: Option<String>,
    /// `fstype` (buckets only).
    pub fstype: Option<String>,
    /// `label` (buckets with a labelled filesystem only).
    pub label: Option<String>,
}

impl Listed {
    /// The last component of the path.
    pub fn name(&self) -> &[u8] {
        match self.path.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.path[i + 1..],
            None => &self.path,
        }
    }
}

/// The depth of the buckets in `path`'s kind: 3 (`/disk/part/N`), 4 for
/// LVM (`/disk/lvm/VG/LV`).
pub fn bucket_depth(path: &[u8]) -> usize {
    let kind = path.split(|&c| c == b'/').filter(|c| !c.is_empty()).nth(1);
    if kind == Some(b"lvm".as_slice()) {
        4
    } else {
        3
    }
}

/// `/a//b/./c/` → `/a/b/c`, as the CLI normalizes a PATH.
pub fn normalize(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
    {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// Joins a VM path and a relative path.
pub fn join(base: &[u8], rel: &[u8]) -> Vec<u8> {
    let mut p = normalize(base);
    if !rel.is_empty() {
        if p != b"/" {
            p.push(b'/');
        }
        p.extend_from_slice(rel);
    }
    p
}

fn depth(path: &[u8]) -> usize {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty()).count()
}

const FIELDS: [&str; 12] = [
    "filepath",
    "text",
    "type",
    "leaf",
    "size",
    "mtime",
    "target",
    "fstype",
    "label",
    "error",
    "encryption",
    "locked",
];
const REQUIRED: [&str; 6] = ["filepath", "text", "type", "leaf", "size", "mtime"];

/// Parses a JSON listing of `listed` and checks every entry against the contract
/// (docs/API.md, "Entry"): exactly the documented fields; `filepath` the padded
/// standard base64 of the full path `<listed>/<name>` (or of `listed` itself when
/// a non-directory lists as itself); `text` the lossy name; `target` on symlinks
/// only; `fstype` on buckets only; `size` null on directories and on the virtual
/// levels above buckets.
pub fn parse_listing(listed: &[u8], json: &[u8]) -> Result<Vec<Listed>> {
    let listed = normalize(listed);
    let v: Value = serde_json::from_slice(json).with_context(|| {
        format!(
            "list {} --output-format json did not print JSON: {}",
            show(&listed),
            sys::clip(&String::from_utf8_lossy(json), 400)
        )
    })?;
    let arr = v
        .as_array()
        .with_context(|| format!("list {}: JSON is not an array: {v}", show(&listed)))?;
    let mut out = Vec::with_capacity(arr.len());
    for item in arr {
        out.push(
            check_entry(&listed, item, arr.len())
                .with_context(|| format!("list {}: bad entry {item}", show(&listed)))?,
        );
    }
    Ok(out)
}

fn check_entry(listed: &[u8], item: &Value, count: usize) -> Result<Listed> {
    let obj = item.as_object().context("not an object")?;
    for k in obj.keys() {
        ensure!(FIELDS.contains(&k.as_str()), "unknown field {k:?}");
    }
    for k in REQUIRED {
        ensure!(obj.contains_key(k), "field {k:?} missing");
    }
    let fp = obj["filepath"]
        .as_str()
        .context("filepath is not a string")?;
    let path = STANDARD
        .decode(fp)
        .with_context(|| format!("filepath {fp:?} is not standard base64"))?;
    ensure!(
        STANDARD.encode(&path) == fp,
        "filepath {fp:?} is not canonical padded standard base64"
    );
    let text = obj["text"]
        .as_str()
        .context("text is not a string")?
        .to_string();
    let t = obj["type"].as_str().context("type is not a string")?;
    ensure!(
        t.len() == 1 && "vdflhcbps".contains(t),
        "type {t:?} is not one of v d f l h c b p s"
    );
    let kind = t.chars().next().unwrap_or('?');
    let leaf = obj["leaf"].as_bool().context("leaf is not a bool")?;
    let size = match &obj["size"] {
        Value::Null => None,
        s => Some(
            s.as_u64()
                .context("size is neither null nor a non-negative integer")?,
        ),
    };
    let mtime = match &obj["mtime"] {
        Value::Null => None,
        s => Some(s.as_i64().context("mtime is neither null nor an integer")?),
    };
    let target = match obj.get("target") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(o) => bail!("target is {o}, not a string"),
    };
    let fstype = match obj.get("fstype") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(o) => bail!("fstype is {o}, not a string"),
    };
    let label = match obj.get("label") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(o) => bail!("label is {o}, not a string"),
    };
    ensure!(
        label.is_none() || fstype.is_some(),
        "label on an entry that is no bucket"
    );
    if let Some(e) = obj.get("error") {
        ensure!(e.is_string(), "error is {e}, not a string");
    }
    let luks = fstype.as_deref() == Some("crypto_LUKS");
    for (k, ok) in [
        ("encryption", obj.get("encryption").map(Value::is_string)),
        ("locked", obj.get("locked").map(Value::is_boolean)),
    ] {
        ensure!(
            ok.is_some() == luks && ok != Some(false),
            "{k} must be on LUKS containers (only), with the right type ({k}: {:?})",
            obj.get(k)
        );
    }
    let e = Listed {
        path,
        text,
        kind,
        leaf,
        size,
        mtime,
        target,
        fstype,
        label,
    };
    // Where the entry is.
    let as_itself = e.path == listed;
    if as_itself {
        ensure!(
            count == 1 && kind != 'd' && kind != 'v',
            "an entry names the listed path itself, but it is not a lone non-directory"
        );
    } else {
        let prefix = if listed == b"/" {
            b"/".to_vec()
        } else {
            [listed, b"/"].concat()
        };
        ensure!(
            e.path.starts_with(&prefix)
                && e.path.len() > prefix.len()
                && !e.path[prefix.len()..].contains(&b'/'),
            "filepath decodes to {:?}, which is not {:?}/<name>",
            show(&e.path),
            show(listed)
        );
    }
    let name_lossy = show(e.name());
    ensure!(
        e.text == name_lossy,
        "text {:?} is not the (lossy) name {name_lossy:?}",
        e.text
    );
    let d = depth(&e.path);
    let bd = bucket_depth(&e.path);
    if d <= bd {
        ensure!(kind == 'v', "an entry at depth {d} has type {kind}, not v");
        if d < bd {
            ensure!(size.is_none(), "a virtual level above buckets has a size");
        }
        ensure!(mtime.is_none(), "a virtual level has an mtime");
    } else {
        ensure!(kind != 'v', "an entry inside a bucket has type v");
    }
    ensure!(
        (d == bd) == e.fstype.is_some(),
        "fstype must be present on buckets (depth {bd}) and only there (depth {d}, fstype {:?})",
        e.fstype
    );
    ensure!(
        (kind == 'l') == e.target.is_some(),
        "target must be present on symlinks and only there (type {kind}, target {:?})",
        e.target
    );
    match kind {
        'd' => {
            ensure!(size.is_none(), "a directory has a size");
            ensure!(!leaf, "a directory is a leaf");
        }
        'f' | 'l' => {
            ensure!(size.is_some(), "a file or symlink has no size");
            ensure!(leaf, "a file or symlink is not a leaf");
        }
        _ => {}
    }
    Ok(e)
}

impl Cli {
    /// A driver for `bin` with its own runtime directory.
    pub fn new(bin: PathBuf, runtime_dir: PathBuf) -> Cli {
        Cli {
            bin,
            runtime_dir,
            boots: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
        }
    }

    /// VMs the CLI reported starting so far.
    pub fn boots(&self) -> usize {
        self.boots.load(Ordering::Relaxed)
    }

    /// CLI calls so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    /// A `Command` for the binary with this run's environment.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("FILE_RESTORE_RUNTIME_DIR", &self.runtime_dir)
            .env_remove("RUST_LOG")
            .env_remove("FILE_RESTORE_KERNEL")
            .env_remove("FILE_RESTORE_INITRAMFS");
        c
    }

    /// Counts a finished call.
    pub fn account(&self, out: &Output) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let n = out.stderr.matches(STARTED_VM).count();
        self.boots.fetch_add(n, Ordering::Relaxed);
    }

    /// Runs the CLI with `args`, capturing stdout.
    pub fn run<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command();
        c.args(args);
        let out = sys::run(c, None, Stdout::Capture, CALL_LIMIT)?;
        self.account(&out);
        Ok(out)
    }

    /// Runs the CLI with `args`, its stdout going to `file`.
    pub fn run_to_file<I, S>(&self, args: I, file: &Path) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command();
        c.args(args);
        let out = sys::run(c, None, Stdout::File(file), CALL_LIMIT)?;
        self.account(&out);
        Ok(out)
    }

    /// `list SOURCE PATH --output-format json`, checked and parsed.
    pub fn list(&self, source: &Path, path: &[u8]) -> Result<Vec<Listed>> {
        let out = self.list_out(source, path, "json")?.check()?;
        parse_listing(path, &out.stdout)
    }

    /// `list SOURCE PATH --output-format FMT`, whatever its outcome.
    pub fn list_out(&self, source: &Path, path: &[u8], fmt: &str) -> Result<Output> {
        self.run([
            OsStr::new("list"),
            source.as_os_str(),
            OsStr::from_bytes(path),
            OsStr::new("--output-format"),
            OsStr::new(fmt),
        ])
    }

    /// Lists a bucket recursively and returns what it holds as a manifest
    /// (paths relative to the bucket; the fields a listing shows).
    pub fn list_tree(&self, source: &Path, bucket: &[u8]) -> Result<Manifest> {
        let mut m = Manifest::new();
        let mut queue = VecDeque::from([Vec::<u8>::new()]);
        while let Some(rel) = queue.pop_front() {
            let full = join(bucket, &rel);
            let entries = self.list(source, &full)?;
            for e in entries {
                let name = e.name().to_vec();
                let r = if rel.is_empty() {
                    name
                } else {
                    [&rel[..], b"/", &name[..]].concat()
                };
                if e.kind == 'd' {
                    queue.push_back(r.clone());
                }
                m.insert(
                    r.clone(),
                    Entry {
                        path: r,
                        kind: e.kind,
                        size: e.size,
                        mtime: e.mtime,
                        mode: None,
                        uid: None,
                        gid: None,
                        sha256: None,
                        target: e.target.map(String::into_bytes),
                        hardlink_of: None,
                        xattrs: None,
                    },
                );
            }
        }
        Ok(m)
    }

    /// `status --output-format json`, parsed.
    pub fn status(&self) -> Result<Vec<Value>> {
        let out = self.run(["status", "--output-format", "json"])?.check()?;
        let v: Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("status JSON: {}", out.stdout_str()))?;
        v.as_array()
            .cloned()
            .with_context(|| format!("status JSON is not an array: {v}"))
    }

    /// The status reports of the VMs whose images are `source` or lie inside it.
    pub fn vms_for(&self, source: &Path) -> Result<Vec<Value>> {
        // An nbd:// URI is kept as given; paths are canonical in status.
        let canon = if source.to_string_lossy().contains("://") {
            source.to_path_buf()
        } else {
            source
                .canonicalize()
                .with_context(|| format!("canonicalize {}", source.display()))?
        };
        Ok(self
            .status()?
            .into_iter()
            .filter(|r| {
                r["images"].as_array().is_some_and(|imgs| {
                    imgs.iter()
                        .filter_map(Value::as_str)
                        .any(|i| Path::new(i).starts_with(&canon))
                })
            })
            .collect())
    }

    /// Stops the VMs of `source` by name; returns their names.
    pub fn stop_vms_for(&self, source: &Path) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for r in self.vms_for(source)? {
            let name = r["name"].as_str().context("status entry without a name")?;
            self.run([OsStr::new("stop"), OsStr::new(name)])?.check()?;
            names.push(name.to_string());
        }
        Ok(names)
    }

    /// The tickets in this run's VM map (to check none ever leaks).
    pub fn tickets(&self) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string(self.runtime_dir.join("vms.json")) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            collect_tickets(&v, &mut found);
        }
        found
    }

    /// The map entry (raw JSON) of the VM named `name`, if the map has one.
    pub fn map_entry(&self, name: &str) -> Option<Value> {
        let text = std::fs::read_to_string(self.runtime_dir.join("vms.json")).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        v.get("vms")?.get(name).cloned()
    }
}

fn collect_tickets(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("ticket", Value::String(s)) if s.len() >= 16 => out.push(s.clone()),
                    _ => collect_tickets(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_tickets(v, out)),
        _ => {}
    }
}

/// Arguments as `OsString`s (for paths with raw bytes).
pub fn args<const N: usize>(a: [&OsStr; N]) -> Vec<OsString> {
    a.iter().map(|s| s.to_os_string()).collect()
}

/// Names → entries of a listing.
pub fn by_name(entries: &[Listed]) -> BTreeMap<Vec<u8>, &Listed> {
    entries.iter().map(|e| (e.name().to_vec(), e)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_and_join() {
        assert_eq!(normalize(b""), b"/");
        assert_eq!(normalize(b"//a/./b//"), b"/a/b");
        assert_eq!(join(b"/d/part/1", b"x/y"), b"/d/part/1/x/y");
        assert_eq!(join(b"/", b"d"), b"/d");
        assert_eq!(join(b"/d/part/1/", b""), b"/d/part/1");
    }

    #[test]
    fn listing_shape_is_enforced() {
        let good = br#"[{"filepath":"L2QvcGFydC8xL2E=","text":"a","type":"f","leaf":true,"size":1,"mtime":5},
            {"filepath":"L2QvcGFydC8xL2w=","text":"l","type":"l","leaf":true,"size":1,"mtime":5,"target":"x"}]"#;
        let v = parse_listing(b"/d/part/1", good).unwrap();
        assert_eq!(v[1].target.as_deref(), Some("x"));
        // A bucket with its fstype.
        let bucket = br#"[{"filepath":"L2QvcGFydC8x","text":"1","type":"v","leaf":false,"size":9,"mtime":null,"fstype":"ext4"}]"#;
        assert_eq!(
            parse_listing(b"/d/part", bucket).unwrap()[0]
                .fstype
                .as_deref(),
            Some("ext4")
        );
        // A lone file listing as itself.
        let itself = br#"[{"filepath":"L2QvcGFydC8xL2E=","text":"a","type":"f","leaf":true,"size":1,"mtime":5}]"#;
        assert!(parse_listing(b"/d/part/1/a", itself).is_ok());
        let bad: [&[u8]; 6] = [
            // target on a file
            br#"[{"filepath":"L2QvcGFydC8xL2E=","text":"a","type":"f","leaf":true,"size":1,"mtime":5,"target":"x"}]"#,
            // extra field
            br#"[{"filepath":"L2QvcGFydC8xL2E=","text":"a","type":"f","leaf":true,"size":1,"mtime":5,"uid":0}]"#,
            // wrong parent
            br#"[{"filepath":"L2QvcGFydC8yL2E=","text":"a","type":"f","leaf":true,"size":1,"mtime":5}]"#,
            // text is not the name
            br#"[{"filepath":"L2QvcGFydC8xL2E=","text":"b","type":"f","leaf":true,"size":1,"mtime":5}]"#,
            // fstype inside a bucket
            br#"[{"filepath":"L2QvcGFydC8xL2E=","text":"a","type":"f","leaf":true,"size":1,"mtime":5,"fstype":"x"}]"#,
            // missing mtime
            br#"[{"filepath":"L2QvcGFydC8xL2E=","text":"a","type":"f","leaf":true,"size":1}]"#,
        ];
        for b in bad {
            assert!(
                parse_listing(b"/d/part/1", b).is_err(),
                "accepted {}",
                String::from_utf8_lossy(b)
            );
        }
    }

    #[test]
    fn tickets_are_found_anywhere() {
        let v: Value = serde_json::from_str(
            r#"{"vms":{"a":{"vm":{"ticket":"0123456789abcdef0123"}},"b":{"ticket":"short"}}}"#,
        )
        .unwrap();
        let mut t = Vec::new();
        collect_tickets(&v, &mut t);
        assert_eq!(t, vec!["0123456789abcdef0123".to_string()]);
    }
}

//! Manifests (tests/fixtures/README.md): one entry per path below a tree's root,
//! and the comparison of what a listing or an extraction gave with what a
//! bucket's manifest says it holds.

use crate::sys::{show, show_time};
use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One path of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Raw path relative to the tree root.
    pub path: Vec<u8>,
    /// `f`, `d` or `l`.
    pub kind: char,
    /// Files: bytes; symlinks: target length; directories: `None`.
    pub size: Option<u64>,
    /// Seconds; `None` where the filesystem does not keep it.
    pub mtime: Option<i64>,
    /// `"0644"`, `"4755"`; `None` where not kept.
    pub mode: Option<String>,
    /// Owner; `None` where not kept.
    pub uid: Option<u64>,
    /// Group; `None` where not kept.
    pub gid: Option<u64>,
    /// Files: hex SHA-256.
    pub sha256: Option<String>,
    /// Symlinks: raw target.
    pub target: Option<Vec<u8>>,
    /// Raw path of the first name of this inode, for the later names.
    pub hardlink_of: Option<Vec<u8>>,
    /// `user.*` xattrs: name → base64 of the value.
    pub xattrs: Option<BTreeMap<String, String>>,
}

fn b64(v: &Value, field: &str) -> Result<Option<Vec<u8>>> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(
            STANDARD
                .decode(s)
                .with_context(|| format!("{field} {s:?} is not base64"))?,
        )),
        Some(other) => bail!("{field} is {other}, not a string"),
    }
}

impl Entry {
    /// Parses one manifest object.
    pub fn from_json(v: &Value) -> Result<Entry> {
        let path = b64(v, "path")?.context("entry without a path")?;
        let kind = v["type"]
            .as_str()
            .and_then(|s| s.chars().next())
            .with_context(|| format!("{}: no type", show(&path)))?;
        let xattrs = match v.get("xattrs") {
            Some(Value::Object(m)) => Some(
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect(),
            ),
            _ => None,
        };
        Ok(Entry {
            kind,
            size: v["size"].as_u64(),
            mtime: v["mtime"].as_i64(),
            mode: v["mode"].as_str().map(str::to_string),
            uid: v["uid"].as_u64(),
            gid: v["gid"].as_u64(),
            sha256: v["sha256"].as_str().map(str::to_string),
            target: b64(v, "target")?,
            hardlink_of: b64(v, "hardlink_of")?,
            xattrs,
            path,
        })
    }

    /// The last path component.
    pub fn name(&self) -> &[u8] {
        match self.path.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.path[i + 1..],
            None => &self.path,
        }
    }

    /// The directory holding this entry (empty for the root's children).
    pub fn parent(&self) -> &[u8] {
        match self.path.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.path[..i],
            None => b"",
        }
    }
}

/// A manifest: entries keyed by raw relative path.
pub type Manifest = BTreeMap<Vec<u8>, Entry>;

/// Parses a manifest JSON array.
pub fn parse(text: &str) -> Result<Manifest> {
    let v: Value = serde_json::from_str(text).context("manifest is not JSON")?;
    let arr = v.as_array().context("manifest is not a JSON array")?;
    let mut m = Manifest::new();
    for e in arr {
        let e = Entry::from_json(e)?;
        m.insert(e.path.clone(), e);
    }
    Ok(m)
}

/// Loads a manifest file.
pub fn load(path: &Path) -> Result<Manifest> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read manifest {}", path.display()))?;
    parse(&text).with_context(|| format!("manifest {}", path.display()))
}

/// The manifest of a directory on the host, by the fixture builder's own walker
/// (`mktree.py manifest`: lstat, sha256, hard links, user xattrs).
pub fn of_directory(mktree: &Path, dir: &Path, scratch: &Path) -> Result<Manifest> {
    let out = scratch.join("have.manifest.json");
    let mut c = Command::new("python3");
    c.arg(mktree).arg("manifest").arg(dir).arg(&out);
    crate::sys::run(
        c,
        None,
        crate::sys::Stdout::Capture,
        Duration::from_secs(600),
    )?
    .check()?;
    let m = load(&out)?;
    let _ = std::fs::remove_file(&out);
    Ok(m)
}

/// How mtimes are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mtime {
    /// Equal seconds.
    Exact,
    /// Zip (DOS) times: 2 s steps, clamped to 1980-01-01.
    Dos,
    /// Not compared.
    Ignore,
}

/// What a comparison checks. Fields that are `None` in the wanted manifest are
/// never compared (the filesystem does not keep them), except the ones that
/// must be absent (target, hardlink_of, xattrs, sha256).
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Compare `mode`.
    pub mode: bool,
    /// Include setuid, setgid and sticky in the mode comparison (zip writers may drop them).
    pub special_bits: bool,
    /// Compare `uid`/`gid`.
    pub owner: bool,
    /// How to compare `mtime`.
    pub mtime: Mtime,
    /// Compare the mtime of symlinks too.
    pub symlink_mtime: bool,
    /// Compare `sha256` (content).
    pub content: bool,
    /// Compare `hardlink_of` (which names share an inode).
    pub hardlinks: bool,
    /// Compare `xattrs`.
    pub xattrs: bool,
    /// Compare symlink targets as lossy UTF-8 (listings show them that way).
    pub lossy_targets: bool,
    /// Compare `size` of symlinks (listings and lstat: the target's length).
    pub symlink_size: bool,
}

impl Rules {
    /// Everything the manifest records.
    pub const STRICT: Rules = Rules {
        mode: true,
        special_bits: true,
        owner: true,
        mtime: Mtime::Exact,
        symlink_mtime: true,
        content: true,
        hardlinks: true,
        xattrs: true,
        lossy_targets: false,
        symlink_size: true,
    };

    /// What a listing shows: names, types, sizes, mtimes, symlink targets.
    pub const LISTING: Rules = Rules {
        mode: false,
        special_bits: false,
        owner: false,
        mtime: Mtime::Exact,
        symlink_mtime: true,
        content: false,
        hardlinks: false,
        xattrs: false,
        lossy_targets: true,
        symlink_size: true,
    };
}

const DOS_EPOCH: i64 = 315_532_800; // 1980-01-01 00:00:00 UTC

fn mtime_ok(rule: Mtime, want: i64, have: Option<i64>) -> bool {
    match (rule, have) {
        (Mtime::Ignore, _) => true,
        (_, None) => false,
        (Mtime::Exact, Some(h)) => h == want,
        (Mtime::Dos, Some(h)) => {
            if want < DOS_EPOCH {
                h == DOS_EPOCH
            } else {
                (want - h).abs() <= 2
            }
        }
    }
}

/// Differences between what a bucket should hold (`want`) and what was seen
/// (`have`), one line each, naming the path, the field and both values.
pub fn compare(want: &Manifest, have: &Manifest, rules: &Rules) -> Vec<String> {
    let mut out = Vec::new();
    for (p, w) in want {
        let name = show(p);
        let Some(h) = have.get(p) else {
            out.push(format!("missing: {name} (type {})", w.kind));
            continue;
        };
        if w.kind != h.kind {
            out.push(format!("{name}: type: want {} got {}", w.kind, h.kind));
            continue;
        }
        if let Some(ws) = w.size {
            if (w.kind != 'l' || rules.symlink_size) && h.size != Some(ws) {
                out.push(format!("{name}: size: want {ws} got {:?}", h.size));
            }
        }
        if let Some(wm) = w.mtime {
            let check = w.kind != 'l' || rules.symlink_mtime;
            if check && !mtime_ok(rules.mtime, wm, h.mtime) {
                out.push(format!(
                    "{name}: mtime: want {} got {}",
                    show_time(wm),
                    h.mtime.map_or("none".to_string(), show_time)
                ));
            }
        }
        if rules.mode {
            if let Some(wm) = &w.mode {
                let perm = |m: &str| m[m.len().saturating_sub(3)..].to_string();
                let same = match &h.mode {
                    Some(hm) if rules.special_bits => hm == wm,
                    Some(hm) => perm(hm) == perm(wm),
                    None => false,
                };
                if !same {
                    out.push(format!("{name}: mode: want {wm} got {:?}", h.mode));
                }
            }
        }
        if rules.owner {
            if let Some(u) = w.uid {
                if h.uid != Some(u) {
                    out.push(format!("{name}: uid: want {u} got {:?}", h.uid));
                }
            }
            if let Some(g) = w.gid {
                if h.gid != Some(g) {
                    out.push(format!("{name}: gid: want {g} got {:?}", h.gid));
                }
            }
        }
        if rules.content && w.kind == 'f' && w.sha256 != h.sha256 {
            out.push(format!(
                "{name}: sha256: want {} got {}",
                w.sha256.as_deref().unwrap_or("none"),
                h.sha256.as_deref().unwrap_or("none")
            ));
        }
        if w.kind == 'l' {
            let (wt, ht) = if rules.lossy_targets {
                (
                    w.target.as_deref().map(|t| show(t).into_bytes()),
                    h.target.as_deref().map(|t| show(t).into_bytes()),
                )
            } else {
                (w.target.clone(), h.target.clone())
            };
            if wt != ht {
                out.push(format!(
                    "{name}: symlink target: want {:?} got {:?}",
                    wt.as_deref().map(show),
                    ht.as_deref().map(show)
                ));
            }
        }
        if rules.hardlinks && w.hardlink_of != h.hardlink_of {
            out.push(format!(
                "{name}: hard link: want {} got {}",
                w.hardlink_of
                    .as_deref()
                    .map_or("its own inode".into(), |p| format!(
                        "same inode as {}",
                        show(p)
                    )),
                h.hardlink_of
                    .as_deref()
                    .map_or("its own inode".into(), |p| format!(
                        "same inode as {}",
                        show(p)
                    ))
            ));
        }
        if rules.xattrs && w.kind != 'l' {
            let empty = BTreeMap::new();
            let (wx, hx) = (
                w.xattrs.as_ref().unwrap_or(&empty),
                h.xattrs.as_ref().unwrap_or(&empty),
            );
            if wx != hx {
                out.push(format!("{name}: user xattrs: want {wx:?} got {hx:?}"));
            }
        }
    }
    for (p, h) in have {
        if !want.contains_key(p) {
            out.push(format!("unexpected: {} (type {})", show(p), h.kind));
        }
    }
    out
}

/// Fails with the first differences (and how many there were), under a heading.
pub fn ensure_same(heading: &str, want: &Manifest, have: &Manifest, rules: &Rules) -> Result<()> {
    let diffs = compare(want, have, rules);
    if diffs.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = diffs.iter().take(25).map(String::as_str).collect();
    let more = if diffs.len() > shown.len() {
        format!("\n  … and {} more", diffs.len() - shown.len())
    } else {
        String::new()
    };
    bail!(
        "{heading}: {} difference(s) from the manifest ({} entries wanted, {} seen):\n  {}{more}",
        diffs.len(),
        want.len(),
        have.len(),
        shown.join("\n  ")
    )
}

/// The entries directly below `dir` (raw relative path, empty for the root).
pub fn children<'a>(m: &'a Manifest, dir: &[u8]) -> Vec<&'a Entry> {
    m.values().filter(|e| e.parent() == dir).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, kind: char) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            size: if kind == 'd' { None } else { Some(3) },
            mtime: Some(1_000_000_001),
            mode: Some("0644".into()),
            uid: Some(0),
            gid: Some(0),
            sha256: (kind == 'f').then(|| "ab".repeat(32)),
            target: (kind == 'l').then(|| b"abc".to_vec()),
            hardlink_of: None,
            xattrs: None,
        }
    }

    fn m(v: Vec<Entry>) -> Manifest {
        v.into_iter().map(|e| (e.path.clone(), e)).collect()
    }

    #[test]
    fn parse_manifest_entry() {
        let text = r#"[{"path": "ZGlyL2Zp/w==", "text": "dir/fi?", "type": "f", "size": 5,
            "mtime": 7, "mode": "4755", "uid": 1000, "gid": null, "sha256": "00",
            "hardlink_of": "YQ==", "xattrs": {"user.x": "eQ=="}}]"#;
        let m = parse(text).unwrap();
        let e = m.get(&b"dir/fi\xff"[..]).unwrap();
        assert_eq!(e.name(), b"fi\xff");
        assert_eq!(e.parent(), b"dir");
        assert_eq!(e.mode.as_deref(), Some("4755"));
        assert_eq!(e.gid, None);
        assert_eq!(e.hardlink_of.as_deref(), Some(&b"a"[..]));
        assert_eq!(e.xattrs.as_ref().unwrap()["user.x"], "eQ==");
    }

    #[test]
    fn identical_trees_match_and_differences_are_named() {
        let want = m(vec![e("a", 'f'), e("d", 'd'), e("d/l", 'l')]);
        assert!(compare(&want, &want.clone(), &Rules::STRICT).is_empty());
        let mut have = want.clone();
        have.get_mut(&b"a"[..]).unwrap().mtime = Some(5);
        have.get_mut(&b"d/l"[..]).unwrap().target = Some(b"xyz".to_vec());
        have.remove(&b"d"[..]);
        have.insert(b"extra".to_vec(), e("extra", 'f'));
        let d = compare(&want, &have, &Rules::STRICT);
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(d.iter().any(|s| s.starts_with("a: mtime: want 1000000001")));
        assert!(d.iter().any(|s| s == "missing: d (type d)"));
        assert!(d.iter().any(|s| s.starts_with("d/l: symlink target")));
        assert!(d.iter().any(|s| s == "unexpected: extra (type f)"));
    }

    #[test]
    fn null_fields_are_not_kept_so_not_compared() {
        let mut w = e("a", 'f');
        w.mode = None;
        w.uid = None;
        w.mtime = None;
        let mut h = e("a", 'f');
        h.mode = Some("0777".into());
        h.mtime = Some(1);
        assert!(compare(&m(vec![w]), &m(vec![h]), &Rules::STRICT).is_empty());
    }

    #[test]
    fn dos_times() {
        assert!(mtime_ok(Mtime::Dos, 1_000_000_001, Some(1_000_000_000)));
        assert!(!mtime_ok(Mtime::Dos, 1_000_000_001, Some(1_000_000_010)));
        assert!(mtime_ok(Mtime::Dos, 0, Some(DOS_EPOCH)));
        assert!(!mtime_ok(Mtime::Exact, 0, Some(DOS_EPOCH)));
    }
}

//! The fixture images (tests/fixtures/README.md): built once per checkout by
//! `tests/fixtures/mkfixtures.sh` (idempotent through its stamp) and described
//! by `fixtures.json`.

use crate::manifest::{self, Manifest};
use crate::sys::{self, Stdout};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The built fixtures and their index.
pub struct Fixtures {
    /// OUTDIR of mkfixtures.sh.
    pub dir: PathBuf,
    /// `fixtures.json`.
    pub index: Value,
}

/// A bucket of an image, as the index describes it.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// `part/1`, `raw/raw`, `lvm/VG/LV`.
    pub name: String,
    /// blkid's type; `None` where nothing is detectable.
    pub fstype: Option<String>,
    /// The filesystem's label, where the fixture gave one.
    pub label: Option<String>,
    /// Content tree (`full`, `fat`), if readable.
    pub tree: Option<String>,
    /// Manifest path relative to the fixture dir, if readable.
    pub manifest: Option<String>,
    /// Bytes.
    pub size: u64,
    /// Whether it holds a mountable filesystem.
    pub mountable: bool,
    /// An MBR extended partition (a container, not a bucket).
    pub extended: bool,
    /// `clean`, `dirty`, `corrupt` where given.
    pub state: Option<String>,
}

impl Fixtures {
    /// Builds (or finds up to date) the fixtures in `dir` with the repo's script.
    pub fn build(repo: &Path, dir: &Path) -> Result<Fixtures> {
        let script = repo.join("tests/fixtures/mkfixtures.sh");
        let mut c = Command::new("bash");
        // --big: the 256 MiB file image (a few seconds; shared with make bench).
        c.arg(&script).arg(dir).arg("--big").env("QUIET", "1");
        let out = sys::run(c, None, Stdout::Capture, Duration::from_secs(1800))?;
        if out.code != Some(0) {
            bail!(
                "building the fixtures failed (tests/fixtures/mkfixtures.sh needs root and the tools \
                 of scripts/deps.sh: run `make deps`):\n{}",
                out.describe()
            );
        }
        Fixtures::load(dir)
    }

    /// Loads the index of fixtures built in `dir`.
    pub fn load(dir: &Path) -> Result<Fixtures> {
        let p = dir.join("fixtures.json");
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
        let index: Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))?;
        if index["version"] != 1 {
            bail!(
                "{}: unknown index version {}",
                p.display(),
                index["version"]
            );
        }
        Ok(Fixtures {
            dir: dir.to_path_buf(),
            index,
        })
    }

    /// A path inside the fixture dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Whether the index has this image (optional ones may be missing).
    pub fn has_image(&self, key: &str) -> bool {
        self.index["images"].get(key).is_some()
    }

    /// The index entry of an image.
    pub fn image(&self, key: &str) -> Result<&Value> {
        self.index["images"]
            .get(key)
            .with_context(|| format!("fixtures.json has no image {key:?}"))
    }

    /// The buckets of an image, sorted by name.
    pub fn buckets(&self, key: &str) -> Result<Vec<Bucket>> {
        let img = self.image(key)?;
        let Some(map) = img["buckets"].as_object() else {
            return Ok(Vec::new());
        };
        let mut v: Vec<Bucket> = map
            .iter()
            .map(|(name, b)| Bucket {
                name: name.clone(),
                fstype: b["fstype"].as_str().map(str::to_string),
                label: b["label"].as_str().map(str::to_string),
                tree: b["tree"].as_str().map(str::to_string),
                manifest: b["manifest"].as_str().map(str::to_string),
                size: b["size"].as_u64().unwrap_or(0),
                mountable: b["mountable"].as_bool().unwrap_or(false),
                extended: b["extended"].as_bool().unwrap_or(false),
                state: b["state"].as_str().map(str::to_string),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// One bucket of an image.
    pub fn bucket(&self, key: &str, name: &str) -> Result<Bucket> {
        self.buckets(key)?
            .into_iter()
            .find(|b| b.name == name)
            .with_context(|| format!("fixtures.json: image {key} has no bucket {name}"))
    }

    /// A manifest by its path relative to the fixture dir.
    pub fn manifest(&self, rel: &str) -> Result<Manifest> {
        manifest::load(&self.path(rel))
    }

    /// The snapshot directories of the backup stores.
    pub fn snapshots(&self) -> Vec<Value> {
        self.index["snapshots"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

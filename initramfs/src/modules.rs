//! The kernel-module closure: which `.ko` files the guest needs, in the order it must load
//! them, read from a kernel's `/lib/modules/<version>` indexes.
//!
//! - `modules.dep` gives each module's dependencies (the full transitive set);
//! - `modules.softdep` `pre:` entries name modules to load first that no symbol links to
//!   (e.g. `libcrc32c pre: crc32c`, `btrfs pre: xxhash64`); their names are often aliases,
//!   resolved through the exact (non-wildcard) entries of `modules.alias`, and a soft
//!   dependency that resolves to nothing is skipped, as modprobe does;
//! - `modules.builtin` lists what is compiled into the kernel: wanted names found there are
//!   skipped silently.
//!
//! Module names compare with `-` and `_` equivalent (`dm-mod` is `dm_mod`).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Modules the restore VM loads by default: virtio transport and disks, vsock, the
/// filesystems the daemon mounts, their code pages, device-mapper for LVM, and the crypto
/// checksum drivers filesystems look up by name at mount time.
///
/// The checksum drivers are not in `modules.dep` (nothing links to their symbols; the
/// filesystems ask the crypto API for `crc32c`, `xxhash64`, … at mount time), and in
/// Debian 12's 6.1 kernel they are modules: `crc32c_generic` (ext4/jbd2 metadata_csum,
/// xfs and btrfs through libcrc32c), `crc32_generic` (f2fs), `xxhash_generic` and
/// `blake2b_generic` (btrfs checksums). `sha256_generic` (btrfs) is built in there; a kernel
/// that has it as a module gets it too. The soft dependencies add the CPU-accelerated
/// variants (`crc32c_intel`, `crc32_pclmul`, `sha256_ssse3`) where the kernel declares them;
/// on a CPU without the instructions those fail to load (`ENODEV`), which is harmless
/// since the generic drivers are there.
pub const DEFAULT_MODULES: &[&str] = &[
    // First, so they are in place before anything looks them up, even on a kernel whose
    // modules.softdep does not say so.
    "crc32c_generic",
    "crc32_generic",
    "xxhash_generic",
    "blake2b_generic",
    "sha256_generic",
    "virtio_pci",
    "virtio_mmio",
    "virtio_blk",
    "vsock",
    "vmw_vsock_virtio_transport",
    "ext4",
    "xfs",
    "btrfs",
    "vfat",
    "nls_cp437",
    "nls_iso8859_1",
    "nls_utf8",
    "exfat",
    "isofs",
    "squashfs",
    "udf",
    "f2fs",
    "hfsplus",
    "ufs",
    "dm_mod",
];

/// One module file to ship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The module's name, with `_` for `-` (`dm_mod`).
    pub name: String,
    /// Where its file is (`.ko`, `.ko.xz`, `.ko.zst` or `.ko.gz`).
    pub path: PathBuf,
}

/// The result of [`module_closure`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleSet {
    /// Modules in load order: every module comes after its dependencies, each once.
    pub modules: Vec<Module>,
    /// Wanted names that are neither a module, an alias of one, nor built in.
    pub missing: Vec<String>,
    /// Wanted names that are built into the kernel (nothing to load).
    pub builtin: Vec<String>,
}

/// Normalises a module name: `-` becomes `_`, and a `.ko*` file name loses its suffix.
pub fn normalize_module_name(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let stem = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|suffix| base.strip_suffix(suffix))
        .unwrap_or(base);
    stem.replace('-', "_")
}

/// Computes the modules to load for `wanted` from the indexes in `modules_dir`
/// (`/lib/modules/<version>`), dependencies first.
///
/// Wanted names may also be aliases (`crypto-crc32c`). Names that match nothing are
/// reported in [`ModuleSet::missing`] rather than failing.
pub fn module_closure(modules_dir: &Path, wanted: &[&str]) -> Result<ModuleSet> {
    let index = ModuleIndex::load(modules_dir)?;
    let mut walk = Walk {
        index: &index,
        seen: HashSet::new(),
        order: Vec::new(),
    };
    let mut set = ModuleSet::default();
    for name in wanted {
        match index.resolve(name) {
            Resolved::Modules(modules) => modules.iter().for_each(|m| walk.visit(m)),
            Resolved::Builtin(name) => push_unique(&mut set.builtin, name),
            Resolved::Unknown(name) => push_unique(&mut set.missing, name),
        }
    }
    set.modules = walk
        .order
        .into_iter()
        .map(|name| {
            let path = index.deps[&name].path.clone();
            Module { name, path }
        })
        .collect();
    Ok(set)
}

/// Reads a module file, decompressing `.ko.xz`, `.ko.zst` and `.ko.gz`.
pub fn read_module(path: &Path) -> Result<Vec<u8>> {
    let err = |e: io::Error| Error::io(path, e);
    let raw = fs::read(path).map_err(err)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(raw.len() * 4);
    if name.ends_with(".xz") {
        xz2::read::XzDecoder::new_multi_decoder(&raw[..])
            .read_to_end(&mut out)
            .map_err(err)?;
    } else if name.ends_with(".zst") {
        zstd::stream::read::Decoder::new(&raw[..])
            .and_then(|mut d| d.read_to_end(&mut out))
            .map_err(err)?;
    } else if name.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(err)?;
    } else {
        return Ok(strip_module_signature(raw));
    }
    Ok(strip_module_signature(out))
}

/// Trailer of a module with an appended signature.
const SIG_MAGIC: &[u8] = b"~Module signature appended~\n";

/// Removes an appended module signature (`struct module_signature` + the
/// PKCS#7 blob + the magic trailer).
///
/// Why: verifying 44 RSA signatures under TCG took most of the 1.9 s that
/// module loading cost at boot. The guest kernel does not enforce
/// signatures (`CONFIG_MODULE_SIG_FORCE` is off, no lockdown outside EFI
/// secure boot), so an unsigned module loads — it only taints the kernel —
/// and the modules come from the host's own package-verified kernel.
pub fn strip_module_signature(mut data: Vec<u8>) -> Vec<u8> {
    if !data.ends_with(SIG_MAGIC) {
        return data;
    }
    let end = data.len() - SIG_MAGIC.len();
    let Some(info) = end.checked_sub(12).map(|start| &data[start..end]) else {
        return data;
    };
    let sig_len = u32::from_be_bytes([info[8], info[9], info[10], info[11]]) as usize;
    match end.checked_sub(12 + sig_len) {
        Some(cut) => {
            data.truncate(cut);
            data
        }
        None => data,
    }
}

#[cfg(test)]
mod signature_tests {
    use super::*;

    #[test]
    fn strips_appended_signature_only() {
        let mut m = b"\x7fELF-module-body".to_vec();
        let body_len = m.len();
        m.extend_from_slice(&[0xAB; 5]); // signature blob
        m.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 5]); // module_signature, sig_len 5
        m.extend_from_slice(SIG_MAGIC);
        assert_eq!(strip_module_signature(m).len(), body_len);
        let plain = b"\x7fELF-unsigned".to_vec();
        assert_eq!(strip_module_signature(plain.clone()), plain);
        // A lying sig_len never truncates into nonsense.
        let mut bad = vec![0u8; 4];
        bad.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        bad.extend_from_slice(SIG_MAGIC);
        assert_eq!(strip_module_signature(bad.clone()), bad);
    }
}

fn push_unique(list: &mut Vec<String>, name: String) {
    if !list.contains(&name) {
        list.push(name);
    }
}

/// A module's entry in `modules.dep`.
#[derive(Debug)]
struct DepEntry {
    path: PathBuf,
    deps: Vec<String>,
}

/// The parsed indexes of one module tree.
#[derive(Debug, Default)]
struct ModuleIndex {
    deps: HashMap<String, DepEntry>,
    builtin: HashSet<String>,
    /// Module name → names (modules or aliases) to load before it.
    softdep_pre: HashMap<String, Vec<String>>,
    /// Exact alias → module names.
    aliases: HashMap<String, Vec<String>>,
}

impl ModuleIndex {
    fn load(dir: &Path) -> Result<Self> {
        let mut index = ModuleIndex::default();
        let dep_path = dir.join("modules.dep");
        let text = fs::read_to_string(&dep_path).map_err(|e| Error::io(&dep_path, e))?;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (module, deps) = line.split_once(':').ok_or_else(|| Error::ModuleIndex {
                path: dep_path.clone(),
                line: number + 1,
                message: format!("expected `module.ko: dependencies…`, found {line:?}"),
            })?;
            let module = module.trim();
            let entry = DepEntry {
                path: dir.join(module),
                deps: deps.split_whitespace().map(normalize_module_name).collect(),
            };
            index.deps.insert(normalize_module_name(module), entry);
        }

        if let Some(text) = read_optional(&dir.join("modules.builtin"))? {
            index.builtin = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(normalize_module_name)
                .collect();
        }

        if let Some(text) = read_optional(&dir.join("modules.softdep"))? {
            for line in text.lines() {
                if let Some((module, pre)) = parse_softdep(line) {
                    index.softdep_pre.entry(module).or_default().extend(pre);
                }
            }
        }

        if let Some(text) = read_optional(&dir.join("modules.alias"))? {
            for line in text.lines() {
                let mut words = line.split_whitespace();
                let (Some("alias"), Some(alias), Some(module)) =
                    (words.next(), words.next(), words.next())
                else {
                    continue;
                };
                if alias.contains(['*', '?', '[']) {
                    continue;
                }
                let targets = index
                    .aliases
                    .entry(normalize_module_name(alias))
                    .or_default();
                push_unique(targets, normalize_module_name(module));
            }
        }
        Ok(index)
    }

    /// What a name stands for, looked up in kmod's order: a module of that name, else
    /// the modules an alias of that name points at, else a built-in (so the soft
    /// dependency `f2fs pre: crc32` means the crypto `crc32` modules, not the built-in
    /// `lib/crc32`).
    fn resolve(&self, name: &str) -> Resolved {
        let name = normalize_module_name(name);
        if self.deps.contains_key(&name) {
            return Resolved::Modules(vec![name]);
        }
        let targets: Vec<String> = self
            .aliases
            .get(&name)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|t| self.deps.contains_key(*t))
            .cloned()
            .collect();
        if !targets.is_empty() {
            Resolved::Modules(targets)
        } else if self.builtin.contains(&name) {
            Resolved::Builtin(name)
        } else {
            Resolved::Unknown(name)
        }
    }
}

/// The outcome of [`ModuleIndex::resolve`].
#[derive(Debug)]
enum Resolved {
    /// Modules to load.
    Modules(Vec<String>),
    /// Built into the kernel (normalised name).
    Builtin(String),
    /// Nothing of that name (normalised).
    Unknown(String),
}

/// Parses `softdep MODULE pre: a b post: c` into the module and its `pre:` names; names
/// before any `pre:`/`post:` are ignored, as kmod does.
fn parse_softdep(line: &str) -> Option<(String, Vec<String>)> {
    let mut words = line.split_whitespace();
    if words.next()? != "softdep" {
        return None;
    }
    let module = normalize_module_name(words.next()?);
    let mut pre = Vec::new();
    let mut in_pre = false;
    for word in words {
        match word {
            "pre:" => in_pre = true,
            "post:" => in_pre = false,
            _ if in_pre => pre.push(word.to_string()),
            _ => {}
        }
    }
    Some((module, pre))
}

/// Reads a file that may be absent.
fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Depth-first walk producing a load order.
struct Walk<'a> {
    index: &'a ModuleIndex,
    /// Modules entered so far (finished, or on the current path).
    seen: HashSet<String>,
    order: Vec<String>,
}

impl Walk<'_> {
    fn visit(&mut self, name: &str) {
        // Seen: done already, or a cycle through soft dependencies.
        if self.seen.contains(name) {
            return;
        }
        let Some(entry) = self.index.deps.get(name) else {
            return;
        };
        self.seen.insert(name.to_string());
        if let Some(soft) = self.index.softdep_pre.get(name) {
            for soft_name in soft {
                // Soft dependencies that are built in or unknown are skipped, as modprobe
                // does.
                if let Resolved::Modules(targets) = self.index.resolve(soft_name) {
                    for target in targets {
                        self.visit(&target);
                    }
                }
            }
        }
        // modprobe loads the dependency list from the end; each dependency's own
        // dependencies are visited first either way.
        for dep in entry.deps.iter().rev() {
            self.visit(dep);
        }
        self.order.push(name.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_names() {
        assert_eq!(normalize_module_name("dm-mod"), "dm_mod");
        assert_eq!(
            normalize_module_name("kernel/drivers/md/dm-mod.ko.xz"),
            "dm_mod"
        );
        assert_eq!(normalize_module_name("crc32c-intel.ko"), "crc32c_intel");
        assert_eq!(normalize_module_name("ext4.ko.zst"), "ext4");
    }

    #[test]
    fn parses_softdep_lines() {
        let (module, pre) = parse_softdep("softdep btrfs pre: blake2b-256 sha256 post: x").unwrap();
        assert_eq!(module, "btrfs");
        assert_eq!(pre, ["blake2b-256", "sha256"]);
        let (_, pre) = parse_softdep("softdep cifs gcm").unwrap();
        assert!(pre.is_empty());
        assert!(parse_softdep("# comment").is_none());
    }
}

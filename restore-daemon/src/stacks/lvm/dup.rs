//! Duplicates: two VGs with one name, and a disk attached with its clone.
//!
//! Both happen when a VM's disks come from several installs or a disk was
//! copied: two Proxmox or Ubuntu installs each have a VG `pve` or
//! `ubuntu-vg` (one name, two UUIDs), and a cloned disk carries the same PV
//! and VG UUIDs as its original. lvm2 skips a VG whose name is not unique
//! ("Multiple VGs found with the same name") and uses one device of a
//! duplicated PV, so without this module only one of them (or none) could
//! be read.
//!
//! - **One name, several UUIDs**: each VG is activated on its own
//!   (`--select vg_uuid=…`) and its device-mapper devices renamed
//!   (`<name>@<uuid prefix>`) before the next one, whose devices would
//!   otherwise take the same names. lvm2 finds its LVs by dm UUID, which
//!   stays, so its report still gives their devices.
//! - **Same PV UUIDs (clones)**: every device of a PV UUID after the first
//!   (kernel-name order) is hidden from lvm2 with a device filter, so lvm2
//!   sees one complete copy and never mixes two. The VG is activated there;
//!   then each clone gets copies of that VG's device-mapper tables, read-only,
//!   with the original PVs replaced by the clone's (and the copied devices by
//!   their copies): whatever targets the tables use (linear, striped,
//!   mirror, raid) read the clone's blocks. Names: `<dm name>@<clone's PV>`.
//!
//! Either way a bucket keeps the name `lvm/<VG>/<LV>`; the two are told
//! apart by the disk they are listed under (`/disk-a/lvm/pve/root`,
//! `/disk-b/lvm/pve/root`), as every bucket is.

use super::LIMIT;
use crate::stacks::blockdev;
use crate::stacks::tools::Tools;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// How many tables one VG may have (its LVs and their hidden parts); a
/// crafted VG cannot make the copy run long.
const MAX_TABLES: usize = 512;

/// A physical volume as the scan found it.
#[derive(Debug, Clone)]
pub struct Pv {
    /// Its kernel name (`vdb`, `vda2`, `dm-3`).
    pub kname: String,
    /// Its PV UUID (libblkid's `UUID` of an `LVM2_member`).
    pub uuid: String,
}

/// A clone's copy of one VG: the copied devices and the clone's PVs.
#[derive(Debug, Clone, Default)]
pub struct Copy {
    /// The original PVs (kernel names) whose clone this is.
    pub originals: BTreeSet<String>,
    /// The clone's PVs (kernel names).
    pub pvs: Vec<String>,
    /// Original device (kernel name) → its copy (kernel name).
    pub devices: BTreeMap<String, String>,
    /// Why the copy is incomplete, when it is.
    pub error: Option<String>,
}

/// What the last activation decided; every later lvm2 call uses the same
/// device filter.
#[derive(Default)]
struct Dups {
    /// Duplicate PV device → the device lvm2 uses for that UUID.
    hidden: BTreeMap<String, String>,
    /// The copies made for clones.
    copies: Vec<Copy>,
}

static DUPS: Mutex<Dups> = Mutex::new(Dups {
    hidden: BTreeMap::new(),
    copies: Vec::new(),
});

fn dups() -> std::sync::MutexGuard<'static, Dups> {
    DUPS.lock().unwrap_or_else(|p| p.into_inner())
}

/// For each PV UUID on more than one device, every device after the first
/// (kernel-name order, so the first disk's copy is the one lvm2 sees),
/// mapped to that first device.
pub fn duplicates(pvs: &[Pv]) -> BTreeMap<String, String> {
    let mut by_uuid: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in pvs {
        if !p.uuid.is_empty() && blockdev::is_safe_name(&p.kname) {
            by_uuid.entry(&p.uuid).or_default().push(&p.kname);
        }
    }
    let mut out = BTreeMap::new();
    for (_, mut devs) in by_uuid {
        devs.sort_by_key(|k| (k.len(), k.to_string()));
        devs.dedup();
        if let Some((first, rest)) = devs.split_first() {
            for d in rest {
                out.insert(d.to_string(), first.to_string());
            }
        }
    }
    out
}

/// Records the duplicates found now; returns the lvm2 config that hides
/// them (empty when there are none).
pub fn set_hidden(hidden: BTreeMap<String, String>) -> String {
    let mut d = dups();
    d.hidden = hidden;
    filter_of(&d.hidden)
}

/// The `--config` part that hides the duplicate devices from lvm2.
pub fn filter() -> String {
    filter_of(&dups().hidden)
}

fn filter_of(hidden: &BTreeMap<String, String>) -> String {
    if hidden.is_empty() {
        return String::new();
    }
    let mut rules: Vec<String> = hidden
        .keys()
        .map(|k| format!("\"r|^/dev/{k}$|\""))
        .collect();
    rules.push("\"a|.*|\"".into());
    format!("devices {{ filter = [ {} ] }}", rules.join(", "))
}

/// lvm2's UUID without its dashes, as device-mapper UUIDs carry it.
fn bare_uuid(uuid: &str) -> String {
    uuid.chars().filter(|c| *c != '-').collect()
}

/// The device-mapper devices (kernel names) lvm2 made for the VG `vg_uuid`.
fn vg_devices(vg_uuid: &str) -> Vec<String> {
    let prefix = format!("LVM-{}", bare_uuid(vg_uuid));
    blockdev::derived_devices()
        .into_iter()
        .filter(|k| k.starts_with("dm-"))
        .filter(|k| blockdev::dm_uuid(k).is_some_and(|u| u.starts_with(&prefix)))
        .take(MAX_TABLES)
        .collect()
}

/// Renames the devices of the VG `vg_uuid` to `<name>@<uuid prefix>`, so
/// that another VG of the same name can be activated next.
pub fn rename_vg(tools: &Tools, vg_uuid: &str) {
    let tag: String = bare_uuid(vg_uuid).chars().take(8).collect();
    for k in vg_devices(vg_uuid) {
        let Some(name) = blockdev::attr(&k, "dm/name") else {
            continue;
        };
        if name.contains('@') {
            continue; // renamed before
        }
        let new = format!("{name}@{tag}");
        let args = ["rename", name.as_str(), new.as_str(), "--noudevsync"];
        match tools.run("dmsetup", &args, None, LIMIT) {
            Ok(o) if o.ok() => {}
            Ok(o) => log::warn!("lvm: dmsetup rename {name}: {}", o.stderr_tail()),
            Err(e) => log::warn!("lvm: dmsetup rename {name}: {e}"),
        }
    }
}

/// `major:minor` of a device.
fn devno(kname: &str) -> Option<String> {
    blockdev::attr(kname, "dev")
}

/// Copies the tables of the VG `vg_uuid` (active on `pvs`, the devices
/// lvm2 uses) for every clone of those PVs among the hidden devices.
pub fn copy_clones(tools: &Tools, vg_uuid: &str, pvs: &[String]) {
    let hidden = dups().hidden.clone();
    let originals: BTreeSet<String> = pvs.iter().cloned().collect();
    // The clones, as disks: each hidden device of one of these PVs, grouped
    // by the disk it is on. A clone is the set of one disk's duplicates.
    let mut clones: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (dup, orig) in &hidden {
        if originals.contains(orig) {
            let disk = blockdev::base_disks(dup)
                .into_iter()
                .next()
                .unwrap_or_else(|| dup.clone());
            clones
                .entry(disk)
                .or_default()
                .insert(orig.clone(), dup.clone());
        }
    }
    for (disk, map) in clones {
        let mut copy = Copy {
            originals: originals.clone(),
            pvs: map.values().cloned().collect(),
            ..Copy::default()
        };
        if map.len() != originals.len() {
            copy.error = Some(format!(
                "disk {disk} holds {} of the {} physical volumes of this volume group's \
                 clone; the others are on no disk of this SOURCE",
                map.len(),
                originals.len()
            ));
        } else {
            match copy_tables(tools, vg_uuid, &map) {
                Ok(devices) => copy.devices = devices,
                Err(e) => copy.error = Some(e),
            }
        }
        if let Some(e) = &copy.error {
            log::warn!("lvm: clone on {disk}: {e}");
        } else {
            log::info!(
                "lvm: clone of VG {vg_uuid} on {disk}: {} devices copied",
                copy.devices.len()
            );
        }
        dups().copies.push(copy);
    }
}

/// Copies every table of the VG, devices below first, with the PVs of
/// `map` (original → clone) and the copied devices replaced.
fn copy_tables(
    tools: &Tools,
    vg_uuid: &str,
    map: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let devs = vg_devices(vg_uuid);
    let clone_tag = map.values().next().cloned().unwrap_or_default();
    let mut by_devno: BTreeMap<String, String> = BTreeMap::new();
    for (orig, clone) in map {
        let (Some(a), Some(b)) = (devno(orig), devno(clone)) else {
            return Err(format!("no device numbers for {orig} or {clone}"));
        };
        by_devno.insert(a, b);
    }
    let vg_devnos: BTreeMap<String, String> = devs
        .iter()
        .filter_map(|k| devno(k).map(|d| (d, k.clone())))
        .collect();
    let mut tables: BTreeMap<String, String> = BTreeMap::new();
    for k in &devs {
        let name = blockdev::attr(k, "dm/name").ok_or_else(|| format!("{k}: no dm name"))?;
        let out = tools.run("dmsetup", &["table", &name], None, LIMIT)?;
        if !out.ok() {
            return Err(format!("dmsetup table {name}: {}", out.stderr_tail()));
        }
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        if table.len() > 64 * 1024 {
            return Err(format!("dmsetup table {name}: over 64 KiB"));
        }
        tables.insert(k.clone(), table);
    }
    let mut copied: BTreeMap<String, String> = BTreeMap::new();
    // Each round copies the devices whose tables need nothing uncopied.
    for _ in 0..=devs.len() {
        let mut progress = false;
        for k in &devs {
            if copied.contains_key(k) {
                continue;
            }
            let table = &tables[k];
            let waiting = words(table).any(|w| {
                vg_devnos
                    .get(w)
                    .is_some_and(|dep| dep != k && !copied.contains_key(dep))
            });
            if waiting {
                continue;
            }
            let new_table = rewrite(table, &by_devno);
            let name = blockdev::attr(k, "dm/name").unwrap_or_else(|| k.clone());
            let new_name = format!("{}@{clone_tag}", name.split('@').next().unwrap_or(&name));
            create(tools, &new_name, &new_table)?;
            let kname =
                kname_of_dm(&new_name).ok_or_else(|| format!("{new_name} did not appear"))?;
            if let (Some(a), Some(b)) = (devno(k), devno(&kname)) {
                by_devno.insert(a, b);
            }
            copied.insert(k.clone(), kname);
            progress = true;
        }
        if copied.len() == devs.len() {
            return Ok(copied);
        }
        if !progress {
            break;
        }
    }
    Err(format!(
        "{} of {} device-mapper tables could not be copied (they refer to each other)",
        devs.len() - copied.len(),
        devs.len()
    ))
}

/// The words of a table (its `major:minor` references among them).
fn words(table: &str) -> impl Iterator<Item = &str> {
    table.split_whitespace()
}

/// The table with every `major:minor` of `map` replaced, line by line.
fn rewrite(table: &str, map: &BTreeMap<String, String>) -> String {
    table
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split_whitespace()
                .map(|w| map.get(w).map_or(w, String::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn create(tools: &Tools, name: &str, table: &str) -> Result<(), String> {
    let args = [
        "create",
        name,
        "--noudevsync",
        "--readonly",
        "--table",
        table,
    ];
    let out = tools.run("dmsetup", &args, None, LIMIT)?;
    if out.ok() {
        Ok(())
    } else {
        Err(format!("dmsetup create {name}: {}", out.stderr_tail()))
    }
}

fn kname_of_dm(dm_name: &str) -> Option<String> {
    blockdev::derived_devices()
        .into_iter()
        .filter(|k| k.starts_with("dm-"))
        .find(|k| blockdev::attr(k, "dm/name").as_deref() == Some(dm_name))
}

/// The copies made for clones so far.
pub fn copies() -> Vec<Copy> {
    dups().copies.clone()
}

/// Forgets the copies (before an activation records them again).
pub fn clear_copies() {
    dups().copies.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(k: &str, u: &str) -> Pv {
        Pv {
            kname: k.into(),
            uuid: u.into(),
        }
    }

    #[test]
    fn later_devices_of_a_uuid_are_hidden() {
        let d = duplicates(&[
            pv("vdc", "U1"),
            pv("vda", "U1"),
            pv("vdb", "U2"),
            pv("vdaa", "U1"),
            pv("vdd", ""),
        ]);
        let want: BTreeMap<String, String> = [("vdaa", "vda"), ("vdc", "vda")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(d, want);
        assert_eq!(
            filter_of(&d),
            "devices { filter = [ \"r|^/dev/vdaa$|\", \"r|^/dev/vdc$|\", \"a|.*|\" ] }"
        );
        assert_eq!(filter_of(&BTreeMap::new()), "");
    }

    #[test]
    fn tables_are_rewritten_word_by_word() {
        let map: BTreeMap<String, String> = [("254:16", "254:32"), ("253:0", "253:4")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let t = "0 2048 linear 254:16 2048\n2048 4096 striped 2 128 254:16 0 253:0 0\n";
        assert_eq!(
            rewrite(t, &map),
            "0 2048 linear 254:32 2048\n2048 4096 striped 2 128 254:32 0 253:4 0"
        );
        assert_eq!(bare_uuid("ab-cd-e"), "abcde");
    }
}

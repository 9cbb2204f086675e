//! md RAID: arrays assembled read-only with mdadm, one bucket `md/<name>`
//! each.
//!
//! `--readonly` keeps md from writing superblocks or starting a resync;
//! `--run` starts an array that lacks members as long as its level has the
//! redundancy for it (a RAID5 without one disk), which is what a user
//! restoring from an incomplete set of disks wants. The configuration takes
//! every block device (`DEVICE partitions`) and ignores the homehost, so an
//! array made on another machine is assembled under its own name.

use super::blockdev;
use super::tools::Tools;
use std::time::Duration;

/// mdadm's configuration for the assembly.
const CONFIG_PATH: &str = "/run/mdadm/mdadm.conf";
const CONFIG: &str = "DEVICE partitions\nHOMEHOST <ignore>\nAUTO +all\n";

/// Limit for one mdadm call (TCG is slow; a healthy call takes well under 1 s).
const LIMIT: Duration = Duration::from_secs(60);

/// An md array the kernel knows.
#[derive(Debug)]
pub struct Array {
    /// Kernel name (`md127`).
    pub kname: String,
    /// Bucket name: the array name without its host part, or the kernel
    /// number for arrays without a name (metadata 0.90: `md0` is `md/0`).
    pub name: String,
    /// Why it cannot be read, when it cannot (not started).
    pub error: Option<String>,
}

/// Assembles every array whose members are present (read-only, degraded if
/// need be). Failures are logged: the arrays that did start are what counts.
pub fn assemble(tools: &Tools) {
    if let Err(e) = std::fs::write(CONFIG_PATH, CONFIG) {
        log::warn!("md: cannot write {CONFIG_PATH}: {e}");
        return;
    }
    let config = format!("--config={CONFIG_PATH}");
    let args = ["--assemble", "--scan", "--readonly", "--run", &config];
    match tools.run("mdadm", &args, None, LIMIT) {
        Ok(out) if out.ok() => log::info!("md: assembled ({})", out.stderr_tail()),
        Ok(out) => log::warn!(
            "md: mdadm --assemble exited with {:?}: {}",
            out.code,
            out.stderr_tail()
        ),
        Err(e) => log::warn!("md: {e}"),
    }
    // A DDF container is assembled by the scan, its volumes are not: mdadm starts
    // them from the container (read-only: md itself does not write until written
    // to, and the disks are read-only).
    for kname in blockdev::derived_devices()
        .into_iter()
        .filter(|k| k.starts_with("md"))
    {
        let external = blockdev::attr(&kname, "md/metadata_version")
            .is_some_and(|v| v.starts_with("external:") && !v.contains('/'));
        let started = blockdev::holders(&kname)
            .iter()
            .any(|h| h.starts_with("md"));
        if !external || started {
            continue;
        }
        let Ok(node) = blockdev::node(&kname) else {
            continue;
        };
        let node = node.to_string_lossy().into_owned();
        let args = ["--incremental", "--run", &config, &node];
        match tools.run("mdadm", &args, None, LIMIT) {
            Ok(out) => log::info!(
                "md: volumes of container {kname}: exit {:?}: {}",
                out.code,
                out.stderr_tail()
            ),
            Err(e) => log::warn!("md: {e}"),
        }
    }
}

/// `KEY=value` lines of `mdadm --detail --export`.
fn export_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim())
}

/// The bucket name of an array from mdadm's `MD_NAME` (`host:name` for
/// metadata 1.x, absent for 0.90).
fn bucket_name(md_name: Option<&str>, kname: &str) -> String {
    let short = md_name
        .map(|n| n.rsplit_once(':').map_or(n, |(_, name)| name))
        .filter(|n| !n.is_empty());
    match short {
        Some(n) => blockdev::safe_name(n),
        None => kname.strip_prefix("md").unwrap_or(kname).to_owned(),
    }
}

/// The arrays the kernel has now.
pub fn arrays(tools: &Tools) -> Vec<Array> {
    let mut out = Vec::new();
    for kname in blockdev::derived_devices()
        .into_iter()
        .filter(|k| k.starts_with("md"))
    {
        let state = blockdev::attr(&kname, "md/array_state").unwrap_or_default();
        let node = match blockdev::node(&kname) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("md: {kname}: {e}");
                continue;
            }
        };
        let node_str = node.to_string_lossy().into_owned();
        let detail = tools
            .run("mdadm", &["--detail", "--export", &node_str], None, LIMIT)
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let level = export_value(&detail, "MD_LEVEL").unwrap_or("?").to_owned();
        if level == "container" {
            // A DDF or IMSM container holds the metadata; its volumes are the arrays.
            continue;
        }
        // A volume of a container (DDF) has no MD_NAME; its name in the container's
        // metadata is MD_DEVNAME.
        let md_name = export_value(&detail, "MD_NAME").or_else(|| {
            export_value(&detail, "MD_CONTAINER").and(export_value(&detail, "MD_DEVNAME"))
        });
        let name = bucket_name(md_name, &kname);
        let degraded = blockdev::attr(&kname, "md/degraded")
            .and_then(|d| d.parse::<u32>().ok())
            .unwrap_or(0);
        let members = blockdev::slaves(&kname).len();
        let error = if state == "inactive" || state == "clear" || blockdev::size(&kname) == 0 {
            Some(format!(
                "md array {name} ({level}) cannot start: {members} of its members are present \
                 and that is not enough for its level (attach every disk of the VM)"
            ))
        } else {
            None
        };
        log::info!(
            "md: {kname} = md/{name}: {level}, state {state}, {members} members, \
             {degraded} missing"
        );
        out.push(Array { kname, name, error });
    }
    // Two arrays with one name (from two VMs' disks): the later ones are
    // called by their kernel name.
    let mut seen = std::collections::BTreeSet::new();
    for a in &mut out {
        if !seen.insert(a.name.clone()) {
            a.name = a.kname.clone();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(bucket_name(Some("host:mirror"), "md127"), "mirror");
        assert_eq!(bucket_name(Some("mirror"), "md127"), "mirror");
        assert_eq!(bucket_name(None, "md0"), "0");
        assert_eq!(bucket_name(Some("h:"), "md127"), "127");
        assert_eq!(bucket_name(Some("h:../x"), "md1"), ".._x");
        let text = "MD_LEVEL=raid1\nMD_NAME=any:mirror\n";
        assert_eq!(export_value(text, "MD_NAME"), Some("any:mirror"));
        assert_eq!(export_value(text, "MD_UUID"), None);
    }
}

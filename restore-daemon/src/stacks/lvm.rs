//! LVM: volume groups activated read-only with lvm2, one bucket
//! `lvm/<VG>/<LV>` per visible logical volume.
//!
//! Every VG found is put in `read_only_volume_list`, so each LV — linear,
//! striped, raid, thin (the pool too) and snapshots — gets a read-only
//! device-mapper table; the tools image's `lvm.conf` forbids metadata
//! writes altogether (`metadata_read_only`) and needs no udev, lvmetad,
//! lvmpolld or lock manager. `--activationmode degraded` activates what is
//! complete (raid LVs with enough legs too) and leaves LVs with missing
//! extents inactive; those are listed with an error naming the cause.
//! `-K` activates LVs flagged to skip activation (thin snapshots are, by
//! default).

use super::blockdev;
use super::tools::Tools;
use serde::Deserialize;
use std::time::Duration;

/// Limit for one lvm call.
const LIMIT: Duration = Duration::from_secs(120);

/// A logical volume as a bucket.
#[derive(Debug)]
pub struct Volume {
    /// VG name.
    pub vg: String,
    /// LV name.
    pub lv: String,
    /// The kernel name of its device when active (`dm-3`).
    pub kname: Option<String>,
    /// The kernel names of the VG's PVs that are present.
    pub pvs: Vec<String>,
    /// Why it cannot be read, when it is not active.
    pub error: Option<String>,
}

#[derive(Deserialize)]
struct Report<T> {
    report: Vec<Section<T>>,
}

#[derive(Deserialize)]
struct Section<T> {
    #[serde(default = "Vec::new", alias = "lv", alias = "pv", alias = "vg")]
    rows: Vec<T>,
}

#[derive(Deserialize)]
struct LvRow {
    vg_name: String,
    lv_name: String,
    #[serde(default)]
    lv_attr: String,
    #[serde(default)]
    lv_role: String,
    #[serde(default)]
    segtype: String,
    #[serde(default)]
    lv_kernel_major: String,
    #[serde(default)]
    lv_kernel_minor: String,
    #[serde(default)]
    devices: String,
}

#[derive(Deserialize)]
struct PvRow {
    pv_name: String,
    #[serde(default)]
    vg_name: String,
}

#[derive(Deserialize)]
struct VgRow {
    vg_name: String,
}

fn report<T: for<'de> Deserialize<'de>>(
    tools: &Tools,
    what: &str,
    fields: &str,
) -> Result<Vec<T>, String> {
    let args = [
        what,
        "--reportformat",
        "json",
        "--units",
        "b",
        "--nosuffix",
        "-o",
        fields,
    ];
    let out = tools.run("lvm", &args, None, LIMIT)?;
    // A VG with a missing PV makes lvs exit non-zero while still reporting.
    let parsed: Report<T> = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "lvm {what} gave no usable report ({e}; exit {:?}): {}",
            out.code,
            out.stderr_tail()
        )
    })?;
    Ok(parsed.report.into_iter().flat_map(|s| s.rows).collect())
}

/// Activates every VG read-only; returns the VG names found.
pub fn activate(tools: &Tools) -> Result<Vec<String>, String> {
    let vgs: Vec<String> = report::<VgRow>(tools, "vgs", "vg_name")?
        .into_iter()
        .map(|r| r.vg_name)
        .filter(|n| blockdev::is_safe_name(n))
        .collect();
    if vgs.is_empty() {
        log::info!("lvm: no volume groups");
        return Ok(vgs);
    }
    let list: Vec<String> = vgs.iter().map(|v| format!("\"{v}\"")).collect();
    let config = format!(
        "activation {{ read_only_volume_list = [ {} ] }}",
        list.join(", ")
    );
    let started = std::time::Instant::now();
    let args = [
        "vgchange",
        "-ay",
        "-K",
        "--activationmode",
        "degraded",
        "--config",
        &config,
    ];
    match tools.run("lvm", &args, None, LIMIT) {
        Ok(out) if out.ok() => log::info!(
            "lvm: activated {} in {} ms",
            vgs.join(", "),
            started.elapsed().as_millis()
        ),
        // Partial success is normal (an LV with a missing PV): the report says
        // which LVs are active.
        Ok(out) => log::warn!(
            "lvm: vgchange exited with {:?}: {}",
            out.code,
            out.stderr_tail()
        ),
        Err(e) => log::warn!("lvm: {e}"),
    }
    Ok(vgs)
}

/// The visible LVs (not pools, not sub-LVs) and whether each is active.
pub fn volumes(tools: &Tools) -> Result<Vec<Volume>, String> {
    let pvs = report::<PvRow>(tools, "pvs", "pv_name,vg_name")?;
    let rows = report::<LvRow>(
        tools,
        "lvs",
        "vg_name,lv_name,lv_attr,lv_role,segtype,lv_kernel_major,lv_kernel_minor,devices",
    )?;
    // lvs gives one row per segment when `devices` is asked for: merge them.
    let mut merged: Vec<LvRow> = Vec::new();
    for r in rows {
        match merged
            .iter_mut()
            .find(|m| m.vg_name == r.vg_name && m.lv_name == r.lv_name)
        {
            Some(m) => {
                m.devices.push(',');
                m.devices.push_str(&r.devices);
            }
            None => merged.push(r),
        }
    }
    let mut out = Vec::new();
    for r in merged {
        if !blockdev::is_safe_name(&r.vg_name) || !blockdev::is_safe_name(&r.lv_name) {
            log::warn!(
                "lvm: skipping LV with an unsafe name {:?}/{:?}",
                r.vg_name,
                r.lv_name
            );
            continue;
        }
        let private = r.lv_role.split(',').any(|x| x == "private");
        if private || r.segtype.ends_with("-pool") || r.segtype == "thin-pool" {
            continue;
        }
        let vg_pvs: Vec<String> = pvs
            .iter()
            .filter(|p| p.vg_name == r.vg_name && !p.pv_name.starts_with('['))
            .filter_map(|p| {
                let name = std::path::Path::new(&p.pv_name).file_name()?;
                let name = name.to_string_lossy().into_owned();
                // /dev/mapper/x is a symlink to ../dm-N: the kernel name is its target's.
                let real = std::fs::canonicalize(&p.pv_name).ok();
                Some(
                    real.and_then(|r| r.file_name().map(|n| n.to_string_lossy().into_owned()))
                        .unwrap_or(name),
                )
            })
            .collect();
        let kname = match (
            r.lv_kernel_major.parse::<i64>(),
            r.lv_kernel_minor.parse::<i64>(),
        ) {
            (Ok(ma), Ok(mi)) if ma >= 0 && mi >= 0 => {
                blockdev::kname_of_devno(ma as u64, mi as u64)
            }
            _ => None,
        };
        let error = if kname.is_some() {
            None
        } else if r.devices.contains("[unknown]") || r.lv_attr.get(8..9) == Some("p") {
            Some(format!(
                "logical volume {}/{} is not available: a physical volume it uses is missing \
                 from this SOURCE (attach every disk of the VM)",
                r.vg_name, r.lv_name
            ))
        } else {
            Some(format!(
                "logical volume {}/{} could not be activated read-only (attributes {})",
                r.vg_name, r.lv_name, r.lv_attr
            ))
        };
        out.push(Volume {
            vg: r.vg_name,
            lv: r.lv_name,
            kname,
            pvs: vg_pvs,
            error,
        });
    }
    Ok(out)
}

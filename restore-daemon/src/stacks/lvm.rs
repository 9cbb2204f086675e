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
    #[serde(default = "Vec::new", rename = "vg")]
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
    lv_kernel_major: String,
    #[serde(default)]
    lv_kernel_minor: String,
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

/// One VG's part of `lvm fullreport`.
#[derive(Deserialize)]
struct VgReport {
    #[serde(default)]
    pv: Vec<PvRow>,
    #[serde(default)]
    lv: Vec<LvRow>,
    #[serde(default)]
    seg: Vec<SegRow>,
}

#[derive(Deserialize)]
struct FullReport {
    report: Vec<VgReport>,
}

#[derive(Deserialize)]
struct SegRow {
    lv_name: String,
    #[serde(default)]
    segtype: String,
    #[serde(default)]
    devices: String,
}

/// The kernel name of a PV's device (`/dev/mapper/x` is a link to `../dm-N`).
fn pv_kname(pv_name: &str) -> Option<String> {
    if pv_name.starts_with('[') {
        return None; // "[unknown]": a missing PV
    }
    let real = std::fs::canonicalize(pv_name).unwrap_or_else(|_| pv_name.into());
    real.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// The visible LVs (not pools, not sub-LVs) and whether each is active: one
/// `lvm fullreport` (VGs, PVs, LVs and segments in one process, which under
/// TCG saves a few hundred ms per call avoided).
pub fn volumes(tools: &Tools) -> Result<Vec<Volume>, String> {
    let args = [
        "fullreport",
        "--reportformat",
        "json",
        "--units",
        "b",
        "--nosuffix",
        "--configreport",
        "vg",
        "-o",
        "vg_name",
        "--configreport",
        "pv",
        "-o",
        "pv_name,vg_name",
        "--configreport",
        "lv",
        "-o",
        "vg_name,lv_name,lv_attr,lv_role,lv_kernel_major,lv_kernel_minor",
        "--configreport",
        "pvseg",
        "-o",
        "pvseg_start",
        "--configreport",
        "seg",
        "-o",
        "lv_name,segtype,devices",
    ];
    let out = tools.run("lvm", &args, None, LIMIT)?;
    // A VG with a missing PV makes lvm exit non-zero while still reporting.
    let full: FullReport = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "lvm fullreport gave no usable report ({e}; exit {:?}): {}",
            out.code,
            out.stderr_tail()
        )
    })?;
    let mut vols = Vec::new();
    for vg in full.report {
        vols.extend(vg_volumes(vg));
    }
    Ok(vols)
}

/// The buckets of one VG's report.
fn vg_volumes(vg: VgReport) -> Vec<Volume> {
    let mut out = Vec::new();
    for r in vg.lv {
        if !blockdev::is_safe_name(&r.vg_name) || !blockdev::is_safe_name(&r.lv_name) {
            log::warn!("lvm: skipping LV with an unsafe name {:?}/{:?}", r.vg_name, r.lv_name);
            continue;
        }
        let segs: Vec<&SegRow> = vg.seg.iter().filter(|s| s.lv_name == r.lv_name).collect();
        let pool = segs.iter().any(|s| s.segtype.ends_with("-pool"));
        if r.lv_role.split(',').any(|x| x == "private") || pool {
            continue;
        }
        let pvs: Vec<String> = vg
            .pv
            .iter()
            .filter(|p| p.vg_name == r.vg_name)
            .filter_map(|p| pv_kname(&p.pv_name))
            .collect();
        let kname = match (r.lv_kernel_major.parse::<i64>(), r.lv_kernel_minor.parse::<i64>()) {
            (Ok(ma), Ok(mi)) if ma >= 0 && mi >= 0 => {
                blockdev::kname_of_devno(ma as u64, mi as u64)
            }
            _ => None,
        };
        let missing = segs.iter().any(|s| s.devices.contains("[unknown]"))
            || r.lv_attr.get(8..9) == Some("p");
        let error = match (&kname, missing) {
            (Some(_), _) => None,
            (None, true) => Some(format!(
                "logical volume {}/{} is not available: a physical volume it uses is missing \
                 from this SOURCE (attach every disk of the VM)",
                r.vg_name, r.lv_name
            )),
            (None, false) => Some(format!(
                "logical volume {}/{} could not be activated read-only (attributes {})",
                r.vg_name, r.lv_name, r.lv_attr
            )),
        };
        out.push(Volume {
            vg: r.vg_name,
            lv: r.lv_name,
            kname,
            pvs,
            error,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fullreport_of_a_vg_with_a_missing_pv() {
        let json = br#"{"report":[{"vg":[{"vg_name":"span"}],
          "pv":[{"pv_name":"/dev/nonexistent-vdz1","vg_name":"span"},{"pv_name":"[unknown]","vg_name":"span"}],
          "lv":[{"vg_name":"span","lv_name":"linear","lv_attr":"-wi-a-----","lv_role":"public","lv_kernel_major":"-1","lv_kernel_minor":"-1"},
                {"vg_name":"span","lv_name":"onlyc","lv_attr":"-wi-----p-","lv_role":"public","lv_kernel_major":"-1","lv_kernel_minor":"-1"},
                {"vg_name":"span","lv_name":"pool","lv_attr":"twi-a-tz--","lv_role":"private,thin,pool","lv_kernel_major":"-1","lv_kernel_minor":"-1"},
                {"vg_name":"span","lv_name":"../x","lv_attr":"-wi-a-----","lv_role":"public","lv_kernel_major":"-1","lv_kernel_minor":"-1"}],
          "seg":[{"lv_name":"linear","segtype":"linear","devices":"/dev/vdz1(0)"},
                 {"lv_name":"onlyc","segtype":"linear","devices":"[unknown](0)"},
                 {"lv_name":"pool","segtype":"thin-pool","devices":"pool_tdata(0)"}]}]}"#;
        let full: FullReport = serde_json::from_slice(json).unwrap();
        let vols: Vec<Volume> = full.report.into_iter().flat_map(vg_volumes).collect();
        let names: Vec<&str> = vols.iter().map(|v| v.lv.as_str()).collect();
        assert_eq!(names, ["linear", "onlyc"]);
        assert_eq!(vols[0].pvs, ["nonexistent-vdz1"]);
        assert!(vols[1].error.as_deref().unwrap().contains("missing"));
        assert!(vols[0].error.as_deref().unwrap().contains("could not be activated"));
    }
}

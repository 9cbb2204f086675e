//! LVM: volume groups activated read-only with lvm2, one bucket
//! `lvm/<VG>/<LV>` per visible logical volume; thin pools, which lvm2
//! cannot activate read-only, are opened by hand (`thin`), both from lvm2's
//! report rows (`report`). Imports: this folder's modules and the stacks'
//! `blockdev` and `tools`, nothing else of the daemon.
//!
//! Every VG found is put in `read_only_volume_list`, so each LV — linear,
//! striped, raid, thin (the pool too) and snapshots — gets a read-only
//! device-mapper table; the tools image's `lvm.conf` forbids metadata
//! writes altogether (`metadata_read_only`) and needs no udev, lvmetad,
//! lvmpolld or lock manager. `--activationmode degraded` activates what is
//! complete (raid LVs with enough legs too) and leaves LVs with missing
//! extents inactive; those are listed with an error naming the cause.
//! `-K` activates LVs flagged to skip activation (thin snapshots are, by
//! default). Two VGs of one name and cloned disks are `dup`'s.

pub mod dup;
mod report;
mod thin;

use super::blockdev;
use super::tools::Tools;
use report::{FullReport, PvsReport, SegRow, VgReport, VgsReport};
use std::collections::BTreeMap;
use std::time::Duration;

/// Limit for one lvm call.
pub(crate) const LIMIT: Duration = Duration::from_secs(120);

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

/// The VGs lvm finds: name and UUID.
fn vg_rows(tools: &Tools) -> Result<Vec<(String, String)>, String> {
    let filter = dup::filter();
    let mut args = vec!["vgs", "--reportformat", "json", "-o", "vg_name,vg_uuid"];
    if !filter.is_empty() {
        args.extend(["--config", filter.as_str()]);
    }
    let out = tools.run("lvm", &args, None, LIMIT)?;
    // A VG with a missing PV makes vgs exit non-zero while still reporting.
    let parsed: VgsReport = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "lvm vgs gave no usable report ({e}; exit {:?}): {}",
            out.code,
            out.stderr_tail()
        )
    })?;
    Ok(parsed
        .report
        .into_iter()
        .flat_map(|s| s.vg)
        .map(|r| (r.vg_name, r.vg_uuid))
        .collect())
}

/// Runs `vgchange -ay` read-only with `extra` arguments (VG names or a
/// `--select`).
fn vgchange(tools: &Tools, config: &str, extra: &[&str]) {
    let started = std::time::Instant::now();
    let mut args = vec![
        "vgchange",
        "-ay",
        "-K",
        "--activationmode",
        "degraded",
        "--config",
        config,
    ];
    args.extend_from_slice(extra);
    match tools.run("lvm", &args, None, LIMIT) {
        Ok(out) if out.ok() => log::info!(
            "lvm: activated {} in {} ms",
            extra.join(" "),
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
}

/// Activates every VG read-only, on the physical volumes `pvs` (all the
/// scan found so far); returns the VG names found. Duplicate PVs (clones)
/// and VG names used twice are `dup`'s.
pub fn activate(tools: &Tools, pvs: &[dup::Pv]) -> Result<Vec<String>, String> {
    let filter = dup::set_hidden(dup::duplicates(pvs));
    let rows: Vec<(String, String)> = vg_rows(tools)?
        .into_iter()
        .filter(|(n, _)| blockdev::is_safe_name(n))
        .collect();
    if rows.is_empty() {
        log::info!("lvm: no volume groups");
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = rows.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    names.dedup();
    let list: Vec<String> = names.iter().map(|v| format!("\"{v}\"")).collect();
    let config = format!(
        "activation {{ read_only_volume_list = [ {} ] }} {filter}",
        list.join(", ")
    );
    let twice: Vec<&String> = names
        .iter()
        .filter(|n| rows.iter().filter(|(m, _)| m == *n).count() > 1)
        .collect();
    if twice.is_empty() {
        vgchange(tools, &config, &[]);
    } else {
        // Each VG of a name used twice on its own, renamed before the next.
        let once: Vec<&str> = names
            .iter()
            .filter(|n| !twice.contains(n))
            .map(String::as_str)
            .collect();
        if !once.is_empty() {
            vgchange(tools, &config, &once);
        }
        for (name, uuid) in rows.iter().filter(|(n, _)| twice.contains(&n)) {
            log::info!("lvm: VG name {name} is used twice; activating VG {uuid} alone");
            let select = format!("vg_uuid={uuid}");
            vgchange(tools, &config, &["--select", &select]);
            dup::rename_vg(tools, uuid);
        }
    }
    if !filter.is_empty() {
        dup::clear_copies();
        for (vg_uuid, pvs) in vg_pvs(tools, &filter)? {
            dup::copy_clones(tools, &vg_uuid, &pvs);
        }
    }
    Ok(names)
}

/// Per VG UUID, the kernel names of the PVs lvm2 uses.
fn vg_pvs(tools: &Tools, filter: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let args = [
        "pvs",
        "--reportformat",
        "json",
        "-o",
        "pv_name,vg_uuid",
        "--config",
        filter,
    ];
    let out = tools.run("lvm", &args, None, LIMIT)?;
    let parsed: PvsReport = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "lvm pvs gave no usable report ({e}; exit {:?}): {}",
            out.code,
            out.stderr_tail()
        )
    })?;
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in parsed.report.into_iter().flat_map(|s| s.pv) {
        if let Some(k) = pv_kname(&r.pv_name) {
            if !r.vg_uuid.is_empty() {
                map.entry(r.vg_uuid).or_default().push(k);
            }
        }
    }
    Ok(map)
}

/// The kernel name of a PV's device node (`/dev/vda2`, or `/dev/mapper/x`,
/// which without udev is a node of its own, not a link to `../dm-N`).
fn pv_kname(pv_name: &str) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    if pv_name.starts_with('[') {
        return None; // "[unknown]": a missing PV
    }
    let md = std::fs::metadata(pv_name).ok()?;
    if !md.file_type().is_block_device() {
        return None;
    }
    let rdev = md.rdev();
    blockdev::kname_of_devno(nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev))
}

/// The visible LVs (not pools, not sub-LVs) and whether each is active: one
/// `lvm fullreport` (VGs, PVs, LVs and segments in one process, which under
/// TCG saves a few hundred ms per call avoided).
pub fn volumes(tools: &Tools) -> Result<Vec<Volume>, String> {
    let filter = dup::filter();
    let mut args = vec![
        "fullreport",
        "-a",
        "--reportformat",
        "json",
        "--units",
        "b",
        "--nosuffix",
        "--configreport",
        "vg",
        "-o",
        "vg_name,vg_extent_size",
        "--configreport",
        "pv",
        "-o",
        "pv_name,vg_name,pe_start",
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
        "lv_name,segtype,devices,thin_id,chunk_size,pool_lv,data_lv,metadata_lv,seg_size,\
         seg_start,seg_pe_ranges",
    ];
    if !filter.is_empty() {
        args.extend(["--config", filter.as_str()]);
    }
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
        let Some(info) = vg.vg.first() else { continue };
        let layout = thin::Layout {
            vg: &info.vg_name,
            extent_size: info.vg_extent_size.parse().unwrap_or(0),
            pvs: &vg.pv,
            segs: &vg.seg,
        };
        let thin = thin::open_pools(tools, &layout);
        let mut v = vg_volumes(vg);
        for vol in &mut v {
            match thin.get(&vol.lv) {
                Some(Ok(k)) => {
                    vol.kname = Some(k.clone());
                    vol.error = None;
                }
                Some(Err(e)) => vol.error = Some(e.clone()),
                None => {}
            }
        }
        vols.extend(v);
    }
    let clones = clone_volumes(&vols);
    vols.extend(clones);
    Ok(vols)
}

/// The LVs of every clone `dup` copied: the original's LVs, on the copies.
fn clone_volumes(vols: &[Volume]) -> Vec<Volume> {
    let mut out = Vec::new();
    for c in dup::copies() {
        for v in vols {
            if v.pvs.is_empty() || !v.pvs.iter().all(|p| c.originals.contains(p)) {
                continue;
            }
            let kname = v.kname.as_ref().and_then(|k| c.devices.get(k)).cloned();
            let error = match (&kname, &c.error, &v.error) {
                (Some(_), _, _) => None,
                (None, Some(e), _) => Some(format!(
                    "logical volume {}/{} of a cloned disk: {e}",
                    v.vg, v.lv
                )),
                (None, None, Some(e)) => Some(e.clone()),
                (None, None, None) => Some(format!(
                    "logical volume {}/{} of a cloned disk: its device could not be copied \
                     (thin volumes of clones are not supported yet)",
                    v.vg, v.lv
                )),
            };
            out.push(Volume {
                vg: v.vg.clone(),
                lv: v.lv.clone(),
                kname,
                pvs: c.pvs.clone(),
                error,
            });
        }
    }
    out
}

/// Whether the first 4 KiB of `/dev/<kname>` can be read.
fn readable(kname: &str) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    blockdev::node(kname)
        .and_then(std::fs::File::open)
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok()
}

/// The buckets of one VG's report.
fn vg_volumes(vg: VgReport) -> Vec<Volume> {
    let mut out = Vec::new();
    for r in vg.lv {
        if r.lv_name.starts_with('[') {
            continue; // hidden: a pool's data or metadata, a raid image, …
        }
        if !blockdev::is_safe_name(&r.vg_name) || !blockdev::is_safe_name(&r.lv_name) {
            log::warn!(
                "lvm: skipping LV with an unsafe name {:?}/{:?}",
                r.vg_name,
                r.lv_name
            );
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
        let kname = match (
            r.lv_kernel_major.parse::<i64>(),
            r.lv_kernel_minor.parse::<i64>(),
        ) {
            (Ok(ma), Ok(mi)) if ma >= 0 && mi >= 0 => {
                blockdev::kname_of_devno(ma as u64, mi as u64)
            }
            _ => None,
        };
        let missing = segs.iter().any(|s| s.devices.contains("[unknown]"))
            || r.lv_attr.get(8..9) == Some("p");
        let parity_raid = segs.iter().any(|s| {
            s.segtype.starts_with("raid4")
                || s.segtype.starts_with("raid5")
                || s.segtype.starts_with("raid6")
        });
        let error = match (&kname, missing) {
            (Some(k), _) if parity_raid && !readable(k) => Some(format!(
                "logical volume {}/{} ({}) cannot be read: the kernel's dm-raid writes its \
                 superblocks when a parity RAID LV starts, and the disks are read-only, so it \
                 failed its legs (not supported yet; md RAID5/6 arrays made with mdadm are)",
                r.vg_name,
                r.lv_name,
                segs.first().map_or("raid", |s| s.segtype.as_str())
            )),
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
        assert!(
            vols[0].pvs.is_empty(),
            "a PV node that does not exist is no disk"
        );
        assert!(vols[1].error.as_deref().unwrap().contains("missing"));
        assert!(vols[0]
            .error
            .as_deref()
            .unwrap()
            .contains("could not be activated"));
    }
}

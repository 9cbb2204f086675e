//! LVM thin volumes, opened read-only by hand.
//!
//! The kernel refuses a thin-pool target in a read-only table (it must be
//! able to write its metadata), and lvm2 puts it in one when the VG is in
//! `read_only_volume_list`, so `vgchange` leaves thin LVs inactive. The pool
//! target has its own `read_only` mode, in which it never changes its
//! metadata: this module maps the pool's hidden data and metadata LVs
//! (linear segments on PVs) in read-only tables, loads a thin-pool target
//! with `read_only` over them, and each thin LV — thin snapshots too,
//! whatever their activation-skip flag — as a `thin` target in a read-only
//! table on it. All from lvm2's own report (extents, device ids, chunk
//! size, sizes); lvm2 2.03.16 refuses to activate the hidden LVs itself
//! ("Operation not permitted on hidden LV").

use super::report::{PvRow, SegRow};
use crate::stacks::blockdev;
use crate::stacks::tools::Tools;
use std::collections::BTreeMap;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// lvm2's device-mapper name part: `-` doubled.
fn mangle(name: &str) -> String {
    name.replace('-', "--")
}

/// The kernel name of the device-mapper device called `dm_name`.
fn kname_of_dm(dm_name: &str) -> Option<String> {
    blockdev::derived_devices()
        .into_iter()
        .filter(|k| k.starts_with("dm-"))
        .find(|k| blockdev::attr(k, "dm/name").as_deref() == Some(dm_name))
}

fn bare(lv: &str) -> &str {
    lv.trim_start_matches('[').trim_end_matches(']')
}

fn bytes(s: &str) -> Option<u64> {
    s.trim().parse::<u64>().ok()
}

/// What lvm2 reports of one VG.
pub struct Layout<'a> {
    /// The VG name.
    pub vg: &'a str,
    /// Its extent size, bytes.
    pub extent_size: u64,
    /// Its PVs.
    pub pvs: &'a [PvRow],
    /// Every segment of every LV, hidden ones too.
    pub segs: &'a [SegRow],
}

/// Opens every thin pool of the VG read-only with its thin LVs. Returns,
/// per thin LV name, its device's kernel name or why it could not be
/// opened. Thin LVs lvm2 managed to activate itself are left out.
pub fn open_pools(tools: &Tools, layout: &Layout) -> BTreeMap<String, Result<String, String>> {
    let (vg, segs) = (layout.vg, layout.segs);
    let mut out = BTreeMap::new();
    let pools: Vec<&SegRow> = segs.iter().filter(|s| s.segtype == "thin-pool").collect();
    if pools.is_empty() || !blockdev::is_safe_name(vg) {
        return out;
    }
    for pool in pools {
        let thins: Vec<&SegRow> = segs
            .iter()
            .filter(|s| s.segtype == "thin" && bare(&s.pool_lv) == pool.lv_name)
            .filter(|s| kname_of_dm(&format!("{}-{}", mangle(vg), mangle(&s.lv_name))).is_none())
            .collect();
        if thins.is_empty() {
            continue;
        }
        let result = open_pool(tools, layout, pool);
        for t in thins {
            let r = result
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|pool_dev| open_thin(tools, vg, t, pool_dev));
            if let Err(e) = &r {
                log::warn!("lvm thin: {vg}/{}: {e}", t.lv_name);
            }
            out.insert(t.lv_name.clone(), r);
        }
    }
    out
}

/// A hidden linear LV (a pool's data or metadata) as a read-only
/// device-mapper device named `name`; its kernel name.
fn map_linear(tools: &Tools, layout: &Layout, lv: &str, name: &str) -> Result<String, String> {
    if let Some(k) = kname_of_dm(name) {
        return Ok(k);
    }
    let mut segs: Vec<&SegRow> = layout
        .segs
        .iter()
        .filter(|s| bare(&s.lv_name) == lv)
        .collect();
    segs.sort_by_key(|s| bytes(&s.seg_start).unwrap_or(0));
    if segs.is_empty() {
        return Err(format!("no segments of {}/{lv} in the report", layout.vg));
    }
    let mut lines = Vec::new();
    for s in segs {
        // "/dev/vda2:20-29": one PV range per linear segment.
        let (pv, range) = s
            .seg_pe_ranges
            .rsplit_once(':')
            .filter(|_| s.segtype == "linear")
            .ok_or_else(|| {
                format!(
                    "{}/{lv}: a {} segment is not supported here",
                    layout.vg, s.segtype
                )
            })?;
        let first: u64 = range
            .split_once('-')
            .and_then(|(a, _)| a.parse().ok())
            .ok_or_else(|| format!("{}/{lv}: bad extent range {range:?}", layout.vg))?;
        let pe_start = layout
            .pvs
            .iter()
            .find(|p| p.pv_name == pv)
            .and_then(|p| bytes(&p.pe_start))
            .ok_or_else(|| format!("{}/{lv}: PV {pv} is not present", layout.vg))?;
        let pv_dev = std::fs::canonicalize(pv).map_err(|e| format!("{pv}: {e}"))?;
        let start = bytes(&s.seg_start).unwrap_or(0);
        let size = bytes(&s.seg_size).unwrap_or(0);
        let offset = first
            .checked_mul(layout.extent_size)
            .and_then(|o| o.checked_add(pe_start))
            .ok_or_else(|| format!("{}/{lv}: extent offset overflows", layout.vg))?;
        lines.push(format!(
            "{} {} linear {} {}",
            start / 512,
            size / 512,
            pv_dev.display(),
            offset / 512
        ));
    }
    dmsetup_create(tools, name, &lines.join("\n"), true)?;
    kname_of_dm(name).ok_or_else(|| format!("{name} did not appear"))
}

/// The pool's read-only thin-pool device (`/dev/mapper/…`).
fn open_pool(tools: &Tools, layout: &Layout, pool: &SegRow) -> Result<String, String> {
    let vg = layout.vg;
    let (data, meta) = (bare(&pool.data_lv), bare(&pool.metadata_lv));
    if ![pool.lv_name.as_str(), data, meta]
        .iter()
        .all(|n| blockdev::is_safe_name(n))
    {
        return Err(format!("thin pool {vg}/{} has unsafe names", pool.lv_name));
    }
    let chunk = bytes(&pool.chunk_size)
        .filter(|c| *c >= 64 * 1024 && c % 512 == 0)
        .ok_or_else(|| {
            format!(
                "thin pool {vg}/{}: bad chunk size {:?}",
                pool.lv_name, pool.chunk_size
            )
        })?;
    let dm = |lv: &str| format!("fr-{}-{}", mangle(vg), mangle(lv));
    let mk = map_linear(tools, layout, meta, &dm(meta))
        .map_err(|e| format!("thin pool {vg}/{}: {e}", pool.lv_name))?;
    let dk = map_linear(tools, layout, data, &dm(data))
        .map_err(|e| format!("thin pool {vg}/{}: {e}", pool.lv_name))?;
    let name = dm(&pool.lv_name);
    if kname_of_dm(&name).is_none() {
        let table = format!(
            "0 {} thin-pool /dev/{mk} /dev/{dk} {} 0 1 read_only",
            blockdev::size(&dk) / 512,
            chunk / 512
        );
        dmsetup_create(tools, &name, &table, false)
            .map_err(|e| format!("thin pool {vg}/{}: {e}", pool.lv_name))?;
        log::info!(
            "lvm thin: pool {vg}/{} open read-only ({table})",
            pool.lv_name
        );
    }
    Ok(format!("/dev/mapper/{name}"))
}

/// A thin LV on the open pool, in a read-only table.
fn open_thin(tools: &Tools, vg: &str, t: &SegRow, pool_dev: &str) -> Result<String, String> {
    let id = bytes(&t.thin_id).ok_or_else(|| format!("no thin id ({:?})", t.thin_id))?;
    let size = bytes(&t.seg_size)
        .filter(|s| *s > 0 && s % 512 == 0)
        .ok_or_else(|| format!("bad size {:?}", t.seg_size))?;
    let name = format!("fr-{}-{}", mangle(vg), mangle(&t.lv_name));
    if kname_of_dm(&name).is_none() {
        let table = format!("0 {} thin {pool_dev} {id}", size / 512);
        dmsetup_create(tools, &name, &table, true)?;
    }
    kname_of_dm(&name).ok_or_else(|| format!("{name} did not appear"))
}

fn dmsetup_create(tools: &Tools, name: &str, table: &str, read_only: bool) -> Result<(), String> {
    let mut args = vec!["create", name, "--noudevsync", "--table", table];
    if read_only {
        args.push("--readonly");
    }
    let out = tools.run("dmsetup", &args, None, LIMIT)?;
    if out.ok() {
        Ok(())
    } else {
        Err(format!(
            "dmsetup create {name} failed: {}",
            out.stderr_tail()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(mangle("vg-main.1"), "vg--main.1");
        assert_eq!(bare("[pool_tdata]"), "pool_tdata");
        assert_eq!(bytes(" 65536 "), Some(65536));
    }
}

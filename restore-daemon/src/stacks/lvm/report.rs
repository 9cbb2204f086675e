//! lvm2's JSON reports, as rows: `lvm vgs` (the VG names) and
//! `lvm fullreport` (per VG: its extent size, PVs, LVs and segments).
//!
//! Plain data shared by the LV listing (`lvm`) and the thin-pool opener
//! (`thin`); it imports nothing of the daemon. Numbers stay strings, as
//! lvm2 prints them (`--units b --nosuffix`); their users parse them.

use serde::Deserialize;

/// `lvm vgs --reportformat json`.
#[derive(Deserialize)]
pub struct VgsReport {
    /// One section per report (lvm2 prints one).
    pub report: Vec<VgsSection>,
}

/// A section of [`VgsReport`].
#[derive(Deserialize)]
pub struct VgsSection {
    /// The VG rows.
    #[serde(default)]
    pub vg: Vec<VgRow>,
}

/// An LV of `lvm fullreport`.
#[derive(Deserialize)]
pub struct LvRow {
    /// Its VG.
    pub vg_name: String,
    /// Its name; hidden LVs are in brackets (`[pool_tdata]`).
    pub lv_name: String,
    /// The attribute string (`-wi-a-----`; the 9th character `p` is partial).
    #[serde(default)]
    pub lv_attr: String,
    /// Roles, comma-separated (`public`, `private,thin,pool`).
    #[serde(default)]
    pub lv_role: String,
    /// Its device's major number when active, else `-1`.
    #[serde(default)]
    pub lv_kernel_major: String,
    /// Its device's minor number when active, else `-1`.
    #[serde(default)]
    pub lv_kernel_minor: String,
}

/// A PV of `lvm fullreport`.
#[derive(Deserialize)]
pub struct PvRow {
    /// Its device node (`/dev/vda2`), or `[unknown]` when missing.
    pub pv_name: String,
    /// Its VG.
    #[serde(default)]
    pub vg_name: String,
    /// Where the first extent starts on the PV, bytes.
    #[serde(default)]
    pub pe_start: String,
}

/// A VG of `lvm fullreport`.
#[derive(Deserialize)]
pub struct VgInfo {
    /// Its name.
    pub vg_name: String,
    /// Its extent size, bytes.
    #[serde(default)]
    pub vg_extent_size: String,
}

/// A VG of `lvm vgs`.
#[derive(Deserialize)]
pub struct VgRow {
    /// Its name.
    pub vg_name: String,
    /// Its UUID.
    #[serde(default)]
    pub vg_uuid: String,
}

/// `lvm pvs --reportformat json -o pv_name,vg_uuid`.
#[derive(Deserialize)]
pub struct PvsReport {
    /// One section per report (lvm2 prints one).
    pub report: Vec<PvsSection>,
}

/// A section of [`PvsReport`].
#[derive(Deserialize)]
pub struct PvsSection {
    /// The PV rows.
    #[serde(default)]
    pub pv: Vec<PvsRow>,
}

/// A PV of `lvm pvs`.
#[derive(Deserialize)]
pub struct PvsRow {
    /// Its device node.
    pub pv_name: String,
    /// Its VG's UUID (empty for a PV in no VG).
    #[serde(default)]
    pub vg_uuid: String,
}

/// One VG's part of `lvm fullreport`.
#[derive(Deserialize)]
pub struct VgReport {
    /// The VG itself (one row).
    #[serde(default)]
    pub vg: Vec<VgInfo>,
    /// Its PVs.
    #[serde(default)]
    pub pv: Vec<PvRow>,
    /// Its LVs, hidden ones too.
    #[serde(default)]
    pub lv: Vec<LvRow>,
    /// Every segment of every LV.
    #[serde(default)]
    pub seg: Vec<SegRow>,
}

/// `lvm fullreport --reportformat json`: one part per VG.
#[derive(Deserialize)]
pub struct FullReport {
    /// The VGs' parts.
    pub report: Vec<VgReport>,
}

/// A segment of an LV in `lvm fullreport`.
#[derive(Deserialize)]
pub struct SegRow {
    /// The LV it belongs to.
    pub lv_name: String,
    /// `linear`, `striped`, `raid5`, `thin`, `thin-pool`, …
    #[serde(default)]
    pub segtype: String,
    /// The devices it is on (`/dev/vda2(0)`; `[unknown](0)` when missing).
    #[serde(default)]
    pub devices: String,
    /// Thin LVs: their device id in the pool.
    #[serde(default)]
    pub thin_id: String,
    /// Thin pools: the data block size, bytes.
    #[serde(default)]
    pub chunk_size: String,
    /// Thin LVs: their pool.
    #[serde(default)]
    pub pool_lv: String,
    /// Thin pools: the hidden data LV (`[pool_tdata]`).
    #[serde(default)]
    pub data_lv: String,
    /// Thin pools: the hidden metadata LV (`[pool_tmeta]`).
    #[serde(default)]
    pub metadata_lv: String,
    /// The segment's size, bytes.
    #[serde(default)]
    pub seg_size: String,
    /// Where the segment starts in its LV, bytes.
    #[serde(default)]
    pub seg_start: String,
    /// The PV extents it uses: `/dev/vda2:20-29`.
    #[serde(default)]
    pub seg_pe_ranges: String,
}

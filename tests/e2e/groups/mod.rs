//! The cases, by group (one group per source, so they share its VM).
//!
//! This index lists every group ([`all`]) and holds what several kinds of
//! group share (the VM of a source in status, a group's teardown, the
//! helper servers); the groups are by kind: `matrix` (every image and its
//! buckets) with `extract` (the CLI's extract modes), `lifecycle`,
//! `parallel`, `refusals`, `stacks` (LVM, md, LUKS), `zfs`, `ntfs`, `mapped` (big
//! files read from the disks by their map) and `search` (find, versions). Imports:
//! `checks`, `Ctx` and the `file_restore_tests` library.

mod bitlocker;
mod dupvg;
mod extract;
mod fwraid;
mod labels;
mod lifecycle;
mod mapped;
mod matrix;
mod ntfs;
mod older;
mod opened;
mod parallel;
mod refusals;
mod search;
mod stacks;
mod zfs;

use crate::checks::Src;
use crate::Ctx;
use anyhow::{ensure, Context, Result};
use file_restore_tests::harness::Group;
use file_restore_tests::manifest;
use serde_json::Value;
use std::path::Path;

type G = Group<Ctx>;

/// Every group of the suite.
pub fn all(ctx: &Ctx) -> Result<Vec<G>> {
    let mut v = vec![
        refusals::usage(),
        refusals::evil(ctx),
        lifecycle::lifecycle(),
        parallel::parallel(),
    ];
    v.extend(stacks::stack_groups(ctx)?);
    v.extend(refusals::bad_sources());
    v.extend(opened::opened_sources());
    v.extend(older::older_filesystems());
    v.extend(dupvg::dupvg_groups());
    v.extend(labels::label_groups());
    v.extend(fwraid::fwraid_groups());
    v.extend(mapped::mapped_groups());
    v.extend(bitlocker::bitlocker_groups());
    v.extend(zfs::zfs_groups());
    v.push(search::find_group(ctx));
    v.push(search::skip_group(ctx));
    v.push(search::stacks_group());
    v.push(search::versions_group());
    // The matrix: every image with its buckets.
    for (key, weight) in [
        ("gpt.img", 100),
        ("gpt.qcow2", 60),
        // Zeroed refcounts (qemu-img check: corruptions), every byte intact.
        ("damaged.qcow2", 40),
        ("mbr.img", 50),
        ("mbr.vmdk", 50),
        ("raw-ext4.img", 30),
        ("squashfs.img", 30),
        ("exfat.img", 15),
        ("iso.iso", 15),
        ("dirty-ext4.img", 15),
        ("dirty-xfs.img", 15),
        ("zeroed-super.img", 15),
        ("swap.img", 5),
        ("big-ext4.img", 40),
        // LVM activated in the guest: two LVs, one in two segments stored in
        // reverse order on the PV.
        ("lvm.img", 40),
    ] {
        let src = Src::image(ctx, key);
        let mut g = matrix::matrix_group(ctx, src.clone(), weight)?;
        match key {
            "gpt.img" => extract::gpt_extras(&mut g, &src),
            "dirty-ext4.img" => matrix::dirty_ext4_extras(&mut g, &src),
            "big-ext4.img" => matrix::big_extras(&mut g, &src),
            _ => {}
        }
        v.push(g);
    }
    for (dir, weight) in [
        ("store/100/qemu-1700000000", 30),
        ("store/100/qemu-1700003600", 30),
        ("store/101/qemu-1700000000", 80),
    ] {
        let src = Src::snapshot(ctx, dir)?;
        let mut g = matrix::matrix_group(ctx, src.clone(), weight)?;
        matrix::store_extras(&mut g, &src);
        v.push(g);
    }
    v.push(ntfs::ntfs_group(ctx)?);
    v.push(matrix::nbd_group(ctx)?);
    v.push(lifecycle::broken_transfer());
    Ok(v)
}

/// Helper servers (qemu-nbd) started while building the groups; killed by
/// [`kill_servers`] at the end of every run, filtered or not.
static SERVERS: std::sync::Mutex<Vec<std::process::Child>> = std::sync::Mutex::new(Vec::new());

/// Kills and reaps the helper servers.
pub fn kill_servers() {
    if let Ok(mut servers) = SERVERS.lock() {
        for mut c in servers.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The last case of a group: stop the VMs of its source.
pub fn teardown_for(g: &mut G, source: std::path::PathBuf) {
    g.teardown = Some(Box::new(move |ctx: &Ctx| {
        ctx.cli.stop_vms_for(&source)?;
        Ok(())
    }));
}

fn manifest_of(ctx: &Ctx, src: &Src, bucket: &str) -> Result<manifest::Manifest> {
    let key = src.disks.values().next().context("no disk")?;
    let b = ctx.fx.bucket(key, bucket)?;
    ctx.fx
        .manifest(b.manifest.as_deref().context("bucket without a manifest")?)
}

/// The file name of `p`, as `status` shows it in `label`.
fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn one_vm(ctx: &Ctx, src: &Path, what: &str) -> Result<Value> {
    let vms = ctx.cli.vms_for(src)?;
    ensure!(
        vms.len() == 1,
        "{what}: status lists {} VMs for {}: {vms:?}",
        vms.len(),
        src.display()
    );
    Ok(vms.into_iter().next().unwrap_or_default())
}

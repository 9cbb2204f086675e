//! Where a bucket's block device lies on the virtio disks: a partition is
//! one slice of its disk, a device-mapper device of `linear` targets (a
//! plain LVM volume) is a list of slices. Anything else (dm-crypt, RAID,
//! thin pools, snapshots, md) has no such map: its bytes on the disks are
//! not the device's bytes.

use crate::stacks::blockdev;
use crate::stacks::tools::Tools;
use std::path::Path;
use std::time::Duration;

/// How deep device-mapper devices may stack on each other here.
const MAX_DEPTH: usize = 4;
/// Most table lines (slices) accepted for one device.
const MAX_SLICES: usize = 4096;
/// How long `dmsetup table` may take.
const DMSETUP_LIMIT: Duration = Duration::from_secs(10);

/// A slice of a device: `length` bytes at `start` of the device are the
/// bytes at `disk_offset` of the whole disk `disk` (a kernel name, `vda`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    /// Offset in the device.
    pub start: u64,
    /// Length in bytes.
    pub length: u64,
    /// Kernel name of the whole disk.
    pub disk: String,
    /// Offset on that disk.
    pub disk_offset: u64,
}

/// The slices of the block device `kname`, in device order, covering it
/// from 0 without gaps; or why there are none.
pub fn slices(kname: &str, tools: Option<&Tools>) -> Result<Vec<Slice>, String> {
    slices_at(kname, tools, 0)
}

fn slices_at(kname: &str, tools: Option<&Tools>, depth: usize) -> Result<Vec<Slice>, String> {
    if depth > MAX_DEPTH {
        return Err(format!("{kname}: device-mapper devices stacked too deep"));
    }
    let class = Path::new("/sys/class/block").join(kname);
    let size = blockdev::size(kname);
    if class.join("partition").exists() {
        let start = blockdev::attr(kname, "start")
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| format!("{kname}: no partition start in sysfs"))?;
        let parent = std::fs::canonicalize(&class)
            .ok()
            .and_then(|p| {
                p.parent()?
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .ok_or_else(|| format!("{kname}: cannot find the disk it is a partition of"))?;
        return Ok(vec![Slice {
            start: 0,
            length: size,
            disk: parent,
            disk_offset: start.checked_mul(512).ok_or("partition start overflows")?,
        }]);
    }
    if class.join("md").exists() {
        return Err("an md RAID array".into());
    }
    if class.join("dm").exists() {
        let tools = tools.ok_or("no dmsetup to read the device-mapper table")?;
        let dev = blockdev::attr(kname, "dev").ok_or_else(|| format!("{kname}: no dev"))?;
        let (major, minor) = dev
            .split_once(':')
            .ok_or_else(|| format!("{kname}: bad dev {dev:?}"))?;
        let out = tools.run(
            "dmsetup",
            &["table", "-j", major, "-m", minor],
            None,
            DMSETUP_LIMIT,
        )?;
        if !out.ok() {
            return Err(format!("dmsetup table failed: {}", out.stderr_tail()));
        }
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        return from_table(&table, |maj, min| {
            let under = blockdev::kname_of_devno(maj, min)
                .ok_or_else(|| format!("no block device {maj}:{min}"))?;
            slices_at(&under, Some(tools), depth + 1)
        });
    }
    if class.join("device").exists() && kname.starts_with("vd") {
        return Ok(vec![Slice {
            start: 0,
            length: size,
            disk: kname.to_owned(),
            disk_offset: 0,
        }]);
    }
    Err(format!("{kname} is not a slice of a virtio disk"))
}

/// The slices of a device-mapper table of `linear` targets; `under` gives
/// the slices of an underlying device `major:minor`.
fn from_table(
    table: &str,
    mut under: impl FnMut(u64, u64) -> Result<Vec<Slice>, String>,
) -> Result<Vec<Slice>, String> {
    let mut out = Vec::new();
    let mut expect = 0u64;
    for line in table.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("bad table line {line:?}"))
        };
        let (start, len, target) = match f.as_slice() {
            [s, l, t, ..] => (num(s)?, num(l)?, *t),
            _ => return Err(format!("bad table line {line:?}")),
        };
        if target != "linear" {
            return Err(format!(
                "device-mapper target '{target}' (not a plain slice of a disk)"
            ));
        }
        let [_, _, _, dev, off] = f.as_slice() else {
            return Err(format!("bad linear line {line:?}"));
        };
        let (maj, min) = dev
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or_else(|| format!("bad device {dev:?} in {line:?}"))?;
        let (start, len, off) = (
            start.checked_mul(512).ok_or("table overflows")?,
            len.checked_mul(512).ok_or("table overflows")?,
            num(off)?.checked_mul(512).ok_or("table overflows")?,
        );
        if start != expect {
            return Err(format!(
                "device-mapper table has a gap at sector {}",
                expect / 512
            ));
        }
        expect = start.checked_add(len).ok_or("table overflows")?;
        for s in cut(&under(maj, min)?, off, len)? {
            out.push(Slice {
                start: s.start - off + start,
                ..s
            });
            if out.len() > MAX_SLICES {
                return Err(format!("more than {MAX_SLICES} slices"));
            }
        }
    }
    Ok(out)
}

/// The part `[from, from + len)` of a device made of `slices`.
fn cut(slices: &[Slice], from: u64, len: u64) -> Result<Vec<Slice>, String> {
    let end = from.checked_add(len).ok_or("range overflows")?;
    let mut out = Vec::new();
    for s in slices {
        let (a, b) = (s.start.max(from), (s.start + s.length).min(end));
        if a < b {
            out.push(Slice {
                start: a,
                length: b - a,
                disk: s.disk.clone(),
                disk_offset: s.disk_offset + (a - s.start),
            });
        }
    }
    let covered: u64 = out.iter().map(|s| s.length).sum();
    if covered != len {
        return Err(format!(
            "bytes {from}..{end} lie beyond the underlying device"
        ));
    }
    Ok(out)
}

/// Translates `[offset, offset + length)` of the device into pieces on the
/// disks: `(disk, disk_offset, length)`, in order.
pub fn translate(
    slices: &[Slice],
    offset: u64,
    length: u64,
) -> Result<Vec<(String, u64, u64)>, String> {
    Ok(cut(slices, offset, length)?
        .into_iter()
        .map(|s| (s.disk, s.disk_offset, s.length))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(len: u64, at: u64) -> Vec<Slice> {
        vec![Slice {
            start: 0,
            length: len,
            disk: "vda".into(),
            disk_offset: at,
        }]
    }

    #[test]
    fn linear_segments_in_any_order() {
        // Two segments of an LV, the second before the first on the PV,
        // which is partition 1 (1 MiB into vda).
        let t = "0 8 linear 252:1 2048\n8 8 linear 252:1 16\n";
        let s = from_table(t, |_, _| Ok(disk(1 << 30, 1 << 20))).unwrap();
        assert_eq!(
            translate(&s, 0, 8192).unwrap(),
            [
                ("vda".into(), (1 << 20) + 2048 * 512, 4096),
                ("vda".into(), (1 << 20) + 16 * 512, 4096)
            ]
        );
        assert_eq!(
            translate(&s, 4000, 200).unwrap(),
            [
                ("vda".into(), (1 << 20) + 2048 * 512 + 4000, 96),
                ("vda".into(), (1 << 20) + 16 * 512, 104)
            ]
        );
        assert!(translate(&s, 8000, 500).is_err(), "past the end");
    }

    #[test]
    fn refuses_what_is_no_slice() {
        let e = from_table(
            "0 8 crypt aes-xts-plain64 :64:logon:x 0 252:1 4096\n",
            |_, _| Ok(disk(1 << 30, 0)),
        )
        .unwrap_err();
        assert!(e.contains("'crypt'"), "{e}");
        assert!(
            from_table("0 8 linear 252:1 0\n16 8 linear 252:1 0\n", |_, _| Ok(
                disk(1 << 30, 0)
            ))
            .unwrap_err()
            .contains("gap")
        );
        assert!(from_table("0 8 linear 252:1 0\n", |_, _| Ok(disk(1024, 0)))
            .unwrap_err()
            .contains("beyond"));
        assert!(from_table("0 8 linear 252:1\n", |_, _| Ok(disk(1 << 30, 0))).is_err());
    }
}

//! Read-only, on-demand mounts of buckets.
//!
//! A bucket is mounted on its first access, never before: the scan only
//! reads superblocks. Every mount is `ro,nosuid,nodev,noexec` with options
//! that keep the kernel from replaying a dirty journal or log onto the
//! read-only disk, which would fail (or, on a writable disk, change it).

use crate::bucket::{Bucket, MountPhase, MountState};
use crate::error::ApiError;
use file_restore_fsmagic::FsType;
use hyper::StatusCode;
use nix::mount::MsFlags;
use std::path::{Path, PathBuf};

/// Kernel filesystem type and data options for a detected type, or `None`
/// when the type cannot be mounted.
pub fn mount_options(fstype: FsType) -> Option<(&'static str, &'static str)> {
    Some(match fstype {
        // The ext4 driver serves ext2 and ext3 too; noload skips the journal.
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 => ("ext4", "noload"),
        FsType::Xfs => ("xfs", "norecovery"),
        // The top level (subvolid 5), not the default subvolume: every
        // subvolume and snapshot is then a directory below the bucket.
        FsType::Btrfs => ("btrfs", "rescue=nologreplay,subvolid=5"),
        FsType::Vfat => ("vfat", "iocharset=utf8,shortname=mixed"),
        FsType::Exfat => ("exfat", "iocharset=utf8"),
        FsType::Iso9660 => ("iso9660", "iocharset=utf8"),
        FsType::Udf => ("udf", "utf8"),
        FsType::Squashfs => ("squashfs", ""),
        FsType::F2fs => ("f2fs", "norecovery"),
        FsType::Hfsplus => ("hfsplus", ""),
        FsType::Hfs => ("hfs", ""),
        FsType::Ufs1 => ("ufs", "ufstype=44bsd"),
        FsType::Ufs2 => ("ufs", "ufstype=ufs2"),
        // ntfs3 mounts a volume whose dirty flag is set (an unclean Windows shutdown)
        // read-only, and never replays its $LogFile onto a read-only device.
        FsType::Ntfs => ("ntfs3", "iocharset=utf8"),
        FsType::Erofs => ("erofs", ""),
        // JFS opens its journal only on read-write mounts (replay is fsck.jfs's job).
        FsType::Jfs => ("jfs", "iocharset=utf8"),
        // Drivers of older and other systems, read-only. NILFS2 would roll its log
        // forward on mount without norecovery.
        FsType::Reiserfs => ("reiserfs", ""),
        FsType::Nilfs2 => ("nilfs2", "norecovery"),
        FsType::Minix => ("minix", ""),
        FsType::Romfs => ("romfs", ""),
        FsType::Cramfs => ("cramfs", ""),
        FsType::Hpfs => ("hpfs", ""),
        FsType::Befs => ("befs", ""),
        FsType::Bfs => ("bfs", ""),
        FsType::Sysv => ("sysv", ""),
        FsType::Vxfs => ("freevxfs", ""),
        FsType::Qnx4 => ("qnx4", ""),
        // Cluster filesystems, read as local ones. GFS2 would otherwise ask for the
        // DLM of its cluster (lock_dlm), which the guest has not: lock_nolock reads it
        // alone. OCFS2 on a read-only device with heartbeat=none mounts "hard read-only":
        // no cluster services, no journal recovery (fs/ocfs2/super.c).
        FsType::Gfs2 => ("gfs2", "lockproto=lock_nolock"),
        FsType::Ocfs2 => ("ocfs2", "heartbeat=none"),
        // A dataset or snapshot, mounted by name (its `mountpoint` is not
        // consulted: legacy and none mount too). A snapshot is read-only anyway.
        FsType::Zfs => ("zfs", ""),
        FsType::Apfs
        | FsType::ZfsMember
        | FsType::LvmPv
        | FsType::Swap
        | FsType::Luks
        | FsType::Bitlocker
        | FsType::MdMember
        | FsType::Unknown => return None,
    })
}

/// Mounts `bucket` of disk `disk` below `base` if it is not mounted yet and
/// returns its mount point. Errors name the disk, the bucket and its type.
pub fn ensure_mounted(disk: &str, bucket: &Bucket, base: &Path) -> Result<PathBuf, ApiError> {
    let label = format!("{disk}/{}/{}", bucket.kind.name(), bucket.name);
    if let Some(e) = &bucket.error {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("bucket {label} cannot be read: {e}"),
        ));
    }
    if bucket.fstype == FsType::Zfs && bucket.locked == Some(true) {
        if let Some(why) = &bucket.not_mountable {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("bucket {label} cannot be mounted: {why}"),
            ));
        }
    }
    let Some((fs, data)) = mount_options(bucket.fstype) else {
        let open_reason;
        let why = if bucket.locked == Some(false) {
            open_reason = format!(
                "it is an open {} container: its content is the bucket luks/{}",
                bucket.encryption.as_deref().unwrap_or("LUKS"),
                crate::stacks::luks_content_name(bucket.kind.name(), &bucket.name)
            );
            open_reason.as_str()
        } else {
            bucket
                .not_mountable
                .as_deref()
                .unwrap_or("unsupported type")
        };
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "bucket {label} (detected type {}) cannot be mounted: {why}",
                bucket.type_name
            ),
        ));
    };
    let mut state = bucket
        .mount
        .lock()
        .map_err(|_| ApiError::internal(format!("bucket {label}: mount state poisoned")))?;
    if let MountState::Mounted(p) = &*state {
        return Ok(p.clone());
    }
    let target = base
        .join(disk)
        .join(bucket.kind.name())
        .join(bucket.name.replace('/', "_"));
    std::fs::create_dir_all(&target).map_err(|e| {
        ApiError::internal(format!(
            "bucket {label}: cannot create mount point {}: {e}",
            target.display()
        ))
    })?;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let data_opt = if data.is_empty() { None } else { Some(data) };
    let started = std::time::Instant::now();
    bucket.phase.set(MountPhase::Mounting);
    let source: &std::ffi::OsStr = match &bucket.dataset {
        Some(d) => d.as_ref(),
        None => bucket.device.as_os_str(),
    };
    nix::mount::mount(Some(source), &target, Some(fs), flags, data_opt).map_err(|e| {
        bucket.phase.set(MountPhase::NotMounted);
        let hint = match e {
            nix::errno::Errno::EINVAL | nix::errno::Errno::EUCLEAN | nix::errno::Errno::EIO => {
                " (the filesystem looks damaged or is not what its magic says)"
            }
            nix::errno::Errno::ENODEV => " (the guest kernel has no driver for it)",
            _ => "",
        };
        log::warn!("mount of {label} ({}) failed: {e}", bucket.type_name);
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "bucket {label} (detected type {}) failed to mount read-only: {}{hint}",
                bucket.type_name,
                e.desc()
            ),
        )
    })?;
    log::info!(
        "mounted {label} ({fs}, {}) at {} in {} ms",
        if data.is_empty() { "-" } else { data },
        target.display(),
        started.elapsed().as_millis()
    );
    *state = MountState::Mounted(target.clone());
    bucket.phase.set(MountPhase::Mounted);
    Ok(target)
}

/// Unmounts everything this daemon mounted (dev mode clean-up).
pub fn unmount_all(buckets: &[std::sync::Arc<Bucket>]) {
    for b in buckets {
        if let Ok(mut st) = b.mount.lock() {
            if let MountState::Mounted(p) = &*st {
                if let Err(e) = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH) {
                    log::warn!("unmount {}: {e}", p.display());
                }
                let _ = std::fs::remove_dir(p);
            }
            *st = MountState::NotMounted;
            b.phase.set(MountPhase::NotMounted);
        }
    }
}

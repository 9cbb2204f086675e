//! What a start is asked for: the boot files, the disk images, the
//! accelerator and transport wanted, time limits and resource sizes.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::VHOST_USER_BINARY;
use crate::qemu;
use crate::vm::keeper::KeeperOptions;

/// Which accelerator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelPreference {
    /// KVM when `/dev/kvm` opens and the guest answers under it, else TCG.
    #[default]
    Auto,
    /// KVM only.
    Kvm,
    /// TCG only.
    Tcg,
}

/// Which vsock transport to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportPreference {
    /// Kernel vsock when `/dev/vhost-vsock` opens, else the vhost-user sidecar.
    #[default]
    Auto,
    /// Kernel vsock (`vhost-vsock-device`).
    Kernel,
    /// vhost-user vsock through `vhost-device-vsock`.
    VhostUser,
}

/// One disk image to attach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSpec {
    /// The image file, `/dev/fd/N` for a descriptor this process holds open
    /// (the helper and QEMU inherit it under the same number, close-on-exec
    /// or not), or an `nbd://` / `nbd+unix://` URI.
    pub path: PathBuf,
    /// QEMU format (`raw`, `qcow2`, …).
    pub format: String,
    /// The disk's name in the guest (sanitized into its serial).
    pub name: String,
}

/// Time limits of a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchTimeouts {
    /// Until the daemon answers under TCG.
    pub tcg_ready: Duration,
    /// Until the daemon answers under KVM (then TCG is tried, in auto mode).
    /// The guest answers in under a second even under TCG; a KVM that does not
    /// work may leave QEMU running with the vCPU stopped (seen on PVM hosts),
    /// so this is what the first start after a host boot loses there.
    pub kvm_ready: Duration,
    /// Limit of one readiness probe (connect + answer).
    pub probe: Duration,
    /// Until the vhost-user sidecar's socket appears.
    pub sidecar_ready: Duration,
}

impl Default for LaunchTimeouts {
    fn default() -> Self {
        LaunchTimeouts {
            tcg_ready: Duration::from_secs(60),
            kvm_ready: Duration::from_secs(5),
            probe: Duration::from_secs(3),
            sidecar_ready: Duration::from_secs(5),
        }
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// Guest kernel (`vmlinux` for the faster PVH boot, or a bzImage).
    pub kernel: PathBuf,
    /// The base initramfs (the per-VM ticket is appended in memory).
    pub initramfs: PathBuf,
    /// The storage-tools image (lvm, mdadm, cryptsetup; attached read-only
    /// for the guest to use when a disk holds LVM, md or LUKS); the default
    /// is `tools.img` beside the initramfs, when it is there.
    pub tools: Option<PathBuf>,
    /// Disks, in order.
    pub images: Vec<ImageSpec>,
    /// Accelerator choice.
    pub accel: AccelPreference,
    /// Transport choice.
    pub transport: TransportPreference,
    /// Directory under which the private per-VM run directory is created
    /// (created with mode 0700 if missing).
    pub base_dir: PathBuf,
    /// Time limits.
    pub timeouts: LaunchTimeouts,
    /// QEMU binary (looked up on `$PATH` without a `/`). A setuid helper
    /// accepts only [`crate::helper::QEMU_PATHS`].
    pub qemu_binary: PathBuf,
    /// `file-restore-helper`; `None`: [`crate::helper::locate_helper`].
    pub helper_binary: Option<PathBuf>,
    /// vhost-user vsock sidecar binary (without a `/`: looked up on `$PATH`,
    /// then in the install directories).
    pub vhost_user_binary: PathBuf,
    /// The daemon's vsock port.
    pub port: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Guest RAM; `None`: [`qemu::memory_for_disks`].
    pub memory_mib: Option<u32>,
    /// The host-side keeper of the VM's lifetime and console log
    /// ([`crate::vm::keeper`]); `None`: none (the VM then lives until its
    /// guest powers it off or it is stopped).
    pub keeper: Option<KeeperOptions>,
}

impl LaunchOptions {
    /// Options with defaults: auto accelerator and transport, default
    /// timeouts, binaries from `$PATH`, port 1024, 1 CPU.
    pub fn new(
        kernel: impl Into<PathBuf>,
        initramfs: impl Into<PathBuf>,
        images: Vec<ImageSpec>,
        base_dir: impl Into<PathBuf>,
    ) -> Self {
        let initramfs: PathBuf = initramfs.into();
        let tools = initramfs.with_file_name(file_restore_initramfs::TOOLS_FILE);
        LaunchOptions {
            kernel: kernel.into(),
            tools: tools.is_file().then_some(tools),
            initramfs,
            images,
            accel: AccelPreference::Auto,
            transport: TransportPreference::Auto,
            base_dir: base_dir.into(),
            timeouts: LaunchTimeouts::default(),
            qemu_binary: qemu::QEMU_BINARY.into(),
            helper_binary: None,
            vhost_user_binary: VHOST_USER_BINARY.into(),
            port: file_restore_wire::DEFAULT_PORT,
            cpus: 1,
            memory_mib: None,
            keeper: Some(KeeperOptions::default()),
        }
    }
}

//! Choosing the accelerator of a start and its attempts: KVM where it works, else TCG;
//! a KVM that failed once is not tried again until the host reboots. And
//! choosing the vsock transport: kernel vsock with a CID of this user's
//! block, else the vhost-user sidecar.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::RangeInclusive;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    AccelPreference, LaunchError, LaunchOptions, LaunchTimeouts, TransportPreference,
    VHOST_USER_INSTALL_HINT,
};
use crate::helper::cids::{cid_range, no_range_reason};
use crate::helper::{self};
use crate::qemu::Accel;
use crate::util::process::find_program;

/// A TCG boot takes ~2 s; one that has not answered after this long is
/// stuck (seen rarely: the daemon listening, yet no vsock connection
/// through the sidecar ever answered), and a fresh VM is the cure.
const TCG_FIRST_ATTEMPT: Duration = Duration::from_secs(20);

/// The attempts of a start: accelerator and readiness limit each. Under
/// TCG, a budget of more than twice [`TCG_FIRST_ATTEMPT`] is split into a
/// first attempt and one fresh retry, keeping the total.
pub(super) fn plan_attempts(accels: &[Accel], t: &LaunchTimeouts) -> Vec<(Accel, Duration)> {
    let mut v = Vec::new();
    for &a in accels {
        match a {
            Accel::Kvm => v.push((a, t.kvm_ready)),
            Accel::Tcg if t.tcg_ready > TCG_FIRST_ATTEMPT * 2 => {
                v.push((a, TCG_FIRST_ATTEMPT));
                v.push((a, t.tcg_ready - TCG_FIRST_ATTEMPT));
            }
            Accel::Tcg => v.push((a, t.tcg_ready)),
        }
    }
    v
}

/// How a start uses the accelerators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AccelPlan {
    /// These, in turn: the next only when one did not work.
    InTurn(Vec<Accel>),
    /// KVM and TCG at once; the first guest to answer is kept, the other
    /// stopped. For `auto` where `/dev/kvm` opens and nothing is known yet
    /// since the host booted: a `/dev/kvm` that cannot run the guest (PVM)
    /// then costs the first start nothing, where waiting for KVM first cost
    /// it the whole KVM readiness limit (5 s).
    Race,
}

pub(super) fn choose_accels(
    pref: AccelPreference,
    base_dir: &Path,
) -> Result<AccelPlan, LaunchError> {
    Ok(match pref {
        AccelPreference::Tcg => AccelPlan::InTurn(vec![Accel::Tcg]),
        AccelPreference::Kvm => {
            open_rw("/dev/kvm").map_err(LaunchError::KvmUnavailable)?;
            AccelPlan::InTurn(vec![Accel::Kvm])
        }
        AccelPreference::Auto => match open_rw("/dev/kvm") {
            Ok(_) if known_since_boot(base_dir, KVM_UNUSABLE_FILE) => {
                log::debug!(
                    "KVM failed earlier since this boot ({}), using TCG",
                    base_dir.join(KVM_UNUSABLE_FILE).display()
                );
                AccelPlan::InTurn(vec![Accel::Tcg])
            }
            Ok(_) if known_since_boot(base_dir, KVM_WORKS_FILE) => {
                AccelPlan::InTurn(vec![Accel::Kvm, Accel::Tcg])
            }
            Ok(_) => AccelPlan::Race,
            Err(e) => {
                log::debug!("/dev/kvm not usable ({e}), using TCG");
                AccelPlan::InTurn(vec![Accel::Tcg])
            }
        },
    })
}

/// Where a failed KVM start is remembered (in the base directory): the host's
/// boot id, then why. `/dev/kvm` can open and still not run a guest (e.g. a
/// PVM host kernel); trying it costs every cold start a QEMU start, so after
/// one failure `auto` goes straight to TCG until the host reboots.
pub const KVM_UNUSABLE_FILE: &str = "kvm-unusable";

/// Where a KVM guest that answered is remembered (as [`KVM_UNUSABLE_FILE`]):
/// later starts of this boot use KVM alone, with TCG only after a failure,
/// instead of racing the two.
pub const KVM_WORKS_FILE: &str = "kvm-works";

/// The host's boot id (new at every boot), or an empty string.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Whether the memo `file` was written since this host booted.
fn known_since_boot(base_dir: &Path, file: &str) -> bool {
    let id = boot_id();
    !id.is_empty()
        && std::fs::read_to_string(base_dir.join(file))
            .is_ok_and(|s| s.lines().next() == Some(id.as_str()))
}

/// Writes the memo `file` (boot id, then the first line of `why`); best effort.
fn remember(base_dir: &Path, file: &str, why: &str) -> bool {
    let path = base_dir.join(file);
    let first_line = why.lines().next().unwrap_or("");
    match std::fs::write(&path, format!("{}\n{first_line}\n", boot_id())) {
        Ok(()) => true,
        Err(e) => {
            log::debug!("cannot write {}: {e}", path.display());
            false
        }
    }
}

/// Records that KVM did not work (see [`KVM_UNUSABLE_FILE`]).
pub(super) fn remember_kvm_unusable(base_dir: &Path, why: &str) {
    let _ = std::fs::remove_file(base_dir.join(KVM_WORKS_FILE));
    if remember(base_dir, KVM_UNUSABLE_FILE, why) {
        log::info!(
            "KVM does not work here ({}); later starts use TCG until the host reboots (remove {} to retry)",
            why.lines().next().unwrap_or(""),
            base_dir.join(KVM_UNUSABLE_FILE).display()
        );
    }
}

/// Records that a KVM guest answered (see [`KVM_WORKS_FILE`]).
pub(super) fn remember_kvm_works(base_dir: &Path) {
    remember(base_dir, KVM_WORKS_FILE, "a KVM guest answered");
}

/// The transport once chosen (sidecar binary resolved).
#[derive(Debug, Clone)]
pub(super) enum ChosenTransport {
    /// Kernel vsock with a CID from this user's block.
    Kernel {
        cids: RangeInclusive<u32>,
    },
    VhostUser {
        sidecar: PathBuf,
    },
}

pub(super) fn open_rw(path: &str) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

/// The vhost-user sidecar: a path as is; a bare name on `$PATH`, else in
/// the install directories (the Debian package ships it in
/// `/usr/lib/file-restore`).
fn find_sidecar(binary: &Path) -> Option<PathBuf> {
    find_program(binary).or_else(|| {
        let name = binary.to_str().filter(|n| !n.contains('/'))?;
        crate::util::install::find_installed(name)
    })
}

pub(super) fn choose_transport(
    opts: &LaunchOptions,
    helper: &Path,
) -> Result<ChosenTransport, LaunchError> {
    let sidecar = || {
        find_sidecar(&opts.vhost_user_binary).ok_or_else(|| LaunchError::MissingProgram {
            program: opts.vhost_user_binary.clone(),
            hint: format!(
                " on PATH nor in {}; install it with `{VHOST_USER_INSTALL_HINT}`",
                crate::util::install::INSTALL_DIRS.join(" or ")
            ),
        })
    };
    // The helper opens /dev/vhost-vsock: it is usable when we can open it,
    // or when the helper is setuid root and the device exists; and only
    // with CIDs of this user's block (see helper::cids).
    let uid = nix::unistd::getuid().as_raw();
    let kernel_vsock = || -> io::Result<RangeInclusive<u32>> {
        let cids = cid_range(uid).ok_or_else(|| io::Error::other(no_range_reason(uid)))?;
        match open_rw(helper::VHOST_VSOCK_DEVICE) {
            Ok(_) => Ok(cids),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                let is_device = std::fs::metadata(helper::VHOST_VSOCK_DEVICE)
                    .is_ok_and(|m| m.file_type().is_char_device());
                if is_device && helper::helper_is_setuid_root(helper) {
                    Ok(cids)
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    };
    match opts.transport {
        TransportPreference::Kernel => kernel_vsock()
            .map(|cids| ChosenTransport::Kernel { cids })
            .map_err(LaunchError::KernelVsockUnavailable),
        TransportPreference::VhostUser => Ok(ChosenTransport::VhostUser {
            sidecar: sidecar()?,
        }),
        TransportPreference::Auto => match kernel_vsock() {
            Ok(cids) => Ok(ChosenTransport::Kernel { cids }),
            Err(e) => match sidecar() {
                Ok(sidecar) => Ok(ChosenTransport::VhostUser { sidecar }),
                Err(_) => Err(LaunchError::NoTransport {
                    vhost_vsock_error: e.to_string(),
                }),
            },
        },
    }
}

//! Choosing the accelerator of a start and its attempts: KVM where it works, else TCG;
//! a KVM that failed once is not tried again until the host reboots.

use std::path::Path;
use std::time::Duration;

use super::{open_rw, AccelPreference, LaunchError, LaunchTimeouts};
use crate::qemu::Accel;

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

pub(super) fn choose_accels(
    pref: AccelPreference,
    base_dir: &Path,
) -> Result<Vec<Accel>, LaunchError> {
    Ok(match pref {
        AccelPreference::Tcg => vec![Accel::Tcg],
        AccelPreference::Kvm => {
            open_rw("/dev/kvm").map_err(LaunchError::KvmUnavailable)?;
            vec![Accel::Kvm]
        }
        AccelPreference::Auto => match open_rw("/dev/kvm") {
            Ok(_) if kvm_known_unusable(base_dir) => {
                log::debug!(
                    "KVM failed earlier since this boot ({}), using TCG",
                    base_dir.join(KVM_UNUSABLE_FILE).display()
                );
                vec![Accel::Tcg]
            }
            Ok(_) => vec![Accel::Kvm, Accel::Tcg],
            Err(e) => {
                log::debug!("/dev/kvm not usable ({e}), using TCG");
                vec![Accel::Tcg]
            }
        },
    })
}

/// Where a failed KVM start is remembered (in the base directory): the host's
/// boot id, then why. `/dev/kvm` can open and still not run a guest (e.g. a
/// PVM host kernel); trying it costs every cold start a QEMU start, so after
/// one failure `auto` goes straight to TCG until the host reboots.
pub const KVM_UNUSABLE_FILE: &str = "kvm-unusable";

/// The host's boot id (new at every boot), or an empty string.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Whether a KVM start failed earlier since this host booted.
fn kvm_known_unusable(base_dir: &Path) -> bool {
    let id = boot_id();
    !id.is_empty()
        && std::fs::read_to_string(base_dir.join(KVM_UNUSABLE_FILE))
            .is_ok_and(|s| s.lines().next() == Some(id.as_str()))
}

/// Records that KVM did not work (see [`KVM_UNUSABLE_FILE`]); best effort.
pub(super) fn remember_kvm_unusable(base_dir: &Path, why: &str) {
    let path = base_dir.join(KVM_UNUSABLE_FILE);
    let first_line = why.lines().next().unwrap_or("");
    if let Err(e) = std::fs::write(&path, format!("{}\n{first_line}\n", boot_id())) {
        log::debug!("cannot write {}: {e}", path.display());
    } else {
        log::info!(
            "KVM does not work here; later starts use TCG until the host reboots (remove {} to retry)",
            path.display()
        );
    }
}

//! What one name in the VM map holds: a running VM, or the reservation of
//! an invocation that is starting one.
//!
//! The map lock is held only to read and change the map, never while a VM
//! boots or a guest is asked something. A start therefore goes in three
//! steps: under the lock a [`Reservation`] is recorded for the name; without
//! the lock the VM boots and is probed; under the lock again the running VM
//! replaces the reservation. Another invocation that finds a live
//! reservation waits for it (bounded) instead of starting a second VM, and a
//! reservation whose process is gone (killed, crashed) is stale and replaced.

use serde::{Deserialize, Deserializer, Serialize};

use super::VmEntry;
use crate::util::process::pid_start_time;

/// One entry of the VM map.
///
/// Serialized as the [`VmEntry`] itself (the format of earlier versions) or
/// as `{"starting": RESERVATION}`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum MapSlot {
    /// An invocation is starting this VM.
    Starting {
        /// Who, since when.
        starting: Reservation,
    },
    /// A VM that answered when it was recorded.
    Running(VmEntry),
}

impl<'de> Deserialize<'de> for MapSlot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Decided by the key, so that a damaged entry is reported with what is
        // wrong in it, not as "matches no variant".
        let v = serde_json::Value::deserialize(d)?;
        let slot = match v.get("starting") {
            Some(r) => {
                serde_json::from_value(r.clone()).map(|starting| MapSlot::Starting { starting })
            }
            None => serde_json::from_value(v).map(MapSlot::Running),
        };
        slot.map_err(serde::de::Error::custom)
    }
}

/// A start in progress: the starting process and a token naming this start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The starting process.
    pub pid: u32,
    /// Its start time (see [`crate::util::process`]): tells it from a later
    /// process that got the same pid.
    pub pid_start: u64,
    /// Random: tells this start from another one by the same process.
    pub token: String,
    /// When the start began, seconds since the epoch.
    pub since: u64,
}

impl Reservation {
    /// A reservation for a start by this process.
    pub fn new() -> Result<Reservation, crate::vm::launch::LaunchError> {
        let pid = std::process::id();
        Ok(Reservation {
            pid,
            // Our own process exists; 0 only if /proc is unreadable, in which
            // case no reservation ever looks alive and none can block anyone.
            pid_start: pid_start_time(pid).unwrap_or(0),
            token: crate::helper::initrd::new_ticket()?,
            since: crate::util::unix_now(),
        })
    }

    /// True while the process that made it is still running.
    pub fn holder_alive(&self) -> bool {
        pid_start_time(self.pid).is_some_and(|t| t == self.pid_start && t != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_reservation_is_alive_and_a_dead_holders_is_not() {
        let mine = Reservation::new().unwrap();
        assert!(mine.holder_alive());
        assert_ne!(mine.token, Reservation::new().unwrap().token);
        // The same pid with another start time: a reused pid.
        let reused = Reservation {
            pid_start: mine.pid_start + 1,
            ..mine.clone()
        };
        assert!(!reused.holder_alive());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let gone = Reservation { pid, ..mine };
        assert!(!gone.holder_alive());
    }

    #[test]
    fn both_shapes_round_trip() {
        let r = Reservation {
            pid: 42,
            pid_start: 7,
            token: "t".into(),
            since: 1,
        };
        let json = serde_json::to_string(&MapSlot::Starting {
            starting: r.clone(),
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"starting":{"pid":42,"pid_start":7,"token":"t","since":1}}"#
        );
        match serde_json::from_str::<MapSlot>(&json).unwrap() {
            MapSlot::Starting { starting } => assert_eq!(starting, r),
            other => panic!("{other:?}"),
        }
        // A damaged running entry names what is wrong with it.
        let e = serde_json::from_str::<MapSlot>(r#"{"vm": 1}"#).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
    }

    use crate::manager::vm_map::LockedMap;
    use crate::manager::{Manager, ManagerError};
    use std::time::Duration;

    fn manager(dir: &std::path::Path) -> Manager {
        Manager {
            runtime_dir: dir.to_path_buf(),
            kernel: None,
            initramfs: None,
            accel: crate::vm::launch::AccelPreference::Auto,
            transport: crate::vm::launch::TransportPreference::Auto,
            boot_timeout: None,
            memory_mib: None,
        }
    }

    fn put(dir: &std::path::Path, name: &str, slot: MapSlot) {
        let mut map = LockedMap::<MapSlot>::lock(dir, Duration::from_secs(5)).unwrap();
        map.insert(name, slot);
        map.save().unwrap();
    }

    fn names(dir: &std::path::Path) -> Vec<String> {
        LockedMap::<MapSlot>::lock(dir, Duration::from_secs(5))
            .unwrap()
            .names()
    }

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    /// A VM that is gone (dead pid, no run directory): stopping it is a no-op.
    fn gone_vm() -> VmEntry {
        serde_json::from_value(serde_json::json!({
            "vm": {"pid": dead_pid(), "sidecar_pid": null,
                   "addr": {"kind": "hybrid_unix", "path": "/nonexistent/vm.vsock", "port": 1024},
                   "ticket": "0123456789abcdef0123456789abcdef", "accel": "tcg",
                   "run_dir": "/nonexistent/vm-gone", "console_log": "/nonexistent/console.log",
                   "qmp_socket": "/nonexistent/qmp.sock", "started_at": 0},
            "source": {"Image": "/nonexistent/a.img"}, "images": [], "guest_config": null
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn status_reports_live_starts_and_drops_stale_ones_stop_cancels() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let live = Reservation::new().unwrap();
        let stale = Reservation {
            pid: dead_pid(),
            token: "stale".into(),
            ..live.clone()
        };
        put(dir.path(), "live", MapSlot::Starting { starting: live });
        put(dir.path(), "stale", MapSlot::Starting { starting: stale });
        let mut notes = Vec::new();
        assert!(m.status(&mut notes).await.unwrap().is_empty());
        let me = std::process::id();
        assert!(
            notes
                .iter()
                .any(|n| n.contains(&format!("VM live is being started by pid {me}"))),
            "{notes:?}"
        );
        assert!(
            notes
                .iter()
                .any(|n| n.contains("VM stale was being started") && n.contains("removed it")),
            "{notes:?}"
        );
        assert_eq!(names(dir.path()), ["live"]);
        assert_eq!(m.stop(Some("live")).await.unwrap(), ["live"]);
        assert!(names(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_start_is_recorded_only_while_its_reservation_stands() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let r = Reservation::new().unwrap();
        put(
            dir.path(),
            "a",
            MapSlot::Starting {
                starting: r.clone(),
            },
        );
        m.commit("a", &r, Ok(gone_vm())).await.unwrap();
        let map = LockedMap::<MapSlot>::lock(dir.path(), Duration::from_secs(5)).unwrap();
        assert!(matches!(map.get("a"), Some(MapSlot::Running(_))));
        drop(map);

        // `stop` took the reservation away meanwhile: the VM is not recorded.
        let e = m.commit("b", &r, Ok(gone_vm())).await.unwrap_err();
        assert!(matches!(e, ManagerError::StartCancelled { .. }), "{e}");
        assert_eq!(names(dir.path()), ["a"]);

        // A failed start removes its own reservation, not another one's.
        let other = Reservation::new().unwrap();
        put(dir.path(), "c", MapSlot::Starting { starting: other });
        let failed = || Err(ManagerError::BootFiles("no kernel".into()));
        assert!(m.commit("c", &r, failed()).await.is_err());
        assert_eq!(names(dir.path()), ["a", "c"]);
        put(
            dir.path(),
            "d",
            MapSlot::Starting {
                starting: r.clone(),
            },
        );
        assert!(m.commit("d", &r, failed()).await.is_err());
        assert_eq!(names(dir.path()), ["a", "c"]);
    }
}

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
use crate::process::pid_start_time;

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
    /// Its start time (see [`crate::process`]): tells it from a later
    /// process that got the same pid.
    pub pid_start: u64,
    /// Random: tells this start from another one by the same process.
    pub token: String,
    /// When the start began, seconds since the epoch.
    pub since: u64,
}

impl Reservation {
    /// A reservation for a start by this process.
    pub fn new() -> Result<Reservation, crate::launch::LaunchError> {
        let pid = std::process::id();
        Ok(Reservation {
            pid,
            // Our own process exists; 0 only if /proc is unreadable, in which
            // case no reservation ever looks alive and none can block anyone.
            pid_start: pid_start_time(pid).unwrap_or(0),
            token: crate::initrd::new_ticket()?,
            since: crate::launch::unix_now(),
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
}

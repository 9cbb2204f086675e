//! Kernel vsock CIDs per user.
//!
//! A guest CID is host-wide: whoever's VM holds it receives every connection
//! made to it. So that one user cannot take the CIDs another user's VMs are
//! started with (and receive their connections), the helper gives each uid
//! its own block and refuses any other CID:
//!
//! ```text
//! uid u may use  CID_BASE + CIDS_PER_UID * u  ..=  CID_BASE + CIDS_PER_UID * u + CIDS_PER_UID - 1
//! ```
//!
//! i.e. 16 CIDs from 4096 + 16 × uid (uid 0: 4096..=4111, uid 1000:
//! 20096..=20111). The CLI picks from the same block, trying the next CID
//! when QEMU reports one in use (by the same user's other VMs, or by a VM
//! not started through the helper). The base leaves the low CIDs, which
//! other VM managers hand out from 3 up, alone. A uid whose block would pass
//! the last usable CID (0xFFFF_FFFE; 0xFFFF_FFFF is `VMADDR_CID_ANY`), i.e.
//! above [`MAX_UID`] (268,435,198), has no block: the helper refuses kernel
//! vsock for it and the CLI uses the vhost-user transport.
//!
//! This binds only VMs started through the helper: a user who can open
//! `/dev/vhost-vsock` directly can still pick any free CID. That is why the
//! host also waits until its own QEMU holds the CID before connecting, and
//! trusts a guest only after it proved it knows the ticket
//! (`file_restore_wire::proof`).

use std::ops::RangeInclusive;

use super::{invalid, HelperError, HelperRequest, TransportRequest};

/// First CID of uid 0's block.
pub const CID_BASE: u32 = 4096;
/// CIDs in each uid's block (at most this many kernel-vsock VMs per user).
pub const CIDS_PER_UID: u32 = 16;
/// The last CID a guest can have.
pub const LAST_CID: u32 = u32::MAX - 1;
/// The largest uid with a block.
pub const MAX_UID: u32 = ((LAST_CID - CID_BASE + 1) / CIDS_PER_UID) - 1;

/// The CIDs `uid` may use, `None` for a uid above [`MAX_UID`].
pub fn cid_range(uid: u32) -> Option<RangeInclusive<u32>> {
    let first = u64::from(CID_BASE) + u64::from(uid) * u64::from(CIDS_PER_UID);
    let last = first + u64::from(CIDS_PER_UID) - 1;
    if last > u64::from(LAST_CID) {
        return None;
    }
    // Both fit: last <= LAST_CID < u32::MAX.
    Some(first as u32..=last as u32)
}

/// Why `uid` has no kernel vsock CIDs, and what to do.
pub fn no_range_reason(uid: u32) -> String {
    format!(
        "uid {uid} has no kernel vsock CID block (only uids up to {MAX_UID} have one: \
         {CIDS_PER_UID} CIDs from {CID_BASE} + {CIDS_PER_UID} x uid); use --transport vhost-user"
    )
}

impl HelperRequest {
    /// Refuses a kernel vsock CID outside the invoking user's block (see
    /// [`cid_range`]); anything else passes.
    pub fn check_cid_for(&self, uid: u32) -> Result<(), HelperError> {
        let TransportRequest::Kernel { cid } = self.transport else {
            return Ok(());
        };
        match cid_range(uid) {
            Some(range) if range.contains(&cid) => Ok(()),
            Some(range) => Err(invalid(
                "transport.cid",
                format!(
                    "CID {cid} is not in uid {uid}'s block {}..={} ({CIDS_PER_UID} CIDs from \
                     {CID_BASE} + {CIDS_PER_UID} x uid): one user may not take another's CIDs",
                    range.start(),
                    range.end()
                ),
            )),
            None => Err(invalid("transport.cid", no_range_reason(uid))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_per_uid() {
        assert_eq!(cid_range(0), Some(4096..=4111));
        assert_eq!(cid_range(1), Some(4112..=4127));
        assert_eq!(cid_range(1000), Some(20096..=20111));
        let last = cid_range(MAX_UID).unwrap();
        assert!(*last.end() <= LAST_CID && LAST_CID - last.end() < CIDS_PER_UID);
        assert_eq!(MAX_UID, 268_435_198);
        // Blocks never overlap and never reach VMADDR_CID_ANY.
        assert_eq!(cid_range(MAX_UID - 1).unwrap().end() + 1, *last.start());
        assert_eq!(cid_range(MAX_UID + 1), None);
        assert_eq!(cid_range(u32::MAX), None);
        assert!(no_range_reason(u32::MAX).contains("--transport vhost-user"));
    }
}

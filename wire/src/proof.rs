//! The guest's proof that it knows the VM's ticket, asked for on every
//! connection before the host sends the ticket or believes an answer.
//!
//! The host opens a vsock connection, sends `GET /api/hello?nonce=<hex>`
//! (no `Authorization` header) with [`NONCE_LEN`] fresh random bytes, and the
//! daemon answers [`Hello`] with `proof = HMAC-SHA256(key = ticket,
//! message = nonce || PROOF_CONTEXT)`. The host recomputes it and compares in
//! constant time ([`verify`]); only then does it send its real request, with
//! the ticket, on the same connection.
//!
//! **Why per connection and not once per VM start.** With kernel vsock a
//! connection goes to whichever VM holds the CID *at connect time*. A VM
//! that proved itself at readiness may die (idle watchdog, crash, `kill`)
//! and its CID be taken by another local user's VM before a later
//! invocation connects to the CID recorded in the VM map; a proof made once
//! would then vouch for a stranger, who would receive the ticket. Asking on
//! every connection costs one small round trip on the already open stream
//! (no new connection) and closes that window for both transports (through
//! the vhost-user sidecar the endpoint is a per-VM Unix socket, so the
//! check there guards against a confused map or a replaced socket).
//!
//! A stranger cannot answer: the nonce is fresh, so a proof seen earlier
//! does not fit, and computing one needs the ticket. The daemon answers
//! `hello` to anyone, which gives out HMACs of chosen nonces but never the
//! ticket; a relay to our real guest would need that guest reachable at
//! another address with the same ticket, and each VM has its own ticket
//! and keeps its CID for its whole life. The context string separates this
//! use of the ticket from any other.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Length of the host's nonce in bytes (sent as twice as many hex digits).
pub const NONCE_LEN: usize = 32;

/// Length of a proof in bytes (HMAC-SHA256).
pub const PROOF_LEN: usize = 32;

/// Appended to the nonce before the HMAC: says what the MAC is for.
pub const PROOF_CONTEXT: &[u8] = b"file-restore guest ticket proof v1";

/// Answer of `GET /api/hello?nonce=<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The daemon's API version (see [`crate::API_VERSION`]).
    pub api_version: u32,
    /// Lowercase hex of [`proof`] for the nonce asked with.
    pub proof: String,
}

/// `HMAC-SHA256(key = ticket, message = nonce || PROOF_CONTEXT)`.
pub fn proof(ticket: &str, nonce: &[u8; NONCE_LEN]) -> [u8; PROOF_LEN] {
    mac(ticket, nonce).finalize().into_bytes().into()
}

/// True when `proof_hex` is the proof of `nonce` under `ticket`; the
/// comparison takes the same time wherever the first difference is.
pub fn verify(ticket: &str, nonce: &[u8; NONCE_LEN], proof_hex: &str) -> bool {
    match from_hex(proof_hex) {
        Some(given) if given.len() == PROOF_LEN => mac(ticket, nonce).verify_slice(&given).is_ok(),
        _ => false,
    }
}

fn mac(ticket: &str, nonce: &[u8; NONCE_LEN]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(ticket.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(nonce);
    mac.update(PROOF_CONTEXT);
    mac
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The bytes of a hex string (either case); `None` for an odd length or a
/// non-hex character.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let pairs = s.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    pairs
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// A nonce from its hex form: exactly [`NONCE_LEN`] bytes.
pub fn parse_nonce(s: &str) -> Option<[u8; NONCE_LEN]> {
    from_hex(s)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test case 2: the HMAC-SHA256 underneath is the standard one.
    #[test]
    fn hmac_sha256_known_vector() {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            to_hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// Pins the wire format (key, message order, context): computed
    /// independently with Python's `hmac.new(ticket, nonce + context, sha256)`.
    #[test]
    fn proof_known_vector() {
        let nonce: [u8; NONCE_LEN] = std::array::from_fn(|i| i as u8);
        let p = proof("0123456789abcdef0123456789abcdef", &nonce);
        assert_eq!(
            to_hex(&p),
            "a2cc49cb6805c12374d682503b8fe8e5246c315317279b4be5146a890471e293"
        );
        assert!(verify(
            "0123456789abcdef0123456789abcdef",
            &nonce,
            &to_hex(&p)
        ));
        assert!(verify(
            "0123456789abcdef0123456789abcdef",
            &nonce,
            &to_hex(&p).to_uppercase()
        ));
    }

    #[test]
    fn wrong_proofs_fail() {
        let nonce = [7u8; NONCE_LEN];
        let good = to_hex(&proof("ticket-a-0123456789", &nonce));
        assert!(verify("ticket-a-0123456789", &nonce, &good));
        assert!(!verify("ticket-b-0123456789", &nonce, &good));
        assert!(!verify("ticket-a-0123456789", &[8u8; NONCE_LEN], &good));
        assert!(!verify("ticket-a-0123456789", &nonce, &good[..62]));
        assert!(!verify("ticket-a-0123456789", &nonce, ""));
        assert!(!verify("ticket-a-0123456789", &nonce, &"zz".repeat(32)));
    }

    #[test]
    fn hex() {
        assert_eq!(to_hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(from_hex("00AB10"), Some(vec![0, 0xab, 0x10]));
        assert_eq!(from_hex("0"), None);
        assert_eq!(from_hex("0g"), None);
        assert_eq!(
            parse_nonce(&"ab".repeat(NONCE_LEN)),
            Some([0xab; NONCE_LEN])
        );
        assert_eq!(parse_nonce(&"ab".repeat(NONCE_LEN - 1)), None);
    }
}

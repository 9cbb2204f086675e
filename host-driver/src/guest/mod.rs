//! Talking to the guest: the vsock transport ([`transport`]: kernel
//! `AF_VSOCK` or a hybrid Unix socket), the ready signal the guest sends
//! once its daemon listens (`ready`), and the HTTP client of the
//! restore daemon's API ([`client`]: the proof handshake, requests,
//! extract streams). Knows nothing of how the VM was started. May import
//! `util` only.

pub mod client;
pub(crate) mod ready;
pub mod transport;

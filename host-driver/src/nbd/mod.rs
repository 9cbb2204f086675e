//! A small NBD client: the fixed-newstyle handshake with `NBD_OPT_GO` and
//! `NBD_CMD_READ` with simple replies, over a Unix socket, one request at a
//! time per connection (a reader opens several connections to have several
//! reads in flight).
//!
//! It reads from QEMU's own read-only export of a restore VM's drives
//! (`crate::qemu::export`), so it needs nothing else of the protocol:
//! no TLS, no structured replies, no writes. Written here rather than taken
//! from a crate because the Rust NBD crates are either synchronous and
//! unmaintained (`nbd` 0.3, 2019: `NBD_OPT_EXPORT_NAME` only, no bounds on
//! what the server sends) or bindings to the C library libnbd (a shared
//! library and its -dev package more on every host, for a few hundred lines
//! of protocol). Every length the server sends is bounded and every wait has
//! a time limit; the handshake parser is fuzzed (`fuzz-checks`).

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// `NBDMAGIC`.
const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: the newstyle magic, and the prefix of every option.
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic of an option reply.
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of a transmission request.
const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of a simple reply.
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
const FLAG_NO_ZEROES: u16 = 1 << 1;
const OPT_GO: u32 = 7;
const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const INFO_EXPORT: u16 = 0;
const CMD_READ: u16 = 0;
const CMD_DISC: u16 = 2;

/// Longest option reply accepted (an info block or an error message).
const MAX_OPTION_REPLY: u32 = 64 * 1024;
/// Most option replies to one `NBD_OPT_GO`.
const MAX_OPTION_REPLIES: usize = 64;
/// Largest read request (QEMU's server accepts up to 32 MiB).
pub const MAX_READ: usize = 32 << 20;

/// An error of the NBD client.
#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    /// The socket failed.
    #[error("NBD export {export}: {source}")]
    Io {
        /// The export's name.
        export: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The server broke the protocol or refused.
    #[error("NBD export {export}: {detail}")]
    Protocol {
        /// The export's name.
        export: String,
        /// What went wrong.
        detail: String,
    },
    /// The server did not answer in time.
    #[error("NBD export {export}: no answer within {after:?} ({what})")]
    Timeout {
        /// The export's name.
        export: String,
        /// What was awaited.
        what: &'static str,
        /// The limit.
        after: Duration,
    },
}

/// What the handshake learned of the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportInfo {
    /// Size in bytes.
    pub size: u64,
    /// Transmission flags.
    pub flags: u16,
}

/// A connection to one export, after the handshake.
#[derive(Debug)]
pub struct NbdConn {
    stream: UnixStream,
    export: String,
    info: ExportInfo,
    cookie: u64,
    limit: Duration,
}

impl NbdConn {
    /// Connects to `socket` and opens `export`; every wait (the handshake,
    /// each later read) is limited to `limit`.
    pub async fn connect(
        socket: &Path,
        export: &str,
        limit: Duration,
    ) -> Result<NbdConn, NbdError> {
        let io_err = |source| NbdError::Io {
            export: export.to_owned(),
            source,
        };
        let work = async {
            let mut stream = UnixStream::connect(socket).await.map_err(io_err)?;
            let info = handshake(&mut stream, export).await?;
            Ok::<_, NbdError>((stream, info))
        };
        let (stream, info) =
            tokio::time::timeout(limit, work)
                .await
                .map_err(|_| NbdError::Timeout {
                    export: export.to_owned(),
                    what: "handshake",
                    after: limit,
                })??;
        Ok(NbdConn {
            stream,
            export: export.to_owned(),
            info,
            cookie: 0,
            limit,
        })
    }

    /// The export's size and flags.
    pub fn info(&self) -> ExportInfo {
        self.info
    }

    /// Reads `buf.len()` bytes (at most [`MAX_READ`]) at `offset`.
    pub async fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), NbdError> {
        let len = buf.len();
        let inside = matches!(offset.checked_add(len as u64), Some(e) if e <= self.info.size);
        if len > MAX_READ || !inside {
            return Err(self.protocol(format!(
                "read of {len} bytes at {offset} is outside the export ({} bytes) or too large",
                self.info.size
            )));
        }
        if len == 0 {
            return Ok(());
        }
        self.cookie += 1;
        let cookie = self.cookie;
        let limit = self.limit;
        let export = self.export.clone();
        let work = async {
            let mut req = Vec::with_capacity(28);
            req.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
            req.extend_from_slice(&0u16.to_be_bytes());
            req.extend_from_slice(&CMD_READ.to_be_bytes());
            req.extend_from_slice(&cookie.to_be_bytes());
            req.extend_from_slice(&offset.to_be_bytes());
            req.extend_from_slice(&(len as u32).to_be_bytes());
            self.stream.write_all(&req).await.map_err(|e| self.io(e))?;
            let mut head = [0u8; 16];
            self.stream
                .read_exact(&mut head)
                .await
                .map_err(|e| self.io(e))?;
            let (magic, error, got) = parse_simple_reply(&head);
            if magic != SIMPLE_REPLY_MAGIC {
                return Err(self.protocol(format!(
                    "bad reply magic {magic:#x} (structured replies were not asked for)"
                )));
            }
            if got != cookie {
                return Err(self.protocol(format!("reply to request {got}, expected {cookie}")));
            }
            if error != 0 {
                return Err(self.protocol(format!(
                    "read of {len} bytes at {offset} failed: error {error} ({})",
                    io::Error::from_raw_os_error(error as i32)
                )));
            }
            self.stream.read_exact(buf).await.map_err(|e| self.io(e))?;
            Ok(())
        };
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| NbdError::Timeout {
                export,
                what: "a read",
                after: limit,
            })?
    }

    /// Says goodbye (best effort) and closes the connection.
    pub async fn close(mut self) {
        let mut req = Vec::with_capacity(28);
        req.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
        req.extend_from_slice(&0u16.to_be_bytes());
        req.extend_from_slice(&CMD_DISC.to_be_bytes());
        req.extend_from_slice(&[0u8; 20]);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.write_all(&req)).await;
    }

    fn io(&self, source: io::Error) -> NbdError {
        NbdError::Io {
            export: self.export.clone(),
            source,
        }
    }

    fn protocol(&self, detail: String) -> NbdError {
        NbdError::Protocol {
            export: self.export.clone(),
            detail,
        }
    }
}

fn parse_simple_reply(h: &[u8; 16]) -> (u32, u32, u64) {
    let u32_at = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let mut c = [0u8; 8];
    c.copy_from_slice(&h[8..16]);
    (u32_at(0), u32_at(4), u64::from_be_bytes(c))
}

/// The fixed-newstyle handshake, opening `export` with `NBD_OPT_GO`.
async fn handshake(s: &mut UnixStream, export: &str) -> Result<ExportInfo, NbdError> {
    let proto = |detail: String| NbdError::Protocol {
        export: export.to_owned(),
        detail,
    };
    let io_err = |source| NbdError::Io {
        export: export.to_owned(),
        source,
    };
    let mut greet = [0u8; 18];
    s.read_exact(&mut greet).await.map_err(io_err)?;
    let server_flags = parse_greeting(&greet).map_err(proto)?;
    let mut client_flags = u32::from(FLAG_FIXED_NEWSTYLE);
    if server_flags & FLAG_NO_ZEROES != 0 {
        client_flags |= u32::from(FLAG_NO_ZEROES);
    }
    let name = export.as_bytes();
    let mut opt = Vec::with_capacity(32 + name.len());
    opt.extend_from_slice(&client_flags.to_be_bytes());
    opt.extend_from_slice(&IHAVEOPT.to_be_bytes());
    opt.extend_from_slice(&OPT_GO.to_be_bytes());
    opt.extend_from_slice(&(4 + name.len() as u32 + 2).to_be_bytes());
    opt.extend_from_slice(&(name.len() as u32).to_be_bytes());
    opt.extend_from_slice(name);
    opt.extend_from_slice(&0u16.to_be_bytes());
    s.write_all(&opt).await.map_err(io_err)?;
    let mut info = None;
    for _ in 0..MAX_OPTION_REPLIES {
        let mut head = [0u8; 20];
        s.read_exact(&mut head).await.map_err(io_err)?;
        let (rtype, len) = parse_option_reply_head(&head).map_err(proto)?;
        let mut payload = vec![0u8; len as usize];
        s.read_exact(&mut payload).await.map_err(io_err)?;
        match option_reply(rtype, &payload).map_err(proto)? {
            OptionReply::Ack => {
                return info.ok_or_else(|| proto("the server sent no export size".into()));
            }
            OptionReply::Export(i) => info = Some(i),
            OptionReply::Other => {}
        }
    }
    Err(proto(format!(
        "more than {MAX_OPTION_REPLIES} option replies"
    )))
}

/// The handshake flags of an 18-byte server greeting.
pub fn parse_greeting(g: &[u8; 18]) -> Result<u16, String> {
    let magic = u64::from_be_bytes(g[0..8].try_into().map_err(|_| "short greeting")?);
    let opt = u64::from_be_bytes(g[8..16].try_into().map_err(|_| "short greeting")?);
    if magic != NBD_MAGIC || opt != IHAVEOPT {
        return Err("not an NBD newstyle server".into());
    }
    let flags = u16::from_be_bytes([g[16], g[17]]);
    if flags & FLAG_FIXED_NEWSTYLE == 0 {
        return Err("the server does not speak fixed newstyle".into());
    }
    Ok(flags)
}

/// The reply type and payload length of a 20-byte option reply header.
pub fn parse_option_reply_head(h: &[u8; 20]) -> Result<(u32, u32), String> {
    let magic = u64::from_be_bytes(h[0..8].try_into().map_err(|_| "short reply")?);
    let opt = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    let rtype = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
    let len = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
    if magic != REPLY_MAGIC {
        return Err(format!("bad option reply magic {magic:#x}"));
    }
    if opt != OPT_GO {
        return Err(format!("reply to option {opt}, not NBD_OPT_GO"));
    }
    if len > MAX_OPTION_REPLY {
        return Err(format!(
            "option reply of {len} bytes (at most {MAX_OPTION_REPLY})"
        ));
    }
    Ok((rtype, len))
}

/// One parsed option reply.
#[derive(Debug, PartialEq, Eq)]
pub enum OptionReply {
    /// The export is open; transmission starts.
    Ack,
    /// `NBD_INFO_EXPORT`: size and flags.
    Export(ExportInfo),
    /// Another info block (ignored).
    Other,
}

/// Parses an option reply of type `rtype`; errors carry the server's message.
pub fn option_reply(rtype: u32, payload: &[u8]) -> Result<OptionReply, String> {
    if rtype & (1 << 31) != 0 {
        let msg = String::from_utf8_lossy(&payload[..payload.len().min(512)]).into_owned();
        return Err(format!(
            "the server refused the export (error {:#x}): {msg}",
            rtype
        ));
    }
    match rtype {
        REP_ACK => Ok(OptionReply::Ack),
        REP_INFO => {
            if payload.len() < 2 {
                return Err("short info reply".into());
            }
            if u16::from_be_bytes([payload[0], payload[1]]) != INFO_EXPORT {
                return Ok(OptionReply::Other);
            }
            if payload.len() != 12 {
                return Err(format!("export info of {} bytes, not 12", payload.len()));
            }
            let size = u64::from_be_bytes(payload[2..10].try_into().map_err(|_| "short info")?);
            let flags = u16::from_be_bytes([payload[10], payload[11]]);
            Ok(OptionReply::Export(ExportInfo { size, flags }))
        }
        other => Err(format!("unexpected option reply type {other}")),
    }
}

#[cfg(test)]
mod tests;
